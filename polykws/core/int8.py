"""The int8 weight grid's constants, shared by the exporter and by training on that grid."""

from __future__ import annotations

import numpy as np

WEIGHT_QMAX = 127  # narrow range: the converter never emits -128 for weights
# The max |w| the converter assumes for an all-zero channel (its scale is this over WEIGHT_QMAX).
ZERO_CHANNEL_HALF_RANGE = np.float32(5e-7)
# Bits of int8 a language's re-fitted head uses (its rows' values within +-31). On speaker folds
# 6 bits score as 8 do (paired differences within +-0.2 pt for every method) and every blob is
# about 170 B smaller; 4 bits cost SWR 0.7 pt (docs/BENCHMARKS.md, "Blob v2").
HEAD_WEIGHT_BITS = 6
# Head widths the exporter accepts: at 1 bit a row's largest value would be 0.
HEAD_WEIGHT_BITS_RANGE = range(2, 9)


def head_weight_bits_error(value: object) -> str | None:
    """Why `value` is not a head width the exporter accepts, or None when it is one."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in HEAD_WEIGHT_BITS_RANGE:
        lo, hi = HEAD_WEIGHT_BITS_RANGE[0], HEAD_WEIGHT_BITS_RANGE[-1]
        return f"must be an integer in {lo}..{hi}, got {value!r}"
    return None

"""The int8 weight grid's constants, shared by the exporter and by training on that grid."""

from __future__ import annotations

import numpy as np

WEIGHT_QMAX = 127  # narrow range: the converter never emits -128 for weights
# The max |w| the converter assumes for an all-zero channel (its scale is this over WEIGHT_QMAX).
ZERO_CHANNEL_HALF_RANGE = np.float32(5e-7)

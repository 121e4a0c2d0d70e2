"""Estimated language-blob bytes of a delta, from tensor shapes only (no export import).

A language ships as a weight-diff blob: byte-range patches of the shared int8 base flatbuffer
(docs/BLOB_FORMAT.md, "Blob, format version 1": each patch record is a u32 offset + u32 length
header, its bytes, then zeros up to a 4-byte boundary). The exporter (`scales="auto"`) stores a
touched body tensor as int8 weights on per-channel float32 scales with an int32 bias whose
float32 scale follows the weight scale, so a delta's flash cost is set by which of those bytes
it moves, not by its parameter count. The constants below mirror that layout; the per-family
estimates (`DeltaLayer.blob_bytes`) use them and were checked against the real exporter with
`bench/blob_budget.py --swr-budget-bytes` (docs/BENCHMARKS.md, "Blob bytes vs accuracy": within
8 % on uk and lt).

Constant overhead every blob pays (header, labels, metadata, CRC) and the language head are not
part of these estimates: they cover a site's *body* bytes only.
"""

from __future__ import annotations

from torch import nn

INT8_WEIGHT_BYTES = 1  # one int8 weight
INT32_BIAS_BYTES = 4  # one int32 bias entry
FLOAT32_SCALE_BYTES = 4  # one per-channel float32 quantization scale
RECORD_HEADER_BYTES = 8  # u32 offset + u32 length (docs/BLOB_FORMAT.md)
RECORD_ALIGN_BYTES = 4  # record data is zero-padded to this boundary
# A channel whose weight scale is re-fitted rewrites its float32 weight scale, the float32 bias
# scale that follows it and its int32 bias (docs/BENCHMARKS.md measures ~12 B a channel).
CHANNEL_REQUANT_BYTES = 2 * FLOAT32_SCALE_BYTES + INT32_BIAS_BYTES
# Those three per-channel vectors are separate tensors' data: one record each.
CHANNEL_REQUANT_RECORDS = 3


def record_bytes(data_bytes: int, records: int = 1) -> int:
    """Bytes of `records` patch records carrying `data_bytes` in total (worst-case padding)."""
    if data_bytes <= 0:
        return 0
    # One record pads exactly to the boundary; several are charged the worst padding each.
    pad = (-data_bytes) % RECORD_ALIGN_BYTES if records == 1 else records * (RECORD_ALIGN_BYTES - 1)
    return data_bytes + records * RECORD_HEADER_BYTES + pad


def out_channels(module: nn.Module) -> int:
    return int(module.weight.shape[0])


def channel_requant_bytes(channels: int) -> int:
    """Re-fitted scales of `channels` output channels: weight scale, bias scale, int32 bias."""
    if channels <= 0:
        return 0
    return channels * CHANNEL_REQUANT_BYTES + CHANNEL_REQUANT_RECORDS * RECORD_HEADER_BYTES


def bias_bytes(module: nn.Module) -> int:
    """Every int32 bias entry of the site changes; the int8 weights and scales do not."""
    return record_bytes(out_channels(module) * INT32_BIAS_BYTES)


def tensor_rewrite_bytes(module: nn.Module) -> int:
    """A delta dense on the weight tensor moves (nearly) every int8 weight byte, and its channels'
    scales are re-fitted (hence their int32 biases change too)."""
    weights = int(module.weight.numel()) * INT8_WEIGHT_BYTES
    return record_bytes(weights) + channel_requant_bytes(out_channels(module))


def sparse_weight_bytes(nonzeros: int) -> int:
    """Worst case for `nonzeros` changed int8 weights: each isolated, one padded record apiece."""
    return record_bytes(INT8_WEIGHT_BYTES, 1) * nonzeros

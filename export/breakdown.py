"""Where a blob's bytes go: per tensor and field (weights, weight scales, bias, ...) plus record overhead.

Used by the benchmark to explain blob sizes and by transfer tooling to cost delta families in
bytes rather than parameters (a per-channel scale costs 12 bytes after re-fitting; an isolated
sparse weight costs a 1-byte change plus an 8-byte record header and padding).
"""

from __future__ import annotations

from collections import defaultdict

from polykws.export.blob import BLOB_HEADER_SIZE, RECORD_HEADER_BYTES, decode_blob
from polykws.export.requant import head_op_index
from polykws.export.tflite_graph import TfliteGraph


def _field_owners(g: TfliteGraph) -> list[tuple[int, int, str]]:
    """(start, end, label) for every patchable field, labelled by op role and field."""
    head = head_op_index(g)
    role_of: dict[int, str] = {}
    for op in g.ops:
        role = "head" if op.index == head else f"op{op.index}:{op.opcode.lower()}"
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            role_of.setdefault(op.inputs[1], f"{role} weights")
            role_of.setdefault(op.inputs[2], f"{role} bias")
        for t in op.outputs:
            role_of.setdefault(t, f"{role} output")
    spans = []
    for t in g.tensors:
        name = role_of.get(t.index, f"tensor{t.index}")
        if t.data_span:
            spans.append((*t.data_span, f"{name} data"))
        if t.scale_span:
            spans.append((*t.scale_span, f"{name} scales"))
        if t.zero_point_span:
            spans.append((*t.zero_point_span, f"{name} zero points"))
    return sorted(spans)


def blob_breakdown(base_tflite: bytes, blob: bytes) -> dict:
    """Blob bytes by field, plus fixed costs (header, labels, metadata, record headers and padding)."""
    parsed = decode_blob(blob)
    g = TfliteGraph(base_tflite, "base")
    owners = _field_owners(g)
    by_field: dict[str, int] = defaultdict(int)
    changed_by_field: dict[str, int] = defaultdict(int)
    for p in parsed.patches:
        for pos in range(p.offset, p.end):
            label = next((lab for s, e, lab in owners if s <= pos < e), "outside fields (merged gap)")
            by_field[label] += 1
            if base_tflite[pos] != p.data[pos - p.offset]:
                changed_by_field[label] += 1
    records = len(parsed.patches)
    record_overhead = sum(RECORD_HEADER_BYTES + (-len(p.data) % 4) for p in parsed.patches)
    fixed = len(blob) - parsed.patched_bytes - record_overhead
    return {
        "blob_bytes": len(blob),
        "patched_bytes": parsed.patched_bytes,
        "records": records,
        "record_overhead_bytes": record_overhead,
        "fixed_bytes": fixed,  # header, labels, metadata, padding, CRC
        "header_bytes": BLOB_HEADER_SIZE,
        "metadata_bytes": len(parsed.meta_bytes),
        "patched_bytes_by_field": dict(sorted(by_field.items())),
        "changed_bytes_by_field": dict(sorted(changed_by_field.items())),
    }

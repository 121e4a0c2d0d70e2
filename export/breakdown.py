"""Where a blob's bytes go: per tensor and field (weights, weight scales, bias, ...) plus record overhead.

Used by the benchmark to explain blob sizes and by transfer tooling to cost delta families in
bytes rather than parameters. Stream bytes per record are the range coder's output position
at each record boundary, so they sum to the stream length up to the coder's final flush.
"""

from __future__ import annotations

from collections import defaultdict

from polykws.core.patchcode import record_stream_bytes
from polykws.export.blob import BLOB_PREFIX_SIZE, apply_blob, decode_blob
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
    """Blob bytes by field: changed bytes and (approximately) coded stream bytes per field, plus fixed costs."""
    parsed = decode_blob(blob)
    g = TfliteGraph(base_tflite, "base")
    owners = _field_owners(g)
    records = parsed.records()
    coded = record_stream_bytes(records)
    by_field: dict[str, int] = defaultdict(int)
    changed_by_field: dict[str, int] = defaultdict(int)
    stream_by_field: dict[str, float] = defaultdict(float)
    target = apply_blob(base_tflite, blob)

    def owner(pos: int) -> str:
        return next((lab for s, e, lab in owners if s <= pos < e), "outside fields")

    for r, nbytes in zip(records, coded):
        label = owner(r.start)
        stream_by_field[label] += nbytes
        for p in r.positions.tolist():
            at = r.start + r.width * p
            by_field[label] += r.width
            changed_by_field[label] += sum(base_tflite[at + i] != target[at + i] for i in range(r.width))
    stream = len(parsed.stream)
    return {
        "blob_bytes": len(blob),
        "patched_bytes": sum(by_field.values()),
        "records": len(records),
        "stream_bytes": stream,
        "fixed_bytes": len(blob) - stream,  # header, digest, labels, thresholds, CRC
        "header_bytes": BLOB_PREFIX_SIZE,
        "patched_bytes_by_field": dict(sorted(by_field.items())),
        "changed_bytes_by_field": dict(sorted(changed_by_field.items())),
        "stream_bytes_by_field": {k: round(v, 1) for k, v in sorted(stream_by_field.items())},
    }

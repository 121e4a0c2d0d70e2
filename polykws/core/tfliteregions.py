"""Typed regions of a .tflite flatbuffer: where each tensor's constant data and quantization
vectors lie, and their element width. Standard library only: the core carries no schema package.
"""

from __future__ import annotations

import struct

_TYPE_WIDTH = {0: 4, 2: 4, 4: 4}  # FLOAT32, INT32, INT64 (as 32-bit words); everything else bytes


def tflite_regions(model: bytes) -> list[tuple[int, int, int]]:
    """(start, end, width) of every tensor's constant data, scale and zero-point vector.

    Walks the TFLite flatbuffer directly (Model.buffers, SubGraph.tensors, Tensor.quantization).
    A file it cannot walk gives no regions; the encoder then codes its changes as bytes.
    """
    try:
        return _tflite_regions(bytes(model))
    except (struct.error, IndexError, ValueError):
        return []


def _tflite_regions(buf: bytes) -> list[tuple[int, int, int]]:
    u32 = lambda p: struct.unpack_from("<I", buf, p)[0]  # noqa: E731
    i32 = lambda p: struct.unpack_from("<i", buf, p)[0]  # noqa: E731
    u16 = lambda p: struct.unpack_from("<H", buf, p)[0]  # noqa: E731

    def field(table: int, index: int) -> int | None:
        vt = table - i32(table)
        off = 4 + 2 * index
        if off + 2 > u16(vt):
            return None
        fo = u16(vt + off)
        return table + fo if fo else None

    def vector(pos: int) -> tuple[int, int]:
        vec = pos + u32(pos)
        return vec + 4, u32(vec)

    def table_at(elem: int) -> int:
        return elem + u32(elem)

    root = u32(0)
    regions = []
    buffers_f, subgraphs_f = field(root, 4), field(root, 2)
    if buffers_f is None or subgraphs_f is None:
        return []
    bstart, bcount = vector(buffers_f)
    buffer_spans = []
    for j in range(bcount):
        bt = table_at(bstart + 4 * j)
        df = field(bt, 0)
        if df is None:
            buffer_spans.append(None)
            continue
        s, n = vector(df)
        buffer_spans.append((s, s + n))
    sstart, scount = vector(subgraphs_f)
    for g in range(scount):
        sg = table_at(sstart + 4 * g)
        tf = field(sg, 0)
        if tf is None:
            continue
        tstart, tcount = vector(tf)
        for t in range(tcount):
            tt = table_at(tstart + 4 * t)
            typ_f, buf_f, q_f = field(tt, 1), field(tt, 2), field(tt, 4)
            typ = buf[typ_f] if typ_f is not None else 0
            bi = u32(buf_f) if buf_f is not None else 0
            if 0 <= bi < len(buffer_spans) and buffer_spans[bi] is not None:
                s, e = buffer_spans[bi]
                if e > s:
                    regions.append((s, e, _TYPE_WIDTH.get(typ, 1)))
            if q_f is not None:
                qt = table_at(q_f)
                for fi, width in ((2, 4), (3, 4)):  # scale [float32], zero_point [int64]
                    vf = field(qt, fi)
                    if vf is not None:
                        s, n = vector(vf)
                        nbytes = n * (4 if fi == 2 else 8)
                        if n and s + nbytes <= len(buf):
                            regions.append((s, s + nbytes, width))
    return [r for r in regions if r[1] <= len(buf)]


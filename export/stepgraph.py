"""The int8 streaming form of a DS-CNN export: each model frame computed once.

A DS-CNN whose convolutions do not pad time (`DSCNNSpec.time_padding="valid"`) exports as

    [PAD] CONV_2D (stem)  ( PAD  DEPTHWISE_CONV_2D  CONV_2D ) x blocks  AVERAGE_POOL_2D  FULLY_CONNECTED  SOFTMAX

where every PAD pads frequency only. Each output row of such a graph depends on a fixed span of
input rows, so the windowed graph splits, without new arithmetic, into two graphs over the same
weight and quantization bytes:

- the **step** graph, run once per model frame: inputs are the stem's last `stem_frames` model
  frames and, per block, the block's last `kernel - 1` input rows (the state the caller keeps);
  CONCATENATION appends the new row to the state (input and output share one quantization, so it
  copies bytes), and the block's PAD, DEPTHWISE_CONV_2D and CONV_2D run on that window to give
  one new row. Outputs: each block's new input row (the caller's next state) and the last block's
  new row.
- the **head** graph, run at the detector's stride: AVERAGE_POOL_2D, FULLY_CONNECTED and SOFTMAX
  over the last `head_rows` final rows.

Each op of the step graph computes, per output row, exactly what the windowed graph computes for
that row (the same kernels, weights, biases and requantization), so the head's int8 outputs equal
the windowed graph's bit for bit (`stream_outputs` checks it on TFLM). One change of shape only: a
one-channel stem whose kernel tiles frequency (on 40 bins, 8 bins at a stride of 8) reads each
frame as its bin groups in channels (`_stem_as_channels`), over the same bytes.

The stem strides time by `stem_stride` (2 in DS-CNN-S): the windowed graph sees the stem rows of
one phase of the frame grid, and a window ending at model frame n uses stem rows ending at
n - 1, n - 3, ... (its newest frame is outside the stem's last receptive field). A stream that
serves windows of both phases therefore keeps `stem_stride` independent chains of state, one per
phase, and runs the step graph on every model frame; a detector whose stride is a multiple of
`stem_stride` frames needs one chain, and runs it on every `stem_stride`-th frame.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from polykws.export.convert import TFLM_ALLOWED_OPS, ExportError, check_tflm_ops
from polykws.export.tflite_graph import OPCODE_NAMES

# TFLite's Padding enum: SAME = 0, VALID = 1.
_VALID = 1
# The step graph appends a row to its state with CONCATENATION (a byte copy: one quantization).
STEP_ALLOWED_OPS = TFLM_ALLOWED_OPS | {"CONCATENATION"}


@dataclass(frozen=True)
class StreamingGraphs:
    step: bytes
    head: bytes
    stem_frames: int  # model frames the stem reads per row
    stem_stride: int  # model frames between two stem rows of one chain
    state_rows: tuple[int, ...]  # per block: input rows kept between steps
    row_shape: tuple[int, ...]  # (width, channels) of every row
    head_rows: int  # final rows the head pools
    window_frames: int  # the windowed graph's input frames
    rows_per_step: int = 1  # new rows per block per step (its stem reads stem_frames + stem_stride * (rows - 1) frames)
    # Per tensor of the step / head graph: the windowed graph's tensor whose bytes and quantization it
    # has (a state or window tensor: the row it holds).
    step_sources: tuple[int, ...] = ()
    head_sources: tuple[int, ...] = ()

    @property
    def step_frames(self) -> int:
        """Model frames one step reads."""
        return self.stem_frames + self.stem_stride * (self.rows_per_step - 1)

    @property
    def reach_frames(self) -> int:
        """Frames from a head's newest stem row back to the oldest stem row it depends on: its
        final rows and every block's state."""
        return self.stem_stride * (self.head_rows - 1 + sum(self.state_rows))

    def window_end(self, step: int) -> int:
        """The windowed graph's window (by its newest model frame) the head equals after `step`."""
        return step + self.window_frames - self.stem_frames - self.reach_frames


def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


def _pack(model) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1 << 16)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _compact(model) -> list[int]:
    """Keep only the tensors, buffers and operator codes the graph still references; returns the
    kept tensors' indices before compaction."""
    sg = model.subgraphs[0]
    used: list[int] = []
    for t in [*sg.inputs, *(i for op in sg.operators for i in [*op.inputs, *op.outputs]), *sg.outputs]:
        if t >= 0 and t not in used:
            used.append(t)
    remap = {old: new for new, old in enumerate(used)}
    sg.tensors = [sg.tensors[i] for i in used]
    for op in sg.operators:
        op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
        op.outputs = [remap[i] for i in op.outputs]
    sg.inputs = [remap[i] for i in sg.inputs]
    sg.outputs = [remap[i] for i in sg.outputs]
    buffers = [0] + sorted({t.buffer for t in sg.tensors if t.buffer})
    bremap = {old: new for new, old in enumerate(buffers)}
    model.buffers = [model.buffers[i] for i in buffers]
    for t in sg.tensors:
        t.buffer = bremap[t.buffer]
    codes = sorted({op.opcodeIndex for op in sg.operators})
    cremap = {old: new for new, old in enumerate(codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in codes]
    for op in sg.operators:
        op.opcodeIndex = cremap[op.opcodeIndex]
    # The signature names the windowed graph's input and output; these graphs have others. The
    # converter's metadata names buffers by their old indices, and TFLM needs none of it.
    model.signatureDefs = None
    model.metadata = None
    return used


def _code(oc) -> int:
    """An operator code's builtin (the deprecated field holds it in older files)."""
    return max(oc.builtinCode, oc.deprecatedBuiltinCode)


def _set_rows(tensor, rows: int) -> None:
    tensor.shape = [tensor.shape[0], rows, *tensor.shape[2:]]
    tensor.shapeSignature = None


def _check_pad(model, op, where: str) -> None:
    """A PAD may pad frequency only: a stream has no rows before its first or after its last."""
    sg = model.subgraphs[0]
    paddings = np.frombuffer(bytes(bytearray(model.buffers[sg.tensors[op.inputs[1]].buffer].data)), "<i4").reshape(-1, 2)
    if paddings.shape[0] < 2 or paddings[1].any():
        raise ExportError(f"{where}: PAD pads time ({paddings[1].tolist()}); a stream cannot honour it (export the "
                          f"time_padding='valid' variant)")


def _stem_as_channels(sg, stem) -> None:
    """Give a one-channel stem whose kernel tiles frequency (kernel width = stride width, no
    padding) the frequency groups as channels: input (T, W, 1) becomes (T, W / kw, kw) and the
    filter (O, kh, kw, 1) becomes (O, kh, 1, kw). Both are the same bytes in the same order, and
    every output sums the same products, so the output is bit for bit the same; CMSIS-NN's
    convolution gathers kw channels per kernel tap instead of one, which is what its im2col and
    dot products are fast at. Any other stem is left as it is."""
    x, w = sg.tensors[stem.inputs[0]], sg.tensors[stem.inputs[1]]
    o = stem.builtinOptions
    _, _, width, ch = (int(v) for v in x.shape)
    out_ch, kh, kw, in_ch = (int(v) for v in w.shape)
    if (ch != 1 or in_ch != 1 or kw < 2 or o.strideW != kw or width % kw or o.dilationWFactor != 1
            or int(sg.tensors[stem.outputs[0]].shape[2]) != width // kw):
        return
    x.shape, x.shapeSignature = [int(x.shape[0]), int(x.shape[1]), width // kw, kw], None
    w.shape, w.shapeSignature = [out_ch, kh, 1, kw], None
    o.strideW = 1


def streaming_graphs(tflite: bytes, rows_per_step: int = 1, *, stride_frames: int | None = None) -> StreamingGraphs:
    """The step and head graphs of a windowed int8 DS-CNN export (module docstring).

    `rows_per_step` > 1 makes each step compute that many new rows per block (one chain advances
    rows_per_step * stem_stride frames per step): the same arithmetic per row, in fewer and larger
    kernel calls. `stride_frames` (a detector's stride in model frames) sets it instead, to
    rows_per_step_for(the stem's stride, stride_frames), for detector_schedule."""
    if rows_per_step < 1:
        raise ExportError(f"rows_per_step must be >= 1, got {rows_per_step}")
    if stride_frames is not None and stride_frames < 1:
        raise ExportError(f"stride_frames must be >= 1, got {stride_frames}")
    s = _schema()
    B = s.BuiltinOperator
    step = s.ModelT.InitFromPackedBuf(bytes(tflite), 0)
    if len(step.subgraphs) != 1:
        raise ExportError(f"a streaming form needs one subgraph, this model has {len(step.subgraphs)}")
    sg = step.subgraphs[0]
    ops, codes = sg.operators, [_code(step.operatorCodes[op.opcodeIndex]) for op in sg.operators]
    sources = list(range(len(sg.tensors)))
    i = 0
    if codes[0] == B.PAD:
        _check_pad(step, ops[0], "op 0 (the stem's PAD)")
        i = 1
    stem = ops[i]
    if codes[i] != B.CONV_2D:
        raise ExportError(f"op {i} is {OPCODE_NAMES.get(codes[i])}, not the DS-CNN stem's CONV_2D")
    if stem.builtinOptions.padding != _VALID:
        raise ExportError(f"op {i} (the stem's CONV_2D) pads time (SAME); a stream cannot honour it (export the "
                          f"time_padding='valid' variant)")
    x = sg.tensors[sg.inputs[0]]
    window_frames = int(x.shape[1])
    stem_frames = int(sg.tensors[stem.inputs[1]].shape[1])
    stem_stride = int(stem.builtinOptions.strideH)
    if stride_frames is not None:
        rows_per_step = rows_per_step_for(stem_stride, stride_frames)
    step_frames = stem_frames + stem_stride * (rows_per_step - 1)
    if step_frames > window_frames:
        raise ExportError(f"{rows_per_step} rows per step read {step_frames} frames, more than the window's {window_frames}")
    _set_rows(x, step_frames)
    for op in ops[:i]:
        _set_rows(sg.tensors[op.outputs[0]], step_frames)
    if i == 0:
        _stem_as_channels(sg, stem)
    _set_rows(sg.tensors[stem.outputs[0]], rows_per_step)
    rows = [stem.outputs[0]]
    new_ops = list(ops[: i + 1])
    states: list[int] = []
    state_rows: list[int] = []
    cat_code = next((k for k, oc in enumerate(step.operatorCodes) if _code(oc) == B.CONCATENATION), None)
    if cat_code is None:
        oc = s.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = B.CONCATENATION
        oc.version = 1
        step.operatorCodes.append(oc)
        cat_code = len(step.operatorCodes) - 1
    i += 1
    while i + 2 < len(ops) and codes[i : i + 3] == [B.PAD, B.DEPTHWISE_CONV_2D, B.CONV_2D]:
        pad, dw, pw = ops[i], ops[i + 1], ops[i + 2]
        _check_pad(step, pad, f"op {i} (block {len(states)}'s PAD)")
        if dw.builtinOptions.strideH != 1 or sg.tensors[pw.inputs[1]].shape[1] != 1:
            raise ExportError(f"block {len(states)} (ops {i}-{i + 2}) strides or widens time; the streaming form expects "
                              f"a stride-1 depthwise conv and a 1x1 pointwise conv")
        k = int(sg.tensors[dw.inputs[1]].shape[1])
        row = sg.tensors[rows[-1]]
        for name, n in (("state", k - 1), ("window", k - 1 + rows_per_step)):
            t = copy.deepcopy(row)
            t.name = f"{name}_{len(states)}".encode()
            t.buffer = 0
            _set_rows(t, n)
            sg.tensors.append(t)
            sources.append(rows[-1])
        state, window = len(sg.tensors) - 2, len(sg.tensors) - 1
        cat = s.OperatorT()
        cat.opcodeIndex, cat.inputs, cat.outputs = cat_code, [state, rows[-1]], [window]
        cat.builtinOptionsType = s.BuiltinOptions.ConcatenationOptions
        cat.builtinOptions = s.ConcatenationOptionsT()
        cat.builtinOptions.axis = 1
        pad.inputs = [window, *pad.inputs[1:]]
        _set_rows(sg.tensors[pad.outputs[0]], k - 1 + rows_per_step)
        _set_rows(sg.tensors[dw.outputs[0]], rows_per_step)
        _set_rows(sg.tensors[pw.outputs[0]], rows_per_step)
        new_ops += [cat, pad, dw, pw]
        states.append(state)
        state_rows.append(k - 1)
        rows.append(pw.outputs[0])
        i += 3
    if not states or codes[i:] != [B.AVERAGE_POOL_2D, B.FULLY_CONNECTED, B.SOFTMAX]:
        raise ExportError(f"ops {i}..: {[OPCODE_NAMES.get(c) for c in codes[i:]]}; the streaming form expects DS blocks, then "
                          "AVERAGE_POOL_2D, FULLY_CONNECTED and SOFTMAX")
    head_rows = int(ops[i].builtinOptions.filterHeight)
    head_ops = ops[i:]
    sg.operators = new_ops
    sg.inputs = [sg.inputs[0], *states]
    sg.outputs = rows
    row_shape = tuple(int(v) for v in sg.tensors[rows[-1]].shape[2:])
    step_sources = tuple(sources[i] for i in _compact(step))
    step_bytes = _pack(step)

    head = s.ModelT.InitFromPackedBuf(bytes(tflite), 0)
    hsg = head.subgraphs[0]
    hsg.operators = hsg.operators[len(hsg.operators) - len(head_ops) :]
    hsg.inputs = [hsg.operators[0].inputs[0]]
    head_sources = tuple(_compact(head))
    head_bytes = _pack(head)
    check_tflm_ops(step_bytes, tuple(STEP_ALLOWED_OPS), source="step graph")
    check_tflm_ops(head_bytes, source="head graph")
    return StreamingGraphs(step_bytes, head_bytes, stem_frames, stem_stride, tuple(state_rows), row_shape, head_rows, window_frames,
                           rows_per_step, step_sources, head_sources)


def every_row_schedule(graphs: StreamingGraphs, num_frames: int, phase: int | None = None) -> list[tuple[int, bool]]:
    """(newest model frame, run the head) of every step when each chain steps as soon as it can and
    the head runs after each step; `phase` keeps one chain (None: every chain). A chain's first
    step is the first with a row of the stream, as in detector_schedule (`first_valid_row`)."""
    out = []
    for p in range(graphs.stem_stride) if phase is None else [phase]:
        first = graphs.stem_frames - 1
        first += (p - first) % graphs.stem_stride
        out += [(t, True) for t in range(first, num_frames, graphs.stem_stride * graphs.rows_per_step)]
    return sorted(out)


def rows_per_step_for(stem_stride: int, stride_frames: int) -> int:
    """The rows per step with which each chain steps once per window it serves, for a detector that
    runs every `stride_frames` model frames."""
    return math.lcm(stride_frames, stem_stride) // stem_stride


def detector_schedule(graphs: StreamingGraphs, num_frames: int, stride_frames: int) -> list[tuple[int, bool]]:
    """(newest model frame, run the head) of every step that serves the detector's windows (those
    ending at window_frames - 1 + k * stride_frames), warm-up steps included. Each chain steps
    once per window it serves, so rows_per_step must be rows_per_step_for(stem_stride, stride_frames)."""
    want = rows_per_step_for(graphs.stem_stride, stride_frames)
    if graphs.rows_per_step != want:
        raise ExportError(f"a detector stride of {stride_frames} frames needs {want} rows per step, these graphs have "
                          f"{graphs.rows_per_step}")
    offset = graphs.window_end(0)
    heads = [n - offset for n in range(graphs.window_frames - 1, num_frames, stride_frames)]
    spacing = graphs.stem_stride * graphs.rows_per_step
    out = {(t, True) for t in heads}
    for p in {t % graphs.stem_stride for t in heads}:
        first = min(t for t in heads if t % graphs.stem_stride == p)
        out |= {(t, False) for t in range(first - spacing, graphs.stem_frames - 2, -spacing)}
    return sorted(out)


def first_valid_row(graphs: StreamingGraphs, t: int) -> int:
    """The oldest stem row (by its newest frame) of the step at frame `t` that reads no frame
    before the stream's start. A step may start before its whole input exists: the missing frames
    are zeros, and only the rows that read none of them count as computed."""
    back = min(graphs.rows_per_step - 1, (t - (graphs.stem_frames - 1)) // graphs.stem_stride)
    return t - graphs.stem_stride * back


def stream_outputs(graphs: StreamingGraphs, frames: np.ndarray, schedule: list[tuple[int, bool]] | None = None,
                   arena_bytes: int = 256 * 1024) -> dict[int, np.ndarray]:
    """The head's int8 outputs over a stream of int8 model frames (T, F), by the windowed graph's
    window end frame, on the tflite-micro runtime, for the steps of `schedule` (default:
    every_row_schedule). Each chain of stem rows (frame index modulo the stem stride) keeps its
    own state. A head runs only when every row it depends on was computed: a chain whose first
    step comes too late for the stream's first window skips that window. A step whose input
    begins before the stream reads zeros there (`first_valid_row`)."""
    from polykws.export.evaluate import _tflm

    frames = np.asarray(frames, np.int8)
    schedule = every_row_schedule(graphs, frames.shape[0]) if schedule is None else schedule
    step, head = _tflm(graphs.step, arena_bytes), _tflm(graphs.head, arena_bytes)
    step_in = tuple(int(v) for v in step.get_input_details(0)["shape"])
    w, c, r = *graphs.row_shape, graphs.rows_per_step
    chains = {p: ([np.zeros((1, n, w, c), np.int8) for n in graphs.state_rows], np.zeros((1, 0, w, c), np.int8))
              for p in range(graphs.stem_stride)}
    first_row: dict[int, int] = {}  # per chain: the oldest stem row it computed (its state holds no older)
    out: dict[int, np.ndarray] = {}
    for t, run_head in schedule:
        if t < graphs.stem_frames - 1 or t >= frames.shape[0]:
            raise ExportError(f"a step at model frame {t} computes no row of the stream (0..{frames.shape[0] - 1})")
        p = t % graphs.stem_stride
        state, finals = chains[p]
        first_row.setdefault(p, first_valid_row(graphs, t))
        lo = t - graphs.step_frames + 1
        x = frames[max(lo, 0) : t + 1]
        if lo < 0:
            x = np.concatenate([np.zeros((-lo, frames.shape[1]), np.int8), x])
        step.set_input(np.ascontiguousarray(x.reshape(step_in)), 0)
        for b, st in enumerate(state):
            step.set_input(st, b + 1)
        step.invoke()
        rows = [np.array(step.get_output(k)).reshape(1, r, w, c) for k in range(len(state) + 1)]
        for b, n in enumerate(graphs.state_rows):
            state[b] = np.concatenate([state[b], rows[b]], axis=1)[:, -n:]
        finals = np.concatenate([finals, rows[-1]], axis=1)[:, -graphs.head_rows :]
        chains[p] = (state, finals)
        # The window's newest frame may be one the step has not read (the stem's stride skips
        # it); that window is reported once its frames have all arrived, as the windowed graph's.
        end = graphs.window_end(t)
        if run_head and t - graphs.reach_frames >= first_row[p] and end < frames.shape[0]:
            head.set_input(np.ascontiguousarray(finals), 0)
            head.invoke()
            out[end] = np.array(head.get_output(0)).reshape(-1).copy()
    return out


@dataclass(frozen=True)
class LinkedGraphs:
    """The step and head graphs as a prefix that reads its weights and quantization from the
    windowed model placed right after it in memory: `prefix + windowed` holds the step graph at 0
    and the head graph at `head_offset`. Every weight buffer and every quantization scale and zero
    point of the two graphs is a flatbuffer vector of the windowed model, so a language blob that
    patches the windowed model's bytes patches them too, and the prefix is the same for every
    language of a base."""

    prefix: bytes
    head_offset: int

    def step_model(self, windowed: bytes) -> bytes:
        return self.prefix + bytes(windowed)

    def head_model(self, windowed: bytes) -> bytes:
        return self.prefix[self.head_offset :] + bytes(windowed)


_ALIGN = 16
# Flatbuffer vtable slots: Buffer.data, QuantizationParameters.scale and .zero_point.
_BUFFER_DATA, _QUANT_SCALE, _QUANT_ZERO_POINT = 4, 8, 10


def _u32(data: bytes | bytearray, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _vector_at(table, slot: int, data: bytes | bytearray) -> tuple[int, int] | None:
    """(position of the field holding the vector's uoffset, position of the vector) or None."""
    o = table._tab.Offset(slot)
    if not o:
        return None
    field = table._tab.Pos + o
    return field, field + _u32(data, field)


def _placeholders(graph: bytes) -> bytes:
    """The graph with each buffer's data and each scale and zero-point vector cut to one element
    (the linked form points them at the windowed model's) and no tensor names."""
    s = _schema()
    m = s.ModelT.InitFromPackedBuf(graph, 0)
    for b in m.buffers:
        if b.data is not None and len(b.data):
            b.data = [0]
    for t in m.subgraphs[0].tensors:
        t.name = b""
        q = t.quantization
        if q is not None:
            q.min = q.max = None
            if q.scale is not None and len(q.scale):
                q.scale = [0.0]
            if q.zeroPoint is not None and len(q.zeroPoint):
                q.zeroPoint = [0]
    return _pack(m)


def _link(part: bytearray, part_at: int, graph: bytes, sources: tuple[int, ...], windowed: bytes, windowed_at: int) -> None:
    """Point every buffer and quantization vector of `part` (the placeholder form of `graph`, placed
    at `part_at`) at the windowed model's (placed at `windowed_at`), tensor by tensor through
    `sources`; each pointed-at vector must hold as many elements as `graph`'s own."""
    s = _schema()
    gm = s.Model.GetRootAs(bytes(part), 0)
    g = gm.Subgraphs(0)
    full = s.Model.GetRootAs(graph, 0)
    w = s.Model.GetRootAs(windowed, 0)
    wsg = w.Subgraphs(0)
    done: dict[int, int] = {}
    for i in range(g.TensorsLength()):
        t, wt = g.Tensors(i), wsg.Tensors(sources[i])
        pairs = []
        if t.Buffer():
            here = _vector_at(gm.Buffers(t.Buffer()), _BUFFER_DATA, part)
            there = _vector_at(w.Buffers(wt.Buffer()), _BUFFER_DATA, windowed) if wt.Buffer() else None
            if here is not None:
                if there is None:
                    raise ExportError(f"tensor {i} of a streaming graph has data its windowed tensor {sources[i]} lacks")
                pairs.append((here[0], there[1]))
        q, wq, fq = t.Quantization(), wt.Quantization(), full.Subgraphs(0).Tensors(i).Quantization()
        for slot in (_QUANT_SCALE, _QUANT_ZERO_POINT):
            here = _vector_at(q, slot, part) if q is not None else None
            if here is None:
                continue
            there = _vector_at(wq, slot, windowed) if wq is not None else None
            own = _vector_at(fq, slot, graph)
            if there is None or own is None or _u32(graph, own[1]) != _u32(windowed, there[1]):
                raise ExportError(f"tensor {i} of a streaming graph has a quantization its windowed tensor {sources[i]} does not")
            pairs.append((here[0], there[1]))
        for field, target in pairs:
            value = windowed_at + target - (part_at + field)
            if done.setdefault(field, value) != value:
                raise ExportError(f"two windowed vectors claim the same field of a streaming graph (tensor {i})")
            part[field : field + 4] = value.to_bytes(4, "little")


def link_graphs(graphs: StreamingGraphs, windowed: bytes) -> LinkedGraphs:
    """The step and head graphs of `graphs` (made from `windowed`) in their linked form."""
    step, head = bytearray(_placeholders(graphs.step)), bytearray(_placeholders(graphs.head))
    step += bytes(-len(step) % _ALIGN)
    head += bytes(-len(head) % _ALIGN)
    head_at, windowed_at = len(step), len(step) + len(head)
    _link(step, 0, graphs.step, graphs.step_sources, bytes(windowed), windowed_at)
    _link(head, head_at, graphs.head, graphs.head_sources, bytes(windowed), windowed_at)
    return LinkedGraphs(bytes(step + head), head_at)

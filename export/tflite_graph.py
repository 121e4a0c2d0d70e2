"""Read a .tflite flatbuffer: operators, tensors, their data and quantization, with byte offsets.

The offsets are what makes byte-patching possible: a language model is the base flatbuffer with
some tensor-data and quantization-vector bytes rewritten in place, and `assert_layout_identical`
proves that nothing else differs. Parsing uses the generated LiteRT schema (`ai_edge_litert`,
pure Python on top of `flatbuffers`), so no TensorFlow import is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from polykws.core import PolykwsError

OPCODE_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_NP_TYPES = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT64: np.int64,
}

# vtable offsets of the fields we locate (schema.fbs field index i -> 4 + 2*i)
_BUFFER_DATA = 4
_BUFFER_OFFSET = 6
_QUANT_SCALE = 8
_QUANT_ZERO_POINT = 10


class TfliteError(PolykwsError):
    """A .tflite file is malformed or not what the exporter expects."""


def _vector_span(tab: flatbuffers.table.Table, vtable_offset: int, elem_bytes: int) -> tuple[int, int] | None:
    """[start, end) byte range of a vector field inside the flatbuffer, or None when absent."""
    o = tab.Offset(vtable_offset)
    if o == 0:
        return None
    start = tab.Vector(o)
    return start, start + tab.VectorLen(o) * elem_bytes


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    type_name: str
    shape: tuple[int, ...]
    buffer: int
    data_span: tuple[int, int] | None  # constant data bytes in the file, None for activations
    scale_span: tuple[int, int] | None
    zero_point_span: tuple[int, int] | None
    scales: np.ndarray | None = field(repr=False, compare=False)
    zero_points: np.ndarray | None = field(repr=False, compare=False)
    quantized_dimension: int = 0

    @property
    def dtype(self):
        return _NP_TYPES.get(schema.TensorType.__dict__[self.type_name])

    @property
    def is_constant(self) -> bool:
        return self.data_span is not None

    def patchable_spans(self) -> list[tuple[int, int]]:
        return [s for s in (self.data_span, self.scale_span, self.zero_point_span) if s is not None and s[1] > s[0]]


@dataclass(frozen=True)
class OpInfo:
    index: int
    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


class TfliteGraph:
    """One-subgraph .tflite model, read-only."""

    def __init__(self, data: bytes, source: str = "model"):
        self.data = bytes(data)
        self.source = source
        try:
            if len(self.data) < 8 or self.data[4:8] != b"TFL3":
                raise TfliteError(f"{source}: not a .tflite flatbuffer (no TFL3 identifier)")
            model = schema.Model.GetRootAsModel(self.data, 0)
            if model.SubgraphsLength() != 1:
                raise TfliteError(f"{source}: {model.SubgraphsLength()} subgraphs; the exporter handles exactly one")
            sg = model.Subgraphs(0)
            self.inputs = tuple(int(i) for i in sg.InputsAsNumpy())
            self.outputs = tuple(int(i) for i in sg.OutputsAsNumpy())
            self.num_buffers = model.BuffersLength()
            self.tensors = [self._tensor(model, sg, i) for i in range(sg.TensorsLength())]
            self.ops = []
            for i in range(sg.OperatorsLength()):
                op = sg.Operators(i)
                code = model.OperatorCodes(op.OpcodeIndex())
                opcode = OPCODE_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
                if opcode == "CUSTOM":
                    opcode = f"CUSTOM:{(code.CustomCode() or b'').decode(errors='replace')}"
                self.ops.append(
                    OpInfo(i, opcode, tuple(int(t) for t in op.InputsAsNumpy()), tuple(int(t) for t in op.OutputsAsNumpy()))
                )
        except TfliteError:
            raise
        except Exception as exc:  # flatbuffers raises assorted errors on garbage
            raise TfliteError(f"{source}: unreadable .tflite ({exc.__class__.__name__}: {exc})") from None

    def _tensor(self, model, sg, i: int) -> TensorInfo:
        t = sg.Tensors(i)
        buf = model.Buffers(t.Buffer())
        if buf.Offset() not in (0, 1) and buf.Size() > 0:  # external (>2 GB) storage: never for KWS models
            raise TfliteError(f"{self.source}: tensor {i} keeps its data outside the flatbuffer")
        data_span = _vector_span(buf._tab, _BUFFER_DATA, 1)
        if data_span is not None and data_span[0] == data_span[1]:
            data_span = None
        q = t.Quantization()
        scales = zps = None
        scale_span = zp_span = None
        qdim = 0
        if q is not None:
            scale_span = _vector_span(q._tab, _QUANT_SCALE, 4)
            zp_span = _vector_span(q._tab, _QUANT_ZERO_POINT, 8)
            if scale_span is not None:
                scales = np.frombuffer(self.data[scale_span[0] : scale_span[1]], dtype="<f4").copy()
            if zp_span is not None:
                zps = np.frombuffer(self.data[zp_span[0] : zp_span[1]], dtype="<i8").copy()
            qdim = q.QuantizedDimension()
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return TensorInfo(
            index=i,
            name=(t.Name() or b"").decode(errors="replace"),
            type_name=TYPE_NAMES.get(t.Type(), f"TYPE{t.Type()}"),
            shape=shape,
            buffer=t.Buffer(),
            data_span=data_span,
            scale_span=scale_span,
            zero_point_span=zp_span,
            scales=scales,
            zero_points=zps,
            quantized_dimension=qdim,
        )

    # ------------------------------------------------------------------------------- access
    def opcodes(self) -> list[str]:
        return [op.opcode for op in self.ops]

    def array(self, tensor: int | TensorInfo) -> np.ndarray:
        t = self.tensors[tensor] if isinstance(tensor, int) else tensor
        if t.data_span is None:
            raise TfliteError(f"{self.source}: tensor {t.index} ({t.name}) has no constant data")
        dt = t.dtype
        if dt is None:
            raise TfliteError(f"{self.source}: tensor {t.index} has unsupported type {t.type_name}")
        a, b = t.data_span
        return np.frombuffer(self.data[a:b], dtype=np.dtype(dt).newbyteorder("<")).reshape(t.shape).copy()

    def input_tensor(self) -> TensorInfo:
        return self.tensors[self.inputs[0]]

    def output_tensor(self) -> TensorInfo:
        return self.tensors[self.outputs[0]]

    def weighted_ops(self) -> list[OpInfo]:
        """Ops with constant weights (and bias): the tensors a language delta can touch."""
        return [op for op in self.ops if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]

    def patchable_spans(self) -> list[tuple[int, int]]:
        spans = sorted(s for t in self.tensors for s in t.patchable_spans())
        return spans

    def structure(self) -> list[tuple]:
        """Everything but weight values and quantization values: ops, tensor types/shapes/buffers."""
        return [("io", self.inputs, self.outputs)] + [(op.opcode, op.inputs, op.outputs) for op in self.ops] + [
            (t.type_name, t.shape, t.buffer, t.quantized_dimension, None if t.scales is None else len(t.scales)) for t in self.tensors
        ]


def assert_layout_identical(base: bytes, other: bytes, what: str = "language model") -> None:
    """Same length, same graph structure, and every differing byte inside tensor data or quantization vectors.

    This is the precondition for a byte-patch blob: offsets in the base address the same fields
    in every language model.
    """
    if len(base) != len(other):
        raise TfliteError(f"{what}: {len(other)} bytes vs the base's {len(base)}: layouts differ")
    gb, go = TfliteGraph(base, "base"), TfliteGraph(other, what)
    if gb.structure() != go.structure():
        raise TfliteError(f"{what}: graph structure (ops, tensor shapes/types/buffers) differs from the base")
    spans = gb.patchable_spans()
    if [s for t in go.tensors for s in t.patchable_spans()] and sorted(s for t in go.tensors for s in t.patchable_spans()) != spans:
        raise TfliteError(f"{what}: tensor data or quantization vectors sit at different offsets than in the base")
    a = np.frombuffer(base, np.uint8)
    b = np.frombuffer(other, np.uint8)
    allowed = np.zeros(len(a), bool)
    for s, e in spans:
        allowed[s:e] = True
    stray = np.flatnonzero((a != b) & ~allowed)
    if stray.size:
        raise TfliteError(f"{what}: {stray.size} differing bytes outside tensor data/quantization (first at offset {int(stray[0])})")

"""PyTorch -> ONNX -> full-int8 TFLite, the route measured clean for TFLM on this toolchain.

1. `to_onnx`: the deployable graph is the model plus a softmax (training models emit logits,
   the device reads probabilities), exported with the dynamo exporter (opset 18, one file, no
   external data). The dynamo exporter folds eval-mode BatchNorm into the convolutions and the
   explicit ZeroPad2d into conv0's pads, so the ONNX graph is Conv/Relu/ReduceMean/Gemm/Softmax.
   onnxruntime parity (max-abs difference, argmax agreement) is checked on real features.
2. `onnx_to_saved_model`: onnx2tf 1.29.24 converts NCHW ONNX into an NHWC TF SavedModel. We ask
   it for the SavedModel only (its own int8 step runs five more conversions we do not use and
   hides the quantizer's settings) - measured 2.5 s instead of ~20 s for DS-CNN-S.
3. `float_tflite` / `int8_tflite`: `tf.lite.TFLiteConverter` on that SavedModel. The float graph
   is the same graph the quantizer sees (same folding, same tensor order), which is how language
   models are mapped onto the base's int8 tensors without any name matching. The int8 graph uses
   TFLITE_BUILTINS_INT8 only (no SELECT_TF_OPS: an op TFLM cannot run fails the conversion
   instead of slipping through), int8 input and output, per-channel weights, int32 biases, and a
   representative set of real features whose range is pinned to the frontend's full value range.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from polykws.datasets.frontend import FrontendConfig
from polykws.core import PolykwsError, atomic_write_bytes

ONNX_OPSET = 18
ONNX_INPUT_NAME = "features"
ONNX_OUTPUT_NAME = "probabilities"

# What TFLM runs well on a Cortex-M for a DS-CNN. Anything else (TRANSPOSE from layout
# conversion, GATHER, QUANTIZE/DEQUANTIZE float islands, ...) is refused. PAD is allowed because a
# conv that pads frequency but not time (ds_cnn_s_fb40_valid, the streaming variant) has no
# SAME/VALID form in TFLite; the SAME-padded models fold their padding into the convs and have
# none (tested).
TFLM_ALLOWED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX", "PAD"})


class ExportError(PolykwsError):
    """The export chain produced something we refuse to ship."""


# --------------------------------------------------------------------------------- torch side


class Deployable(nn.Module):
    """model -> softmax probabilities, the graph the device runs.

    The global pooling is one average pool over the whole feature map, which TFLite gets as
    AVERAGE_POOL_2D: CMSIS-NN has a kernel for it that is bit-exact against the host's TFLM
    runtime, so the firmware needs no kernel of its own (MEAN has none in CMSIS-NN and TFLM's
    reference MEAN costs about 1M instructions more per inference on an M4;
    docs/BENCHMARKS.md, "Global pooling on the device"). Numerically it is the model's `mean`.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = getattr(self.model, "forward_features", None)
        if features is None:
            return torch.softmax(self.model(x), dim=-1)
        f = features(x)
        pooled = F.avg_pool2d(f, kernel_size=(int(f.shape[2]), int(f.shape[3]))).flatten(1)
        return torch.softmax(self.model.forward_head(pooled), dim=-1)


def head_of(model: nn.Module) -> nn.Linear:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ExportError("the model must expose its classifier as `model.head` (an nn.Linear); see training/models/ds_cnn.py")
    return head


def pad_head(model: nn.Module, head_slots: int) -> nn.Module:
    """A copy whose head has `head_slots` rows: the real ones, then zero rows.

    Every language model then has the same FULLY_CONNECTED shape, so all of them are
    layout-identical to the base whatever their label count. The firmware reads only the first
    `num_labels` outputs; the exporter later gives the padding rows an int8 bias that pins their
    output to the minimum. Zero rows (logit 0) leave the calibrated range untouched, because
    every activation range already contains 0.
    """
    head = head_of(model)
    n = head.out_features
    if head_slots < n:
        raise ExportError(f"the model has {n} outputs but the shared head has only {head_slots} slots")
    padded = copy.deepcopy(model).eval()
    if head_slots == n:
        return padded
    new = nn.Linear(head.in_features, head_slots, bias=True)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[:n] = head.weight
        if head.bias is not None:
            new.bias[:n] = head.bias
    padded.head = new
    return padded


def torch_logits(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float logits for features (N, frames, features) - the reference for every int8 comparison."""
    model = model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))[:, None]
            out.append(model(xb).numpy())
    return np.concatenate(out) if out else np.zeros((0, head_of(model).out_features), np.float32)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter/converter chatter on stdout/stderr (Python level) without losing exceptions."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@dataclass(frozen=True)
class OnnxParity:
    samples: int
    max_abs_diff: float
    argmax_agreement: float

    def to_dict(self) -> dict:
        return {"samples": self.samples, "max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement}


def to_onnx(model: nn.Module, frontend_cfg: FrontendConfig, path: str | os.PathLike) -> Path:
    """Export `model` (+ softmax) as a single-file ONNX graph for input (1, 1, frames, features)."""
    path = Path(path)
    frames, feats = frontend_cfg.input_shape
    deploy = Deployable(copy.deepcopy(model).eval()).eval()
    example = torch.zeros(1, 1, frames, feats)
    with tempfile.TemporaryDirectory(prefix="polykws-onnx-") as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with _quiet():
            torch.onnx.export(
                deploy,
                (example,),
                str(tmp_path),
                dynamo=True,
                opset_version=ONNX_OPSET,
                external_data=False,
                input_names=[ONNX_INPUT_NAME],
                output_names=[ONNX_OUTPUT_NAME],
                verbose=False,
            )
        extra = sorted(p.name for p in Path(tmp).iterdir() if p.name != "model.onnx")
        if extra:
            raise ExportError(f"ONNX export wrote external data files {extra}; expected one self-contained file")
        atomic_write_bytes(path, _without_stack_traces(tmp_path.read_bytes()))
    return path


# The exporter records each node's Python stack trace: absolute source paths and line numbers,
# so the same model exported from another checkout, or after an edit elsewhere in a file,
# would give other ONNX bytes. The rest of the node metadata names modules, not places.
_STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def _without_stack_traces(data: bytes) -> bytes:
    import onnx

    m = onnx.load_from_string(data)
    for graph_nodes in [m.graph.node, *(f.node for f in m.functions)]:
        for node in graph_nodes:
            keep = [(p.key, p.value) for p in node.metadata_props if p.key != _STACK_TRACE_KEY]
            del node.metadata_props[:]
            for k, v in keep:
                node.metadata_props.add(key=k, value=v)
    return m.SerializeToString()


def onnx_parity(model: nn.Module, onnx_path: str | os.PathLike, x: np.ndarray) -> OnnxParity:
    """onnxruntime vs torch probabilities on real features."""
    import onnxruntime as ort

    if len(x) == 0:
        raise ExportError("ONNX parity needs at least one feature sample")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    ref = torch.softmax(torch.from_numpy(torch_logits(model, x)), dim=-1).numpy()
    got = np.concatenate([sess.run(None, {ONNX_INPUT_NAME: np.asarray(xi, np.float32)[None, None]})[0] for xi in x])
    return OnnxParity(
        samples=len(x),
        max_abs_diff=float(np.max(np.abs(got - ref))),
        argmax_agreement=float(np.mean(got.argmax(1) == ref.argmax(1))),
    )


# ------------------------------------------------------------------------------- TFLite side


def onnx_to_saved_model(onnx_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """onnx2tf -> SavedModel in `out_dir` (onnx2tf rewrites its input, so it gets a copy)."""
    import onnx2tf
    import tf_keras

    # Keras numbers layers per process ("model", "model_1", ...) and those names end up in the
    # .tflite, so a second conversion in one process would differ in bytes and even in length.
    # A fresh Keras session makes every conversion identical to the first.
    tf_keras.backend.clear_session()
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    work_copy = out_dir.parent / f".{out_dir.name}.input.onnx"
    shutil.copyfile(onnx_path, work_copy)
    try:
        with _quiet():
            onnx2tf.convert(
                input_onnx_file_path=str(work_copy),
                output_folder_path=str(out_dir),
                non_verbose=True,
                verbosity="error",
            )
    except SystemExit as exc:  # onnx2tf calls sys.exit on conversion errors
        raise ExportError(f"onnx2tf failed on {onnx_path} (exit {exc.code})") from None
    finally:
        work_copy.unlink(missing_ok=True)
    if not (out_dir / "saved_model.pb").exists():
        raise ExportError(f"onnx2tf produced no SavedModel for {onnx_path}")
    return out_dir


def _converter(saved_model: Path):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model))


def float_tflite(saved_model: str | os.PathLike) -> bytes:
    """The float graph the quantizer starts from (BN folded, NHWC, TFLite weight layouts)."""
    import tensorflow as tf

    conv = _converter(Path(saved_model))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with _quiet():
        return bytes(conv.convert())


def pinned_calibration(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Calibration features whose min and max are exactly the frontend's full range.

    microWakeWord's trick: one value of one sample is set to the range's minimum and one of
    another to its maximum, so the int8 input scale covers every value the frontend can emit
    (the device clips to the same range) instead of whatever the calibration clips happened to
    reach. Both go into column 0 of the first frame, where real values span most of the range.
    """
    lo, hi = (float(v) for v in value_range)
    x = np.clip(np.asarray(x, dtype=np.float32), lo, hi).copy()
    if len(x) < 2:
        raise ExportError("calibration needs at least 2 feature samples")
    x[0, 0, 0] = lo
    x[1, 0, 0] = hi
    return x


def int8_tflite(saved_model: str | os.PathLike, calibration_x: np.ndarray, value_range: tuple[float, float]) -> bytes:
    """Full-integer TFLite: int8 in/out/activations, per-channel int8 weights, int32 biases."""
    import tensorflow as tf

    cal = pinned_calibration(calibration_x, value_range)[..., None]  # NHWC, C=1

    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(len(cal)):
            yield [cal[i : i + 1]]

    conv = _converter(Path(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.representative_dataset = representative
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        with _quiet():
            return bytes(conv.convert())
    except Exception as exc:
        raise ExportError(f"int8 conversion of {saved_model} failed: {exc}") from None


def check_tflm_ops(tflite: bytes, allowed: Sequence[str] = tuple(TFLM_ALLOWED_OPS), source: str = "model") -> list[str]:
    """The op list, or ExportError naming every op TFLM should not get and any non-int8 activation."""
    from polykws.export.tflite_graph import TfliteGraph

    g = TfliteGraph(tflite, source)
    ops = g.opcodes()
    bad = sorted(set(ops) - set(allowed))
    problems = []
    if bad:
        problems.append(f"ops outside the TFLM set {sorted(allowed)}: {bad}")
    float_tensors = [t.name for t in g.tensors if t.type_name in ("FLOAT32", "FLOAT16")]
    if float_tensors:
        problems.append(f"{len(float_tensors)} float tensors (e.g. {float_tensors[0]!r}); the model must be full-int8")
    io_types = {g.tensors[i].type_name for i in g.inputs + g.outputs}
    if io_types != {"INT8"}:
        problems.append(f"input/output types {sorted(io_types)}, expected INT8")
    if problems:
        raise ExportError(f"{source}: " + "; ".join(problems))
    return ops

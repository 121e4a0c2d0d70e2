"""Library API the pipeline calls: export a shared base once, then each language against it.

    base = export_base(model, frontend, labels, calibration_x, out_dir, parity_x=test_x, head_slots=12)
    uk = export_language(base, uk_model, uk_labels, uk_calibration_x, out_dir, lang="uk", parity_x=uk_test_x)
    acc, arena, pred = evaluate_tflm(uk.tflite, uk_test_x, uk_test_y, num_labels=len(uk_labels))
    apply_blob(base.tflite, uk.blob) == uk.tflite   # byte for byte

`export_base` converts with the real converter and pins the input range; `export_language`
never runs the int8 converter: it converts the language model to the same float graph and
requantizes it onto the base's scales inside a copy of the base's bytes (export.requant).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from polykws.datasets.frontend import FrontendConfig
from polykws.export.blob import apply_blob, encode_blob
from polykws.export.convert import (
    ExportError,
    check_tflm_ops,
    float_tflite,
    head_of,
    int8_tflite,
    onnx_parity,
    onnx_to_saved_model,
    pad_head,
    to_onnx,
    torch_logits,
)
from polykws.export.requant import Requantized, head_op_index, pad_head_rows, requantize_language, verify_requantizer
from polykws.export.tflite_graph import TfliteGraph, assert_layout_identical
from polykws.core import PolykwsError, atomic_write_bytes, atomic_write_json, sha256_bytes
from polykws.core.int8 import HEAD_WEIGHT_BITS

EXPORT_FORMAT_VERSION = 1
# ONNX parity on real features: probabilities agree to float32 rounding, argmax everywhere.
PARITY_MAX_ABS_DIFF = 1e-4
PARITY_MIN_ARGMAX_AGREEMENT = 1.0


@dataclass
class ExportedModel:
    """One exported int8 model (the base or a language) and everything needed to trust and ship it."""

    lang: str
    labels: tuple[str, ...]
    frontend: FrontendConfig
    head_slots: int
    tflite: bytes = field(repr=False)
    float_tflite: bytes = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)
    blob: bytes | None = field(default=None, repr=False)  # languages only
    onnx: bytes | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.tflite)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def is_base(self) -> bool:
        return self.blob is None

    @property
    def input_scale(self) -> float:
        return float(TfliteGraph(self.tflite).input_tensor().scales[0])

    @property
    def input_zero_point(self) -> int:
        return int(TfliteGraph(self.tflite).input_tensor().zero_points[0])

    def describe(self) -> dict[str, Any]:
        d = {
            "format": "polykws-export",
            "format_version": EXPORT_FORMAT_VERSION,
            "lang": self.lang,
            "labels": list(self.labels),
            "num_labels": self.num_labels,
            "head_slots": self.head_slots,
            "frontend": self.frontend.to_dict(),
            "frontend_hash": self.frontend.config_hash(),
            "tflite_bytes": len(self.tflite),
            "tflite_sha256": self.sha256,
            "input_scale": self.input_scale,
            "input_zero_point": self.input_zero_point,
            "ops": TfliteGraph(self.tflite).opcodes(),
            "meta": self.meta,
        }
        d["float_tflite_sha256"] = sha256_bytes(self.float_tflite)
        if self.blob is not None:
            d["blob_bytes"] = len(self.blob)
            d["blob_sha256"] = sha256_bytes(self.blob)
        if self.onnx is not None:
            d["onnx_sha256"] = sha256_bytes(self.onnx)
        return d

    def save(self, out_dir: str | os.PathLike) -> Path:
        """`<lang>.tflite`, `<lang>.float.tflite`, `<lang>.json` (+ `<lang>.blob`, `<lang>.onnx`), atomically."""
        out = Path(out_dir)
        atomic_write_bytes(out / f"{self.lang}.tflite", self.tflite)
        atomic_write_bytes(out / f"{self.lang}.float.tflite", self.float_tflite)
        # A blob or ONNX file left by an earlier export of the same name is removed: load()
        # refuses files the description does not name.
        for suffix, data in ((".blob", self.blob), (".onnx", self.onnx)):
            if data is not None:
                atomic_write_bytes(out / f"{self.lang}{suffix}", data)
            else:
                (out / f"{self.lang}{suffix}").unlink(missing_ok=True)
        atomic_write_json(out / f"{self.lang}.json", self.describe())
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike, lang: str) -> "ExportedModel":
        out = Path(out_dir)
        path = out / f"{lang}.json"
        try:
            d = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise ExportError(f"{path}: exported model description not found") from None
        except OSError as exc:
            raise ExportError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ExportError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(d, dict):
            raise ExportError(f"{path}: top level is a {type(d).__name__}, not an object")
        if d.get("format") != "polykws-export" or d.get("format_version") != EXPORT_FORMAT_VERSION:
            raise ExportError(f"{path}: not a polykws export (format {d.get('format')!r} v{d.get('format_version')})")
        if d.get("lang") != lang:
            raise ExportError(f"{path}: describes language {d.get('lang')!r}, not {lang!r}")
        missing = [k for k in ("labels", "frontend", "head_slots", "tflite_sha256") if k not in d]
        if missing:
            raise ExportError(f"{path}: missing {', '.join(missing)}")
        if not isinstance(d["labels"], list) or not d["labels"] or not all(isinstance(x, str) for x in d["labels"]):
            raise ExportError(f"{path}: labels must be a non-empty list of strings")
        if not isinstance(d["head_slots"], int) or isinstance(d["head_slots"], bool) or d["head_slots"] < len(d["labels"]):
            raise ExportError(f"{path}: head_slots must be an integer >= the {len(d['labels'])} labels")
        if not isinstance(d["frontend"], dict) or not isinstance(d.get("meta", {}), dict):
            raise ExportError(f"{path}: frontend and meta must be objects")
        for key in ("tflite_sha256", "float_tflite_sha256", "blob_sha256", "onnx_sha256"):
            if key in d and not isinstance(d[key], str):
                raise ExportError(f"{path}: {key} must be a hex string")

        def verified(suffix: str, key: str, required: bool) -> bytes | None:
            # Every file the description names is checked against its recorded SHA-256; a file
            # it does not name (a blob beside a base) is stale and refused.
            p = out / f"{lang}{suffix}"
            if not p.exists():
                if required or key in d:
                    raise ExportError(f"{p}: not found ({path.name} {'needs' if required else 'records'} it)")
                return None
            if key not in d:
                raise ExportError(f"{p}: not described by {path.name} (a stale file from another export?)")
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise ExportError(f"{p}: cannot read ({exc.strerror or exc})") from None
            if sha256_bytes(data) != d[key]:
                raise ExportError(f"{p}: SHA-256 does not match {path.name}")
            return data

        tflite = verified(".tflite", "tflite_sha256", True)
        float_tflite = verified(".float.tflite", "float_tflite_sha256", True) if "float_tflite_sha256" in d else None
        if float_tflite is None:
            try:
                float_tflite = (out / f"{lang}.float.tflite").read_bytes()
            except OSError as exc:
                raise ExportError(f"{out / (lang + '.float.tflite')}: cannot read ({exc.strerror or exc})") from None
        blob = verified(".blob", "blob_sha256", "blob_bytes" in d)
        onnx = verified(".onnx", "onnx_sha256", False) if "onnx_sha256" in d else None
        return cls(
            lang=d["lang"],
            labels=tuple(d["labels"]),
            frontend=_frontend_of(d["frontend"], path),
            head_slots=int(d["head_slots"]),
            tflite=tflite,
            float_tflite=float_tflite,
            meta=d.get("meta", {}),
            blob=blob,
            onnx=onnx,
        )


def _frontend_of(d: dict, path: Path) -> FrontendConfig:
    try:
        return FrontendConfig.from_dict(d)
    except PolykwsError as exc:
        raise ExportError(f"{path}: frontend: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{path}: frontend: {exc}") from None


def _check_features(x: np.ndarray, frontend: FrontendConfig, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or tuple(x.shape[1:]) != tuple(frontend.input_shape):
        raise ExportError(f"{what}: expected features of shape (N, {frontend.input_shape[0]}, {frontend.input_shape[1]}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ExportError(f"{what}: non-finite feature values")
    return x


def calibration_subset(x: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """At most `max_samples` rows, drawn with a fixed seed (feature splits are ordered by class,
    so a prefix would calibrate on a few classes only); deterministic for identical inputs."""
    if max_samples < 2:
        raise ExportError(f"max_calibration must be >= 2, got {max_samples}")
    if len(x) <= max_samples:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=max_samples, replace=False))
    return x[idx]


def _check_labels(model: nn.Module, labels: Sequence[str]) -> tuple[str, ...]:
    labels = tuple(str(lb) for lb in labels)
    n = head_of(model).out_features
    if len(labels) != n:
        raise ExportError(f"{len(labels)} labels for a model with {n} outputs")
    if len(set(labels)) != len(labels):
        raise ExportError(f"duplicate labels: {labels}")
    return labels


def _float_graph(model: nn.Module, frontend: FrontendConfig, parity_x: np.ndarray, work: Path) -> tuple[bytes, bytes, dict, Path]:
    """ONNX (+ parity) -> SavedModel -> float TFLite. Returns (onnx bytes, float tflite, parity, saved model dir)."""
    onnx_path = to_onnx(model, frontend, work / "model.onnx")
    parity = onnx_parity(model, onnx_path, parity_x)
    if parity.max_abs_diff > PARITY_MAX_ABS_DIFF or parity.argmax_agreement < PARITY_MIN_ARGMAX_AGREEMENT:
        raise ExportError(f"ONNX parity failed: {parity.to_dict()} (limits {PARITY_MAX_ABS_DIFF}, {PARITY_MIN_ARGMAX_AGREEMENT})")
    saved_model = onnx_to_saved_model(onnx_path, work / "saved_model")
    return onnx_path.read_bytes(), float_tflite(saved_model), parity.to_dict(), saved_model


def export_base(
    model: nn.Module,
    frontend: FrontendConfig,
    labels: Sequence[str],
    calibration_x: np.ndarray,
    out_dir: str | os.PathLike | None = None,
    *,
    lang: str = "base",
    parity_x: np.ndarray | None = None,
    head_slots: int | None = None,
    max_calibration: int = 500,
    meta: dict[str, Any] | None = None,
) -> ExportedModel:
    """Quantize the shared base once: full-int8 TFLite with the input pinned to `frontend.value_range`.

    `calibration_x`: real training features (N, frames, features); a seeded sample of
    `max_calibration` of them is used. `parity_x`: real test features for the ONNX parity check (default: calibration).
    `head_slots`: rows of the shared head (>= every language's label count); defaults to the
    base's own label count.
    """
    labels = _check_labels(model, labels)
    head_slots = int(head_slots or len(labels))
    cal = calibration_subset(_check_features(calibration_x, frontend, "calibration features"), max_calibration)
    par = _check_features(parity_x if parity_x is not None else cal, frontend, "parity features")
    deploy = pad_head(model, head_slots)
    with tempfile.TemporaryDirectory(prefix="polykws-export-") as tmp:
        onnx_bytes, fl, parity, saved_model = _float_graph(deploy, frontend, par, Path(tmp))
        q = int8_tflite(saved_model, cal, frontend.value_range)
    ops = check_tflm_ops(q, source=f"{lang} int8 model")
    gq, gf = TfliteGraph(q, "base int8"), TfliteGraph(fl, "base float")
    checked = verify_requantizer(gq, gf, skip_rows={head_op_index(gq): len(labels)})
    q = pad_head_rows(q, len(labels))
    assert_layout_identical(gq.data, q, "padded base")
    logits = torch_logits(model, cal)
    ex = ExportedModel(
        lang=lang,
        labels=labels,
        frontend=frontend,
        head_slots=head_slots,
        tflite=q,
        float_tflite=fl,
        onnx=onnx_bytes,
        meta={
            "role": "base",
            "onnx_parity": parity,
            "ops": ops,
            "calibration_samples": len(cal),
            "input_range": list(frontend.value_range),
            "requantizer_values_reproduced": checked,
            "head_logit_range": [float(logits.min()), float(logits.max())],
            **(meta or {}),
        },
    )
    if out_dir is not None:
        ex.save(out_dir)
    return ex


def base_from_tflite(
    model: nn.Module,
    frontend: FrontendConfig,
    labels: Sequence[str],
    tflite: bytes,
    *,
    lang: str,
    head_slots: int,
    parity_x: np.ndarray,
    meta: dict[str, Any] | None = None,
) -> ExportedModel:
    """A base export around an int8 base that already exists (the shipped one), so languages export against its bytes.

    Languages are requantized onto the base's own int8 file, so it is used as given, never
    re-quantized; only its float graph (which `export_language` reads the base's float weights
    from) is converted here from `model` and checked for ONNX parity on `parity_x`.
    """
    labels = _check_labels(model, labels)
    gq = TfliteGraph(bytes(tflite), f"{lang} int8 base")
    head = gq.tensors[gq.ops[head_op_index(gq)].inputs[1]]
    rows = head.shape[head.quantized_dimension]
    if rows != head_slots or len(labels) > head_slots:
        raise ExportError(f"{lang} int8 base: head has {rows} rows, expected {head_slots} slots for {len(labels)} labels")
    par = _check_features(parity_x, frontend, f"{lang} parity features")
    with tempfile.TemporaryDirectory(prefix="polykws-export-") as tmp:
        _, fl, parity, _ = _float_graph(pad_head(model, head_slots), frontend, par, Path(tmp))
    return ExportedModel(lang=lang, labels=labels, frontend=frontend, head_slots=head_slots, tflite=bytes(tflite), float_tflite=fl,
                         meta={"role": "base", "onnx_parity": parity, **(meta or {})})


def _check_language_target(base: ExportedModel, model: nn.Module, labels: Sequence[str], lang: str) -> tuple[str, ...]:
    """The checked labels; raises unless `base` is a base export, `lang` is not its code and its head has room."""
    if not base.is_base:
        raise ExportError(f"{base.lang!r} is a language export, not a base")
    if lang == base.lang:
        raise ExportError(f"language code {lang!r} equals the base's")
    labels = _check_labels(model, labels)
    if len(labels) > base.head_slots:
        raise ExportError(f"{lang}: {len(labels)} labels but the base's head has {base.head_slots} slots; re-export the base with head_slots >= {len(labels)}")
    return labels


def _language_info(
    base: ExportedModel, rq: Requantized, *, scales: str, head_scales: str, head_range: str, head_weight_bits: int, parity: dict, ops: Any,
    calibration_samples: int, logits: np.ndarray, meta: dict[str, Any] | None,
) -> dict[str, Any]:
    """The language export's description: its base, quantization choices, parity and requant report."""
    return {
        "role": "language",
        "base_sha256": base.sha256,
        "base_lang": base.lang,
        "scales": scales,
        "head_scales": head_scales,
        "head_range": head_range,
        "head_weight_bits": head_weight_bits,
        "onnx_parity": parity,
        "ops": ops,
        "calibration_samples": calibration_samples,
        "head_logit_range": [float(logits.min()), float(logits.max())],
        "head_output_qparams": list(rq.head_output) if rq.head_output else None,
        "requant": rq.summary(),
        "requant_tensors": [r.to_dict() for r in rq.reports],
        **(meta or {}),
    }


def _blob_meta(base: ExportedModel, lang: str, *, scales: str, head_scales: str, head_range: str, head_weight_bits: int,
               meta: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata a language blob references: its base, quantization choices and training provenance."""
    return {
        "format": "polykws-language",
        "lang": lang,
        "base_lang": base.lang,
        "base_model": base.meta.get("model_name"),
        # The hash only: a blob cannot change the frontend (it is the base's), the full config
        # lives in the base's manifest entry, and its ~290 B would be ~10 % of a small blob.
        "frontend_hash": base.frontend.config_hash(),
        "head_slots": base.head_slots,
        "scales": scales,
        "head_scales": head_scales,
        "head_range": head_range,
        "head_weight_bits": head_weight_bits,
        **{k: v for k, v in (meta or {}).items() if k in ("method", "budget_params", "delta_config", "seed", "model_sha256")},
    }


def _language_blob(base: ExportedModel, data: bytes, lang: str, labels: tuple[str, ...], blob_meta: dict[str, Any],
                   thresholds: bytes = b"") -> bytes:
    """The blob that turns `base.tflite` into `data`, checked to reproduce it."""
    blob = encode_blob(base.tflite, data, lang, labels, blob_meta, thresholds=thresholds)
    if apply_blob(base.tflite, blob) != data:  # encode_blob/apply_blob are tested; this guards the artifact
        raise ExportError(f"{lang}: blob does not reproduce the language model")
    return blob


def export_language(
    base: ExportedModel,
    model: nn.Module,
    labels: Sequence[str],
    calibration_x: np.ndarray,
    out_dir: str | os.PathLike | None = None,
    *,
    lang: str,
    scales: str = "frozen",
    head_scales: str = "refit",
    head_range: str = "refit",
    head_weight_bits: int = HEAD_WEIGHT_BITS,
    parity_x: np.ndarray | None = None,
    max_calibration: int = 500,
    meta: dict[str, Any] | None = None,
) -> ExportedModel:
    """A language's int8 model, layout-identical to `base`, plus its blob against `base.tflite`.

    `model` is the merged language model (same architecture as the base's, its own head).
    `scales`: how touched body tensors are quantized - "frozen" (base scales, clamped),
    "refit" (new per-channel scales) or "auto" (per channel the base's scale, re-fitted where
    the weights would clamp or the whole channel was rescaled; export/requant.py).
    `head_scales` / `head_range`: "refit" (default) or "frozen" for the head's weight scales and
    output range; `head_weight_bits` how many bits of int8 the re-fitted head's rows use
    (HEAD_WEIGHT_BITS; 8 is the converter's own quantization). Activation ranges of the body are
    always the base's.
    """
    labels = _check_language_target(base, model, labels, lang)
    head_weight_bits = head_weight_bits if head_scales == "refit" else 8  # frozen rows keep the base's 8 bits
    cal = calibration_subset(_check_features(calibration_x, base.frontend, f"{lang} calibration features"), max_calibration)
    par = _check_features(parity_x if parity_x is not None else cal, base.frontend, f"{lang} parity features")
    deploy = pad_head(model, base.head_slots)
    with tempfile.TemporaryDirectory(prefix=f"polykws-export-{lang}-") as tmp:
        onnx_bytes, fl, parity, _ = _float_graph(deploy, base.frontend, par, Path(tmp))
    logits = torch_logits(model, cal)
    rq = requantize_language(
        base.tflite,
        base.float_tflite,
        fl,
        num_labels=len(labels),
        base_num_labels=base.num_labels,
        head_logit_range=(float(logits.min()), float(logits.max())),
        scales=scales,
        head_scales=head_scales,
        head_range=head_range,
        head_weight_bits=head_weight_bits,
    )
    assert_layout_identical(base.tflite, rq.data, f"{lang} model")
    ops = check_tflm_ops(rq.data, source=f"{lang} int8 model")
    policies = {"scales": scales, "head_scales": head_scales, "head_range": head_range, "head_weight_bits": head_weight_bits}
    info = _language_info(base, rq, **policies, parity=parity, ops=ops, calibration_samples=len(cal), logits=logits, meta=meta)
    blob_meta = _blob_meta(base, lang, **policies, meta=meta)
    blob = _language_blob(base, rq.data, lang, labels, blob_meta)
    # The blob references its metadata by hash only (meta_id); the text travels in the export
    # description and from there into the pack manifest.
    info["blob_meta"] = blob_meta
    ex = ExportedModel(
        lang=lang,
        labels=labels,
        frontend=base.frontend,
        head_slots=base.head_slots,
        tflite=rq.data,
        float_tflite=fl,
        meta=info,
        blob=blob,
        onnx=onnx_bytes,
    )
    if out_dir is not None:
        ex.save(out_dir)
    return ex


def with_thresholds(base: ExportedModel, language: ExportedModel, thresholds: bytes, log2_temperature: int = 0) -> ExportedModel:
    """`language` with its blob re-encoded to carry per-label detection thresholds (one byte per label)
    and, when `log2_temperature` > 0, the softmax temperature they were chosen at.

    The temperature is folded into the head's quantization scales (`posterior.head_temperature`:
    the int8 logits stay bit-identical, the softmax reads them at scale / 2**k), so the blob
    patches a few more scale bytes and the device runs the same graph. The thresholds are covered
    by the blob's integrity digest, so the device uses exactly the ones chosen for this model.
    """
    from polykws.export.posterior import head_temperature

    if language.blob is None:
        raise ExportError(f"{language.lang!r} has no blob (is it the base?)")
    thresholds = bytes(thresholds)
    if len(thresholds) != language.num_labels:
        raise ExportError(f"{language.lang}: {len(thresholds)} thresholds for {language.num_labels} labels")
    blob_meta = language.meta.get("blob_meta")
    if blob_meta is None:
        raise ExportError(f"{language.lang}: the export carries no blob metadata to re-encode its blob with")
    tflite, meta = language.tflite, language.meta
    if log2_temperature:
        tflite = head_temperature(language.tflite, log2_temperature)
        blob_meta = {**blob_meta, "log2_temperature": int(log2_temperature)}
        meta = {**meta, "blob_meta": blob_meta, "log2_temperature": int(log2_temperature)}
    blob = _language_blob(base, tflite, language.lang, tuple(language.labels), blob_meta, thresholds)
    return replace(language, tflite=tflite, meta=meta, blob=blob)


def evaluate_export(ex: ExportedModel, model: nn.Module | None, x: np.ndarray, y: np.ndarray, *, cross_check_ref: bool = True) -> dict[str, Any]:
    """Float (torch) vs int8 (TFLM) accuracy, arena bytes and the TFLM-vs-BUILTIN_REF bit check; stored in `ex.meta["eval"]`."""
    from polykws.export.evaluate import cross_check, evaluate_tflm

    x = _check_features(x, ex.frontend, f"{ex.lang} evaluation features")
    y = np.asarray(y)
    r = evaluate_tflm(ex.tflite, x, y, num_labels=ex.num_labels)
    ev: dict[str, Any] = {"int8_acc": r.accuracy, "arena_bytes": r.arena_bytes, "test_clips": int(len(y))}
    if model is not None:
        logits = torch_logits(model, x)
        ev["float_acc"] = float(np.mean(logits.argmax(1) == y))
        ev["float_int8_agreement"] = float(np.mean(logits.argmax(1) == r.predictions))
    if cross_check_ref:
        cc = cross_check(ex.tflite, x, ex.num_labels, tflm_outputs=r.outputs)
        ev["tflm_vs_ref_mismatched_samples"] = cc.mismatched_samples
        ev["tflm_vs_ref_max_abs_diff_lsb"] = cc.max_abs_diff_lsb
        ev["tflm_vs_ref_argmax_disagreements"] = cc.argmax_disagreements
    ex.meta["eval"] = ev
    return ev

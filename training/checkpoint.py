"""Self-describing model files: weights + everything needed to rebuild and trust them.

A model file holds the registered model name and constructor kwargs, the label list, the
frontend config, a format version and the SHA-256 of the weights (`state_sha256`), so deltas,
exports and blobs can name exactly which base they were made against.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polykws.datasets.frontend import FrontendConfig
from polykws.training.models import create_model
from polykws.core import PolykwsError, atomic_write_bytes

MODEL_FORMAT_VERSION = 1


def _equals(value: Any, expected: str | int) -> bool:
    """value == expected for a value of expected's own type only (a tensor never compares)."""
    return type(value) is type(expected) and value == expected


def state_sha256(model_or_state: nn.Module | dict[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every tensor in sorted-name order.

    Independent of the file container, so the same weights always give the same hash.
    """
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


@dataclass
class LoadedModel:
    model: nn.Module
    model_name: str
    model_kwargs: dict[str, Any]
    labels: tuple[str, ...]
    frontend: FrontendConfig
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)


def save_model(
    path: str | Path,
    model: nn.Module,
    *,
    labels: list[str] | tuple[str, ...],
    frontend: FrontendConfig,
    meta: dict[str, Any] | None = None,
) -> str:
    """Write `model` atomically; returns its state SHA-256."""
    name = getattr(model, "model_name", None)
    if name is None:
        raise PolykwsError("save_model needs a model built by create_model() (it carries model_name)")
    if len(labels) != getattr(model, "num_classes", len(labels)):
        raise PolykwsError(f"{len(labels)} labels for a model with {model.num_classes} outputs")
    kwargs = {"num_classes": int(model.num_classes), "input_shape": list(model.input_shape)}
    # contiguous(): a model trained in channels_last keeps that layout; files stay layout-free.
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = state_sha256(state)
    payload = {
        "format": "polykws-model",
        "format_version": MODEL_FORMAT_VERSION,
        "model_name": name,
        "model_kwargs": kwargs,
        "labels": list(labels),
        "frontend": frontend.to_dict(),
        "state_sha256": digest,
        "meta": meta or {},
        "state_dict": state,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return digest


def load_model(path: str | Path) -> LoadedModel:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PolykwsError(f"{path}: model file not found") from None
    except Exception as exc:  # torch raises many types for corrupt files
        raise PolykwsError(f"{path}: not a readable polykws model ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(payload, dict) or not _equals(payload.get("format"), "polykws-model"):
        raise PolykwsError(f"{path}: not a polykws model file")
    if not _equals(payload.get("format_version"), MODEL_FORMAT_VERSION):
        raise PolykwsError(f"{path}: model format version {payload.get('format_version')} is not supported (want {MODEL_FORMAT_VERSION})")
    fields = {"model_name": str, "model_kwargs": dict, "labels": list, "frontend": dict, "state_sha256": str, "state_dict": dict}
    for key, kind in fields.items():
        if not isinstance(payload.get(key), kind):
            raise PolykwsError(f"{path}: model file field {key!r} is {type(payload.get(key)).__name__}, not {kind.__name__}")
    labels = payload["labels"]
    if not labels or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
        raise PolykwsError(f"{path}: labels must be distinct strings")
    state = payload["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise PolykwsError(f"{path}: state_dict must map names to tensors")
    # The recorded hash is checked before anything is built from the file's contents.
    if state_sha256(state) != payload["state_sha256"]:
        raise PolykwsError(f"{path}: weights do not match their recorded SHA-256 (file corrupt?)")
    kwargs = dict(payload["model_kwargs"])
    try:
        kwargs["input_shape"] = tuple(int(v) for v in kwargs["input_shape"])
        model = create_model(payload["model_name"], **kwargs)
        model.load_state_dict(state)
        frontend = FrontendConfig.from_dict(payload["frontend"])
    except PolykwsError as exc:
        raise PolykwsError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise PolykwsError(f"{path}: model file does not describe a buildable model ({type(exc).__name__}: {exc})") from None
    if getattr(model, "num_classes", len(labels)) != len(labels):
        raise PolykwsError(f"{path}: {len(labels)} labels for a model with {model.num_classes} outputs")
    digest = state_sha256(model)
    model.eval()
    return LoadedModel(
        model=model,
        model_name=payload["model_name"],
        model_kwargs=kwargs,
        labels=tuple(labels),
        frontend=frontend,
        sha256=digest,
        meta=payload.get("meta") if isinstance(payload.get("meta"), dict) else {},
    )


def load_base(path: str | Path | None = None) -> LoadedModel:
    """A base model file, or the base shipped with the package when `path` is None.

    The shipped base's files are checked against their recorded SHA-256 (ShippedBaseError names
    the file), and its weights against the manifest's weights hash.
    """
    if path is not None:
        return load_model(path)
    from polykws.core.assets import ShippedBaseError, shipped_base

    sb = shipped_base()
    loaded = load_model(sb.checkpoint)
    if loaded.sha256 != sb.state_sha256 or loaded.labels != sb.labels:
        raise ShippedBaseError(f"{sb.checkpoint}: weights {loaded.sha256[:16]}... or labels differ from the manifest's "
                               f"{sb.state_sha256[:16]}...; the installed base is damaged (reinstall polykws, or pass --base)")
    return loaded


# --- Resumable training state -------------------------------------------------------------
# Separate from the deployable model file: it also holds optimizer/scheduler state and the
# metric history, and is only meaningful to fit() with the same config (checked by hash).

TRAIN_STATE_FORMAT_VERSION = 1


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a resumable training state atomically (a killed run keeps the previous epoch's)."""
    payload = _tensors_and_plain_data(
        {"format": "polykws-train-state", "format_version": TRAIN_STATE_FORMAT_VERSION, **state}
    )
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def _tensors_and_plain_data(obj: Any) -> Any:
    """obj with every dict entry that holds a class instance (not a tensor, container or scalar)
    left out, so the file loads with torch.load(weights_only=True).

    Such entries are configuration objects, e.g. the LR schedule's OptimConfig inside LambdaLR's
    state: the resuming run rebuilds them from its own config, which must hash the same.
    """
    if isinstance(obj, dict):
        return {k: _tensors_and_plain_data(v) for k, v in obj.items() if _is_plain(v)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tensors_and_plain_data(v) for v in obj)
    return obj


def _is_plain(v: Any) -> bool:
    if isinstance(v, (dict, list, tuple)):
        return True
    return v is None or isinstance(v, (torch.Tensor, str, bytes, int, float, bool, torch.dtype, torch.device, torch.Size))


def load_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        # weights_only=True: tensors and plain containers only, so a downloaded or tampered file
        # cannot run code on load; optimizer and scheduler states are made of nothing else.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PolykwsError(f"{path}: no training checkpoint to resume from") from None
    except Exception as exc:
        raise PolykwsError(f"{path}: unreadable training checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(payload, dict) or not _equals(payload.get("format"), "polykws-train-state"):
        raise PolykwsError(f"{path}: not a polykws training checkpoint")
    if not _equals(payload.get("format_version"), TRAIN_STATE_FORMAT_VERSION):
        raise PolykwsError(
            f"{path}: training checkpoint version {payload.get('format_version')} is not supported (want {TRAIN_STATE_FORMAT_VERSION})"
        )
    want = {"config_hash": str, "epoch": int, "model": dict, "optimizer": dict, "scheduler": dict, "history": list,
            "best_epoch": int, "best_sha256": (str, type(None)), "wall_time_s": (int, float)}
    for key, kind in want.items():
        if key not in payload:
            raise PolykwsError(f"{path}: training checkpoint has no {key!r}")
        if not isinstance(payload[key], kind) or (kind is int and isinstance(payload[key], bool)):
            raise PolykwsError(f"{path}: training checkpoint {key!r} is a {type(payload[key]).__name__}")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["model"].items()):
        raise PolykwsError(f"{path}: training checkpoint 'model' must map names to tensors")
    if not all(isinstance(h, dict) for h in payload["history"]):
        raise PolykwsError(f"{path}: training checkpoint history holds a non-object entry")
    return payload

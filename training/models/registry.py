"""Model registry (timm style): variants are named functions, created by name from configs."""

from __future__ import annotations

import functools
from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")

        # Calling the variant directly (ds_cnn_s()) tags the model too, so save_model() can
        # always record which registered constructor rebuilds it.
        @functools.wraps(fn)
        def build(*args, **kwargs) -> nn.Module:
            model = fn(*args, **kwargs)
            model.model_name = name  # type: ignore[attr-defined]
            return model

        build.model_name = name  # type: ignore[attr-defined]
        _MODELS[name] = build
        return build

    return deco


def create_model(name: str, **kwargs) -> nn.Module:
    try:
        fn = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}") from None
    model = fn(**kwargs)
    model.model_name = name  # type: ignore[attr-defined]
    return model


def list_models() -> list[str]:
    return sorted(_MODELS)

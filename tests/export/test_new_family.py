"""A delta family is one folder: a new family written to a temporary folder (and nowhere else)
is discovered, registered as a transfer method, trained, merged, exported to an int8 blob and
run under host TFLM, with no other edit.
"""

from __future__ import annotations

import sys
import textwrap
from types import SimpleNamespace

import pytest

import polykws.training.adapt.registry as method_registry
import polykws.training.deltas as deltas_pkg
import polykws.training.deltas.registry as delta_registry
from polykws.export.api import export_language
from polykws.export.blob import apply_blob, decode_blob, meta_id
from polykws.export.evaluate import evaluate_tflm
from polykws.training.adapt import TransferConfig, adapt, get_method, list_methods, method_config
from polykws.training.deltas import get_delta, list_deltas

FAMILY = "chanoffset"

FILES = {
    "__init__.py": f"""
        from polykws.training.deltas.registry import register_delta
        from polykws.training.deltas.{FAMILY}.config import ChanOffsetConfig
        from polykws.training.deltas.{FAMILY}.layer import ChanOffsetLayer

        register_delta("{FAMILY}", ChanOffsetConfig, ChanOffsetLayer)
    """,
    "config.py": """
        from dataclasses import dataclass

        from polykws.training.deltas.base import DeltaConfig


        @dataclass(frozen=True)
        class ChanOffsetConfig(DeltaConfig):
            \"\"\"A per-output-channel offset added to the layer's output. Cost = out_channels.\"\"\"
    """,
    "layer.py": """
        import torch
        from torch import nn

        from polykws.training.deltas.base import DeltaLayer
        from polykws.training.deltas.blob_bytes import bias_bytes


        class ChanOffsetLayer(DeltaLayer):
            def __init__(self, base_layer, cfg, *, site, context):
                super().__init__(base_layer, cfg, site=site, context=context)
                self.offset = nn.Parameter(base_layer.bias.new_zeros(base_layer.bias.shape))

            @classmethod
            def supports(cls, module, cfg):
                return getattr(module, "bias", None) is not None

            @classmethod
            def cost(cls, module, cfg):
                return int(module.bias.numel())

            @classmethod
            def blob_bytes(cls, module, cfg):
                return bias_bytes(module)

            def delta_weight(self):
                return torch.zeros_like(self.base_layer.weight)

            def delta_bias(self):
                return self.offset
    """,
}


@pytest.fixture()
def new_family(tmp_path, monkeypatch):
    """The family's folder in a temporary directory on the deltas package's search path; the
    registries are restored afterwards so the rest of the session never sees it."""
    folder = tmp_path / FAMILY
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(textwrap.dedent(text))
    monkeypatch.setattr(deltas_pkg, "__path__", [*deltas_pkg.__path__, str(tmp_path)])
    monkeypatch.setattr(delta_registry, "_FAMILIES", dict(delta_registry._FAMILIES))
    monkeypatch.setattr(method_registry, "_METHODS", dict(method_registry._METHODS))
    yield FAMILY
    for mod in [m for m in sys.modules if m.startswith(f"{deltas_pkg.__name__}.{FAMILY}")]:
        del sys.modules[mod]


def _splits(f):
    train = SimpleNamespace(x=f.x_train, y=f.y_train, labels=f.labels)
    test = SimpleNamespace(x=f.x_test, y=f.y_test, labels=f.labels)
    return {"train": train, "val": test, "test": test}


def test_a_new_family_folder_is_registered_trained_merged_and_exported(new_family, base_export, base_model, feats):
    assert new_family not in delta_registry._FAMILIES
    assert new_family in list_deltas() and new_family in list_methods()
    assert get_method(new_family).budgeted
    # Budget fitting comes from DeltaLayer's default on the family's own cost entry points.
    cfg = get_delta(new_family).layer_cls.fit_to_budget(base_model, budget_params=150)
    assert cfg is not None and cfg.targets == ("blocks.3.dw", "blocks.3.pw")  # 2 x 64 channels, deepest first

    f = feats["ar"]
    fast = TransferConfig(epochs=2, probe_epochs=3, batch_size=32, num_threads=1)
    result = adapt(base_model, _splits(f), method_config(new_family, budget_params=150), fast)
    assert result.cost.body == 128 and result.delta_model is not None
    assert {layer.family for layer in result.delta_model.delta_layers().values()} == {new_family}
    assert type(result.model) is type(base_model)

    ex = export_language(base_export, result.model, f.labels, f.x_train, lang="ar", parity_x=f.x_test[:16], meta={"method": new_family})
    assert apply_blob(base_export.tflite, ex.blob) == ex.tflite
    sites = ["conv0"] + [f"blocks.{i}.{k}" for i in range(4) for k in ("dw", "pw")] + ["head"]
    touched = {sites[i] for i, r in enumerate(ex.meta["requant_tensors"]) if r["touched"]}
    assert touched == {"blocks.3.dw", "blocks.3.pw", "head"}  # the trained offsets, and the language's head
    # The blob references its metadata by hash; the export description carries the text.
    assert ex.meta["blob_meta"]["method"] == new_family
    assert decode_blob(ex.blob).meta_id == meta_id(ex.meta["blob_meta"])
    r = evaluate_tflm(ex.tflite, f.x_test, f.y_test, num_labels=len(f.labels))
    # Above chance: the family trained, merged and ran on TFLM as one model.
    assert r.accuracy >= 2.0 / len(f.labels) and len(r.outputs) == len(f.y_test)

"""SWR in bytes through the real exporter: the language .tflite differs from the base in exactly
the int8 weight bytes the search paid for, and in no other weight, scale or bias of a body
tensor the search left alone; the blob's body bytes stay within the byte budget."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from polykws.export.api import export_language
from polykws.export.blob import apply_blob
from polykws.training.adapt import TransferConfig, adapt
from polykws.training.swr import SWRConfig

SITES = ["conv0"] + [f"blocks.{i}.{k}" for i in range(4) for k in ("dw", "pw")]


def _splits(f):
    train = SimpleNamespace(x=f.x_train, y=f.y_train, labels=f.labels)
    test = SimpleNamespace(x=f.x_test, y=f.y_test, labels=f.labels)
    return {"train": train, "val": test, "test": test}


@pytest.mark.parametrize("scales", ["frozen", "auto"])
def test_the_exported_model_changes_only_the_bytes_the_search_paid_for(scales, base_export, base_model, feats):
    f = feats["ar"]
    fast = TransferConfig(epochs=3, probe_epochs=3, batch_size=32, num_threads=1)
    budget = 1500
    result = adapt(base_model, _splits(f), SWRConfig(budget_bytes=budget), fast)
    layers = result.delta_model.delta_layers()
    paid = {site: int(layer.changed_weights().sum()) for site, layer in layers.items()}
    moves_bias = {site for site, layer in layers.items() if layer.delta_bias() is not None and bool((layer.delta_bias() != 0).any())}
    assert sum(paid.values()) > 0, "the search bought no int8 weight change: the check would be vacuous"
    for site, layer in layers.items():
        # The fine-tune moved no int8 byte outside the positions the selection paid for.
        assert layer.grid is not None and layer.grid.paid is not None, f"{site}: no paid positions recorded"
        assert not bool((layer.changed_weights() & ~layer.grid.paid).any()), f"{site}: moved an unpaid int8 byte"
    assert result.details["estimated_body_blob_bytes"] <= budget
    ex = export_language(base_export, result.model, f.labels, f.x_train, lang="ar", parity_x=f.x_test[:16], scales=scales)
    assert apply_blob(base_export.tflite, ex.blob) == ex.tflite
    reports = ex.meta["requant_tensors"]
    for site, report in zip(SITES, reports):
        assert report["changed_weight_bytes"] == paid.get(site, 0), f"{site}: {report} vs {paid.get(site, 0)} paid int8 changes"
        assert report["changed_scales"] == 0 and report["channels_refit"] == 0, f"{site}: a scale moved: {report}"
        if site not in moves_bias:
            assert report["changed_bias_values"] == 0, f"{site}: a bias the search did not buy moved: {report}"

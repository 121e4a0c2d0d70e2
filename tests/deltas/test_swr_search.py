"""Every SWR search (the default greedy, the policy, and the random and uniform ablations) on
the int8 grid: the selection's exact bytes fit the byte budget, the fine-tune moves no byte the
selection did not pay for, and the epochs add up to the same budget as every other method."""

from __future__ import annotations

import pytest

from polykws.training.adapt import adapt
from polykws.training.deltas.blob_bytes import layer_body_bytes
from polykws.training.swr import SWRConfig
from polykws.training.swr.config import SEARCHES

from .test_swr import FAST, synthetic_splits


@pytest.mark.parametrize("search", SEARCHES)
def test_each_search_holds_the_byte_budget_and_the_paid_positions(search, base):
    budget = 1200
    result = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=budget, search=search), FAST)
    d = result.details
    assert d["search"] == search and d["budget_unit"] == "blob_bytes"
    layers = result.delta_model.delta_layers()
    exact = sum(layer_body_bytes(layer) for layer in layers.values())
    assert exact == d["estimated_body_blob_bytes"] and 0 < exact <= budget, f"{search}: {exact} B for a {budget} B budget"
    for site, layer in layers.items():
        assert layer.grid is not None and layer.grid.paid is not None
        assert not bool((layer.changed_weights() & ~layer.grid.paid).any()), f"{search}: {site} moved an unpaid byte"
    # The selection itself fits (the trim only absorbs the fine-tune's drift in value entropy).
    assert d["selection_cost"] <= budget, f"{search}: selected {d['selection_cost']} B for a {budget} B budget"
    # Compute-matched: the phases' epochs sum to TransferConfig.epochs.
    assert sum(d["epochs"].values()) == FAST.epochs


def test_greedy_spends_more_of_a_larger_budget(base):
    small = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=300), FAST).details["estimated_body_blob_bytes"]
    large = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=3000), FAST).details["estimated_body_blob_bytes"]
    assert small <= 300 < large <= 3000


@pytest.mark.parametrize("epochs", [3, 7, 30, 31])
@pytest.mark.parametrize("search", SEARCHES)
def test_phase_epochs_sum_to_the_method_epochs(epochs, search):
    from polykws.training.swr.search import phase_epochs

    assert sum(phase_epochs(epochs, SWRConfig(search=search)).values()) == epochs


def test_budgets_in_params_and_bytes_are_exclusive():
    from polykws.core import ConfigError

    assert SWRConfig().budget_bytes is not None and SWRConfig().budget_params is None  # bytes by default
    with pytest.raises(ConfigError, match="not both"):
        SWRConfig(budget_params=100, budget_bytes=100)
    with pytest.raises(ConfigError, match="search"):
        SWRConfig(search="annealing")

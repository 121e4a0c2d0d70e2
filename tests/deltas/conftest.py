"""Shared fixtures for the delta/SWR tests: a DS-CNN-S base with non-trivial BN statistics."""

from __future__ import annotations

import pytest
import torch

from polykws.training.models import ds_cnn_s


def make_base(num_classes: int = 12, seed: int = 0) -> torch.nn.Module:
    """A DS-CNN-S whose BN layers carry random (non-identity) statistics and affine terms,
    so a delta that is wrongly placed relative to BN would show up in the outputs."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ds_cnn_s(num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.fixture()
def base() -> torch.nn.Module:
    return make_base()


@pytest.fixture()
def inputs() -> torch.Tensor:
    return torch.randn(16, 1, 49, 10, generator=torch.Generator().manual_seed(1))


@pytest.fixture()
def base_factory():
    return make_base


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: on a shared 2-core machine one intra-op thread is ~10x faster
    than torch's default (threads spin against each other under load)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

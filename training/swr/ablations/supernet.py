"""The SWR supernet: every candidate site carries every allowed option's delta at once.

A site's effective weight is W0 + Σₒ zₒ·ΔWₒ with z a (straight-through) one-hot gate set by
the search each step; choice 0 is "none". The option deltas are instances of the ordinary
family layers (same code as the final DeltaModel), so the fine-tune can warm-start from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from polykws.training.deltas import DeltaLayer, DeltaModel, get_delta, site_kind
from polykws.training.deltas.base import SITE_KINDS, AttachContext, functional_forward, match_sites
from polykws.training.deltas.model import site_grid
from polykws.training.swr.ablations.config import SWROption


class SWRSite(nn.Module):
    def __init__(self, base_layer: nn.Module, site: str, layers: dict[int, DeltaLayer], num_choices: int):
        super().__init__()
        self.base_layer = base_layer
        self.site = site
        # Keys are choice indices (1-based option index); 0 is "none" and has no layer.
        self.option_layers = nn.ModuleDict({str(c): layer for c, layer in layers.items()})
        self.num_choices = num_choices
        self.gate: torch.Tensor | None = None

    def set_choice(self, choice: int) -> None:
        gate = torch.zeros(self.num_choices)
        gate[choice] = 1.0
        self.gate = gate

    def _active(self):
        if self.gate is None:
            return []
        g = self.gate
        # A gate without gradient that is exactly 0 contributes nothing: skip its delta (speed).
        return [(g[int(c)], layer) for c, layer in self.option_layers.items() if g.requires_grad or float(g[int(c)]) != 0.0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.base_layer.weight, self.base_layer.bias
        for g, layer in self._active():
            weight = weight + g * layer.applied_delta_weight()
            db = layer.delta_bias()
            if db is not None:
                bias = bias + g * db
        return functional_forward(self.base_layer, x, weight, bias)

    def regularization(self, detach_gates: bool = False) -> torch.Tensor:
        terms = [(g.detach() if detach_gates else g) * layer.regularization() for g, layer in self._active()]
        return torch.stack(terms).sum() if terms else self.base_layer.weight.new_zeros(())


@dataclass
class Supernet:
    dm: DeltaModel  # the frozen base with its new head; candidate sites replaced by SWRSite
    sites: dict[str, SWRSite]
    options: tuple[SWROption, ...]
    costs: torch.Tensor  # (sites, choices) float: cost of each choice in `cost_unit` (0 for none)
    mask: torch.Tensor  # (sites, choices) bool: allowed choices (none is always allowed)
    cost_unit: str = "params"  # "params" (family.cost) or "blob_bytes" (family.blob_bytes estimate)

    @property
    def site_names(self) -> list[str]:
        return list(self.sites)

    def delta_parameters(self) -> list[nn.Parameter]:
        return [p for s in self.sites.values() for p in s.option_layers.parameters() if p.requires_grad]

    def finalize_options(self) -> None:
        """End the options' search phase (diff_prune: project each option to its own k)."""
        for site in self.sites.values():
            for layer in site.option_layers.values():
                if layer.needs_finalize:
                    type(layer).finalize_group([layer], layer.cfg)

    def set_choices(self, choices: dict[str, int]) -> None:
        for name, site in self.sites.items():
            site.set_choice(choices.get(name, 0))

    def set_gates(self, z: torch.Tensor) -> None:
        for i, site in enumerate(self.sites.values()):
            site.gate = z[i]

    def regularization(self, detach_gates: bool = False) -> torch.Tensor:
        return torch.stack([s.regularization(detach_gates) for s in self.sites.values()]).sum()

    def cost_of(self, choices: dict[str, int]) -> int:
        return int(sum(self.costs[i, choices.get(n, 0)] for i, n in enumerate(self.sites)))


def _set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


COST_UNITS = ("params", "blob_bytes")


def _share_search_state(layers: dict[int, DeltaLayer], j: int) -> None:
    """Tie option j's size-independent search parameters to the first option of its family at
    the site (DeltaLayer.shared_search_state), so the family's size ladder is nested."""
    layer = layers[j]
    for other in layers.values():
        if other is layer:
            return
        if type(other) is type(layer) and layer.shared_search_state:
            for pname in layer.shared_search_state:
                setattr(layer, pname, getattr(other, pname))
            return


def build_supernet(
    dm: DeltaModel,
    base_model: nn.Module,
    options: tuple[SWROption, ...],
    targets: tuple[str, ...],
    budget: int,
    cost_unit: str = "params",
) -> Supernet:
    """Install an SWRSite on every site `targets` matches. An option is allowed at a site when
    its family supports the layer and its cost fits the body budget on its own. `cost_unit`
    "params" costs an option by its updated parameters (`cost`), "blob_bytes" by its estimated
    blob bytes (`blob_bytes`); `budget` is in the same unit."""
    if cost_unit not in COST_UNITS:
        raise ValueError(f"cost_unit must be one of {COST_UNITS}, got {cost_unit!r}")
    model = dm.model
    sites_all = {n: m for n, m in model.named_modules() if site_kind(m) is not None and n}
    names = match_sites(targets, sites_all)
    context = AttachContext(base_model, dm.base_sha256)
    num_choices = len(options) + 1
    costs = torch.zeros(len(names), num_choices)
    mask = torch.zeros(len(names), num_choices, dtype=torch.bool)
    mask[:, 0] = True
    sites: dict[str, SWRSite] = {}
    for i, name in enumerate(names):
        module = sites_all[name]
        grid = site_grid(model, name, module) if dm.weight_grid == "int8" else None
        layers: dict[int, DeltaLayer] = {}
        for j, option in enumerate(options, start=1):
            cfg = option.config(name)
            layer_cls = get_delta(option.family).layer_cls
            if not layer_cls.supports(module, cfg):
                continue
            cost = layer_cls.blob_bytes(module, cfg) if cost_unit == "blob_bytes" else layer_cls.cost(module, cfg)
            costs[i, j] = cost
            if cost > budget:
                continue
            layers[j] = layer_cls(module, cfg, site=name, context=context)
            layers[j].set_grid(grid)
            _share_search_state(layers, j)
            mask[i, j] = True
        site = SWRSite(module, name, layers, num_choices)
        _set_submodule(model, name, site)
        sites[name] = site
    return Supernet(dm, sites, options, costs, mask, cost_unit)


def site_features(net: Supernet, x: torch.Tensor, y: torch.Tensor, batch_size: int, batches: int) -> torch.Tensor:
    """Per-site policy inputs (sites, F), standardised across sites.

    Columns: layer type (one-hot over conv/dw/pw/linear), relative depth, log10 weight count,
    log10 ‖W‖, then the target language's gradient statistics on `batches` batches of its
    training data through the frozen base + probed head: log10 mean ‖∂L/∂W‖, gradient
    coherence ‖mean_b g_b‖ / mean_b ‖g_b‖, and per option the first-order gain per parameter
    log10(‖∂L/∂θₒ‖² / costₒ) (all deltas start at 0, so this is each option's initial rate of
    loss decrease per stored parameter under gradient descent).
    """
    dm = net.dm
    dm.eval()
    names = net.site_names
    num_choices = net.mask.shape[1]
    all_on = {n: torch.ones(num_choices) for n in names}
    for n, site in net.sites.items():
        site.gate = all_on[n]
    weights = [net.sites[n].base_layer.weight for n in names]
    for w in weights:
        w.requires_grad_(True)
    option_params = {(i, int(c)): list(layer.parameters()) for i, n in enumerate(names) for c, layer in net.sites[n].option_layers.items()}
    flat_opts = [p for ps in option_params.values() for p in ps if p.requires_grad]
    g_norm = torch.zeros(len(names))
    g_sum = [torch.zeros_like(w) for w in weights]
    opt_sq = torch.zeros(len(names), num_choices)
    used = 0
    try:
        for b in range(batches):
            xb, yb = x[b * batch_size : (b + 1) * batch_size], y[b * batch_size : (b + 1) * batch_size]
            if len(yb) == 0:
                break
            loss = F.cross_entropy(dm(xb), yb)
            grads = torch.autograd.grad(loss, weights + flat_opts, allow_unused=True)
            gw, go = grads[: len(weights)], grads[len(weights) :]
            for i, g in enumerate(gw):
                g_norm[i] += float(g.norm())
                g_sum[i] += g
            it = iter(go)
            for (i, c), ps in option_params.items():
                for p in ps:
                    if p.requires_grad:
                        g = next(it)
                        if g is not None:
                            opt_sq[i, c] += float(g.pow(2).sum())
            used += 1
    finally:
        for w in weights:
            w.requires_grad_(False)
        for site in net.sites.values():
            site.gate = None
    used = max(used, 1)
    g_mean_norm = g_norm / used
    coherence = torch.tensor([float((g_sum[i] / used).norm()) for i in range(len(names))]) / g_mean_norm.clamp_min(1e-30)
    cols = []
    kinds = torch.zeros(len(names), len(SITE_KINDS))
    for i, n in enumerate(names):
        kinds[i, SITE_KINDS.index(site_kind(net.sites[n].base_layer))] = 1.0
    depth = torch.linspace(0.0, 1.0, len(names)) if len(names) > 1 else torch.zeros(1)
    numel = torch.tensor([math.log10(w.numel()) for w in weights])
    wnorm = torch.tensor([math.log10(float(w.norm()) + 1e-12) for w in weights])
    cols += [depth, numel, wnorm, torch.log10(g_mean_norm + 1e-12), coherence]
    stats = torch.stack(cols, dim=1)
    mean, std = stats.mean(dim=0, keepdim=True), stats.std(dim=0, unbiased=False, keepdim=True)
    stats = torch.where(std > 1e-8, (stats - mean) / std.clamp_min(1e-8), torch.zeros_like(stats))
    # Gains are standardised jointly over all allowed (site, option) pairs, so they stay
    # comparable across options; disallowed pairs read 0 (their logits are masked anyway).
    gain = torch.log10(opt_sq / used / net.costs.clamp_min(1.0) + 1e-20)
    allowed = net.mask.clone()
    allowed[:, 0] = False
    if allowed.any():
        vals = gain[allowed]
        sd = float(vals.std(unbiased=False)) if vals.numel() > 1 else 0.0
        gain = (gain - vals.mean()) / sd if sd > 1e-8 else gain - vals.mean()
    gain = torch.where(allowed, gain, torch.zeros_like(gain))[:, 1:]
    return torch.cat([kinds, stats, gain], dim=1).detach()

"""The one delta contract every family implements, plus how delta sites are addressed.

A *site* is a weight-bearing layer of the base: every `nn.Conv2d` (full, depthwise, pointwise)
and `nn.Linear`, addressed by its module name (`conv0`, `blocks.{i}.dw`, `blocks.{i}.pw`,
`head` on a DS-CNN). A *delta layer* wraps one site: the base layer stays inside it, frozen,
and the family adds trainable parameters that define

    W_eff = W0 + delta_weight()        b_eff = b0 + delta_bias()

with W0, b0 the frozen base values. Because a delta only ever changes the *values* of W and b,
`merge()` folds it into the base layer in place and the deployed graph keeps the base's shapes
and MACs exactly. `unmerge()` undoes a merge (the merged delta is remembered, so deltas that
depend on W0, such as `scale`, unmerge exactly).

Each family defines `cost(module, cfg)`: the exact number of parameters a language stores for
that site (the "updated parameters" every budget in this project counts).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from polykws.core import ConfigError
from polykws.training.deltas.grid import Int8Grid

SITE_KINDS = ("conv", "dw", "pw", "linear")
# The classifier head of a DS-CNN. It is language-specific (each language has its own labels),
# so the harness normally replaces it with a new, fully trained head (see docs/METHOD.md).
HEAD_SITE = "head"
BODY_TARGETS: tuple[str, ...] = ("conv0", "blocks.*.dw", "blocks.*.pw")
# The delta-file key of a site's paid int8 positions (Int8Grid.paid).
PAID_KEY = "grid_paid"


def site_kind(module: nn.Module) -> str | None:
    """'conv' | 'dw' | 'pw' | 'linear' for a weight-bearing layer, None for anything else."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "dw"
        if module.kernel_size == (1, 1) and module.groups == 1:
            return "pw"
        return "conv"
    return None


def candidate_sites(model: nn.Module) -> dict[str, nn.Module]:
    """Every site of `model` in registration order (= forward order for a DS-CNN).

    Already-wrapped sites are reported by their wrapper's base layer, so this also works on the
    model inside a DeltaModel.
    """
    sites: dict[str, nn.Module] = {}
    skip_prefixes: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p in skip_prefixes):
            continue
        if isinstance(module, DeltaLayer):
            sites[name] = module.base_layer
            skip_prefixes.append(name + ".")
        elif site_kind(module) is not None and name:
            sites[name] = module
    return sites


def weight_matrix_shape(module: nn.Module) -> tuple[int, int]:
    """(out_channels, fan_in) of the weight seen as a matrix (conv kernels flattened per output)."""
    w = module.weight
    return int(w.shape[0]), int(w[0].numel())


def match_sites(patterns: tuple[str, ...], sites: dict[str, nn.Module]) -> list[str]:
    """Site names matched by fnmatch `patterns`, in site order. A pattern matching nothing is an error."""
    chosen: set[str] = set()
    for pattern in patterns:
        hits = [name for name in sites if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise ConfigError(f"target {pattern!r} matches no delta site; sites are: {', '.join(sites)}")
        chosen.update(hits)
    return [name for name in sites if name in chosen]


@dataclass(frozen=True)
class DeltaConfig:
    """Base of every family config. `targets` are fnmatch patterns over site names.

    An empty `targets` means the family's `default_targets`. Subclasses validate their own
    fields in `validate()` (called from `__post_init__`), raising ConfigError.
    """

    family: ClassVar[str] = ""
    default_targets: ClassVar[tuple[str, ...]] = BODY_TARGETS

    targets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        targets = self.targets
        if isinstance(targets, str):
            raise ConfigError(f"{type(self).__name__}.targets must be a list of site patterns, not the string {targets!r}")
        targets = tuple(targets)
        for pattern in targets:
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{type(self).__name__}.targets: every pattern must be a non-empty string, got {pattern!r}")
        object.__setattr__(self, "targets", targets)
        self.validate()

    def validate(self) -> None:
        """Family-specific checks; raise ConfigError naming the field."""

    @property
    def resolved_targets(self) -> tuple[str, ...]:
        return self.targets or self.default_targets

    def replace(self, **changes: Any) -> "DeltaConfig":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return type(self)(**values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"family": self.family}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "DeltaConfig":
        from polykws.training.deltas.registry import get_delta

        if not isinstance(data, dict) or "family" not in data:
            raise ConfigError(f"a delta config must be a mapping with a 'family' key, got {data!r}")
        data = dict(data)
        cls = get_delta(data.pop("family")).config_cls
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown fields {unknown}; known: {sorted(known)}")
        for f in fields(cls):
            if isinstance(data.get(f.name), list):
                data[f.name] = tuple(data[f.name])
        return cls(**data)


class AttachContext:
    """What a family may need beyond its own site at attach time.

    `base_model` is the unwrapped base (recast fits its template bank from all same-shaped
    layers), `base_sha256` names it, and `cache` lets families share expensive objects (one
    template bank per base and config) across sites and across attach() calls in a process.
    """

    def __init__(self, base_model: nn.Module, base_sha256: str, *, bank_dir: str | None = None, cache: dict | None = None):
        self.base_model = base_model
        self.base_sha256 = base_sha256
        self.bank_dir = bank_dir
        self.cache = {} if cache is None else cache


def functional_forward(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Run `module`'s operation with substituted weight/bias (same stride, padding, groups)."""
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(x, weight, bias)
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    raise TypeError(f"no functional forward for {type(module).__name__}")


class DeltaLayer(nn.Module):
    """A frozen base layer plus one family's trainable delta. Subclasses implement the hooks."""

    family: ClassVar[str] = ""
    config_cls: ClassVar[type[DeltaConfig]]  # set by register_delta
    # True when training must call `finalize()` between a search phase and a fine-tune phase
    # (diff_prune projects to exactly k nonzeros there). The harness reads this flag.
    needs_finalize: ClassVar[bool] = False
    # Parameters of the search phase that do not depend on the option's size (diff_prune's dense
    # diff and gate logits do not depend on k). SWR lets the sizes of one family at one site
    # share them, so its size ladder is nested: every warm-up step that picks any size trains
    # the one search state, and each size is a projection of it.
    shared_search_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, base_layer: nn.Module, cfg: DeltaConfig, *, site: str, context: AttachContext):
        super().__init__()
        if site_kind(base_layer) is None:
            raise ConfigError(f"site {site!r}: {type(base_layer).__name__} is not a conv or linear layer")
        if not type(self).supports(base_layer, cfg):
            raise ConfigError(f"site {site!r}: the {self.family!r} delta does not support {base_layer!r}")
        self.base_layer = base_layer
        for p in self.base_layer.parameters():
            p.requires_grad_(False)
        self.cfg = cfg
        self.site = site
        self.merged = False
        self._merged_delta: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.grid: Int8Grid | None = None

    # ---- family hooks -------------------------------------------------------------------
    @classmethod
    def supports(cls, module: nn.Module, cfg: DeltaConfig) -> bool:
        return site_kind(module) is not None

    @classmethod
    def cost(cls, module: nn.Module, cfg: DeltaConfig) -> int:
        """Exact number of parameters a language stores for this site."""
        raise NotImplementedError

    @classmethod
    def blob_bytes(cls, module: nn.Module, cfg: DeltaConfig) -> int:
        """Estimated int8 blob bytes this delta adds for this site (training/deltas/blob_bytes.py),
        from shapes only: what SWR budgets when `SWRConfig.budget_bytes` is set."""
        raise NotImplementedError

    @classmethod
    def fit_to_budget(
        cls, base_model: nn.Module, budget_params: int | None = None, budget_bytes: int | None = None, **options: Any
    ) -> DeltaConfig | None:
        """The family's config (with `options`) that spends as much of the body budget as it
        can, in parameters or in estimated blob bytes (exactly one); None when nothing fits.

        Default: whole sites, deepest first. Families with a size knob override it."""
        from polykws.training.deltas.budget import body_sites_deepest_first, fit_whole_sites, make_budget

        budget = make_budget(budget_params, budget_bytes)
        return fit_whole_sites(cls, cls.config_cls(**options), body_sites_deepest_first(base_model), budget)

    def delta_weight(self) -> torch.Tensor:
        """ΔW with the base weight's shape (computed against the unmerged W0)."""
        raise NotImplementedError

    def delta_bias(self) -> torch.Tensor | None:
        """Δb with the base bias's shape, or None when the family leaves the bias alone."""
        return None

    def regularization(self) -> torch.Tensor:
        """A penalty the training loss adds (diff_prune: expected L0). Zero by default."""
        return self.base_layer.weight.new_zeros(())

    def finalize(self) -> None:
        """End of the search phase (see `needs_finalize`). No-op by default."""

    def cost_params(self) -> int:
        return type(self).cost(self.base_layer, self.cfg)

    @classmethod
    def group_cost(cls, layers: list["DeltaLayer"], cfg: DeltaConfig) -> int:
        """Cost of all sites one config attached (diff_prune's k is shared by its sites)."""
        return sum(layer.cost_params() for layer in layers)

    @classmethod
    def finalize_group(cls, layers: list["DeltaLayer"], cfg: DeltaConfig) -> None:
        """Finalize all sites of one config together (diff_prune projects globally)."""
        for layer in layers:
            layer.finalize()

    def file_meta(self) -> dict[str, Any]:
        """Extra facts a delta file records for this site (recast: its template bank's hash)."""
        return {}

    def check_file_meta(self, meta: dict[str, Any], path: str) -> None:
        """Refuse a delta file whose recorded facts do not match this attach (clear error)."""

    # ---- shared machinery -----------------------------------------------------------------
    def base_weight(self) -> torch.Tensor:
        """The frozen W0, also while merged (the merged delta is subtracted back out)."""
        w = self.base_layer.weight
        if self.merged and self._merged_delta is not None:
            return w - self._merged_delta[0]
        return w

    def set_grid(self, grid: Int8Grid | None) -> None:
        """Put the delta on the base's int8 grid (training/deltas/grid.py), or back in float."""
        if self.merged:
            raise RuntimeError(f"site {self.site!r}: unmerge before changing the weight grid")
        self.grid = grid

    def applied_delta_weight(self) -> torch.Tensor:
        """The ΔW the layer runs and merges: the family's delta, on the int8 grid when one is set."""
        dw = self.delta_weight()
        return dw if self.grid is None else self.grid.project(self.base_weight(), dw)

    def changed_weights(self) -> torch.Tensor:
        """Bool mask of the weights the delta changes (int8 bytes on the grid, float values otherwise)."""
        with torch.no_grad():
            dw = self.delta_weight()
            return dw != 0 if self.grid is None else self.grid.changed(self.base_weight(), dw)

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        weight = self.base_layer.weight + self.applied_delta_weight()
        bias = self.base_layer.bias
        db = self.delta_bias()
        if db is not None:
            bias = db if bias is None else bias + db
        return functional_forward(self.base_layer, x, weight, bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the delta into the base layer in place (idempotent)."""
        if self.merged:
            return
        dw = self.applied_delta_weight().detach().clone()
        db = self.delta_bias()
        db = None if db is None else db.detach().clone()
        if db is not None and self.base_layer.bias is None:
            raise RuntimeError(f"site {self.site!r}: cannot merge a bias delta into a layer without a bias")
        self.base_layer.weight.add_(dw)
        if db is not None:
            self.base_layer.bias.add_(db)
        self._merged_delta = (dw, db)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge()` (idempotent)."""
        if not self.merged or self._merged_delta is None:
            return
        dw, db = self._merged_delta
        self.base_layer.weight.sub_(dw)
        if db is not None:
            self.base_layer.bias.sub_(db)
        self._merged_delta = None
        self.merged = False

    def get_delta_state(self) -> dict[str, torch.Tensor]:
        """The tensors a delta file stores for this site: persistent state minus the base layer,
        plus the paid-position mask when the grid has one."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith(("base_layer.", "grid."))}
        if self.grid is not None and self.grid.paid is not None:
            state[PAID_KEY] = self.grid.paid.clone()
        return state

    def set_delta_state(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        paid = state.pop(PAID_KEY, None)
        if paid is not None:
            if self.grid is None:
                raise ConfigError(f"site {self.site!r} ({self.family}): the state has paid int8 positions but the layer is not on the int8 grid")
            try:
                self.grid.set_paid(paid)
            except ValueError as exc:
                raise ConfigError(f"site {self.site!r} ({self.family}): {exc}") from None
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(("base_layer.", "grid."))}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ConfigError(f"site {self.site!r} ({self.family}): delta state mismatch; missing {missing}, unexpected {unexpected}")
        for key, value in state.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ConfigError(f"site {self.site!r} ({self.family}): {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
        self.load_state_dict({**{k: v for k, v in self.state_dict().items() if k.startswith("base_layer.")}, **state})

    def extra_repr(self) -> str:
        return f"site={self.site!r}, family={self.family!r}, cost={self.cost_params()}, merged={self.merged}"

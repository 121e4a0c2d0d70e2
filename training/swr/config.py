"""SWR configuration: the candidate options per site and the search schedule."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from polykws.training.deltas import BODY_TARGETS, DeltaConfig, get_delta
from polykws.core import ConfigError


@dataclass(frozen=True)
class SWROption:
    """One candidate delta for a site: a family plus its config values (targets are set per site)."""

    family: str
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(sorted(tuple(kv) for kv in dict(self.options).items())))
        cls = get_delta(self.family).config_cls
        if "targets" in dict(self.options):
            raise ConfigError(f"SWR option {self.key}: targets are chosen by SWR, not by the option")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(dict(self.options)) - known)
        if unknown:
            raise ConfigError(f"SWR option {self.family!r}: unknown fields {unknown}")
        self.config("_")  # validate values now, not at attach time

    def config(self, site: str) -> DeltaConfig:
        return get_delta(self.family).config_cls(**dict(self.options), targets=(site,))

    @property
    def key(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.family}({args})" if args else self.family

    @classmethod
    def parse(cls, value: "SWROption | str | dict") -> "SWROption":
        """From an option, a dict {"family": ..., **values} (YAML) or "family" / "family:k=v,k=v" (CLI)."""
        if isinstance(value, SWROption):
            return value
        if isinstance(value, dict):
            d = dict(value)
            if "family" not in d:
                raise ConfigError(f"SWR option needs a 'family': {value!r}")
            return cls(d.pop("family"), tuple(d.items()))
        if isinstance(value, str):
            family, _, rest = value.partition(":")
            opts = []
            for part in filter(None, rest.split(",")):
                k, eq, v = part.partition("=")
                if not eq:
                    raise ConfigError(f"SWR option {value!r}: expected key=value, got {part!r}")
                opts.append((k.strip(), _literal(v.strip())))
            return cls(family.strip(), tuple(opts))
        raise ConfigError(f"cannot read an SWR option from {value!r}")


def _literal(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


# Default candidates; costs on a DS-CNN-S pointwise conv (64x64): scale 64, lowrank 128,
# recast 32 / 64 / 128 / 128. Chosen on the dev language's *validation* split (docs/METHOD.md):
# with diff_prune options in the set the search kept picking them (they fit the policy batches
# quickly) and validation accuracy dropped by ~3 points. Every family stays available through
# `options` (e.g. "diff_prune:k=256", "dense", "bias"). Few, distinct options also let the
# search converge in the few hundred steps a language gets.
DEFAULT_OPTIONS: tuple[SWROption, ...] = (
    SWROption("scale"),
    SWROption("lowrank", (("rank", 1),)),
    SWROption("recast", (("groups", 4), ("num_templates", 8))),
    SWROption("recast", (("groups", 8), ("num_templates", 8))),
    SWROption("recast", (("groups", 16), ("num_templates", 8))),
    SWROption("recast", (("groups", 8), ("num_templates", 16))),
)


@dataclass(frozen=True)
class SWRConfig:
    """Scalable Weight Reparametrization (docs/METHOD.md).

    `budget_params` bounds the body's updated parameters; the language head is extra and
    reported separately, unless `budget_includes_head` (then the head is paid for first).
    Epochs: `warmup_fraction` and `search_fraction` of TransferConfig.epochs go to the supernet
    warm-up and the policy search; the rest fine-tunes the selected deltas, so SWR trains for
    the same number of epochs as every other method.

    `budget_bytes` (optional, >= 1) switches the search's currency to *estimated blob bytes*: the
    cost matrix, the dual ascent and the projection then use each family's `blob_bytes()`
    estimate (training/deltas/blob_bytes.py: int8 weights, int32 biases, float32 scales and
    patch-record overhead of the weight-diff blob) and the selection's estimate is <= budget_bytes.
    There is one constraint, not two: with `budget_bytes` set, `budget_params` is ignored for
    selection (the run still reports the body's parameter count). The byte budget covers the
    body only (not the head, the blob header or metadata), so it cannot be combined with
    `budget_includes_head`.
    """

    budget_params: int = 1000
    budget_includes_head: bool = False
    budget_bytes: int | None = None
    options: tuple[SWROption, ...] = DEFAULT_OPTIONS
    targets: tuple[str, ...] = BODY_TARGETS
    warmup_fraction: float = 0.2
    search_fraction: float = 0.6
    finetune_fraction: float = 1.0
    policy_hidden: int = 32
    policy_lr: float = 1e-2
    logit_bound: float = 3.0
    tau_start: float = 1.0
    tau_end: float = 0.5
    dual_lr: float = 0.02
    # True: the budget is a target (λ may go negative and reward spending up to it); False: only
    # an upper bound (λ >= 0). Either way the projection enforces cost <= budget exactly.
    spend_budget: bool = True
    # The split the policy and the projection's utilities are judged on ("val" or "train").
    policy_data: str = "val"
    grad_stat_batches: int = 4
    utility_samples: int = 512
    # After greedy removal, spend left-over budget on the best-utility option that still fits.
    refill: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.budget_params, int) or self.budget_params < 1:
            raise ConfigError(f"SWRConfig.budget_params must be an integer >= 1, got {self.budget_params!r}")
        if self.budget_bytes is not None:
            if isinstance(self.budget_bytes, bool) or not isinstance(self.budget_bytes, int) or self.budget_bytes < 1:
                raise ConfigError(f"SWRConfig.budget_bytes must be an integer >= 1 or None, got {self.budget_bytes!r}")
            if self.budget_includes_head:
                raise ConfigError("SWRConfig.budget_bytes bounds the body's blob bytes only; it cannot be combined with budget_includes_head")
        opts = tuple(SWROption.parse(o) for o in self.options)
        if not opts:
            raise ConfigError("SWRConfig.options must name at least one delta family")
        keys = [o.key for o in opts]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"SWRConfig.options has duplicates: {keys}")
        object.__setattr__(self, "options", opts)
        if isinstance(self.targets, str) or not self.targets:
            raise ConfigError("SWRConfig.targets must be a non-empty list of site patterns")
        object.__setattr__(self, "targets", tuple(self.targets))
        for name in ("warmup_fraction", "search_fraction", "finetune_fraction"):
            if not 0.0 < getattr(self, name) <= 2.0:
                raise ConfigError(f"SWRConfig.{name} must be in (0, 2], got {getattr(self, name)!r}")
        for name in ("policy_hidden", "grad_stat_batches", "utility_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"SWRConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("policy_lr", "tau_start", "tau_end", "dual_lr", "logit_bound"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"SWRConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.policy_data not in ("val", "train"):
            raise ConfigError(f"SWRConfig.policy_data must be 'val' or 'train', got {self.policy_data!r}")
        if self.tau_end > self.tau_start:
            raise ConfigError("SWRConfig.tau_end must be <= tau_start (the temperature anneals down)")

    @classmethod
    def with_families(cls, families: list[str], **kwargs: Any) -> "SWRConfig":
        """Default options restricted to the given families (CLI `--families scale,lowrank`)."""
        unknown = sorted(set(families) - {get_delta(f).name for f in families})
        if unknown:
            raise ConfigError(f"unknown families {unknown}")
        opts = tuple(o for o in DEFAULT_OPTIONS if o.family in families)
        extra = [f for f in families if f not in {o.family for o in opts}]
        opts += tuple(SWROption(f) for f in extra)
        return cls(options=opts, **kwargs)

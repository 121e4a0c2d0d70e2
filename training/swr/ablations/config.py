"""The ablation searches' settings: the candidate options per site and the phases' schedule.

`SWRConfig.ablation` is read as `PerSiteConfig` for "greedy", "measured", "random" and
"uniform", and as `PolicyConfig` (its fields plus the policy's) for "policy".
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping

from polykws.training.deltas import DeltaConfig, get_delta
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


# Default candidates: several families and several sizes per site, so that a byte budget from
# about 1 KB to 30 KB has something to buy at every step. diff_prune's k runs up a geometric
# ladder (the sizes of one site share one L0 search state, so each k is the top-k of the same
# warmed-up diff: the ladder is nested); bias and
# scale are per channel; low-rank ranks 1-2 and a dense delta cover whole-tensor rewrites. On
# the int8 grid each option's bytes are measured after the warm-up from the int8 bytes it moves
# (training/deltas/blob_bytes.py: layer_body_bytes), so a size ladder is priced by the coder.
DIFF_PRUNE_LADDER = (8, 16, 32, 64, 128, 256, 512, 1024)
DEFAULT_OPTIONS: tuple[SWROption, ...] = (
    SWROption("bias"),
    SWROption("scale"),
    *(SWROption("diff_prune", (("k", k),)) for k in DIFF_PRUNE_LADDER),
    SWROption("lowrank", (("rank", 1),)),
    SWROption("lowrank", (("rank", 2),)),
    SWROption("dense"),
)
FINETUNE_POSITIONS = ("moved", "support")


def family_options(families: list[str]) -> tuple[SWROption, ...]:
    """DEFAULT_OPTIONS restricted to `families`; a family with no default option joins with its own defaults."""
    for f in families:
        get_delta(f)  # ConfigError for an unknown family
    opts = tuple(o for o in DEFAULT_OPTIONS if o.family in families)
    extra = [f for f in families if f not in {o.family for o in opts}]
    return opts + tuple(SWROption(f) for f in extra)


@dataclass(frozen=True)
class PerSiteConfig:
    """A per-site search without a policy: the warm-up's epochs go to the phases' fractions of
    the run (normalized by their sum) and the search phase's to the fine-tune."""

    options: tuple[SWROption, ...] = DEFAULT_OPTIONS
    warmup_fraction: float = 0.25
    search_fraction: float = 0.25
    finetune_fraction: float = 0.5
    # The warm-up draws "none" at a site as often as any option (True), or only options (False):
    # every site then trains its deltas jointly every step, as diff_prune's L0 search does.
    warmup_none: bool = True
    # Which int8 positions the fine-tune may move: "moved", those each option moved when it was
    # priced; "support", also every position where its warmed-up delta is nonzero (for
    # diff_prune, the top-k entries whose gates are open), with the byte budget held by the trim.
    finetune_positions: str = "moved"
    # The validation examples the selection's utilities are measured on.
    utility_samples: int = 512

    def __post_init__(self) -> None:
        opts = tuple(SWROption.parse(o) for o in self.options)
        if not opts:
            raise ConfigError(f"{type(self).__name__}.options must name at least one delta family")
        keys = [o.key for o in opts]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{type(self).__name__}.options has duplicates: {keys}")
        object.__setattr__(self, "options", opts)
        for name in ("warmup_fraction", "search_fraction", "finetune_fraction"):
            if not 0.0 < getattr(self, name) <= 2.0:
                raise ConfigError(f"{type(self).__name__}.{name} must be in (0, 2], got {getattr(self, name)!r}")
        self._positive_ints("utility_samples")
        if self.finetune_positions not in FINETUNE_POSITIONS:
            raise ConfigError(f"{type(self).__name__}.finetune_positions must be one of {FINETUNE_POSITIONS}, got {self.finetune_positions!r}")

    def _positive_ints(self, *names: str) -> None:
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{type(self).__name__}.{name} must be an integer >= 1, got {v!r}")

    @classmethod
    def parse(cls, value: "PerSiteConfig | Mapping[str, Any] | None") -> "PerSiteConfig":
        """From None (the defaults), a mapping of fields (YAML, CLI) or a config of this class."""
        if value is None:
            return cls()
        if type(value) is cls:
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"SWRConfig.ablation must be a mapping of {cls.__name__} fields, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"SWRConfig.ablation: unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
        return cls(**value)


@dataclass(frozen=True)
class PolicyConfig(PerSiteConfig):
    """The learned policy's search: a policy network trained for `search_fraction` of the run
    between the warm-up and the fine-tune, then projected to the budget."""

    # Policy inputs measured after the warm-up (the deltas have learned) instead of before it.
    warmup_features: bool = False
    # Batches of training data the features' gradient statistics average over.
    grad_stat_batches: int = 4
    policy_hidden: int = 32
    # After greedy removal, spend left-over budget on the best-utility option that still fits.
    refill: bool = True
    # The policy's logit bound, learning rate, Gumbel temperature schedule and dual step: each > 0.
    _POSITIVE: ClassVar[tuple[str, ...]] = ("logit_bound", "policy_lr", "tau_start", "tau_end", "dual_lr")
    logit_bound: float = 3.0
    policy_lr: float = 1e-2
    tau_start: float = 1.0
    tau_end: float = 0.5
    dual_lr: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive_ints("policy_hidden", "grad_stat_batches")
        for name in self._POSITIVE:
            if not getattr(self, name) > 0:
                raise ConfigError(f"PolicyConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.tau_end > self.tau_start:
            raise ConfigError("PolicyConfig.tau_end must be <= tau_start (the temperature anneals down)")

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
# The budget when none is given: body blob bytes (a ~2.8 KB blob with an 11-class 6-bit head).
DEFAULT_BUDGET_BYTES = 2000
SEARCHES = ("l0", "policy", "greedy", "measured", "random", "uniform")
L0_PRUNING = ("gradual", "one_shot")


@dataclass(frozen=True)
class SWRConfig:
    """Scalable Weight Reparametrization (docs/METHOD.md).

    The budget is in **body blob bytes** by default (`budget_bytes`, DEFAULT_BUDGET_BYTES when
    neither budget is given): the bytes the body's deltas add to the language blob, not counting
    the head, the header or the labels (about 0.75 KB more for 10-11 labels, docs/METHOD.md). On the
    int8 grid (TransferConfig.weight_grid) the selection is priced after the search phase by the
    exact v2 records of the int8 bytes it moves (the "l0" prefix as a whole, each per-site option
    on its own), the fine-tune may not move any other byte, and the final selection is trimmed
    until its exact bytes fit. Off the grid the families' shape-only estimates price it.
    `budget_params` instead bounds the body's updated parameters (one constraint, never both);
    `budget_includes_head` (parameters only) pays for the head first.

    Epochs: SWR trains as many epochs as every other method. The "l0" search splits them as
    diff_prune does (TransferConfig.finalize_fraction searching, the rest fine-tuning); the
    per-site searches by the phases' fractions, and one without a policy ("greedy", "measured",
    "random", "uniform") gives the search phase's epochs to the fine-tune.
    """

    budget_params: int | None = None
    budget_includes_head: bool = False
    budget_bytes: int | None = None
    # How the body's bytes are placed: "l0" (one L0 search over every site, then the longest
    # global |ΔW| prefix whose exact bytes fit: training/swr/l0.py), "greedy" (per-site options,
    # first-order utility per byte, no policy network), "policy" (the learned policy, projected
    # to the budget), "measured" (greedy on the measured loss decrease per byte of each site's
    # best first-order upgrade), and the ablations "random" (a random choice per site, projected
    # to the budget) and "uniform" (every site spends an equal share). "l0" is the default: over
    # speaker folds the per-site searches placed their bytes worse than diff_prune's global
    # ranking, and the policy network and the measured loss did not beat the greedy rule
    # (docs/METHOD.md, docs/BENCHMARKS.md). "l0" places diff_prune changes only; `options`, the
    # phase fractions and the policy fields apply to the per-site searches.
    search: str = "l0"
    # How the "l0" search reaches the budget: "gradual" (prune the search state step by step to
    # the budget's count while it trains, Zhu & Gupta 2017) or "one_shot" (diff_prune's single
    # magnitude projection after the search). Gradual is the default: on speaker folds it scored
    # higher at 2.3-2.8 KB blobs and never significantly lower; at 2-3 KB one-shot drops 94-97 %
    # of the trained changes at once (docs/METHOD.md, docs/BENCHMARKS.md).
    l0_pruning: str = "gradual"
    # Policy inputs measured after the warm-up (the deltas have learned) instead of before it.
    warmup_features: bool = False
    # The warm-up draws "none" at a site as often as any option (True), or only options (False):
    # every site then trains its deltas jointly every step, as diff_prune's L0 search does.
    warmup_none: bool = True
    # Which int8 positions the fine-tune may move: "moved", those each option moved when it was
    # priced; "support", also every position where its warmed-up delta is nonzero (for
    # diff_prune, the top-k entries whose gates are open), with the byte budget held by the trim.
    finetune_positions: str = "moved"
    options: tuple[SWROption, ...] = DEFAULT_OPTIONS
    targets: tuple[str, ...] = BODY_TARGETS
    warmup_fraction: float = 0.25
    search_fraction: float = 0.25
    finetune_fraction: float = 0.5
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
        if self.budget_params is None and self.budget_bytes is None:
            object.__setattr__(self, "budget_bytes", DEFAULT_BUDGET_BYTES)
        if self.budget_params is not None and self.budget_bytes is not None:
            raise ConfigError("SWRConfig: give budget_params or budget_bytes, not both (bytes is the default currency)")
        if self.budget_params is not None and (isinstance(self.budget_params, bool) or not isinstance(self.budget_params, int) or self.budget_params < 1):
            raise ConfigError(f"SWRConfig.budget_params must be an integer >= 1, got {self.budget_params!r}")
        if self.search not in SEARCHES:
            raise ConfigError(f"SWRConfig.search must be one of {SEARCHES}, got {self.search!r}")
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
        if self.search == "l0" and opts != DEFAULT_OPTIONS:
            raise ConfigError("SWRConfig.options choose among per-site options; the 'l0' search places diff_prune changes only "
                              "(give search='greedy', 'measured', 'policy', 'random' or 'uniform' with options)")
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
        if self.l0_pruning not in L0_PRUNING:
            raise ConfigError(f"SWRConfig.l0_pruning must be one of {L0_PRUNING}, got {self.l0_pruning!r}")
        if self.finetune_positions not in ("moved", "support"):
            raise ConfigError(f"SWRConfig.finetune_positions must be 'moved' or 'support', got {self.finetune_positions!r}")
        if self.policy_data not in ("val", "train"):
            raise ConfigError(f"SWRConfig.policy_data must be 'val' or 'train', got {self.policy_data!r}")
        if self.tau_end > self.tau_start:
            raise ConfigError("SWRConfig.tau_end must be <= tau_start (the temperature anneals down)")

    @classmethod
    def with_families(cls, families: list[str], **kwargs: Any) -> "SWRConfig":
        """Default options restricted to the given families (CLI `--families scale,lowrank`), for a
        per-site search (greedy unless `search` is given)."""
        unknown = sorted(set(families) - {get_delta(f).name for f in families})
        if unknown:
            raise ConfigError(f"unknown families {unknown}")
        opts = tuple(o for o in DEFAULT_OPTIONS if o.family in families)
        extra = [f for f in families if f not in {o.family for o in opts}]
        opts += tuple(SWROption(f) for f in extra)
        return cls(options=opts, **{"search": "greedy", **kwargs})

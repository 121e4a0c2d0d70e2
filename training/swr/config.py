"""SWR's configuration: the budget, the default search's settings and the pointer to an ablation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from polykws.training.deltas import BODY_TARGETS
from polykws.core import ConfigError

# The budget when none is given: body blob bytes (a ~2.8 KB blob with an 11-class 6-bit head).
DEFAULT_BUDGET_BYTES = 2000
DEFAULT_SEARCH = "l0"
L0_PRUNING = ("gradual", "one_shot")
# The per-site ablation searches (training/swr/ablations/) register themselves here when the
# swr package is imported; the default search's modules never import them, and the ablations
# import this module, so the two stay one-way.
_ABLATIONS: dict[str, Callable] = {}


def register_ablations(*, get_search: Callable, family_options: Callable) -> None:
    """Called by training/swr/ablations on import: how to look up an ablation search by name, and
    the per-site candidate options of given families."""
    _ABLATIONS.update(get_search=get_search, family_options=family_options)


def _ablations(what: str) -> Callable:
    if what not in _ABLATIONS:
        raise ConfigError("the SWR ablation searches are not registered: import polykws.training.swr (it registers them)")
    return _ABLATIONS[what]


def ablation_search(name: str):
    """The ablation search `name` (an `AblationSearch`: its config class and run function);
    ConfigError for a name that is neither it nor the default."""
    return _ablations("get_search")(name)


@dataclass(frozen=True)
class SWRConfig:
    """Scalable Weight Reparametrization (docs/METHOD.md).

    The budget is in **body blob bytes** by default (`budget_bytes`, DEFAULT_BUDGET_BYTES when
    neither budget is given): the bytes the body's deltas add to the language blob, not counting
    the head, the header or the labels (about 0.75 KB more for 10-11 labels, docs/METHOD.md). On the
    int8 grid (TransferConfig.weight_grid) the selection is priced after the search phase by the
    exact v2 records of the int8 bytes it moves, the fine-tune may not move any other byte, and
    the final selection is trimmed until its exact bytes fit. Off the grid the families'
    shape-only estimates price it. `budget_params` instead bounds the body's updated parameters
    (one constraint, never both); `budget_includes_head` (parameters only) pays for the head first.

    Epochs: SWR trains as many epochs as every other method. The default search splits them as
    diff_prune does (TransferConfig.finalize_fraction searching, the rest fine-tuning).
    """

    budget_params: int | None = None
    budget_includes_head: bool = False
    budget_bytes: int | None = None
    # The site patterns the search may adapt.
    targets: tuple[str, ...] = BODY_TARGETS
    # How the default search reaches the budget: "gradual" (prune the search state step by step
    # to the budget's count while it trains, Zhu & Gupta 2017) or "one_shot" (diff_prune's single
    # magnitude projection after the search). Gradual is the default: on speaker folds it scored
    # higher at 2.3-2.8 KB blobs and never significantly lower; at 2-3 KB one-shot drops 94-97 %
    # of the trained changes at once (docs/METHOD.md, docs/BENCHMARKS.md).
    l0_pruning: str = "gradual"
    # "l0" (the default: one L0 search over every site, then the longest global |ΔW| prefix whose
    # exact bytes fit, training/swr/search.py) or an ablation search of training/swr/ablations/
    # ("greedy", "measured", "policy", "random", "uniform"), which places per-site options. Over
    # speaker folds the per-site searches placed their bytes worse than diff_prune's global
    # ranking (docs/METHOD.md, docs/BENCHMARKS.md).
    search: str = DEFAULT_SEARCH
    # The ablation search's own settings: a mapping of its config's fields (YAML, CLI) or that
    # config itself; read as the search's config class. The default search takes none.
    ablation: Any = None

    def __post_init__(self) -> None:
        if self.budget_params is None and self.budget_bytes is None:
            object.__setattr__(self, "budget_bytes", DEFAULT_BUDGET_BYTES)
        if self.budget_params is not None and self.budget_bytes is not None:
            raise ConfigError("SWRConfig: give budget_params or budget_bytes, not both (bytes is the default currency)")
        if self.budget_params is not None and (isinstance(self.budget_params, bool) or not isinstance(self.budget_params, int) or self.budget_params < 1):
            raise ConfigError(f"SWRConfig.budget_params must be an integer >= 1, got {self.budget_params!r}")
        if self.budget_bytes is not None:
            if isinstance(self.budget_bytes, bool) or not isinstance(self.budget_bytes, int) or self.budget_bytes < 1:
                raise ConfigError(f"SWRConfig.budget_bytes must be an integer >= 1 or None, got {self.budget_bytes!r}")
            if self.budget_includes_head:
                raise ConfigError("SWRConfig.budget_bytes bounds the body's blob bytes only; it cannot be combined with budget_includes_head")
        if isinstance(self.targets, str) or not self.targets:
            raise ConfigError("SWRConfig.targets must be a non-empty list of site patterns")
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.l0_pruning not in L0_PRUNING:
            raise ConfigError(f"SWRConfig.l0_pruning must be one of {L0_PRUNING}, got {self.l0_pruning!r}")
        if self.search == DEFAULT_SEARCH:
            if self.ablation is not None and not (isinstance(self.ablation, Mapping) and not self.ablation):
                raise ConfigError("SWRConfig.ablation holds an ablation search's settings (per-site options among them); "
                                  "the 'l0' search places diff_prune changes only and takes none (give search='greedy', "
                                  "'measured', 'policy', 'random' or 'uniform' with them)")
            object.__setattr__(self, "ablation", None)
            return
        spec = ablation_search(self.search)
        object.__setattr__(self, "ablation", spec.config_cls.parse(self.ablation))

    @classmethod
    def with_families(cls, families: list[str], **kwargs: Any) -> "SWRConfig":
        """A per-site search (greedy unless `search` is given) whose candidate options are the
        default ones of `families` (CLI `--families scale,lowrank`)."""
        kwargs.setdefault("search", "greedy")
        return cls(ablation={"options": _ablations("family_options")(families)}, **kwargs)

    @property
    def options(self) -> tuple:
        """The per-site candidate options of an ablation search; the default search has none."""
        return () if self.ablation is None else self.ablation.options

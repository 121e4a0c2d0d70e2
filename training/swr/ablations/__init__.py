"""SWR's ablation searches: per-site options in a supernet, placed by a first-order greedy rule
("greedy"), by measured loss ("measured"), by the paper's learned policy ("policy"), at random
("random") or by equal shares ("uniform"). Bench cells and tests run them; the method's default
search (training/swr/search.py) does not. The swr package imports this one, which registers its
searches with training/swr/config.py (`register_ablations`); `SWRConfig` looks a search up
there when `search` names one.

- config.py: the candidate options (`SWROption`, `DEFAULT_OPTIONS`) and each search's settings
  (`PerSiteConfig`, `PolicyConfig`), read from `SWRConfig.ablation`;
- persite.py: the run (supernet warm-up, option pricing, selection, fine-tune);
- select.py: the selection rules; supernet.py, policy.py: the search's modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from polykws.core import ConfigError
from polykws.training.swr.ablations.config import DEFAULT_OPTIONS, PerSiteConfig, PolicyConfig, SWROption, family_options
from polykws.training.swr.ablations.persite import run_per_site
from polykws.training.swr.config import DEFAULT_SEARCH, register_ablations

SEARCHES = ("policy", "greedy", "measured", "random", "uniform")


@dataclass(frozen=True)
class AblationSearch:
    name: str
    config_cls: type[PerSiteConfig]  # what `SWRConfig.ablation` is read as
    run: Callable  # run(ctx, cfg: SWRConfig) -> MethodRun


def get_search(name: str) -> AblationSearch:
    if name not in SEARCHES:
        raise ConfigError(f"SWRConfig.search must be one of {(DEFAULT_SEARCH, *SEARCHES)}, got {name!r}")
    return AblationSearch(name, PolicyConfig if name == "policy" else PerSiteConfig, run_per_site)


register_ablations(get_search=get_search, family_options=family_options)

__all__ = ["DEFAULT_OPTIONS", "SEARCHES", "AblationSearch", "PerSiteConfig", "PolicyConfig", "SWROption", "family_options", "get_search"]

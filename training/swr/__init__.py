"""SWR (Scalable Weight Reparametrization): a search decides where and with which delta to adapt
the frozen base under a hard budget of blob bytes (or updated parameters). The default search
is one L0 search over every site whose byte-exact global prefix is kept (search.py, read top to
bottom); the per-site searches over several families, with or without a policy network, are
ablations (ablations/, registered on import and run only when `SWRConfig.search` names one). Used only during
transfer; the search state is discarded. See docs/METHOD.md."""

from polykws.training.swr.config import SWRConfig
from polykws.training.swr import ablations  # noqa: F401  (registers the ablation searches)


def register(register_method) -> None:
    """Called by training/adapt/__init__.py: registers the `swr` method with the harness."""

    def run(ctx, cfg):
        from polykws.training.swr.search import run_swr

        return run_swr(ctx, cfg)

    register_method("swr", SWRConfig, budgeted=True)(run)


__all__ = ["SWRConfig", "register"]

"""SWR (Scalable Weight Reparametrization): a search decides where and with which delta to adapt
the frozen base under a hard budget of blob bytes (or updated parameters). By default one L0
search over every site ranks the changes and the byte-exact prefix is kept (l0.py); per-site
searches over several families, with or without a policy network, are the alternatives
(search.py). Used only during transfer; the search state is discarded. See docs/METHOD.md."""

from polykws.training.swr.config import DEFAULT_OPTIONS, SWRConfig, SWROption


def register(register_method) -> None:
    """Called by training/adapt/__init__.py: registers the `swr` method with the harness."""

    def run(ctx, cfg):
        from polykws.training.swr.search import run_swr

        return run_swr(ctx, cfg)

    register_method("swr", SWRConfig, budgeted=True)(run)


__all__ = ["DEFAULT_OPTIONS", "SWRConfig", "SWROption", "register"]

"""SWR (Scalable Weight Reparametrization): a policy network decides where and with which delta
family to adapt the frozen base under a hard budget of updated parameters. Used only during
transfer; the policy is discarded. See docs/METHOD.md and search.py."""

from polykws.training.swr.config import DEFAULT_OPTIONS, SWRConfig, SWROption


def register(register_method) -> None:
    """Called by training/adapt/__init__.py: registers the `swr` method with the harness."""

    def run(ctx, cfg):
        from polykws.training.swr.search import run_swr

        return run_swr(ctx, cfg)

    register_method("swr", SWRConfig, budgeted=True)(run)


__all__ = ["DEFAULT_OPTIONS", "SWRConfig", "SWROption", "register"]

"""One language x method x budget x seed: the frozen base adapted, merged and scored (a fan-out job)."""

from __future__ import annotations

from typing import Any

from polykws.core import PolykwsError, atomic_write_json, from_dict
from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import load_splits


def adapt_stage(ctx: StageContext) -> dict[str, Any]:
    """One language x method x budget x seed: adapt the frozen base, merge, score on test."""
    import torch

    from polykws.training.adapt import TransferConfig, adapt, method_config
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.evaluate import evaluate

    c = ctx.config
    base = load_model(ctx.input("base") / "base.pt")
    splits = load_splits(ctx.input(f"features/{c['language']}"))
    from polykws.pipeline.config import budget_kwargs

    budget, unit = c.get("budget"), c.get("budget_unit", "params")
    mcfg = method_config(c["method"], **budget_kwargs(unit, budget), **dict(c.get("method_options") or {}))
    tcfg = from_dict(TransferConfig, {**c["fit"], "seed": int(c["seed"]), "num_threads": int(c["threads"])}, "adapt.fit")
    res = adapt(base.model, splits, mcfg, tcfg)
    labels = tuple(res.labels)
    sha = save_model(ctx.out / "model.pt", res.model, labels=labels, frontend=base.frontend,
                     meta={"language": c["language"], "method": c["method"], f"budget_{unit}": budget, "seed": c["seed"],
                           "base_sha256": base.sha256})
    if res.delta_model is not None:
        res.delta_model.save(ctx.out / "delta.pt")
    rep = evaluate(res.model, splits["test"])
    rep.save(ctx.out / "eval", title=f"{c['language']} {c['method']} budget {budget} seed {c['seed']} (float)")
    # Merged model has the base's shapes: assert it here too (cheap; the deploy contract).
    base_shapes = {k: tuple(v.shape) for k, v in base.model.state_dict().items() if not k.startswith("head.")}
    new_shapes = {k: tuple(v.shape) for k, v in res.model.state_dict().items() if not k.startswith("head.")}
    if base_shapes != new_shapes:
        raise PolykwsError(f"{c['language']}/{c['method']}: merged model's body shapes differ from the base's")
    history = [dict(h.__dict__) if hasattr(h, "__dict__") else dict(h) for h in res.history]
    atomic_write_json(ctx.out / "volatile" / "history.json", history)  # per-epoch wall times: not hashed
    atomic_write_json(ctx.out / "history.json", [{k: v for k, v in h.items() if k != "seconds"} for h in history])
    del torch
    return {
        "language": c["language"],
        "method": c["method"],
        "budget": budget,
        "budget_unit": unit,
        "seed": c["seed"],
        "labels": list(labels),
        "updated_params": int(res.cost.total),
        "body_params": int(res.cost.body),
        "head_params": int(res.cost.head),
        "val_acc": res.val_acc,
        "test_acc": rep.top1,
        "test_clips": rep.num_samples,
        "state_sha256": sha,
        "adapt_wall_s": res.wall_s,
        "selection": res.details.get("selection"),
        "estimated_body_blob_bytes": res.details.get("estimated_body_blob_bytes"),
        "headline": f"test {100 * rep.top1:.1f}%, {int(res.cost.total)} params",
    }

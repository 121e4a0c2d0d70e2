"""A benchmark grid's row stages (polykws.pipeline.grid): the pipeline's adapt and export stages,
with a budget the method cannot use recorded as an infeasible row and the blob's bytes by role."""

from __future__ import annotations

from typing import Any

from polykws.core import PolykwsError, atomic_write_json
from polykws.pipeline.engine import StageContext
from polykws.pipeline.stages.exporting import export_language_stage
from polykws.pipeline.stages.transfer import adapt_stage

# The message a budgeted method raises when no site fits the budget.
INFEASIBLE = "no site fits"


def adapt_row_stage(ctx: StageContext) -> dict[str, Any]:
    """The pipeline's adapt stage, with a budget the method cannot use recorded as infeasible."""
    try:
        summary = adapt_stage(ctx)
    except PolykwsError as exc:
        if INFEASIBLE not in str(exc):
            raise
        atomic_write_json(ctx.out / "infeasible.json", {"reason": str(exc)})
        return {"status": "infeasible", "reason": str(exc), "language": ctx.config["language"], "headline": "infeasible"}
    return {**summary, "status": "ok"}


def export_row_stage(ctx: StageContext) -> dict[str, Any]:
    """The pipeline's language export, plus the blob's bytes by role (export.breakdown)."""
    from polykws.export.breakdown import blob_breakdown

    c = ctx.config
    adapt = ctx.summary(c["adapt_stage"])
    if adapt.get("status") != "ok":
        return {"status": adapt.get("status"), "reason": adapt.get("reason"), "headline": str(adapt.get("status"))}
    summary = export_language_stage(ctx)
    base = (ctx.input("export_base") / f"{c['base_language']}.tflite").read_bytes()
    bd = blob_breakdown(base, (ctx.out / f"{c['language']}.blob").read_bytes())
    head = sum(v for k, v in bd["patched_bytes_by_field"].items() if k.startswith("head "))
    changed_head = sum(v for k, v in bd["changed_bytes_by_field"].items() if k.startswith("head "))
    roles = {
        "base_tflite_bytes": len(base),
        "fixed_bytes": bd["fixed_bytes"],
        "records": bd["records"],
        "stream_bytes": bd["stream_bytes"],
        "head_patched_bytes": head,
        "body_patched_bytes": bd["patched_bytes"] - head,
        "head_changed_bytes": changed_head,
        "body_changed_bytes": sum(bd["changed_bytes_by_field"].values()) - changed_head,
    }
    return {**summary, **roles, "status": "ok"}

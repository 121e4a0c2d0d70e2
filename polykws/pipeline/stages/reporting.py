"""The run's report: every stage's summary and artifacts into report.json, report.md, index.html and plots."""

from __future__ import annotations

from typing import Any

import numpy as np

from polykws.core import atomic_write_json
from polykws.pipeline.engine import StageContext
from polykws.pipeline.stages.common import pct


def report_stage(ctx: StageContext) -> dict[str, Any]:
    from polykws.pipeline.report import render_report
    from polykws.pipeline.reportdata import collect_report_data

    data = collect_report_data(ctx)
    atomic_write_json(ctx.out / "report.json", data)
    render_report(data, ctx.out)
    ship = [r for r in data["languages"]]
    mean_f = _mean([r.get("float_acc") for r in ship])
    mean_q = _mean([r.get("int8_acc") for r in ship])
    return {"mean_float_acc": mean_f, "mean_int8_acc": mean_q,
            "headline": f"mean over {len(ship)} languages: float {pct(mean_f)}, int8 {pct(mean_q)}"}


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None

"""A shipped language on long noisy streams: FRR at a fixed FA/h, and the thresholds its blob ships."""

from __future__ import annotations

from typing import Any

from polykws.core import atomic_write_json
from polykws.pipeline.engine import StageContext
from polykws.pipeline.stages.common import language_records, noise_dir, pct, task_from_stage_config


def streaming_stage(ctx: StageContext) -> dict[str, Any]:
    """A shipped language on long noisy streams (polykws.pipeline.streameval): thresholds chosen on
    validation streams, FRR at a fixed FA/h on test ones; the language's export again, its blob
    now carrying those thresholds (what `pack` ships)."""
    from polykws.export.api import ExportedModel, with_thresholds
    from polykws.export.streaming import LanguageThresholds
    from polykws.pipeline.config import StreamingSection
    from polykws.pipeline.streameval import StreamModel, evaluate_language, row_summary, stream_noise, write_results
    from polykws.core import from_dict

    c = ctx.config
    lang = c["language"]
    settings = from_dict(StreamingSection, dict(c["streaming"]), "streaming")
    base = ExportedModel.load(ctx.input("export_base"), c["base_language"])
    ex = ExportedModel.load(ctx.input(c["export_stage"]), lang)
    records = language_records(ctx)
    task = task_from_stage_config(c, records)
    model = StreamModel(ex.tflite, tuple(ex.labels), ex.frontend, f"{c['export_stage']}/{lang}.tflite")
    quiet = not ctx.runtime.get("progress", True)
    [row] = evaluate_language(model, task, records, stream_noise(noise_dir(ctx), records, ctx.name), settings, parity=True,
                              log=(lambda _: None) if quiet else print)
    row.pop("wall_s")  # the stage's manifest has it; the artifact holds only what the same inputs reproduce
    shipped = with_thresholds(base, ex, LanguageThresholds.from_dict(row["thresholds"]).blob_bytes(),
                              log2_temperature=int(row["posterior"]["log2_temperature"]))
    shipped.save(ctx.out)
    atomic_write_json(ctx.out / "streaming.json", row)
    write_results(ctx.out, [row], title=f"{lang}: DET, test streams")
    s = row_summary(row)
    frr1 = s["frr_at_1_fa_per_hour"]
    return {
        "language": lang,
        **s,
        "blob_bytes": len(shipped.blob),
        "headline": (f"FRR {pct(frr1)} at 1 FA/h (test oracle); shipped {s['posterior']} threshold {s['threshold']}: "
                     f"FRR {pct(s['shipped_frr'])} at {s['shipped_fa_per_hour']:.1f} FA/h"),
    }

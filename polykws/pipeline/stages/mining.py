"""The shipped job's model after rounds of hard-negative mining on training streams (a fan-out job)."""

from __future__ import annotations

from typing import Any

from polykws.core import PolykwsError, atomic_write_json, from_dict
from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import load_splits
from polykws.pipeline.stages.common import language_records, noise_dir, task_from_stage_config


def mining_stage(ctx: StageContext) -> dict[str, Any]:
    """Load the adapted delta model; per round, score negative streams of training speakers in
    training noise, add the windows that fire to _unknown_ and fine-tune. Writes what an adapt
    stage writes (model.pt, delta.pt, eval/) plus mining.json, so export reads either."""
    import numpy as np
    import torch

    from polykws.core import stable_hash
    from polykws.datasets.manifest import UNKNOWN_LABEL
    from polykws.datasets.streams import StreamConfig, iter_streams
    from polykws.export.streaming import stream_features, stream_pcm
    from polykws.pipeline.streameval import stream_noise
    from polykws.training.adapt import TransferConfig, prepare_splits, score
    from polykws.training.adapt.mining import MiningConfig, fine_tune, fired_windows, windows_at, with_negatives
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.deltas import DeltaModel
    from polykws.training.evaluate import evaluate

    c = ctx.config
    lang = c["language"]
    m = from_dict(MiningConfig, dict(c["mining"]), "adapt.mining")
    tcfg = from_dict(TransferConfig, {**c["fit"], "seed": int(c["seed"]), "num_threads": int(c["threads"])}, "adapt.fit")
    base = load_model(ctx.input("base") / "base.pt")
    adapted = ctx.input(c["adapt_stage"])
    if not (adapted / "delta.pt").is_file():
        raise PolykwsError(f"{c['adapt_stage']}: no delta.pt; mining fine-tunes a delta model's sites, and {c['method']} has none")
    dm = DeltaModel.load(adapted / "delta.pt", base.model)
    splits = load_splits(ctx.input(f"features/{lang}"))
    data, labels = prepare_splits(splits, base.model)
    if UNKNOWN_LABEL not in labels:
        raise PolykwsError(f"{lang}: mining adds windows to {UNKNOWN_LABEL}, and this task has no such class")
    unknown_id = labels.index(UNKNOWN_LABEL)
    keyword_ids = [i for i, lab in enumerate(labels) if not lab.startswith("_")]
    records = language_records(ctx)
    task = task_from_stage_config(c, records)
    noise = stream_noise(noise_dir(ctx), records, ctx.name)
    fe = base.frontend
    hop_ms = fe.window_stride_ms * fe.frame_decimation
    stride, refractory = max(1, round(m.stride_ms / hop_ms)), max(1, round(m.refractory_ms / hop_ms))
    cap = int(round(m.max_per_keyword_row * int(np.isin(data["train"].y.numpy(), keyword_ids).sum())))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(tcfg.num_threads or old_threads)
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(m.rounds):
            scfg = StreamConfig(snrs_db=tuple(c["snrs_db"]), negative_s_per_snr=m.negative_s_per_snr,
                                seed=int(stable_hash(["mining", int(c["seed"]), r], 8), 16))
            found, hours, scanned = [], 0.0, 0
            for s in iter_streams(records, task, noise, "train", scfg, kinds=("negative",)):
                frames = stream_features(stream_pcm(s.audio), fe)
                fw = fired_windows(dm, frames, fe.num_frames, stride, keyword_ids, m.min_score, refractory)
                found += [(float(sc), s.name, int(st), w) for sc, st, w in zip(fw.scores, fw.starts, windows_at(frames, fw.starts, fe.num_frames))]
                hours += s.duration_s / 3600.0
                scanned += fw.scanned
                del s, frames
            found.sort(key=lambda t: (-t[0], t[1], t[2]))
            kept = found[:cap]
            x = np.stack([t[3] for t in kept]) if kept else np.zeros((0, *fe.input_shape), np.float32)
            data = with_negatives(data, np.repeat(x, m.copies, axis=0), unknown_id)
            val_acc = fine_tune(dm, data, tcfg, m.epochs, round_index=r)
            rounds.append({"round": r + 1, "negative_hours": hours, "windows_scored": scanned, "fired": len(found),
                           "fired_per_hour_before": len(found) / hours if hours else None, "mined": len(kept),
                           "unknown_rows": int((data["train"].y == unknown_id).sum()), "val_acc": val_acc})
            print(f"  {lang} mining round {r + 1}: {len(found)} firing windows in {hours:.2f} h "
                  f"({len(found) / max(hours, 1e-9):.0f}/h), {len(kept)} added; val {100 * val_acc:.1f}%")
        merged = dm.merge_and_unload()
    finally:
        torch.set_num_threads(old_threads)
    meta = {"language": lang, "method": c["method"], f"budget_{c['budget_unit']}": c["budget"], "seed": c["seed"],
            "base_sha256": base.sha256, "mining_rounds": m.rounds}
    sha = save_model(ctx.out / "model.pt", merged, labels=labels, frontend=base.frontend, meta=meta)
    dm.save(ctx.out / "delta.pt")
    rep = evaluate(merged, splits["test"])
    rep.save(ctx.out / "eval", title=f"{lang} {c['method']} budget {c['budget']} seed {c['seed']}, {m.rounds} mining round(s) (float)")
    atomic_write_json(ctx.out / "mining.json", {"config": m.to_dict(), "rounds": rounds})
    adapt = ctx.summary(c["adapt_stage"])
    return {
        "language": lang,
        "method": c["method"],
        "budget": c["budget"],
        "budget_unit": c["budget_unit"],
        "seed": c["seed"],
        "labels": list(labels),
        "updated_params": adapt.get("updated_params"),
        "val_acc": score(merged, data["val"], tcfg.eval_batch_size),
        "test_acc": rep.top1,
        "adapted_test_acc": adapt.get("test_acc"),
        "test_clips": rep.num_samples,
        "state_sha256": sha,
        "mining": rounds,
        "headline": (f"test {100 * rep.top1:.1f}% (adapted {100 * adapt.get('test_acc', float('nan')):.1f}%); fired/h by round: "
                     + ", ".join(f"{r['fired_per_hour_before']:.0f}" for r in rounds)),
    }

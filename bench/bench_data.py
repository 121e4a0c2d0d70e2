"""Benchmark of the datasets layer: scan, feature build (cold and cached), corpus synthesis.

    .venv/bin/python bench/bench_data.py [--repeats 3] [--shared ../shared/data] [--out runs/bench_data.json]

Reports medians over repeats (the machine is shared and noisy), plus the load average seen, and
CPU seconds per clip measured in-process with one thread (the load-independent cost).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _cpu_per_clip(records, frontend, n: int = 200) -> float:
    """CPU seconds per clip for load + features, in this process, one torch thread.

    The same two public calls the feature cache makes per clip: decode (`load_audio`) and the
    frontend over the batch (`compute_features_batch`); the cache's file write is not timed.
    """
    import numpy as np
    import torch

    from polykws.datasets.audio import load_audio
    from polykws.datasets.frontend import compute_features_batch

    torch.set_num_threads(1)
    step = max(1, len(records) // n)
    paths = [r.path for r in records[::step][:n]]

    def load_and_featurize(batch: list[str]) -> None:
        waves = [load_audio(p, frontend.sample_rate_hz, frontend.clip_samples) for p in batch]
        compute_features_batch(np.stack(waves), frontend)

    load_and_featurize(paths[:5])  # warm-up (imports, kernels)
    t0 = time.process_time()
    load_and_featurize(paths)
    return (time.process_time() - t0) / len(paths)


def main() -> None:
    from polykws.datasets.features import warm_feature_cache
    from polykws.datasets.frontend import frontend_by_name
    from polykws.datasets.scan import scan
    from polykws.datasets.synth import SynthConfig, synthesize_corpus
    from polykws.core import shared_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shared", type=Path, default=shared_dir() / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_data.json"))
    args = ap.parse_args()
    results: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
    }
    loads = []
    kws = args.shared / "kws"
    work = Path(tempfile.mkdtemp(prefix="polykws-bench-data-"))
    try:
        scan_s, res = [], None
        for _ in range(args.repeats):
            loads.append(os.getloadavg()[0])
            dt, res = _timed(lambda: scan(kws))
            scan_s.append(dt)
        results["scan_shared"] = {"median_s": statistics.median(scan_s), "runs_s": scan_s, "clips": len(res.clips), "skipped": len(res.skipped)}
        for name in ("micro", "mfcc"):
            fe = frontend_by_name(name)
            cold, warm = [], []
            for i in range(args.repeats):
                cache = work / f"cache-{name}-{i}"
                loads.append(os.getloadavg()[0])
                cold.append(_timed(lambda: warm_feature_cache(res.records, fe, cache_dir=cache, progress=False))[0])
                warm.append(_timed(lambda: warm_feature_cache(res.records, fe, cache_dir=cache, progress=False))[0])
                shutil.rmtree(cache)
            results[f"features_{name}"] = {
                "clips": len(res.clips), "cold_median_s": statistics.median(cold), "cold_runs_s": cold,
                "cached_median_s": statistics.median(warm), "cached_runs_s": warm,
                "cpu_ms_per_clip": 1000 * _cpu_per_clip(res.clips, fe),
            }
        synth_s = []
        summary = None
        for i in range(args.repeats):
            loads.append(os.getloadavg()[0])
            dt, summary = _timed(lambda: synthesize_corpus(SynthConfig(), work / f"synth-{i}"))
            synth_s.append(dt)
            shutil.rmtree(work / f"synth-{i}")
        results["synth_default"] = {"median_s": statistics.median(synth_s), "runs_s": synth_s, **{k: summary[k] for k in ("clips", "noise_files", "bytes")}}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_1min"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

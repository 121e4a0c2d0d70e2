"""A report input with the shape the pipeline produces (numbers are made up: this tests rendering only)."""

from __future__ import annotations

import numpy as np


def confusion(labels, acc, n_per_class, seed):
    rng = np.random.default_rng(seed)
    k = len(labels)
    m = np.zeros((k, k), dtype=int)
    for i in range(k):
        right = int(round(acc * n_per_class))
        m[i, i] = right
        for _ in range(n_per_class - right):
            m[i, rng.integers(k)] += 1
    return m.tolist()


def streaming(lang: str, i: int) -> dict:
    """A streaming stage's summary as the report reads it, with a made-up DET curve."""
    det = [{"threshold": t, "frr": min(1.0, 0.1 + t / 300 + 0.05 * i), "fa_per_hour": max(0.0, 40.0 - t / 6), "false_accepts": 0,
            "hits": 0, "keywords": 40, "median_latency_s": 0.3} for t in range(257)]
    return {"frr_at_1_fa_per_hour": 0.25 + 0.1 * i, "frr_at_0_5_fa_per_hour": 0.3 + 0.1 * i, "threshold": 200 + i,
            "threshold_met_target": i != 2, "target_fa_per_hour": 1.0, "shipped_frr": 0.3 + 0.1 * i, "shipped_fa_per_hour": 0.8 + i,
            "median_latency_s": 0.31, "test_hours": 1.25, "test_negative_hours": 1.0, "test_keywords": 400 + i,
            "curve": {"language": lang, "frontend": "mfcc", "frontend_state": "warm", "detector": {"average_window_ms": 400}, "det": det}}


def report_data(firmware_measured: bool = False) -> dict:
    langs = {"de": ["null", "eins", "zwei", "drei"], "fr": ["zéro", "un", "deux", "trois"], "uk": ["нуль", "один", "два"]}
    languages, sweep, blobs, full = [], [], {}, {}
    for i, (lang, kws) in enumerate(langs.items()):
        labels = ["_silence_", "_unknown_", *kws]
        languages.append({
            "lang": lang, "method": "swr", "budget": 1000, "keywords": kws, "labels": labels, "test_clips": 40 + i,
            "float_acc": 0.9 - 0.05 * i, "int8_acc": 0.895 - 0.05 * i, "updated_params": 1234 + i,
            "blob_bytes": 2100 + 10 * i, "tflite_bytes": 45856, "confusion": confusion(labels, 0.9 - 0.05 * i, 8, i),
            "streaming": streaming(lang, i),
        })
        blobs[lang] = 2100 + 10 * i
        full[lang] = 45856
        for method, base_acc in (("swr", 0.8), ("head_only", 0.6), ("full_finetune", 0.9)):
            for b, budget in enumerate((100, 1000)):
                sweep.append({"lang": lang, "method": method, "budget": budget, "seed": 0,
                              "updated_params": budget + 100, "float_acc": base_acc + 0.02 * b, "int8_acc": base_acc + 0.02 * b - 0.004,
                              "blob_bytes": 300 + 2 * budget + 17 * i})
    full["en"] = 45856
    data = {
        "title": "polykws run: fixture", "config_name": "fixture.yaml", "generated": "2026-11-23 12:00 UTC", "host": "testhost",
        "command": "polykws run --config fixture.yaml",
        "model": {"name": "ds_cnn_s", "params": 23756, "macs": 2_660_000, "frontend": {"kind": "mfcc", "num_frames": 49, "num_features": 10}},
        "base": {"language": "en", "labels": ["_silence_", "_unknown_", "yes", "no"], "test_clips": 120, "float_acc": 0.93,
                 "int8_acc": 0.925, "params": 23756, "tflite_bytes": 45856, "confusion": confusion(["a", "b", "c", "d"], 0.93, 10, 9)},
        "languages": languages, "sweep": sweep,
        "flash": {"base_bytes": 45856, "blob_bytes": blobs, "full_model_bytes": full, "flash_image_bytes": 45856 + sum(blobs.values()) + 200},
        "firmware": {"status": "skipped", "reason": "TFLM_DIR is not set (the TFLM application needs a tflite-micro checkout)"},
        "stages": [{"name": "data", "built": "2026-11-23 11:00", "wall_s": 12.5, "key": "abc"}, {"name": "base", "built": "2026-11-23 11:05", "wall_s": 300.0, "key": "def"}],
        "notes": ["A fixture: the numbers are invented for the rendering test."],
    }
    if firmware_measured:
        data["firmware"] = {"status": "measured", "rows": [
            {"board": "mps2-an386", "kernels": "cmsis-nn", "lang": "de", "accuracy": 0.9, "host_accuracy": 0.9, "n": 50, "test_clips": 410, "instructions": 7_700_000,
             "flash_bytes": 250_000, "ram_bytes": 60_000}]}
    return data

"""Streaming detection: frontend frame by frame, smoothing, decisions, matching, thresholds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polykws.core import ConfigError
from polykws.datasets.frontend import audio_to_pcm16, compute_features, compute_features_warm, mfcc_frontend, micro_frontend
from polykws.datasets.streams import StreamEvent
from polykws.export.streaming import (
    THRESHOLD_MAX,
    DetectorConfig,
    LanguageThresholds,
    ScoredStream,
    ScoreTrace,
    choose_thresholds,
    decide,
    det_curve,
    keyword_curve,
    match,
    operating_point,
    smooth,
    stream_features,
)


def _pcm(seconds=4.0, seed=0):
    rng = np.random.default_rng(seed)
    x = 0.03 * rng.standard_normal(int(16000 * seconds))
    t = np.arange(8000) / 16000
    x[16000:24000] += 0.3 * np.sin(2 * np.pi * 300 * t) * np.hanning(8000)
    return audio_to_pcm16(x)


def test_mfcc_frames_equal_clip_frames():
    fe = mfcc_frontend()
    pcm = _pcm()
    frames = stream_features(pcm, fe, chunk_samples=1234)
    assert frames.shape == (1 + (pcm.size - 640) // 320, 10)
    for start in (0, 7, 100):  # any 1 s window on the frame grid
        s = start * 320
        clip = compute_features(pcm[s : s + 16000].astype(np.float32) / 32768.0, fe)
        # No state across frames: equal up to float32 rounding of the batched transform.
        np.testing.assert_allclose(frames[start : start + 49], clip, rtol=0, atol=2e-6)


def test_micro_is_warm_and_chunking_free():
    fe = micro_frontend()
    pcm = _pcm()
    a = stream_features(pcm, fe, chunk_samples=16000)
    assert np.array_equal(a, stream_features(pcm, fe, chunk_samples=333))
    # The first window equals a reset-state clip; later ones see a warm noise estimate and PCAN.
    assert np.array_equal(a[:49], compute_features(pcm[:16000].astype(np.float32) / 32768.0, fe))
    later = compute_features(pcm[32000:48000].astype(np.float32) / 32768.0, fe)
    assert not np.array_equal(a[100:149], later)
    # compute_features_warm is the device's view of one clip: the stream's frames on the same grid.
    f = pcm.astype(np.float32) / 32768.0
    assert np.array_equal(compute_features_warm(f[32000:48000], f[:32000], fe), a[100:149])
    assert np.array_equal(compute_features_warm(f[32000:48000], f[5:32000], fe), compute_features_warm(f[32000:48000], f[320:32000], fe))


def test_plan_refuses_off_grid_strides():
    plan = DetectorConfig(stride_ms=200, average_window_ms=600, refractory_ms=1000).plan(mfcc_frontend())
    assert (plan.stride_frames, plan.average_inferences, plan.refractory_frames, plan.window_frames) == (10, 3, 50, 49)
    with pytest.raises(ConfigError, match="not a multiple of the model frame hop"):
        DetectorConfig(stride_ms=250, average_window_ms=500).plan(micro_frontend())
    with pytest.raises(ConfigError, match="multiple of stride_ms"):
        DetectorConfig(stride_ms=200, average_window_ms=500)


def test_smooth_sums_the_last_window():
    q = np.array([[-128, 127], [0, -128], [127, 0], [-128, -128]], np.int8)
    sums, counts = smooth(q, 2, 2)
    assert counts.tolist() == [1, 2, 2, 2]
    assert sums.tolist() == [[0, 255], [128, 255], [383, 128], [255, 128]]


LABELS = ("go", "stop", "_silence_", "_unknown_")


def _trace(sums, counts=None, frames=None):
    sums = np.asarray(sums, np.int32)
    n = sums.shape[0]
    return ScoreTrace(np.arange(n) * 10 + 48 if frames is None else np.asarray(frames), sums,
                      np.ones(n, np.int32) if counts is None else np.asarray(counts, np.int32), LABELS, 320, 640, 16000)


def test_decide_threshold_refractory_and_never_fire():
    tr = _trace([[200, 10, 0, 0], [210, 0, 0, 0], [0, 0, 0, 0], [0, 0, 250, 0], [0, 0, 0, 250], [100, 100, 0, 0]],
                frames=[48, 58, 68, 200, 210, 300])
    ev = decide(tr, 150, refractory_frames=50)
    # frame 58 falls in the refractory period; _silence_/_unknown_ never fire.
    assert [(e.keyword, e.frame) for e in ev] == [("go", 48)]
    ev = decide(tr, {"go": 100, "stop": 0}, refractory_frames=0)
    assert [(e.keyword, e.frame) for e in ev] == [("go", 48), ("go", 58), ("go", 300)]  # the tie at 300 goes to "go"
    assert ev[0].time_s == pytest.approx((48 * 320 + 640) / 16000)
    assert decide(tr, THRESHOLD_MAX, 0) == []
    # n scales the threshold: S=300 over 2 inferences is an average of 150.
    assert len(decide(_trace([[300, 0, 0, 0]], counts=[2]), 150, 0)) == 1
    assert len(decide(_trace([[299, 0, 0, 0]], counts=[2]), 150, 0)) == 0
    with pytest.raises(ConfigError, match="does not have"):
        decide(tr, {"jump": 3}, 0)


def _ev(label, end_s):
    return StreamEvent(label, "keyword", int((end_s - 0.3) * 16000), int(end_s * 16000), "x")


def test_match_counts_hits_false_accepts_and_latency():
    from polykws.export.streaming import Detection

    cfg = DetectorConfig(match_before_s=0.5, match_after_s=1.5)
    truth = [_ev("go", 2.0), _ev("stop", 5.0)]
    dets = [Detection("go", 0, 2.4), Detection("go", 0, 2.9), Detection("go", 0, 5.2), Detection("stop", 0, 4.6), Detection("stop", 0, 9.0)]
    r = match(dets, truth, 16000, cfg)
    # go@2.4 hits; go@2.9 is a second detection of a used word; go@5.2 is the wrong word; stop@4.6 hits early.
    assert (r.keywords, r.hits, r.false_accepts) == (2, 2, 3)
    assert sorted(r.latencies_s) == pytest.approx([-0.4, 0.4])


def test_det_and_thresholds():
    cfg = DetectorConfig()
    # A keyword at 1 s scored 200; a negative bump of 120 at 30 s; one hour of audio.
    tr = _trace([[200, 0, 0, 0], [0, 0, 255, 0], [120, 0, 0, 0]], frames=[20, 500, 1480])
    s = ScoredStream("s", tr, (_ev("go", 0.6),), 3600.0)
    pts = det_curve([s], cfg, 50)
    by_t = {p.threshold: p for p in pts}
    assert (by_t[100].frr, by_t[100].fa_per_hour) == (0.0, 1.0)
    assert (by_t[121].frr, by_t[121].fa_per_hour) == (0.0, 0.0)
    assert (by_t[201].frr, by_t[201].fa_per_hour) == (1.0, 0.0)
    assert operating_point(pts, 0.5).threshold == 200  # lowest FRR, then the highest threshold
    th = choose_thresholds("xx", [s], cfg, mfcc_frontend(), target_fa_per_hour=0.5)
    assert th.thresholds == {"go": 200, "stop": 200} and th.val_frr == 0.0
    again = LanguageThresholds.from_dict(json.loads(json.dumps(th.to_dict())))
    assert again == th


def test_thresholds_that_miss_the_target_are_the_fewest_false_accepts_a_blob_can_carry():
    cfg = DetectorConfig()
    # A negative bump at the largest score: no threshold up to 255 is free of false accepts, so
    # a 0.5 FA/h target is missed; 256 (never fire) is not a threshold a blob can carry.
    tr = _trace([[200, 0, 0, 0], [255, 0, 0, 0], [120, 0, 0, 0]], frames=[20, 500, 1480])
    s = ScoredStream("s", tr, (_ev("go", 0.6),), 3600.0)
    th = choose_thresholds("xx", [s], cfg, mfcc_frontend(), target_fa_per_hour=0.5)
    assert not th.met_target
    # Thresholds 201..255 each leave one false accept (the 255 bump) and miss "go": the fewest
    # false accepts, then the lowest FRR, is 121..200 with FRR 0 and one false accept.
    assert th.thresholds == {"go": 200, "stop": 200} and (th.val_frr, th.val_fa_per_hour) == (0.0, 1.0)
    assert th.blob_bytes() == bytes([200, 200, 255, 255])
    met = choose_thresholds("xx", [s], cfg, mfcc_frontend(), target_fa_per_hour=1.0)
    assert met.met_target and met.thresholds["go"] == 200
    assert LanguageThresholds.from_dict(json.loads(json.dumps(th.to_dict()))) == th


def test_per_keyword_thresholds_share_the_false_accepts_out():
    """A confusable keyword no longer sets every keyword's threshold: "go" has a negative bump
    at 180, "stop" none above 100, so one threshold must pass 180 and miss "stop" (150)."""
    from polykws.export.streaming import per_keyword_thresholds, score_thresholds

    cfg = DetectorConfig()
    tr = _trace([[200, 0, 0, 0], [0, 150, 0, 0], [180, 0, 0, 0], [0, 100, 0, 0]], frames=[20, 500, 1480, 2000])
    s = ScoredStream("s", tr, (_ev("go", 0.6), _ev("stop", 10.3)), 3600.0)
    one = choose_thresholds("xx", [s], cfg, mfcc_frontend(), target_fa_per_hour=0.5)
    assert one.thresholds == {"go": 200, "stop": 200} and one.val_frr == 0.5
    kw = choose_thresholds("xx", [s], cfg, mfcc_frontend(), target_fa_per_hour=0.5, per_keyword=True)
    # Of equal hits and false accepts, each keyword keeps its highest threshold.
    assert kw.thresholds == {"go": 200, "stop": 150} and (kw.val_frr, kw.val_fa_per_hour, kw.met_target) == (0.0, 0.0, True)
    assert kw.blob_bytes() == bytes([200, 150, 255, 255])
    # A budget of one false accept goes where it buys a hit: nowhere here, so nothing changes;
    # with "stop" at 90 instead, it is spent on "stop" (down to 90, its bump at 100 firing).
    assert per_keyword_thresholds([s], cfg, 50, 1) == {"go": 200, "stop": 150}
    low = ScoredStream("s", _trace([[200, 0, 0, 0], [0, 90, 0, 0], [180, 0, 0, 0], [0, 100, 0, 0]], frames=[20, 500, 1480, 2000]),
                       s.truth, 3600.0)
    assert per_keyword_thresholds([low], cfg, 50, 0) == {"go": 200, "stop": 255}
    assert per_keyword_thresholds([low], cfg, 50, 1) == {"go": 200, "stop": 90}
    p = score_thresholds([low], cfg, 50, {"go": 200, "stop": 90})
    assert (p.hits, p.false_accepts, p.keywords) == (2, 1, 2)


@pytest.mark.shared
def test_streaming_model_equals_clip_evaluation(base_export, feats, shared_data):
    """On real speech, every ring the detector feeds TFLM is the clip pipeline's int8 input, and so are the outputs."""
    from polykws.datasets.audio import load_audio
    from polykws.export.evaluate import quantize_features, run_tflm
    from polykws.export.streaming import detect, score_stream

    fe = base_export.frontend
    words = [str(i) for i in range(10)]
    rng = np.random.default_rng(0)
    parts, ends = [], []
    for i, w in enumerate(words[:4]):
        f = sorted((shared_data / "kws" / "gu" / "gujarati_digits" / w).iterdir())[-1]
        parts += [0.003 * rng.standard_normal(8000).astype(np.float32), load_audio(f)]
    pcm = audio_to_pcm16(np.concatenate(parts + [np.zeros(16000, np.float32)]))
    cfg = DetectorConfig(stride_ms=100, average_window_ms=200, refractory_ms=600)
    tr = score_stream(base_export.tflite, base_export.labels, pcm, fe, cfg)
    windows = np.stack([compute_features(pcm[(n - 48) * 320 : (n - 48) * 320 + 16000].astype(np.float32) / 32768.0, fe) for n in tr.frames])
    q = run_tflm(base_export.tflite, quantize_features(base_export.tflite, windows))
    sums, _ = smooth(q, len(base_export.labels), 2)
    assert np.array_equal(sums, tr.sums)
    assert np.array_equal(tr.resmoothed(4).sums, smooth(q, len(base_export.labels), 4)[0])
    # mfcc has no state: the reset (per-window) measurement mode sees the same int8 inputs.
    assert np.array_equal(score_stream(base_export.tflite, base_export.labels, pcm, fe, cfg, frontend_state="reset").sums, tr.sums)
    ev = detect(base_export.tflite, base_export.labels, pcm, fe, cfg, 128)
    assert ev == decide(tr, 128, 30)
    assert ev and all(e.keyword in words for e in ev)


def test_reset_mode_is_refused_unless_named():
    from polykws.export.streaming import score_stream

    with pytest.raises(ConfigError, match="frontend_state"):
        score_stream(b"", ("go",), np.zeros(16000, np.int16), mfcc_frontend(), DetectorConfig(), frontend_state="cold")


def test_detector_limits_attributes_peaks_to_the_words_said(bench_module):
    """bench/detector_limits.py: each negative word gets the highest keyword score inside its span
    (from 0.2 s before to 1 s after it), noise far from any word gets its own peak, and _unknown_
    never counts as a keyword score."""
    limits = bench_module("detector_limits")
    # Inferences end at (frame * 320 + 640) / 16000 s: frame 48 -> 1.0 s, 298 -> 6.0 s, 548 -> 11.0 s, 798 -> 16.0 s.
    tr = _trace([[0, 90, 0, 0], [180, 0, 0, 0], [0, 0, 0, 250], [0, 60, 0, 0]], frames=[48, 298, 548, 798])
    neg = (StreamEvent("yy:ek", "other_language", int(5.2 * 16000), int(5.6 * 16000), "a/ek.wav"),
           StreamEvent("maybe", "unknown", int(10.5 * 16000), int(10.8 * 16000), "a/maybe.wav"))
    s = ScoredStream("xx/test/negative/snr10", tr, (), 3600.0, neg)
    negatives, keywords = limits.peaks([s], {"_silence_", "_unknown_"})
    assert keywords == []
    assert [(r["kind"], r["word"], r["score"], r["scored_as"], r["file"], r["snr_db"]) for r in negatives] == [
        ("other_language", "yy:ek", 180.0, "go", "ek.wav", "10"),  # the 6.0 s inference is 0.4 s after its end
        ("noise", "", 90.0, "stop", "", "10"),  # 1.0 s and 16.0 s are far from both words: the higher one
        ("unknown", "maybe", 0.0, "", "maybe.wav", "10"),  # only _unknown_ tops its span
    ]
    # A keyword event's peak counts what the detector would fire on; armed alone, "go" hits it at
    # thresholds up to 180 with the "stop" bump silent, and "stop" never hits.
    pos = ScoredStream("xx/test/positive/snr10", tr, (_ev("go", 5.8),), 60.0)
    negatives, keywords = limits.peaks([pos], {"_silence_", "_unknown_"})
    assert negatives == [] and [(r["word"], r["score"], r["scored_as"]) for r in keywords] == [("go", 180.0, "go")]
    curve = keyword_curve([pos], DetectorConfig(), 50, "go", 0)
    assert max(h for t, h, fa in curve) == 1 and min(t for t, h, fa in curve if h == 1) <= 180 < max(t for t, h, fa in curve if h == 0)

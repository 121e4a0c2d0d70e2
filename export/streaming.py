"""Streaming keyword detection over the host TFLM runtime, and its scoring on long streams.

The algorithm is specified in docs/STREAMING.md; the firmware implements the same one in C++,
so everything after the model's int8 output is integer arithmetic. In short:

1. :class:`StreamingFrontend` turns int16 PCM into feature frames at the frontend's own hop,
   keeping every ``frame_decimation``-th frame; each frame is quantized to the model's int8 input
   as soon as it exists and pushed into a ring of the model's ``T`` input frames.
2. Once the ring is full, the model runs every ``stride_frames`` model frames.
3. Its int8 softmax output ``q`` (scale 1/256, zero point -128) becomes ``p = q + 128`` in
   [0, 255]; ``S[k]`` sums ``p[k]`` over the last ``W`` inferences (fewer at the stream start: ``n``).
4. ``top`` is the first class with the largest ``S``. It fires when it is a keyword (never
   ``_silence_`` or ``_unknown_``), ``S[top] >= threshold[top] * n``, and at least
   ``refractory_frames`` model frames have passed since the last detection.

Scoring matches detections to ground-truth keyword events (same label, detection time within
``[end - match_before_s, end + match_after_s]`` of the word's end; one detection per word, the
rest are false accepts) and sweeps one threshold for every keyword to draw the DET curve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from polykws.core import ConfigError, from_dict
from polykws.datasets.frontend import FrontendConfig, StreamingFrontend, audio_to_pcm16, stream_features  # noqa: F401 (re-exported)
from polykws.datasets.manifest import SILENCE_LABEL, UNKNOWN_LABEL
from polykws.export.convert import ExportError
from polykws.export.evaluate import find_arena_bytes, input_qparams, run_tflm
from polykws.export.quantize import quantize_activations
from polykws.export.tflite_graph import TfliteGraph

NEVER_FIRE = (SILENCE_LABEL, UNKNOWN_LABEL)
# Thresholds live on the posterior scale p = q + 128 in [0, 255]; 256 never fires.
THRESHOLD_MAX = 256
SOFTMAX_SCALE = 1.0 / 256.0
SOFTMAX_ZERO_POINT = -128


@dataclass(frozen=True)
class DetectorConfig:
    # Both frontends hop 20 ms per model frame, so strides are multiples of 20 ms (250 is not).
    stride_ms: int = 200
    average_window_ms: int = 400
    refractory_ms: int = 1000
    # Scoring: a detection counts for a keyword whose end lies within this window around it.
    match_before_s: float = 0.5
    match_after_s: float = 1.5

    def __post_init__(self) -> None:
        for name in ("stride_ms", "average_window_ms"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"detector {name} must be > 0, got {getattr(self, name)!r}")
        if self.refractory_ms < 0:
            raise ConfigError(f"detector refractory_ms must be >= 0, got {self.refractory_ms!r}")
        if self.average_window_ms % self.stride_ms:
            raise ConfigError(f"detector average_window_ms ({self.average_window_ms}) must be a multiple of stride_ms ({self.stride_ms})")
        if self.match_before_s < 0 or self.match_after_s < 0:
            raise ConfigError("detector match_before_s and match_after_s must be >= 0")

    def plan(self, frontend: FrontendConfig) -> "DetectorPlan":
        """The configuration in model frames for `frontend`; refuses strides off the frame grid."""
        frame_ms = frontend.window_stride_ms * frontend.frame_decimation
        for name in ("stride_ms", "refractory_ms"):
            v = getattr(self, name)
            if abs(v / frame_ms - round(v / frame_ms)) > 1e-9:
                raise ConfigError(f"detector {name}={v} is not a multiple of the model frame hop ({frame_ms:g} ms for {frontend.kind})")
        return DetectorPlan(
            frame_ms=float(frame_ms),
            frame_hop_samples=frontend.stride_samples * frontend.frame_decimation,
            window_frames=frontend.num_frames,
            stride_frames=int(round(self.stride_ms / frame_ms)),
            average_inferences=self.average_window_ms // self.stride_ms,
            refractory_frames=int(round(self.refractory_ms / frame_ms)),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        return from_dict(cls, d, "detector")


@dataclass(frozen=True)
class DetectorPlan:
    frame_ms: float
    frame_hop_samples: int
    window_frames: int
    stride_frames: int
    average_inferences: int
    refractory_frames: int


# ---------------------------------------------------------------------------------------------
# Model over the ring, smoothing, decisions


@dataclass(frozen=True)
class ScoreTrace:
    """Per inference: the model frame index of the ring's newest frame, the window sums S and count n."""

    frames: np.ndarray  # (I,) int64
    sums: np.ndarray  # (I, num_labels) int32: S
    counts: np.ndarray  # (I,) int32: n
    labels: tuple[str, ...]
    frame_hop_samples: int
    frame_end_offset_samples: int  # samples from a model frame's start to its end
    sample_rate_hz: int
    # The model's int8 outputs (I, num_labels), kept so other averaging windows need no new inference.
    outputs: np.ndarray | None = None
    # The head's int8 logits (I, head slots: padding slots too, since the device's softmax runs
    # over them) and their scale, kept so other posteriors (a softmax temperature, a logit
    # margin) need no new inference either.
    logits: np.ndarray | None = None
    logit_scale: float = 0.0

    def resmoothed(self, average_inferences: int) -> "ScoreTrace":
        """The same inferences averaged over another window (W inferences)."""
        if self.outputs is None:
            raise ConfigError("this trace kept no model outputs to re-average")
        sums, counts = smooth(self.outputs, len(self.labels), average_inferences)
        return replace(self, sums=sums, counts=counts)

    def with_posterior(self, posterior: "Posterior", average_inferences: int) -> "ScoreTrace":
        """The same inferences under another posterior (polykws.export.posterior), averaged over W."""
        if self.logits is None:
            raise ConfigError("this trace kept no logits to derive another posterior from")
        return replace(self, outputs=posterior.outputs(self.logits, self.logit_scale, self.labels)).resmoothed(average_inferences)

    def frame_end_s(self, frame: np.ndarray | int) -> np.ndarray | float:
        return (np.asarray(frame) * self.frame_hop_samples + self.frame_end_offset_samples) / self.sample_rate_hz


@dataclass(frozen=True)
class Detection:
    keyword: str
    frame: int  # model frame index (from the stream's first sample) of the ring's newest frame
    time_s: float  # end of the audio the detection has heard

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Posterior:
    """What the detector thresholds, as int8 per class (p = q + 128 in [0, 255]).

    ``softmax``: the model's int8 softmax with temperature ``2**log2_temperature``, which ships
    in the language's blob (folded into the head, `posterior.head_temperature`); the device runs
    it unchanged. ``margin``: each class's int8 logit minus the largest other one, clipped to
    [0, 255]; a host-side measurement (the firmware reads the softmax). ``rest``: a keyword-vs-rest
    score from the same softmax: the keywords' summed probability, clipped to 255, credited to the
    likeliest keyword (the other keywords get 0), so a window torn between two keywords still
    counts as one keyword against `_silence_` and `_unknown_`; a host-side measurement too.
    """

    kind: str = "softmax"
    log2_temperature: int = 0

    def __post_init__(self) -> None:
        from polykws.export.posterior import MAX_LOG2_TEMPERATURE

        if self.kind not in POSTERIOR_KINDS:
            raise ConfigError(f"posterior kind must be one of {POSTERIOR_KINDS}, got {self.kind!r}")
        if not 0 <= int(self.log2_temperature) <= MAX_LOG2_TEMPERATURE:
            raise ConfigError(f"posterior log2_temperature must be in [0, {MAX_LOG2_TEMPERATURE}], got {self.log2_temperature!r}")
        if self.kind == "margin" and self.log2_temperature:
            raise ConfigError("a logit margin has no temperature")

    @property
    def shippable(self) -> bool:
        return self.kind == "softmax"

    @property
    def name(self) -> str:
        if self.kind == "margin":
            return "logit margin"
        return f"{'softmax' if self.kind == 'softmax' else 'keyword vs rest'} T={2 ** self.log2_temperature}"

    def outputs(self, logits: np.ndarray, logit_scale: float, labels: Sequence[str]) -> np.ndarray:
        """int8 (I, len(labels)) from the head's int8 logits (I, head slots)."""
        from polykws.export.posterior import keyword_vs_rest_int8, logit_margin_int8, softmax_int8

        num_labels = len(labels)
        if self.kind == "margin":
            return logit_margin_int8(logits[:, :num_labels])
        # Over every head slot, as the device's softmax runs.
        probs = softmax_int8(logits, logit_scale / 2.0 ** self.log2_temperature)[:, :num_labels]
        if self.kind == "rest":
            return keyword_vs_rest_int8(probs, np.array([lb not in (SILENCE_LABEL, UNKNOWN_LABEL) for lb in labels]))
        return probs

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Posterior":
        return from_dict(cls, d, "posterior")


POSTERIOR_KINDS = ("softmax", "margin", "rest")


def _output_qparams(tflite: bytes) -> None:
    t = TfliteGraph(tflite).output_tensor()
    if abs(float(t.scales[0]) - SOFTMAX_SCALE) > 1e-12 or int(t.zero_points[0]) != SOFTMAX_ZERO_POINT:
        raise ExportError(f"streaming detection needs an int8 softmax output (scale 1/256, zero point -128), got scale {float(t.scales[0])} zp {int(t.zero_points[0])}")


def smooth(outputs: np.ndarray, num_labels: int, average_inferences: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, n): int32 sums of p = q + 128 over the last W inferences, and how many were summed."""
    p = np.asarray(outputs)[:, :num_labels].astype(np.int32) - SOFTMAX_ZERO_POINT
    c = np.concatenate([np.zeros((1, num_labels), np.int64), np.cumsum(p, axis=0, dtype=np.int64)])
    i = np.arange(p.shape[0])
    lo = np.maximum(0, i + 1 - average_inferences)
    sums = (c[i + 1] - c[lo]).astype(np.int32)
    return sums, (i + 1 - lo).astype(np.int32)


FRONTEND_STATES = ("warm", "reset")


def score_stream(tflite: bytes, labels: Sequence[str], pcm: np.ndarray, frontend: FrontendConfig, cfg: DetectorConfig,
                 arena_bytes: int | None = None, frontend_state: str = "warm") -> ScoreTrace:
    """Run the model over an int16 stream every stride: the threshold-free part of detection.

    ``frontend_state="reset"`` is a host-only measurement mode: every inference gets the per-clip
    features of its own second of audio (a fresh frontend per window, as in training), which
    costs a device ~8M instructions per window and is never what the firmware does. For the
    stateless ``mfcc`` it equals ``warm`` up to float32 rounding.
    """
    if frontend_state not in FRONTEND_STATES:
        raise ConfigError(f"frontend_state must be one of {FRONTEND_STATES}, got {frontend_state!r}")
    from polykws.export.posterior import logits_model, softmax_int8

    _output_qparams(tflite)
    # One TFLM pass yields the head's logits; the softmax over them is TFLM's own int8 kernel,
    # computed bit for bit on the host (tests/export/test_posterior.py), so every posterior
    # (posterior.Posterior) comes from the same inference.
    logit_tflite, logit_scale = logits_model(tflite)
    arena_bytes = arena_bytes or find_arena_bytes(logit_tflite)
    labels = tuple(labels)
    plan = cfg.plan(frontend)
    pcm = np.asarray(pcm)
    feats = stream_features(pcm, frontend)
    scale, zp = input_qparams(tflite)
    q = quantize_activations(feats, scale, zp)  # the ring holds int8 frames
    t = plan.window_frames
    newest = np.arange(t - 1, q.shape[0], plan.stride_frames)
    if newest.size and frontend_state == "reset":
        from polykws.datasets.frontend import compute_features_batch

        starts = (newest - (t - 1)) * plan.frame_hop_samples
        windows = np.concatenate([
            quantize_activations(compute_features_batch(np.stack([pcm[s : s + frontend.clip_samples] for s in starts[i : i + 256]]).astype(np.float32) / 32768.0, frontend), scale, zp)
            for i in range(0, len(starts), 256)
        ])
        logits = run_tflm(logit_tflite, windows[..., None], arena_bytes)
    elif newest.size:
        windows = np.lib.stride_tricks.sliding_window_view(q, (t, q.shape[1]))[:, 0][newest - (t - 1)]
        logits = run_tflm(logit_tflite, windows[..., None], arena_bytes)
    else:
        logits = np.zeros((0, len(labels)), np.int8)
    outputs = softmax_int8(np.asarray(logits, np.int8), logit_scale)
    sums, counts = smooth(outputs, len(labels), plan.average_inferences)
    return ScoreTrace(newest.astype(np.int64), sums, counts, labels, plan.frame_hop_samples, frontend.window_samples, frontend.sample_rate_hz,
                      np.ascontiguousarray(outputs[:, : len(labels)]).astype(np.int8),
                      np.ascontiguousarray(logits).astype(np.int8), logit_scale)


def threshold_vector(labels: Sequence[str], thresholds: dict[str, int] | int) -> np.ndarray:
    """Per-class thresholds (int64); _silence_ and _unknown_ get THRESHOLD_MAX (never fire)."""
    if isinstance(thresholds, (int, np.integer)):
        thresholds = {lb: int(thresholds) for lb in labels if lb not in NEVER_FIRE}
    unknown = set(thresholds) - set(labels)
    if unknown:
        raise ConfigError(f"thresholds for labels the model does not have: {sorted(unknown)}")
    vec = np.full(len(labels), THRESHOLD_MAX, np.int64)
    for i, lb in enumerate(labels):
        if lb in NEVER_FIRE:
            continue
        v = int(thresholds.get(lb, THRESHOLD_MAX))
        if not 0 <= v <= THRESHOLD_MAX:
            raise ConfigError(f"threshold for {lb!r} must be in [0, {THRESHOLD_MAX}], got {v}")
        vec[i] = v
    return vec


def decide(trace: ScoreTrace, thresholds: dict[str, int] | int, refractory_frames: int) -> list[Detection]:
    """Detections of a trace for the given thresholds (docs/STREAMING.md, step 4)."""
    thr = threshold_vector(trace.labels, thresholds)
    if not trace.frames.size:
        return []
    top = trace.sums.argmax(axis=1)  # numpy argmax: first maximum, as the firmware's loop
    s_top = trace.sums[np.arange(top.size), top].astype(np.int64)
    cand = np.flatnonzero(s_top >= thr[top] * trace.counts.astype(np.int64))
    out: list[Detection] = []
    last = None
    for i in cand:
        f = int(trace.frames[i])
        if last is not None and f - last < refractory_frames:
            continue
        last = f
        out.append(Detection(trace.labels[int(top[i])], f, float(trace.frame_end_s(f))))
    return out


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class StreamScore:
    keywords: int
    hits: int
    false_accepts: int
    duration_s: float
    latencies_s: tuple[float, ...] = ()


def match(detections: Sequence[Detection], truth: Iterable, sample_rate_hz: int, cfg: DetectorConfig) -> StreamScore:
    """Hits, misses and false accepts of one stream; `truth` holds keyword events (label, end_sample)."""
    truth = sorted(((e.end_sample / sample_rate_hz, e.label) for e in truth), key=lambda t: t[0])
    used = [False] * len(truth)
    hits, fa, lat = 0, 0, []
    j0 = 0
    for d in sorted(detections, key=lambda d: d.time_s):
        while j0 < len(truth) and truth[j0][0] + cfg.match_after_s < d.time_s:
            j0 += 1
        matched = False
        j = j0
        while j < len(truth) and truth[j][0] - cfg.match_before_s <= d.time_s:
            if not used[j] and truth[j][1] == d.keyword:
                used[j] = matched = True
                hits += 1
                lat.append(d.time_s - truth[j][0])
                break
            j += 1
        if not matched:
            fa += 1
    return StreamScore(len(truth), hits, fa, 0.0, tuple(lat))


@dataclass(frozen=True)
class DetPoint:
    threshold: int
    frr: float
    fa_per_hour: float
    false_accepts: int
    hits: int
    keywords: int
    median_latency_s: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScoredStream:
    """A stream's trace and truth, kept so that thresholds can be swept without rerunning the model."""

    name: str
    trace: ScoreTrace
    truth: tuple  # keyword StreamEvents
    duration_s: float
    # The words that must not fire (StreamEvents of kind unknown / other_language), for attributing
    # false accepts to what was said (bench/detector_limits.py).
    negatives: tuple = ()


def det_curve(streams: Sequence[ScoredStream], cfg: DetectorConfig, refractory_frames: int,
              thresholds: Iterable[int] = range(THRESHOLD_MAX + 1)) -> list[DetPoint]:
    """One DET point per threshold (the same for every keyword), over all streams together.

    FA/h divides false accepts by the total duration of all streams (keyword and negative ones).
    """
    if sum(s.duration_s for s in streams) <= 0:
        raise ConfigError("no stream audio to score")
    return [score_thresholds(streams, cfg, refractory_frames, int(t)) for t in thresholds]


def operating_point(points: Sequence[DetPoint], target_fa_per_hour: float) -> DetPoint | None:
    """The lowest-FRR point with FA/h <= target (ties: fewer false accepts, then the higher threshold)."""
    ok = [p for p in points if p.fa_per_hour <= target_fa_per_hour]
    if not ok:
        return None
    return min(ok, key=lambda p: (p.frr, p.fa_per_hour, -p.threshold))


@dataclass(frozen=True)
class LanguageThresholds:
    """Per-keyword thresholds of one language, chosen on validation streams; JSON-able."""

    language: str
    labels: tuple[str, ...]
    thresholds: dict[str, int]
    target_fa_per_hour: float
    val_fa_per_hour: float
    val_frr: float
    val_hours: float
    detector: dict = field(default_factory=dict)
    frontend_hash: str = ""
    # False when no threshold a blob can carry reaches the target on validation: the thresholds
    # are then the ones with the fewest validation false accepts, and val_fa_per_hour says how many.
    met_target: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LanguageThresholds":
        return from_dict(cls, d, "thresholds")

    def blob_bytes(self) -> bytes:
        """One byte per label, as a language blob carries them (docs/BLOB_FORMAT.md).

        `_silence_` and `_unknown_` never fire whatever their byte; it is written as 255.
        """
        return bytes(255 if lb in NEVER_FIRE else self.thresholds[lb] for lb in self.labels)


# A blob carries one byte per label, so a shipped threshold is at most 255.
SHIPPABLE_THRESHOLDS = range(THRESHOLD_MAX)


def choose_thresholds(language: str, val_streams: Sequence[ScoredStream], cfg: DetectorConfig, frontend: FrontendConfig,
                      target_fa_per_hour: float = 1.0, per_keyword: bool = False) -> LanguageThresholds:
    """The threshold (one for every keyword, 0..255) with the lowest validation FRR at <= target FA/h.

    When no threshold reaches the target, the one with the fewest validation false accepts is
    taken (ties: the lower FRR) and `met_target` is False: a detector that never fires would
    ship a silent language, and the validation FA/h shows how far the target is.

    `per_keyword`: one threshold per keyword instead (`per_keyword_thresholds`), the validation
    false accepts the target allows shared out over the keywords.
    """
    if not val_streams:
        raise ConfigError(f"{language}: no validation stream to choose thresholds on")
    labels = val_streams[0].trace.labels
    plan = cfg.plan(frontend)
    hours = sum(s.duration_s for s in val_streams) / 3600.0
    if per_keyword:
        thresholds = per_keyword_thresholds(val_streams, cfg, plan.refractory_frames, int(math.floor(target_fa_per_hour * hours + 1e-9)))
        best = score_thresholds(val_streams, cfg, plan.refractory_frames, thresholds)
        met = best.fa_per_hour <= target_fa_per_hour
    else:
        points = det_curve(val_streams, cfg, plan.refractory_frames, SHIPPABLE_THRESHOLDS)
        best = operating_point(points, target_fa_per_hour)
        met = best is not None
        if best is None:
            best = min(points, key=lambda p: (p.false_accepts, p.frr, -p.threshold))
        thresholds = {lb: best.threshold for lb in labels if lb not in NEVER_FIRE}
    return LanguageThresholds(
        language=language,
        labels=tuple(labels),
        thresholds=thresholds,
        target_fa_per_hour=float(target_fa_per_hour),
        val_fa_per_hour=best.fa_per_hour,
        val_frr=best.frr,
        val_hours=hours,
        detector=cfg.to_dict(),
        frontend_hash=frontend.config_hash(),
        met_target=met,
    )


def keyword_curve(streams: Sequence[ScoredStream], cfg: DetectorConfig, refractory_frames: int, keyword: str,
                  max_false_accepts: int) -> list[tuple[int, int, int]]:
    """(threshold, hits, false accepts) of `keyword` alone (every other keyword silent) on `streams`,
    from 255 down to the last threshold with at most `max_false_accepts` false accepts."""
    out = []
    for t in reversed(SHIPPABLE_THRESHOLDS):
        hits = fa = 0
        for s in streams:
            r = match(decide(s.trace, {**{lb: THRESHOLD_MAX for lb in s.trace.labels}, keyword: t}, refractory_frames),
                      s.truth, s.trace.sample_rate_hz, cfg)
            hits, fa = hits + r.hits, fa + r.false_accepts
        if fa > max_false_accepts:
            break
        out.append((t, hits, fa))
    return out


def per_keyword_thresholds(val_streams: Sequence[ScoredStream], cfg: DetectorConfig, refractory_frames: int,
                           budget_false_accepts: int) -> dict[str, int]:
    """One threshold per keyword: the most validation hits with at most `budget_false_accepts`
    false accepts in all, the budget shared out over the keywords exactly (a knapsack on each
    keyword's own curve). Of thresholds with equal hits and false accepts the highest is kept."""
    labels = val_streams[0].trace.labels
    keywords = [lb for lb in labels if lb not in NEVER_FIRE]
    # For each keyword and each false-accept count it may spend: its best (hits, threshold).
    options: dict[str, dict[int, tuple[int, int]]] = {}
    for kw in keywords:
        best: dict[int, tuple[int, int]] = {}
        for t, hits, fa in keyword_curve(val_streams, cfg, refractory_frames, kw, budget_false_accepts):
            if fa not in best or hits > best[fa][0]:
                best[fa] = (hits, t)
        # A keyword that passes the budget even at 255 stays there, the fewest false accepts a blob
        # can carry; the exact score of the whole vector (`score_thresholds`) counts them.
        options[kw] = best or {0: (0, THRESHOLD_MAX - 1)}
    # Knapsack over the keywords: table[b] = (hits, thresholds) spending at most b false accepts.
    table: list[tuple[int, dict[str, int]]] = [(0, {}) for _ in range(budget_false_accepts + 1)]
    for kw in keywords:
        nxt = []
        for b in range(budget_false_accepts + 1):
            cands = [(table[b - fa][0] + hits, {**table[b - fa][1], kw: t}) for fa, (hits, t) in options[kw].items() if fa <= b]
            nxt.append(max(cands, key=lambda c: (c[0], sum(c[1].values()))))
        table = nxt
    return table[budget_false_accepts][1]


def score_thresholds(streams: Sequence[ScoredStream], cfg: DetectorConfig, refractory_frames: int,
                     thresholds: dict[str, int] | int) -> DetPoint:
    """The operating point of a threshold (or one per keyword) over all streams together; FA/h
    divides false accepts by the total duration of all streams. With one per keyword, the point's
    `threshold` is the lowest of them."""
    hours = sum(s.duration_s for s in streams) / 3600.0
    hits = fa = kws = 0
    lat: list[float] = []
    for s in streams:
        r = match(decide(s.trace, thresholds, refractory_frames), s.truth, s.trace.sample_rate_hz, cfg)
        hits, fa, kws = hits + r.hits, fa + r.false_accepts, kws + r.keywords
        lat += r.latencies_s
    level = thresholds if isinstance(thresholds, int) else min(thresholds.values())
    return DetPoint(int(level), 1.0 - hits / kws if kws else float("nan"), fa / hours if hours else float("nan"), fa, hits, kws,
                    float(np.median(lat)) if lat else None)


def detect(tflite: bytes, labels: Sequence[str], pcm: np.ndarray, frontend: FrontendConfig, cfg: DetectorConfig,
           thresholds: dict[str, int] | int) -> list[Detection]:
    """Detections (keyword, model frame index, time) of one int16 stream."""
    return decide(score_stream(tflite, labels, pcm, frontend, cfg), thresholds, cfg.plan(frontend).refractory_frames)


def stream_pcm(audio: np.ndarray) -> np.ndarray:
    """A float stream as the int16 PCM a microphone would deliver."""
    return audio_to_pcm16(audio)

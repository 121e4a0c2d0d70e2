"""Tasks, feature splits and the on-disk feature cache, on a generated corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polykws.datasets import featurecache as featurecache_mod
from polykws.datasets.augment import AugmentConfig
from polykws.datasets.features import FeatureSplit, load_task_features, split_noise_files
from polykws.datasets.task import TaskSpec
from polykws.datasets.frontend import compute_features, micro_frontend, mfcc_frontend
from polykws.datasets.audio import load_audio
from polykws.datasets.manifest import NOISE_LABEL
from polykws.datasets.scan import scan
from polykws.datasets.sources.gsc import gsc_task
from polykws.core import ConfigError, PolykwsError

WORDS = ("yes", "no", "up", "cat", "dog")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, kit):
    root = tmp_path_factory.mktemp("corpus")
    for w_i, word in enumerate(WORDS):
        for spk in range(12):
            kit.write_wav(root / "en" / "toy" / word / f"s{spk:02d}_nohash_0.wav", kit.tone(0.5, freq_hz=140 + 25 * w_i + 4 * spk, seed=spk))
    for i in range(5):
        kit.write_wav(root / NOISE_LABEL / f"n{i}.wav", (0.05 * np.random.default_rng(i).standard_normal(32000)).astype(np.float32))
    return root, scan(root, workers=1).records


def test_task_labels_and_validation():
    t = TaskSpec("en", ("yes", "no"))
    assert t.labels == ("yes", "no", "_silence_", "_unknown_")
    assert TaskSpec("en", ("yes",), silence=False, unknown=False).labels == ("yes",)
    for bad in (dict(keywords=()), dict(keywords=("yes", "yes")), dict(keywords=("_silence_",)), dict(keywords=("a",), silence_fraction=0.0)):
        with pytest.raises(ConfigError):
            TaskSpec("en", **{"keywords": ("a",), **bad})


def test_splits_shapes_classes_and_disjoint_speakers(corpus, tmp_path):
    root, records = corpus
    task = TaskSpec("en", ("yes", "no", "up"))
    splits = load_task_features(records, task, micro_frontend(), cache_dir=tmp_path / "c", workers=1, progress=False)
    assert set(splits) == {"train", "val", "test"}
    for name, sp in splits.items():
        assert isinstance(sp, FeatureSplit)
        assert sp.x.dtype == np.float32 and sp.x.shape[1:] == (49, 40)
        assert sp.y.dtype == np.int64 and sp.y.shape == (len(sp),)
        assert sp.labels == task.labels
        counts = sp.class_counts()
        kw_per_class = counts["yes"]
        assert kw_per_class > 0 and counts["no"] == counts["up"] == kw_per_class
        # _silence_ and _unknown_ match an average keyword class by default.
        assert counts["_silence_"] == kw_per_class and counts["_unknown_"] == kw_per_class
        unknown_paths = [p for p, y in zip(sp.paths, sp.y) if sp.labels[y] == "_unknown_"]
        assert all(Path(p).parent.name in ("cat", "dog") for p in unknown_paths)
    spk = {name: {s for s in sp.speakers if s} for name, sp in splits.items()}
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"]) and not (spk["val"] & spk["test"])
    # A cached keyword example equals computing it directly.
    i = splits["test"].origin.index("clip")
    direct = compute_features(load_audio(splits["test"].paths[i]), micro_frontend())
    np.testing.assert_array_equal(splits["test"].x[i], direct)


def test_second_call_recomputes_nothing(corpus, tmp_path, monkeypatch):
    root, records = corpus
    task = TaskSpec("en", ("yes", "no"))
    kwargs = dict(cache_dir=tmp_path / "cache", workers=1, progress=False, augment_copies=1, seed=3)
    first = load_task_features(records, task, mfcc_frontend(), **kwargs)
    n_files = len(list((tmp_path / "cache").rglob("*.npy")))
    assert n_files > 0

    def no_compute(job):
        raise AssertionError("cache miss: a feature was recomputed")

    monkeypatch.setattr(featurecache_mod, "_compute_chunk", no_compute)
    second = load_task_features(records, task, mfcc_frontend(), **kwargs)
    for name in first:
        np.testing.assert_array_equal(first[name].x, second[name].x)
        np.testing.assert_array_equal(first[name].y, second[name].y)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == n_files
    # Another seed means other augmented copies: those are misses.
    with pytest.raises(AssertionError, match="cache miss"):
        load_task_features(records, task, mfcc_frontend(), **{**kwargs, "seed": 4})


def test_augmented_copies_are_seeded(corpus, tmp_path):
    root, records = corpus
    task = TaskSpec("en", ("yes", "no"), unknown=False)
    aug = AugmentConfig(noise_prob=1.0, speed_prob=1.0, pitch_prob=1.0)

    def build(seed, cache):
        return load_task_features(records, task, micro_frontend(), cache_dir=tmp_path / cache, augment=aug, augment_copies=2, seed=seed, workers=1, progress=False)["train"]

    a, b, c = build(0, "a"), build(0, "b"), build(1, "c")
    n_clips = a.origin.count("clip")
    assert a.origin.count("augmented") == 2 * n_clips
    np.testing.assert_array_equal(a.x, b.x)  # same seed, separate caches: identical
    aug_rows = [i for i, o in enumerate(a.origin) if o == "augmented"]
    assert not np.array_equal(a.x[aug_rows], c.x[aug_rows])  # another seed: other copies
    clip_rows = [i for i, o in enumerate(a.origin) if o == "clip"]
    np.testing.assert_array_equal(a.x[clip_rows], c.x[clip_rows])  # originals do not depend on it


def test_warm_frontend_features_are_what_a_listening_device_computes(corpus, tmp_path):
    """With frontend_warm_ms, augmented copies and _silence_ crops come from a frontend that first
    ran over the same background; each equals compute_features_warm on independently rebuilt audio."""
    from polykws.datasets import augment as aug_mod
    from polykws.datasets.audio import load_waveform
    from polykws.datasets.frontend import compute_features_warm

    root, records = corpus
    task = TaskSpec("en", ("yes", "no"), unknown=False)
    aug = AugmentConfig(noise_prob=1.0, speed_prob=0.0, pitch_prob=0.0)
    kw = dict(augment=aug, augment_copies=1, seed=0, workers=1, progress=False)
    fe = micro_frontend()
    warm = load_task_features(records, task, fe, cache_dir=tmp_path / "w", frontend_warm_ms=2000.0, **kw)["train"]
    reset = load_task_features(records, task, fe, cache_dir=tmp_path / "r", **kw)["train"]
    assert warm.paths == reset.paths and np.array_equal(warm.y, reset.y)
    clip_rows = [i for i, o in enumerate(warm.origin) if o == "clip"]
    np.testing.assert_array_equal(warm.x[clip_rows], reset.x[clip_rows])  # clean clips: no background to warm on
    # An augmented copy: rebuild its audio and background from the same seed and pool.
    from polykws.datasets.featurecache import _seed_for
    from polykws.datasets.features import _audio_hashes

    i = warm.origin.index("augmented")
    path = warm.paths[i]
    noise_paths = sorted(split_noise_files(sorted(str(p) for p in (root / NOISE_LABEL).glob("*.wav")))["train"])
    pool = [load_waveform(p, 16000, allow_silent=True) for p in noise_paths]
    seed = _seed_for(0, "augment", _audio_hashes([path])[path], 1)
    preceding, wave = aug_mod.augment_waveform_warm(load_audio(path), aug, np.random.default_rng(seed), pool, 16000, warm_samples=32000)
    np.testing.assert_array_equal(warm.x[i], compute_features_warm(wave, preceding, fe))
    assert not np.array_equal(warm.x[i], reset.x[i])
    # The clip under the warm-up is the reset path's clip when there is no warm-up.
    _, same = aug_mod.augment_waveform_warm(load_audio(path), aug, np.random.default_rng(seed), pool, 16000, warm_samples=0)
    np.testing.assert_array_equal(same, aug_mod.augment_waveform(load_audio(path), aug, np.random.default_rng(seed), pool, 16000))
    # _silence_ crops differ too (noise estimate and PCAN already adapted), digital silence barely.
    sil = [j for j, o in enumerate(warm.origin) if o == "silence" and not warm.paths[j].endswith("zeros")]
    assert sil and any(not np.array_equal(warm.x[j], reset.x[j]) for j in sil)
    with pytest.raises(ConfigError, match="no state across frames"):
        load_task_features(records, task, mfcc_frontend(), cache_dir=tmp_path / "m", frontend_warm_ms=500.0, **kw)


def test_unknown_languages_feed_unknown_with_their_own_splits(corpus, tmp_path):
    from dataclasses import replace

    root, records = corpus
    # cat and dog become another language's words: English then has no non-target word left.
    mixed = [replace(r, language="de") if r.label in ("cat", "dog") else r for r in records]
    task = TaskSpec("en", ("yes", "no", "up"), unknown_languages=("de",))
    splits = load_task_features(mixed, task, mfcc_frontend(), cache_dir=tmp_path / "c", workers=1, progress=False)
    split_of = {r.path: r.split for r in mixed}
    for name, sp in splits.items():
        unknown = [p for p, y in zip(sp.paths, sp.y) if sp.labels[y] == "_unknown_"]
        assert unknown and all(Path(p).parent.name in ("cat", "dog") and split_of[p] == name for p in unknown)
    with pytest.raises(PolykwsError, match="no non-target words"):
        load_task_features(mixed, TaskSpec("en", ("yes", "no", "up")), mfcc_frontend(), cache_dir=tmp_path / "d", workers=1, progress=False)
    with pytest.raises(ConfigError, match="own language"):
        TaskSpec("en", ("yes",), unknown_languages=("en",))
    with pytest.raises(ConfigError, match="needs unknown: true"):
        TaskSpec("en", ("yes",), unknown=False, unknown_languages=("de",))


def test_unknown_and_silence_need_their_material(corpus, tmp_path):
    root, records = corpus
    clips = [r for r in records if not r.is_noise]
    with pytest.raises(PolykwsError, match="no non-target words"):
        load_task_features(records, TaskSpec("en", WORDS), micro_frontend(), cache_dir=tmp_path, workers=1, progress=False)
    with pytest.raises(PolykwsError, match="no background noise"):
        load_task_features(clips, TaskSpec("en", ("yes",)), micro_frontend(), cache_dir=tmp_path, workers=1, progress=False)
    with pytest.raises(PolykwsError, match=r"\['bird'\] have no clips"):
        load_task_features(records, TaskSpec("en", ("yes", "bird")), micro_frontend(), cache_dir=tmp_path, workers=1, progress=False)
    # noise_dir supplies the noise instead of _background_noise_ rows.
    splits = load_task_features(clips, TaskSpec("en", ("yes",)), micro_frontend(), cache_dir=tmp_path, noise_dir=root / NOISE_LABEL, workers=1, progress=False)
    assert splits["train"].class_counts()["_silence_"] > 0


def test_noise_files_never_span_splits():
    paths = [f"/noise/{i}.wav" for i in range(20)]
    by_split = split_noise_files(paths)
    assert sorted(p for ps in by_split.values() for p in ps) == sorted(paths)
    assert all(len(by_split[s]) >= 2 for s in ("val", "test"))
    assert split_noise_files(paths) == by_split
    # The same files under another directory land in the same splits (location independence).
    moved = split_noise_files([p.replace("/noise/", "/mnt/elsewhere/noise/") for p in paths])
    assert {s: [p.rsplit("/", 1)[1] for p in ps] for s, ps in moved.items()} == {s: [p.rsplit("/", 1)[1] for p in ps] for s, ps in by_split.items()}


def test_gsc_12_and_35_class_modes(tmp_path, kit):
    from polykws.datasets.sources.gsc import GSC_V2_WORDS

    root = tmp_path / "gsc"
    speakers = ("0a1b2c3d", "1f2e3d4c", "22aa33bb", "3c3c3c3c")
    for w_i, word in enumerate(GSC_V2_WORDS):
        for s_i, spk in enumerate(speakers):
            kit.write_wav(root / word / f"{spk}_nohash_0.wav", kit.tone(0.3, freq_hz=100 + 9 * w_i + 3 * s_i, seed=s_i))
    (root / "validation_list.txt").write_text("".join(f"{w}/0a1b2c3d_nohash_0.wav\n" for w in GSC_V2_WORDS))
    (root / "testing_list.txt").write_text("".join(f"{w}/1f2e3d4c_nohash_0.wav\n" for w in GSC_V2_WORDS))
    for i in range(3):
        kit.write_wav(root / NOISE_LABEL / f"noise{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(48000)).astype(np.float32))
    records = scan(root, workers=1).records
    assert len(records) == 35 * 4 + 3

    twelve = load_task_features(records, gsc_task(12), mfcc_frontend(), cache_dir=tmp_path / "c", workers=1, progress=False)
    counts = twelve["train"].class_counts()
    assert list(counts) == ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_", "_unknown_"]
    # 2 training speakers: 2 clips per keyword, and _silence_/_unknown_ the size of one keyword class.
    assert all(counts[k] == 2 for k in counts)
    assert twelve["test"].class_counts()["yes"] == 1 and twelve["test"].class_counts()["_unknown_"] == 1
    unknown = {Path(p).parent.name for p, y in zip(twelve["train"].paths, twelve["train"].y) if y == 11}
    assert unknown and not unknown & set(gsc_task(12).keywords)

    thirty_five = load_task_features(records, gsc_task(35), mfcc_frontend(), cache_dir=tmp_path / "c", workers=1, progress=False)
    assert thirty_five["train"].labels == GSC_V2_WORDS and len(thirty_five["train"]) == 35 * 2
    assert len(thirty_five["val"]) == len(thirty_five["test"]) == 35
    # Same clips, same cache: the 35-class build reuses the 12-class build's features.
    i12 = twelve["train"].paths.index(str(root / "yes" / "22aa33bb_nohash_0.wav"))
    i35 = thirty_five["train"].paths.index(str(root / "yes" / "22aa33bb_nohash_0.wav"))
    np.testing.assert_array_equal(twelve["train"].x[i12], thirty_five["train"].x[i35])


def test_negatives_at_scale_ratio_and_partial_keywords(corpus, tmp_path):
    from polykws.datasets.augment import active_span

    root, records = corpus
    # _unknown_ as a ratio of the keyword clips (above 1), plus partial keywords in train only.
    task = TaskSpec("en", ("yes",), unknown_fraction=2.0, partial_keyword_fraction=1.5)
    splits = load_task_features(records, task, mfcc_frontend(), cache_dir=tmp_path / "c", workers=1, progress=False)
    unk = task.labels.index("_unknown_")
    for name, sp in splits.items():
        n_kw = int(np.sum(sp.y == 0))
        words = [o for o, y in zip(sp.origin, sp.y) if y == unk and o == "clip"]
        partial = [(p, y) for p, o, y in zip(sp.paths, sp.origin, sp.y) if o == "partial"]
        assert len(words) == 2 * n_kw, name
        if name == "train":
            assert len(partial) == int(np.ceil(1.5 * n_kw))
            # Partial keywords are _unknown_ examples cut from the split's own keyword clips.
            assert all(y == unk and Path(p).parent.name == "yes" for p, y in partial)
        else:
            assert not partial, name
    # The same seed gives the same partial crops; a partial is a part of its word, never all of it.
    again = load_task_features(records, task, mfcc_frontend(), cache_dir=tmp_path / "d", workers=1, progress=False)
    np.testing.assert_array_equal(again["train"].x, splits["train"].x)
    from polykws.datasets.augment import PartialConfig, partial_keyword

    clip = load_audio(next(r.path for r in records if r.label == "yes"))
    a, b = active_span(clip)
    for seed in range(20):
        kind, y = partial_keyword(clip, np.random.default_rng(seed))
        lo, hi = active_span(y)
        assert y.shape == clip.shape and kind in ("head", "tail")
        assert hi - lo <= PartialConfig().keep_max * (b - a) + 160, (seed, lo, hi, a, b)
    for bad in (dict(unknown_fraction=51.0), dict(partial_keyword_fraction=-1.0), dict(unknown=False, partial_keyword_fraction=0.5)):
        with pytest.raises(ConfigError):
            TaskSpec("en", ("yes",), **bad)

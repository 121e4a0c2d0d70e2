"""Speaker k-fold: every speaker is tested exactly once over the folds, validation and test never
share a speaker with train, fold sizes differ by at most one speaker, and only the named
language's clip rows move."""

from __future__ import annotations

import pytest

from polykws.core import ConfigError
from polykws.datasets.manifest import ClipRecord
from polykws.datasets.splits import SpeakerFolds, fold_splits


def _rows(lang: str, speakers: int, clips: int = 3) -> list[ClipRecord]:
    return [ClipRecord(f"/d/{lang}/{s}_{c}.wav", lang, f"w{c}", f"src:{lang}{s:03d}", "train", 1.0, 16000, "src")
            for s in range(speakers) for c in range(clips)]


@pytest.mark.parametrize("speakers", [5, 17, 53])
def test_every_speaker_is_tested_exactly_once(speakers):
    rows = _rows("gu", speakers) + _rows("en", 7)
    tested: dict[str, int] = {}
    for fold in range(5):
        out = fold_splits(rows, SpeakerFolds(5, fold), "gu")
        by_split: dict[str, set[str]] = {}
        for r in out:
            if r.language == "gu":
                by_split.setdefault(r.split, set()).add(r.speaker_id)
            else:
                assert r.split == "train"  # other languages keep their split
        assert not (by_split["test"] & by_split.get("train", set())) and not (by_split["val"] & by_split.get("train", set()))
        assert not (by_split["test"] & by_split["val"])
        sizes = [len(by_split[s]) for s in ("test", "val")]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= speakers // 5
        for s in by_split["test"]:
            tested[s] = tested.get(s, 0) + 1
    assert sorted(tested) == sorted({r.speaker_id for r in rows if r.language == "gu"}) and set(tested.values()) == {1}


def test_a_speaker_keeps_all_clips_in_one_split():
    out = fold_splits(_rows("lt", 11, clips=4), SpeakerFolds(5, 2), "lt")
    per_speaker: dict[str, set[str]] = {}
    for r in out:
        per_speaker.setdefault(r.speaker_id, set()).add(r.split)
    assert all(len(v) == 1 for v in per_speaker.values())


@pytest.mark.parametrize("folds, fold", [(2, 0), (5, 5), (5, -1), (True, 0), (5, 1.0)])
def test_bad_folds_are_named_errors(folds, fold):
    with pytest.raises(ConfigError, match="fold"):
        SpeakerFolds(folds, fold)


def test_training_only_rows_stay_in_train_and_take_no_fold():
    synth = [ClipRecord(f"/s/uk/{s}.wav", "uk", "one", f"espeak:v{s:02d}", "train", 1.0, 16000, "espeak", train_only=True)
             for s in range(10)]
    recorded = _rows("uk", 10)
    plain = fold_splits(recorded, SpeakerFolds(5, 1), "uk")
    out = fold_splits(recorded + synth, SpeakerFolds(5, 1), "uk")
    assert out[len(recorded):] == synth
    assert out[: len(recorded)] == plain  # the recorded speakers' folds are the same with or without them


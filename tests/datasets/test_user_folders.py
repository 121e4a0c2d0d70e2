"""A user's recordings as they are: every layout, speakers inferred from the names, splits per keyword.

The folders are generated here (short tones written with soundfile), each with a known speaker
behind every file, so an inference that reads a wrong id, a keyword without a test speaker and a
speaker in two splits each fail a test."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polykws.core import PolykwsError
from polykws.datasets.check import DataCheckConfig
from polykws.datasets.check import check_data as _check
from polykws.datasets.check import scan_user_data as _scan
from polykws.datasets.manifest import NOISE_LABEL
from polykws.datasets.sources.infer import PATTERNS, infer_speakers
from polykws.datasets.splits import stratified_assignment

SR = 16000
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# The 12 speakers of a small digit set, as its names spell them.
PEOPLE = tuple(f"{g}_{i}" for g in ("man", "woman") for i in range(1, 7))


def scan_user_data(*args, **kwargs):
    return _scan(*args, workers=1, **kwargs)


def check_data(*args, **kwargs):
    return _check(*args, workers=1, **kwargs)


def _tone(seed: int) -> np.ndarray:
    t = np.arange(int(SR * 0.4)) / SR
    return (0.3 * np.sin(2 * np.pi * (200 + 7 * (seed % 97)) * t)).astype(np.float32)


def _write(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(seed), SR, subtype="PCM_16")


# name(speaker index, speaker, keyword index, keyword, take) -> path below the keyword folder, and
# the speaker id the pattern must read from it.
NAMINGS = {
    "<speaker>_nohash_<n>": (lambda i, s, k, w, t: f"{i:04x}beef_nohash_{t}.wav", lambda i, s: f"{i:04x}beef"),
    "<digits>_<tag>_<n>": (lambda i, s, k, w, t: f"{i + 1:08d}_NO_{t + 1:02d}.wav", lambda i, s: f"{i + 1:08d}"),
    "<n>_<speaker>_<n>": (lambda i, s, k, w, t: f"{k}_{s.replace('_', '')}_{t}.wav", lambda i, s: s.replace("_", "")),
    "<keyword>_<speaker>_<n>": (lambda i, s, k, w, t: f"{w}_{s.replace('_', '')}_{t}.wav", lambda i, s: s.replace("_", "")),
    "<speaker>_<n>": (lambda i, s, k, w, t: f"{s}_{k:02d}{t}.wav", lambda i, s: s),
    "<speaker>-<n>": (lambda i, s, k, w, t: f"{s.replace('_', '')}-{t:02d}.wav", lambda i, s: s.replace("_", "")),
    "<speaker> (<n>)": (lambda i, s, k, w, t: f"{s.replace('_', '')} ({t + 1}).wav", lambda i, s: s.replace("_", "")),
    "<keyword>/<speaker>/<file>": (lambda i, s, k, w, t: f"{s}/take{t}.wav", lambda i, s: s),
}


def _plain(root: Path, naming: str, speakers=PEOPLE, words=DIGITS, takes=1) -> dict[str, str]:
    """<root>/<keyword>/<file> named by `naming`; returns {file path: true speaker id}."""
    name, truth = NAMINGS[naming]
    out = {}
    for i, s in enumerate(speakers):
        for k, w in enumerate(words):
            for t in range(takes):
                p = root / w / name(i, s, k, w, t)
                _write(p, 1000 * i + 10 * k + t)
                out[str(p)] = truth(i, s)
    return out


def _raw(speaker_id: str) -> str:
    return speaker_id.split(":", 1)[1]


def _assert_disjoint_and_stratified(records) -> None:
    splits_of: dict[str, set[str]] = defaultdict(set)
    per_kw: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        if r.is_noise:
            continue
        splits_of[r.speaker_id].add(r.split)
        per_kw[r.label][r.split].add(r.speaker_id)
    assert all(len(s) == 1 for s in splits_of.values()), {k: v for k, v in splits_of.items() if len(v) > 1}
    for kw, by_split in per_kw.items():
        if len(set().union(*by_split.values())) >= 3:
            assert by_split["val"] and by_split["test"] and by_split["train"], (kw, dict(by_split))


@pytest.mark.parametrize("naming", sorted(NAMINGS))
def test_each_naming_pattern_is_inferred_with_the_right_ids(naming):
    name, truth = NAMINGS[naming]
    files = [(w, name(i, s, k, w, t)) for i, s in enumerate(PEOPLE) for k, w in enumerate(DIGITS[:4]) for t in range(2)]
    want = [truth(i, s) for i, s in enumerate(PEOPLE) for _ in DIGITS[:4] for _ in range(2)]
    inf = infer_speakers(files)
    assert inf.pattern is not None and inf.pattern.name == naming
    assert list(inf.ids) == want and inf.speakers == len(PEOPLE)


def test_every_pattern_has_a_test_and_examples_read_as_they_say():
    assert {p.name for p in PATTERNS} == set(NAMINGS)
    for p in PATTERNS:
        name, speaker = p.example.split(" -> ")
        keyword, rel = (name.split("/", 1) if "/" in name else ("yes", name))
        assert p.parse(rel.rsplit("/", 1)[-1], keyword, rel) == speaker, p.name


@pytest.mark.parametrize("names, why", [
    ([(w, f"{k}_take_{t}.wav") for k, w in enumerate(DIGITS[:3]) for t in range(5)], "ids that never cross keywords"),
    ([(w, f"take_{t}.wav") for w in DIGITS[:3] for t in range(5)], "one speaker"),
    ([(w, f"{w}{t}.wav") for w in DIGITS[:3] for t in range(5)], "no separator"),
    ([(w, f"clip_{100 * k + t}.wav") for k, w in enumerate(DIGITS[:3]) for t in range(5)], "one clip per id"),
    ([(w, f"{s}_{t}.wav" if t else f"take {s.replace('_', '')}.wav") for w in DIGITS[:3] for s in PEOPLE[:4] for t in range(3)], "a third of names off"),
])
def test_implausible_readings_are_refused(names, why):
    assert infer_speakers(names).pattern is None, why


def test_a_few_odd_names_are_skipped_not_given_a_speaker(tmp_path):
    truth = _plain(tmp_path / "data", "<speaker>_<n>")
    odd = tmp_path / "data" / "one" / "recording final.wav"
    _write(odd, 7)
    scanned = scan_user_data(tmp_path / "data", "xx")
    assert [(s.path, s.reason) for s in scanned.skipped] == [(str(odd), "no_speaker")]
    assert {r.path: _raw(r.speaker_id) for r in scanned.clips} == truth


def test_a_plain_folder_of_12_speakers_x_10_words_goes_through_as_it_is(tmp_path, capsys):
    from polykws.datasets.report import print_data_check

    truth = _plain(tmp_path / "digits", "<speaker>_<n>")
    _write(tmp_path / "digits" / NOISE_LABEL / "hum.wav", 3)
    (tmp_path / "digits" / "README.txt").write_text("recorded at home\n")
    scanned = scan_user_data(tmp_path / "digits", "uk")
    assert scanned.layout == "keywords" and len(scanned.clips) == 120 and len(scanned.noise) == 1
    assert {r.path: _raw(r.speaker_id) for r in scanned.clips} == truth
    assert {r.language for r in scanned.clips} == {"uk"} and scanned.skipped == []
    assert scanned.split_modes["digits"] == "stratified"
    _assert_disjoint_and_stratified(scanned.records)
    check = check_data(scanned, "uk")
    assert check.ok, check.errors
    assert check.speakers_from_names and check.speakers == 12 and check.speaker_rule == "<speaker>_<n>"
    assert check.speaker_examples == ("man_1", "man_2", "man_3")
    print_data_check(check)
    assert "speakers: 12 inferred from the file names (<speaker>_<n>), e.g. man_1, man_2, man_3" in capsys.readouterr().out
    again = scan_user_data(tmp_path / "digits", "uk")
    assert [(r.path, r.speaker_id, r.split) for r in again.records] == [(r.path, r.speaker_id, r.split) for r in scanned.records]


@pytest.mark.parametrize("naming", ["<speaker>_nohash_<n>", "<digits>_<tag>_<n>", "<keyword>/<speaker>/<file>", "<speaker>-<n>"])
def test_plain_folders_of_other_namings_get_their_real_speakers(tmp_path, naming):
    truth = _plain(tmp_path / "d", naming, speakers=PEOPLE[:6], words=DIGITS[:3], takes=2)
    scanned = scan_user_data(tmp_path / "d", "xx")
    assert scanned.layout == "keywords"
    assert {r.path: _raw(r.speaker_id) for r in scanned.clips} == truth
    _assert_disjoint_and_stratified(scanned.records)


def test_the_nested_layout_infers_speakers_too_and_keeps_registered_sources(tmp_path):
    """<data>/<lang>/<source>/<keyword>/<file>: a source no parser knows gets inferred ids; the same
    split and speakers as the plain folder of the same files."""
    truth = _plain(tmp_path / "nested" / "xx" / "mine", "<speaker>_<n>")
    scanned = scan_user_data(tmp_path / "nested", "xx")
    assert scanned.layout == "folder" and {r.path: _raw(r.speaker_id) for r in scanned.clips} == truth
    assert scanned.speaker_rules == {("xx", "mine"): "<speaker>_<n>"}
    _assert_disjoint_and_stratified(scanned.records)
    plain = scan_user_data(tmp_path / "nested" / "xx" / "mine", "xx")
    assert sorted((_raw(r.speaker_id), r.label, r.split) for r in plain.clips) == sorted((_raw(r.speaker_id), r.label, r.split) for r in scanned.clips)


def test_gsc_layout_keeps_its_official_lists(tmp_path):
    root = tmp_path / "gsc"
    _plain(root, "<speaker>_nohash_<n>", speakers=PEOPLE[:6], words=DIGITS[:3], takes=2)
    (root / "validation_list.txt").write_text("one/0001beef_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("one/0002beef_nohash_1.wav\n")
    scanned = scan_user_data(root, "xx")
    assert scanned.layout == "gsc_v2"
    split = {Path(r.path).relative_to(root).as_posix(): r.split for r in scanned.clips}
    assert split["one/0001beef_nohash_0.wav"] == "val" and split["one/0002beef_nohash_1.wav"] == "test"


def test_speaker_regex_overrides_the_inference(tmp_path):
    _plain(tmp_path / "d", "<speaker>_<n>")
    scanned = scan_user_data(tmp_path / "d", "xx", speaker_regex=r"^([a-z]+)_")
    assert {_raw(r.speaker_id) for r in scanned.clips} == {"man", "woman"} and scanned.speaker_rules == {}


def test_no_pattern_keeps_the_pseudo_speaker_warning_and_the_summary_says_clips(tmp_path):
    for w in DIGITS[:2]:
        for t in range(12):
            _write(tmp_path / "d" / w / f"{w}{t}.wav", t)
    scanned = scan_user_data(tmp_path / "d", "xx")
    check = check_data(scanned, "xx")
    assert not check.speakers_from_names and check.speaker_rule == ""
    assert any("--speaker-regex" in w and "splits may share speakers" in w for w in check.warnings)
    # Per-clip pseudo-speakers are still split per keyword: each keyword has validation and test clips.
    assert all(k.splits.get("val") and k.splits.get("test") for k in check.keywords)


def test_a_keyword_with_too_few_speakers_is_an_error_naming_it_and_the_minimum(tmp_path):
    _plain(tmp_path / "d", "<speaker>_<n>", speakers=PEOPLE[:6], words=DIGITS[:3], takes=4)
    for t in range(12):
        _write(tmp_path / "d" / "rare" / f"{PEOPLE[t % 2]}_{t:02d}.wav", t)
    check = check_data(scan_user_data(tmp_path / "d", "xx"), "xx")
    assert not check.ok
    assert [e for e in check.errors if "at least 3 speakers" in e] == [
        "each keyword needs at least 3 speakers (one each for train, val and test); 'rare' has 2"]


def test_a_folder_with_nothing_usable_shows_the_tree_it_saw_and_the_layouts(tmp_path):
    d = tmp_path / "mess"
    for i in range(3):
        (d / f"session{i}").mkdir(parents=True)
        (d / f"session{i}" / "notes.txt").write_text("x")
    (d / "deep" / "a" / "b" / "c").mkdir(parents=True)
    _write(d / "deep" / "a" / "b" / "c" / "yes.wav", 1)
    with pytest.raises(PolykwsError) as info:
        scan_user_data(d, "xx")
    msg = str(info.value)
    assert "the folder as seen (two levels):\n  mess/\n    deep/\n      a/\n    session0/\n      notes.txt" in msg
    for layout, example in (("keywords", "one/man_4_01.mp3"), ("folder", "uk/my_recordings/one/man_4_01.mp3"),
                            ("gsc_v2", "yes/0a1b2c3d_nohash_0.wav"), ("mswc", "de/clips/")):
        assert f"  {layout}: " in msg and example in msg
    assert msg.index("  keywords: ") < msg.index("  folder: ")


def test_a_language_folder_for_another_language_shows_the_tree(tmp_path):
    _plain(tmp_path / "n" / "uk" / "src", "<speaker>_<n>", speakers=PEOPLE[:3], words=DIGITS[:2])
    with pytest.raises(PolykwsError, match=r"(?s)no usable audio files for language\(s\) ar.*\n  n/\n    uk/\n      src/"):
        scan_user_data(tmp_path / "n", "ar")


def test_stratified_split_gives_each_keyword_a_val_and_a_test_speaker_when_speakers_do_not_overlap():
    # 10 words, each read by its own 4 people plus 2 who read everything: a plain speaker quota
    # would leave most words without a test voice.
    pairs = [(f"ns:w{k}p{j}", f"w{k}") for k in range(10) for j in range(4)] + [(f"ns:all{j}", f"w{k}") for j in range(2) for k in range(10)]
    plan = stratified_assignment(pairs)
    assert plan == stratified_assignment(list(reversed(pairs)))  # order of the rows does not matter
    for k in range(10):
        got = {plan[s] for s, w in pairs if w == f"w{k}"}
        assert got == {"train", "val", "test"}, (k, got)


def test_stratified_split_leaves_small_keywords_in_train_and_keeps_a_train_speaker():
    pairs = [("a", "x"), ("b", "x"), ("a", "y"), ("b", "y"), ("c", "y")]
    plan = stratified_assignment(pairs)
    assert plan["a"] == plan["b"] == "train" or {plan[s] for s in "abc"} == {"train", "val", "test"}
    assert "train" in {plan[s] for s, w in pairs if w == "x"}
    assert stratified_assignment([("a", "x"), ("b", "x")]) == {"a": "train", "b": "train"}

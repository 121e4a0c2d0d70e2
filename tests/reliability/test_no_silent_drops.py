"""No silent drops: pack publishes atomically and removes stale blobs, the firmware reader takes
only the files manifest.json lists (hash-checked), loading an export verifies every file, `apply`
refuses to overwrite a folder or its own inputs, missing splits and missing test vectors are named,
and the arena search does not mistake other TFLM errors for "arena too small"."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filefuzz  # noqa: E402

from polykws.core import PolykwsError  # noqa: E402


@pytest.fixture(scope="module")
def models():
    return filefuzz.int8_models()


def _exported(models):
    from polykws.datasets.frontend import mfcc_frontend
    from polykws.export.api import ExportedModel
    from polykws.export.blob import encode_blob

    base, langs = models
    fe = mfcc_frontend()
    b = ExportedModel("en", tuple(f"e{i}" for i in range(12)), fe, 12, base, base)
    out = [ExportedModel(lang, tuple(f"{lang}{i}" for i in range(5)), fe, 12, m, base,
                         blob=encode_blob(base, m, lang, [f"{lang}{i}" for i in range(5)], {})) for lang, m in langs.items()]
    return b, out


def test_pack_removes_stale_blobs_and_commits_with_the_manifest(tmp_path, models):
    from polykws.export.pack import pack
    from polykws.firmware.packreader import load_pack

    base, langs = _exported(models)
    out = tmp_path / "pack"
    pack(base, langs, out)
    assert {p.name for p in out.iterdir()} == {"base.tflite", "lt.blob", "uk.blob", "flash.bin", "flash_layout.json", "manifest.json"}
    (out / "xx.blob").write_bytes(langs[1].blob)  # a stray blob from elsewhere
    pack(base, langs[:1], out)
    assert {p.name for p in out.iterdir()} == {"base.tflite", "lt.blob", "flash.bin", "flash_layout.json", "manifest.json"}
    assert list(json.loads((out / "manifest.json").read_text())["languages"]) == ["lt"]
    assert load_pack(out).languages == ("lt",)
    # Without flash.bin the reader builds the image from the blobs the manifest lists, never a glob.
    (out / "flash.bin").unlink()
    (out / "uk.blob").write_bytes(langs[1].blob)
    assert load_pack(out).languages == ("lt",)
    (out / "lt.blob").write_bytes(langs[1].blob)  # right name, wrong bytes
    with pytest.raises(PolykwsError, match="lt.blob: SHA-256 differs"):
        load_pack(out)


def test_failed_pack_leaves_the_folder_as_it_was(tmp_path, models):
    from polykws.export.convert import ExportError
    from polykws.export.pack import pack

    base, langs = _exported(models)
    out = tmp_path / "pack"
    pack(base, langs, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    langs[1].tflite = langs[0].tflite  # base + uk.blob no longer gives it
    with pytest.raises(ExportError, match="uk: base \\+ blob differs"):
        pack(base, langs, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bench_vectors_name_the_languages_they_lack(tmp_path, models, capsys):
    from polykws.export.pack import pack
    from polykws.firmware.packreader import load_bench_sets, load_pack

    base, langs = _exported(models)
    pack(base, langs, tmp_path / "pack")
    p = load_pack(tmp_path / "pack")
    np.savez(tmp_path / "v.npz", lt_x=np.zeros((3, 49, 10), np.float32), lt_y=np.zeros(3, int))
    sets = load_bench_sets(tmp_path / "v.npz", p, per_lang=10)
    assert [s.lang for s in sets] == ["lt"] and sets.missing == ("en", "uk")
    assert "no test vectors for 2 pack language(s) (en, uk)" in capsys.readouterr().err


def test_export_load_verifies_every_file(tmp_path, models):
    from polykws.export.api import ExportedModel
    from polykws.export.convert import ExportError

    base, langs = _exported(models)
    base.save(tmp_path)
    langs[0].save(tmp_path)
    assert ExportedModel.load(tmp_path, "lt").blob == langs[0].blob
    (tmp_path / "lt.blob").write_bytes(langs[1].blob)
    with pytest.raises(ExportError, match="lt.blob: SHA-256 does not match lt.json"):
        ExportedModel.load(tmp_path, "lt")
    (tmp_path / "en.blob").write_bytes(langs[1].blob)  # a base has no blob: this one is stale
    with pytest.raises(ExportError, match="en.blob: not described by en.json"):
        ExportedModel.load(tmp_path, "en")
    (tmp_path / "en.blob").unlink()
    (tmp_path / "en.float.tflite").unlink()
    with pytest.raises(ExportError, match="en.float.tflite: not found"):
        ExportedModel.load(tmp_path, "en")
    (tmp_path / "lt.tflite").unlink()
    with pytest.raises(ExportError, match="lt.tflite: not found"):
        ExportedModel.load(tmp_path, "lt")


def test_apply_refuses_a_folder_or_its_own_inputs(tmp_path, models):
    from polykws.export.convert import ExportError
    from polykws.export.pack import write_applied_model

    base, langs = _exported(models)
    (tmp_path / "base.tflite").write_bytes(base.tflite)
    (tmp_path / "lt.blob").write_bytes(langs[0].blob)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ExportError, match="output is an existing folder"):
        write_applied_model(tmp_path / "base.tflite", tmp_path / "lt.blob", tmp_path / "folder")
    with pytest.raises(ExportError, match="output is the base model itself"):
        write_applied_model(tmp_path / "base.tflite", tmp_path / "lt.blob", tmp_path / "." / "base.tflite")
    assert (tmp_path / "base.tflite").read_bytes() == base.tflite
    with pytest.raises(ExportError, match="differs from"):
        write_applied_model(tmp_path / "base.tflite", tmp_path / "lt.blob", tmp_path / "lt.tflite", check_path=tmp_path / "base.tflite")
    assert not (tmp_path / "lt.tflite").exists()
    with pytest.raises(ExportError, match="blob not found"):
        write_applied_model(tmp_path / "base.tflite", tmp_path / "nope.blob", tmp_path / "lt.tflite")
    assert write_applied_model(tmp_path / "base.tflite", tmp_path / "lt.blob", tmp_path / "lt.tflite") == langs[0].tflite
    assert (tmp_path / "lt.tflite").read_bytes() == langs[0].tflite


def test_missing_or_stale_split_is_named(tmp_path):
    from types import SimpleNamespace

    from polykws.pipeline.splitio import load_splits, save_splits

    s = lambda n: SimpleNamespace(x=np.zeros((n, 49, 10), np.float32), y=np.zeros(n, int), labels=("a", "b"))  # noqa: E731
    save_splits(tmp_path, {"train": s(4), "val": s(2), "test": s(2)})
    assert {k: len(v) for k, v in load_splits(tmp_path).items()} == {"train": 4, "val": 2, "test": 2}
    (tmp_path / "test.npz").unlink()
    with pytest.raises(PolykwsError, match="test.npz: missing, but labels.json records 2"):
        load_splits(tmp_path)
    save_splits(tmp_path / "b", {"train": s(4)})
    (tmp_path / "b" / "val.npz").write_bytes((tmp_path / "val.npz").read_bytes())
    with pytest.raises(PolykwsError, match="val.npz: not listed in labels.json"):
        load_splits(tmp_path / "b")


def test_arena_search_only_treats_allocation_failures_as_too_small(models, monkeypatch):
    from polykws.export import evaluate
    from polykws.export.convert import ExportError

    base, _ = models
    assert evaluate.find_arena_bytes(base) > 0
    assert evaluate.is_arena_too_small(RuntimeError("TFLM failed to allocate tensors"))
    assert not evaluate.is_arena_too_small(ValueError("Input shape mismatch"))

    def broken(tflite, arena_bytes):
        raise ValueError("Input shape mismatch")

    monkeypatch.setattr(evaluate, "_tflm", broken)
    with pytest.raises(ExportError, match="reason other than its size: ValueError: Input shape mismatch"):
        evaluate.find_arena_bytes(base)


def test_training_checkpoint_that_would_run_code_is_refused(tmp_path):
    import torch

    from polykws.training.checkpoint import load_training_state

    marker = tmp_path / "ran"
    torch.save({"format": "polykws-train-state", "format_version": 1, "x": filefuzz._RunsCode(str(marker))}, tmp_path / "c.pt")
    with pytest.raises(PolykwsError, match="unreadable training checkpoint"):
        load_training_state(tmp_path / "c.pt")
    assert not marker.exists()


def test_feature_builder_skips_are_listed_with_reasons_not_only_counted():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from polykws.datasets.report import print_feature_splits
    from polykws.datasets.scan import SkippedFile

    bad = SkippedFile("/data/noise/hum.wav", "silent", "peak 0.00e+00 full scale", "*", "noise")
    sp = SimpleNamespace(x=np.zeros((2, 49, 10), np.float32), y=np.array([0, 1]), labels=("a", "b"), speakers=("s1", "s2"),
                         skipped=(bad,), notes=("_unknown_: 0 of 1 wanted",))
    buf = io.StringIO()
    print_feature_splits({"train": sp}, console=Console(file=buf, width=200))
    text = buf.getvalue()
    assert "skipped (train) /data/noise/hum.wav: silent (peak 0.00e+00 full scale)" in text
    assert "_unknown_: 0 of 1 wanted" in text

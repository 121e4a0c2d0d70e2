"""`polykws add-language` end to end on real recordings: folder -> data check -> SWR -> int8 blob -> pack.

The folder is built from ../shared's Lithuanian commands (links, never copies): 10 keywords,
GSC-style file names under a source folder no parser knows, so speakers come from the names'
`<speaker>_nohash_<n>` pattern. A second language added to the same pack leaves the base and the
first language's blob byte for byte as they were."""

from __future__ import annotations

import json

import pytest

from polykws.cli import main

pytestmark = [pytest.mark.shared, pytest.mark.slow]

LT_A = ("ačiū", "du", "keturi", "labas", "ne", "nulis", "penki", "stop", "taip", "trys")
LT_B = ("iki", "išjunk", "pauzė", "startas", "įjunk")


def _folder(root, lang, src, words):
    for w in words:
        (root / lang / "recordings").mkdir(parents=True, exist_ok=True)
        (root / lang / "recordings" / w).symlink_to(src / w, target_is_directory=True)
    return root


def test_add_language_builds_a_pack_whose_blob_runs_on_host_tflm(shared_data, tmp_path, capsys):
    from polykws.core.assets import shipped_base
    from polykws.export.blob import apply_blob, decode_flash_image
    from polykws.export.evaluate import evaluate_tflm
    from polykws.firmware.packreader import load_pack
    from polykws.pipeline.userdata import check_user_data, user_splits
    from polykws.training.checkpoint import load_base

    src = shared_data / "kws" / "lt" / "lt_speech_commands"
    data_a = _folder(tmp_path / "a", "lt", src, LT_A)
    pack_dir, work = tmp_path / "pack", tmp_path / "work-lt"
    rc = main(["add-language", "--data", str(data_a), "--lang", "lt", "--into", str(pack_dir), "--out", str(work)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "data check" in out and "ačiū" in out and "added to" in out

    base_bytes = shipped_base().tflite.read_bytes()
    fp = load_pack(pack_dir)
    assert fp.base == base_bytes and fp.labels_of("lt") == (*sorted(LT_A), "_silence_")
    image = decode_flash_image((pack_dir / "flash.bin").read_bytes())
    blob = (pack_dir / "lt.blob").read_bytes()
    assert [b.lang for b in image.blobs] == ["lt"] and image.blobs[0].data == blob
    model = apply_blob(base_bytes, blob)
    assert model == (work / "export" / "lt.tflite").read_bytes()

    report = json.loads((work / "report.json").read_text())
    scanned, check = check_user_data(data_a, "lt")
    splits, task = user_splits(scanned, "lt", load_base(None).frontend)
    test = splits["test"]
    r = evaluate_tflm(model, test.x, test.y, num_labels=len(task.labels))
    assert r.accuracy == pytest.approx(report["int8_acc"]) and r.accuracy > 0.5  # chance is 1/11
    assert report["blob_bytes"] == len(blob) and report["test_speakers"] >= 2
    assert (work / "report.md").read_text().startswith("# lt: added to")

    before = {p.name: p.read_bytes() for p in pack_dir.iterdir() if p.is_file()}
    data_b = _folder(tmp_path / "b", "lx", src, LT_B)
    rc = main(["add-language", "--data", str(data_b), "--lang", "lx", "--into", str(pack_dir / "flash.bin"), "--out", str(tmp_path / "work-lx"),
               "--epochs", "5"])
    assert rc == 0
    assert (pack_dir / "base.tflite").read_bytes() == before["base.tflite"] and (pack_dir / "lt.blob").read_bytes() == before["lt.blob"]
    image = decode_flash_image((pack_dir / "flash.bin").read_bytes())
    assert [b.lang for b in image.blobs] == ["lt", "lx"] and image.blobs[0].data == before["lt.blob"] and image.base == base_bytes
    assert load_pack(pack_dir).labels_of("lx") == (*sorted(LT_B), "_silence_")

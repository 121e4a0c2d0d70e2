"""`adapt --data` and `add-language` stop at the data check, before any training, with the numbers needed;
and the task a folder defines has `_unknown_` only when words beyond the keywords exist."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from polykws.cli import main

SR = 16000


def _folder(root, words=("yes", "no"), speakers=("anna", "ben"), takes=4):
    for i, word in enumerate(words):
        d = root / "xx" / "rec" / word
        d.mkdir(parents=True)
        for s in speakers:
            for k in range(takes):
                t = np.arange(SR) / SR
                sf.write(d / f"{s}_{k:02d}.wav", (0.3 * np.sin(2 * np.pi * (300 + 200 * i + 10 * k) * t)).astype(np.float32), SR)
    return root


def test_add_language_stops_at_the_data_check_and_writes_nothing(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    pack = tmp_path / "pack"
    rc = main(["add-language", "--data", str(data), "--lang", "xx", "--into", str(pack), "--speaker-regex", "^([a-z]+)_",
               "--out", str(tmp_path / "work")])
    captured = capsys.readouterr()
    assert rc == 2
    assert "data check" in captured.out and "yes" in captured.out
    assert "2 speaker(s); speaker-disjoint train/val/test splits need at least 3" in captured.err
    assert "keyword 'no': 8 usable clip(s); at least 10 are needed" in captured.err
    assert not pack.exists() and not (tmp_path / "work").exists()


def test_a_language_code_no_blob_can_carry_is_refused_first(tmp_path, capsys):
    rc = main(["add-language", "--data", str(tmp_path), "--lang", "Lietuva", "--into", str(tmp_path / "pack")])
    assert rc == 2 and "language code 'Lietuva' must be 1-8 characters of [a-z0-9_-]" in capsys.readouterr().err


def test_adapt_data_runs_the_same_check(tmp_path, capsys):
    data = _folder(tmp_path / "data", speakers=("anna", "ben", "chen"), takes=2)
    rc = main(["adapt", "--lang", "xx", "--data", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "keyword 'yes': 6 usable clip(s); at least 10 are needed" in err
    assert not (tmp_path / "out").exists()


def test_the_task_has_unknown_only_when_other_words_remain(tmp_path):
    from polykws.datasets.check import scan_user_data
    from polykws.pipeline.userdata import user_task

    scanned = scan_user_data(_folder(tmp_path, words=("yes", "no", "maybe")), "xx", workers=1)
    every = user_task(scanned, "xx")
    assert every.labels == ("maybe", "no", "yes", "_silence_") and every.true_silence_fraction == 1.0
    some = user_task(scanned, "xx", ["yes", "no"], noise_dir=tmp_path)
    assert some.labels == ("yes", "no", "_silence_", "_unknown_") and some.true_silence_fraction < 1.0


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")  # TF's own notice, from the ONNX parity check
def test_add_language_on_a_synthesized_folder_appends_to_a_pack(tmp_path, capsys):
    """The whole command on espeak-ng speech (3 German digits x 12 voices, the other digits train _unknown_),
    into a pack that already holds a language whose blob and the base keep their bytes."""
    import json

    from polykws.core.assets import shipped_base
    from polykws.datasets.frontend import FrontendConfig
    from polykws.datasets.synth import SynthConfig, synthesize_corpus
    from polykws.export.api import ExportedModel
    from polykws.export.blob import apply_blob, decode_flash_image, encode_blob
    from polykws.export.pack import pack as write_pack
    from polykws.export.tflite_graph import TfliteGraph

    sb = shipped_base()
    base = sb.tflite.read_bytes()
    fc = TfliteGraph(base).weighted_ops()[-1]
    start, _ = TfliteGraph(base).tensors[fc.inputs[1]].data_span
    other = bytearray(base)
    other[start:start + 64] = bytes([3]) * 64  # a language that changed one head row
    fe = FrontendConfig.from_dict(sb.manifest["frontend"])
    aa = ExportedModel("aa", ("a", "b"), fe, sb.head_slots, bytes(other), base, blob=encode_blob(base, bytes(other), "aa", ("a", "b")))
    pack_dir = tmp_path / "pack"
    write_pack(ExportedModel("en", sb.labels, fe, sb.head_slots, base, base), [aa], pack_dir)

    data = tmp_path / "corpus"
    synthesize_corpus(SynthConfig(languages=("de",), groups=("digits",), speakers=12, noise_files_per_kind=1, noise_seconds=2.0), data, workers=1)
    rc = main(["add-language", "--data", str(data), "--into", str(pack_dir / "flash.bin"), "--epochs", "2", "--cache-dir", str(tmp_path / "cache"),
               "--lang", "de", "--keywords", "eins,zwei,drei", "--out", str(tmp_path / "work")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "data check" in out and "eins" in out and "blob" in out
    image = decode_flash_image((pack_dir / "flash.bin").read_bytes())
    assert image.base == base and [b.lang for b in image.blobs] == ["aa", "de"] and image.blobs[0].data == aa.blob
    assert (pack_dir / "aa.blob").read_bytes() == aa.blob and (pack_dir / "base.tflite").read_bytes() == base
    assert list(json.loads((pack_dir / "manifest.json").read_text())["languages"]) == ["aa", "de"]
    assert apply_blob(base, image.blobs[1].data) == (tmp_path / "work" / "export" / "de.tflite").read_bytes()
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    assert report["labels"] == ["eins", "zwei", "drei", "_silence_", "_unknown_"]

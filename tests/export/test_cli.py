"""`polykws export`, `polykws pack`, `polykws apply` end to end, and apply's refusals (nothing written)."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from polykws.cli import main
from polykws.export.api import ExportedModel
from polykws.export.blob import meta_id, decode_blob, decode_flash_image

from .conftest import HEAD_SLOTS
from .test_export import _merged_language

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, base_export, base_model, feats):
    """The session base + one language exported by the library, saved, then packed by the CLI."""
    from polykws.export.api import export_language

    tmp = tmp_path_factory.mktemp("cli")
    ar = feats["ar"]
    uk_model = _merged_language(base_model, "bias", num_classes=len(ar.labels))
    exp, pack = tmp / "export", tmp / "pack"
    base_export.save(exp)
    export_language(base_export, uk_model, ar.labels, ar.x_train, exp, lang="uk", scales="auto", parity_x=ar.x_test[:16])
    assert main(["pack", str(exp), "--langs", "uk", "--base-name", base_export.lang, "-o", str(pack)]) == 0
    return tmp, exp, pack


@pytest.mark.slow
def test_export_command_end_to_end(tmp_path, base_model, feats, frontend):
    """`polykws export` (model files through the spine's loader) for a base and a language, then pack + apply."""
    from polykws.training.checkpoint import save_model

    gu, ar = feats["gu"], feats["ar"]
    save_model(tmp_path / "base.pt", base_model, labels=gu.labels, frontend=frontend)
    uk_model = _merged_language(base_model, "bias", num_classes=len(ar.labels))
    uk_model.model_name = "ds_cnn_s"
    save_model(tmp_path / "uk.pt", uk_model, labels=ar.labels, frontend=frontend)
    np.savez(tmp_path / "gu.npz", calibration=gu.x_train[:120], test_x=gu.x_test[:24], test_y=gu.y_test[:24])
    np.savez(tmp_path / "uk.npz", calibration=ar.x_train[:120], test_x=ar.x_test[:24], test_y=ar.y_test[:24])
    exp, pack = tmp_path / "export", tmp_path / "pack"
    assert main(["export", str(tmp_path / "base.pt"), "--features", str(tmp_path / "gu.npz"), "-o", str(exp), "--head-slots", str(HEAD_SLOTS)]) == 0
    assert main(["export", str(tmp_path / "uk.pt"), "--features", str(tmp_path / "uk.npz"), "-o", str(exp), "--lang", "uk", "--scales", "auto"]) == 0
    base, uk = ExportedModel.load(exp, "base"), ExportedModel.load(exp, "uk")
    assert base.head_slots == HEAD_SLOTS and uk.meta["scales"] == "auto"
    assert set(base.meta["eval"]) >= {"float_acc", "int8_acc", "arena_bytes"} and "int8_acc" in uk.meta["eval"]
    assert main(["pack", str(exp), "--langs", "uk", "-o", str(pack)]) == 0
    assert main(["apply", str(pack / "base.tflite"), str(pack / "uk.blob"), "-o", str(tmp_path / "uk.tflite"), "--check", str(exp / "uk.tflite")]) == 0


def test_export_and_pack_write_self_describing_artifacts(cli_run):
    tmp, exp, pack = cli_run
    base = ExportedModel.load(exp, "base")
    uk = ExportedModel.load(exp, "uk")
    assert base.head_slots == HEAD_SLOTS and uk.meta["scales"] == "auto"
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["base"]["sha256"] == base.sha256 and manifest["base"]["bytes"] == len(base.tflite)
    entry = manifest["languages"]["uk"]
    assert entry["blob_bytes"] == len(uk.blob) and entry["tflite_sha256"] == uk.sha256
    assert manifest["base"]["lang"] == "base" and manifest["input_zero_point"] == base.input_zero_point
    assert (pack / "base.tflite").read_bytes() == base.tflite and (pack / "uk.blob").read_bytes() == uk.blob
    image = decode_flash_image((pack / "flash.bin").read_bytes())
    assert image.base == base.tflite and image.blob_bytes(0) == uk.blob
    layout = json.loads((pack / "flash_layout.json").read_text())
    assert layout["blobs"][0]["lang"] == "uk" and layout["base"]["offset"] % 16 == 0
    # The blob references its metadata by hash; the manifest carries the text, and they agree.
    assert entry["blob_meta"]["frontend_hash"] == manifest["frontend_hash"]
    assert decode_blob(uk.blob).meta_id == meta_id(entry["blob_meta"]) == entry["blob_meta_id"]
    assert entry["labels"] == list(decode_blob(uk.blob).labels) == list(uk.labels)


def test_apply_is_byte_identical_to_the_direct_export(cli_run, tmp_path, capsys):
    _, exp, pack = cli_run
    out = tmp_path / "uk.tflite"
    rc = main(["apply", str(pack / "base.tflite"), str(pack / "uk.blob"), "-o", str(out), "--check", str(exp / "uk.tflite")])
    assert rc == 0
    assert out.read_bytes() == (exp / "uk.tflite").read_bytes()
    assert "identical" in capsys.readouterr().out


def _recrc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _bad_blobs(blob: bytes, model_size: int) -> dict[str, bytes]:
    from polykws.core.patchcode import CTX_HDR
    from polykws.firmware.vectorbytes import StreamWriter

    parsed = decode_blob(blob)
    stream_at = len(blob) - 4 - len(parsed.stream)
    # One record reaching one byte past the model, behind a valid header and CRC.
    w = StreamWriter().number(CTX_HDR, 2)
    _, count, gap = w.record(model_size - 1, 1, 2, 0)
    w.number(count, 1).number(gap, 1).value(1, 1)
    past_end = bytearray(blob[:stream_at] + w.finish() + b"\0\0\0\0")
    struct.pack_into("<I", past_end, 8, len(past_end))
    # Two labels swapped: the CRC is recomputed (anyone can), the integrity digest is not.
    n0 = blob[64]
    n1 = blob[65 + n0]
    labels = blob[64 : 66 + n0 + n1]
    swapped = bytes([n1]) + labels[2 + n0 :] + bytes([n0]) + labels[1 : 1 + n0]
    return {
        "truncated": blob[:-10],
        "bad_crc": blob[:-1] + bytes([blob[-1] ^ 0xFF]),
        "unsupported_version": _recrc(blob[:4] + struct.pack("<H", 1) + blob[6:]),
        "target_mismatch": _recrc(blob[:64] + swapped + blob[66 + n0 + n1 :]),
        "out_of_range": _recrc(bytes(past_end)),
        "bad_magic": b"XXXX" + blob[4:],
    }


@pytest.mark.parametrize("code", ["truncated", "bad_crc", "unsupported_version", "target_mismatch", "out_of_range", "bad_magic", "base_mismatch"])
def test_apply_refuses_bad_input_by_name_and_writes_nothing(code, cli_run, tmp_path, capsys):
    _, exp, pack = cli_run
    blob = (pack / "uk.blob").read_bytes()
    base_path = pack / "base.tflite"
    if code == "base_mismatch":
        other = bytearray(base_path.read_bytes())
        other[-8] ^= 0x55
        base_path = tmp_path / "other_base.tflite"
        base_path.write_bytes(bytes(other))
    else:
        blob = _bad_blobs(blob, len(base_path.read_bytes()))[code]
    (tmp_path / "bad.blob").write_bytes(blob)
    out = tmp_path / "out.tflite"
    out.write_bytes(b"previous content")
    rc = main(["apply", str(base_path), str(tmp_path / "bad.blob"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert code in err and "bad.blob" in err
    assert out.read_bytes() == b"previous content", "a refused blob must not touch the output"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bad.blob", "out.tflite"] + (["other_base.tflite"] if code == "base_mismatch" else []))


def test_apply_check_mismatch_writes_nothing(cli_run, tmp_path, capsys):
    _, exp, pack = cli_run
    out = tmp_path / "uk.tflite"
    rc = main(["apply", str(pack / "base.tflite"), str(pack / "uk.blob"), "-o", str(out), "--check", str(pack / "base.tflite")])
    assert rc == 2 and not out.exists()
    assert "differs" in capsys.readouterr().err


def test_cli_reports_missing_files(tmp_path, capsys):
    rc = main(["apply", str(tmp_path / "nope.tflite"), str(tmp_path / "x.blob"), "-o", str(tmp_path / "o.tflite")])
    assert rc == 2 and "nope.tflite" in capsys.readouterr().err
    np.savez(tmp_path / "f.npz", wrong=np.zeros(3))
    with pytest.raises(SystemExit):
        main(["export"])  # argparse: the model and --features are required
    capsys.readouterr()

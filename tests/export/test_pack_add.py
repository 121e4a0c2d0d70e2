"""Adding a language to an existing pack or flash image keeps the base and the other blobs byte for byte.

Real blobs against the shipped int8 base, coded by the real encoder: each language is the base with
one head row changed (what a language's head does to it)."""

from __future__ import annotations

import json

import pytest

from polykws.core.assets import shipped_base
from polykws.datasets.frontend import FrontendConfig
from polykws.export.api import ExportedModel
from polykws.export.blob import apply_blob, decode_flash_image, encode_blob
from polykws.export.convert import ExportError
from polykws.export.pack import add_language, add_to_flash_image, pack

from .test_blob_base import with_head_row


@pytest.fixture(scope="module")
def models():
    sb = shipped_base()
    base_bytes = sb.tflite.read_bytes()
    fe = FrontendConfig.from_dict(sb.manifest["frontend"])
    base = ExportedModel("en", sb.labels, fe, sb.head_slots, base_bytes, base_bytes)

    def lang(code: str, value: int) -> ExportedModel:
        target = with_head_row(base_bytes, value)
        labels = ("a", "b", "_silence_")
        return ExportedModel(code, labels, fe, sb.head_slots, target, base_bytes, meta={"method": "swr"},
                             blob=encode_blob(base_bytes, target, code, labels))

    return base, {code: lang(code, v) for code, v in (("aa", 3), ("bb", 5), ("cc", 7), ("cc2", 9))}


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_adding_a_language_keeps_the_base_and_every_other_blob(models, tmp_path):
    base, langs = models
    out = tmp_path / "pack"
    pack(base, [langs["aa"], langs["bb"]], out)
    before = _files(out)
    old_manifest = json.loads(before["manifest.json"])
    add_language(out, base, langs["cc"])
    after = _files(out)
    for name in ("base.tflite", "aa.blob", "bb.blob"):
        assert after[name] == before[name]
    manifest = json.loads(after["manifest.json"])
    assert list(manifest["languages"]) == ["aa", "bb", "cc"]
    assert manifest["languages"]["aa"] == old_manifest["languages"]["aa"] and manifest["base"] == old_manifest["base"]
    image = decode_flash_image(after["flash.bin"])
    assert image.base == before["base.tflite"]
    assert [(b.lang, b.data) for b in image.blobs] == [("aa", before["aa.blob"]), ("bb", before["bb.blob"]), ("cc", langs["cc"].blob)]
    assert apply_blob(image.base, image.blobs[2].data) == langs["cc"].tflite
    # The same code again is refused (nothing written); replace keeps its place in the flash order.
    with pytest.raises(ExportError, match="already holds language 'cc'; pass replace"):
        add_language(out, base, langs["cc"])
    assert _files(out) == after
    swapped = ExportedModel("bb", langs["cc2"].labels, base.frontend, base.head_slots, langs["cc2"].tflite, base.tflite,
                            blob=encode_blob(base.tflite, langs["cc2"].tflite, "bb", langs["cc2"].labels))
    add_language(out, base, swapped, replace=True)
    image = decode_flash_image((out / "flash.bin").read_bytes())
    assert [b.lang for b in image.blobs] == ["aa", "bb", "cc"] and image.blobs[1].data == swapped.blob
    assert image.blobs[0].data == before["aa.blob"] and image.blobs[2].data == langs["cc"].blob


def test_a_new_pack_folder_is_created_and_damage_is_refused(models, tmp_path):
    base, langs = models
    out = tmp_path / "new"
    add_language(out, base, langs["aa"])
    assert list(json.loads((out / "manifest.json").read_text())["languages"]) == ["aa"]
    (out / "aa.blob").write_bytes(langs["bb"].blob)
    with pytest.raises(ExportError, match=r"aa\.blob: SHA-256 does not match"):
        add_language(out, base, langs["cc"])
    other = tmp_path / "other"
    pack(base, [langs["aa"]], other)
    (other / "base.tflite").write_bytes(with_head_row(base.tflite, 1))
    with pytest.raises(ExportError, match="is not the base this language was exported against"):
        add_language(other, base, langs["cc"])


def test_a_standalone_flash_image_gets_the_blob_appended(models, tmp_path):
    base, langs = models
    path = tmp_path / "board.bin"
    add_to_flash_image(path, base.tflite, langs["aa"].blob)
    first = path.read_bytes()
    add_to_flash_image(path, base.tflite, langs["bb"].blob)
    image = decode_flash_image(path.read_bytes())
    assert image.base == base.tflite and [(b.lang, b.data) for b in image.blobs] == [("aa", langs["aa"].blob), ("bb", langs["bb"].blob)]
    assert decode_flash_image(first).blobs[0].data == image.blobs[0].data
    with pytest.raises(ExportError, match="already holds language 'aa'"):
        add_to_flash_image(path, base.tflite, langs["aa"].blob)

"""A blob names the base it was made against, and a refusal says which base to use.

Real blobs against the shipped int8 base: the target is the base with one head row changed (what
a language's head does to it), coded by the real encoder."""

from __future__ import annotations

import pytest

from polykws.core.assets import shipped_base
from polykws.export.blob import BlobError, apply_blob, decode_blob, encode_blob, encode_flash_image
from polykws.export.tflite_graph import TfliteGraph


def with_head_row(base: bytes, value: int) -> bytes:
    """`base` with row 0 of the head's int8 weights set to `value`."""
    g = TfliteGraph(base, "base")
    fc = g.weighted_ops()[-1]
    start, end = g.tensors[fc.inputs[1]].data_span
    out = bytearray(base)
    out[start:start + 64] = bytes([value & 0xFF]) * 64
    return bytes(out)


@pytest.fixture(scope="module")
def shipped():
    sb = shipped_base()
    return sb, sb.tflite.read_bytes()


def test_a_blob_for_the_shipped_base_names_it(shipped):
    sb, base = shipped
    target = with_head_row(base, 5)
    blob = encode_blob(base, target, "xx", list(sb.labels))
    assert decode_blob(blob).base_id == sb.tflite_sha256[:8]
    assert apply_blob(base, blob) == target
    other = with_head_row(base, 9)  # same size, other bytes: another base
    n = len(base)
    with pytest.raises(BlobError, match=rf"needs the base whose int8 \.tflite is {n} bytes with SHA-256 {sb.tflite_sha256[:8]}\.\.\.: "
                                        rf"the base shipped with polykws \(`polykws base info`\); this base is {n} bytes") as e:
        apply_blob(other, blob)
    assert e.value.code == "base_mismatch"


def test_a_blob_made_against_another_base_is_refused_by_the_shipped_one(shipped):
    sb, base = shipped
    other = with_head_row(base, 9)
    blob = encode_blob(other, with_head_row(other, 3), "yy", list(sb.labels))
    want = decode_blob(blob).base_id
    with pytest.raises(BlobError, match=rf"needs the base whose int8 \.tflite is {len(base)} bytes with SHA-256 {want}\.\.\.; the shipped "
                                        rf"base is {sb.tflite_sha256[:8]}\.\.\. \(`polykws base info`\), so this blob was made against another base"):
        apply_blob(base, blob)
    with pytest.raises(BlobError, match=r"blob 'yy' needs the base .* made against another base") as e:
        encode_flash_image(base, [blob])
    assert e.value.code == "base_mismatch"


def test_the_pack_manifest_names_the_base_for_the_pack_and_every_blob(shipped, tmp_path):
    import json

    from polykws.datasets.frontend import FrontendConfig
    from polykws.export.api import ExportedModel
    from polykws.export.convert import ExportError
    from polykws.export.pack import pack

    sb, base = shipped
    fe = FrontendConfig.from_dict(sb.manifest["frontend"])
    b = ExportedModel("en", sb.labels, fe, sb.head_slots, base, base)

    def lang(code: str, against: bytes, value: int) -> ExportedModel:
        target = with_head_row(against, value)
        labels = tuple(f"{code}{i}" for i in range(10))
        return ExportedModel(code, labels, fe, sb.head_slots, target, target, blob=encode_blob(against, target, code, list(labels), {}))

    pack(b, [lang("uk", base, 5), lang("lt", base, 7)], tmp_path / "pack")
    m = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert m["base"]["sha256"] == sb.tflite_sha256
    assert [e["base_id"] for e in m["languages"].values()] == [sb.tflite_sha256[:8]] * 2
    stranger = lang("ar", with_head_row(base, 9), 3)
    with pytest.raises(ExportError, match=rf"ar\.blob needs the base whose int8 \.tflite is {len(base)} bytes .* made against another base; "
                                          rf"this pack's base is {len(base)} bytes, SHA-256 {sb.tflite_sha256[:16]}"):
        pack(b, [stranger], tmp_path / "pack2")

"""Reading a pack and the benchmark vectors the way `polykws firmware` does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polykws.export.blob import encode_blob, encode_flash_image
from polykws.export.evaluate import quantize_features
from polykws.firmware.packreader import load_bench_sets, load_pack, subset_indices
from polykws.core import PolykwsError


@pytest.fixture()
def pack_dir(tmp_path, int8_models):
    base, langs = int8_models
    blobs = [encode_blob(base, m, lang, [f"{lang}{i}" for i in range(5)], {}) for lang, m in langs.items()]
    d = tmp_path / "pack"
    d.mkdir()
    (d / "flash.bin").write_bytes(encode_flash_image(base, blobs))
    (d / "manifest.json").write_text(json.dumps({"base": {"lang": "en", "labels": [f"e{i}" for i in range(12)]},
                                                 "frontend": {"kind": "mfcc"}}))  # fmt: skip
    return d


def test_load_pack(pack_dir):
    p = load_pack(pack_dir)
    assert (p.base_lang, p.languages) == ("en", ("lt", "uk"))
    assert p.labels_of("lt") == tuple(f"lt{i}" for i in range(5)) and len(p.labels_of("en")) == 12
    with pytest.raises(PolykwsError, match="no language 'fr'"):
        p.labels_of("fr")
    (pack_dir / "flash.bin").write_bytes(b"PKWF" + bytes(60))
    with pytest.raises(PolykwsError, match="bad_crc|unsupported_version"):
        load_pack(pack_dir)


def test_manifest_and_image_must_hold_the_same_languages_in_any_order(pack_dir):
    """A pack's manifest.json is written with sorted keys, its flash.bin in the config's language
    order: the same languages in another order load; a language on one side only is refused."""
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    (pack_dir / "manifest.json").write_text(json.dumps({**manifest, "languages": {"uk": {}, "lt": {}}}))
    assert load_pack(pack_dir).languages == ("lt", "uk")  # image order
    (pack_dir / "manifest.json").write_text(json.dumps({**manifest, "languages": {"lt": {}, "fr": {}}}))
    with pytest.raises(PolykwsError, match="manifest.json lists lt, fr but flash.bin holds lt, uk"):
        load_pack(pack_dir)
    (pack_dir / "manifest.json").write_text(json.dumps({**manifest, "languages": {"lt": {}}}))
    with pytest.raises(PolykwsError, match="flash.bin holds lt, uk"):
        load_pack(pack_dir)


def test_bench_vectors_subset_and_quantization(pack_dir, tmp_path):
    p = load_pack(pack_dir)
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3, size=(50, 49, 10)).astype(np.float32)
    y = np.repeat(np.arange(5), 10)  # class-ordered, as real test splits are
    np.savez(tmp_path / "v.npz", lt_x=x, lt_y=y, en_x=x[:3], en_y=np.zeros(3, int))
    sets = {s.lang: s for s in load_bench_sets(tmp_path / "v.npz", p, per_lang=20)}
    assert set(sets) == {"en", "lt"} and sets["en"].count == 3 and sets["lt"].count == 20
    keep = subset_indices(50, 20)
    assert len(set(y[keep].tolist())) == 5, "a subset of a class-ordered split must not be one class"
    assert np.array_equal(subset_indices(50, 20), keep)  # deterministic
    want = quantize_features(p.base, x[keep]).reshape(20, -1)
    assert np.array_equal(sets["lt"].features, want) and np.array_equal(sets["lt"].labels, y[keep])
    np.savez(tmp_path / "bad.npz", lt_x=x, lt_y=y + 1)
    with pytest.raises(PolykwsError, match="lt has 5 labels"):
        load_bench_sets(tmp_path / "bad.npz", p, per_lang=100)
    np.savez(tmp_path / "short.npz", lt_x=x, lt_y=y[:-1])
    with pytest.raises(PolykwsError, match="49 labels"):
        load_bench_sets(tmp_path / "short.npz", p, per_lang=100)

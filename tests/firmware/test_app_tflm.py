"""The full TFLM application under QEMU (needs TFLM_DIR etc.; skips with a reason otherwise, as in CI).

A pack is built from a real int8 model (RESHAPE + FULLY_CONNECTED, see conftest) and two
layout-identical languages; the app is generated, built, run under QEMU and compared with the host
TFLM runtime vector by vector. Set POLYKWS_FIRMWARE_PACK (+ POLYKWS_FIRMWARE_FEATURES) to also
benchmark a real `polykws pack` output the same way. The TFLM library build is cached in
firmware/build (or $POLYKWS_FIRMWARE_BUILD): the first run compiles TFLM (minutes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from polykws.datasets.frontend import mfcc_frontend
from polykws.export.blob import encode_blob, encode_flash_image
from polykws.firmware.build import ThirdParty
from polykws.core import PolykwsError

pytestmark = pytest.mark.tflm


def _third_party(kernels: str, tflm_dir: Path) -> ThirdParty:
    try:
        return ThirdParty.from_env(kernels)
    except PolykwsError as exc:
        pytest.skip(f"TFLM_DIR={tflm_dir} is set but the other checkouts are not: {exc}")


def _write_pack(tmp: Path, int8_models) -> tuple[Path, Path]:
    base, langs = int8_models
    labels = {lang: [f"{lang}_{i}" for i in range(8 + k)] for k, lang in enumerate(langs)}
    blobs = [encode_blob(base, m, lang, labels[lang], {"lang": lang}) for lang, m in langs.items()]
    pack = tmp / "pack"
    pack.mkdir()
    (pack / "flash.bin").write_bytes(encode_flash_image(base, blobs))
    base_labels = [f"en_{i}" for i in range(12)]
    (pack / "manifest.json").write_text(json.dumps({"base": {"lang": "en", "labels": base_labels}, "frontend": mfcc_frontend().to_dict()}))
    rng = np.random.default_rng(7)
    arrays = {}
    for lang, n_labels in [("en", 12)] + [(lang, len(labels[lang])) for lang in langs]:
        arrays[f"{lang}_x"] = rng.normal(scale=4.0, size=(40, 49, 10)).astype(np.float32)
        arrays[f"{lang}_y"] = rng.integers(0, n_labels, size=40)
    np.savez(tmp / "vectors.npz", **arrays)
    return pack, tmp / "vectors.npz"


@pytest.mark.parametrize(
    "board, kernels",
    [
        ("mps2-an386", "cmsis-nn"),
        pytest.param("mps2-an386", "reference", marks=pytest.mark.slow),
        pytest.param("mps3-an547", "cmsis-nn", marks=pytest.mark.slow),
        pytest.param("mps3-an547", "reference", marks=pytest.mark.slow),
    ],
)
def test_app_matches_host_tflm(board, kernels, tflm_dir, int8_models, tmp_path):
    from polykws.firmware.workflow import FirmwareConfig, bench_firmware, build_firmware

    _third_party(kernels, tflm_dir)
    pack, vectors = _write_pack(tmp_path, int8_models)
    cfg = FirmwareConfig(board, kernels, per_lang=40, build_root=None)
    app = build_firmware(cfg, pack, vectors)
    assert app.sources.ops == ("RESHAPE", "MEAN", "FULLY_CONNECTED")
    assert app.memory.ok
    result = bench_firmware(app)
    # CMSIS-NN builds run MEAN through the firmware's fast path; outputs must still be bit-identical.
    assert result.mean_kernel == ("fast" if kernels == "cmsis-nn" else "reference")
    assert result.mismatches == []
    rows = {r.lang: r for r in result.rows}
    assert set(rows) == {"en", "lt", "uk"}
    assert rows["en"].source == "base" and rows["lt"].source == "blob"
    for r in rows.values():
        assert r.n == 40 and r.device_correct == r.host_correct
        assert r.arena_used <= result.arena_bytes
        # A merged language runs the base's graph: same instructions per inference (within 1 %).
        assert abs(r.per_inference - rows["en"].per_inference) <= 0.01 * rows["en"].per_inference
    assert rows["lt"].select_cost > rows["en"].select_cost  # patch + SHA-256 verify on top of setup
    assert result.flash_bytes > result.model_image_bytes > 0


@pytest.mark.parametrize("axes", [(2, 1), (-3, 2)])
def test_fast_mean_axis_spellings_match_reference(axes, tflm_dir, int8_model_factory, tmp_path):
    """The MEAN fast path resolves negative and permuted axes like TFLM's reference does."""
    from polykws.firmware.workflow import FirmwareConfig, bench_firmware, build_firmware

    _third_party("cmsis-nn", tflm_dir)
    base = int8_model_factory(seed=5, mean_axes=axes)
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "flash.bin").write_bytes(encode_flash_image(base, []))
    (pack / "manifest.json").write_text(json.dumps({"base": {"lang": "en", "labels": [f"c{i}" for i in range(12)]}}))
    rng = np.random.default_rng(11)
    np.savez(tmp_path / "v.npz", en_x=rng.integers(-128, 128, size=(30, 490)).astype(np.int8), en_y=rng.integers(0, 12, 30))
    app = build_firmware(FirmwareConfig("mps2-an386", "cmsis-nn", per_lang=30), pack, tmp_path / "v.npz")
    result = bench_firmware(app)
    assert result.mean_kernel == "fast" and result.mismatches == []


def test_refused_blob_is_never_run(tflm_dir, int8_models, tmp_path):
    """A blob whose patched model does not hash to its target is refused on the device with the doc's name.

    The generator itself refuses such a pack, so the app is generated from a good image and the
    embedded image is then swapped for the tampered one (same size, CRCs valid).
    """
    import struct
    import zlib

    from polykws.export.carray import render_byte_array
    from polykws.firmware import gen
    from polykws.firmware.build import build_app
    from polykws.firmware.qemu import run_elf

    third = _third_party("cmsis-nn", tflm_dir)
    base, langs = int8_models
    good_blob = encode_blob(base, langs["lt"], "lt", ["a", "b"], {})
    bad_blob = bytearray(good_blob)
    bad_blob[52] ^= 1  # inside the integrity digest: the patched model no longer matches it
    bad_blob[-4:] = struct.pack("<I", zlib.crc32(bytes(bad_blob[:-4])) & 0xFFFFFFFF)
    good, bad = encode_flash_image(base, [good_blob]), encode_flash_image(base, [bytes(bad_blob)])
    assert len(good) == len(bad)
    g = gen.generate_app_sources(tmp_path / "gen", good, base_lang="en", base_labels=["x", "y"], bench_sets=[],
                                 arena_bytes=4096, frontend=mfcc_frontend(), source="tampered")  # fmt: skip
    src = g.source.read_text()
    old = render_byte_array("pkw_flash_image", good, align=16, section=".pkw_models")
    assert old in src
    g.source.write_text(src.replace(old, render_byte_array("pkw_flash_image", bad, align=16, section=".pkw_models")))
    elf = build_app("mps2-an386", "cmsis-nn", g.out_dir, third, build_root=None)
    out = run_elf(elf, "mps2-an386", timeout_s=120).stdout
    assert "PKW_LANG lang=en source=base" in out  # the base still runs
    assert "PKW_ERROR stage=select status=blob_invalid image_error=ok blob_error=target_mismatch" in out
    assert "PKW_END status=error" in out and "lang=lt source=blob" not in out


def test_real_pack_if_given(tflm_dir):
    pack = os.environ.get("POLYKWS_FIRMWARE_PACK")
    feats = os.environ.get("POLYKWS_FIRMWARE_FEATURES")
    if not pack or not feats:
        pytest.skip("set POLYKWS_FIRMWARE_PACK and POLYKWS_FIRMWARE_FEATURES to benchmark a real `polykws pack` output")
    from polykws.firmware.workflow import FirmwareConfig, bench_firmware, build_firmware

    _third_party("cmsis-nn", tflm_dir)
    app = build_firmware(FirmwareConfig("mps2-an386", "cmsis-nn", per_lang=100), Path(pack), Path(feats))
    result = bench_firmware(app)
    assert result.mismatches == []
    base = next(r for r in result.rows if r.source == "base") if any(r.source == "base" for r in result.rows) else result.rows[0]
    for r in result.rows:
        assert abs(r.per_inference - base.per_inference) <= 0.01 * base.per_inference

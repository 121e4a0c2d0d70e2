"""`polykws firmware sdk` refuses a pack it cannot package, naming the file and the problem, before
any build starts (no TFLM needed)."""

from __future__ import annotations

import json

import pytest

from polykws.core import PolykwsError
from polykws.datasets.frontend import micro_frontend
from polykws.export.streaming import DetectorConfig
from polykws.firmware.sdk import sdk_from_pack


def _pack(tmp_path, frontend: dict, languages: dict) -> object:
    (tmp_path / "flash.bin").write_bytes(b"\0" * 16)
    manifest = {"flash_image": {"file": "flash.bin"}, "frontend": frontend, "base": {"lang": "en", "labels": ["a"]},
                "languages": languages}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_a_missing_manifest_is_named(tmp_path):
    with pytest.raises(PolykwsError, match=r"manifest\.json: not a readable pack manifest"):
        sdk_from_pack(tmp_path, tmp_path / "sdk", "mps2-an386", "cmsis-nn", None, DetectorConfig(), None, None)


def test_a_pack_without_the_micro_frontend_is_refused(tmp_path):
    fe = micro_frontend().to_dict() | {"kind": "mfcc"}
    pack = _pack(tmp_path, fe, {"lt": {}})
    with pytest.raises(PolykwsError, match="micro frontend on the device; this pack's is 'mfcc'"):
        sdk_from_pack(pack, tmp_path / "sdk", "mps2-an386", "cmsis-nn", None, DetectorConfig(), None, None)


def test_the_default_language_must_carry_thresholds(tmp_path):
    pack = _pack(tmp_path, micro_frontend().to_dict(), {"lt": {}})
    with pytest.raises(PolykwsError, match=r"blob languages \['lt'\], got 'en'"):
        sdk_from_pack(pack, tmp_path / "sdk", "mps2-an386", "cmsis-nn", "en", DetectorConfig(), None, None)

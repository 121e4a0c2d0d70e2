"""Where the TFLM build finds its third-party checkouts, and the error when it cannot."""

from __future__ import annotations

import pytest

from polykws.firmware.build import TFLM_DOWNLOADS, ThirdParty
from polykws.core import PolykwsError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def test_explicit_paths_and_tflm_download_fallback(tmp_path):
    tflm = tmp_path / "tflite-micro"
    _touch(tflm / "tensorflow/lite/micro/micro_interpreter.h")
    dl = tflm / TFLM_DOWNLOADS
    _touch(dl / "cmsis_nn/Include/arm_nnfunctions.h")
    _touch(dl / "flatbuffers/include/flatbuffers/flatbuffers.h")
    _touch(dl / "gemmlowp/fixedpoint/fixedpoint.h")
    tp = ThirdParty.from_env("cmsis-nn", {"TFLM_DIR": str(tflm)})
    assert tp.cmsis_nn_dir == (dl / "cmsis_nn").resolve() and tp.gemmlowp_dir == (dl / "gemmlowp").resolve()
    own = tmp_path / "my-cmsis"
    _touch(own / "Include/arm_nnfunctions.h")
    tp = ThirdParty.from_env("cmsis-nn", {"TFLM_DIR": str(tflm), "CMSIS_NN_DIR": str(own)})
    assert tp.cmsis_nn_dir == own.resolve()
    assert f"CMSIS_NN_DIR={own.resolve()}" in tp.make_vars()
    # The reference build does not need CMSIS-NN at all.
    (dl / "cmsis_nn/Include/arm_nnfunctions.h").unlink()
    assert ThirdParty.from_env("reference", {"TFLM_DIR": str(tflm)}).cmsis_nn_dir is None


def test_missing_checkouts_are_named(tmp_path):
    with pytest.raises(PolykwsError, match=r"TFLM_DIR \(unset\).*GEMMLOWP_DIR \(unset\).*README"):
        ThirdParty.from_env("cmsis-nn", {})
    with pytest.raises(PolykwsError, match=r"TFLM_DIR=.*no tensorflow/lite/micro/micro_interpreter.h"):
        ThirdParty.from_env("reference", {"TFLM_DIR": str(tmp_path), "FLATBUFFERS_DIR": str(tmp_path), "GEMMLOWP_DIR": str(tmp_path)})

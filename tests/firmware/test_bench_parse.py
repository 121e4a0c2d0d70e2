"""Parsing the firmware's report and comparing it with the host runtime: each check must be able to fail."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from polykws.firmware.bench import HostLang, compare_with_host, parse_app_output
from polykws.core import PolykwsError

GOOD = """\
PKW_BEGIN board=mps2-an386 kernels=cmsis-nn unit=instructions units_per_tick_milli=40000 model_bytes=45584 arena_bytes=27648 image_bytes=47936 classes=12 input_bytes=490
PKW_IMAGE languages=2 verify_ticks=115480
PKW_LANG lang=en source=base labels=12 select_ticks=19466 arena_used=22692
PKW_DEMO lang=en label=yes score=127 expected=2
PKW_LANG lang=lt source=blob labels=10 select_ticks=84920 arena_used=22692
PKW_LANG lang=en source=base labels=12 select_ticks=19471 arena_used=22692
PKW_BENCH lang=en n=3 correct=2 ticks_total=651102 ticks_min=217034 ticks_max=217035 scores_crc={crc} preds=020105
PKW_END status=ok
"""


def _host(preds, truth, outputs):
    return HostLang("en", outputs, np.array(preds), np.array(truth), 12)


def test_parse_and_agree():
    outputs = np.arange(36, dtype=np.int8).reshape(3, 12)
    crc = zlib.crc32(outputs.tobytes()) & 0xFFFFFFFF
    rep = parse_app_output(GOOD.format(crc=f"{crc:08x}"))
    assert rep.bench["en"].predictions == (2, 1, 5)
    assert rep.per_inference("en") == pytest.approx(651102 * 40 / 3)
    assert rep.select_units("en") == 19471 * 40
    assert [s.source for s in rep.switches] == ["base", "blob", "base"]
    assert compare_with_host(rep, {"en": _host([2, 1, 5], [2, 1, 0], outputs)}) == []


def test_disagreements_are_reported():
    outputs = np.arange(36, dtype=np.int8).reshape(3, 12)
    crc = zlib.crc32(outputs.tobytes()) & 0xFFFFFFFF
    rep = parse_app_output(GOOD.format(crc=f"{crc:08x}"))
    other = outputs.copy()
    other[1, 4] += 1
    problems = compare_with_host(rep, {"en": _host([2, 3, 5], [2, 1, 0], other)})
    assert any("1 predictions differ" in p for p in problems)
    assert any("int8 outputs differ" in p for p in problems)
    assert any("firmware counts 2 correct, host 1" in p for p in problems)
    assert compare_with_host(rep, {"uk": _host([0], [0], outputs[:1])}) == ["uk: no PKW_BENCH line from the firmware"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("PKW_BEGIN board=x\nPKW_ERROR stage=select status=blob_invalid image_error=ok blob_error=base_mismatch\nPKW_END status=error\n", "blob_error=base_mismatch"),
        ("PKW_BEGIN board=x\nPKW_FAULT\n", "PKW_FAULT"),
        ("PKW_BEGIN board=x\n", "no PKW_END"),
        ("", "no PKW_END"),
    ],
)
def test_failed_runs_raise(text, match):
    with pytest.raises(PolykwsError, match=match):
        parse_app_output(text)

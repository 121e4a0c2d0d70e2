"""firmware/lib/blob.c against the Python reference (polykws.export.blob), on the host and under QEMU.

Vectors come from the real Python encoder/decoder: good blobs, one targeted vector per error
name, seeded random mutations and flash images. Every result line, every parsed label and every
patched model must be identical between C and Python.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pytest

from polykws.export.blob import ERROR_CODES
from polykws.firmware import build as fw_build
from polykws.firmware.boards import FIRMWARE_DIR, list_boards
from polykws.firmware.qemu import run_elf
from polykws.firmware.vectors import COMMAND_FILE, check_runner_output, write_vectors

QEMU_BOARDS = [b.name for b in list_boards() if b.qemu_machine]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkwb_vectors")
    return root, write_vectors(root)


def _fresh_copy(src: Path, dst: Path) -> Path:
    """Each runner gets its own copy, so one runner's output files can never satisfy another's check."""
    shutil.copytree(src, dst)
    return dst


def _first_failure(e) -> str:
    if e.kind == "image" and e.code == "ok":
        return next((c for _, c, _, _ in e.blobs if c != "ok"), "ok")
    return e.code


def test_vectors_cover_every_error_name(vectors):
    _, expect = vectors
    intended = {}
    for e in expect:
        if e.intended:
            assert _first_failure(e) == e.intended, f"{e.name}: Python says {_first_failure(e)}"
            intended.setdefault(e.intended, []).append(e.name)
    assert set(intended) == set(ERROR_CODES), f"no targeted vector for {set(ERROR_CODES) - set(intended)}"
    kinds = {e.kind for e in expect}
    assert kinds == {"sha", "crc", "apply", "image", "switch"}
    assert sum(e.kind == "apply" and e.code == "ok" for e in expect) >= 14
    assert sum(e.name.startswith("mutation_") for e in expect) >= 200


def test_a_refused_switch_leaves_no_language(vectors):
    """The vectors themselves must hold the case: a switch refused after a good one, whose
    expected state is no active language and no labels (the C runner is then held to it)."""
    _, expect = vectors
    sw = next(e for e in expect if e.name == "switch_refused_keeps_nothing")
    codes = [(lang, code, active, labels, thresholds) for lang, code, active, labels, thresholds, _, _ in sw.switches]
    assert codes[0][1] == "ok" and codes[0][3]
    assert codes[1] == ("uk", "target_mismatch", "-", "", "")
    assert codes[2][1] == "ok" and codes[3] == ("uk", "target_mismatch", "-", "", "")


def test_switching_language_switches_thresholds(vectors):
    """The vectors hold languages with different thresholds (and one with none), so the C runner,
    which prints the active language's thresholds after every switch, is held to each."""
    _, expect = vectors
    sw = next(e for e in expect if e.name == "switch_good")
    got = {lang: thresholds for lang, code, _, _, thresholds, _, _ in sw.switches if code == "ok"}
    assert got == {"en": "", "uk": "0a14ff", "base": "", "lt": "c864ff"}


def test_c_error_names_match_python():
    """pkwb_status and the names pkwb_error_name() returns are the doc's names, in the doc's order
    (both generated into blob_format.h from polykws.core.blobformat)."""
    header = (FIRMWARE_DIR / "lib" / "blob_format.h").read_text()
    enum = re.findall(r"PKWB_(OK|ERR_[A-Z_]+) = (\d+),?", header)
    names = re.findall(r'"([a-z_]+)"', re.search(r"#define PKWB_ERROR_NAMES (.*?)  /\*", header).group(1))
    assert names[0] == "ok"
    doc_errors = tuple(n for n in names[1:] if n != "bad_argument")  # bad_argument: C-only caller misuse
    assert doc_errors == ERROR_CODES
    assert [int(v) for _, v in enum] == list(range(len(enum)))
    assert [e.lower().removeprefix("err_") for e, _ in enum if e != "ERR_COUNT_"] == names
    assert "kErrorNames[PKWB_ERR_COUNT_] = {PKWB_ERROR_NAMES};" in (FIRMWARE_DIR / "lib" / "blob.c").read_text()
    doc = (FIRMWARE_DIR.parent / "docs" / "BLOB_FORMAT.md").read_text()
    for code in ERROR_CODES:
        assert f"`{code}`" in doc


def test_checker_catches_disagreement(vectors, tmp_path):
    """The comparison must be able to fail: a changed error name or patched byte is reported."""
    root, expect = vectors
    d = _fresh_copy(root, tmp_path / "v")
    ok = next(e for e in expect if e.kind == "apply" and e.code == "ok")
    bad = next(e for e in expect if e.kind == "apply" and e.code == "bad_crc")
    lines = []
    for e in expect:
        if e is ok:
            (d / e.output).write_bytes(e.expected_bytes[:-1] + bytes([e.expected_bytes[-1] ^ 1]))
            lines.append(f"R {e.index} ok lang={e.lang} labels=" + ",".join(x.encode().hex() for x in e.labels)
                         + f" thresholds={e.thresholds} stream={e.stream_size}")
        elif e is bad:
            lines.append(f"R {e.index} bad_size")
        else:
            lines.append(f"R {e.index} {e.code}")
    lines.append(f"DONE {len(expect)} 0")
    problems = check_runner_output(expect, "\n".join(lines), d)
    assert any(ok.name in p and "differs" in p for p in problems)
    assert any(bad.name in p and "C says bad_size, Python says bad_crc" in p for p in problems)
    assert check_runner_output(expect, "", d)[0].startswith("runner did not finish")


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="host gcc/make not installed")
def test_host_blob_c_matches_python(vectors, tmp_path):
    root, expect = vectors
    sanitize = fw_build.host_sanitizers_available()
    if not sanitize:
        warnings.warn("gcc here cannot link ASan/UBSan; host blob runner built without sanitizers")
    runner = fw_build.build_host_blob_runner(tmp_path / "build", sanitize=sanitize)
    d = _fresh_copy(root, tmp_path / "v")
    import subprocess

    proc = subprocess.run([str(runner), COMMAND_FILE], cwd=d, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert check_runner_output(expect, proc.stdout, d) == []


@pytest.mark.qemu
@pytest.mark.parametrize("board", QEMU_BOARDS)
def test_cortex_m_blob_c_matches_python(board, vectors, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed (.ci/run installs them from Debian)")
    root, expect = vectors
    elf = fw_build.build_blob_runner(board, tmp_path / "build")
    d = _fresh_copy(root, tmp_path / "v")
    run = run_elf(elf, board, cwd=d, timeout_s=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert check_runner_output(expect, run.stdout, d) == []

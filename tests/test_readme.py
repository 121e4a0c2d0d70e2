"""Every command block of README.md, checked as written, so the README stays true.

Each ```sh block is found under its section heading, split into commands (shlex, comments
dropped, `<placeholder>` arguments replaced by a path) and checked by what the command is:

- `polykws ...`: parsed by the real CLI parser (a misspelled command, flag or choice fails), and
  every `--config` file must exist. The commands in RUN are also run for real; the rest are too
  heavy for the default run, and SECTIONS says per block why and which test runs them instead.
- `polykws run --config X`: also run with `--plan` (stage graph and config validation, nothing
  trained) into a temporary store, unless its data cannot exist here (SECTIONS says so).
- `make T`: `make -n T` (the target exists; nothing is built) and, for `demo`, its `polykws run`
  with `--plan`.
- `git clone`, `export`: `bash -n` syntax only (they need the network and checkouts outside the repo).

A block under a heading missing from SECTIONS, or a command of another kind, fails the test: a new
README command needs a stated check.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from polykws.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Per block (by section heading): what the default run does with it and why not more.
SECTIONS = {
    "polykws": "make demo / make test: `make -n` only (they install the venv); demo's `polykws run` runs with --plan",
    "Real data and the shipped base": "parsed only: train base takes ~14 min and shared-real needs ../shared and that base "
                                      "(tests/pipeline/test_add_language.py uses ../shared, marked shared)",
    "Your own language": "base info runs for real; add-language is parsed here and run end to end by "
                         "tests/pipeline/test_userdata.py::test_add_language_on_a_synthesized_folder_appends_to_a_pack; "
                         "firmware build is parsed only (needs the TFLM checkouts, tests marked tflm)",
    "Embed polykws in your firmware": "firmware sdk: parsed only; cmake: the source folder and the toolchain file exist "
                                      "here; both are run for real by tests/firmware/test_sdk_example.py (needs TFLM, "
                                      "marked tflm)",
    "Firmware (TFLite Micro)": "git clone / export: bash -n only (network, checkouts outside the repo); make demo: make -n "
                               "+ --plan; polykws run --write-vectors: parsed + --plan here, the vectors themselves are written "
                               "by tests/pipeline/test_pipeline.py::test_full_pipeline_with_export_through_workers (slow); "
                               "firmware bench: parsed only (needs TFLM)",
}
# Commands cheap enough to run for real in the default suite.
RUN = {("base", "info")}
# `polykws run` configs whose data or base cannot exist on a fresh clone.
NO_PLAN = {"configs/shared-real.yaml": "needs ../shared recordings and the base that `polykws train base` writes",
           "configs/shared-real-micro.yaml": "needs ../shared recordings and the base that `polykws train base` writes"}


PLACEHOLDER = "__README_PLACEHOLDER__"


def readme_blocks(text: str) -> list[tuple[str, list[list[str]]]]:
    """(section heading, [argv per command]) for every ```sh block."""
    blocks, section = [], None
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.strip() == "```sh":
            cmds = []
            for body in lines:
                if body.strip() == "```":
                    break
                argv = shlex.split(re.sub(r"<[^<>]+>", PLACEHOLDER, body), comments=True)
                if argv:
                    cmds.append(argv)
            blocks.append((section, cmds))
    return blocks


def _fill(argv: list[str], tmp_path: Path) -> list[str]:
    return [str(tmp_path / "placeholder") if a == PLACEHOLDER else a for a in argv]


def _split_and(argv: list[str]) -> list[list[str]]:
    out, cur = [], []
    for a in argv:
        if a == "&&":
            out.append(cur)
            cur = []
        else:
            cur.append(a)
    return out + [cur]


def _parse(argv: list[str]):
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"README command `polykws {' '.join(argv)}` does not parse (exit {exc.code})") from None


def _plan(config: str, extra: list[str], tmp_path: Path, capsys) -> None:
    if config in NO_PLAN:
        return
    rc = main(["run", "--config", config, *extra, "--plan", "--artifacts", str(tmp_path / "store"), "--output", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0 and "report" in out, f"polykws run --config {config} --plan: rc {rc}\n{out}"


def _check_polykws(argv: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    args = _parse(argv)
    if getattr(args, "config", None):
        assert (ROOT / args.config).is_file(), f"README command `polykws {' '.join(argv)}`: {args.config} does not exist"
    if tuple(argv) in RUN:
        monkeypatch.chdir(tmp_path)
        rc = main(argv)
        monkeypatch.chdir(ROOT)
        assert rc == 0, f"polykws {' '.join(argv)}: rc {rc}"
        assert capsys.readouterr().out.strip(), f"polykws {' '.join(argv)} printed nothing"
    elif argv[0] == "run":
        extra, rest = [], iter(argv[1:])
        for a in rest:
            if a in ("--config", "--write-vectors"):  # --plan writes no vectors; the config is passed on its own
                next(rest)
            else:
                extra.append(a)
        _plan(args.config, extra, tmp_path, capsys)


def _make_command(target: str) -> list[str]:
    """The `$(BIN)/polykws ...` line a Makefile target runs, as argv after `polykws`."""
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True)
    assert dry.returncode == 0, f"README `make {target}`: make -n fails:\n{dry.stderr}"
    return [shlex.split(line)[1:] for line in dry.stdout.splitlines() if re.match(r"\S*/polykws\s", line)]


def test_every_readme_block_has_a_stated_check():
    blocks = readme_blocks(README.read_text())
    assert blocks, "README.md has no ```sh blocks"
    for section, cmds in blocks:
        assert section in SECTIONS, f"README block under '{section}' has no entry in SECTIONS (say how it is checked)"
        assert cmds, f"README block under '{section}' is empty"
    assert set(SECTIONS) == {s for s, _ in blocks}, "SECTIONS names a README section that has no block any more"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_readme_commands_work_as_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    checked = 0
    for section, cmds in readme_blocks(README.read_text()):
        for line in cmds:
            for argv in _split_and(_fill(line, tmp_path)):
                where = f"README ({section}): `{' '.join(argv)}`"
                if argv[0] == "polykws":
                    _check_polykws(argv[1:], tmp_path, capsys, monkeypatch)
                elif argv[0] == "make":
                    assert len(argv) == 2, where
                    for cmd in _make_command(argv[1]):
                        assert cmd[0] == "run", f"{where}: make runs an unexpected polykws command {cmd}"
                        _parse(cmd)
                        _plan(cmd[cmd.index("--config") + 1], [], tmp_path, capsys)
                elif argv[0] in ("git", "export"):
                    r = subprocess.run(["bash", "-n", "-c", shlex.join(argv)], capture_output=True, text=True)
                    assert r.returncode == 0, f"{where}: {r.stderr}"
                    if argv[0] == "git":
                        assert argv[1] in ("clone", "-C"), where
                elif argv[0] == "cmake":
                    # The configure step names the example and the toolchain file; the build step names the build folder.
                    paths = [argv[argv.index("-S") + 1]] if "-S" in argv else []
                    paths += [a.split("=", 1)[1].replace("$PWD/", "") for a in argv if a.startswith("-DCMAKE_TOOLCHAIN_FILE=")]
                    assert paths or argv[1] == "--build", where
                    for path in paths:
                        assert (ROOT / path).exists(), f"{where}: {path} does not exist"
                else:
                    pytest.fail(f"{where}: no check for this kind of command; add one to tests/test_readme.py")
                checked += 1
    assert checked >= 10, checked

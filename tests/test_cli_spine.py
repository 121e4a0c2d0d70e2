"""The one CLI package: every command group registers, and a module that cannot be imported fails the CLI."""

from __future__ import annotations

import pytest

import polykws.cli as cli


def test_every_command_group_is_registered(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "train", "eval", "adapt", "export", "pack", "apply", "firmware", "run"):
        assert f"    {command} " in out, command


@pytest.mark.parametrize("body, missing", [("import polykws_no_such_dependency\n", "polykws_no_such_dependency"), (None, "polykws_cli_gone")])
def test_a_command_module_that_cannot_be_imported_fails_loudly(tmp_path, monkeypatch, body, missing):
    # Neither a broken import inside a command module nor a missing module is silently left out.
    if body is not None:
        (tmp_path / "polykws_cli_broken.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "polykws_cli_broken" if body is not None else "polykws_cli_gone"
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, name))
    with pytest.raises(ModuleNotFoundError, match=missing):
        cli.build_parser()


def test_only_the_cli_package_parses_flags():
    from polykws.core import repo_root

    folders = ("datasets", "training", "export", "firmware", "polykws/pipeline", "polykws/core")
    parsers = [p.relative_to(repo_root()).as_posix() for folder in folders for p in sorted((repo_root() / folder).rglob("*.py"))
               if "import argparse" in p.read_text() or "add_parser(" in p.read_text()]
    assert not parsers, f"flag parsing belongs in polykws/cli/: {parsers}"


def test_a_set_value_that_is_not_yaml_is_a_clear_error(capsys):
    # `--set data.root=@corpus` is not YAML ('@' cannot start a token): a ConfigError naming the
    # key and how to quote it, not a parser traceback.
    from polykws.core import ConfigError
    from polykws.core.config import parse_set_overrides

    with pytest.raises(ConfigError, match=r"--set data\.root: the value '@corpus' is not valid YAML .*data\.root='\"@corpus\"'"):
        parse_set_overrides(["data.root=@corpus"])
    assert parse_set_overrides(['data.root="@corpus"', "adapt.seeds=[0, 1]"]) == {"data.root": "@corpus", "adapt.seeds": [0, 1]}

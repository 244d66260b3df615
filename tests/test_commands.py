"""The commands package (issue 17): one module per command, named after it; `--help` of every
command shows its defaults and an example; argparse errors and bad overrides are one line
printed by cli.main only; the same option names mean the same thing everywhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lightning_gans import cli

PACKAGE = Path(cli.__file__).resolve().parent


def test_every_command_lives_in_commands_named_after_it():
    import importlib

    for name in cli.COMMANDS:
        assert (PACKAGE / "commands" / f"{name.replace('-', '_')}.py").is_file(), name
        assert callable(importlib.import_module(cli.command_module(name)).main), name
    files = {p.stem for p in (PACKAGE / "commands").glob("*.py") if not p.stem.startswith("_")}
    assert files == {n.replace("-", "_") for n in cli.COMMANDS}, "a commands/ module that is no command"


def _calls(tree: ast.AST, name: str) -> list[int]:
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]


def test_only_commands_parse_arguments_and_only_cli_prints_errors():
    """argparse lives in commands/ only; `print(f"error: ...")` appears in cli.py only."""
    argparse_users, printers = [], []
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).as_posix()
        src = p.read_text()
        tree = ast.parse(src)
        if not rel.startswith("commands/") and _calls(tree, "ArgumentParser"):
            argparse_users.append(rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" and node.args:
                text = ast.unparse(node.args[0])
                if re.match(r"^f?['\"]error:", text) and rel != "cli.py":
                    printers.append(f"{rel}:{node.lineno}")
    assert not argparse_users, f"argument parsing outside lightning_gans/commands/: {argparse_users}"
    assert not printers, f"errors printed outside cli.main: {printers}"


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_help_shows_defaults_and_an_example(name, capsys):
    if name == "train":  # Hydra's own --help (config groups); checked in test_cli
        pytest.skip("Hydra app help")
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"lightning-gans {name}" in out.split("example:", 1)[1]
    if name in ("evaluate", "finetune"):  # Hydra confs: every key with its default
        return
    if name == "summary":
        return
    # argparse commands: every option whose default is not None/False shows it
    from lightning_gans.commands import _args

    seen = {}

    class Probe(Exception):
        pass

    def fake_parse(p, argv):
        seen["parser"] = p
        raise Probe

    mp = pytest.MonkeyPatch()
    mp.setattr(_args, "parse", fake_parse)
    try:
        with pytest.raises(Probe):
            cli.main([name, "--help-probe"])
    finally:
        mp.undo()
    for action in seen["parser"]._actions:
        if action.option_strings and action.default not in (None, False, "==SUPPRESS==") and action.help:
            assert f"(default: {action.default})" in re.sub(r"\s+", " ", out), (name, action.dest)


def test_argparse_error_is_one_line(capsys):
    assert cli.main(["shards"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: lightning-gans shards: the following arguments are "
                                               "required") and "--help" in err[0]


def test_same_names_for_the_same_thing(capsys):
    """--network takes G_ema|G and --labels-from-subfolders names subfolder labels in every command."""
    for name in cli.COMMANDS:
        if name == "train":
            continue
        cli.main([name, "--help"])
        out = capsys.readouterr().out
        if "--network" in out:
            assert re.search(r"--network \{G_ema,G\}", out), name
        assert "--domains-from-subfolders" not in out and "ema|trained" not in out, name

"""Every command's --help says what the command does and what each argument is."""

from __future__ import annotations

import argparse

import pytest

from medcompute.client.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(build_parser()))


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "medcompute")
def test_each_command_describes_itself_and_every_argument(path):
    parser = COMMANDS[path]
    assert parser.description, f"{' '.join(path)}: no description"
    undocumented = [a.dest for a in parser._actions
                    if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert undocumented == [], f"{' '.join(path)}: arguments without help: {undocumented}"


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=" ".join)
def test_help_prints_the_usage_and_the_description(path, capsys):
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: medcompute {' '.join(path)}")
    assert COMMANDS[path].description.split()[0] in out

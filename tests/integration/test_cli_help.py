"""Every command documents itself: help text and an "Example:" block, like sqlite-utils."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import tracker.errors
from tests.cli_support import run_process
from tracker.cli import cli


def _walk(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(_walk(cli))


def test_the_expected_commands_exist():
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in [
        "status",
        "requeue",
        "reset",
        "keys",
        "sources",
        "demo",
        "db upgrade",
        "db current",
    ]:
        assert expected in names


@pytest.mark.parametrize(
    "path,command", COMMANDS, ids=[" ".join(p) or "tracker" for p, _ in COMMANDS]
)
def test_every_command_has_help_with_an_example(path, command):
    assert command.help and command.help.strip(), f"`tracker {' '.join(path)}` has no help"
    assert "Example:" in command.help, f"`tracker {' '.join(path)}` has no Example: block"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"`tracker {' '.join(path)}` option {param.opts} has no help"


def test_version_and_module_entry_point():
    result = run_process(None, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("tracker, version ")


def test_an_unexpected_failure_is_still_one_line_and_exit_1(monkeypatch, tmp_path):
    """A failure nobody foresaw (here: a bug planted in the store) gives one line on
    stderr and exit code 1, never a traceback."""
    from click.testing import CliRunner

    from tracker.cli import cli
    from tracker.store import Store

    def planted_bug(self, *args, **kwargs):
        raise ZeroDivisionError("planted")

    Store.open(f"sqlite:///{tmp_path / 's.db'}").close()  # `sources` creates no DB
    monkeypatch.setattr(Store, "sources", planted_bug)
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 's.db'}", "sources"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: unexpected ZeroDivisionError: planted (run with -vv for the traceback)"
    )


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _defined_exit_codes() -> set[int]:
    """0, and the exit code of every error class in `tracker.errors`."""
    classes = [
        value
        for value in vars(tracker.errors).values()
        if isinstance(value, type) and issubclass(value, tracker.errors.TrackerError)
    ]
    return {0} | {error.exit_code for error in classes}


def _listed_codes(sentence: str) -> set[int]:
    """The codes of "0 ok, 1 failure, 2 bad usage, ...": a number opening each item."""
    return {int(code) for code in re.findall(r"(?:^|,)\s*`?(\d+)`?\s", sentence)}


def test_the_helps_exit_codes_are_the_codes_tracker_errors_defines():
    """Issue 20, item 11: `tracker --help` lists every exit code, 7 included.
    Seen failing on the help without 7 (and with TargetNotEmpty's 6 outside errors.py)."""
    assert {6, 7} <= _defined_exit_codes()
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    listed = text.split("Exit codes:", 1)[1].split(".", 1)[0]
    assert _listed_codes(listed) == _defined_exit_codes()


def test_the_docs_exit_codes_are_the_codes_tracker_errors_defines():
    """The "Exit codes" table of the docs' command-line page, and the codes the "What
    happens when..." page opens with, are the same set. Seen failing on the README (where
    both lived before the docs site) that left 7 out there."""
    cli_page = (DOCS / "cli.md").read_text()
    table = cli_page.split("## Exit codes\n", 1)[1].split("\n\n", 1)[0]
    rows = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    assert rows == _defined_exit_codes()
    section = (DOCS / "what-happens.md").read_text()
    opening = " ".join(section.split("Exit codes:", 1)[1].split(".", 1)[0].split())
    assert _listed_codes(opening) == _defined_exit_codes()

"""Fast start: a command imports only what it needs (issue 12, part 4).

These check which modules a real process imported, never how long it took: wall-clock
figures are `python -m bench --only startup`'s job.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click
import pytest

from tests.cli_support import listed
from tracker.cli import COMMANDS, cli
from tracker.store import Store

HEAVY = {"sqlalchemy", "alembic", "boto3", "botocore", "rich", "pyarrow"}

_PROBE = """
import json, sys
from tracker.cli import main
watched = set(json.loads(sys.argv[2]))
sys.argv = ["tracker", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
print("\\nIMPORTED " + json.dumps(heavy), file=sys.stderr)
"""


def imported_by(*args: str) -> set[str]:
    """The heavy top-level packages that `tracker ARGS...` imported, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(sorted(HEAVY))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = result.stderr.rstrip().rsplit("\n", 1)[-1]
    assert line.startswith("IMPORTED "), result.stderr
    return set(json.loads(line.removeprefix("IMPORTED ")))


@pytest.fixture
def small_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Store.open(url) as store:
        source = store.source("bucket", "images/", create=True)
        page = listed([f"images/{i:03d}.jpg" for i in range(20)])
        store.record_page(source, page, next_token=None, last_key=page[-1].key, exhausted=True)
        store.dataset(source, "ds", create=True)
    return url


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_import_no_database_s3_or_terminal_library(args):
    assert imported_by(*args) == set()


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["keys"], ["keys", "--format", "jsonl"]]
)
def test_status_and_keys_import_neither_boto3_nor_alembic(small_db, args):
    imported = imported_by("--db", small_db, *args)
    assert "sqlalchemy" in imported  # the probe did reach the DB
    assert not imported & {"boto3", "botocore", "alembic"}


def test_a_db_below_head_is_still_upgraded_on_open(tmp_path):
    """The fast "already at head?" test must not hide an old schema from Alembic."""
    from alembic import command

    from tracker.db import _plain_head, alembic_config, head_revision

    assert _plain_head() == head_revision()
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0005")
    Store.open(url).close()
    with Store.open(url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            head_revision()
        )
        conn.exec_driver_sql("SELECT count(*) FROM inventory_ingests")


def test_the_lazy_command_table_names_every_command_with_its_real_short_help():
    """`tracker --help` lists commands from `COMMANDS` without importing them: the table
    must match the commands their modules define, at every width click may shorten to."""
    for name, (module, short_help) in COMMANDS.items():
        importlib.import_module(module)
        command = cli.get_command(click.Context(cli), name)
        assert command is not None, f"{module} does not define `tracker {name}`"
        assert not command.hidden
        for limit in range(20, 200):
            stand_in = click.Command(name, help=short_help)
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), (
                f"COMMANDS[{name!r}] differs from the command's help"
            )
    assert set(cli.commands) == set(COMMANDS), "a command module defines a command not listed"


def test_help_lists_the_same_commands_before_and_after_they_are_imported():
    code = (
        "import io, contextlib, importlib\n"
        "from click.testing import CliRunner\n"
        "from tracker.cli import cli, COMMANDS\n"
        "before = CliRunner().invoke(cli, ['--help']).output\n"
        "[importlib.import_module(m) for m, _ in COMMANDS.values()]\n"
        "after = CliRunner().invoke(cli, ['--help']).output\n"
        "assert before == after, (before, after)\n"
        "assert 'Commands:' in before\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

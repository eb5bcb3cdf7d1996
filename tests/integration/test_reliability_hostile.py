"""Hostile or odd input, command by command: one clear line on stderr, the documented exit
code (2 usage, 3 S3, 4 state DB, 5 unknown source), no traceback, and the state DB exactly
as it was (compared byte for byte, or row for row on PostgreSQL).

S3-side failures of `tracker sync` (unknown bucket, access denied, bad credentials,
unreachable endpoint, bad s3:// URL) are in tests/integration/test_sync_cli.py; the store-level DB
errors in tests/integration/test_migrations.py. This file runs every command against them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.cli_support import build_state, run_cli
from tracker.records import AnswerRecord
from tracker.store import Store

COMMANDS = {
    "sync": ["sync", "s3://photos"],
    "status": ["status"],
    "keys": ["keys", "--format", "jsonl"],
    "requeue": ["requeue", "--all", "--yes"],  # a bare requeue is refused before the DB
    "reset": ["reset", "--all", "--yes"],
    "sources": ["sources"],
    "db-current": ["db", "current"],
    "db-upgrade": ["db", "upgrade"],
}
WRITERS = {"sync", "requeue", "reset", "db-upgrade"}


def assert_one_error_line(err: str, starts: str) -> None:
    """One error line (warnings before it allowed), and no traceback."""
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(starts), lines[0]
    assert "Traceback" not in err


def dump(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: sorted(repr(tuple(r)) for r in conn.execute(text(f"SELECT * FROM {t}")))
                for t in (
                    "sources",
                    "listing_cursors",
                    "objects",
                    "datasets",
                    "owners",
                    "items",
                    "alembic_version",
                )
            }
    finally:
        engine.dispose()


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))}


# -- bad database URLs --------------------------------------------------------------------

BAD_URLS = {
    "unknown-scheme": ("nonsense://", "error: unsupported database URL nonsense://"),
    "not-a-url": ("not a url at all", "error: not a valid database URL"),
    "unknown-pg-host": ("postgresql://nohost.invalid:1/x", "error: state DB postgresql"),
    "refused-pg-with-password": (
        "postgresql://u:hunter2@127.0.0.1:1/x?connect_timeout=3",
        "error: state DB postgresql+psycopg://u:***@127.0.0.1:1/x",
    ),
    "sqlite-dir-missing-parent-file": ("sqlite:////dev/null/state.db", "error: cannot create"),
}
#: Commands that create a missing state DB; the others (issue 10) name the missing file
#: instead of creating one.
CREATORS = {"sync", "db-upgrade"}
MISSING_FILE = "error: the state DB /dev/null/state.db does not exist"


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
@pytest.mark.parametrize("bad", BAD_URLS, ids=list(BAD_URLS))
def test_bad_db_url_is_one_line_and_exit_4_for_every_command(capsys, command, bad):
    url, starts = BAD_URLS[bad]
    if bad == "sqlite-dir-missing-parent-file" and command not in CREATORS:
        starts = MISSING_FILE
    code, out, err = run_cli(capsys, "--db", url, *COMMANDS[command])
    assert code == 4, err
    assert_one_error_line(err, starts)
    assert "hunter2" not in out + err


def test_bad_db_url_as_a_real_process_and_from_the_environment(tmp_path):
    env = dict(os.environ, TRACKER_DB_URL="nonsense://")
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "status"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 4
    assert done.stderr.startswith("error: unsupported database URL nonsense://")
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""


# -- bad database files -------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_a_file_that_is_not_a_database_is_left_untouched(tmp_path, capsys, command):
    path = tmp_path / "state.db"
    path.write_bytes(b"my notes, not SQLite\n" * 300)
    before = files_of(path)
    code, _, err = run_cli(capsys, "--db", f"sqlite:///{path}", *COMMANDS[command])
    assert code == 4
    assert_one_error_line(err, f"error: state DB sqlite:///{path}: file is not a database")
    assert files_of(path) == before


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_a_schema_newer_than_the_code_is_refused_and_left_untouched(db_url, capsys, command):
    build_state(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    engine.dispose()
    before = dump(db_url)
    code, out, err = run_cli(capsys, "--db", db_url, *COMMANDS[command])
    if command == "db-current":  # the one command that only reports the revision
        assert code == 0 and "current:  ffff_from_the_future" in out and "head:" in out
    else:
        assert code == 4
        assert_one_error_line(err, "error: state DB")
        assert "ffff_from_the_future, newer than this tracker knows" in err
    assert dump(db_url) == before


def _can_drop_dac_override() -> bool:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return False
    probe = subprocess.run(
        [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "true"],
        capture_output=True,
    )
    return probe.returncode == 0


READ_ONLY_CASES = [(c, "writable-dir") for c in COMMANDS] + [
    ("status", "read-only-dir"),
    ("keys", "read-only-dir"),
    ("reset", "read-only-dir"),
]


@pytest.mark.skipif(
    os.geteuid() == 0 and not _can_drop_dac_override(),
    reason="running as root without setpriv: chmod cannot make a file read-only for us",
)
@pytest.mark.parametrize(("command", "directory"), READ_ONLY_CASES)
def test_a_read_only_db_file_serves_reads_and_refuses_writes(tmp_path, command, directory, request):
    """A state DB file (mode 0444) the user may not write: in a writable directory, read
    commands work and write commands fail with one line and exit 4; in a read-only
    directory SQLite cannot read a WAL database at all (it must create the -shm file), so
    every command fails the same way. The files are unchanged either way. Root ignores file
    modes, so as root the command runs without CAP_DAC_OVERRIDE (setpriv)."""
    path = tmp_path / "ro" / "state.db"
    build_state(f"sqlite:///{path}")
    path.chmod(0o444)
    if directory == "read-only-dir":
        path.parent.chmod(0o555)
    before = files_of(path)
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
    endpoint = []
    if command == "sync":  # a real bucket to list, so that the page's write is refused
        request.getfixturevalue("s3_env")
        server = request.getfixturevalue("moto_server")
        server.client().create_bucket(Bucket="photos")
        server.client().put_object(Bucket="photos", Key="new.jpg", Body=b"img")
        endpoint = ["--endpoint-url", server.endpoint_url]
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "tracker", "--db", f"sqlite:///{path}",
             *COMMANDS[command], *endpoint],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        path.parent.chmod(0o755)
    # `db upgrade` of a DB already at head only reads.
    if command in WRITERS - {"db-upgrade"} or directory == "read-only-dir":
        assert done.returncode == 4, done.stderr
        assert_one_error_line(done.stderr, "error: state DB")
        assert "attempt to write a readonly database" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
    after = files_of(path)
    assert after["state.db"] == before["state.db"]
    assert set(after) - {"state.db-wal", "state.db-shm"} == {"state.db"}


# -- odd keys, shown exactly --------------------------------------------------------------

NFC = unicodedata.normalize("NFC", "café/crème brûlée.jpg")
NFD = unicodedata.normalize("NFD", "café/crème brûlée.jpg")
TWINS = ["x.jpg", "x.jpg ", "x.jpg/", NFC, NFD, "[bold]x[/bold].jpg", "a%2Fb.jpg", "../up.jpg"]


def test_keys_differing_by_trailing_slash_or_normalisation_stay_distinct_end_to_end(
    moto_server, s3_env, sqlite_url, capsys
):
    """Proves, through sync (moto keeps AWS's key rules) and `keys --format jsonl` and
    `status --json`: NFC and NFD twins are two keys, each shown byte for byte; `x.jpg/`
    ends in a slash, so sync skips it as a folder placeholder (documented filter), while
    an answer for it (import-answers, a recipe) stores it as its own key beside `x.jpg`."""
    assert NFC != NFD and len({*TWINS}) == len(TWINS)
    client = moto_server.client()
    client.create_bucket(Bucket="twins")
    for key in TWINS:
        client.put_object(Bucket="twins", Key=key, Body=b"img")
    endpoint = ("--endpoint-url", moto_server.endpoint_url)
    code, _, err = run_cli(
        capsys, "--db", sqlite_url, "sync", "s3://twins", "--all-objects", "--page-size", "2",
        *endpoint,
    )  # fmt: skip
    assert code == 0, err
    with Store.open(sqlite_url) as store:
        dataset = store.dataset(store.source("twins"), "ds", create=True)
        store.record_answers(dataset, [AnswerRecord("x.jpg/", "accept")])

    code, out, err = run_cli(capsys, "--db", sqlite_url, "keys", "--format", "jsonl")
    assert code == 0, err
    shown = [json.loads(line)["key"] for line in out.splitlines()]
    listed = sorted((k for k in TWINS if not k.endswith("/")), key=lambda k: k.encode())
    assert shown == [*listed, "x.jpg/"]
    assert shown.count(NFC) == 1 and shown.count(NFD) == 1

    code, out, _ = run_cli(capsys, "--db", sqlite_url, "status", "--json")
    (source,) = json.loads(out)["sources"]
    assert source["listing"]["last_key"] == "x.jpg/"  # the last key listed, taken or not
    code, out, _ = run_cli(capsys, "--db", sqlite_url, "keys", "--match", NFD)
    assert out.splitlines() == [NFD]  # a glob on an NFD key does not match its NFC twin


# -- S3 answers that are not errors -------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "nothing-here/"], ids=["empty-bucket", "empty-prefix"])
def test_an_empty_bucket_or_a_prefix_that_matches_nothing(moto_server, s3_env, sqlite_url,
                                                         capsys, prefix):  # fmt: skip
    """Not an error: sync records an exhausted listing of 0 keys, status shows it, and a
    later object is found by the next sync with one LIST call."""
    client = moto_server.client()
    client.create_bucket(Bucket="emptyish")
    if prefix:
        client.put_object(Bucket="emptyish", Key="elsewhere/a.jpg", Body=b"img")
    uri = f"s3://emptyish/{prefix}"
    sync = ("--db", sqlite_url, "sync", uri, "--endpoint-url", moto_server.endpoint_url)
    code, out, err = run_cli(capsys, *sync)
    assert code == 0, err
    assert "1 page, 0 keys listed (0 new)" in out and "listing complete" in out
    code, out, _ = run_cli(capsys, "--db", sqlite_url, "status", uri, "--json")
    (status,) = json.loads(out)["sources"]
    assert status["listing"]["exhausted"] and status["total"] == 0
    client.put_object(Bucket="emptyish", Key=f"{prefix}late.jpg", Body=b"img")
    code, out, _ = run_cli(capsys, *sync)
    assert code == 0 and "1 page, 1 keys listed (1 new)" in out

"""Ctrl-C (SIGINT) in the middle of a big `tracker reset`: all or nothing.

A reset is one transaction, so an interrupt while its UPDATEs run leaves every key as it
was; the user sees one line and exit code 130. (Ctrl-C during `tracker sync` is covered by
tests/integration/test_sync_cli.py::test_ctrl_c_stops_after_the_page_in_flight_and_says_how_to_resume.)

The signal is sent as soon as the process logs (-vv) its first `UPDATE items`: mid-way
through the write, deterministically.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracker.records import ListedObject
from tracker.store import Store

# One xdist worker runs this module, so its 200,000-key state DB is built once.
pytestmark = pytest.mark.xdist_group("reliability_interrupt")

KEYS = 200_000


@pytest.fixture(scope="module")
def big_db(tmp_path_factory) -> Path:
    """A state DB with 200,000 annotated keys (built once, copied per test)."""
    path = tmp_path_factory.mktemp("big") / "state.db"
    keys = [f"k/{i:06d}.jpg" for i in range(KEYS)]
    with Store.open(f"sqlite:///{path}") as store:
        source = store.source("big-reset", create=True)
        store.record_page(
            source, [ListedObject(k, 1) for k in keys], next_token=None, last_key=keys[-1],
            exhausted=True,
        )  # fmt: skip
        dataset = store.dataset(source, "ds", create=True)
    conn = sqlite3.connect(path)
    with conn:
        # Every key annotated for the dataset: one items row per object, frontier at the end.
        conn.execute(
            "INSERT INTO items (dataset_id, object_id, state, answer, answer_count) "
            "SELECT ?, id, 'annotated', 'accept', 1 FROM objects",
            (dataset.id,),
        )
        conn.execute(
            "UPDATE datasets SET frontier = (SELECT max(id) FROM objects) WHERE id = ?",
            (dataset.id,),
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def state_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM items GROUP BY state").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize(
    "selection",
    [["--all"], ["--match", "k/*"]],
    ids=["one-statement", "400-chunked-statements"],
)
def test_sigint_during_a_200k_reset_changes_nothing(big_db, tmp_path, selection):
    path = tmp_path / "state.db"
    shutil.copy(big_db, path)
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker", "-vv", "--db", f"sqlite:///{path}", "reset",
         *selection, "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )  # fmt: skip
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        if "UPDATE items" in line:
            process.send_signal(signal.SIGINT)
            sent = time.monotonic()
            break
    else:
        pytest.fail("the reset never wrote:\n" + "".join(lines))
    out, rest = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    err_lines = [line for line in rest.splitlines() if line.startswith("error:")]
    assert process.returncode == 130, out + rest
    assert err_lines == ["error: interrupted; nothing was changed"]
    assert "Traceback" not in rest and "reset " not in out
    assert state_counts(path) == {"annotated": KEYS}  # rolled back as one transaction

    # and the same reset, not interrupted, then applies in full
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "--db", f"sqlite:///{path}", "reset", *selection,
         "--yes"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert state_counts(path) == {"pending": KEYS}

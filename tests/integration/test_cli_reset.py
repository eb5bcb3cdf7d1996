"""`tracker reset`: any state back to pending; the listing cursor; confirmation rules."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time

from tests.cli_support import build_state, run, run_process, states
from tracker.store import Store

#: What every reset that moved keys says on stderr: Prodigy, not the tracker, decides
#: whether a key already in its dataset reaches a browser again.
PRODIGY_NOTE = "note: Prodigy skips a task whose hash is already in its dataset"


def dataset_ref(store: Store):
    return store.dataset(store.source("photos"), "ds")


def test_reset_without_yes_and_no_terminal_fails_and_changes_nothing(db_url):
    build_state(db_url)
    before = states(db_url)
    result = run_process(db_url, "reset", "--state", "annotated")
    assert result.returncode == 2
    assert result.stderr.startswith("error: refusing to change the state DB without confirm")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert states(db_url) == before


def test_reset_listing_without_yes_and_no_terminal_keeps_the_cursor(sqlite_url):
    build_state(sqlite_url)
    assert run_process(sqlite_url, "reset", "--listing").returncode == 2
    with Store.open(sqlite_url) as store:
        assert store.cursor(store.source("photos")).continuation_token == "token-1"


def test_reset_by_state_and_answer(db_url):
    build_state(db_url)
    result = run(db_url, "reset", "--state", "annotated", "--answer", "ignore", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "reset 2 keys of ds on s3://photos to pending\n"
    assert result.stderr.startswith(PRODIGY_NOTE) and result.stderr.count("\n") == 1
    after = states(db_url)
    assert after["img/0004.jpg"] == after["img/0005.jpg"] == "pending"
    assert after["img/0003.jpg"] == "annotated"
    with Store.open(db_url) as store:
        ref = dataset_ref(store)
        row = next(r for r in store.iter_items(ref) if r.key == "img/0004.jpg")
        assert row.answer is None and row.session_id is None
        assert store.counts(ref).by_answer.get("ignore", 0) == 0


def test_a_reset_that_moves_nothing_says_no_more(db_url):
    build_state(db_url)
    result = run(db_url, "reset", "--state", "annotated", "--match", "nothing*", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "reset 0 keys of ds on s3://photos to pending\n"
    assert result.stderr == ""  # no key goes back to Prodigy: nothing to warn about


def test_reset_failed_and_served(db_url):
    build_state(db_url)
    run(db_url, "reset", "--state", "failed", "--state", "served", "-y")
    counts = json.loads(run(db_url, "status", "--json").stdout)["sources"][0]["states"]
    assert counts == {"pending": 20, "served": 0, "annotated": 6, "failed": 0}


def test_reset_needs_a_filter_or_all(db_url):
    build_state(db_url)
    result = run(db_url, "reset", "--yes")
    assert result.exit_code == 2
    assert "or pass --all" in result.stderr
    # The count is of keys moved: the 15 keys already pending are matched but not counted
    # (the store's `to_pending` changes only keys that were not pending).
    assert (
        run(db_url, "reset", "--all", "--yes").stdout
        == "reset 11 keys of ds on s3://photos to pending\n"
    )
    assert set(states(db_url).values()) == {"pending"}
    assert len(states(db_url)) == 26


def test_reset_dry_run_prints_keys_and_changes_nothing(db_url):
    build_state(db_url)
    before = states(db_url)
    result = run(db_url, "reset", "--match", "img/000[0-2].jpg", "--dry-run")
    assert result.stdout == "img/0000.jpg\nimg/0001.jpg\nimg/0002.jpg\n"
    assert "would reset 3 keys of ds on s3://photos" in result.stderr
    assert states(db_url) == before


def test_reset_keys_from_a_text_file(db_url, tmp_path):
    build_state(db_url)
    # Only keys that are not pending count as reset: put the odd keys the file names in
    # another state, so that the count proves each line (CRLF, blank, spaces, markup) matched.
    with Store.open(db_url) as store:
        for key in ("with space/a b.png", "[red]x[/red].jpg"):
            assert store.mark_failed(dataset_ref(store), key, "test")
    listing = tmp_path / "keys.txt"
    listing.write_text("img/0000.jpg\r\n\nwith space/a b.png\n[red]x[/red].jpg\nnot/listed.jpg")
    result = run(db_url, "reset", "--keys-from", str(listing), "--yes")
    assert result.stdout == "reset 3 keys of ds on s3://photos to pending\n"
    after = states(db_url)
    assert after["img/0000.jpg"] == after["with space/a b.png"] == "pending"
    assert after["[red]x[/red].jpg"] == "pending"
    assert "not/listed.jpg" not in after


def test_reset_keys_from_jsonl_is_exact_for_a_newline_key(db_url, tmp_path):
    build_state(db_url)
    run(db_url, "reset", "--match", "line*", "--yes")
    exported = run(db_url, "keys", "--state", "pending", "--match", "line*", "--format", "jsonl")
    assert json.loads(exported.stdout)["key"] == "line\nbreak.jpg"
    # Mark it failed, then reset exactly that key from the jsonl export.
    with Store.open(db_url) as store:
        store.mark_failed(dataset_ref(store), "line\nbreak.jpg", "test")
    path = tmp_path / "retry.jsonl"
    path.write_text(exported.stdout)
    result = run(db_url, "reset", "--keys-from", str(path), "--state", "failed", "--yes")
    assert result.stdout == "reset 1 key of ds on s3://photos to pending\n"
    assert states(db_url)["line\nbreak.jpg"] == "pending"
    assert states(db_url)["img/0010.jpg"] == "failed"  # not in the file


def test_reset_keys_from_stdin_and_bad_files(sqlite_url, tmp_path):
    build_state(sqlite_url)
    result = run(
        sqlite_url, "reset", "--keys-from", "-", "--yes", input='{"key": "img/0001.jpg"}\n'
    )
    assert result.stdout == "reset 1 key of ds on s3://photos to pending\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "img/0002.jpg"}\nimg/0003.jpg\n')
    result = run(sqlite_url, "reset", "--keys-from", str(bad), "--yes")
    assert result.exit_code == 2 and "line 2" in result.stderr
    result = run(sqlite_url, "reset", "--keys-from", str(tmp_path / "missing"), "--yes")
    assert result.exit_code == 2 and "cannot read keys" in result.stderr
    assert states(sqlite_url)["img/0002.jpg"] == "annotated"


def test_reset_listing_clears_the_cursor_and_keeps_states(db_url):
    build_state(db_url)
    before = states(db_url)
    assert run(db_url, "reset", "--listing", "--state", "failed", "--yes").exit_code == 2
    dry = run(db_url, "reset", "--listing", "--dry-run")
    assert "token saved" in dry.stderr
    result = run(db_url, "reset", "--listing", "--yes")
    assert result.exit_code == 0
    with Store.open(db_url) as store:
        cursor = store.cursor(store.source("photos"))
    assert cursor.continuation_token is None and cursor.last_key is None
    assert not cursor.exhausted
    assert cursor.pages_listed == 1  # progress counters are history, not position
    assert states(db_url) == before


def test_reset_asks_on_a_terminal(sqlite_url):
    """On a real terminal (a pty), reset asks; `n` keeps the DB, `y` resets."""
    build_state(sqlite_url)
    for reply, code, state in ((b"n\n", 1, "annotated"), (b"y\n", 0, "pending")):
        main, secondary = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker", "--db", sqlite_url, "reset", "--key",
             "img/0000.jpg"],
            stdin=secondary, stdout=subprocess.PIPE, stderr=secondary,
        )  # fmt: skip
        os.close(secondary)
        prompt = b""
        deadline = time.monotonic() + 30
        while b"[y/N]" not in prompt and time.monotonic() < deadline:
            prompt += os.read(main, 1024)
        assert b"Reset 1 key of ds on s3://photos to pending" in prompt
        os.write(main, reply)
        assert process.wait(timeout=30) == code
        os.close(main)
        assert states(sqlite_url)["img/0000.jpg"] == state

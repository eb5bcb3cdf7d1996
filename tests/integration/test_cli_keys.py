"""`tracker keys`: streamed, filtered, and exact for any key."""

from __future__ import annotations

import json

from tests.cli_support import ODD_KEYS, build_state, run, run_process


def test_keys_text_prints_odd_keys_literally_with_controls_escaped(db_url):
    build_state(db_url)
    result = run(db_url, "keys", "--state", "pending")
    assert result.exit_code == 0
    printed = result.stdout
    assert "[red]x[/red].jpg\n" in printed  # not read as rich markup
    assert "with space/a b.png\n" in printed
    assert "tab\\there.jpg\n" in printed  # a control character is shown escaped
    assert "line\\nbreak.jpg\n" in printed  # so every key is one line
    assert "ünï/çødé.jpg\n" in printed
    assert printed.startswith("img/0011.jpg\n")  # listing order; 0010 failed
    assert "shown escaped" in result.stderr


def test_keys_jsonl_is_exact_for_every_key(db_url):
    build_state(db_url)
    result = run(db_url, "keys", "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["key"] for r in rows][-len(ODD_KEYS) :] == ODD_KEYS
    assert len(rows) == 26
    first = rows[0]
    assert first == {
        "key": "img/0000.jpg",
        "state": "annotated",
        "answer": "accept",
        "session": "ds-alice",
        "owner": None,
        "served_at": first["served_at"],
        "failure_reason": None,
        "priority": None,
    }
    assert rows[10]["failure_reason"] == "not an image"
    assert result.stderr == ""


def test_keys_filters_by_state_answer_and_glob(db_url):
    build_state(db_url)
    assert run(db_url, "keys", "--answer", "reject").stdout == "img/0002.jpg\nimg/0003.jpg\n"
    out = run(db_url, "keys", "--state", "served", "--state", "failed").stdout.split()
    assert out == ["img/0006.jpg", "img/0007.jpg", "img/0008.jpg", "img/0009.jpg", "img/0010.jpg"]
    assert run(db_url, "keys", "--match", "*[*]*").stdout == "star*glob?.jpg\n"
    assert run(db_url, "keys", "--match", "with space/*").stdout == "with space/a b.png\n"


def test_keys_streams_in_pages_and_survives_a_closed_pipe(sqlite_url):
    build_state(sqlite_url, regular=2500, odd=False)
    result = run(sqlite_url, "keys")
    assert len(result.stdout.splitlines()) == 2500
    # `tracker keys | head -1`: a reader that leaves early is no error.
    import subprocess
    import sys

    command = f"{sys.executable} -m tracker --db {sqlite_url} keys | head -1"
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    assert done.stdout == "img/0000.jpg\n"
    assert "Traceback" not in done.stderr and "Error" not in done.stderr


def test_keys_rejects_an_unknown_state(sqlite_url):
    build_state(sqlite_url)
    result = run_process(sqlite_url, "keys", "--state", "done")
    assert result.returncode == 2
    assert "'done' is not one of" in result.stderr

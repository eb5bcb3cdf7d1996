"""`tracker status --watch`: in a pseudo-terminal it draws the progress and annotator
tables, redraws them in place as answers come in, and exits 130 on Ctrl-C; into a pipe it
prints plain lines each period."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from datetime import timedelta

from tests.cli_support import listed
from tracker.models import Answer
from tracker.records import AnswerRecord
from tracker.store import Store

KEYS = [f"img/{i:03}.jpg" for i in range(20)]
LEASE = timedelta(minutes=30)


def answer_one(db_url: str) -> None:
    """A source of 20 keys, dataset `ds`, one more key answered by `ds-alice` per call."""
    with Store.open(db_url) as store:
        source = store.source("photos", create=True)
        if not store.object_count(source):
            store.record_page(
                source, listed(KEYS), next_token=None, last_key=KEYS[-1], exhausted=True
            )
        dataset = store.dataset(source, "ds", create=True)
        (lease,) = store.claim(dataset, "p1@host:8080", 1, LEASE)
        store.record_answers(dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "ds-alice")])


def command(db_url: str) -> list[str]:
    return [sys.executable, "-m", "tracker", "--db", db_url, "status", "--watch", "0.2"]


def read_until(fd: int, wanted: bytes, seen: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        assert time.monotonic() < deadline, f"{wanted!r} never shown; got {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the terminal closed: the process ended
                break


def test_watch_in_a_terminal_draws_redraws_in_place_and_exits_130_on_ctrl_c(db_url):
    answer_one(db_url)
    leader, follower = pty.openpty()
    env = dict(os.environ, COLUMNS="160", LINES="40", TERM="xterm-256color")
    process = subprocess.Popen(
        command(db_url), stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    try:
        seen = bytearray()
        read_until(leader, b"1/20", seen)
        read_until(leader, b"ds-alice", seen)  # the annotator table
        answer_one(db_url)
        read_until(leader, b"2/20", seen)
        after = bytes(seen[seen.index(b"1/20") :])
        assert b"\x1b[1A" in after or b"\x1b[2K" in after, "not redrawn in place"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)


def test_watch_into_a_pipe_prints_plain_lines_each_period_and_exits_130_on_ctrl_c(db_url):
    answer_one(db_url)
    process = subprocess.Popen(
        command(db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        answer_one(db_url)
        later = [process.stdout.readline() for _ in range(10)]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130
    finally:
        if process.poll() is None:
            process.kill()
    assert " s3://photos ds: 1/20 (5.0%), " in first and "\x1b" not in first
    assert any(" s3://photos ds: 2/20 (10.0%), " in line for line in later), later
    assert err.strip() == "error: interrupted"


def test_watch_with_json_is_a_usage_error(db_url):
    answer_one(db_url)
    done = subprocess.run([*command(db_url), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--watch and --json" in done.stderr
    assert len(done.stderr.splitlines()) == 1

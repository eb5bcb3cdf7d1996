"""`tracker sync` processes really killed (SIGKILL) and restarted, on SeaweedFS.

Every LIST call goes through a logging proxy, which sees the calls of killed processes too,
so these tests count what S3 actually served. The invariant under test (DESIGN.md,
"Nothing lost"): a page's keys and the cursor after them are one transaction, so

- the DB ends with exactly the bucket's keys, each once;
- a restarted sync re-reads at most one page (the one in flight at the kill, never
  committed), and it can only be that run's first LIST;
- in all, S3 serves at most (pages in the bucket + kills) pages.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from tests.faultproxy import FaultProxy, Request, put_objects
from tracker.locals3 import ACCESS_KEY, SECRET_KEY
from tracker.models import objects
from tracker.store import Store

# One xdist worker runs this module, so its 20,000-object bucket is filled once.
pytestmark = pytest.mark.xdist_group("sync_crash")

TRACKER = [sys.executable, "-m", "tracker"]
SMALL = 4_010  # keys under a/ : 81 pages of 50 for the random-kill test
TOTAL = 20_000  # keys in the bucket: 20 pages of 1,000 for the "Done when" test


class Bucket:
    def __init__(self, name: str, keys: list[str], endpoint_url: str, client: Any) -> None:
        self.name, self.keys, self.endpoint_url, self.client = name, keys, endpoint_url, client


@pytest.fixture(scope="module")
def big_bucket(seaweedfs) -> Iterator[Bucket]:  # type: ignore[no-untyped-def]
    """20,000 small objects: 4,010 under a/, the rest under b/ (about 15 s to fill)."""
    name = f"crash-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name)
    keys = [f"a/{i:05d}.jpg" for i in range(SMALL)]
    keys += [f"b/{i:05d}.jpg" for i in range(TOTAL - SMALL)]
    put_objects(seaweedfs.endpoint_url, name, keys)
    yield Bucket(name, keys, seaweedfs.endpoint_url, seaweedfs.client())


def reference_pages(bucket: Bucket, prefix: str, page_size: int) -> list[str | None]:
    """The first key of every page a clean listing returns (straight from the server)."""
    pages = bucket.client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.name, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    return [(page.get("Contents") or [{"Key": None}])[0]["Key"] for page in pages]


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def stored(url: str, bucket: str, prefix: str) -> tuple[list[str], Any]:
    """The source's listed keys in listing order, and its cursor. Read from `objects`:
    a sync lists for every dataset and creates none."""
    with Store.open(url) as store:
        source = store.source(bucket, prefix)
        with store.engine.connect() as conn:
            keys = conn.execute(
                select(objects.c.key).where(objects.c.source_id == source.id).order_by(objects.c.id)
            ).scalars()
            return list(keys), store.cursor(source)


def pages_listed(url: str) -> int:
    """The cursor's page count, read without taking SQLite's write lock (polled)."""
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30) as conn:
        row = conn.execute("SELECT pages_listed FROM listing_cursors").fetchone()
    return int(row[0]) if row else 0


def distinct_check(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        # One row per (source, key): `objects` holds the listing.
        row = conn.execute(
            text("SELECT count(*), count(DISTINCT source_id || ':' || key) FROM objects")
        ).one()
    engine.dispose()
    return row[0], row[1]


def check_runs(runs: list[list[Request]]) -> int:
    """Assert the per-restart invariant; returns how many pages were served twice.

    Within one run no page is read twice; a run may re-read a page that an earlier run
    was served (but never committed) only as its first LIST call.
    """
    seen: set[str | None] = set()
    again = 0
    for number, lists in enumerate(runs):
        first_keys = [r.first_key for r in lists]
        assert len(first_keys) == len(set(first_keys)), f"run {number} read a page twice"
        for position, key in enumerate(first_keys):
            if key in seen:
                assert position == 0, f"run {number} re-read {key!r} at call {position + 1}"
                again += 1
        seen.update(first_keys)
    return again


class Runs:
    """Starts `tracker sync` processes and splits the proxy's log by process."""

    def __init__(self, proxy: FaultProxy, args: list[str], log_dir: Path) -> None:
        self.proxy, self.args, self.log_dir = proxy, args, log_dir
        self.lists: list[list[Request]] = []
        self.kills = 0

    def start(self) -> subprocess.Popen[bytes]:
        self._mark = len(self.proxy.requests)
        self._stderr = open(self.log_dir / f"run-{len(self.lists)}.err", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [*TRACKER, *self.args],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=subprocess_env(),
        )

    def lists_so_far(self) -> int:
        return sum(1 for r in self.proxy.requests[self._mark :] if r.is_list)

    def end(self, process: subprocess.Popen[bytes], *, kill: bool, release: Any = None) -> int:
        """Kill (or wait for) the process; then let a held answer go, and log the run."""
        if kill and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            self.kills += 1
        code = process.wait(120)
        if release is not None:
            release.set()
        self._stderr.close()
        self.proxy.settle()
        self.lists.append(
            [r for r in self.proxy.requests[self._mark :] if r.is_list and r.status == 200]
        )
        return code

    def stderr_of(self, run: int) -> str:
        return (self.log_dir / f"run-{run}.err").read_text()


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing_and_rereads_at_most_a_page_per_kill(
    big_bucket, tmp_path, db_url
):
    """20 SIGKILLs at seeded random points (during start-up, mid-LIST, mid-commit, between
    pages) of a sync of 4,010 keys in pages of 50, restarted until it finishes; on SQLite
    and PostgreSQL.
    Seen to fail when: not yet. `record_page` committing the cursor before the keys (two
    transactions) survived its 20 kills on SQLite: the window is too narrow for random
    kills; test_reliability_locks.py::test_a_sync_killed_while_its_page_waits_to_commit_
    loses_nothing kills inside it and fails on that mutant."""
    rng = random.Random(20240611)
    url = db_url
    pages = reference_pages(big_bucket, "a/", 50)
    with FaultProxy(big_bucket.endpoint_url) as proxy:
        runs = Runs(proxy, ["--db", url, "sync", f"s3://{big_bucket.name}/a/",
                            "--page-size", "50", "--endpoint-url", proxy.endpoint_url],
                    tmp_path)  # fmt: skip
        while True:
            process = runs.start()
            if runs.kills >= 20:
                code = runs.end(process, kill=False)
                assert code == 0, runs.stderr_of(len(runs.lists) - 1)
                break
            if rng.random() < 0.2:  # during start-up or the first pages
                time.sleep(rng.uniform(0.05, 1.0))
            else:  # after the k-th LIST call has gone out, plus a few milliseconds
                target = rng.randint(1, 5)
                deadline = time.monotonic() + 60
                while runs.lists_so_far() < target and process.poll() is None:
                    assert time.monotonic() < deadline
                    time.sleep(0.002)
                time.sleep(rng.uniform(0, 0.04))
            if runs.end(process, kill=True) == 0:
                break  # it finished before the kill landed
        keys, cursor = stored(url, big_bucket.name, "a/")

    assert keys == big_bucket.keys[:SMALL]
    assert distinct_check(url) == (SMALL, SMALL)
    assert cursor.exhausted and cursor.pages_listed == len(pages)
    again = check_runs(runs.lists)
    served = [r.first_key for run in runs.lists for r in run]
    assert set(served) == set(pages)
    assert len(served) == len(pages) + again <= len(pages) + runs.kills
    per_page = Counter(served)
    # The kills happened: most of the 20 landed (a run that finishes before its kill ends
    # the loop), some mid-LIST (a page re-read). A page caught in flight by two kills is
    # read three times: the promise is a page per kill (above), not two reads per page.
    assert runs.kills >= 10 and again >= 1, (runs.kills, again)
    print(
        f"\nrandom kills: {runs.kills} SIGKILLs over {len(runs.lists)} runs; "
        f"{len(served)} pages served for {len(pages)} pages in the listing "
        f"({again} re-reads, each the first LIST after a kill; "
        f"most reads of one page: {max(per_page.values())})"
    )


@pytest.mark.slow
def test_20k_objects_interrupted_and_killed_read_each_page_once_plus_one(big_bucket, tmp_path):
    """The issue's "Done when": 20,000 objects, default page size (1,000). Ctrl-C while
    page 5 is in flight (kept: it is committed before the exit), SIGKILL right after a
    commit, SIGKILL while a page is in flight (lost: read again), then run to the end.
    Each page is served once, plus the one page in flight at the last kill."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    pages = reference_pages(big_bucket, "", 1000)
    assert len(pages) in (20, 21)  # 21 if the server ends with an empty page
    with FaultProxy(big_bucket.endpoint_url) as proxy:
        runs = Runs(proxy, ["--db", url, "sync", f"s3://{big_bucket.name}", "--all-objects",
                            "--endpoint-url", proxy.endpoint_url], tmp_path)  # fmt: skip

        held, release = proxy.hold_list(after=4)
        process = runs.start()
        assert held.wait(60)
        process.send_signal(signal.SIGINT)
        release.set()
        assert runs.end(process, kill=False) == 130
        assert "resume with: tracker --db" in runs.stderr_of(0)
        assert stored(url, big_bucket.name, "")[1].pages_listed == 5

        process = runs.start()  # SIGKILL just after page 9 is committed
        deadline = time.monotonic() + 60
        while pages_listed(url) < 9:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        runs.end(process, kill=True)

        committed = stored(url, big_bucket.name, "")[1].pages_listed
        held, release = proxy.hold_list(after=2)  # SIGKILL while its 3rd page is in flight
        process = runs.start()
        assert held.wait(60)
        runs.end(process, kill=True, release=release)
        assert stored(url, big_bucket.name, "")[1].pages_listed == committed + 2

        assert runs.end(runs.start(), kill=False) == 0
        keys, cursor = stored(url, big_bucket.name, "")

    assert keys == big_bucket.keys
    assert distinct_check(url) == (TOTAL, TOTAL)
    assert cursor.exhausted and cursor.pages_listed == len(pages)
    again = check_runs(runs.lists)
    served = [r.first_key for run in runs.lists for r in run]
    assert set(served) == set(pages)
    assert 1 <= again <= 2  # the page held at the last kill; maybe one at the kill after 9
    assert len(served) == len(pages) + again
    assert runs.kills == 2 and len(runs.lists) == 4  # 1 Ctrl-C, 2 SIGKILLs, the last run
    print(
        f"\n20k objects: {len(served)} pages served for {len(pages)} pages in the listing "
        f"over {len(runs.lists)} runs (1 Ctrl-C, {runs.kills} SIGKILLs); re-reads: {again}"
    )

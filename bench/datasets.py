"""A dataset that has just started, beside one that annotated 90% of the source: what its
claims cost at 10,000 keys (the baseline, measured in the same run) and at millions.

Issue 11's target: a claim stays an index range read for a new dataset, however many keys
the source has and however many other datasets annotated, so the ratio to the baseline stays
near 1. The keys are inserted straight into `objects` with one INSERT ... SELECT (a recursive
CTE on SQLite, `generate_series` on PostgreSQL), and dataset `done` gets an annotated row for
nine keys in ten the same way: listing 10M keys through S3 is not what this measures.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.report import Table, median, ms, percentile, timed
from tracker.records import DatasetRef
from tracker.store import Store

CLAIMS = 30
BATCH = 10

_SQLITE_OBJECTS = """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n)
INSERT INTO objects (source_id, key, size) SELECT :s, printf('img/%09d.jpg', i), 1000 FROM seq
"""
_PG_OBJECTS = """
INSERT INTO objects (source_id, key, size)
SELECT :s, 'img/' || lpad(i::text, 9, '0') || '.jpg', 1000 FROM generate_series(1, :n) AS i
"""
_ANNOTATED = """
INSERT INTO items (dataset_id, object_id, state, answer, answer_count, annotated_at, serves)
SELECT :d, id, 'annotated', 'accept', 1, CURRENT_TIMESTAMP, 1
FROM objects WHERE source_id = :s AND id % 10 != 0
"""


def fill(store: Store, keys: int) -> None:
    """`keys` objects in one source; dataset `done` annotated nine in ten of them."""
    source = store.source("bench-datasets", "", create=True)
    done = store.dataset(source, "done", create=True)
    pg = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as conn:
        conn.execute(text(_PG_OBJECTS if pg else _SQLITE_OBJECTS), {"s": source.id, "n": keys})
        conn.execute(text(_ANNOTATED), {"s": source.id, "d": done.id})
        conn.execute(
            text("UPDATE datasets SET frontier = (SELECT max(id) FROM objects) WHERE id = :d"),
            {"d": done.id},
        )
    if pg:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))  # autovacuum is off on the test server


def claim_times(store: Store) -> list[float]:
    """Seconds per claim of `BATCH` keys by a dataset that has just started."""
    source = store.source("bench-datasets", "")
    return claim_series(store, store.dataset(source, f"fresh-{uuid.uuid4().hex[:6]}", create=True))


def claim_series(store: Store, dataset: DatasetRef) -> list[float]:
    """Seconds per claim of `BATCH` keys, `CLAIMS` claims in a row by `dataset`."""
    lease = timedelta(minutes=30)
    times = []
    for _ in range(CLAIMS):
        seconds, leases = timed(lambda: store.claim(dataset, "bench", BATCH, lease, max_attempts=3))
        assert len(leases) == BATCH
        times.append(seconds)
    return times


@contextmanager
def database(kind: str, pg_url: str | None) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'state.db'}"
        return
    assert pg_url is not None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(sizes: list[int], pg_url: str | None) -> Table:
    table = Table(
        "A new dataset's claim beside one that annotated 90% (10 keys per claim)",
        ["database", "keys in the source", "claim median", "claim p95", "vs 10,000 keys"],
    )
    for kind in ["sqlite"] + (["postgresql"] if pg_url else []):
        baseline = None
        for keys in [10_000, *sizes]:
            with database(kind, pg_url) as url, Store.open(url) as store:
                fill(store, keys)
                times = claim_times(store)
            mid = median(times)
            baseline = baseline or mid
            table.add(
                kind, f"{keys:,}", ms(mid), ms(percentile(times, 0.95)), f"{mid / baseline:.2f}x"
            )
    table.notes.append(
        "each row: a new source and DB; the new dataset claims 30 times (the first claims walk "
        "its frontier from the first key, past nothing: no other dataset's rows are read)"
    )
    return table

"""The state store at scale, no S3: recording keys, claim + answer, status, bytes per key.

The floor for recording is raw `sqlite3.executemany` into the same schema, measured in the
same run: the best any layer over SQLite could do with the same indexes.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.report import Table, median, ms, percentile, timed
from tracker.models import Answer
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store

PAGE = 1000


def pages(total: int, prefix: str = "") -> Iterator[list[ListedObject]]:
    now = datetime.now(UTC)
    for start in range(0, total, PAGE):
        yield [
            ListedObject(f"{prefix}images/{i:09d}.jpg", 1000 + i % 5000, f"{i:032x}", now)
            for i in range(start, min(start + PAGE, total))
        ]


def record_all(store: Store, total: int) -> float:
    source = store.source("bench-bucket", "", create=True)

    def run() -> None:
        for page in pages(total):
            store.record_page(
                source, page, next_token=page[-1].key, last_key=page[-1].key, exhausted=False
            )

    seconds, _ = timed(run)
    return seconds


def raw_sqlite_floor(path: Path, total: int) -> float:
    """The same rows, same table and indexes, through sqlite3 directly."""
    Store.open(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("INSERT INTO sources (bucket, prefix, created_at) VALUES ('floor', '', '')")
    sql = (
        "INSERT INTO objects (source_id, key, size, etag, last_modified) VALUES (1, ?, ?, ?, ?) "
        "ON CONFLICT (source_id, key) DO NOTHING"
    )

    def run() -> None:
        for page in pages(total):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                sql,
                [
                    (o.key, o.size, o.etag, o.last_modified.replace(tzinfo=None).isoformat(" "))
                    for o in page
                    if o.last_modified is not None
                ],
            )
            conn.execute("UPDATE listing_cursors SET pages_listed = pages_listed + 1")
            conn.execute("COMMIT")

    seconds, _ = timed(run)
    conn.close()
    return seconds


def claim_and_answer(store: Store, batches: int) -> list[float]:
    """Per-batch milliseconds for one claim of 10 keys plus recording their 10 answers."""
    dataset = store.dataset(store.source("bench-bucket", "", create=True), "bench", create=True)
    durations = []
    for _ in range(batches):

        def one() -> None:
            leases = store.claim(dataset, "bench-owner", 10, timedelta(minutes=30))
            store.record_answers(
                dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "bench") for lease in leases]
            )

        seconds, _ = timed(one)
        durations.append(seconds)
    return durations


def status_seconds(store: Store, runs: int = 5) -> float:
    """What `tracker status` asks of the DB: counts and cursor (median of `runs`)."""
    source = store.source("bench-bucket", "", create=True)
    dataset = store.dataset(source, "bench", create=True)

    def one() -> None:
        store.counts(dataset)
        store.cursor(source)

    return median([timed(one)[0] for _ in range(runs)])


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(base_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(total: int, repeats: int, pg_url: str | None) -> Table:
    runs = f"median of {repeats} runs" if repeats > 1 else "one run"
    table = Table(
        f"State store at scale ({total:,} keys, pages of {PAGE:,}; {runs})",
        ["measure", "SQLite", "PostgreSQL", "target"],
    )
    results: dict[str, dict[str, str]] = {"sqlite": {}, "postgresql": {}}
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        floors = [raw_sqlite_floor(Path(tmp) / f"floor{i}.db", total) for i in range(repeats)]
        floor = median(floors)
        for backend in ("sqlite", "postgresql"):
            if backend == "postgresql" and not pg_url:
                continue
            record_times, claim_times, status_times, sizes = [], [], [], []
            for i in range(repeats):
                if backend == "sqlite":
                    path = Path(tmp) / f"ours{i}.db"
                    context = _nullcontext(f"sqlite:///{path}")
                else:
                    context = pg_schema(pg_url)  # type: ignore[arg-type]
                with context as url, Store.open(url) as store:
                    record_times.append(record_all(store, total))
                    claim_times.extend(claim_and_answer(store, 200))
                    status_times.append(status_seconds(store))
                    sizes.append(_bytes_per_key(store, backend, total, url))
            rate = total / median(record_times)
            results[backend] = {
                "record": f"{rate:,.0f} keys/s",
                "vs_floor": f"{(total / floor) and rate / (total / floor) * 100:.0f}%"
                if backend == "sqlite"
                else "n/a",
                "claim_median": ms(median(claim_times)),
                "claim_p99": ms(percentile(claim_times, 0.99)),
                "status": ms(median(status_times)),
                "bytes": f"{median(sizes):,.0f}",
            }
    sq, pg = results["sqlite"], results["postgresql"]
    table.add("record keys", sq["record"], pg.get("record", "-"), "")
    table.add("raw sqlite3 executemany floor", f"{total / floor:,.0f} keys/s", "", "")
    table.add("record vs floor", sq["vs_floor"], "", ">= 50%")
    table.add(
        "claim 10 + answer 10, median",
        sq["claim_median"],
        pg.get("claim_median", "-"),
        "<= 1 ms (SQLite)",
    )
    table.add("claim 10 + answer 10, p99", sq["claim_p99"], pg.get("claim_p99", "-"), "")
    table.add("status queries", sq["status"], pg.get("status", "-"), "<= 200 ms")
    table.add("bytes per key on disk", sq["bytes"], pg.get("bytes", "-"), "")
    return table


@contextmanager
def _nullcontext(value: str) -> Iterator[str]:
    yield value


def _bytes_per_key(store: Store, backend: str, total: int, url: str) -> float:
    if backend == "sqlite":
        store.close()
        path = make_url(url).database
        assert path
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(path) / total
    with store.engine.connect() as conn:
        size = conn.execute(
            text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            )
        ).scalar_one()
    return float(size) / total

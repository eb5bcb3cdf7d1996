"""`tracker db copy` both ways (SQLite file -> PostgreSQL -> SQLite file), beside floors
measured in the same run on the same rows:

- the raw floor of each direction: the `objects` rows, already in memory as the target's
  driver takes them, written with nothing else (psycopg COPY into PostgreSQL; sqlite3
  executemany in one transaction into SQLite), into the same schema and indexes;
- the store's own bulk recording rate (`Store.record_page`, pages of 100,000), which is how
  the source was built: what filling the target by re-listing would cost at best.

The copy's rate counts keys (`objects` rows) per second of the whole command's work:
snapshot, migration of the target, every table, sequences, verification, ANALYZE, commit.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.report import Table, timed
from bench.scale import pg_schema
from tracker.copy import copy_database
from tracker.db import create_db_engine
from tracker.models import Object
from tracker.records import ListedObject
from tracker.store import Store

BUILD_PAGE = 100_000

#: Each figure is the best of this many runs, taken in turn (the machine is shared).
RUNS = 2


def build(url: str, total: int) -> float:
    """A source of `total` keys, through the store's bulk path; returns its seconds."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with Store.open(url) as store:
        source = store.source("bench-copy", "", create=True)

        def record() -> None:
            for start in range(0, total, BUILD_PAGE):
                page = [
                    ListedObject(f"images/{i:09d}.jpg", 1000 + i % 5000, f"{i:032x}", now)
                    for i in range(start, min(total, start + BUILD_PAGE))
                ]
                store.record_page(
                    source, page, next_token=None, last_key=page[-1].key, exhausted=False
                )

        return timed(record)[0]


def _object_rows(path: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The `objects` rows as SQLite stores them (compact forms: integer microseconds, packed
    ETags): what sqlite3's executemany takes."""
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute("SELECT * FROM objects ORDER BY id")
        columns = [d[0] for d in cursor.description]
        return columns, cursor.fetchall()
    finally:
        conn.close()


def _decoded_object_rows(path: Path, columns: list[str]) -> list[tuple[Any, ...]]:
    """The same rows as Python values (aware datetimes, ETag text), read through the column
    types: what PostgreSQL's COPY takes. SQLite's compact forms are not PostgreSQL's (its
    integer microseconds are no `timestamptz`), so the floor converts before it is timed."""
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        table = Object.__table__
        with engine.connect() as conn:
            query = select(*(table.c[name] for name in columns)).order_by(table.c.id)
            return [tuple(row) for row in conn.execute(query)]
    finally:
        engine.dispose()


def _empty_target(url: str) -> None:
    """The target's schema at head with the one source the rows reference."""
    with Store.open(url) as store:
        store.source("bench-copy", "", create=True)


def pg_copy_floor(url: str, columns: list[str], rows: list[tuple[Any, ...]]) -> float:
    """Seconds for psycopg's COPY of `rows` (Python values, converted before the clock
    starts) into `objects`, one transaction: nothing read, nothing converted."""
    _empty_target(url)
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None

            def write() -> None:
                with driver.cursor() as cursor:
                    cursor.execute("SET LOCAL TIME ZONE 'UTC'")
                    names = ", ".join(columns)
                    with cursor.copy(f"COPY objects ({names}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)

            return timed(write)[0]
    finally:
        engine.dispose()


def sqlite_floor(path: Path, columns: list[str], rows: list[tuple[Any, ...]]) -> float:
    """Seconds for sqlite3's executemany of `rows` into `objects`, one transaction."""
    _empty_target(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO objects ({', '.join(columns)}) VALUES ({marks})"

        def write() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")

        return timed(write)[0]
    finally:
        conn.close()


def run(total: int, pg_url: str | None) -> Table:
    table = Table(
        f"`tracker db copy` ({total:,} keys; best of {RUNS} runs each, taken in turn)",
        ["direction", "copy keys/s", "raw floor keys/s", "copy vs floor", "floor is"],
    )
    if not pg_url:
        table.notes.append("skipped: no PostgreSQL (--no-postgres)")
        return table
    with tempfile.TemporaryDirectory(prefix="tracker-bench-copy-") as tmp:
        laptop = Path(tmp) / "laptop.db"
        record_seconds = build(f"sqlite:///{laptop}", total)
        columns, rows = _object_rows(laptop)
        decoded = _decoded_object_rows(laptop, columns)
        pg_floors, back_floors, theres, backs = [], [], [], []
        for attempt in range(RUNS):
            with pg_schema(pg_url) as floor_url:
                pg_floors.append(pg_copy_floor(floor_url, columns, decoded))
            back_floors.append(sqlite_floor(Path(tmp) / f"floor{attempt}.db", columns, rows))
            with pg_schema(pg_url) as shared:
                start = time.perf_counter()
                assert copy_database(f"sqlite:///{laptop}", shared).ok
                theres.append(time.perf_counter() - start)
                start = time.perf_counter()
                assert copy_database(shared, f"sqlite:///{Path(tmp) / f'back{attempt}.db'}").ok
                backs.append(time.perf_counter() - start)
        there, back, pg_floor, back_floor = map(min, (theres, backs, pg_floors, back_floors))
    for name, ours, floor, what in (
        ("SQLite file -> PostgreSQL", there, pg_floor, "psycopg COPY of the rows in memory"),
        ("PostgreSQL -> SQLite file", back, back_floor, "sqlite3 executemany of the rows"),
    ):
        table.add(
            name,
            f"{total / ours:,.0f}",
            f"{total / floor:,.0f}",
            f"{floor / ours * 100:.0f}%",
            what,
        )
    table.add(
        "(store bulk recording, SQLite)",
        f"{total / record_seconds:,.0f}",
        "",
        "",
        "`record_page`, pages of 100,000: how the source was built",
    )
    table.notes.append(
        "copy: the whole command (snapshot read, target migrated in the same transaction, "
        "every table in primary-key order, sequences, row-count and max-id verification, "
        "ANALYZE, commit); floor: only the `objects` rows, already in memory, written"
    )
    return table

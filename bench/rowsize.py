"""Where the bytes of a key go on disk: per table and per index, on SQLite and PostgreSQL.

A source under a prefix is filled with realistic keys (`<prefix>images/2024/05/IMG_...jpg`),
MD5 ETags (without S3's quotes, as the lister keeps them), sizes, and second-precision
last-modified times as S3 lists them; one dataset has claimed and answered a slice of
them. The floor printed beside the total is the raw UTF-8 bytes of the keys themselves:
what no layout can go below without compressing.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bench.report import Table, timed
from bench.scale import pg_schema
from tracker.db import alembic_config
from tracker.models import Answer
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store

PAGE = 1000
#: The source's prefix; the totals are also measured under a long one, `LONG_PREFIX`.
PREFIX = "survey/"
LONG_PREFIX = "projects/field-survey-2024/"
#: The share of keys the benchmark's dataset has claimed, and answered.
ANSWERED = 0.02


def realistic_keys(total: int, prefix: str) -> Iterator[str]:
    """Keys as a camera roll uploads them: year/month folders, zero-padded image numbers."""
    for i in range(total):
        month = 1 + (i * 12) // total
        yield f"{prefix}images/2024/{month:02d}/IMG_{i:07d}.jpg"


def pages(total: int, prefix: str) -> Iterator[list[ListedObject]]:
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    page: list[ListedObject] = []
    for i, key in enumerate(realistic_keys(total, prefix)):
        etag = hashlib.md5(key.encode()).hexdigest()  # as the lister keeps it: no quotes
        modified = start + timedelta(seconds=rng.randrange(365 * 86400))
        page.append(ListedObject(key, rng.randrange(50_000, 8_000_000), etag, modified))
        if len(page) == PAGE or i == total - 1:
            yield page
            page = []


def fill(store: Store, total: int, prefix: str) -> None:
    source = store.source("rowsize-bucket", prefix, create=True)
    for page in pages(total, prefix):
        store.record_page(
            source, page, next_token=page[-1].key, last_key=page[-1].key, exhausted=False
        )
    dataset = store.dataset(source, "rowsize", create=True)
    to_answer = int(total * ANSWERED)
    while to_answer > 0:
        leases = store.claim(dataset, "bench-owner", min(500, to_answer), timedelta(minutes=30))
        if not leases:
            break
        store.record_answers(
            dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "bench") for lease in leases]
        )
        to_answer -= len(leases)


def sqlite_sizes(path: Path) -> dict[str, int]:
    """Bytes per table and index (SQLite's `dbstat`: pages in use, incl. their free space)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    return {name: int(size) for name, size in rows}


def pg_sizes(store: Store) -> dict[str, int]:
    """Bytes per table (heap, TOAST, free-space and visibility maps) and per index."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid) "
                "ELSE pg_table_size(c.oid) END FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i')"
            )
        ).all()
    return {name: int(size) for name, size in rows}


def measure(total: int, prefix: str, pg_url: str | None) -> dict[str, dict[str, int]]:
    """Bytes per table and index for each backend (and the SQLite file's size)."""
    measured: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="tracker-rowsize-") as tmp:
        path = Path(tmp) / "rowsize.db"
        with Store.open(f"sqlite:///{path}") as store:
            fill(store, total, prefix)
        measured["SQLite"] = sqlite_sizes(path)
        measured["SQLite, file"] = {"(file)": path.stat().st_size}
    if pg_url:
        with pg_schema(pg_url) as url, Store.open(url) as store:
            fill(store, total, prefix)
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
            measured["PostgreSQL"] = pg_sizes(store)
    return measured


def run(total: int, pg_url: str | None) -> Table:
    measured = measure(total, PREFIX, pg_url)
    backends = [b for b in ("SQLite", "PostgreSQL") if b in measured]
    table = Table(
        f"Bytes per key on disk ({total:,} keys under `{PREFIX}`, "
        f"{ANSWERED:.0%} answered by one dataset)",
        ["table or index", *backends],
    )
    names = sorted(
        {n for b in backends for n, size in measured[b].items() if size / total >= 0.5},
        key=lambda n: (n.removeprefix("sqlite_autoindex_").split("_")[0], n),
    )
    for name in names:
        cells = [measured[b].get(name) for b in backends]
        table.add(f"`{name}`", *("-" if c is None else f"{c / total:,.1f}" for c in cells))
    table.add("**total**", *(f"**{sum(measured[b].values()) / total:,.1f}**" for b in backends))
    table.add(
        "floor: the key's own UTF-8 bytes", *(f"{_floor(total, PREFIX):,.1f}" for _ in backends)
    )
    long = measure(total, LONG_PREFIX, pg_url)
    table.add(
        f"total under `{LONG_PREFIX}`", *(f"{sum(long[b].values()) / total:,.1f}" for b in backends)
    )
    table.add("floor under it", *(f"{_floor(total, LONG_PREFIX):,.1f}" for _ in backends))
    migration = time_migration(total)
    table.notes.append(
        f"revision {SMALLER_ROWS} on SQLite at {total:,} keys written as before it: upgrade "
        f"{migration['upgrade']:.1f} s, then VACUUM {migration['vacuum']:.1f} s "
        f"({migration['before']:,.1f} -> {migration['after']:,.1f} bytes/key, both "
        f"vacuumed), downgrade {migration['downgrade']:.1f} s; on PostgreSQL it changes nothing"
    )
    file_bytes = measured["SQLite, file"]["(file)"] / total
    table.notes.append(
        f"SQLite file after a WAL checkpoint: {file_bytes:,.1f} bytes/key (rows < 0.5 "
        "bytes/key are left out of the table, not of the total)"
    )
    table.notes.append(
        "PostgreSQL after VACUUM ANALYZE; tables are heap + TOAST + maps, indexes each"
    )
    table.notes.append(
        "each key is stored twice (the table and the unique index on source and key): a "
        "longer prefix costs twice its length per key"
    )
    return table


#: The revision that makes rows smaller; timed from the one before it, whatever that is.
SMALLER_ROWS = "0009"


def time_migration(total: int) -> dict[str, float]:
    """Revision 0009 on a SQLite DB of `total` keys written as before it (text ETags and
    times, 2% answered): seconds to upgrade, VACUUM and downgrade, and bytes per key."""
    config = alembic_config()
    previous = ScriptDirectory.from_config(config).get_revision(SMALLER_ROWS).down_revision
    assert isinstance(previous, str)
    with tempfile.TemporaryDirectory(prefix="tracker-rowsize-") as tmp:
        path = Path(tmp) / "migrate.db"
        config = alembic_config(f"sqlite:///{path}")
        command.upgrade(config, previous)
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO sources (id, bucket, prefix, created_at) "
                         "VALUES (1, 'b', ?, CURRENT_TIMESTAMP)", (PREFIX,))  # fmt: skip
            conn.execute("INSERT INTO datasets (id, source_id, name, frontier, created_at) "
                         "VALUES (1, 1, 'ds', 0, CURRENT_TIMESTAMP)")  # fmt: skip
            conn.executemany(
                "INSERT INTO objects (source_id, key, size, etag, last_modified, seen_pass) "
                "VALUES (1, ?, ?, ?, ?, 0)",
                (
                    (o.key, o.size, o.etag, f"{o.last_modified:%Y-%m-%d %H:%M:%S.%f}")
                    for page in pages(total, PREFIX)
                    for o in page
                ),
            )
            conn.execute(
                "INSERT INTO items (dataset_id, object_id, state, answer, answer_etag) "
                "SELECT 1, id, 'annotated', 'accept', etag FROM objects "
                f"WHERE id % {round(1 / ANSWERED)} = 0"
            )
        with sqlite3.connect(path) as conn:
            conn.execute("VACUUM")
        before = path.stat().st_size / total
        upgrade, _ = timed(lambda: command.upgrade(config, SMALLER_ROWS))

        def vacuum() -> None:
            with sqlite3.connect(path) as conn:
                conn.execute("VACUUM")

        seconds, _ = timed(vacuum)
        after = path.stat().st_size / total
        downgrade, _ = timed(lambda: command.downgrade(config, previous))
    return {
        "upgrade": upgrade,
        "vacuum": seconds,
        "downgrade": downgrade,
        "before": before,
        "after": after,
    }


def _floor(total: int, prefix: str) -> float:
    return sum(len(k.encode()) for k in realistic_keys(total, prefix)) / total

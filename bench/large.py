"""`python -m bench --scale 10m`: every path of issue 12 at one size, each beside its floor.

One table per backend, each figure measured in this run next to the least any layer over
the same database could do, so that the ratio holds on a noisy machine:

- record: `Store.record_page`, pages of 1,000 keys; floor: the same rows through the raw
  driver (sqlite3 `executemany`, PostgreSQL `COPY`) into the same table and indexes;
- inventory ingest: a Parquet S3 Inventory report on SeaweedFS; floor: pyarrow reading the
  same files into Python values;
- claim 10 + answer 10: median and p99 at full size; floor: the same on a 10,000-key store
  (a path independent of the size has a ratio near 1);
- status queries: `Store.counts` (counters); floor: `Store.recount`, the COUNT(*) it replaced;
- `tracker status`, the whole command in a new process; floor: `python -c pass`;
- bytes per key on disk (tables and indexes); floor: the bytes of the keys themselves.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench import bulk
from bench.report import Table, median, ms, percentile, timed
from bench.scale import (
    PAGE,
    _bytes_per_key,
    _nullcontext,
    claim_and_answer,
    pages,
    pg_schema,
    raw_sqlite_floor,
    record_all,
)
from tracker.store import Store, batched

#: Baseline size for the claim: small enough that nothing in it can depend on size.
SMALL = 10_000
PAGE_SAMPLE = 1_000


def parse_size(text_size: str) -> int:
    """`10m`, `1M`, `500k`, `250000` -> a number of keys."""
    value = text_size.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(value[-1:], 1)
    number = value[:-1] if factor > 1 else value
    try:
        total = int(float(number) * factor)
    except ValueError:
        raise ValueError(f"not a size: {text_size!r} (e.g. 10m, 500k, 250000)") from None
    if total < SMALL:
        raise ValueError(f"a size of at least {SMALL:,} keys, not {text_size!r}")
    return total


def run(client: Any, total: int, pg_url: str | None) -> list[Table]:
    tables = []
    with tempfile.TemporaryDirectory(prefix="tracker-bench-large-") as tmp:
        folder = Path(tmp)
        client.create_bucket(Bucket="bench-large-inventory")
        print(f"large: uploading an inventory of {total:,} keys...", file=sys.stderr, flush=True)
        manifest = bulk.upload(client, "bench-large-inventory", total, "Parquet")
        inventory_floor = bulk.pyarrow_floor(client, manifest, folder)
        backends: list[tuple[str, Any]] = [("SQLite", lambda name: _sqlite(folder, name))]
        if pg_url:
            backends.append(("PostgreSQL", lambda name: pg_schema(pg_url)))
        for name, context in backends:
            print(f"large: {name}...", file=sys.stderr, flush=True)
            tables.append(_backend(name, context, client, manifest, inventory_floor, total, folder))
    return tables


def _sqlite(folder: Path, name: str) -> AbstractContextManager[str]:
    return _nullcontext(f"sqlite:///{folder / f'{name}.db'}")


def _backend(
    name: str,
    context: Any,
    client: Any,
    manifest: str,
    inventory_floor: float,
    total: int,
    folder: Path,
) -> Table:
    table = Table(
        f"{name} at {total:,} keys (one run; floors measured in the same run)",
        ["measure", "ours", "floor", "ours vs floor", "target"],
    )
    is_sqlite = name == "SQLite"
    with context("record") as url, Store.open(url) as store:
        record = record_all(store, total)
        if is_sqlite:
            floor = raw_sqlite_floor(folder / "floor.db", total)
        else:
            with context("floor") as floor_url:
                floor = _pg_copy_floor(floor_url, total)
        table.add(
            "record (pages of 1,000)",
            f"{total / record:,.0f} keys/s",
            f"{total / floor:,.0f} keys/s",
            f"{floor / record * 100:.0f}%",
            ">= SQLite's rate" if not is_sqlite else "",
        )
        claims = claim_and_answer(store, 500)
        with context("small") as small_url, Store.open(small_url) as small:
            record_all(small, SMALL)
            small_claims = claim_and_answer(small, 500)
        table.add(
            "claim 10 + answer 10, median",
            ms(median(claims)),
            ms(median(small_claims)) + f" at {SMALL:,}",
            f"{median(claims) / median(small_claims):.2f}x",
            "",
        )
        table.add(
            "claim 10 + answer 10, p99",
            ms(percentile(claims, 0.99)),
            ms(percentile(small_claims, 0.99)) + f" at {SMALL:,}",
            f"{percentile(claims, 0.99) / percentile(small_claims, 0.99):.2f}x",
            "",
        )
        dataset = store.dataset(store.source("bench-bucket", "", create=True), "bench")
        counters = median([timed(lambda: store.counts(dataset))[0] for _ in range(7)])
        recount = median([timed(lambda: store.recount(dataset))[0] for _ in range(3)])
        table.add(
            "status queries (counters)",
            ms(counters),
            ms(recount) + " COUNT(*)",
            f"{recount / counters:,.0f}x faster",
            "<= 20 ms",
        )
        command = _command_seconds(url)
        python = _command_seconds(None)
        table.add(
            "`tracker status`, whole command",
            ms(command),
            ms(python) + " python -c pass",
            f"+{(command - python) * 1000:.0f} ms",
            "<= 600 ms",
        )
        # Every benchmark key has the same length (`images/NNNNNNNNN.jpg`): one page says it.
        first = next(pages(PAGE_SAMPLE))
        key_bytes = sum(len(o.key.encode()) for o in first) / len(first)
        size = _bytes_per_key(store, name.lower(), total, url)
        table.add(
            "bytes per key on disk",
            f"{size:,.0f}",
            f"{key_bytes:.0f} (the key)",
            f"{size / key_bytes:.1f}x",
            "<= 150 (SQLite)" if is_sqlite else "",
        )
    with context("inventory") as url:
        ingest = bulk.ingest(client, manifest, url)
        table.add(
            "inventory ingest (Parquet)",
            f"{total / ingest:,.0f} keys/s",
            f"{total / inventory_floor:,.0f} keys/s pyarrow read",
            f"{inventory_floor / ingest * 100:.0f}%",
            ">= 100,000 keys/s (SQLite)" if is_sqlite else "",
        )
    return table


def _command_seconds(url: str | None, runs: int = 7) -> float:
    """Median wall time of `tracker status --db URL` (or `python -c pass`) in a new process."""
    if url is None:
        argv = [sys.executable, "-c", "pass"]
    else:
        argv = [sys.executable, "-m", "tracker", "--db", url, "status"]
    times = []
    for _ in range(runs):
        seconds, done = timed(lambda: subprocess.run(argv, capture_output=True, check=False))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-300:]}")
        times.append(seconds)
    return median(times)


def _pg_copy_floor(url: str, total: int) -> float:
    """The same rows through psycopg's COPY into `objects` of a fresh source: the fastest
    way into PostgreSQL there is, with the same table and indexes."""
    with Store.open(url) as store:
        source = store.source("floor-bucket", "", create=True)
        with store.engine.connect() as conn:
            raw: Any = conn.connection.driver_connection

            def copy() -> None:
                # 50 pages per COPY and commit: the floor is not paid a commit per page.
                keys = (o for page in pages(total) for o in page)
                for page in batched(keys, 50 * PAGE):
                    with raw.cursor() as cursor:
                        sql = "COPY objects (source_id, key, size, etag, last_modified) FROM STDIN"
                        with cursor.copy(sql) as out:
                            for o in page:
                                out.write_row((source.id, o.key, o.size, o.etag, o.last_modified))
                    raw.commit()

            seconds, _ = timed(copy)
    return seconds

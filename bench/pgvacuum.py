"""Claim + answer on PostgreSQL without help: tables never analyzed nor vacuumed (the test
server runs with autovacuum off, as a busy server may lag), and the same run with
`VACUUM (ANALYZE)` at intervals standing in for a working autovacuum; SQLite beside them.

Each run records the keys, imports answers for the first share of them in chunks of 500
(`tracker import-answers`: the chunk whose key lookup scanned the whole source when no
statistics existed; each imported key leaves a dead entry in the pending range of the queue
index), then times claims of 10 + their 10 answers, as annotators make them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from bench.report import Table, ms, percentile
from bench.scale import pg_schema, record_all
from tracker.models import Answer
from tracker.records import AnswerRecord, DatasetRef
from tracker.store import Store

LEASE = timedelta(minutes=30)
#: The tables the claim and the answers rewrite, vacuumed in the "autovacuum on" run.
TABLES = "items, objects, owners"


def _vacuum(store: Store) -> None:
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM (ANALYZE) {TABLES}"))


def _step(store: Store, dataset: DatasetRef, size: int) -> tuple[float, float]:
    """Claim `size` keys and answer them: (claim seconds, answer seconds)."""
    started = time.perf_counter()
    leases = store.claim(dataset, "bench-owner", size, LEASE)
    claimed = time.perf_counter()
    store.record_answers(
        dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "bench") for lease in leases]
    )
    return claimed - started, time.perf_counter() - claimed


def measure(
    url: str, keys: int, answered: int, batches: int, vacuum: Callable[[Store], None] | None
) -> dict[str, list[float]]:
    """Timings of one run; `vacuum` (if any) runs every 5% of the keys answered and every
    tenth of the batches, as autovacuum would with the 0008 settings."""
    times: dict[str, list[float]] = {"bulk": [], "claim": [], "answer": [], "both": []}
    with Store.open(url) as store:
        record_all(store, keys)
        dataset = store.dataset(store.source("bench-bucket", "", create=True), "bench", create=True)
        every = max(1, keys // 20 // 500)
        for i in range(answered // 500):
            chunk = [
                AnswerRecord(f"images/{k:09d}.jpg", Answer.ACCEPT, "import")
                for k in range(i * 500, (i + 1) * 500)
            ]
            started = time.perf_counter()
            store.record_answers(dataset, chunk)
            times["bulk"].append(time.perf_counter() - started)
            if vacuum is not None and i % every == every - 1:
                vacuum(store)
        for i in range(batches):
            claim, answer = _step(store, dataset, 10)
            times["claim"].append(claim)
            times["answer"].append(answer)
            times["both"].append(claim + answer)
            if vacuum is not None and i % (batches // 10) == batches // 10 - 1:
                vacuum(store)
    return times


@contextmanager
def _sqlite(tmp: str) -> Iterator[str]:
    yield f"sqlite:///{Path(tmp) / 'vacuum.db'}"


def run(keys: int, pg_url: str | None) -> list[Table]:
    answered = keys * 27 // 200  # 270k of 2M, as measured in the issue
    batches = 1000
    table = Table(
        f"PostgreSQL without help: claim + answer at {keys:,} keys, {answered:,} answered first",
        [
            "measure",
            "SQLite",
            "PG, autovacuum off",
            "PG, VACUUM (ANALYZE) at intervals",
            "PG off / SQLite",
            "PG on / SQLite",
        ],
    )
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        with _sqlite(tmp) as url:
            results["sqlite"] = measure(url, keys, answered, batches, None)
        if pg_url:
            with pg_schema(pg_url) as url:
                results["off"] = measure(url, keys, answered, batches, None)
            with pg_schema(pg_url) as url:
                results["on"] = measure(url, keys, answered, batches, _vacuum)
    rows = [
        ("import 500 answers, median", "bulk", 0.5),
        ("import 500 answers, p99", "bulk", 0.99),
        ("claim 10, median", "claim", 0.5),
        ("claim 10, p99", "claim", 0.99),
        ("answer 10, median", "answer", 0.5),
        ("claim 10 + answer 10, median", "both", 0.5),
        ("claim 10 + answer 10, p99", "both", 0.99),
    ]
    for label, name, fraction in rows:
        cells = []
        for backend in ("sqlite", "off", "on"):
            values = results.get(backend, {}).get(name)
            cells.append(percentile(values, fraction) if values else None)
        sq = cells[0]
        table.add(
            label,
            *(ms(c) if c is not None else "-" for c in cells),
            *(f"{c / sq:.1f}x" if c is not None and sq else "-" for c in cells[1:]),
        )
    table.notes.append(
        "target: PostgreSQL within 2x of SQLite. The server's autovacuum is off "
        "(`SHOW autovacuum`), and a table's `autovacuum_enabled` cannot turn it on, so "
        "'on' runs `VACUUM (ANALYZE) " + TABLES + "` every 5% of keys answered and every "
        f"{batches // 10} batches."
    )
    table.notes.append(f"claims: {batches:,} batches after the bulk answers.")
    return [table]

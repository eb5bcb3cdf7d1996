"""`tracker status` at scale: the counters (migration 0007) beside the COUNT(*) oracle.

Fills one source with N keys (pages of 5,000), claims and answers a few thousand so that
every counter has something in it (and PostgreSQL has delta rows to sum), then times what
`status` asks of the DB, `Store.counts` + `bucket_changes` + the source's totals, against
the same numbers recounted (`Store.recount`, `recount_bucket_changes`, `recount_source`).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import Table, median, ms, timed
from bench.scale import pg_schema
from tracker.models import Answer
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store

PAGE = 5_000
RUNS = 7


def fill(store: Store, total: int) -> None:
    source = store.source("status-bucket", "", create=True)
    dataset = store.dataset(source, "ds", create=True)
    now = datetime.now(UTC)
    for start in range(0, total, PAGE):
        page = [
            ListedObject(f"images/{i:09d}.jpg", 1000, f"{i:032x}", now)
            for i in range(start, min(start + PAGE, total))
        ]
        store.record_page(source, page, next_token=None, last_key=None, exhausted=False)
    for n in range(200):
        leases = store.claim(dataset, "bench", 20, timedelta(minutes=30))
        answers = [AnswerRecord(x.key, Answer.ACCEPT, "s") for x in leases[: 10 + n % 10]]
        store.record_answers(dataset, answers)
    store.analyze()


def measure(store: Store) -> tuple[float, float]:
    """Median seconds of `status`'s queries from the counters, then from the recount."""
    source = store.source("status-bucket")
    dataset = store.dataset(source, "ds")

    def counters() -> None:
        store.counts(dataset)
        store.bucket_changes(dataset)
        store.object_count(source)
        store.deleted_count(source)

    def recount() -> None:
        store.recount(dataset)
        store.recount_bucket_changes(dataset)
        store.recount_source(source)

    assert store.counts(dataset).by_state == store.recount(dataset).by_state
    fast = median([timed(counters)[0] for _ in range(RUNS)])
    slow = median([timed(recount)[0] for _ in range(max(RUNS // 2, 3))])
    return fast, slow


def run(sizes: list[int], pg_url: str | None) -> Table:
    table = Table(
        f"Status queries: counters vs COUNT(*) recount (median of {RUNS} runs)",
        ["keys", "DB", "counters", "COUNT(*) recount", "recount / counters", "target"],
    )
    with tempfile.TemporaryDirectory(prefix="tracker-bench-status-") as tmp:
        for total in sizes:
            for backend in ("sqlite", "postgresql"):
                if backend == "postgresql" and not pg_url:
                    continue
                if backend == "sqlite":
                    path = Path(tmp) / f"status{total}.db"
                    with Store.open(f"sqlite:///{path}") as store:
                        fill(store, total)
                        fast, slow = measure(store)
                    path.unlink()
                else:
                    with pg_schema(pg_url) as url, Store.open(url) as store:  # type: ignore[arg-type]
                        fill(store, total)
                        fast, slow = measure(store)
                table.add(
                    f"{total:,}", backend, ms(fast), ms(slow), f"{slow / fast:,.0f}x", "<= 20 ms"
                )
    return table

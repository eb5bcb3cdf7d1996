"""Claims in random order beside claims in listing order, at 1M keys, in the same run.

Issue 15's target: random order costs no full listing and no scan per claim, so a claim
stays an index range read of the same order of cost as listing order. Setting the order
ranks every key listed so far once (reported on its own row); afterwards each claim reads
`ix_items_rank`. The claims are measured on a fresh dataset and again once half of its
keys are answered, where a claim that skipped claimed keys (an anti-join) would slow down.
The keys are inserted as `bench.datasets` does (INSERT ... SELECT, beside a dataset that
annotated 90% of them).
"""

from __future__ import annotations

import sys
import uuid

from sqlalchemy import text

from bench.datasets import claim_series, database, fill
from bench.report import Table, median, ms, percentile, timed
from tracker.ordering import Order
from tracker.records import DatasetRef
from tracker.store import Store


def answer_half(store: Store, dataset: DatasetRef) -> None:
    """Every other pending key of the dataset annotated, straight in SQL."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE items SET state = 'annotated', answer = 'accept', answer_count = 1 "
                "WHERE dataset_id = :d AND state = 'pending' AND id % 2 = 0"
            ),
            {"d": dataset.id},
        )


def analyze(store: Store) -> None:
    """Fresh planner statistics on PostgreSQL, as autovacuum keeps them (it is off on the
    test server): the ranking just wrote N rows."""
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


def run(keys: int, pg_url: str | None) -> Table:
    table = Table(
        f"Claims in random vs listing order at {keys:,} keys (10 keys per claim)",
        ["database", "order", "claims on", "claim median", "claim p95", "vs listing order"],
    )
    for kind in ["sqlite"] + (["postgresql"] if pg_url else []):
        print(f"order: {kind}, {keys:,} keys...", file=sys.stderr, flush=True)
        with database(kind, pg_url) as url, Store.open(url) as store:
            fill(store, keys)
            source = store.source("bench-datasets", "")
            listing = store.dataset(source, f"listing-{uuid.uuid4().hex[:6]}", create=True)
            times = claim_series(store, listing)
            base = median(times)
            table.add(
                kind, "listing", "a new dataset", ms(base), ms(percentile(times, 0.95)), "1.00x"
            )
            shuffled = store.dataset(source, f"random-{uuid.uuid4().hex[:6]}", create=True)
            seconds, _ = timed(lambda ds=shuffled: store.set_order(ds, Order("random", 1)))
            analyze(store)
            table.add(kind, "random", f"(ranking {keys:,} keys, once)", ms(seconds), "", "")
            for label in ("a new dataset", "half of it answered"):
                if label != "a new dataset":
                    answer_half(store, shuffled)
                    analyze(store)
                times = claim_series(store, shuffled)
                mid = median(times)
                table.add(
                    kind,
                    "random",
                    label,
                    ms(mid),
                    ms(percentile(times, 0.95)),
                    f"{mid / base:.2f}x",
                )
    table.notes.append(
        "each database: one source of N keys beside a dataset that annotated 90% of them; the "
        "ratio is to listing-order claims of a new dataset measured in the same run"
    )
    return table

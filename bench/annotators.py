"""`tracker status`'s annotator table at millions of keys, beside the dataset counts that
`status` already gathers (the baseline, measured in the same run).

Issue 15's target: per-annotator numbers come from indexes, fast at 10M keys. The source
and its answers are made as `bench.datasets` makes them (nine keys in ten annotated), then
spread over 8 sessions answering through 2 processes, one answer a second going back from
now (so the last hour holds 3,600 of them), each 10 s after its serve.
"""

from __future__ import annotations

import sys

from sqlalchemy import text

from bench.datasets import database, fill
from bench.report import Table, median, ms, timed
from tracker.store import Store

SESSIONS = 8
REPEATS = 5

_SPREAD_SQLITE = """
UPDATE items SET session_id = 'done-s' || (id % 8), answered_via = 'p' || (id % 2),
    annotated_at = datetime('now', '-' || id || ' seconds'),
    served_at = datetime('now', '-' || (id + 10) || ' seconds')
WHERE dataset_id = :d
"""
_SPREAD_PG = """
UPDATE items SET session_id = 'done-s' || (id % 8), answered_via = 'p' || (id % 2),
    annotated_at = now() - make_interval(secs => id),
    served_at = now() - make_interval(secs => id + 10)
WHERE dataset_id = :d
"""


def spread(store: Store) -> None:
    dataset = store.dataset(store.source("bench-datasets", ""), "done")
    pg = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as conn:
        conn.execute(text(_SPREAD_PG if pg else _SPREAD_SQLITE), {"d": dataset.id})
    if pg:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


def measure(store: Store) -> tuple[float, float, int]:
    """Median seconds of the dataset's counts and of its annotator table; its answers."""
    dataset = store.dataset(store.source("bench-datasets", ""), "done")
    counts = [timed(lambda: store.counts(dataset))[0] for _ in range(REPEATS)]
    runs = [timed(lambda: store.annotators(dataset)) for _ in range(REPEATS)]
    found = runs[-1][1]
    assert len(found) == SESSIONS
    return median(counts), median([seconds for seconds, _ in runs]), sum(a.answers for a in found)


def run(sizes: list[int], pg_url: str | None) -> Table:
    table = Table(
        f"The annotator table ({SESSIONS} sessions, 90% of the keys answered)",
        ["database", "keys", "answers", "dataset counts", "annotators", "annotators / counts"],
    )
    for kind in ["sqlite"] + (["postgresql"] if pg_url else []):
        for keys in sizes:
            print(f"annotators: {kind}, {keys:,} keys...", file=sys.stderr, flush=True)
            with database(kind, pg_url) as url, Store.open(url) as store:
                fill(store, keys)
                spread(store)
                counts, table_time, answers = measure(store)
            table.add(
                kind,
                f"{keys:,}",
                f"{answers:,}",
                ms(counts),
                ms(table_time),
                f"{table_time / counts:.2f}x",
            )
    table.notes.append(
        f"medians of {REPEATS}; the counts are what `status` read before the annotator table"
    )
    return table

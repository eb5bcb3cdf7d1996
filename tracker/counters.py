"""Counters behind `tracker status`: what they are, and the numbers made from them.

The database keeps them (triggers from migration 0007, in the transaction that changes the
rows): per source the keys listed and deleted, per dataset its `items` rows by state, by
state among live (not deleted) objects, by answer, and answers given for another ETag than
the object's now. Every number `status` shows is then a few sums, whatever the number of
keys. The store's `recount` is the oracle: the same numbers from COUNT(*)s of the rows,
which `tracker db check` compares with these.

Pure functions only: the SQL is in `tracker.store`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from tracker.records import BucketChanges, Counts
from tracker.states import Answer, ItemState

#: The columns of `dataset_counts`, in order.
ITEM_COUNTERS = (
    "served",
    "annotated",
    "failed",
    "live_served",
    "live_annotated",
    "live_failed",
    "accepted",
    "rejected",
    "ignored",
    "changed",
)


@dataclass(frozen=True)
class SourceTally:
    listed: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class DatasetTally:
    served: int = 0
    annotated: int = 0
    failed: int = 0
    live_served: int = 0
    live_annotated: int = 0
    live_failed: int = 0
    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    changed: int = 0


def pending(source: SourceTally, dataset: DatasetTally) -> int:
    """Keys pending for the dataset: the source's live keys less the dataset's live rows
    that are not pending.

    Equal to the oracle (`Store._pending`: pending rows, plus objects past the frontier
    without a row) because every object at or below a dataset's frontier has a row: the
    frontier only moves past objects it gave rows to (`Store._claim_new`, `_rank_new`).
    On PostgreSQL, ids come from a sequence in the order inserts start, not commit: an
    insert holds its source's frontier lock shared and a frontier walk takes it exclusive
    (`Store._hold_frontier`), so the frontier never moves past an object whose insert has
    not committed (`tests/integration/test_frontier_race.py`).
    """
    live = source.listed - source.deleted
    return live - dataset.live_served - dataset.live_annotated - dataset.live_failed


def counts_of(source: SourceTally, dataset: DatasetTally) -> Counts:
    """`Counts` by state and by answer (expired leases and the last hour are the store's)."""
    by_state = {
        ItemState.PENDING: pending(source, dataset),
        ItemState.SERVED: dataset.served,
        ItemState.ANNOTATED: dataset.annotated,
        ItemState.FAILED: dataset.failed,
    }
    by_answer = {
        Answer.ACCEPT: dataset.accepted,
        Answer.REJECT: dataset.rejected,
        Answer.IGNORE: dataset.ignored,
    }
    return Counts(
        by_state={s: n for s, n in by_state.items() if n},
        by_answer={a: n for a, n in by_answer.items() if n},
    )


def changes_of(source: SourceTally, dataset: DatasetTally) -> BucketChanges:
    return BucketChanges(
        deleted=source.deleted,
        deleted_annotated=dataset.annotated - dataset.live_annotated,
        changed=dataset.changed,
    )


@dataclass(frozen=True)
class Numbers:
    """Every number the counters stand for, as `tracker db check` compares them."""

    listed: int = 0
    deleted: int = 0
    pending: int = 0
    served: int = 0
    annotated: int = 0
    failed: int = 0
    accept: int = 0
    reject: int = 0
    ignore: int = 0
    deleted_annotated: int = 0
    changed: int = 0
    #: Served keys whose object is live: what a stream waits for (`Store.open_work`).
    open_served: int = 0


def numbers(listed: int, counts: Counts, changes: BucketChanges, open_served: int) -> Numbers:
    """The numbers of a dataset from `Counts`, `BucketChanges` and the open served keys,
    however they were obtained (counters or recount)."""
    return Numbers(
        listed=listed,
        deleted=changes.deleted,
        pending=counts.state(ItemState.PENDING),
        served=counts.state(ItemState.SERVED),
        annotated=counts.state(ItemState.ANNOTATED),
        failed=counts.state(ItemState.FAILED),
        accept=counts.by_answer.get(Answer.ACCEPT, 0),
        reject=counts.by_answer.get(Answer.REJECT, 0),
        ignore=counts.by_answer.get(Answer.IGNORE, 0),
        deleted_annotated=changes.deleted_annotated,
        changed=changes.changed,
        open_served=open_served,
    )


def numbers_of(source: SourceTally, dataset: DatasetTally) -> Numbers:
    return numbers(
        source.listed, counts_of(source, dataset), changes_of(source, dataset), dataset.live_served
    )


@dataclass(frozen=True)
class Difference:
    """One number that the counters and the recount disagree on."""

    source: str
    dataset: str | None
    name: str
    kept: int
    recounted: int


def differences(
    source: str, dataset: str | None, kept: Numbers, recounted: Numbers
) -> list[Difference]:
    """The numbers that differ between the counters (`kept`) and the recount."""
    left, right = asdict(kept), asdict(recounted)
    return [
        Difference(source, dataset, f.name, left[f.name], right[f.name])
        for f in fields(Numbers)
        if left[f.name] != right[f.name]
    ]


@dataclass(frozen=True)
class TableHealth:
    """PostgreSQL's statistics of one table (`pg_stat_user_tables`)."""

    table: str
    live: int
    dead: int
    modified_since_analyze: int
    analyzed: bool


#: Stale statistics: rows changed since the last ANALYZE above this share of the live
#: rows (autovacuum's own default threshold is 10% + 50 rows).
STALE_SHARE = 0.2
#: Bloat: dead tuples above this share of the live rows (autovacuum's default: 20% + 50).
BLOAT_SHARE = 0.2
#: Tables smaller than this are never reported: a plan over them costs nothing anyway.
SMALL_TABLE = 1000


def health_advice(health: TableHealth) -> list[tuple[str, str]]:
    """What is wrong with a table's statistics, and the command that fixes it."""
    size = max(health.live, health.dead, health.modified_since_analyze)
    if size < SMALL_TABLE:
        return []
    advice = []
    if health.dead > BLOAT_SHARE * max(health.live, 1):
        advice.append(
            (
                f"{health.dead:,} dead tuples beside {health.live:,} live ones",
                f"VACUUM (ANALYZE) {health.table}",
            )
        )
    elif not health.analyzed:
        advice.append(("no statistics yet (never analyzed)", f"ANALYZE {health.table}"))
    elif health.modified_since_analyze > STALE_SHARE * max(health.live, 1):
        advice.append(
            (
                f"{health.modified_since_analyze:,} rows changed since the last ANALYZE "
                f"({health.live:,} live)",
                f"ANALYZE {health.table}",
            )
        )
    return advice

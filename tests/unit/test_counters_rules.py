"""`tracker.counters` and `tracker.dbcheck` number for number: what `tracker status` and
`tracker db check` print is made here, so every field and every advice line is pinned.

Each test was seen to fail on the `scripts/mutants` mutants of the function it names
(a field taken from the wrong counter, `>` turned into `>=`, a changed message).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tracker.counters import (
    ITEM_COUNTERS,
    DatasetTally,
    Difference,
    Numbers,
    SourceTally,
    TableHealth,
    changes_of,
    differences,
    health_advice,
    numbers,
    numbers_of,
)
from tracker.dbcheck import CheckReport, check
from tracker.records import BucketChanges, Counts
from tracker.states import Answer, ItemState

# every counter a different number, so a field read from the wrong one shows
SOURCE = SourceTally(listed=100, deleted=7)
DATASET = DatasetTally(
    served=11,
    annotated=23,
    failed=5,
    live_served=10,
    live_annotated=19,
    live_failed=4,
    accepted=13,
    rejected=6,
    ignored=3,
    changed=2,
)


def test_the_counter_columns_are_the_dataset_tallys_fields_in_order() -> None:
    assert list(ITEM_COUNTERS) == list(DatasetTally.__dataclass_fields__)


def test_the_numbers_of_the_counters_are_each_taken_from_its_own_counter() -> None:
    assert numbers_of(SOURCE, DATASET) == Numbers(
        listed=100,
        deleted=7,
        pending=100 - 7 - 10 - 19 - 4,
        served=11,
        annotated=23,
        failed=5,
        accept=13,
        reject=6,
        ignore=3,
        deleted_annotated=23 - 19,
        changed=2,
        open_served=10,
    )


def test_bucket_changes_of_the_counters() -> None:
    assert changes_of(SOURCE, DATASET) == BucketChanges(deleted=7, deleted_annotated=4, changed=2)


def test_numbers_of_counts_that_leave_zeros_out_are_zeros() -> None:
    assert numbers(3, Counts(), BucketChanges(), 0) == Numbers(listed=3)
    counts = Counts(
        by_state={ItemState.PENDING: 1, ItemState.SERVED: 2, ItemState.ANNOTATED: 3,
                   ItemState.FAILED: 4},
        by_answer={Answer.ACCEPT: 5, Answer.REJECT: 6, Answer.IGNORE: 7},
    )  # fmt: skip
    assert numbers(9, counts, BucketChanges(8, 10, 11), 12) == Numbers(
        9, 8, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12
    )


def test_every_number_that_differs_is_named_in_field_order() -> None:
    kept = Numbers(listed=1, pending=3, open_served=5, changed=9)
    recounted = Numbers(listed=2, pending=3, open_served=4, changed=9)
    assert differences("s3://b", None, kept, recounted) == [
        Difference("s3://b", None, "listed", 1, 2),
        Difference("s3://b", None, "open_served", 5, 4),
    ]
    assert differences("s3://b", "ds", kept, kept) == []


def _health(live: int, dead: int = 0, modified: int = 0, analyzed: bool = True) -> TableHealth:
    return TableHealth("items", live, dead, modified, analyzed)


def test_a_table_under_a_thousand_rows_by_every_measure_gets_no_advice() -> None:
    assert health_advice(_health(999, dead=999, modified=999, analyzed=False)) == []
    assert health_advice(_health(0, dead=1000)) == [
        ("1,000 dead tuples beside 0 live ones", "VACUUM (ANALYZE) items")
    ]
    assert health_advice(_health(0, modified=1000)) == [
        ("1,000 rows changed since the last ANALYZE (0 live)", "ANALYZE items")
    ]


def test_bloat_over_a_fifth_of_the_live_rows_asks_for_vacuum_analyze_first() -> None:
    assert health_advice(_health(10_000, dead=2_000, modified=9_000, analyzed=False)) == [
        ("no statistics yet (never analyzed)", "ANALYZE items")
    ]
    assert health_advice(_health(10_000, dead=2_001, modified=9_000, analyzed=False)) == [
        ("2,001 dead tuples beside 10,000 live ones", "VACUUM (ANALYZE) items")
    ]


def test_changes_over_a_fifth_of_the_live_rows_since_analyze_ask_for_analyze() -> None:
    assert health_advice(_health(10_000, modified=2_000)) == []
    assert health_advice(_health(10_000, modified=2_001)) == [
        ("2,001 rows changed since the last ANALYZE (10,000 live)", "ANALYZE items")
    ]
    assert health_advice(_health(1_000, analyzed=False)) == [
        ("no statistics yet (never analyzed)", "ANALYZE items")
    ]


# --- tracker db check -------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    uri: str


@dataclass(frozen=True)
class _Dataset:
    name: str


@dataclass
class _Store:
    """The part of `Store` that `check` reads, with numbers chosen to differ."""

    health: list[TableHealth] = field(default_factory=list)

    def sources(self) -> list[_Source]:
        return [_Source("s3://a"), _Source("s3://b/p/")]

    def source_numbers(self, source: _Source) -> tuple[int, int]:
        return (10, 1) if source.uri == "s3://a" else (5, 0)

    def recount_source(self, source: _Source) -> tuple[int, int]:
        return (10, 2) if source.uri == "s3://a" else (6, 0)

    def datasets(self, source: _Source) -> list[_Dataset]:
        return [_Dataset("one"), _Dataset("two")] if source.uri == "s3://a" else []

    def numbers(self, dataset: _Dataset) -> Numbers:
        return Numbers(pending=3, served=len(dataset.name))

    def recount_numbers(self, dataset: _Dataset) -> Numbers:
        return Numbers(pending=4 if dataset.name == "two" else 3, served=len(dataset.name))

    def table_health(self) -> list[TableHealth]:
        return self.health

    #: Every read below happened inside `snapshot()` (counters and recount from one point
    #: in time: read apart beside a writer, they differ although both are exact).
    outside: list[str] = field(default_factory=list)
    inside: bool = False

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    def __getattribute__(self, name: str) -> object:
        reads = {"source_numbers", "recount_source", "numbers", "recount_numbers"}
        if name in reads and not object.__getattribute__(self, "inside"):
            object.__getattribute__(self, "outside").append(name)
        return object.__getattribute__(self, name)


def test_db_check_compares_every_source_and_dataset_with_its_recount() -> None:
    store = _Store()
    report = check(store)  # type: ignore[arg-type]
    assert store.outside == []  # seen to fail with `check` reading outside `snapshot()`
    assert report.differences == [
        Difference("s3://a", None, "deleted", 1, 2),
        Difference("s3://a", "two", "pending", 3, 4),
        Difference("s3://b/p/", None, "listed", 5, 6),
    ]
    assert report.tables == [] and report.advice == []


def test_db_check_gives_each_tables_advice_in_its_json() -> None:
    items = TableHealth("items", 10_000, 5_000, 0, True)
    objects = TableHealth("objects", 10, 0, 0, False)
    report = check(_Store([items, objects]))  # type: ignore[arg-type]
    assert report.advice == [
        ("items", "5,000 dead tuples beside 10,000 live ones", "VACUUM (ANALYZE) items")
    ]
    assert report.to_json() == {
        "differences": [
            {"source": "s3://a", "dataset": None, "name": "deleted", "kept": 1, "recounted": 2},
            {"source": "s3://a", "dataset": "two", "name": "pending", "kept": 3, "recounted": 4},
            {"source": "s3://b/p/", "dataset": None, "name": "listed", "kept": 5, "recounted": 6},
        ],
        "tables": [
            {
                "table": "items",
                "live": 10_000,
                "dead": 5_000,
                "modified_since_analyze": 0,
                "analyzed": True,
                "problems": [
                    {
                        "problem": "5,000 dead tuples beside 10,000 live ones",
                        "fix": "VACUUM (ANALYZE) items",
                    }
                ],
            },
            {
                "table": "objects",
                "live": 10,
                "dead": 0,
                "modified_since_analyze": 0,
                "analyzed": False,
                "problems": [],
            },
        ],
    }


def test_an_empty_report_is_empty_json() -> None:
    assert CheckReport().to_json() == {"differences": [], "tables": []}

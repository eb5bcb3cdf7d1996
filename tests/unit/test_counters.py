"""Pure rules of `tracker.counters`: numbers made of counters, differences, and the advice
`tracker db check` gives for PostgreSQL's table statistics."""

from __future__ import annotations

from tracker.counters import (
    DatasetTally,
    Numbers,
    SourceTally,
    TableHealth,
    changes_of,
    counts_of,
    differences,
    health_advice,
    numbers_of,
)
from tracker.states import Answer, ItemState


def test_pending_is_the_live_keys_less_the_live_rows_that_are_not_pending():
    source = SourceTally(listed=10, deleted=2)
    dataset = DatasetTally(served=3, live_served=2, annotated=4, live_annotated=3, failed=1,
                           live_failed=1, accepted=3, ignored=1)  # fmt: skip
    counts = counts_of(source, dataset)
    assert counts.by_state == {
        ItemState.PENDING: 8 - 2 - 3 - 1,
        ItemState.SERVED: 3,
        ItemState.ANNOTATED: 4,
        ItemState.FAILED: 1,
    }
    assert counts.by_answer == {Answer.ACCEPT: 3, Answer.IGNORE: 1}
    assert changes_of(source, dataset).deleted_annotated == 1
    assert numbers_of(source, dataset).open_served == 2


def test_zero_counts_are_left_out_as_the_recount_leaves_them_out():
    assert counts_of(SourceTally(), DatasetTally()).by_state == {}


def test_differences_name_each_number_that_differs():
    found = differences("s3://b", "ds", Numbers(pending=3, served=1), Numbers(pending=4, served=1))
    assert [(d.name, d.kept, d.recounted) for d in found] == [("pending", 3, 4)]


def _health(live: int, dead: int = 0, modified: int = 0, analyzed: bool = True) -> TableHealth:
    return TableHealth("items", live, dead, modified, analyzed)


def test_small_tables_get_no_advice():
    assert health_advice(_health(500, dead=400, analyzed=False)) == []


def test_bloat_asks_for_vacuum_analyze():
    ((_, command),) = health_advice(_health(10_000, dead=5_000))
    assert command == "VACUUM (ANALYZE) items"


def test_no_statistics_or_many_changes_since_the_last_analyze_ask_for_analyze():
    assert health_advice(_health(10_000, analyzed=False))[0][1] == "ANALYZE items"
    assert health_advice(_health(10_000, modified=5_000))[0][1] == "ANALYZE items"
    assert health_advice(_health(10_000, modified=100)) == []

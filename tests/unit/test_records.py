"""`plan_answers` and the small value types: pure functions, no database."""

from __future__ import annotations

import pytest

from tracker.models import Answer, ItemState
from tracker.records import (
    AnswerRecord,
    Counts,
    ExistingAnswer,
    ItemFilter,
    SourceRef,
    plan_answers,
)

ACCEPT, REJECT = Answer.ACCEPT, Answer.REJECT


def existing(item_id: int, state: ItemState, answer=None, session=None) -> ExistingAnswer:
    return ExistingAnswer(item_id, state, answer, session)


def test_first_answer_for_a_served_key_annotates_it():
    plan = plan_answers([AnswerRecord("a", ACCEPT, "s1")], {"a": existing(1, ItemState.SERVED)})
    assert plan.first == {1: AnswerRecord("a", ACCEPT, "s1")}
    assert plan.extra == {}


def test_first_answer_for_pending_or_failed_keys_also_annotates_them():
    plan = plan_answers(
        [AnswerRecord("p", ACCEPT), AnswerRecord("f", REJECT)],
        {"p": existing(1, ItemState.PENDING), "f": existing(2, ItemState.FAILED)},
    )
    assert set(plan.first) == {1, 2}


def test_replaying_the_stored_answer_is_a_no_op():
    row = existing(7, ItemState.ANNOTATED, ACCEPT, "s1")
    plan = plan_answers([AnswerRecord("a", ACCEPT, "s1")] * 3, {"a": row})
    assert plan.first == {} and plan.extra == {}


def test_a_different_answer_for_an_annotated_key_only_counts():
    row = existing(7, ItemState.ANNOTATED, ACCEPT, "s1")
    plan = plan_answers(
        [AnswerRecord("a", REJECT, "s1"), AnswerRecord("a", ACCEPT, "s2")], {"a": row}
    )
    assert plan.first == {}
    assert plan.extra == {7: 2}


def test_first_answer_wins_within_one_batch_and_later_ones_count():
    plan = plan_answers(
        [
            AnswerRecord("a", ACCEPT, "s1"),
            AnswerRecord("a", ACCEPT, "s1"),  # duplicate: ignored
            AnswerRecord("a", REJECT, "s2"),
        ],
        {"a": existing(3, ItemState.SERVED)},
    )
    assert plan.first == {3: AnswerRecord("a", ACCEPT, "s1")}
    assert plan.extra == {3: 1}


def test_a_key_without_a_row_is_a_caller_error():
    with pytest.raises(KeyError):
        plan_answers([AnswerRecord("never-listed", ACCEPT)], {})


def test_session_is_part_of_what_makes_an_answer_distinct():
    row = existing(1, ItemState.ANNOTATED, ACCEPT, None)
    assert plan_answers([AnswerRecord("a", ACCEPT, None)], {"a": row}).extra == {}
    assert plan_answers([AnswerRecord("a", ACCEPT, "s9")], {"a": row}).extra == {1: 1}


def test_empty_batch_plans_nothing():
    plan = plan_answers([], {"a": existing(1, ItemState.SERVED)})
    assert plan.first == {} and plan.extra == {}


def test_item_filter_glob_matches_whole_key_and_star_crosses_slashes():
    where = ItemFilter(match="cats/*.jpg")
    assert where.matches_key("cats/a/b.jpg")
    assert not where.matches_key("dogs/cats/a.jpg")
    assert not where.matches_key("cats/A.JPG")  # case-sensitive, like S3 keys
    assert ItemFilter().matches_key("anything")


def test_source_uri_and_counts_helpers():
    assert SourceRef(1, "b", "").uri == "s3://b"
    assert SourceRef(1, "b", "p/").uri == "s3://b/p/"
    counts = Counts(by_state={ItemState.PENDING: 2, ItemState.SERVED: 3})
    assert counts.total == 5
    assert counts.state(ItemState.FAILED) == 0

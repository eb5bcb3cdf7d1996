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
    later_answers_of,
    later_answers_text,
    plan_answers,
)

ACCEPT, REJECT, IGNORE = Answer.ACCEPT, Answer.REJECT, Answer.IGNORE


def existing(
    item_id: int, state: ItemState, answer=None, session=None, later=frozenset()
) -> ExistingAnswer:
    return ExistingAnswer(item_id, state, answer, session, frozenset(later))


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


def test_a_replayed_later_answer_is_a_no_op():
    # Failed (extra {7: 1}) when plan_answers remembered only the stored first answer.
    row = existing(7, ItemState.ANNOTATED, ACCEPT, "s1", later={(REJECT, "s2")})
    plan = plan_answers([AnswerRecord("a", REJECT, "s2")], {"a": row})
    assert plan.first == {} and plan.extra == {} and plan.later == {}


def test_a_batch_with_a_first_and_a_later_answer_replayed_whole_is_a_no_op():
    batch = [AnswerRecord("a", ACCEPT, "s1"), AnswerRecord("a", REJECT, "s2")]
    once = plan_answers(batch, {"a": existing(3, ItemState.SERVED)})
    assert once.extra == {3: 1} and once.later == {3: frozenset({(REJECT, "s2")})}
    stored = existing(3, ItemState.ANNOTATED, ACCEPT, "s1", later=once.later[3])
    again = plan_answers(batch, {"a": stored})
    assert again.first == {} and again.extra == {}


def test_interleaved_answers_from_two_sessions_each_count_once():
    row = existing(4, ItemState.ANNOTATED, ACCEPT, "s1")
    plan = plan_answers(
        [
            AnswerRecord("a", REJECT, "s2"),
            AnswerRecord("a", ACCEPT, "s1"),  # the first answer again
            AnswerRecord("a", IGNORE, "s2"),  # s2 changed its mind: counted
            AnswerRecord("a", REJECT, "s2"),  # and back: cannot be told from a replay
        ],
        {"a": row},
    )
    assert plan.extra == {4: 2}
    assert plan.later == {4: frozenset({(REJECT, "s2"), (IGNORE, "s2")})}


def test_later_answers_already_stored_are_kept_in_the_new_set():
    row = existing(5, ItemState.ANNOTATED, ACCEPT, "s1", later={(REJECT, "s2")})
    plan = plan_answers([AnswerRecord("a", REJECT, None)], {"a": row})
    assert plan.extra == {5: 1}
    assert plan.later == {5: frozenset({(REJECT, "s2"), (REJECT, None)})}


def test_later_answers_text_is_one_text_per_set_and_reads_back():
    pairs = {(REJECT, "s2"), (IGNORE, None), (REJECT, None), (ACCEPT, "é")}
    text = later_answers_text(pairs)
    assert text == later_answers_text(sorted(pairs, key=str, reverse=True))
    assert text == '[["accept","é"],["ignore",null],["reject",null],["reject","s2"]]'
    assert later_answers_of(text) == pairs
    assert later_answers_text([]) is None
    assert later_answers_of(None) == frozenset() == later_answers_of("")


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

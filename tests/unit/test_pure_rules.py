"""Pure rules the store, the stream and the CLI rest on: no database, no S3, milliseconds.

Each is also exercised end to end by the integration tests; here each rule is pinned down
on its own, so that `pytest tests/unit` says in seconds which one broke.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracker.batching import FILL_LOOP_GAP, mid_batch
from tracker.cursors import cursor_move as _cursor_move
from tracker.display import printable
from tracker.durations import parse_duration
from tracker.errors import UsageError
from tracker.records import Cursor
from tracker.s3uri import key_problem, normalize_prefix, prefixes_overlap
from tracker.store import never_answered
from tracker.tasks import _timestamp, input_hash, session_id, task_hash

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _cursor(last_key: str | None, token: str | None, exhausted: bool = False) -> Cursor:
    return Cursor(token, last_key, 1, 1, NOW if exhausted else None, NOW)


@pytest.mark.parametrize(
    "given,stored",
    [("", ""), ("/", ""), ("img", "img/"), ("img/", "img/"), ("/img/cats", "img/cats/")],
)
def test_a_prefix_is_stored_as_a_folder(given, stored):
    assert normalize_prefix(given) == stored


def test_prefixes_overlap_when_one_holds_the_others_keys():
    assert prefixes_overlap("", "img/")
    assert prefixes_overlap("img/", "img/cats/")
    assert not prefixes_overlap("img/", "imgs/")


def test_the_cursor_moves_forward_only_in_utf8_order():
    current = _cursor("b", "T2")
    assert _cursor_move(current, "T1", "a", False, NOW, "T0") == {}  # an older page
    moved = _cursor_move(current, "T3", "c", False, NOW, "T2")
    assert moved == {"last_key": "c", "continuation_token": "T3", "exhausted_at": None}
    # UTF-8 byte order, not code point order of UTF-16: U+FFFD sorts before U+1F600.
    assert _cursor_move(_cursor("\ufffd", None), None, "\U0001f600", True, NOW, None)


def test_an_empty_truncated_page_moves_only_the_token_and_only_from_where_it_was_asked():
    current = _cursor("b", "T2")
    assert _cursor_move(current, "T3", None, False, NOW, "T2") == {"continuation_token": "T3"}
    assert _cursor_move(current, "T3", None, False, NOW, "T1") == {}  # another lister's


def test_the_final_empty_page_marks_the_listing_exhausted():
    moved = _cursor_move(_cursor("b", "T2"), None, None, True, NOW, "T2")
    assert moved == {"continuation_token": None, "exhausted_at": NOW}


def test_the_first_serve_keeps_the_historic_task_hash_and_each_later_serve_has_its_own():
    first = task_hash("b", "k.jpg", "image")
    assert task_hash("b", "k.jpg", "image", None, 1) == first
    later = {task_hash("b", "k.jpg", "image", None, n) for n in range(2, 50)}
    assert len(later) == 48 and first not in later
    assert input_hash("b", "k.jpg") == input_hash("b", "k.jpg")  # never salted


def test_never_answered_says_what_probably_happened():
    reason = never_answered(3)
    assert reason.startswith("served 3 times, never answered")
    assert "Prodigy dataset" in reason and "collision" in reason


def test_prodigys_timestamp_is_kept_when_plausible():
    assert _timestamp(1_700_000_000) == datetime.fromtimestamp(1_700_000_000, UTC)
    assert _timestamp("1700000000") is None
    assert _timestamp(True) is None
    assert _timestamp(10**20) is None


def test_a_long_session_id_is_shortened_deterministically_within_255_characters():
    long = "ds-" + "x" * 400
    assert session_id(long) == session_id(long)
    assert len(session_id(long) or "") <= 255
    assert session_id("ds-alice") == "ds-alice"
    assert session_id("ds-" + "x" * 400) != session_id("ds-" + "x" * 399 + "y")


@pytest.mark.parametrize(
    "key,problem",
    [("a.jpg", None), ("", "empty"), ("a\x00b", "NUL"), ("é" * 513, "1024")],
)
def test_keys_s3_cannot_hold_are_refused_the_same_way_for_both_databases(key, problem):
    found = key_problem(key)
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(
    "raw",
    ["\x1b]52;c;aGk=\x07evil", "\x1b[2J", "a\rb", "\u202eexe.jpg", "\u2066x\u2069", "\x9b31m"],
)
def test_control_and_bidi_characters_never_reach_the_terminal_raw(raw):
    shown = printable(raw)
    assert not any(ch in shown for ch in "\x1b\r\x07\u202e\u2066\u2069\x9b")


def test_zero_is_a_duration_only_where_it_is_allowed():
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    with pytest.raises(UsageError, match="positive"):
        parse_duration("0s")


# -- when Prodigy may be holding a partial batch (tracker.batching) ---------------------------


def test_a_resume_within_the_fill_loop_gap_is_mid_batch_even_if_an_answer_came_between() -> None:
    # Another session's answer landing while this batch is filled is no batch boundary.
    assert mid_batch(10.0, 10.0 + FILL_LOOP_GAP / 2, answered=10.0001, batch_gap=1.0)


def test_a_quick_resume_with_no_answer_since_is_mid_batch() -> None:
    assert mid_batch(10.0, 10.5, answered=None, batch_gap=1.0)
    assert mid_batch(10.0, 10.5, answered=9.0, batch_gap=1.0)  # answered before the hand-over


def test_a_resume_after_an_answer_and_a_round_trip_is_a_new_request() -> None:
    assert not mid_batch(10.0, 10.01, answered=10.005, batch_gap=1.0)


def test_a_resume_after_the_batch_gap_is_a_new_request() -> None:
    assert not mid_batch(10.0, 11.0, answered=None, batch_gap=1.0)

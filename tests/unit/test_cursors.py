"""`cursor_move`: the forward-only rule of every listing cursor, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

from tracker.cursors import cursor_move
from tracker.records import Cursor

NOW = datetime(2026, 12, 8, tzinfo=UTC)


def cursor(last_key=None, token=None, exhausted=False) -> Cursor:
    return Cursor(token, last_key, 1, 1, NOW if exhausted else None, None)


def test_a_page_ending_after_the_cursor_moves_it():
    assert cursor_move(cursor("k1", "T1"), "T2", "k2", False, NOW, "T1") == {
        "last_key": "k2",
        "continuation_token": "T2",
        "exhausted_at": None,
    }


def test_the_final_page_ending_after_the_cursor_marks_it_exhausted_without_a_token():
    assert cursor_move(cursor("k1", "T1"), "ignored", "k2", True, NOW, "T1") == {
        "last_key": "k2",
        "continuation_token": None,
        "exhausted_at": NOW,
    }


def test_a_page_ending_before_the_cursor_changes_nothing():
    # Mutation seen to fail: the forward test (utf8_after) replaced by `last_key is not None`.
    assert cursor_move(cursor("k3", None, exhausted=True), "T2", "k2", False, NOW, "T1") == {}
    assert cursor_move(cursor("k3", "T3"), None, "k2", True, NOW, "T1") == {}


def test_order_is_s3s_utf8_bytes_not_python_strings():
    # "é" is two bytes from 0xC3: after "z" (0x7A), as S3 lists them.
    assert cursor_move(cursor("z"), None, "é", False, NOW, None)["last_key"] == "é"
    assert cursor_move(cursor("é"), None, "z", False, NOW, None) == {}


def test_the_final_page_ending_at_the_cursors_last_key_marks_it_exhausted():
    # The two copies of this rule disagreed here: `finish_shards` marked the listing
    # exhausted, `record_page` left the token. Failed ({}) on the old `_cursor_move`.
    assert cursor_move(cursor("k2", "T2"), None, "k2", True, NOW, "T1") == {
        "continuation_token": None,
        "exhausted_at": NOW,
    }


def test_a_page_ending_at_the_cursors_last_key_not_final_changes_nothing():
    assert cursor_move(cursor("k2", "T2"), "T9", "k2", False, NOW, "T1") == {}
    assert cursor_move(cursor("k2", None, exhausted=True), "T9", "k2", False, NOW, "T1") == {}


def test_an_empty_final_page_marks_the_listing_exhausted():
    assert cursor_move(cursor("k2", "T2"), None, None, True, NOW, "T2") == {
        "continuation_token": None,
        "exhausted_at": NOW,
    }


def test_an_empty_truncated_page_moves_only_the_token_and_only_from_its_own_token():
    assert cursor_move(cursor("k2", "T2"), "T3", None, False, NOW, "T2") == {
        "continuation_token": "T3"
    }
    assert cursor_move(cursor("k2", "T9"), "T3", None, False, NOW, "T2") == {}  # moved on
    assert cursor_move(cursor("k2", "T2", exhausted=True), "T3", None, False, NOW, "T2") == {}
    assert cursor_move(cursor("k2", "T2"), None, None, False, NOW, "T2") == {}

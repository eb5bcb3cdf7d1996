"""Every state-store operation, on a SQLite file and on PostgreSQL (see `conftest.db_url`).

Tests drive the public `Store` API and read the database back with plain SQL where the API
does not expose a column (lease token, answer count); nothing here mocks the database.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tracker import store as store_module
from tracker.errors import SourceNotFound
from tracker.models import Answer, ItemState, items
from tracker.records import AnswerRecord, ItemFilter, ListedObject
from tracker.store import Store

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
PENDING, SERVED = ItemState.PENDING, ItemState.SERVED
ANNOTATED, FAILED = ItemState.ANNOTATED, ItemState.FAILED
ACCEPT, REJECT, IGNORE = Answer.ACCEPT, Answer.REJECT, Answer.IGNORE


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def src(store):
    return store.source("bucket", "images/", create=True)


def add(store: Store, source, keys, *, exhausted: bool = False, token: str | None = "tok") -> int:
    keys = list(keys)
    return store.record_page(
        source,
        [ListedObject(k, size=len(k), etag=f'"{i}"') for i, k in enumerate(keys)],
        next_token=None if exhausted else token,
        last_key=keys[-1] if keys else None,
        exhausted=exhausted,
    )


def row(store: Store, source, key: str):
    """The raw items row for `key`, read outside the store's API."""
    with store.engine.connect() as conn:
        return conn.execute(
            select(items).where(items.c.source_id == source.id, items.c.key == key)
        ).one()


def states(store: Store, source) -> dict[str, ItemState]:
    return {r.key: r.state for r in store.iter_items(source)}


def keys_of(leases) -> list[str]:
    return [lease.key for lease in leases]


# -- sources ------------------------------------------------------------------------------


def test_source_is_created_once_and_found_again(store):
    first = store.source("bucket", "p/", create=True)
    again = store.source("bucket", "p/", create=True)
    found = store.source("bucket", "p/")
    assert first == again == found
    assert first.uri == "s3://bucket/p/"


def test_same_bucket_with_another_prefix_is_another_source(store):
    a = store.source("bucket", "", create=True)
    b = store.source("bucket", "p/", create=True)
    assert a.id != b.id
    assert store.sources() == [a, b]


def test_unknown_source_raises_source_not_found_with_one_line_message(store):
    store.source("bucket", "p/", create=True)
    with pytest.raises(SourceNotFound) as error:
        store.source("bucket", "other/")
    message = str(error.value)
    assert "s3://bucket/other/" in message and "\n" not in message


def test_new_source_has_an_empty_cursor(store, src):
    cursor = store.cursor(src)
    assert cursor.continuation_token is None and cursor.last_key is None
    assert cursor.pages_listed == 0 and cursor.keys_listed == 0
    assert not cursor.exhausted


def test_sources_do_not_share_keys(store):
    a = store.source("bucket", "a/", create=True)
    b = store.source("bucket", "b/", create=True)
    add(store, a, ["same"])
    add(store, b, ["same"])
    assert keys_of(store.claim(a, "o", 10, LEASE)) == ["same"]
    assert states(store, b) == {"same": PENDING}


# -- record_page and the listing cursor ---------------------------------------------------


def test_record_page_inserts_pending_keys_and_advances_cursor(store, src):
    assert add(store, src, ["a", "b", "c"], token="t1") == 3
    assert states(store, src) == {"a": PENDING, "b": PENDING, "c": PENDING}
    cursor = store.cursor(src)
    assert (cursor.continuation_token, cursor.last_key) == ("t1", "c")
    assert (cursor.pages_listed, cursor.keys_listed) == (1, 3)
    stored = row(store, src, "b")
    assert (stored.size, stored.etag) == (1, '"1"')


def test_re_recording_a_page_keeps_states_and_counts_only_new_keys(store, src):
    add(store, src, ["a", "b", "c"])
    store.claim(src, "o", 1, LEASE)  # a -> served
    store.record_answers(src, [AnswerRecord("b", ACCEPT)])  # b -> annotated
    assert add(store, src, ["a", "b", "c", "d"]) == 1
    assert states(store, src) == {"a": SERVED, "b": ANNOTATED, "c": PENDING, "d": PENDING}
    assert store.cursor(src).keys_listed == 4
    assert row(store, src, "b").answer == ACCEPT


def test_empty_page_records_nothing_but_still_counts_a_page(store, src):
    assert add(store, src, [], token="t") == 0
    cursor = store.cursor(src)
    assert cursor.pages_listed == 1 and cursor.last_key is None


def test_cursor_never_moves_backward(store, src):
    add(store, src, ["k", "m"], token="t-m")
    add(store, src, ["a", "c"], token="t-c")  # a slower lister, or a --from-start pass
    cursor = store.cursor(src)
    assert (cursor.last_key, cursor.continuation_token) == ("m", "t-m")
    assert set(states(store, src)) == {"a", "c", "k", "m"}  # its keys still count


def test_cursor_follows_utf8_byte_order_not_utf16(store, src):
    # U+FFFF < U+10000 in UTF-8 bytes (and code points); UTF-16 would order them the other
    # way round (surrogates D800.. sort before FFFF).
    add(store, src, ["\uffff"], token="t1")
    add(store, src, ["\U00010000"], token="t2")
    assert store.cursor(src).last_key == "\U00010000"
    add(store, src, ["\uffff"], token="t3")
    assert store.cursor(src).continuation_token == "t2"


def test_last_page_marks_listing_exhausted_and_drops_the_token(store, src):
    add(store, src, ["a", "b"], token="t1")
    add(store, src, ["c"], exhausted=True)
    cursor = store.cursor(src)
    assert cursor.exhausted and cursor.continuation_token is None
    assert cursor.last_key == "c"


def test_empty_last_page_exhausts_listing_and_keeps_last_key(store, src):
    add(store, src, ["a", "b"], token="t1")
    add(store, src, [], exhausted=True)
    cursor = store.cursor(src)
    assert cursor.exhausted and cursor.last_key == "b" and cursor.continuation_token is None


def test_new_keys_after_exhaustion_reopen_the_listing(store, src):
    add(store, src, ["a"], exhausted=True)
    add(store, src, ["b"], token="t2")
    cursor = store.cursor(src)
    assert not cursor.exhausted
    assert (cursor.last_key, cursor.continuation_token) == ("b", "t2")


def test_keys_and_cursor_commit_together_when_the_cursor_write_fails(store, src, monkeypatch):
    add(store, src, ["a"], token="t1")
    real_update = store_module.update

    def failing_update(table):
        if table is store_module.listing_cursors:
            raise RuntimeError("crash between the keys and the cursor")
        return real_update(table)

    monkeypatch.setattr(store_module, "update", failing_update)
    with pytest.raises(RuntimeError):
        add(store, src, ["b", "c"], token="t2")
    monkeypatch.undo()
    assert set(states(store, src)) == {"a"}  # the page's keys were rolled back
    cursor = store.cursor(src)
    assert (cursor.last_key, cursor.continuation_token, cursor.pages_listed) == ("a", "t1", 1)


def test_keys_and_cursor_commit_together_when_reading_the_cursor_fails(store, src, monkeypatch):
    add(store, src, ["a"], token="t1")

    def failing_cursor(conn, source):
        raise RuntimeError("crash after inserting the keys")

    monkeypatch.setattr(store, "_cursor", failing_cursor)
    with pytest.raises(RuntimeError):
        add(store, src, ["b"], token="t2")
    monkeypatch.undo()
    assert set(states(store, src)) == {"a"}
    assert store.cursor(src).last_key == "a"


def test_reset_cursor_forgets_position_but_keeps_item_states(store, src):
    add(store, src, ["a", "b", "c"], exhausted=True)
    store.claim(src, "o", 1, LEASE)
    store.record_answers(src, [AnswerRecord("b", REJECT)])
    store.reset_cursor(src)
    cursor = store.cursor(src)
    assert cursor.last_key is None and cursor.continuation_token is None
    assert not cursor.exhausted
    assert states(store, src) == {"a": SERVED, "b": ANNOTATED, "c": PENDING}
    add(store, src, ["a"], token="t-again")  # the next sync starts from the first page
    assert store.cursor(src).last_key == "a"


def test_forget_token_keeps_last_key_for_start_after(store, src):
    add(store, src, ["a", "b"], token="t1")
    store.forget_token(src)
    cursor = store.cursor(src)
    assert cursor.continuation_token is None and cursor.last_key == "b"
    assert cursor.pages_listed == 1


# -- claim ----------------------------------------------------------------------------------


def test_claim_serves_pending_keys_oldest_first(store, src):
    add(store, src, ["z", "y"])
    add(store, src, ["x"])
    assert keys_of(store.claim(src, "o", 2, LEASE, now=T0)) == ["z", "y"]
    assert keys_of(store.claim(src, "o", 2, LEASE, now=T0)) == ["x"]
    assert store.claim(src, "o", 2, LEASE, now=T0) == []


def test_claim_sets_a_lease_with_owner_token_and_expiry(store, src):
    add(store, src, ["a", "b"])
    leases = store.claim(src, "alice", 2, LEASE, now=T0)
    assert {lease.expires_at for lease in leases} == {T0 + LEASE}
    assert (leases[0].size, leases[0].etag) == (1, '"0"')
    stored = row(store, src, "a")
    assert stored.state == SERVED and stored.lease_owner == "alice"
    assert stored.lease_token == leases[0].token
    assert stored.lease_expires_at == T0 + LEASE and stored.served_at == T0


def test_claim_respects_limit(store, src):
    add(store, src, [f"k{i:02}" for i in range(20)])
    assert len(store.claim(src, "o", 7, LEASE)) == 7
    assert store.counts(src).state(SERVED) == 7
    assert store.claim(src, "o", 0, LEASE) == []


def test_claim_never_takes_a_live_lease(store, src):
    add(store, src, ["a", "b"])
    store.claim(src, "alice", 2, LEASE, now=T0)
    assert store.claim(src, "bob", 5, LEASE, now=T0 + LEASE - timedelta(seconds=1)) == []
    assert {r.lease_owner for r in store.iter_items(src)} == {"alice"}


def test_claim_takes_expired_leases_first_with_a_fresh_token(store, src):
    add(store, src, ["a", "b", "c", "d"])
    old = store.claim(src, "alice", 2, LEASE, now=T0)
    later = T0 + LEASE + timedelta(seconds=1)
    new = store.claim(src, "bob", 3, LEASE, now=later)
    assert sorted(keys_of(new)) == ["a", "b", "c"]
    assert new[0].token != old[0].token
    assert new[0].expires_at == later + LEASE
    assert row(store, src, "a").lease_owner == "bob"
    assert row(store, src, "a").lease_token == new[0].token


def test_claim_prefers_an_expired_lease_over_an_older_pending_key(store, src):
    add(store, src, ["a", "b"])
    store.claim(src, "alice", 2, LEASE, now=T0)
    store.release(src, "alice", ["a"])  # a: pending again, listed before b
    later = T0 + 2 * LEASE  # b's lease has expired
    assert keys_of(store.claim(src, "bob", 1, LEASE, now=later)) == ["b"]
    assert keys_of(store.claim(src, "bob", 1, LEASE, now=later)) == ["a"]


def test_claim_takes_the_longest_expired_lease_first(store, src):
    add(store, src, ["a", "b"])
    store.claim(src, "o", 1, timedelta(minutes=5), now=T0)  # a expires first... later
    store.claim(src, "o", 1, timedelta(minutes=1), now=T0)  # b expires at T0+1m
    assert keys_of(store.claim(src, "p", 1, LEASE, now=T0 + timedelta(hours=1))) == ["b"]


def test_claim_skips_annotated_and_failed_keys(store, src):
    add(store, src, ["a", "b", "c"])
    store.record_answers(src, [AnswerRecord("a", ACCEPT)])
    store.mark_failed(src, "b", "not an image")
    assert keys_of(store.claim(src, "o", 5, LEASE)) == ["c"]


# -- reclaim and release --------------------------------------------------------------------


def test_reclaim_renews_only_the_owners_served_keys(store, src):
    add(store, src, ["a", "b", "c", "d"])
    mine = store.claim(src, "alice", 2, LEASE, now=T0)
    store.claim(src, "bob", 1, LEASE, now=T0)
    store.record_answers(src, [AnswerRecord("b", ACCEPT)])
    back = store.reclaim(src, "alice", LEASE, now=T0 + timedelta(minutes=1))
    assert keys_of(back) == ["a"]
    assert back[0].token != mine[0].token
    assert back[0].expires_at == T0 + timedelta(minutes=1) + LEASE
    assert row(store, src, "c").lease_owner == "bob"


def test_reclaim_gets_back_expired_own_leases(store, src):
    add(store, src, ["a"])
    store.claim(src, "alice", 1, LEASE, now=T0)
    assert keys_of(store.reclaim(src, "alice", LEASE, now=T0 + 2 * LEASE)) == ["a"]


def test_reclaim_with_served_before_takes_only_older_batches(store, src):
    add(store, src, ["a", "b", "c"])
    store.claim(src, "alice", 1, LEASE, now=T0)
    store.claim(src, "alice", 2, LEASE, now=T0 + timedelta(minutes=2))
    back = store.reclaim(
        src, "alice", LEASE, served_before=T0 + timedelta(minutes=1), now=T0 + timedelta(3)
    )
    assert keys_of(back) == ["a"]
    assert keys_of(store.reclaim(src, "alice", LEASE, limit=1, now=T0)) == ["b"]


def test_release_all_hands_owners_keys_back_to_pending(store, src):
    add(store, src, ["a", "b", "c"])
    store.claim(src, "alice", 2, LEASE)
    store.claim(src, "bob", 1, LEASE)
    assert store.release(src, "alice") == 2
    assert states(store, src) == {"a": PENDING, "b": PENDING, "c": SERVED}
    released = row(store, src, "a")
    assert released.lease_owner is None and released.lease_token is None
    assert released.lease_expires_at is None
    assert keys_of(store.claim(src, "carol", 5, LEASE)) == ["a", "b"]


def test_release_named_keys_only_touches_those_owned_and_unanswered(store, src):
    add(store, src, ["a", "b", "c", "d"])
    store.claim(src, "alice", 3, LEASE)
    store.claim(src, "bob", 1, LEASE)
    store.record_answers(src, [AnswerRecord("b", ACCEPT)])
    assert store.release(src, "alice", ["a", "b", "d", "never-listed"]) == 1
    assert states(store, src) == {"a": PENDING, "b": ANNOTATED, "c": SERVED, "d": SERVED}


def test_release_of_more_keys_than_one_statement_holds(store, src):
    keys = [f"k{i:04}" for i in range(1200)]
    add(store, src, keys)
    store.claim(src, "alice", 1200, LEASE)
    assert store.release(src, "alice", iter(keys[:1100])) == 1100
    assert store.counts(src).state(PENDING) == 1100


# -- answers and failures -------------------------------------------------------------------


def test_first_answer_annotates_and_clears_the_lease(store, src):
    add(store, src, ["a", "b"])
    store.claim(src, "alice", 2, LEASE, now=T0)
    assert store.record_answers(src, [AnswerRecord("a", ACCEPT, "s1")], now=T0) == 1
    stored = row(store, src, "a")
    assert stored.state == ANNOTATED and stored.answer == ACCEPT
    assert stored.session_id == "s1" and stored.answer_count == 1
    assert stored.annotated_at == T0
    assert (stored.lease_owner, stored.lease_token, stored.lease_expires_at) == (None,) * 3
    assert row(store, src, "b").state == SERVED


def test_replaying_answers_is_idempotent(store, src):
    add(store, src, ["a", "b"])
    batch = [AnswerRecord("a", ACCEPT, "s1"), AnswerRecord("b", REJECT, "s1")]
    assert store.record_answers(src, batch) == 2
    assert store.record_answers(src, batch) == 0
    assert row(store, src, "a").answer_count == 1
    assert row(store, src, "b").answer_count == 1


def test_later_distinct_answers_count_but_first_answer_keeps_the_state(store, src):
    add(store, src, ["a"])
    store.record_answers(src, [AnswerRecord("a", ACCEPT, "s1")])
    assert store.record_answers(src, [AnswerRecord("a", REJECT, "s2")]) == 0
    store.record_answers(src, [AnswerRecord("a", IGNORE, "s3")])
    stored = row(store, src, "a")
    assert (stored.answer, stored.session_id, stored.answer_count) == (ACCEPT, "s1", 3)


def test_answer_after_lease_expired_and_key_re_served_is_still_recorded(store, src):
    add(store, src, ["a"])
    store.claim(src, "alice", 1, LEASE, now=T0)
    later = T0 + 2 * LEASE
    assert keys_of(store.claim(src, "bob", 1, LEASE, now=later)) == ["a"]
    assert store.record_answers(src, [AnswerRecord("a", REJECT, "alice")], now=later) == 1
    stored = row(store, src, "a")
    assert (stored.state, stored.answer, stored.session_id) == (ANNOTATED, REJECT, "alice")
    assert stored.lease_owner is None
    store.record_answers(src, [AnswerRecord("a", ACCEPT, "bob")], now=later)
    assert row(store, src, "a").answer_count == 2
    assert store.claim(src, "carol", 1, LEASE, now=later + 2 * LEASE) == []


def test_answer_for_unknown_key_inserts_it_as_annotated(store, src):
    add(store, src, ["a"])
    batch = [AnswerRecord("imported", IGNORE, "s1"), AnswerRecord("imported", ACCEPT, "s2")]
    assert store.record_answers(src, batch) == 1
    stored = row(store, src, "imported")
    assert (stored.state, stored.answer, stored.answer_count) == (ANNOTATED, IGNORE, 2)
    assert store.record_answers(src, batch[:1]) == 0
    assert add(store, src, ["imported"]) == 0  # listing it later keeps the answer
    assert row(store, src, "imported").state == ANNOTATED


def test_answer_annotates_a_failed_key_and_clears_the_failure(store, src):
    add(store, src, ["a"])
    store.mark_failed(src, "a", "timeout")
    store.record_answers(src, [AnswerRecord("a", ACCEPT)])
    stored = row(store, src, "a")
    assert stored.state == ANNOTATED and stored.failure_reason is None


def test_record_answers_with_no_answers_writes_nothing(store, src):
    assert store.record_answers(src, []) == 0


def test_record_answers_for_more_keys_than_one_statement_holds(store, src):
    keys = [f"k{i:04}" for i in range(1200)]
    add(store, src, keys)
    done = store.record_answers(src, [AnswerRecord(k, ACCEPT) for k in keys])
    assert done == 1200 and store.counts(src).state(ANNOTATED) == 1200


def test_mark_failed_sets_reason_and_clears_lease(store, src):
    add(store, src, ["a", "b"])
    store.claim(src, "o", 1, LEASE)
    assert store.mark_failed(src, "a", "NoSuchKey: vanished")
    stored = row(store, src, "a")
    assert stored.state == FAILED and stored.failure_reason == "NoSuchKey: vanished"
    assert stored.lease_owner is None and stored.lease_token is None


def test_mark_failed_never_overrides_an_annotation(store, src):
    add(store, src, ["a"])
    store.record_answers(src, [AnswerRecord("a", ACCEPT)])
    assert store.mark_failed(src, "a", "not an image") is False
    assert row(store, src, "a").state == ANNOTATED


def test_mark_failed_of_an_unknown_key_reports_false(store, src):
    assert store.mark_failed(src, "missing", "x") is False


# -- to_pending (requeue / reset) -------------------------------------------------------------


@pytest.fixture
def population(store, src):
    """One key in each situation an operator filters on."""
    add(store, src, ["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.png", "c/5.jpg", "c/6.jpg"])
    store.claim(src, "o1", 1, LEASE, now=T0)  # a/1.jpg
    store.claim(src, "o2", 1, LEASE, now=T0 + timedelta(minutes=5))  # a/2.jpg
    store.record_answers(
        src, [AnswerRecord("b/3.jpg", ACCEPT, "s1"), AnswerRecord("b/4.png", REJECT, "s2")]
    )
    store.mark_failed(src, "c/5.jpg", "not an image")
    # c/6.jpg stays pending
    return src


def requeued(store, src, where: ItemFilter) -> set[str]:
    before = states(store, src)
    moved = store.to_pending(src, where)
    after = states(store, src)
    changed = {k for k in after if before[k] != PENDING and after[k] == PENDING}
    assert moved >= len(changed)
    return changed


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (ItemFilter(states=frozenset({ANNOTATED})), {"b/3.jpg", "b/4.png"}),
        (ItemFilter(states=frozenset({FAILED, SERVED})), {"a/1.jpg", "a/2.jpg", "c/5.jpg"}),
        (ItemFilter(answers=frozenset({REJECT})), {"b/4.png"}),
        (ItemFilter(owner="o2"), {"a/2.jpg"}),
        (ItemFilter(session="s1"), {"b/3.jpg"}),
        (ItemFilter(keys=frozenset({"a/1.jpg", "b/4.png", "zzz"})), {"a/1.jpg", "b/4.png"}),
        (ItemFilter(match="b/*"), {"b/3.jpg", "b/4.png"}),
        (ItemFilter(match="*.jpg", states=frozenset({ANNOTATED})), {"b/3.jpg"}),
        (ItemFilter(served_before=T0 + timedelta(minutes=1)), {"a/1.jpg"}),
        (ItemFilter(keys=frozenset()), set()),
    ],
    ids=[
        "states",
        "several-states",
        "answers",
        "owner",
        "session",
        "keys",
        "match",
        "match-and-state",
        "served-before",
        "no-keys",
    ],
)
def test_to_pending_moves_exactly_the_matching_items(store, population, where, expected):
    assert requeued(store, population, where) == expected


def test_to_pending_clears_answer_lease_and_failure(store, population):
    store.to_pending(population, ItemFilter(keys=frozenset({"a/1.jpg", "b/3.jpg", "c/5.jpg"})))
    for key in ("a/1.jpg", "b/3.jpg", "c/5.jpg"):
        stored = row(store, population, key)
        assert stored.state == PENDING
        assert (stored.answer, stored.session_id, stored.answer_count) == (None, None, 0)
        assert (stored.lease_owner, stored.lease_token, stored.failure_reason) == (None,) * 3
        assert stored.annotated_at is None
    assert "b/3.jpg" in keys_of(store.claim(population, "o9", 10, LEASE, now=T0))


def test_to_pending_with_more_keys_than_one_statement_holds(store, src):
    keys = [f"k{i:04}" for i in range(1500)]
    add(store, src, keys)
    store.record_answers(src, [AnswerRecord(k, ACCEPT) for k in keys])
    chosen = frozenset(keys[100:1300])
    assert store.to_pending(src, ItemFilter(keys=chosen)) == 1200
    pending = {r.key for r in store.iter_items(src, ItemFilter(states=frozenset({PENDING})))}
    assert pending == chosen


def test_to_pending_with_many_keys_and_a_glob(store, src):
    keys = [f"{d}/{i:04}.jpg" for d in "ab" for i in range(600)]
    add(store, src, keys)
    store.record_answers(src, [AnswerRecord(k, ACCEPT) for k in keys])
    assert store.to_pending(src, ItemFilter(keys=frozenset(keys), match="b/*")) == 600
    assert store.counts(src).state(PENDING) == 600
    assert row(store, src, "b/0001.jpg").state == PENDING
    assert row(store, src, "a/0001.jpg").state == ANNOTATED


def test_to_pending_only_touches_its_source(store):
    a = store.source("bucket", "a/", create=True)
    b = store.source("bucket", "b/", create=True)
    for source in (a, b):
        add(store, source, ["k"])
        store.record_answers(source, [AnswerRecord("k", ACCEPT)])
    assert store.to_pending(a, ItemFilter()) == 1
    assert states(store, b) == {"k": ANNOTATED}


# -- counts -----------------------------------------------------------------------------------


def test_counts_by_state_and_answer(store, population):
    counts = store.counts(population, now=T0)
    assert counts.by_state == {SERVED: 2, ANNOTATED: 2, FAILED: 1, PENDING: 1}
    assert counts.total == 6
    assert counts.by_answer == {ACCEPT: 1, REJECT: 1}


def test_counts_expired_leases_at_the_given_time(store, src):
    add(store, src, ["a", "b", "c"])
    store.claim(src, "o", 1, timedelta(minutes=1), now=T0)
    store.claim(src, "o", 1, timedelta(minutes=5), now=T0)
    assert store.counts(src, now=T0).expired_leases == 0
    assert store.counts(src, now=T0 + timedelta(minutes=1)).expired_leases == 1
    assert store.counts(src, now=T0 + timedelta(minutes=6)).expired_leases == 2


def test_counts_annotations_of_the_last_hour(store, src):
    add(store, src, ["a", "b", "c"])
    store.record_answers(src, [AnswerRecord("a", ACCEPT)], now=T0)
    store.record_answers(src, [AnswerRecord("b", ACCEPT)], now=T0 + timedelta(minutes=50))
    counts = store.counts(src, now=T0 + timedelta(minutes=70))
    assert counts.annotated_last_hour == 1
    assert counts.state(ANNOTATED) == 2


def test_counts_of_an_empty_source(store, src):
    counts = store.counts(src)
    assert counts.total == 0 and counts.by_answer == {} and counts.expired_leases == 0


# -- iter_items -------------------------------------------------------------------------------


def test_iter_items_streams_all_rows_in_listing_order_across_pages(store, src):
    keys = [f"z{2500 - i:05}" for i in range(2500)]  # listing order differs from key order
    for start in range(0, 2500, 1000):
        add(store, src, keys[start : start + 1000])
    listed = list(store.iter_items(src))
    assert [r.key for r in listed] == keys
    ids = [r.id for r in listed]
    assert ids == sorted(ids) and len(set(ids)) == 2500


def test_iter_items_filters_across_pages(store, src):
    keys = [f"{i:05}.{'jpg' if i % 3 else 'png'}" for i in range(2400)]
    add(store, src, keys)
    store.record_answers(src, [AnswerRecord(k, ACCEPT) for k in keys[::2]])
    annotated_png = [
        r.key
        for r in store.iter_items(src, ItemFilter(states=frozenset({ANNOTATED}), match="*.png"))
    ]
    assert annotated_png == [k for k in keys[::2] if k.endswith(".png")]
    chosen = frozenset(keys[1500:2100:7])
    assert [r.key for r in store.iter_items(src, ItemFilter(keys=chosen))] == sorted(chosen)


def test_iter_items_lets_writes_happen_between_pages(store, src):
    add(store, src, [f"k{i:04}" for i in range(2100)])
    seen = 0
    for item in store.iter_items(src):
        if item.id % 1000 == 0:
            store.claim(src, "o", 5, LEASE)  # would block or fail if a read held the DB
        seen += 1
    assert seen == 2100


def test_iter_items_reports_lease_and_failure_fields(store, population):
    by_key = {r.key: r for r in store.iter_items(population)}
    assert by_key["a/1.jpg"].lease_owner == "o1" and by_key["a/1.jpg"].served_at == T0
    assert by_key["b/3.jpg"].answer == ACCEPT and by_key["b/3.jpg"].session_id == "s1"
    assert by_key["c/5.jpg"].failure_reason == "not an image"


# -- keys with any UTF-8 ----------------------------------------------------------------------

NFC = unicodedata.normalize("NFC", "café.jpg")
NFD = unicodedata.normalize("NFD", "café.jpg")
ODD_KEYS = [
    "with space.jpg",
    " leading and trailing ",
    "line\nbreak.jpg",
    "cr\r\nlf",
    "tab\there",
    "[bold]x[/bold]",
    "[red]*?[!]",
    "%2F%25%",
    "under_score%like",
    "../../etc/passwd",
    "a//double//slash",
    "back\\slash",
    "dir",
    "dir/",
    NFC,
    NFD,
    "Case",
    "case",
    "emoji 🦜 ✓",
    "'quote\"s; DROP TABLE items; --",
    "é" * 512,  # 1024 bytes of UTF-8: S3's maximum
    "x" * 1024,
]


def test_odd_keys_are_distinct_rows_and_round_trip_exactly(store, src):
    assert NFC != NFD and len(("é" * 512).encode()) == 1024
    assert add(store, src, ODD_KEYS) == len(ODD_KEYS)
    assert [r.key for r in store.iter_items(src)] == ODD_KEYS
    assert keys_of(store.claim(src, "o", 100, LEASE)) == ODD_KEYS
    assert store.cursor(src).last_key == ODD_KEYS[-1]


def test_odd_keys_work_in_every_key_addressed_operation(store, src):
    add(store, src, ODD_KEYS)
    store.claim(src, "o", 100, LEASE)
    half = ODD_KEYS[::2]
    assert store.record_answers(src, [AnswerRecord(k, ACCEPT, "s") for k in half]) == len(half)
    assert store.release(src, "o", [NFD, "dir/"]) == 2
    assert store.mark_failed(src, "case", "odd")
    got = states(store, src)
    assert got[NFC] == ANNOTATED and got[NFD] == PENDING  # NFC and NFD are two keys
    assert got["dir"] == ANNOTATED and got["dir/"] == PENDING
    assert got["Case"] == ANNOTATED and got["case"] == FAILED
    assert store.to_pending(src, ItemFilter(keys=frozenset(half))) == len(half)
    assert all(states(store, src)[k] == PENDING for k in half)


def test_odd_key_answers_for_unknown_keys_insert_exact_keys(store, src):
    assert store.record_answers(src, [AnswerRecord(k, IGNORE) for k in ODD_KEYS]) == len(ODD_KEYS)
    assert {r.key for r in store.iter_items(src)} == set(ODD_KEYS)


def test_odd_prefix_and_bucket_round_trip(store):
    source = store.source("b-1", "[x]/é e/%2F/", create=True)
    assert store.source("b-1", "[x]/é e/%2F/") == source
    with pytest.raises(SourceNotFound):
        store.source("b-1", unicodedata.normalize("NFD", "[x]/é e/%2F/"))

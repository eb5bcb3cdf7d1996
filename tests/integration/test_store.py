"""Every state-store operation, on a SQLite file and on PostgreSQL (see `conftest.db_url`).

Tests drive the public `Store` API and read the database back with plain SQL where the API
does not expose a column (lease token, answer count); nothing here mocks the database.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import and_, select

from tests.cli_support import item_states, shift_leases
from tracker import store as store_module
from tracker.errors import SourceNotFound, UsageError
from tracker.models import Answer, ItemState, items, objects, utcnow
from tracker.records import AnswerRecord, ItemFilter, Lease, ListedObject
from tracker.store import Store

#: Lease times come from the database's clock (no `now=`): a test reads the time around the
#: call and moves leases back with `shift` to play time passing, without waiting.
SLACK = timedelta(seconds=5)
LEASE = timedelta(minutes=10)
PENDING, SERVED = ItemState.PENDING, ItemState.SERVED
ANNOTATED, FAILED = ItemState.ANNOTATED, ItemState.FAILED
ACCEPT, REJECT, IGNORE = Answer.ACCEPT, Answer.REJECT, Answer.IGNORE


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def src(store):
    return store.source("bucket", "images/", create=True)


@pytest.fixture
def ds(store, src):
    """The one dataset annotating `src`: every state below is this dataset's."""
    return store.dataset(src, "ds", create=True)


def add(store: Store, source, keys, *, exhausted: bool = False, token: str | None = "tok") -> int:
    keys = list(keys)
    return store.record_page(
        source,
        [ListedObject(k, size=len(k), etag=f'"{i}"') for i, k in enumerate(keys)],
        next_token=None if exhausted else token,
        last_key=keys[-1] if keys else None,
        exhausted=exhausted,
    )


def row(store: Store, dataset, key: str):
    """The raw row for `key`: its object's listing facts and the dataset's items columns
    (None where the dataset has no row yet), read outside the store's API."""
    with store.engine.connect() as conn:
        return conn.execute(
            select(objects.c.key, objects.c.size, objects.c.etag, items)
            .select_from(objects)
            .outerjoin(
                items, and_(items.c.object_id == objects.c.id, items.c.dataset_id == dataset.id)
            )
            .where(objects.c.source_id == dataset.source.id, objects.c.key == key)
        ).one()


def near(value: datetime | None, expected: datetime) -> bool:
    """`value` is `expected` by the database's clock, give or take `SLACK`."""
    return value is not None and abs(value - expected) <= SLACK


def by_key(leases) -> dict[str, Lease]:
    return {lease.key: lease for lease in leases}


def keys_of(leases) -> list[str]:
    return [lease.key for lease in leases]


# -- sources ------------------------------------------------------------------------------


def test_source_is_created_once_and_found_again(store):
    first = store.source("bucket", "p/", create=True)
    again = store.source("bucket", "p/", create=True)
    found = store.source("bucket", "p/")
    assert first == again == found
    assert first.uri == "s3://bucket/p/"


def test_same_bucket_with_a_sibling_prefix_is_another_source_and_an_overlap_is_refused(store):
    # Was "another prefix is another source" with "" beside "p/": those overlap (one key,
    # two rows, served twice), so that pair is now refused; siblings are still two sources.
    a = store.source("bucket", "a/", create=True)
    b = store.source("bucket", "p/", create=True)
    assert a.id != b.id
    assert store.sources() == [a, b]
    with pytest.raises(UsageError, match="overlaps"):
        store.source("bucket", "", create=True)
    assert store.sources() == [a, b]


def test_unknown_source_raises_source_not_found_with_one_line_message(store):
    store.source("bucket", "p/", create=True)
    with pytest.raises(SourceNotFound) as error:
        store.source("bucket", "other/")
    message = str(error.value)
    assert "s3://bucket/other/" in message and "\n" not in message


def test_new_source_has_an_empty_cursor(store, src, ds):
    cursor = store.cursor(src)
    assert cursor.continuation_token is None and cursor.last_key is None
    assert cursor.pages_listed == 0 and cursor.keys_listed == 0
    assert not cursor.exhausted


def test_sources_do_not_share_keys(store):
    a = store.source("bucket", "a/", create=True)
    b = store.source("bucket", "b/", create=True)
    add(store, a, ["same"])
    add(store, b, ["same"])
    on_a, on_b = store.dataset(a, "ds", create=True), store.dataset(b, "ds", create=True)
    assert keys_of(store.claim(on_a, "o", 10, LEASE)) == ["same"]
    assert item_states(store, on_b) == {"same": PENDING}


# -- record_page and the listing cursor ---------------------------------------------------


def test_record_page_inserts_pending_keys_and_advances_cursor(store, src, ds):
    assert add(store, src, ["a", "b", "c"], token="t1") == 3
    assert item_states(store, ds) == {"a": PENDING, "b": PENDING, "c": PENDING}
    cursor = store.cursor(src)
    assert (cursor.continuation_token, cursor.last_key) == ("t1", "c")
    assert (cursor.pages_listed, cursor.keys_listed) == (1, 3)
    stored = row(store, ds, "b")
    assert (stored.size, stored.etag) == (1, '"1"')


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "row-by-row"])
def test_a_page_is_recorded_exactly_in_listing_order_on_either_path(store, src, bulk):
    """Proves the set-based insert (PostgreSQL: unnested arrays; SQLite: the driver's
    multi-row VALUES, ETags and times in their compact form) and the row-by-row one agree:
    keys in the page's order (the frontier walks ids), duplicates and known keys not
    inserted nor counted (a known key takes the listed facts: the object may have changed),
    size / ETag / time exact to the microsecond (read back through the column's type),
    None kept."""
    store.bulk_insert = bulk
    when = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    add(store, src, ["m"])
    page = [
        ListedObject("z", 1, "e1", when),
        ListedObject("a", 2, None, None),
        ListedObject("m", 3, "known", when),
        ListedObject("z", 4, "dup", when),
        ListedObject("ü ä+%20", 5, "e5", when.astimezone(timezone(timedelta(hours=2)))),
    ]
    inserted = store.record_page(src, page, next_token=None, last_key="ü", exhausted=True)
    assert inserted == 3
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(objects.c.key, objects.c.size, objects.c.etag, objects.c.last_modified)
            .where(objects.c.source_id == src.id)
            .order_by(objects.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("m", 3, "known", when),
        ("z", 1, "e1", when),
        ("a", 2, None, None),
        ("ü ä+%20", 5, "e5", when),
    ]
    assert store.cursor(src).keys_listed == 4


def test_re_recording_a_page_keeps_states_and_counts_only_new_keys(store, src, ds):
    add(store, src, ["a", "b", "c"])
    store.claim(ds, "o", 1, LEASE)  # a -> served
    store.record_answers(ds, [AnswerRecord("b", ACCEPT)])  # b -> annotated
    assert add(store, src, ["a", "b", "c", "d"]) == 1
    assert item_states(store, ds) == {"a": SERVED, "b": ANNOTATED, "c": PENDING, "d": PENDING}
    assert store.cursor(src).keys_listed == 4
    assert row(store, ds, "b").answer == ACCEPT


def test_empty_page_records_nothing_but_still_counts_a_page(store, src, ds):
    assert add(store, src, [], token="t") == 0
    cursor = store.cursor(src)
    assert cursor.pages_listed == 1 and cursor.last_key is None


def test_cursor_never_moves_backward(store, src, ds):
    add(store, src, ["k", "m"], token="t-m")
    add(store, src, ["a", "c"], token="t-c")  # a slower lister, or a --from-start pass
    cursor = store.cursor(src)
    assert (cursor.last_key, cursor.continuation_token) == ("m", "t-m")
    assert set(item_states(store, ds)) == {"a", "c", "k", "m"}  # its keys still count


def test_cursor_follows_utf8_byte_order_not_utf16(store, src, ds):
    # U+FFFF < U+10000 in UTF-8 bytes (and code points); UTF-16 would order them the other
    # way round (surrogates D800.. sort before FFFF).
    add(store, src, ["\uffff"], token="t1")
    add(store, src, ["\U00010000"], token="t2")
    assert store.cursor(src).last_key == "\U00010000"
    add(store, src, ["\uffff"], token="t3")
    assert store.cursor(src).continuation_token == "t2"


def test_last_page_marks_listing_exhausted_and_drops_the_token(store, src, ds):
    add(store, src, ["a", "b"], token="t1")
    add(store, src, ["c"], exhausted=True)
    cursor = store.cursor(src)
    assert cursor.exhausted and cursor.continuation_token is None
    assert cursor.last_key == "c"


def test_empty_last_page_exhausts_listing_and_keeps_last_key(store, src, ds):
    add(store, src, ["a", "b"], token="t1")
    add(store, src, [], exhausted=True)
    cursor = store.cursor(src)
    assert cursor.exhausted and cursor.last_key == "b" and cursor.continuation_token is None


def test_new_keys_after_exhaustion_reopen_the_listing(store, src, ds):
    add(store, src, ["a"], exhausted=True)
    add(store, src, ["b"], token="t2")
    cursor = store.cursor(src)
    assert not cursor.exhausted
    assert (cursor.last_key, cursor.continuation_token) == ("b", "t2")


def test_keys_and_cursor_commit_together_when_the_cursor_write_fails(store, src, ds, monkeypatch):
    """Seen to fail when: `record_page` commits the keys and the cursor in two
    transactions.
    """
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
    assert set(item_states(store, ds)) == {"a"}  # the page's keys were rolled back
    cursor = store.cursor(src)
    assert (cursor.last_key, cursor.continuation_token, cursor.pages_listed) == ("a", "t1", 1)


def test_keys_and_cursor_commit_together_when_reading_the_cursor_fails(store, src, ds, monkeypatch):
    """Seen to fail when: `record_page` commits the keys and the cursor in two
    transactions.
    """
    add(store, src, ["a"], token="t1")

    def failing_cursor(*args, **kwargs):
        raise RuntimeError("crash after inserting the keys")

    monkeypatch.setattr(store, "_cursor", failing_cursor)
    with pytest.raises(RuntimeError):
        add(store, src, ["b"], token="t2")
    monkeypatch.undo()
    assert set(item_states(store, ds)) == {"a"}
    assert store.cursor(src).last_key == "a"


def test_reset_cursor_forgets_position_but_keeps_item_item_states(store, src, ds):
    add(store, src, ["a", "b", "c"], exhausted=True)
    store.claim(ds, "o", 1, LEASE)
    store.record_answers(ds, [AnswerRecord("b", REJECT)])
    store.reset_cursor(src)
    cursor = store.cursor(src)
    assert cursor.last_key is None and cursor.continuation_token is None
    assert not cursor.exhausted
    assert item_states(store, ds) == {"a": SERVED, "b": ANNOTATED, "c": PENDING}
    add(store, src, ["a"], token="t-again")  # the next sync starts from the first page
    assert store.cursor(src).last_key == "a"


# -- claim ----------------------------------------------------------------------------------


def test_claim_serves_pending_keys_oldest_first(store, src, ds):
    add(store, src, ["z", "y"])
    add(store, src, ["x"])
    assert keys_of(store.claim(ds, "o", 2, LEASE)) == ["z", "y"]
    assert keys_of(store.claim(ds, "o", 2, LEASE)) == ["x"]
    assert store.claim(ds, "o", 2, LEASE) == []


def test_claim_sets_a_lease_with_owner_token_and_expiry(store, src, ds):
    add(store, src, ["a", "b"])
    leases = store.claim(ds, "alice", 2, LEASE)
    now = utcnow()
    assert len({lease.expires_at for lease in leases}) == 1  # one claim, one expiry
    assert near(leases[0].expires_at, now + LEASE)
    assert (leases[0].size, leases[0].etag) == (1, '"0"')
    stored = row(store, ds, "a")
    assert stored.state == SERVED and stored.lease_owner == "alice"
    assert stored.lease_token == leases[0].token
    assert stored.lease_expires_at == leases[0].expires_at
    assert stored.served_at == leases[0].expires_at - LEASE


def test_claim_respects_limit(store, src, ds):
    add(store, src, [f"k{i:02}" for i in range(20)])
    assert len(store.claim(ds, "o", 7, LEASE)) == 7
    assert store.counts(ds).state(SERVED) == 7
    assert store.claim(ds, "o", 0, LEASE) == []


def test_claim_never_takes_a_live_lease(store, src, ds):
    add(store, src, ["a", "b"])
    store.claim(ds, "alice", 2, LEASE)
    shift_leases(store, "alice", -(LEASE - 2 * SLACK))  # a few seconds left: still live
    assert store.claim(ds, "bob", 5, LEASE) == []
    assert {r.lease_owner for r in store.iter_items(ds)} == {"alice"}


def test_claim_takes_expired_leases_first_with_a_fresh_token(store, src, ds):
    add(store, src, ["a", "b", "c", "d"])
    old = store.claim(ds, "alice", 2, LEASE)
    shift_leases(store, "alice", -(LEASE + timedelta(seconds=1)))  # expired a second ago
    new = store.claim(ds, "bob", 3, LEASE)
    assert sorted(keys_of(new)) == ["a", "b", "c"]
    assert new[0].token != old[0].token
    assert near(new[0].expires_at, utcnow() + LEASE)
    assert row(store, ds, "a").lease_owner == "bob"
    assert row(store, ds, "a").lease_token == new[0].token


def test_claim_prefers_an_expired_lease_over_an_older_pending_key(store, src, ds):
    add(store, src, ["a", "b"])
    leases = store.claim(ds, "alice", 2, LEASE)
    store.release(ds, "alice", leases[:1])  # a: pending again, listed before b
    shift_leases(store, "alice", -2 * LEASE)  # b's lease has expired
    assert keys_of(store.claim(ds, "bob", 1, LEASE)) == ["b"]
    assert keys_of(store.claim(ds, "bob", 1, LEASE)) == ["a"]


def test_claim_takes_the_longest_expired_lease_first(store, src, ds):
    add(store, src, ["a", "b"])
    store.claim(ds, "o", 1, timedelta(minutes=5))  # a is listed first but expires later
    store.claim(ds, "o", 1, timedelta(minutes=1))  # b expires 4 minutes before a
    shift_leases(store, "o", -timedelta(hours=1))  # both expired
    assert keys_of(store.claim(ds, "p", 1, LEASE)) == ["b"]


def test_claim_skips_annotated_and_failed_keys(store, src, ds):
    add(store, src, ["a", "b", "c"])
    store.record_answers(ds, [AnswerRecord("a", ACCEPT)])
    store.mark_failed(ds, "b", "not an image")
    assert keys_of(store.claim(ds, "o", 5, LEASE)) == ["c"]


# -- reclaim and release --------------------------------------------------------------------


def test_reclaim_renews_only_the_owners_served_keys(store, src, ds):
    add(store, src, ["a", "b", "c", "d"])
    mine = store.claim(ds, "alice", 2, LEASE)
    store.claim(ds, "bob", 1, LEASE)
    store.record_answers(ds, [AnswerRecord("b", ACCEPT)])
    shift_leases(store, "alice", -timedelta(minutes=5))  # half the lease used up
    back = store.reclaim(ds, "alice", LEASE)
    assert keys_of(back) == ["a"]
    assert back[0].token != mine[0].token
    assert near(back[0].expires_at, utcnow() + LEASE)  # a full lease from now
    assert row(store, ds, "c").lease_owner == "bob"


def test_reclaim_gets_back_expired_own_leases(store, src, ds):
    add(store, src, ["a"])
    store.claim(ds, "alice", 1, LEASE)
    shift_leases(store, "alice", -2 * LEASE)
    assert keys_of(store.reclaim(ds, "alice", LEASE)) == ["a"]


def test_reclaim_renews_every_lease_of_the_owner_in_listing_order_whatever_its_age(store, src, ds):
    # Replaces "reclaim with served_before / limit": a restarted stream now takes back all
    # its keys at once (they are confirmed one by one at hand-over, so none is shown after
    # its lease ended), and nothing of another owner or another dataset.
    add(store, src, ["a", "b", "c", "d"])
    store.claim(ds, "alice", 1, LEASE)
    shift_leases(store, "alice", -timedelta(minutes=8))  # a: two minutes left
    store.claim(ds, "alice", 2, LEASE)  # b, c: a fresh lease each
    store.claim(ds, "bob", 1, LEASE)  # d
    other = store.dataset(src, "other", create=True)
    store.claim(other, "alice", 4, LEASE)
    back = store.reclaim(ds, "alice", LEASE)
    assert keys_of(back) == ["a", "b", "c"]
    assert len({lease.token for lease in back}) == 1
    assert all(near(lease.expires_at, utcnow() + LEASE) for lease in back)
    assert row(store, ds, "d").lease_owner == "bob"
    assert store.reclaim(ds, "carol", LEASE) == []


def test_release_all_hands_owners_keys_back_to_pending(store, src, ds):
    add(store, src, ["a", "b", "c"])
    store.claim(ds, "alice", 2, LEASE)
    store.claim(ds, "bob", 1, LEASE)
    assert store.release(ds, "alice") == 2
    assert item_states(store, ds) == {"a": PENDING, "b": PENDING, "c": SERVED}
    released = row(store, ds, "a")
    assert released.lease_owner is None and released.lease_token is None
    assert released.lease_expires_at is None
    assert keys_of(store.claim(ds, "carol", 5, LEASE)) == ["a", "b"]


def test_release_named_keys_only_touches_those_owned_and_unanswered(store, src, ds):
    add(store, src, ["a", "b", "c", "d"])
    mine = by_key(store.claim(ds, "alice", 3, LEASE))
    bobs = store.claim(ds, "bob", 1, LEASE)
    store.record_answers(ds, [AnswerRecord("b", ACCEPT)])
    unknown = Lease("never-listed", None, None, "no-such-token", utcnow(), item_id=-1)
    named = [mine["a"], mine["b"], *bobs, unknown]
    assert store.release(ds, "alice", named) == 1
    assert item_states(store, ds) == {"a": PENDING, "b": ANNOTATED, "c": SERVED, "d": SERVED}


def test_release_of_more_keys_than_one_statement_holds(store, src, ds):
    keys = [f"k{i:04}" for i in range(1200)]
    add(store, src, keys)
    leases = store.claim(ds, "alice", 1200, LEASE)
    assert store.release(ds, "alice", iter(leases[:1100])) == 1100
    assert store.counts(ds).state(PENDING) == 1100


# -- answers and failures -------------------------------------------------------------------


def test_first_answer_annotates_and_clears_the_lease(store, src, ds):
    add(store, src, ["a", "b"])
    store.claim(ds, "alice", 2, LEASE)
    assert store.record_answers(ds, [AnswerRecord("a", ACCEPT, "s1")]) == 1
    stored = row(store, ds, "a")
    assert stored.state == ANNOTATED and stored.answer == ACCEPT
    assert stored.session_id == "s1" and stored.answer_count == 1
    assert near(stored.annotated_at, utcnow())  # no Prodigy timestamp: recorded now
    assert (stored.lease_owner, stored.lease_token, stored.lease_expires_at) == (None,) * 3
    assert row(store, ds, "b").state == SERVED


def test_replaying_answers_is_idempotent(store, src, ds):
    add(store, src, ["a", "b"])
    batch = [AnswerRecord("a", ACCEPT, "s1"), AnswerRecord("b", REJECT, "s1")]
    assert store.record_answers(ds, batch) == 2
    assert store.record_answers(ds, batch) == 0
    assert row(store, ds, "a").answer_count == 1
    assert row(store, ds, "b").answer_count == 1


def test_later_distinct_answers_count_but_first_answer_keeps_the_state(store, src, ds):
    add(store, src, ["a"])
    store.record_answers(ds, [AnswerRecord("a", ACCEPT, "s1")])
    assert store.record_answers(ds, [AnswerRecord("a", REJECT, "s2")]) == 0
    store.record_answers(ds, [AnswerRecord("a", IGNORE, "s3")])
    stored = row(store, ds, "a")
    assert (stored.answer, stored.session_id, stored.answer_count) == (ACCEPT, "s1", 3)


def test_answer_after_lease_expired_and_key_re_served_is_still_recorded(store, src, ds):
    add(store, src, ["a"])
    store.claim(ds, "alice", 1, LEASE)
    shift_leases(store, "alice", -2 * LEASE)
    assert keys_of(store.claim(ds, "bob", 1, LEASE)) == ["a"]
    assert store.record_answers(ds, [AnswerRecord("a", REJECT, "alice")]) == 1
    stored = row(store, ds, "a")
    assert (stored.state, stored.answer, stored.session_id) == (ANNOTATED, REJECT, "alice")
    assert stored.lease_owner is None
    store.record_answers(ds, [AnswerRecord("a", ACCEPT, "bob")])
    assert row(store, ds, "a").answer_count == 2
    shift_leases(store, "bob", -2 * LEASE)  # bob's lease would have run out by now
    assert store.claim(ds, "carol", 1, LEASE) == []


def test_answer_for_unknown_key_inserts_it_as_annotated(store, src, ds):
    add(store, src, ["a"])
    batch = [AnswerRecord("imported", IGNORE, "s1"), AnswerRecord("imported", ACCEPT, "s2")]
    assert store.record_answers(ds, batch) == 1
    stored = row(store, ds, "imported")
    assert (stored.state, stored.answer, stored.answer_count) == (ANNOTATED, IGNORE, 2)
    assert store.record_answers(ds, batch[:1]) == 0
    assert add(store, src, ["imported"]) == 0  # listing it later keeps the answer
    assert row(store, ds, "imported").state == ANNOTATED


def test_answer_annotates_a_failed_key_and_clears_the_failure(store, src, ds):
    add(store, src, ["a"])
    store.mark_failed(ds, "a", "timeout")
    store.record_answers(ds, [AnswerRecord("a", ACCEPT)])
    stored = row(store, ds, "a")
    assert stored.state == ANNOTATED and stored.failure_reason is None


def test_record_answers_with_no_answers_writes_nothing(store, src, ds):
    assert store.record_answers(ds, []) == 0


def test_record_answers_for_more_keys_than_one_statement_holds(store, src, ds):
    keys = [f"k{i:04}" for i in range(1200)]
    add(store, src, keys)
    done = store.record_answers(ds, [AnswerRecord(k, ACCEPT) for k in keys])
    assert done == 1200 and store.counts(ds).state(ANNOTATED) == 1200


def test_mark_failed_sets_reason_and_clears_lease(store, src, ds):
    add(store, src, ["a", "b"])
    store.claim(ds, "o", 1, LEASE)
    assert store.mark_failed(ds, "a", "NoSuchKey: vanished")
    stored = row(store, ds, "a")
    assert stored.state == FAILED and stored.failure_reason == "NoSuchKey: vanished"
    assert stored.lease_owner is None and stored.lease_token is None


def test_mark_failed_never_overrides_an_annotation(store, src, ds):
    add(store, src, ["a"])
    store.record_answers(ds, [AnswerRecord("a", ACCEPT)])
    assert store.mark_failed(ds, "a", "not an image") is False
    assert row(store, ds, "a").state == ANNOTATED


def test_mark_failed_of_an_unknown_key_reports_false(store, src, ds):
    assert store.mark_failed(ds, "missing", "x") is False


# -- to_pending (requeue / reset) -------------------------------------------------------------


@pytest.fixture
def population(store, src, ds):
    """One key in each situation an operator filters on."""
    add(store, src, ["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.png", "c/5.jpg", "c/6.jpg"])
    store.claim(ds, "o1", 1, LEASE)  # a/1.jpg
    shift_leases(store, "o1", -timedelta(minutes=5))  # served five minutes before a/2.jpg
    store.claim(ds, "o2", 1, LEASE)  # a/2.jpg
    store.record_answers(
        ds, [AnswerRecord("b/3.jpg", ACCEPT, "s1"), AnswerRecord("b/4.png", REJECT, "s2")]
    )
    store.mark_failed(ds, "c/5.jpg", "not an image")
    # c/6.jpg stays pending
    return ds


#: Stands for "two minutes before the test runs" in the parameters below.
TWO_MINUTES_AGO = datetime(1970, 1, 1, tzinfo=UTC)


def requeued(store, ds, where: ItemFilter) -> set[str]:
    before = item_states(store, ds)
    moved = store.to_pending(ds, where)
    after = item_states(store, ds)
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
        (ItemFilter(served_before=TWO_MINUTES_AGO), {"a/1.jpg"}),
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
def test_to_pending_moves_exactly_the_matching_items(store, ds, population, where, expected):
    if where.served_before == TWO_MINUTES_AGO:  # a/1.jpg was served 5 minutes ago, a/2 now
        where = dataclasses.replace(where, served_before=utcnow() - timedelta(minutes=2))
    assert requeued(store, ds, where) == expected


def test_to_pending_clears_answer_lease_and_failure(store, ds, population):
    store.to_pending(ds, ItemFilter(keys=frozenset({"a/1.jpg", "b/3.jpg", "c/5.jpg"})))
    for key in ("a/1.jpg", "b/3.jpg", "c/5.jpg"):
        stored = row(store, ds, key)
        assert stored.state == PENDING
        assert (stored.answer, stored.session_id, stored.answer_count) == (None, None, 0)
        assert (stored.lease_owner, stored.lease_token, stored.failure_reason) == (None,) * 3
        assert stored.annotated_at is None
    assert "b/3.jpg" in keys_of(store.claim(ds, "o9", 10, LEASE))


def test_to_pending_with_more_keys_than_one_statement_holds(store, src, ds):
    keys = [f"k{i:04}" for i in range(1500)]
    add(store, src, keys)
    store.record_answers(ds, [AnswerRecord(k, ACCEPT) for k in keys])
    chosen = frozenset(keys[100:1300])
    assert store.to_pending(ds, ItemFilter(keys=chosen)) == 1200
    pending = {r.key for r in store.iter_items(ds, ItemFilter(states=frozenset({PENDING})))}
    assert pending == chosen


def test_to_pending_with_many_keys_and_a_glob(store, src, ds):
    keys = [f"{d}/{i:04}.jpg" for d in "ab" for i in range(600)]
    add(store, src, keys)
    store.record_answers(ds, [AnswerRecord(k, ACCEPT) for k in keys])
    assert store.to_pending(ds, ItemFilter(keys=frozenset(keys), match="b/*")) == 600
    assert store.counts(ds).state(PENDING) == 600
    assert row(store, ds, "b/0001.jpg").state == PENDING
    assert row(store, ds, "a/0001.jpg").state == ANNOTATED


def test_to_pending_only_touches_its_source(store):
    a = store.source("bucket", "a/", create=True)
    b = store.source("bucket", "b/", create=True)
    refs = []
    for source in (a, b):
        add(store, source, ["k"])
        refs.append(store.dataset(source, "ds", create=True))
        store.record_answers(refs[-1], [AnswerRecord("k", ACCEPT)])
    assert store.to_pending(refs[0], ItemFilter()) == 1
    assert item_states(store, refs[1]) == {"k": ANNOTATED}


def test_to_pending_only_touches_its_dataset(store, src, ds):
    # Two datasets over one listing: resetting one leaves the other's answers alone.
    add(store, src, ["k"])
    other = store.dataset(src, "other", create=True)
    for dataset in (ds, other):
        store.record_answers(dataset, [AnswerRecord("k", ACCEPT)])
    assert store.to_pending(ds, ItemFilter()) == 1
    assert item_states(store, other) == {"k": ANNOTATED}
    assert item_states(store, ds) == {"k": PENDING}


# -- counts -----------------------------------------------------------------------------------


def test_counts_by_state_and_answer(store, ds, population):
    counts = store.counts(ds)
    assert counts.by_state == {SERVED: 2, ANNOTATED: 2, FAILED: 1, PENDING: 1}
    assert counts.total == 6
    assert counts.by_answer == {ACCEPT: 1, REJECT: 1}


def test_counts_expired_leases_at_the_given_time(store, src, ds):
    add(store, src, ["a", "b", "c"])
    store.claim(ds, "o1", 1, timedelta(minutes=1))
    store.claim(ds, "o5", 1, timedelta(minutes=5))
    assert store.counts(ds).expired_leases == 0
    for owner in ("o1", "o5"):
        shift_leases(store, owner, -timedelta(minutes=1))  # a minute later: a's lease ended
    assert store.counts(ds).expired_leases == 1
    for owner in ("o1", "o5"):
        shift_leases(store, owner, -timedelta(minutes=5))  # six minutes later: both
    assert store.counts(ds).expired_leases == 2


def test_counts_annotations_of_the_last_hour(store, src, ds):
    add(store, src, ["a", "b", "c"])
    now = utcnow()
    # Prodigy's `_timestamp` is kept: a is 70 minutes old, b 20.
    store.record_answers(ds, [AnswerRecord("a", ACCEPT, answered_at=now - timedelta(minutes=70))])
    store.record_answers(ds, [AnswerRecord("b", ACCEPT, answered_at=now - timedelta(minutes=20))])
    # An import of a recent answer is not work done in the last hour.
    store.import_answers(ds, [AnswerRecord("c", ACCEPT, answered_at=now)])
    counts = store.counts(ds)
    assert counts.annotated_last_hour == 1
    assert counts.state(ANNOTATED) == 3


def test_counts_of_an_empty_source(store, src, ds):
    counts = store.counts(ds)
    assert counts.total == 0 and counts.by_answer == {} and counts.expired_leases == 0


# -- iter_items -------------------------------------------------------------------------------


def test_iter_items_streams_all_rows_in_listing_order_across_pages(store, src, ds):
    keys = [f"z{2500 - i:05}" for i in range(2500)]  # listing order differs from key order
    for start in range(0, 2500, 1000):
        add(store, src, keys[start : start + 1000])
    listed = list(store.iter_items(ds))
    assert [r.key for r in listed] == keys
    ids = [r.id for r in listed]
    assert ids == sorted(ids) and len(set(ids)) == 2500


def test_iter_items_filters_across_pages(store, src, ds):
    keys = [f"{i:05}.{'jpg' if i % 3 else 'png'}" for i in range(2400)]
    add(store, src, keys)
    store.record_answers(ds, [AnswerRecord(k, ACCEPT) for k in keys[::2]])
    annotated_png = [
        r.key
        for r in store.iter_items(ds, ItemFilter(states=frozenset({ANNOTATED}), match="*.png"))
    ]
    assert annotated_png == [k for k in keys[::2] if k.endswith(".png")]
    chosen = frozenset(keys[1500:2100:7])
    assert [r.key for r in store.iter_items(ds, ItemFilter(keys=chosen))] == sorted(chosen)


def test_iter_items_lets_writes_happen_between_pages(store, src, ds):
    add(store, src, [f"k{i:04}" for i in range(2100)])
    seen = 0
    for item in store.iter_items(ds):
        if item.id % 1000 == 0:
            store.claim(ds, "o", 5, LEASE)  # would block or fail if a read held the DB
        seen += 1
    assert seen == 2100


def test_iter_items_reports_lease_and_failure_fields(store, ds, population):
    by_key = {r.key: r for r in store.iter_items(ds)}
    assert by_key["a/1.jpg"].lease_owner == "o1"
    assert near(by_key["a/1.jpg"].served_at, utcnow() - timedelta(minutes=5))
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


def test_odd_keys_are_distinct_rows_and_round_trip_exactly(store, src, ds):
    assert NFC != NFD and len(("é" * 512).encode()) == 1024
    assert add(store, src, ODD_KEYS) == len(ODD_KEYS)
    assert [r.key for r in store.iter_items(ds)] == ODD_KEYS
    assert keys_of(store.claim(ds, "o", 100, LEASE)) == ODD_KEYS
    assert store.cursor(src).last_key == ODD_KEYS[-1]


def test_odd_keys_work_in_every_key_addressed_operation(store, src, ds):
    add(store, src, ODD_KEYS)
    leases = by_key(store.claim(ds, "o", 100, LEASE))
    half = ODD_KEYS[::2]
    assert store.record_answers(ds, [AnswerRecord(k, ACCEPT, "s") for k in half]) == len(half)
    assert store.release(ds, "o", [leases[NFD], leases["dir/"]]) == 2
    assert store.mark_failed(ds, "case", "odd")
    got = item_states(store, ds)
    assert got[NFC] == ANNOTATED and got[NFD] == PENDING  # NFC and NFD are two keys
    assert got["dir"] == ANNOTATED and got["dir/"] == PENDING
    assert got["Case"] == ANNOTATED and got["case"] == FAILED
    assert store.to_pending(ds, ItemFilter(keys=frozenset(half))) == len(half)
    assert all(item_states(store, ds)[k] == PENDING for k in half)


def test_odd_key_answers_for_unknown_keys_insert_exact_keys(store, src, ds):
    assert store.record_answers(ds, [AnswerRecord(k, IGNORE) for k in ODD_KEYS]) == len(ODD_KEYS)
    assert {r.key for r in store.iter_items(ds)} == set(ODD_KEYS)


def test_odd_prefix_and_bucket_round_trip(store):
    source = store.source("b-1", "[x]/é e/%2F/", create=True)
    assert store.source("b-1", "[x]/é e/%2F/") == source
    with pytest.raises(SourceNotFound):
        store.source("b-1", unicodedata.normalize("NFD", "[x]/é e/%2F/"))

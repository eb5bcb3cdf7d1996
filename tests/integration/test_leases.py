"""Leases, owners and the listing cursor on both databases: what one key, one annotator
rests on. Real concurrency where it is claimed: threads with their own connections,
processes killed with SIGKILL, a host clock skewed by minutes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from datetime import timedelta

import pytest

from tests.cli_support import item_states, listed
from tracker.errors import OwnerInUse, StateDBError, UsageError
from tracker.models import Answer, ItemState
from tracker.records import AnswerRecord, ItemFilter, ListedObject
from tracker.store import Store
from tracker.stream import S3Stream, register

LONG = timedelta(minutes=30)
SHORT = timedelta(seconds=1)


def _source_with(store: Store, n: int, prefix: str = ""):
    source = store.source("bkt", prefix, create=True)
    keys = [f"{source.prefix}k{i:03d}" for i in range(n)]
    store.record_page(source, listed(keys), next_token=None, last_key=keys[-1], exhausted=True)
    return source, keys


# -- one listing, many datasets ------------------------------------------------------------


def test_two_datasets_over_one_source_each_get_every_key(store):
    source, keys = _source_with(store, 12)
    cats = store.dataset(source, "cats_v1", create=True)
    while leases := store.claim(cats, "cats@h:1", 5, LONG):
        store.record_answers(cats, [AnswerRecord(x.key, Answer.ACCEPT) for x in leases])
    assert set(item_states(store, cats).values()) == {ItemState.ANNOTATED}

    dogs = store.dataset(source, "dogs_review", create=True)
    got = [x.key for x in store.claim(dogs, "dogs@h:1", 100, LONG)]
    assert got == keys  # in listing order, none withheld because cats annotated them
    assert store.counts(dogs).state(ItemState.SERVED) == 12
    assert store.counts(cats).state(ItemState.ANNOTATED) == 12


def test_a_new_dataset_costs_one_row_and_counts_every_key_pending(store):
    source, _ = _source_with(store, 30)
    fresh = store.dataset(source, "fresh", create=True)
    counts = store.counts(fresh)
    assert counts.total == 30 and counts.state(ItemState.PENDING) == 30
    assert list(store.iter_items(fresh, ItemFilter(states=frozenset({ItemState.SERVED})))) == []


def test_an_answer_imported_ahead_of_the_frontier_is_not_served_and_counts_once(store):
    source, keys = _source_with(store, 6)
    ds = store.dataset(source, "ds", create=True)
    store.import_answers(ds, [AnswerRecord(keys[3], Answer.REJECT)])
    served = [x.key for x in store.claim(ds, "o", 10, LONG)]
    assert keys[3] not in served and len(served) == 5
    counts = store.counts(ds)
    assert counts.total == 6 and counts.state(ItemState.ANNOTATED) == 1


def test_prefix_spellings_name_one_source_and_overlapping_sources_are_refused(store):
    a = store.source("bkt", "img", create=True)
    assert store.source("bkt", "img/", create=True) == a
    assert store.source("bkt", "/img/") == a
    with pytest.raises(UsageError, match="overlaps"):
        store.source("bkt", "", create=True)
    with pytest.raises(UsageError, match="overlaps"):
        store.source("bkt", "img/cats", create=True)
    assert store.source("bkt", "imgs", create=True) != a  # a sibling folder is no overlap


# -- hand-over, tokens, attempts ------------------------------------------------------------


def test_a_lease_is_confirmed_at_hand_over_only_while_its_token_still_holds_it(store):
    """Seen to fail when: `_confirm` drops its `lease_token` check (A confirms a lease B
    took).
    """
    source, _ = _source_with(store, 3)
    ds = store.dataset(source, "ds", create=True)
    mine = store.claim(ds, "A", 3, SHORT)
    assert store.confirm(mine[0], LONG) is not None  # live: restarted from now
    time.sleep(1.2)
    taken = store.claim(ds, "B", 3, LONG)  # the other two expired: B takes them
    assert {x.key for x in taken} == {mine[1].key, mine[2].key}
    assert store.confirm(mine[1], LONG) is None  # taken: never handed over by A
    assert store.confirm(taken[0], LONG) is not None


def test_release_leaves_alone_a_key_another_claim_took_since(store):
    source, _ = _source_with(store, 2)
    ds = store.dataset(source, "ds", create=True)
    mine = store.claim(ds, "A", 2, SHORT)
    time.sleep(1.2)
    store.claim(ds, "A", 1, LONG)  # same owner, new claim: a new token for the first key
    assert store.release(ds, "A", mine) == 1  # only the key the old token still holds
    assert store.counts(ds).state(ItemState.SERVED) == 1


def test_a_key_served_max_attempts_times_without_an_answer_fails_with_a_reason(store):
    source, keys = _source_with(store, 1)
    ds = store.dataset(source, "ds", create=True)
    for _ in range(3):
        assert [x.key for x in store.claim(ds, "A", 1, SHORT, max_attempts=3)] == keys
        time.sleep(1.1)
    assert store.claim(ds, "A", 1, SHORT, max_attempts=3) == []
    (row,) = store.iter_items(ds)
    assert row.state is ItemState.FAILED
    assert "served 3 times, never answered" in (row.failure_reason or "")
    assert store.open_work(ds).done  # so the stream ends
    assert store.to_pending(ds, ItemFilter(states=frozenset({ItemState.FAILED}))) == 1
    assert [x.serves for x in store.claim(ds, "A", 1, SHORT, max_attempts=3)] == [4]


def test_each_serve_of_a_key_is_a_new_task_hash_and_the_first_keeps_the_old_one(store):
    from tracker.tasks import task_hash

    first = task_hash("b", "k", "image")
    assert task_hash("b", "k", "image", serve=1) == first
    assert task_hash("b", "k", "image", serve=2) not in {
        first,
        task_hash("b", "k", "image", serve=3),
    }


def test_answers_from_the_recipe_are_recorded_only_for_keys_the_dataset_was_served(store):
    source, keys = _source_with(store, 4)
    ds = store.dataset(source, "ds", create=True)
    (served,) = store.claim(ds, "A", 1, SHORT)
    time.sleep(1.1)  # an answer after the lease ended still counts
    forged = [AnswerRecord(k, Answer.ACCEPT) for k in keys[1:]] + [
        AnswerRecord("zz", Answer.ACCEPT)
    ]
    done = store.record_answers(
        ds, [AnswerRecord(served.key, Answer.ACCEPT), *forged], served_only=True
    )
    assert done == 1
    assert store.counts(ds).state(ItemState.ANNOTATED) == 1
    assert store.object_count(source) == 4  # the forged key was not inserted


# -- owners and heartbeats ------------------------------------------------------------------


def test_a_second_live_registration_of_an_owner_is_refused_and_a_stale_one_taken_over(store):
    """Seen to fail when: `register_owner` ignores `live` (no OwnerInUse); `heartbeat`
    drops its token check (the taken-over process still heartbeats).
    """
    first = store.register_owner("ds@h:8080", stale_after=timedelta(seconds=1))
    with pytest.raises(OwnerInUse, match="in use by a live process"):
        store.register_owner("ds@h:8080", stale_after=timedelta(seconds=1))
    time.sleep(1.2)  # no heartbeat: stale
    second = store.register_owner("ds@h:8080", stale_after=timedelta(seconds=1))
    assert not store.heartbeat(first)  # the old process learns it was taken over
    assert store.heartbeat(second)


def test_leases_of_an_owner_whose_heartbeat_stopped_are_claimable_before_they_expire(store):
    """Seen to fail when: the claim skips `_expire_dead_owners` (the dead owner's four
    keys stay leased).
    """
    source, keys = _source_with(store, 4)
    ds = store.dataset(source, "ds", create=True)
    store.register_owner("dead@h:1", stale_after=timedelta(seconds=1))
    store.claim(ds, "dead@h:1", 4, LONG)
    assert store.claim(ds, "alive", 4, LONG, stale_after=timedelta(seconds=1)) == []
    time.sleep(1.3)
    taken = store.claim(ds, "alive", 4, LONG, stale_after=timedelta(seconds=1))
    assert [x.key for x in taken] == keys


def _hold_keys_then_wait(url: str, owner: str, ready) -> None:
    """A recipe-like process: registers, leases 3 keys for 30 minutes, heartbeats."""
    from tests._stream_workers import KeyOnlyLoader

    store = Store.open(url)
    ds = store.dataset(store.source("bkt"), "ds")
    stream = S3Stream(store, ds, None, owner=owner, loader=KeyOnlyLoader("bkt"), batch_size=3)
    tasks = iter(stream)
    for _ in range(3):
        next(tasks)
    ready.set()
    time.sleep(600)


def test_a_restart_after_a_kill_takes_its_registration_and_keys_back_at_once(db_url):
    """Seen to fail when: `register` never takes over a dead pid's registration on this
    host (OwnerInUse at restart).
    """
    with Store.open(db_url) as store:
        source, keys = _source_with(store, 5)
        ds = store.dataset(source, "ds", create=True)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_hold_keys_then_wait, args=(db_url, "ds@h:8080", ready))
    process.start()
    try:
        assert ready.wait(60), "the first process never served its keys"
        with Store.open(db_url) as store, pytest.raises(OwnerInUse):
            register(store, "ds@h:8080", timedelta(seconds=60))  # alive: refused
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
        with Store.open(db_url) as store:
            start = time.monotonic()
            stream = S3Stream(store, ds, None, owner="ds@h:8080", loader=_Loader(), batch_size=3)
            got = [next(iter(stream))["meta"]["key"]]
            assert time.monotonic() - start < 5  # not after the 60 s stale time, at once
            assert stream.stats.reclaimed == 3 and got == keys[:1]
            stream.close()
    finally:
        if process.is_alive():
            process.kill()


def test_a_stream_whose_order_cannot_be_set_leaves_no_registration_behind(db_url):
    """`register` runs first (a refused owner must not change the dataset's order), so a
    `set_order` that fails after it undoes the registration: the same owner starts at once
    in this process, not `stale_after` later. Failed (OwnerInUse) before the clean-up."""
    with Store.open(db_url) as store:
        ds = store.dataset(store.source("bkt", create=True), "ds", create=True)
        real = store.set_order

        def fails(*args, **kwargs):
            raise StateDBError("state DB test: the ranking failed")

        store.set_order = fails  # type: ignore[method-assign]
        with pytest.raises(StateDBError, match="the ranking failed"):
            S3Stream(store, ds, None, owner="ds@h:8080", loader=_Loader(), order="random")
        store.set_order = real  # type: ignore[method-assign]
        stream = S3Stream(store, ds, None, owner="ds@h:8080", loader=_Loader(), order="random")
        assert stream.order.kind == "random"
        stream.close()


class _Loader:
    def load(self, key: str, size: int | None = None) -> str:
        return f"s3://bkt/{key}"


# -- the database's clock -------------------------------------------------------------------


def test_a_host_whose_clock_runs_minutes_ahead_takes_no_live_lease_on_postgresql(
    pg_url, monkeypatch
):
    """Seen to fail when: `_now` is this host's clock on PostgreSQL too (the fast host
    takes the three live leases).
    """
    with Store.open(pg_url) as honest:
        source, _ = _source_with(honest, 3)
        ds = honest.dataset(source, "ds", create=True)
        held = honest.claim(ds, "honest", 3, timedelta(minutes=5))
        from tracker import models
        from tracker import store as store_module

        ahead = lambda: models.datetime.now(models.UTC) + timedelta(minutes=10)  # noqa: E731
        monkeypatch.setattr(store_module, "utcnow", ahead)
        with Store.open(pg_url) as skewed:
            assert skewed.claim(ds, "skewed", 3, timedelta(minutes=5)) == []
            assert skewed.confirm(held[0], timedelta(minutes=5)) is not None
            (lease,) = skewed.claim(
                skewed.dataset(source, "other", create=True), "skewed", 1, timedelta(minutes=5)
            )
        # The expiry is the server's now + 5 min, not the skewed host's.
        assert lease.expires_at < ahead() - timedelta(minutes=4)


# -- the listing cursor ---------------------------------------------------------------------


def test_the_cursor_never_moves_back_when_an_older_page_commits_after_the_final_one(db_url):
    """Two listers: A has LISTed page k2 (its S3 call returned) and not yet recorded it; B
    records the final page k3. A's page then commits its keys, but the cursor stays at k3,
    exhausted. The pause is where the real race is: between a lister's LIST and its
    transaction, which no lock covers, so only the forward-only rule keeps the cursor.

    Mutation seen to fail: `cursor_move`'s `utf8_after(last_key, current.last_key)`
    replaced by `last_key is not None` (the cursor ends at k2, not exhausted)."""
    with Store.open(db_url) as a, Store.open(db_url) as b:
        src = a.source("bkt", create=True)
        a.record_page(src, [ListedObject("k1")], next_token="T1", last_key="k1", exhausted=False)
        listed, recorded = threading.Barrier(2, timeout=10), threading.Event()

        def lister_a() -> None:
            page = [ListedObject("k2")]  # what A's LIST returned, from the cursor at k1
            listed.wait()
            assert recorded.wait(10)  # B's final page committed meanwhile
            a.record_page(src, page, next_token="T2", last_key="k2", exhausted=False)

        older = threading.Thread(target=lister_a)
        older.start()
        listed.wait()
        b.record_page(src, [ListedObject("k3")], next_token=None, last_key="k3", exhausted=True)
        recorded.set()
        older.join(20)
        assert not older.is_alive()
        cursor = b.cursor(src)
        assert (cursor.last_key, cursor.continuation_token, cursor.exhausted) == ("k3", None, True)
        assert b.object_count(src) == 3


def test_a_page_recorded_beside_the_final_one_reads_the_cursor_under_a_lock(db_url):
    """A's transaction has read the cursor (at k1) for page k2 and stalls inside it; B
    records the final page k3 meanwhile. B must wait for A (PostgreSQL: the cursor row is
    read FOR UPDATE; SQLite serialises writers), or A would write k2 over k3 from its stale
    read. The pause is a hook in the real code path (`_cursor`, inside the transaction).

    Mutation seen to fail (PostgreSQL): `_cursor`'s `with_for_update()` removed (the cursor
    ends at k2, not exhausted)."""
    with Store.open(db_url) as a, Store.open(db_url) as b:
        src = a.source("bkt", create=True)
        a.record_page(src, [ListedObject("k1")], next_token="T1", last_key="k1", exhausted=False)
        read, go_on = threading.Event(), threading.Event()
        real = a._cursor

        def slow_cursor(*args, **kwargs):
            cursor = real(*args, **kwargs)
            read.set()
            go_on.wait(10)
            return cursor

        a._cursor = slow_cursor  # type: ignore[method-assign]
        older = threading.Thread(
            target=a.record_page,
            args=(src, [ListedObject("k2")]),
            kwargs={"next_token": "T2", "last_key": "k2", "exhausted": False},
        )
        older.start()
        assert read.wait(10)
        final = threading.Thread(
            target=b.record_page,
            args=(src, [ListedObject("k3")]),
            kwargs={"next_token": None, "last_key": "k3", "exhausted": True},
        )
        final.start()
        time.sleep(0.5)  # B runs as far as it can while A holds the cursor
        go_on.set()
        older.join(20)
        final.join(20)
        cursor = b.cursor(src)
        assert (cursor.last_key, cursor.continuation_token, cursor.exhausted) == ("k3", None, True)
        assert b.object_count(src) == 3


def test_reset_listing_is_not_undone_by_a_lister_that_read_the_cursor_before(store):
    """Seen to fail when: `record_page` moves the cursor whatever the generation it was
    read under.
    """
    src = store.source("bkt", create=True)
    store.record_page(src, [ListedObject("k1")], next_token="T1", last_key="k1", exhausted=False)
    before = store.cursor(src).generation
    store.reset_cursor(src)
    store.record_page(
        src,
        [ListedObject("k2")],
        next_token="T2",
        last_key="k2",
        exhausted=False,
        generation=before,
    )
    cursor = store.cursor(src)
    assert cursor.last_key is None and cursor.continuation_token is None
    assert store.object_count(src) == 2  # its keys are kept all the same

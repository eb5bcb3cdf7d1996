"""A key listed while a claim walks the frontier is never left behind it (PostgreSQL).

Object ids come from a sequence: a transaction inserting objects can hold a lower id than
one that commits before it. A claim that moved a dataset's frontier past the ids it saw,
while such an insert was still in flight, left that key behind the frontier with no items
row: never served, and counted pending by the counters but not by the recount, a
difference `tracker db check --repair` could not clear. The store orders the two with
advisory locks (`Store._hold_frontier`): these tests hold an insert open at its commit,
claim past it, then let it commit, and ask that every key be served exactly once.
SQLite serialises writers, so the race is PostgreSQL's only.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select

from tests._workers import DATASET, list_or_claim, run_processes
from tracker.dbcheck import check
from tracker.events import Change, ObjectEvent
from tracker.models import Answer, ItemState, items
from tracker.ordering import Order
from tracker.records import AnswerRecord, ListedObject
from tracker.store import DatasetRef, SourceRef, Store

#: Seconds any step may take before the test calls it a deadlock instead of hanging.
TIMEOUT = 30
LEASE = timedelta(hours=1)
HELD = "held"


class HeldCommit:
    """Pauses the first write transaction of the thread named `HELD` (each of `INSERTS` is
    one, inserting objects) just before its COMMIT, until `release` is set: its ids are
    drawn, its rows not visible yet."""

    def __init__(self, engine: Engine) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        event.listen(engine, "before_cursor_execute", self._executing)
        event.listen(engine, "commit", self._committing)

    def _executing(self, conn: Connection, _: Any, statement: str, *args: Any) -> None:
        # The bulk insert of objects goes through the driver's cursor, unseen here: the
        # same transaction's INSERTs and UPDATEs through SQLAlchemy mark it as a write.
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            conn.info["wrote"] = True

    def _committing(self, conn: Connection) -> None:
        wrote = conn.info.pop("wrote", False)
        if wrote and threading.current_thread().name == HELD and not self.reached.is_set():
            self.reached.set()
            self.release.wait(TIMEOUT)


def _in_thread(name: str, work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `work` in a thread; the list gets its result, or the exception it raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome


def _listed(store: Store, source: SourceRef) -> None:
    store.record_page(
        source, [ListedObject("late")], next_token=None, last_key="late", exhausted=False
    )


def _notified(store: Store, source: SourceRef) -> None:
    created = ObjectEvent("bucket", "late", Change.CREATED, datetime.now(UTC), size=1)
    store.apply_events(source, [created], lambda key, size: True)


def _imported_elsewhere(store: Store, source: SourceRef) -> None:
    """An answer imported into another dataset, for a key never listed, inserts the key."""
    store.import_answers(store.dataset(source, "other"), [AnswerRecord("late", Answer.ACCEPT, "s")])


INSERTS: dict[str, Callable[[Store, SourceRef], None]] = {
    "listing": _listed,
    "event": _notified,
    "imported answer": _imported_elsewhere,
}


def _claim_all(store: Store, dataset: DatasetRef, owner: str) -> list[str]:
    keys: list[str] = []
    while leases := store.claim(dataset, owner, 10, LEASE):
        keys += [lease.key for lease in leases]
    return keys


@pytest.mark.parametrize("order", [None, Order("random", 7)], ids=["listing order", "random"])
@pytest.mark.parametrize("insert", list(INSERTS))
def test_a_key_inserted_while_a_claim_walks_the_frontier_is_served_exactly_once(
    pg_url, insert, order
):
    with Store.open(pg_url) as store:
        source = store.source("bucket", create=True)
        dataset = store.dataset(source, DATASET, create=True)
        other = store.dataset(source, "other", create=True)
        if order is not None:
            store.set_order(dataset, order)
        store.record_page(
            source, [ListedObject("first")], next_token=None, last_key="first", exhausted=False
        )
        held = HeldCommit(store.engine)
        inserter, inserted = _in_thread(HELD, lambda: INSERTS[insert](store, source))
        assert held.reached.wait(TIMEOUT), f"the insert never reached its commit: {inserted}"
        # A key with a higher id, committed first (no listing cursor lock: the held
        # listing holds it), so that a claim sees ids past the one held back.
        store.import_answers(other, [AnswerRecord("after", Answer.ACCEPT, "s")])

        claimer, claimed = _in_thread("claim", lambda: store.claim(dataset, "c1", 10, LEASE))
        claimer.join(1)
        waited = claimer.is_alive()
        held.release.set()
        inserter.join(TIMEOUT)
        claimer.join(TIMEOUT)
        assert not inserter.is_alive() and not claimer.is_alive(), "deadlock"
        assert inserted == [None] and not isinstance(claimed[0], BaseException), (
            inserted,
            claimed,
        )
        # It waited for the insert in flight rather than walk past the id held back.
        assert waited, f"the claim did not wait for the insert: {claimed}"

        served = [lease.key for lease in claimed[0]] + _claim_all(store, dataset, "c2")
        assert Counter(served) == Counter(["first", "late", "after"])
        store.record_answers(dataset, [AnswerRecord(k, Answer.ACCEPT, "s") for k in served])
        assert check(store).differences == []


PAGES = 40
PAGE_SIZE = 25


def test_keys_listed_while_two_processes_claim_are_each_annotated_once(pg_url):
    with Store.open(pg_url) as store:
        store.source("bucket", create=True)

    reports = run_processes(
        list_or_claim,
        [
            (pg_url, "bucket", "lister", PAGES, PAGE_SIZE),
            (pg_url, "bucket", "p1", PAGES, PAGE_SIZE),
            (pg_url, "bucket", "p2", PAGES, PAGE_SIZE),
        ],
    )

    errors = [error for _, _, errs in reports for error in errs]
    assert errors == [], "\n".join(errors)
    keyed = {role: keys for role, keys, _ in reports}
    listed = keyed.pop("lister")
    assert len(listed) == PAGES * PAGE_SIZE
    annotated = Counter(key for keys in keyed.values() for key in keys)
    assert annotated == Counter(listed), "a key was lost or served twice"
    with Store.open(pg_url) as store:
        dataset = store.dataset(store.source("bucket"), DATASET)
        assert store.counts(dataset).by_state == {ItemState.ANNOTATED: PAGES * PAGE_SIZE}
        assert check(store).differences == []


class PausedBeforeFrontierLock:
    """Pauses the thread named "claim" just before it asks for the frontier lock, until
    `go` is set: it holds the `items` rows it leased from expired leases meanwhile."""

    def __init__(self, engine: Engine) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        event.listen(engine, "before_cursor_execute", self._executing)

    def _executing(self, conn: Connection, _: Any, statement: str, *args: Any) -> None:
        if threading.current_thread().name == "claim" and "pg_advisory_xact_lock(" in statement:
            self.reached.set()
            self.go.wait(TIMEOUT)


def test_a_claim_and_an_import_waiting_on_each_other_both_complete(pg_url):
    """The claim re-leases an expired key, then waits for the import's insert of a
    never-listed key to commit; the import waits on the re-leased key's row. PostgreSQL
    rolls one back to break the cycle, and that one runs again."""
    with Store.open(pg_url) as store:
        source = store.source("bucket", create=True)
        dataset = store.dataset(source, DATASET, create=True)
        store.record_page(
            source, [ListedObject("k")], next_token=None, last_key="k", exhausted=False
        )
        assert [lease.key for lease in store.claim(dataset, "c0", 1, timedelta(0))] == ["k"]
        paused = PausedBeforeFrontierLock(store.engine)

        claimer, claimed = _in_thread("claim", lambda: store.claim(dataset, "c1", 10, LEASE))
        assert paused.reached.wait(TIMEOUT)
        answers = [AnswerRecord(k, Answer.ACCEPT, "s") for k in ("k", "new")]
        importer, imported = _in_thread("import", lambda: store.import_answers(dataset, answers))
        importer.join(0.5)  # now waiting on the row of "k", holding the shared lock
        paused.go.set()
        claimer.join(TIMEOUT)
        importer.join(TIMEOUT)
        assert not claimer.is_alive() and not importer.is_alive(), "hung"
        assert not isinstance(claimed[0], BaseException), claimed
        assert not isinstance(imported[0], BaseException), imported
        assert [lease.key for lease in claimed[0]] in (["k"], [])
        assert imported[0][0] == 2  # both keys annotated
        assert _claim_all(store, dataset, "c2") == []
        assert check(store).differences == []


def test_a_claim_and_recorded_answers_waiting_on_each_other_both_complete(pg_url):
    """`record_answers` (a never-listed key: it inserts it) against a claim, as the import
    above: it waits first on the re-leased key's row, so its deadlock check runs first and
    PostgreSQL rolls it back; it runs again, once (each key annotated, counted once).
    Mutation seen to fail: `Store.record_answers` without `_again_after_deadlock`."""
    with Store.open(pg_url) as store:
        source = store.source("bucket", create=True)
        dataset = store.dataset(source, DATASET, create=True)
        store.record_page(
            source, [ListedObject("k")], next_token=None, last_key="k", exhausted=False
        )
        assert [lease.key for lease in store.claim(dataset, "c0", 1, timedelta(0))] == ["k"]
        paused = PausedBeforeFrontierLock(store.engine)

        claimer, claimed = _in_thread("claim", lambda: store.claim(dataset, "c1", 10, LEASE))
        assert paused.reached.wait(TIMEOUT)
        answers = [AnswerRecord(k, Answer.ACCEPT, "s") for k in ("k", "new")]
        recorder, recorded = _in_thread("record", lambda: store.record_answers(dataset, answers))
        recorder.join(0.5)  # now waiting on the row of "k", holding the shared lock
        paused.go.set()
        claimer.join(TIMEOUT)
        recorder.join(TIMEOUT)
        assert not claimer.is_alive() and not recorder.is_alive(), "hung"
        assert not isinstance(claimed[0], BaseException), claimed
        assert not isinstance(recorded[0], BaseException), recorded
        assert recorded[0] == 2  # both keys annotated
        rows = {r.key: r for r in store.iter_items(dataset)}
        assert {k: (r.state, r.answer) for k, r in rows.items()} == {
            "k": (ItemState.ANNOTATED, Answer.ACCEPT),
            "new": (ItemState.ANNOTATED, Answer.ACCEPT),
        }
        with store.engine.connect() as conn:
            assert set(conn.execute(select(items.c.answer_count)).scalars()) == {1}
        assert _claim_all(store, dataset, "c2") == []
        assert check(store).differences == []

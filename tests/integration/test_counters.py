"""The counters behind `tracker status` (migration 0007) equal the COUNT(*) oracle
(`Store.recount_numbers`) after any sequence of store operations, on both databases:
listing pages (new keys, overwrites), passes that mark keys deleted, S3 events that delete
and revive them, claims (listing and ranked order, attempts exhausted), answers from the
recipe and from imports, releases, requeues and resets, failures, new datasets, and write
transactions that roll back; and after several processes claim and answer at once.

Examples: a few dozen per database by default, more under `CI=true` (as
test_store_properties.py).
"""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, update

from tracker.events import Change, ObjectEvent
from tracker.models import Answer, ItemState, dataset_counts, items, objects
from tracker.ordering import Order
from tracker.records import AnswerRecord, DatasetRef, ItemFilter, ListedObject
from tracker.store import Store

KEYS = ["a", "b", "c", "d/e", "é", "f", "g", "h"]
ETAGS = ["e1", "e2", None]
OWNERS = ["o1", "o2"]
SESSIONS = [None, "s1"]
DATASETS = ["ds1", "ds2", "ds3"]
_buckets = count()

PROFILE = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
EXAMPLES = {"dev": 12, "ci": 60}[PROFILE]


class Rollback(Exception):
    """Raised inside a store write transaction to roll it back."""


class CounterMachine(RuleBasedStateMachine):
    store: Store  # set by the test that runs the machine

    def __init__(self) -> None:
        super().__init__()
        self.bucket = f"counters-{next(_buckets)}"
        self.source = self.store.source(self.bucket, create=True)
        self.datasets = [self.store.dataset(self.source, "ds1", create=True)]

    def _dataset(self, data: st.DataObject) -> DatasetRef:
        return data.draw(st.sampled_from(self.datasets))

    # -- rules --------------------------------------------------------------------------

    @initialize(keys=st.lists(st.sampled_from(KEYS), min_size=1, unique=True))
    def first_page(self, keys):
        self.record_page(keys, "e1")

    @rule(
        keys=st.lists(st.sampled_from(KEYS), max_size=4, unique=True), etag=st.sampled_from(ETAGS)
    )
    def record_page(self, keys, etag):
        page = [ListedObject(k, 1, etag) for k in keys]
        self.store.record_page(self.source, page, next_token=None, last_key=None, exhausted=False)

    @rule(seen=st.lists(st.sampled_from(KEYS), max_size=6, unique=True))
    def complete_pass(self, seen):
        """A complete pass that sees only `seen`: the other keys are marked deleted."""
        pass_id = self.store.begin_pass(self.source)
        self.store.record_page(
            self.source,
            [ListedObject(k, 1, "e1") for k in seen],
            next_token=None,
            last_key=None,
            exhausted=True,
        )
        self.store.finish_pass(self.source, pass_id)

    @rule(
        key=st.sampled_from(KEYS),
        removed=st.booleans(),
        etag=st.sampled_from(ETAGS),
        minute=st.integers(0, 10_000),
    )
    def event(self, key, removed, etag, minute):
        change = Change.REMOVED if removed else Change.CREATED
        time = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
        self.store.apply_events(
            self.source,
            [ObjectEvent(self.bucket, key, change, time, size=1, etag=etag)],
            lambda _key, _size: True,
        )

    @rule(name=st.sampled_from(DATASETS))
    def new_dataset(self, name):
        dataset = self.store.dataset(self.source, name, create=True)
        if dataset not in self.datasets:
            self.datasets.append(dataset)

    @rule(data=st.data(), kind=st.sampled_from(["listing", "random", "priority"]))
    def set_order(self, data, kind):
        self.store.set_order(self._dataset(data), Order(kind, 3))

    @rule(
        data=st.data(),
        owner=st.sampled_from(OWNERS),
        limit=st.integers(1, 4),
        exhaust=st.booleans(),
    )
    def claim(self, data, owner, limit, exhaust):
        self.store.claim(
            self._dataset(data),
            owner,
            limit,
            timedelta(minutes=5),
            max_attempts=1 if exhaust else None,
            stale_after=timedelta(minutes=1),
        )

    @rule(data=st.data())
    def leases_expire(self, data):
        dataset = self._dataset(data)
        with self.store.engine.begin() as conn:
            conn.execute(
                update(items)
                .where(items.c.dataset_id == dataset.id, items.c.state == ItemState.SERVED)
                .values(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC))
            )

    @rule(
        data=st.data(),
        batch=st.lists(
            st.tuples(st.sampled_from(KEYS), st.sampled_from(Answer), st.sampled_from(SESSIONS)),
            max_size=4,
        ),
        served_only=st.booleans(),
    )
    def answer(self, data, batch, served_only):
        records = [AnswerRecord(k, a, s) for k, a, s in batch]
        self.store.record_answers(self._dataset(data), records, served_only=served_only)

    @rule(
        data=st.data(),
        batch=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(Answer)), max_size=4),
        requeue_missing=st.booleans(),
    )
    def import_answers(self, data, batch, requeue_missing):
        records = list({k: AnswerRecord(k, a, "imp") for k, a in batch}.values())
        self.store.import_answers(self._dataset(data), records, requeue_missing=requeue_missing)

    @rule(data=st.data(), owner=st.sampled_from(OWNERS))
    def release(self, data, owner):
        self.store.release(self._dataset(data), owner)

    @rule(data=st.data(), states=st.frozensets(st.sampled_from(ItemState), min_size=1))
    def requeue(self, data, states):
        self.store.to_pending(self._dataset(data), ItemFilter(states=states))

    @rule(data=st.data(), keys=st.frozensets(st.sampled_from(KEYS), min_size=1))
    def reset_keys(self, data, keys):
        self.store.to_pending(self._dataset(data), ItemFilter(keys=keys))

    @rule(data=st.data(), key=st.sampled_from(KEYS))
    def mark_failed(self, data, key):
        self.store.mark_failed(self._dataset(data), key, "broken")

    @rule(data=st.data(), state=st.sampled_from(ItemState))
    def rolled_back(self, data, state):
        """Rows changed inside a store write transaction that then fails: the counters'
        changes roll back with them."""
        dataset = self._dataset(data)
        with pytest.raises(Rollback), self.store._write() as conn:
            conn.execute(update(items).where(items.c.dataset_id == dataset.id).values(state=state))
            conn.execute(
                objects.insert().values(source_id=self.source.id, key="rolled-back", etag="x")
            )
            raise Rollback

    # -- the property -------------------------------------------------------------------

    @invariant()
    def counters_equal_the_recount(self):
        assert self.store.source_numbers(self.source) == self.store.recount_source(self.source)
        for dataset in self.datasets:
            assert self.store.numbers(dataset) == self.store.recount_numbers(dataset)


def _settings(db_url: str) -> settings:
    examples = EXAMPLES if db_url.startswith("sqlite") else max(EXAMPLES // 2, 4)
    return settings(
        max_examples=examples,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def test_counters_equal_count_star_after_any_sequence_of_operations(db_url):
    with Store.open(db_url) as store:
        CounterMachine.store = store
        run_state_machine_as_test(CounterMachine, settings=_settings(db_url))


# -- several processes at once --------------------------------------------------------------


def _worker(url: str, bucket: str, owner: str, rounds: int) -> None:
    """Claim, answer some, release the rest, again and again."""
    with Store.open(url, migrate=False) as store:
        dataset = store.dataset(store.source(bucket), "ds")
        for n in range(rounds):
            leases = store.claim(dataset, owner, 5, timedelta(minutes=5))
            answered = [AnswerRecord(lease.key, Answer.ACCEPT, owner) for lease in leases[::2]]
            store.record_answers(dataset, answered)
            if n % 3 == 0:
                store.release(dataset, owner)
            if n % 7 == 0:
                again = ItemFilter(
                    states=frozenset({ItemState.ANNOTATED}),
                    keys=frozenset(r.key for r in answered),
                )
                store.to_pending(dataset, again)


def test_counters_equal_count_star_after_concurrent_processes_claim_and_answer(db_url):
    with Store.open(db_url) as store:
        source = store.source("concurrent", create=True)
        dataset = store.dataset(source, "ds", create=True)
        page = [ListedObject(f"k{i:05}", 1, "e") for i in range(3000)]
        store.record_page(source, page, next_token=None, last_key=None, exhausted=True)
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(target=_worker, args=(db_url, "concurrent", f"w{i}", 40))
            for i in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
            assert worker.exitcode == 0
        assert store.numbers(dataset) == store.recount_numbers(dataset)
        assert store.numbers(dataset).annotated > 0


def test_postgresql_delta_rows_are_compacted_and_still_add_up(pg_url):
    """Every 1,024th delta compacts the dataset's rows into one: a dataset's counters stay
    a few hundred rows to sum however many keys changed, and the sums do not move."""
    with Store.open(pg_url) as store:
        source = store.source("compacted", create=True)
        dataset = store.dataset(source, "ds", create=True)
        page = [ListedObject(f"k{i:05}", 1, "e") for i in range(2500)]
        store.record_page(source, page, next_token=None, last_key=None, exhausted=True)
        for _ in range(25):
            leases = store.claim(dataset, "o", 100, timedelta(minutes=5))
            store.record_answers(dataset, [AnswerRecord(x.key, Answer.REJECT, "s") for x in leases])
        store.to_pending(dataset, ItemFilter(states=frozenset({ItemState.ANNOTATED})))
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(func.count()).where(dataset_counts.c.dataset_id == dataset.id)
            ).scalar_one()
        assert rows < 1100  # 5,000 deltas were written
        assert store.numbers(dataset) == store.recount_numbers(dataset)
        assert store.counts(dataset).state(ItemState.PENDING) == 2500

"""Random sequences of store operations checked against a plain-Python model of the states.

Each example gets a new source in one shared state DB (so PostgreSQL stays fast), and the
clock is the machine's own (`now=`), advancing past leases at random. After every step the
database must equal the model, key by key, and the invariants below must hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from tracker.models import Answer, ItemState, items
from tracker.records import AnswerRecord, ItemFilter, ListedObject
from tracker.store import Store

KEYS = ["a", "b", "c", "c/", "é", "e\u0301", "[x] y", "line\nbreak"]
OWNERS = ["o1", "o2"]
SESSIONS = [None, "s1", "s2"]
LEASES = [timedelta(minutes=5), timedelta(minutes=10)]
_buckets = count()


@dataclass
class Model:
    id: int
    state: ItemState = ItemState.PENDING
    owner: str | None = None
    expires: datetime | None = None
    served_at: datetime | None = None
    answer: Answer | None = None
    session: str | None = None
    answer_count: int = 0

    def lease(self, owner: str, now: datetime, lease: timedelta) -> None:
        self.state, self.owner, self.expires, self.served_at = (
            ItemState.SERVED,
            owner,
            now + lease,
            now,
        )

    def clear_lease(self) -> None:
        self.owner = self.expires = None


class StoreMachine(RuleBasedStateMachine):
    store: Store  # set by the test that runs the machine

    def __init__(self) -> None:
        super().__init__()
        self.source = self.store.source(f"bucket-{next(_buckets)}", create=True)
        self.now = datetime(2030, 1, 1, tzinfo=UTC)
        self.model: dict[str, Model] = {}
        self.ids = count()
        self.annotated: set[str] = set()  # keys annotated and not requeued since

    def _new(self, key: str) -> Model:
        self.model[key] = Model(next(self.ids))
        return self.model[key]

    # -- rules --------------------------------------------------------------------------

    @initialize(keys=st.lists(st.sampled_from(KEYS), min_size=1, unique=True))
    def first_page(self, keys):
        self.record_page(keys)

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=0, max_size=5, unique=True))
    def record_page(self, keys):
        new = [k for k in keys if k not in self.model]
        inserted = self.store.record_page(
            self.source,
            [ListedObject(k) for k in keys],
            next_token="t",
            last_key=keys[-1] if keys else None,
            exhausted=False,
        )
        assert inserted == len(new)
        for key in new:
            self._new(key)

    @rule(
        owner=st.sampled_from(OWNERS),
        limit=st.integers(0, 4),
        lease=st.sampled_from(LEASES),
    )
    def claim(self, owner, limit, lease):
        expired = sorted(
            (
                k
                for k, m in self.model.items()
                if m.state is ItemState.SERVED and m.expires <= self.now
            ),
            key=lambda k: (self.model[k].expires, self.model[k].id),
        )[:limit]
        pending = sorted(
            (k for k, m in self.model.items() if m.state is ItemState.PENDING),
            key=lambda k: self.model[k].id,
        )[: limit - len(expired)]
        leases = self.store.claim(self.source, owner, limit, lease, now=self.now)
        # which keys are chosen is the contract; the order of the returned list is not
        assert sorted(lease.key for lease in leases) == sorted(expired + pending)
        assert len({lease.token for lease in leases}) <= 1
        for key in expired + pending:
            self.model[key].lease(owner, self.now, lease)

    @rule(owner=st.sampled_from(OWNERS), lease=st.sampled_from(LEASES))
    def reclaim(self, owner, lease):
        mine = sorted(
            (k for k, m in self.model.items() if m.state is ItemState.SERVED and m.owner == owner),
            key=lambda k: (self.model[k].served_at, self.model[k].id),
        )
        leases = self.store.reclaim(self.source, owner, lease, now=self.now)
        assert [lease.key for lease in leases] == mine
        for key in mine:
            self.model[key].lease(owner, self.now, lease)

    @rule(
        owner=st.sampled_from(OWNERS),
        keys=st.none() | st.lists(st.sampled_from(KEYS), max_size=4, unique=True),
    )
    def release(self, owner, keys):
        chosen = [
            k
            for k, m in self.model.items()
            if m.state is ItemState.SERVED and m.owner == owner and (keys is None or k in keys)
        ]
        assert self.store.release(self.source, owner, keys) == len(chosen)
        for key in chosen:
            self.model[key].state = ItemState.PENDING
            self.model[key].clear_lease()

    @rule(
        batch=st.lists(
            st.tuples(st.sampled_from(KEYS), st.sampled_from(Answer), st.sampled_from(SESSIONS)),
            max_size=5,
        )
    )
    def record_answers(self, batch):
        last_seen = {
            k: (m.answer, m.session)
            for k, m in self.model.items()
            if m.state is ItemState.ANNOTATED
        }
        for key in sorted({k for k, _, _ in batch} - set(self.model)):
            self._new(key)  # never-listed keys are inserted in key order, then annotated
        became_annotated = 0
        for key, answer, session in batch:
            if last_seen.get(key) == (answer, session):
                continue
            last_seen[key] = (answer, session)
            item = self.model[key]
            if item.state is ItemState.ANNOTATED:
                item.answer_count += 1
                continue
            became_annotated += 1
            item.state, item.answer, item.session, item.answer_count = (
                ItemState.ANNOTATED,
                answer,
                session,
                1,
            )
            item.clear_lease()
            self.annotated.add(key)
        records = [AnswerRecord(k, a, s) for k, a, s in batch]
        assert self.store.record_answers(self.source, records, now=self.now) == became_annotated

    @rule(key=st.sampled_from(KEYS))
    def mark_failed(self, key):
        item = self.model.get(key)
        expected = item is not None and item.state is not ItemState.ANNOTATED
        assert self.store.mark_failed(self.source, key, "broken") is expected
        if expected:
            item.state = ItemState.FAILED
            item.clear_lease()

    @rule(states=st.frozensets(st.sampled_from(ItemState), min_size=1))
    def to_pending(self, states):
        chosen = [k for k, m in self.model.items() if m.state in states]
        assert self.store.to_pending(self.source, ItemFilter(states=states)) == len(chosen)
        for key in chosen:
            item = self.model[key]
            item.state, item.answer, item.session, item.answer_count = (
                ItemState.PENDING,
                None,
                None,
                0,
            )
            item.clear_lease()
            self.annotated.discard(key)

    @precondition(lambda self: self.model)
    @rule(minutes=st.integers(1, 15))
    def advance_clock(self, minutes):
        self.now += timedelta(minutes=minutes)

    # -- invariants -----------------------------------------------------------------------

    def _rows(self):
        with self.store.engine.connect() as conn:
            return conn.execute(
                select(items).where(items.c.source_id == self.source.id).order_by(items.c.id)
            ).all()

    @invariant()
    def database_equals_model(self):
        rows = self._rows()
        assert [r.key for r in rows] == sorted(self.model, key=lambda k: self.model[k].id)
        for r in rows:
            m = self.model[r.key]
            assert (r.state, r.lease_owner, r.lease_expires_at) == (m.state, m.owner, m.expires)
            assert (r.answer, r.session_id, r.answer_count) == (m.answer, m.session, m.answer_count)

    @invariant()
    def counts_add_up_to_the_number_of_keys(self):
        counts = self.store.counts(self.source, now=self.now)
        assert counts.total == len(self.model)
        assert all(n > 0 for n in counts.by_state.values())  # one state per key, none empty
        for state in ItemState:
            assert counts.state(state) == sum(m.state is state for m in self.model.values())
        assert counts.expired_leases == sum(
            m.state is ItemState.SERVED and m.expires <= self.now for m in self.model.values()
        )

    @invariant()
    def served_keys_and_only_served_keys_hold_a_lease(self):
        for r in self._rows():
            held = (r.lease_owner, r.lease_token, r.lease_expires_at)
            if r.state is ItemState.SERVED:
                assert None not in held
            else:
                assert held == (None, None, None)

    @invariant()
    def annotated_keys_stay_annotated_until_requeued(self):
        states = {r.key: r.state for r in self._rows()}
        assert all(states[k] is ItemState.ANNOTATED for k in self.annotated)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_store_matches_model_under_random_operations(db_url, request):
    examples = 30 if request.node.callspec.params["db_url"] == "sqlite" else 15
    with Store.open(db_url) as store:
        StoreMachine.store = store
        run_state_machine_as_test(
            StoreMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )

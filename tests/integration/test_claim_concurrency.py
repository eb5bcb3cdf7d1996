"""Real processes (multiprocessing 'spawn', no shared interpreter) claiming from one state
DB at once: on SQLite (WAL, busy timeout, BEGIN IMMEDIATE) and on PostgreSQL (FOR UPDATE
SKIP LOCKED), every key is served to exactly one process and no lock error reaches a caller.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from itertools import pairwise

import pytest
from sqlalchemy import func, select

from tests._workers import DATASET, answer_keys, claim_and_answer, run_processes
from tracker.models import Answer, ItemState, items, objects
from tracker.ordering import Order, seeded_hash
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store

KEYS = [f"img/{i:05}.jpg" for i in range(2000)]
#: Each items row with its key (items name the object by id).
KEYED = items.join(objects, objects.c.id == items.c.object_id)
PROCESSES = 4
BATCH = 10


@pytest.mark.parametrize("keys_are", ["new", "handed-back"])
def test_concurrent_claimers_each_get_disjoint_keys_and_no_lock_errors(db_url, keys_are):
    """New keys are taken past the frontier; handed-back keys (every key released to
    `pending` first) by the pending claim, side by side under SKIP LOCKED on PostgreSQL.
    Seen to fail when: SQLite's writes BEGIN DEFERRED ("database is locked"); PostgreSQL's
    pending claim drops FOR UPDATE SKIP LOCKED ("a key was served to two processes",
    handed-back)."""
    with Store.open(db_url) as store:
        source = store.source("bucket", create=True)
        for start in range(0, len(KEYS), 1000):
            page = KEYS[start : start + 1000]
            store.record_page(
                source,
                [ListedObject(k) for k in page],
                next_token=None,
                last_key=page[-1],
                exhausted=start + 1000 >= len(KEYS),
            )
        if keys_are == "handed-back":
            dataset = store.dataset(source, DATASET, create=True)
            assert len(store.claim(dataset, "first", len(KEYS), timedelta(hours=1))) == len(KEYS)
            assert store.release(dataset, "first") == len(KEYS)

    reports = run_processes(
        claim_and_answer, [(db_url, "bucket", f"p{n}", BATCH) for n in range(PROCESSES)]
    )

    errors = [error for _, _, errs in reports for error in errs]
    assert errors == [], "\n".join(errors)
    claimed = {owner: keys for owner, keys, _ in reports}
    all_claims = [key for keys in claimed.values() for key in keys]
    assert len(all_claims) == len(set(all_claims)), "a key was served to two processes"
    assert set(all_claims) == set(KEYS)
    busy = [owner for owner, keys in claimed.items() if keys]
    assert len(busy) > 1, f"only {busy} claimed anything: the test did not run concurrently"

    with Store.open(db_url) as store:
        dataset = store.dataset(source, DATASET)
        assert store.counts(dataset).by_state == {ItemState.ANNOTATED: len(KEYS)}
        with store.engine.connect() as conn:
            # each key answered once, by the process it was served to
            counts = conn.execute(select(func.max(items.c.answer_count))).scalar_one()
            assert counts == 1
            answered_by = dict(
                conn.execute(select(objects.c.key, items.c.session_id).select_from(KEYED)).all()
            )
        assert all(answered_by[key] == owner for owner, keys in claimed.items() for key in keys)


def test_processes_claiming_in_random_order_never_share_a_key(db_url):
    """Half the keys are listed after the order was set: the first claims race to rank
    them into the queue, and still no key goes to two processes."""
    half = len(KEYS) // 2
    with Store.open(db_url) as store:
        source = store.source("bucket", create=True)
        for part, exhausted in ((KEYS[:half], False), (KEYS[half:], True)):
            store.record_page(
                source,
                [ListedObject(k) for k in part],
                next_token=None,
                last_key=part[-1],
                exhausted=exhausted,
            )
            if not exhausted:
                store.set_order(store.dataset(source, DATASET, create=True), Order("random", 11))

    reports = run_processes(
        claim_and_answer, [(db_url, "bucket", f"p{n}", BATCH) for n in range(PROCESSES)]
    )

    errors = [error for _, _, errs in reports for error in errs]
    assert errors == [], "\n".join(errors)
    all_claims = [key for _, keys, _ in reports for key in keys]
    assert len(all_claims) == len(set(all_claims)), "a key was served to two processes"
    assert set(all_claims) == set(KEYS)
    assert len([keys for _, keys, _ in reports if keys]) > 1, "the test did not run concurrently"
    # Every process's first claim is made before any other claim goes on (the workers'
    # barrier), and the first of them ranks every key: from then on each claim takes the
    # lowest random ranks left, so each process's claims come in rank order, batch after
    # batch. (Its first batch may predate the ranking of the half listed late.)
    # Mutation seen to fail: `Store.set_order` not writing `ranked_as` (listing order).
    rank = {key: seeded_hash(11, key) for key in KEYS}
    for owner, keys, _ in reports:
        batches = [sorted(rank[k] for k in keys[i : i + BATCH]) for i in range(0, len(keys), BATCH)]
        for before, after in pairwise(batches[1:]):
            assert before[-1] < after[0], f"{owner} was not served in the random order"
    assert sum(len(keys) > 2 * BATCH for _, keys, _ in reports) > 0, "nothing to check"


def test_concurrent_answers_for_the_same_keys_are_all_counted(db_url):
    """Two sessions answer the same keys at the same moment, half of them never listed: the
    first answer wins each key, the other is counted, and neither caller sees an error. The
    listed keys were served first, so their rows exist and only the row lock serialises the
    two writers (a new row's insert would make the second wait on the unique index).
    Seen to fail when: SQLite's writes BEGIN DEFERRED ("database is locked"). Without the
    PostgreSQL row lock it still passed (the processes drift apart into a pipeline): the
    test below pauses both writers at the race instead."""
    listed, unlisted = KEYS[:200], [f"imported/{i:04}.jpg" for i in range(200)]
    with Store.open(db_url) as store:
        source = store.source("bucket", create=True)
        store.record_page(
            source,
            [ListedObject(k) for k in listed],
            next_token=None,
            last_key=listed[-1],
            exhausted=True,
        )
        dataset = store.dataset(source, DATASET, create=True)
        assert len(store.claim(dataset, "server", len(listed), timedelta(hours=1))) == len(listed)
    keys = [k for pair in zip(listed, unlisted, strict=True) for k in pair]
    reports = run_processes(answer_keys, [(db_url, "bucket", s, keys, BATCH) for s in ("s1", "s2")])

    errors = [error for _, errs in reports for error in errs]
    assert errors == [], "\n".join(errors)
    with Store.open(db_url) as store, store.engine.connect() as conn:
        rows = conn.execute(
            select(
                objects.c.key, items.c.state, items.c.answer_count, items.c.session_id
            ).select_from(KEYED)
        ).all()
    assert sorted(r.key for r in rows) == sorted(keys)
    assert {r.state for r in rows} == {ItemState.ANNOTATED}
    assert {r.answer_count for r in rows} == {2}, "an answer was lost"
    assert {r.session_id for r in rows} <= {"s1", "s2"}


def test_two_writers_that_both_read_a_served_key_before_either_answers_are_serialised(
    db_url, monkeypatch
):
    """The race itself, paused where it is: each writer stops right after reading the key's
    row (`_lock_answered`) until the other has read it too, or 2 s have passed. With the
    row lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite) the second writer cannot read before
    the first commits, so it reads the answer and counts its own.
    Seen to fail when: PostgreSQL's `_answered_rows` drops its row lock (`lock=False`: both
    writers take their answer as the first, answer_count 1, the second answer wins)."""
    key = "img/00000.jpg"
    with Store.open(db_url) as store:
        source = store.source("bucket", create=True)
        store.record_page(
            source, [ListedObject(key)], next_token=None, last_key=key, exhausted=True
        )
        dataset = store.dataset(source, DATASET, create=True)
        assert [lease.key for lease in store.claim(dataset, "server", 1, timedelta(hours=1))] == [
            key
        ]

        both_read = threading.Barrier(2, timeout=2)
        original = Store._lock_answered

        def read_then_wait(self, conn, dataset, object_ids):
            found = original(self, conn, dataset, object_ids)
            with contextlib.suppress(threading.BrokenBarrierError):
                both_read.wait()
            return found

        monkeypatch.setattr(Store, "_lock_answered", read_then_wait)
        errors: list[BaseException] = []
        first_commit: list[str] = []

        def answer(session: str, verdict: Answer) -> None:
            try:
                if store.record_answers(dataset, [AnswerRecord(key, verdict, session)]):
                    first_commit.append(session)
            except BaseException as error:  # reported below
                errors.append(error)

        writers = [
            threading.Thread(target=answer, args=("s1", Answer.ACCEPT)),
            threading.Thread(target=answer, args=("s2", Answer.REJECT)),
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=60)
        assert errors == []
        with store.engine.connect() as conn:
            row = conn.execute(
                select(items.c.answer_count, items.c.session_id, items.c.answer).select_from(KEYED)
            ).one()
    assert len(first_commit) == 1, f"both writers annotated the key: {first_commit}"
    assert row.answer_count == 2, "an answer was lost"
    assert row.session_id == first_commit[0], "a later answer replaced the first"
    assert row.answer == {"s1": Answer.ACCEPT, "s2": Answer.REJECT}[first_commit[0]]

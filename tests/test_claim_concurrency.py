"""Real processes (multiprocessing 'spawn', no shared interpreter) claiming from one state
DB at once: on SQLite (WAL, busy timeout, BEGIN IMMEDIATE) and on PostgreSQL (FOR UPDATE
SKIP LOCKED), every key is served to exactly one process and no lock error reaches a caller.
"""

from __future__ import annotations

import multiprocessing

from _workers import claim_and_answer
from sqlalchemy import func, select

from tracker.models import ItemState, items
from tracker.records import ListedObject
from tracker.store import Store

KEYS = [f"img/{i:05}.jpg" for i in range(2000)]
PROCESSES = 5
BATCH = 10


def run_claimers(url: str, bucket: str) -> list[tuple[str, list[str], list[str]]]:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(
            target=claim_and_answer, args=(url, bucket, f"p{n}", BATCH, barrier, results)
        )
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return reports


def test_concurrent_claimers_each_get_disjoint_keys_and_no_lock_errors(db_url):
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

    reports = run_claimers(db_url, "bucket")

    errors = [error for _, _, errs in reports for error in errs]
    assert errors == [], "\n".join(errors)
    claimed = {owner: keys for owner, keys, _ in reports}
    all_claims = [key for keys in claimed.values() for key in keys]
    assert len(all_claims) == len(set(all_claims)), "a key was served to two processes"
    assert set(all_claims) == set(KEYS)
    busy = [owner for owner, keys in claimed.items() if keys]
    assert len(busy) > 1, f"only {busy} claimed anything: the test did not run concurrently"

    with Store.open(db_url) as store:
        assert store.counts(source).by_state == {ItemState.ANNOTATED: len(KEYS)}
        with store.engine.connect() as conn:
            # each key answered once, by the process it was served to
            counts = conn.execute(select(func.max(items.c.answer_count))).scalar_one()
            assert counts == 1
            answered_by = dict(conn.execute(select(items.c.key, items.c.session_id)).all())
        assert all(answered_by[key] == owner for owner, keys in claimed.items() for key in keys)

"""Functions run in child processes (multiprocessing 'spawn') by the concurrency tests.

They live in a plain module, not a test file, so that a spawned child imports only this and
the tracker. Each reports back through a queue, exceptions included, so that the parent
test asserts on everything that reached the caller.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from datetime import timedelta
from typing import Any

from tracker.models import Answer
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store

#: The Prodigy dataset the workers annotate; `Store.dataset(create=True)` is safe to race.
DATASET = "ds"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}\n{traceback.format_exc()}"


def open_new_db(url: str, barrier: Any, results: Any) -> None:
    """Wait for the others, then open (and so create) the state DB at `url`."""
    try:
        barrier.wait(timeout=60)
        with Store.open(url) as store:
            store.source("bucket", "", create=True)
        results.put(("ok", None))
    except BaseException as error:
        results.put(("error", _describe(error)))


def claim_and_answer(
    url: str, bucket: str, owner: str, batch: int, barrier: Any, results: Any
) -> None:
    """Claim `batch` keys at a time and answer them, until nothing is left to claim.

    Every process makes its first claim before any answers: SQLite's busy handler sleeps
    with back-off, so one process looping claim-answer could otherwise take every key
    while the others sleep, and the test would prove nothing about concurrent claims."""
    claimed: list[str] = []
    errors: list[str] = []
    try:
        with Store.open(url) as store:
            dataset = store.dataset(store.source(bucket), DATASET, create=True)
            barrier.wait(timeout=60)
            first = True
            while True:
                leases = store.claim(dataset, owner, batch, timedelta(hours=1))
                if first:
                    barrier.wait(timeout=60)  # every process holds its first claim now
                    first = False
                if not leases:
                    break
                claimed.extend(lease.key for lease in leases)
                store.record_answers(
                    dataset, [AnswerRecord(lease.key, Answer.ACCEPT, owner) for lease in leases]
                )
    except BaseException as error:
        errors.append(_describe(error))
    results.put((owner, claimed, errors))


def answer_keys(
    url: str, bucket: str, session: str, keys: list[str], batch: int, barrier: Any, results: Any
) -> None:
    """Answer `keys` in batches as `session`, racing the other processes doing the same."""
    errors: list[str] = []
    try:
        with Store.open(url) as store:
            dataset = store.dataset(store.source(bucket), DATASET, create=True)
            barrier.wait(timeout=60)
            for start in range(0, len(keys), batch):
                store.record_answers(
                    dataset,
                    [AnswerRecord(k, Answer.ACCEPT, session) for k in keys[start : start + batch]],
                )
    except BaseException as error:
        errors.append(_describe(error))
    results.put((session, errors))


def run_processes(target: Any, args_per_process: list[tuple], *, timeout: float = 120) -> list:
    """Start one spawned process per argument tuple (each gets a barrier and a queue last)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(args_per_process)), context.Queue()
    processes = [
        context.Process(target=target, args=(*args, barrier, results)) for args in args_per_process
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=timeout) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return reports


def list_or_claim(
    url: str, bucket: str, role: str, pages: int, size: int, barrier: Any, results: Any
) -> None:
    """As "lister": record `pages` pages of `size` new keys, one transaction each. As any
    other role (a lease owner): claim and answer until the listing is done and nothing is
    left, so that claims walk the frontier while pages are being inserted."""
    done: list[str] = []
    errors: list[str] = []
    try:
        with Store.open(url) as store:
            source = store.source(bucket)
            dataset = store.dataset(source, DATASET, create=True)
            barrier.wait(timeout=60)
            if role == "lister":
                for p in range(pages):
                    page = [f"k/{p:04}/{i:04}" for i in range(size)]
                    store.record_page(
                        source,
                        [ListedObject(k) for k in page],
                        next_token=None,
                        last_key=page[-1],
                        exhausted=p == pages - 1,
                    )
                    done += page
            else:
                while True:
                    listed = store.cursor(source).exhausted_at is not None
                    leases = store.claim(dataset, role, 7, timedelta(hours=1))
                    if not leases:
                        if listed:
                            break
                        time.sleep(0.005)
                        continue
                    done += [lease.key for lease in leases]
                    store.record_answers(
                        dataset, [AnswerRecord(lease.key, Answer.ACCEPT, role) for lease in leases]
                    )
    except BaseException as error:
        errors.append(_describe(error))
    results.put((role, done, errors))


def write_until_stopped(url: str, bucket: str, stop: Any, results: Any) -> None:
    """A busy writer, as a `tracker sync` beside recipes: pages of new keys, claims, one
    transaction per answer, a key deleted by an event, round after round until `stop` is
    set. Puts ("ready", 0, []) once it writes, then (rounds, errors) at the end."""
    from datetime import UTC, datetime

    from tracker.events import Change, ObjectEvent

    rounds = 0
    errors: list[str] = []
    try:
        with Store.open(url) as store:
            source = store.source(bucket, "", create=True)
            dataset = store.dataset(source, DATASET, create=True)
            results.put(("ready", 0, []))
            while not stop.is_set():
                page = [ListedObject(f"w/{rounds:06}/{i:03}.jpg", 10, "e" * 32) for i in range(50)]
                store.record_page(
                    source, page, next_token=None, last_key=page[-1].key, exhausted=False
                )
                for lease in store.claim(dataset, "w@host:1", 20, timedelta(minutes=5)):
                    store.record_answers(
                        dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "w-session")]
                    )
                gone = ObjectEvent(bucket, page[-1].key, Change.REMOVED, datetime.now(UTC))
                store.apply_events(source, [gone], lambda key, size: True, ask=lambda key: None)
                rounds += 1
    except BaseException as error:
        errors.append(_describe(error))
    results.put(("done", rounds, errors))

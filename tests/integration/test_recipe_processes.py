"""Several recipe processes on one state DB, and a recipe process killed with SIGKILL.

Real processes (`tests/recipe_worker.py`), real S3 (SeaweedFS), SQLite and PostgreSQL:
what is proven here is the claim's atomicity across processes and that a crash loses no key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_support import served_times
from tests.images_fixtures import put_images
from tests.prodigy_harness import App, load_recipes
from tracker.models import ItemState
from tracker.store import Store

ROOT = Path(__file__).resolve().parents[2]


def worker(config: dict) -> subprocess.Popen[str]:
    Store.open(config["state_db"]).close()  # created once, as `tracker db upgrade` would
    return subprocess.Popen(
        [sys.executable, "-m", "tests.recipe_worker", json.dumps(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def lines(process: subprocess.Popen[str], timeout: float = 120) -> list[dict]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def read_until_holding(process: subprocess.Popen[str]) -> list[str]:
    keys: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        message = json.loads(line)
        if message.get("holding"):
            return keys
        keys.extend(message["batch"])
    raise AssertionError(f"worker ended early: {process.stderr.read() if process.stderr else ''}")


@pytest.mark.slow
def test_two_recipe_processes_never_get_the_same_key(seaweedfs, bucket, db_url) -> None:
    """Seen to fail when: `_claim_expired` also takes other owners' live leases ("a key
    twice in one batch", SQLite).
    """
    keys = put_images(seaweedfs.client(), bucket, [f"k{i:03d}.png" for i in range(120)])
    common = {"bucket": bucket, "state_db": db_url, "endpoint_url": seaweedfs.endpoint_url}
    # Both hold what they take: while leases hold, no key can go to both.
    a = worker({**common, "owner": "a", "mode": "hold", "batches": 6})
    b = worker({**common, "owner": "b", "mode": "hold", "batches": 6})
    try:
        got_a, got_b = read_until_holding(a), read_until_holding(b)
    finally:
        for process in (a, b):
            process.kill()
            process.wait()
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == keys
    assert len(got_a) == len(set(got_a)) == 60


@pytest.mark.slow
def test_two_annotating_processes_share_the_work_without_duplicates(
    seaweedfs, bucket, db_url
) -> None:
    keys = put_images(seaweedfs.client(), bucket, [f"k{i:03d}.png" for i in range(95)])
    common = {"bucket": bucket, "state_db": db_url, "endpoint_url": seaweedfs.endpoint_url}
    a = worker({**common, "owner": "a", "mode": "annotate", "think": 0.05})
    b = worker({**common, "owner": "b", "mode": "annotate", "think": 0.05})
    served = Counter()
    for process in (a, b):
        for message in lines(process):
            served.update(message.get("batch", []))
    assert sorted(served) == keys
    assert max(served.values()) == 1
    with Store.open(db_url) as store:
        counts = store.counts(store.dataset(store.source(bucket), "ds"))
    assert counts.state(ItemState.ANNOTATED) == 95 and counts.total == 95


@pytest.mark.slow
def test_sigkilled_recipe_loses_nothing_its_keys_return_once_after_the_lease(
    seaweedfs, bucket, db_url
) -> None:
    """Seen to fail when: `_claim_expired` never takes an expired lease (the survivor's
    stream blocks with the victim's 10 keys out, SQLite).
    """
    keys = put_images(seaweedfs.client(), bucket, [f"k{i:03d}.png" for i in range(30)])
    common = {"bucket": bucket, "state_db": db_url, "endpoint_url": seaweedfs.endpoint_url}
    lease = 3.0
    victim = worker(
        {**common, "owner": "victim", "mode": "hold", "batches": 1, "lease": f"{lease:g}s"}
    )
    try:
        held = read_until_holding(victim)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL and len(held) == 10
    # When the victim's leases started, by the DB's clock that grants and expires them (a
    # clock started here, or before the process, would count its start-up as waiting).
    first_serve = served_times(db_url, bucket)

    recipe, _ = load_recipes()["stream_from_s3"]
    survivor = App(
        recipe(
            "ds",
            bucket,
            label="CAT",
            state_db=db_url,
            endpoint_url=seaweedfs.endpoint_url,
            owner="survivor",
            lease="1h",
        )
    )
    served: list[str] = []
    second_serve: dict[str, datetime | None] = {}
    while not survivor.exhausted:
        batch = survivor.next_batch()
        served.extend(t["meta"]["key"] for t in batch)
        if set(held) & {t["meta"]["key"] for t in batch}:
            second_serve.update(served_times(db_url, bucket))  # before the answer
        survivor.answer(batch)
    assert sorted(served) == keys  # every key once: the victim's came back exactly once
    # Not before their lease ran out, timed from the victim's serve of each.
    # Mutation seen to fail: `S3Stream`'s lease cut to 0.6 of `--lease`.
    for key in held:
        first_at, again_at = first_serve[key], second_serve.get(key)
        assert first_at is not None and again_at is not None and again_at > first_at, key
        assert again_at - first_at >= timedelta(seconds=lease), key
    # The victim's browser sends its answers late (its session still had the batch).
    late = [
        {"meta": {"bucket": bucket, "key": k}, "answer": "reject", "_session_id": "ds-victim"}
        for k in held
    ]
    survivor.components["update"](late)
    survivor.exit()
    with Store.open(db_url) as store:
        dataset = store.dataset(store.source(bucket), "ds")
        rows = {r.key: r for r in store.iter_items(dataset)}
    assert all(rows[k].state is ItemState.ANNOTATED for k in keys)
    survivor.components["update"].__self__.close()
    with Store.open(db_url) as store:
        from sqlalchemy import select

        from tracker.models import items, objects

        with store.engine.connect() as conn:
            counts = dict(
                conn.execute(
                    select(objects.c.key, items.c.answer_count)
                    .join(objects, objects.c.id == items.c.object_id)
                    .where(items.c.dataset_id == dataset.id, objects.c.key.in_(held))
                ).all()
            )
    assert counts == dict.fromkeys(held, 2)  # the late answers were counted, not dropped

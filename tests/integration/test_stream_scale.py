"""Resume cost and memory at scale: what the design promises users about big buckets.

- A restart with 5,000 keys annotated serves the next new key after ONE ListObjectsV2 call,
  on SQLite and PostgreSQL (the seed's recipe re-lists from the first page: 6 calls here,
  ~100 at 100k keys).
- The streaming process's memory does not grow with the number of keys already annotated.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from tests.images_fixtures import count_list_calls, put_images
from tracker.lister import Lister
from tracker.models import Answer
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store
from tracker.stream import open_stream

#: The Prodigy dataset the annotated keys belong to and the streams serve.
DATASET = "ds"


@pytest.mark.slow
def test_restart_with_5000_annotated_serves_the_next_new_key_after_one_list_call(
    seaweedfs, bucket, db_url, capsys
) -> None:
    s3 = seaweedfs.client()
    keys = put_images(s3, bucket, [f"img/{i:05d}.png" for i in range(5010)], threads=32)
    with Store.open(db_url) as store:
        source = store.source(bucket, create=True)
        lister = Lister(store, source, s3)
        for _ in range(5):
            lister.list_page()
        assert not lister.exhausted
        dataset = store.dataset(source, DATASET, create=True)
        store.record_answers(dataset, [AnswerRecord(k, Answer.ACCEPT, "ds-a") for k in keys[:5000]])

    client = seaweedfs.client()
    calls = count_list_calls(client)
    with open_stream(
        bucket, dataset=DATASET, state_db=db_url, owner="restarted", client=client
    ) as stream:
        first = next(iter(stream))
    assert first["meta"]["key"] == "img/05000.png"
    assert len(calls) == 1
    query = calls[0]["query_string"]  # resumed from the saved cursor, not the first page
    assert "continuation-token" in query or "start-after" in query

    seed_calls = count_list_calls(seeded := seaweedfs.client())
    done = set(keys[:5000])
    for page in seeded.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        if any(o["Key"] not in done for o in page.get("Contents", [])):
            break
    with capsys.disabled():
        print(
            f"\n[figure] restart with 5000 annotated: {len(calls)} LIST call(s) to the next new "
            f"key; the seed's algorithm: {len(seed_calls)}"
        )


def _annotated_rows(store: Store, source, count: int) -> None:
    """`count` keys listed and annotated, sorting before the bucket's real keys."""
    chunk = 5000
    dataset = store.dataset(source, DATASET, create=True)
    for start in range(0, count, chunk):
        objects = [ListedObject(f"a/{i:06d}.png", 10) for i in range(start, start + chunk)]
        store.record_page(
            source, objects, next_token=None, last_key=objects[-1].key, exhausted=False
        )
        store.record_answers(dataset, [AnswerRecord(o.key, Answer.ACCEPT, "ds-x") for o in objects])


def _stream_peak(url: str, bucket: str, client) -> tuple[int, int]:
    """Stream and answer every image; returns (tasks, tracemalloc peak bytes)."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    served = 0
    with open_stream(bucket, dataset=DATASET, state_db=url, owner="mem", client=client) as stream:
        batch = []
        for task in stream:
            served += 1
            batch.append({"meta": task["meta"], "answer": "accept", "_session_id": "ds-m"})
            if len(batch) == 10:
                stream.record(batch)
                batch = []
        stream.record(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return served, peak


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_annotated_keys(
    seaweedfs, bucket, tmp_path, capsys
) -> None:
    s3 = seaweedfs.client()
    put_images(s3, bucket, [f"img/{i:03d}.png" for i in range(200)], threads=32)
    urls = {n: f"sqlite:///{tmp_path / f'state-{n}.db'}" for n in ("warm", "0", "50000")}
    with Store.open(urls["50000"]) as store:
        _annotated_rows(store, store.source(bucket, create=True), 50_000)
    for url in urls.values():
        Store.open(url).close()

    _stream_peak(urls["warm"], bucket, s3)  # imports, caches, connection pools
    served_0, peak_0 = _stream_peak(urls["0"], bucket, s3)
    served_50k, peak_50k = _stream_peak(urls["50000"], bucket, s3)
    assert served_0 == served_50k == 200
    with capsys.disabled():
        print(
            f"\n[figure] tracemalloc peak streaming 200 keys: {peak_0 / 1024:.0f} KiB with 0 "
            f"annotated, {peak_50k / 1024:.0f} KiB with 50,000 annotated"
        )
    assert peak_50k - peak_0 < 256 * 1024

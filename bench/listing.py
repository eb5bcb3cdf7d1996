"""Listing throughput: the tracker's lister (what `tracker sync` runs) against a bare boto3
ListObjectsV2 loop, on the same server and bucket, in the same run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.report import Table, median, timed
from tracker.lister import Lister
from tracker.store import Store


def bare_loop(client: Any, bucket: str) -> int:
    keys = 0
    params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
    while True:
        page = client.list_objects_v2(**params)
        keys += len(page.get("Contents", []))
        if not page.get("IsTruncated"):
            return keys
        params["ContinuationToken"] = page["NextContinuationToken"]


def tracker_sync(client: Any, bucket: str, store: Store) -> int:
    source = store.source(bucket, "", create=True)
    Lister(store, source, client).run()
    return store.cursor(source).keys_listed


def run(client: Any, bucket: str, objects: int, repeats: int) -> Table:
    bare_times, ours_times = [], []
    with tempfile.TemporaryDirectory(prefix="tracker-bench-list-") as tmp:
        for i in range(repeats):  # interleaved, so drift on a noisy machine hits both
            seconds, count = timed(lambda: bare_loop(client, bucket))
            assert count == objects, (count, objects)
            bare_times.append(seconds)
            # A new state DB each time; creating its schema is a one-off, not listing work.
            with Store.open(f"sqlite:///{Path(tmp) / f'{i}.db'}") as store:
                seconds, count = timed(lambda s=store: tracker_sync(client, bucket, s))
            assert count == objects, (count, objects)
            ours_times.append(seconds)
    bare, ours = median(bare_times), median(ours_times)
    table = Table(
        f"Listing throughput ({objects:,} objects, SeaweedFS on loopback; median of {repeats})",
        ["lister", "keys/s", "overhead vs bare loop", "target"],
    )
    table.add("bare boto3 ListObjectsV2 loop", f"{objects / bare:,.0f}", "baseline", "")
    table.add(
        "tracker sync (Lister + SQLite state DB)",
        f"{objects / ours:,.0f}",
        f"{(ours / bare - 1) * 100:+.1f}%",
        "<= 10%",
    )
    return table

"""The seed recipe's algorithm, re-implemented here only, to measure it beside ours.

From `shared/seed/annotating-images-with-s3-and-prodigy.txt`: at start-up, load the whole
Prodigy dataset into a Python list of keys; then paginate the bucket from the first page
(`list_objects`), skip every key found in that list, and fetch the first new object.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class SeedDataset:
    """A stand-in for Prodigy's dataset: one JSON example per answered image, in SQLite.

    The seed's `before_db` stored the S3 key in `image`, and it reads them all back with
    `db.get_dataset(dataset)` on every start.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS example (id INTEGER PRIMARY KEY, content TEXT)"
            )

    def add(self, keys: Iterable[str]) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.executemany(
                "INSERT INTO example (content) VALUES (?)",
                ((json.dumps({"image": k, "meta": {"key": k}, "answer": "accept"}),) for k in keys),
            )

    def get_dataset(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.path) as conn:
            return [json.loads(c) for (c,) in conn.execute("SELECT content FROM example")]


def seed_stream(client: Any, bucket: str, prefix: str, dataset: SeedDataset) -> Iterator[dict]:
    """The seed's `get_stream`, as its text describes it."""
    in_db = [eg["image"] for eg in dataset.get_dataset()]
    paginator = client.get_paginator("list_objects")
    params = {"Bucket": bucket}
    if prefix:
        params["Prefix"] = prefix
    for page in paginator.paginate(**params):
        for obj in page.get("Contents", []):
            img_key = obj["Key"]
            if img_key == f"{prefix}/":
                continue
            if img_key in in_db:
                continue
            body = client.get_object(Bucket=bucket, Key=img_key)["Body"].read()
            uri = "data:image/jpg;base64," + base64.b64encode(body).decode("ascii")
            yield {"image": uri, "meta": {"key": img_key}}

"""Small image objects for the recipe tests: real signatures, unique payloads."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


def image_bytes(key: str) -> bytes:
    """Bytes that sniff as PNG (or JPEG for .jpg keys) and carry the key as a payload."""
    magic = JPEG_MAGIC if key.lower().endswith((".jpg", ".jpeg")) else PNG_MAGIC
    return magic + b"payload:" + key.encode("utf-8") + b"\x00" * 16


def put_images(client: Any, bucket: str, keys: Iterable[str], *, threads: int = 16) -> list[str]:
    keys = list(keys)

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=image_bytes(key))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))
    return keys


def count_list_calls(client: Any) -> list[dict[str, Any]]:
    """Every ListObjectsV2 request `client` makes from now on, via a botocore event hook."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda params, **_: calls.append(params)
    )
    return calls


def temporary_bucket(seaweedfs: Any) -> Iterator[str]:
    """A new bucket on the session's SeaweedFS, emptied and deleted afterwards.

    SeaweedFS gives each bucket its own volumes and runs out after a few dozen buckets;
    deleting them keeps a long run going.
    """
    name = f"r-{uuid.uuid4().hex[:16]}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=name)
    yield name
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except Exception:  # cleanup only: a leftover bucket costs volumes, not correctness
        pass

"""Small image objects for the recipe tests: real signatures, unique payloads."""

from __future__ import annotations

from collections.abc import Iterable
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

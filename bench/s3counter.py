"""Counting S3 requests by operation with botocore's event hooks."""

from __future__ import annotations

from collections import Counter
from typing import Any


class RequestCounter:
    """Counts every API call a client makes (retries of one call count once)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    @property
    def lists(self) -> int:
        return self.calls["ListObjects"] + self.calls["ListObjectsV2"]

    @property
    def gets(self) -> int:
        return self.calls["GetObject"]

    def reset(self) -> None:
        self.calls.clear()

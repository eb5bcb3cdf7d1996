"""Recipe-like processes for tests/integration/test_reliability_concurrency.py
(multiprocessing 'spawn').

Each runs the real `tracker.stream.S3Stream` (claims, leases, listing pages from a real S3
server) and answers every batch, as an annotator would. Only the image loader is a
stand-in that does not GET the object: 10,000 GETs would test S3, not the claim.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

#: Every process annotates this one dataset, each under its own owner.
DATASET = "ds"


class KeyOnlyLoader:
    """`image` = the S3 URI: no GET, so the test measures the claim path, not downloads."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def load(self, key: str, size: int | None = None) -> str:
        return f"s3://{self.bucket}/{key}"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def stream_and_answer(
    url: str, bucket: str, endpoint: str, owner: str, barrier: Any, results: Any
) -> None:
    """Stream every task this process is given, answering each batch of 10, until the
    stream ends; report (owner, keys served in order, errors, warnings logged)."""
    from tracker.s3 import make_client
    from tracker.stream import open_stream

    served: list[str] = []
    errors: list[str] = []
    warnings = _Collect()
    logging.getLogger().addHandler(warnings)
    try:
        stream = open_stream(
            bucket,
            dataset=DATASET,
            state_db=url,
            owner=owner,
            client=make_client(endpoint),
            lease="1h",
            batch_size=10,
            page_size=1000,
            poll_interval=0.2,
            loader=KeyOnlyLoader(bucket),
        )
        barrier.wait(timeout=120)
        batch: list[dict[str, Any]] = []
        with stream:
            for task in stream:
                served.append(task["meta"]["key"])
                batch.append({**task, "answer": "accept", "_session_id": owner})
                if len(batch) == 10:
                    stream.update(batch)
                    batch = []
                    # ...while the stream may still be waiting for others: answer partial
                    # batches too, as Prodigy does when the queue runs dry
            if batch:
                stream.update(batch)
    except BaseException as error:
        errors.append(f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
    results.put((owner, served, errors, warnings.messages))

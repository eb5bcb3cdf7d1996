"""Prodigy task dicts: building them, hashing them, and reading keys back out of answers.

No I/O and no Prodigy import here. Hashes come from the object's S3 URI, never from the
image bytes or a presigned URL, so a key keeps its hashes across serves, restarts and
signatures, and Prodigy's de-duplication works.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tracker.records import AnswerRecord
from tracker.s3uri import key_problem
from tracker.states import Answer

#: The state DB's limit on a session id (the column is 255 characters).
MAX_SESSION_ID = 255

#: Interfaces the recipe supports.
VIEW_IDS = ("image_manual", "classification", "image")


def s3_uri(bucket: str, key: str) -> str:
    """`s3://bucket/key`, the key verbatim (not percent-encoded)."""
    return f"s3://{bucket}/{key}"


def stable_hash(text: str) -> int:
    """A signed 32-bit integer from `text`, the same in every process and Python version.

    (Python's `hash()` is salted per process; Prodigy's own hashes are signed 32-bit ints.)
    """
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def input_hash(bucket: str, key: str) -> int:
    return stable_hash(s3_uri(bucket, key))


def task_hash(bucket: str, key: str, view_id: str, label: str | None = None, serve: int = 1) -> int:
    """The input hash's URI plus what makes the question different (interface, label),
    and the serve number from the second serve on.

    Each serve of a key is a new task to Prodigy: a key re-sent after its lease expired is
    not dropped by Prodigy's in-stream duplicate filter, and a key reset and annotated
    again in the same dataset is not skipped as already answered (with `exclude_by: task`).
    The first serve's hash is the one earlier versions gave every serve.
    """
    salt = f"\n{serve}" if serve > 1 else ""
    return stable_hash(f"{s3_uri(bucket, key)}\n{view_id}\n{label or ''}{salt}")


def build_task(
    bucket: str,
    key: str,
    image: str,
    *,
    size: int | None = None,
    view_id: str = "image_manual",
    label: str | None = None,
    serve: int = 1,
) -> dict[str, Any]:
    """One task: `image` (data: URI or URL), `meta` {bucket, key, size}, and both hashes."""
    task: dict[str, Any] = {
        "image": image,
        "meta": {"bucket": bucket, "key": key, "size": size},
        "_input_hash": input_hash(bucket, key),
        "_task_hash": task_hash(bucket, key, view_id, label, serve),
    }
    if label is not None and view_id == "classification":
        task["label"] = label
    return task


def strip_image(example: dict[str, Any], bucket: str | None = None) -> dict[str, Any]:
    """Replace `image` (base64 or a presigned URL) with `s3://bucket/key`; keep `meta`.

    Leaves an example it cannot place (no `meta.key`) as it is, unless its image is a data
    URI, which is dropped: base64 never reaches the Prodigy database.
    """
    meta = example.get("meta")
    key = meta.get("key") if isinstance(meta, Mapping) else None
    where = (meta.get("bucket") if isinstance(meta, Mapping) else None) or bucket
    if isinstance(key, str) and where:
        example["image"] = s3_uri(where, key)
    elif isinstance(example.get("image"), str) and example["image"].startswith("data:"):
        example.pop("image")
    return example


class AnswerError(ValueError):
    """An answer (or a line of `prodigy db-out`) that names no key or no valid answer."""


def key_from_example(example: Mapping[str, Any], bucket: str) -> str:
    """The S3 key an answer is about: `meta.key`, else `image` when it is not a data URI.

    `image` may be `s3://bucket/key` (what this recipe stores) or the bare key (what the
    seed's recipe stored). Raises `AnswerError` when neither names a key of `bucket`.
    """
    meta = example.get("meta")
    if isinstance(meta, Mapping):
        key = meta.get("key")
        if isinstance(key, str) and key:
            named = meta.get("bucket")
            if isinstance(named, str) and named and named != bucket:
                raise AnswerError(f"meta.bucket is {named!r}, not {bucket!r}")
            return key
    image = example.get("image")
    if not isinstance(image, str) or not image:
        raise AnswerError("no meta.key and no image to take the key from")
    if image.startswith("data:"):
        raise AnswerError("no meta.key, and image is a data URI, not a key")
    if image.startswith(("http://", "https://")):
        raise AnswerError("no meta.key, and image is a URL, not a key")
    if image.startswith("s3://"):
        named, _, key = image[len("s3://") :].partition("/")
        if named != bucket:
            raise AnswerError(f"image names bucket {named!r}, not {bucket!r}")
        if not key:
            raise AnswerError(f"image {image!r} names no key")
        return key
    return image


def session_id(value: object) -> str | None:
    """Prodigy's `_session_id` as the state DB stores it: at most 255 characters, no NUL.

    A longer id (a long dataset name plus a long `?session=`) would fail a whole batch of
    answers on PostgreSQL and be stored as-is on SQLite; a NUL fails PostgreSQL only. Such
    an id is kept recognisable and made to fit, the same way every time: its first
    characters, `~`, and 16 hex digits of its BLAKE2b hash (so two long ids that share a
    beginning stay apart).
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode("utf-8")
        clean = "\x00" not in value
    except UnicodeEncodeError:
        clean = False
    if clean and len(value) <= MAX_SESSION_ID:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    head = "".join(ch for ch in value if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)
    return f"{head[: MAX_SESSION_ID - len(digest) - 1]}~{digest}"


def answer_record(example: Mapping[str, Any], bucket: str) -> AnswerRecord:
    """An `AnswerRecord` from one Prodigy answer; raises `AnswerError` when unusable
    (including a key S3 cannot hold: NUL, or over 1024 bytes)."""
    key = key_from_example(example, bucket)
    problem = key_problem(key)
    if problem is not None:
        raise AnswerError(problem)
    raw = example.get("answer")
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        answer = Answer(raw)
    except ValueError:
        allowed = ", ".join(a.value for a in Answer)
        raise AnswerError(f"answer is {raw!r}, expected one of {allowed}") from None
    return AnswerRecord(
        key,
        answer,
        session_id(example.get("_session_id")),
        answered_at=_timestamp(example.get("_timestamp")),
    )


def _timestamp(value: Any) -> datetime | None:
    """Prodigy's `_timestamp` (seconds since the epoch) as a UTC time; None if absent or
    not a plausible time."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_labels(label: str | Sequence[str] | None) -> list[str]:
    """`"a,b"` or `["a", "b"]` -> `["a", "b"]`, stripped, empty entries and repeats dropped."""
    if label is None:
        return []
    parts = label.split(",") if isinstance(label, str) else [p for x in label for p in x.split(",")]
    seen: dict[str, None] = {}
    for part in parts:
        if part.strip():
            seen.setdefault(part.strip(), None)
    return list(seen)

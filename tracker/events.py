"""S3 event notifications, read from an SQS message body: pure functions, no I/O.

`tracker watch` hands each message body to `parse_message`, which accepts the three shapes
a bucket's events reach a queue in:

- S3's own notification (`{"Records": [...]}`, S3 -> SQS), and its `s3:TestEvent`;
- the same, wrapped in an SNS envelope (`{"Type": "Notification", "Message": "<json>"}`,
  S3 -> SNS -> SQS without raw message delivery);
- EventBridge's "Object Created" / "Object Deleted" (`{"detail-type": ..., "detail": ...}`).

Keys in S3's records are URL-encoded form values (`+` is a space): `unquote_plus` decodes
them exactly. EventBridge sends them the same way.

Order: events for one key may arrive in any order. S3 gives PUTs and DELETEs a `sequencer`
(hex, comparable within one key); `is_newer` compares it when both sides have one, else
the event times (see there).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

#: Width sequencers are left-padded to: they are hex numbers of varying length, so padded
#: strings compare as the numbers do (in Python and in SQL).
SEQUENCER_WIDTH = 64


class MalformedMessage(ValueError):
    """A message that is no S3 event notification we can read (left for the DLQ)."""


class Change(enum.StrEnum):
    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True)
class ObjectEvent:
    """One object created or removed, as a notification told it."""

    bucket: str
    key: str
    change: Change
    time: datetime
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    #: Left-padded (`SEQUENCER_WIDTH`), upper-case hex; None when S3 sent none.
    sequencer: str | None = None
    #: A removal of one version (versioned buckets: `ObjectRemoved:Delete` naming a
    #: version, EventBridge's "Permanently Deleted"), not a delete marker: when it is not
    #: the version recorded as current, the object itself is still there.
    one_version: bool = False


@dataclass(frozen=True)
class Message:
    """What one SQS message holds: events, or nothing to do (a test event, say)."""

    events: tuple[ObjectEvent, ...] = ()
    #: Why the message carries nothing to apply (None when it has events).
    skipped: str | None = None


def parse_message(body: str) -> Message:
    """The events in one message body; `MalformedMessage` for anything unreadable."""
    document = _json(body)
    if document.get("Type") == "Notification" and "Message" in document:
        inner = document["Message"]
        if not isinstance(inner, str):
            raise MalformedMessage("SNS envelope whose Message is not a string")
        document = _json(inner)
    if document.get("Event") == "s3:TestEvent":
        return Message(skipped="s3:TestEvent")
    if "detail-type" in document:
        if _change(str(document["detail-type"])) is None:
            return Message(skipped=f"EventBridge {str(document['detail-type'])[:40]!r}")
        return Message(events=(_eventbridge(document),))
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        raise MalformedMessage("no Records, no SNS envelope, no EventBridge detail")
    events = tuple(e for e in (_record(r) for r in records) if e is not None)
    if not events:
        return Message(skipped="no object created or removed events")
    return Message(events=events)


def decode_key(raw: str) -> str:
    """A key as S3 puts it in an event: URL-encoded, `+` for a space."""
    return unquote_plus(raw, encoding="utf-8", errors="strict")


def normalize_sequencer(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    text = str(raw).strip().upper()
    if not text or any(c not in "0123456789ABCDEF" for c in text) or len(text) > SEQUENCER_WIDTH:
        raise MalformedMessage(f"sequencer {str(raw)[:80]!r} is not a hex number")
    return text.rjust(SEQUENCER_WIDTH, "0")


def is_newer(
    event: ObjectEvent,
    stored_sequencer: str | None,
    stored_at: datetime | None,
    stored_deleted: bool,
) -> bool:
    """Whether `event` comes after the last event applied to its key.

    Sequencers decide when both have one. Otherwise the event times: a later one applies;
    at the same instant, a removal of a live key applies and a creation does not undo one
    (the safer of the two: a deleted key is never served, and the next listing that sees
    it revives it). The event last applied, delivered again, is not newer: a no-op.
    """
    if stored_sequencer is None and stored_at is None:
        return True
    if event.sequencer is not None and stored_sequencer is not None:
        return event.sequencer > stored_sequencer
    if stored_at is None or event.time > stored_at:
        return True
    if event.time < stored_at:
        return False
    return event.change is Change.REMOVED and not stored_deleted


def in_order(events: Iterable[ObjectEvent]) -> list[ObjectEvent]:
    """Events sorted per key by sequencer (when present) else time; keys in given order."""
    ordered = list(events)
    position = {e.key: i for i, e in reversed(list(enumerate(ordered)))}
    return sorted(ordered, key=lambda e: (position[e.key], e.sequencer or "", e.time))


def _json(body: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, TypeError):
        raise MalformedMessage("not JSON") from None
    if not isinstance(document, dict):
        raise MalformedMessage("not a JSON object")
    return document


def _time(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise MalformedMessage("event time missing")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedMessage(f"event time {raw[:40]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise MalformedMessage(f"event time {raw[:40]!r} has no time zone")
    return parsed


def _change(name: str) -> Change | None:
    if name.startswith(("ObjectCreated:", "Object Created")):
        return Change.CREATED
    if name.startswith(("ObjectRemoved:", "Object Deleted")):
        return Change.REMOVED
    return None


def _size(raw: Any) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise MalformedMessage(f"object size {str(raw)[:40]!r} is not a number") from None


def _event(
    bucket: Any,
    obj: Any,
    change: Change,
    time: datetime,
    *,
    etag_field: str,
    permanent: bool,
) -> ObjectEvent:
    if not isinstance(bucket, str) or not bucket:
        raise MalformedMessage("bucket name missing")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        raise MalformedMessage("object key missing")
    try:
        key = decode_key(obj["key"])
    except UnicodeDecodeError:
        raise MalformedMessage("object key is not URL-encoded UTF-8") from None
    etag = obj.get(etag_field)
    version = obj.get("versionId", obj.get("version-id"))
    return ObjectEvent(
        bucket=bucket,
        key=key,
        change=change,
        time=time,
        size=_size(obj.get("size")),
        etag=str(etag).strip('"') or None if etag else None,
        version_id=str(version) if version else None,
        sequencer=normalize_sequencer(obj.get("sequencer")),
        one_version=change is Change.REMOVED and permanent and bool(version),
    )


def _record(record: Any) -> ObjectEvent | None:
    """One S3 record; None for events that neither create nor remove an object."""
    if not isinstance(record, dict) or not isinstance(record.get("eventName"), str):
        raise MalformedMessage("record without eventName")
    change = _change(record["eventName"])
    if change is None:
        return None
    s3 = record.get("s3")
    if not isinstance(s3, dict) or not isinstance(s3.get("bucket"), dict):
        raise MalformedMessage("record without s3.bucket")
    return _event(
        s3["bucket"].get("name"),
        s3.get("object"),
        change,
        _time(record.get("eventTime")),
        etag_field="eTag",
        permanent=record["eventName"] == "ObjectRemoved:Delete",
    )


def _eventbridge(document: dict[str, Any]) -> ObjectEvent:
    change = _change(str(document.get("detail-type")))
    detail = document.get("detail")
    if change is None or not isinstance(detail, dict):
        raise MalformedMessage("EventBridge event without detail")
    bucket = detail.get("bucket")
    return _event(
        bucket.get("name") if isinstance(bucket, dict) else None,
        detail.get("object"),
        change,
        _time(document.get("time")),
        etag_field="etag",
        permanent=detail.get("deletion-type") == "Permanently Deleted",
    )

"""S3 event notifications, read from an SQS message body: pure functions, no I/O.

`tracker watch` hands each message body to `parse_message`, which accepts the three shapes
a bucket's events reach a queue in:

- S3's own notification (`{"Records": [...]}`, S3 -> SQS), and its `s3:TestEvent`;
- the same, wrapped in an SNS envelope (`{"Type": "Notification", "Message": "<json>"}`,
  S3 -> SNS -> SQS without raw message delivery);
- EventBridge's "Object Created" / "Object Deleted" (`{"detail-type": ..., "detail": ...}`).

Keys in S3's own records (bare or in an SNS envelope) are URL-encoded form values (`+` is
a space): `unquote_plus` decodes them exactly ("red flower.jpg" becomes "red+flower.jpg",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html).
EventBridge's events carry the key as it is: its reference
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html) documents no
encoding, and events published from real buckets hold raw spaces; decoding them would turn
`a+b.jpg` into `a b.jpg`.

Order: events for one key may arrive in any order. S3 gives PUTs and DELETEs a `sequencer`
(hex, comparable within one key); `is_newer` compares it when both sides have one, else
the event times (see there).

What an event proves: `verdict` says whether an event can be applied as it stands, is
older than the state (skipped), or leaves open what is current, so that S3 must be asked
(one HEAD of the key) before the key is marked deleted or kept deleted. A key is never
marked deleted on a guess.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

#: Width sequencers are right-padded to with zeros. AWS's S3 user guide, "Event message
#: structure" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html),
#: on `sequencer`: "The sequencers can be of different lengths. So, to compare these
#: values, first right pad the shorter value with zeros, and then do a lexicographical
#: comparison." (Older versions of the page said left pad; the current one says right.)
#: Padding both to one width orders them as padding the shorter to the longer does.
SEQUENCER_WIDTH = 64

#: Before right padding, sequencers were stored left-padded to `SEQUENCER_WIDTH`. Such a
#: value starts with at least this many zeros (S3's sequencers are about 16-20 digits and
#: start with a timestamp, never with 32 zeros): it cannot be compared with a right-padded
#: one, and is read as no sequencer at all (`comparable_sequencer`).
LEGACY_ZEROS = 32

#: Limits of what the state DB stores: a BIGINT size, keys and version ids of
#: `MAX_KEY_LENGTH` characters (`tracker.models.MAX_KEY_LENGTH`; plain modules import no
#: models) (S3's own limit is 1,024 bytes of UTF-8), event times that
#: convert to UTC inside datetime's range.
MAX_SIZE = 2**63 - 1
MAX_KEY_LENGTH = 1024


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
    #: Right-padded (`SEQUENCER_WIDTH`), upper-case hex; None when S3 sent none.
    sequencer: str | None = None
    #: A removal of one version (versioned buckets: `ObjectRemoved:Delete` naming a
    #: version, EventBridge's "Permanently Deleted"), not a delete marker: the key may
    #: still be there (an old version, or the previous one now current) or be back (a
    #: delete marker removed); `verdict` asks S3.
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
    """A key as S3 puts it in its own notifications: URL-encoded, `+` for a space."""
    return unquote_plus(raw, encoding="utf-8", errors="strict")


def normalize_sequencer(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    text = str(raw).strip().upper()
    if not text or any(c not in "0123456789ABCDEF" for c in text) or len(text) > SEQUENCER_WIDTH:
        raise MalformedMessage(f"sequencer {str(raw)[:80]!r} is not a hex number")
    return text.ljust(SEQUENCER_WIDTH, "0")


def comparable_sequencer(stored: str | None) -> str | None:
    """A stored sequencer, or None when it is in the old left-padded form (see
    `LEGACY_ZEROS`): then the event times decide, and a removal asks S3."""
    if stored is None or stored.startswith("0" * LEGACY_ZEROS):
        return None
    return stored


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
    stored_sequencer = comparable_sequencer(stored_sequencer)
    if event.sequencer is not None and stored_sequencer is not None:
        return event.sequencer > stored_sequencer
    if stored_at is None or event.time > stored_at:
        return True
    if event.time < stored_at:
        return False
    return event.change is Change.REMOVED and not stored_deleted


class Verdict(enum.Enum):
    """What to do with one event, given the key's stored state (`verdict`)."""

    #: The event proves the key's new state: apply it as it stands.
    APPLY = "apply"
    #: Older than the state, or it changes nothing: skip it.
    SKIP = "skip"
    #: Only S3 can tell what is current now: ask it (`Current`), then record that.
    ASK = "ask"


@dataclass(frozen=True)
class Stored:
    """The state recorded for a key, as `verdict` needs it."""

    sequencer: str | None
    at: datetime | None
    deleted: bool


@dataclass(frozen=True)
class Current:
    """What S3 answered for a key (a HEAD): its current version; None for no live object."""

    size: int | None
    etag: str | None
    version_id: str | None
    last_modified: datetime | None


def verdict(event: ObjectEvent, stored: Stored | None) -> Verdict:
    """Whether `event` can be applied as it stands, skipped, or needs S3 asked first.

    A creation is applied when it is newer (`is_newer`). A removal marks a key deleted
    only when it proves the key gone: a delete of the whole key (unversioned bucket, or a
    delete marker) whose sequencer is greater than the one recorded, or a key not known
    yet. Everything else asks S3 (one HEAD) first:

    - the removal of one version (versioned bucket): an old one (nothing changes), the
      current one (the previous version becomes current, or a delete marker, or none is
      left), or a delete marker (an undelete); the event does not say which. Not even a
      recorded current version tells: with events reordered, a later put of the removed
      version may not be applied yet.
    - a removal the state cannot be ordered against: the key was recorded by a listing
      (no sequencer), or one side has no sequencer and the times tie or cannot tell.
    """
    if stored is None:
        if event.change is Change.REMOVED and event.one_version:
            return Verdict.ASK
        return Verdict.APPLY
    stored_sequencer = comparable_sequencer(stored.sequencer)
    ordered = event.sequencer is not None and stored_sequencer is not None
    if ordered and event.sequencer <= stored_sequencer:  # type: ignore[operator]
        return Verdict.SKIP
    if event.change is Change.CREATED:
        newer = is_newer(event, stored.sequencer, stored.at, stored.deleted)
        return Verdict.APPLY if newer else Verdict.SKIP
    if event.one_version:
        if not ordered and stored.at is not None and event.time < stored.at:
            return Verdict.SKIP
        return Verdict.ASK
    if ordered:
        return Verdict.APPLY
    if stored.at is not None and event.time < stored.at:
        return Verdict.SKIP  # older than the event last applied
    if stored.deleted:
        # Already deleted: nothing to mark. Record it when newer (it orders what follows).
        newer = is_newer(event, stored.sequencer, stored.at, stored.deleted)
        return Verdict.APPLY if newer else Verdict.SKIP
    return Verdict.ASK


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
    try:  # year 1 at +01:00 is year 0 in UTC: no datetime, no database column holds it
        in_utc = parsed.astimezone(UTC)
    except OverflowError:
        raise MalformedMessage(f"event time {raw[:40]!r} is out of range") from None
    if not 1970 <= in_utc.year <= 9998:
        raise MalformedMessage(f"event time {raw[:40]!r} is out of range")
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
        size = int(raw)
    except (TypeError, ValueError, OverflowError):
        raise MalformedMessage(f"object size {str(raw)[:40]!r} is not a number") from None
    if not 0 <= size <= MAX_SIZE:  # the DB's BIGINT
        raise MalformedMessage(f"object size {str(raw)[:40]!r} is out of range")
    return size


def _text(raw: str, what: str) -> str:
    """`raw`, if the state DB can store it: UTF-8 (no lone surrogate, as a JSON `\\ud800`
    escape makes), no NUL (PostgreSQL's text refuses it), at most `MAX_KEY_LENGTH`."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage(f"{what} is not valid Unicode (a lone surrogate)") from None
    if "\x00" in raw:
        raise MalformedMessage(f"{what} holds a NUL character")
    if len(raw) > MAX_KEY_LENGTH:
        raise MalformedMessage(f"{what} is longer than {MAX_KEY_LENGTH} characters")
    return raw


def _event(
    bucket: Any,
    obj: Any,
    change: Change,
    time: datetime,
    *,
    etag_field: str,
    permanent: bool,
    encoded: bool,
) -> ObjectEvent:
    """One event; `encoded`: the key is URL-encoded (S3's notifications), else raw
    (EventBridge)."""
    if not isinstance(bucket, str) or not bucket:
        raise MalformedMessage("bucket name missing")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not obj["key"]:
        raise MalformedMessage("object key missing")
    try:
        key = decode_key(obj["key"]) if encoded else obj["key"]
    except UnicodeDecodeError:
        raise MalformedMessage("object key is not URL-encoded UTF-8") from None
    etag = obj.get(etag_field)
    version = obj.get("versionId", obj.get("version-id"))
    return ObjectEvent(
        bucket=bucket,
        key=_text(key, "object key"),
        change=change,
        time=time,
        size=_size(obj.get("size")),
        etag=_text(str(etag).strip('"'), "ETag") or None if etag else None,
        version_id=_text(str(version), "version id") if version else None,
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
        encoded=True,
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
        encoded=False,
    )

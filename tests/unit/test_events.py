"""S3 event notifications read from message bodies (`tracker.events`): pure, no server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tracker.events import (
    SEQUENCER_WIDTH,
    Change,
    MalformedMessage,
    ObjectEvent,
    in_order,
    is_newer,
    normalize_sequencer,
    parse_message,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def s3_record(
    name: str, key: str, *, bucket: str = "bkt", sequencer: str | None = None, **obj: object
) -> dict[str, object]:
    body: dict[str, object] = {"key": key, **obj}
    if sequencer is not None:
        body["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-11-24T12:00:00.000Z",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": body},
    }


def body(*records: dict[str, object]) -> str:
    return json.dumps({"Records": list(records)})


def test_a_created_record_gives_key_size_etag_version_and_time():
    message = parse_message(
        body(
            s3_record(
                "ObjectCreated:Put",
                "img/a.jpg",
                size=12,
                eTag='"abc"',
                versionId="v1",
                sequencer="0A",
            )
        )
    )
    (event,) = message.events
    assert event == ObjectEvent(
        "bkt", "img/a.jpg", Change.CREATED, T0, 12, "abc", "v1", "0A".rjust(SEQUENCER_WIDTH, "0")
    )


def test_keys_are_url_decoded_exactly_plus_is_a_space():
    raw = "dir%2Fa+b%2Bc%25d%C3%A9.jpg"  # moto encodes `/`; AWS leaves it: both decode alike
    (event,) = parse_message(body(s3_record("ObjectRemoved:Delete", raw))).events
    assert event.key == "dir/a b+c%dé.jpg"
    assert event.change is Change.REMOVED


def test_test_events_and_non_object_events_are_skipped_not_malformed():
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "bkt"}
    assert parse_message(json.dumps(test_event)).skipped == "s3:TestEvent"
    assert parse_message(body(s3_record("ObjectTagging:Put", "a.jpg"))).events == ()


def test_an_sns_envelope_is_opened():
    inner = body(s3_record("ObjectCreated:Copy", "a.jpg", size=1))
    wrapped = json.dumps({"Type": "Notification", "MessageId": "m", "Message": inner})
    (event,) = parse_message(wrapped).events
    assert (event.key, event.change) == ("a.jpg", Change.CREATED)


def test_eventbridge_object_created_and_deleted_are_read():
    def bridge(kind: str, **obj: object) -> str:
        return json.dumps(
            {
                "version": "0",
                "detail-type": kind,
                "source": "aws.s3",
                "time": "2026-11-24T12:00:00Z",
                "detail": {"bucket": {"name": "bkt"}, "object": {"key": "a+b.jpg", **obj}},
            }
        )

    (created,) = parse_message(bridge("Object Created", size=3, etag="e1", sequencer="1F")).events
    assert (created.key, created.change, created.size, created.etag) == (
        "a b.jpg",
        Change.CREATED,
        3,
        "e1",
    )
    (deleted,) = parse_message(bridge("Object Deleted")).events
    assert deleted.change is Change.REMOVED
    assert parse_message(bridge("Object Restore Completed")).skipped is not None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        json.dumps({"Records": []}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
        body(s3_record("ObjectCreated:Put", "a.jpg", size="big")),
        body(s3_record("ObjectCreated:Put", "a.jpg", sequencer="not-hex")),
        body(s3_record("ObjectCreated:Put", "%FF.jpg")),
        json.dumps({"Type": "Notification", "Message": {"Records": []}}),
    ],
)
def test_anything_else_is_malformed(text):
    with pytest.raises(MalformedMessage):
        parse_message(text)


def event(change: Change, at: datetime, sequencer: str | None = None) -> ObjectEvent:
    return ObjectEvent("bkt", "k", change, at, sequencer=normalize_sequencer(sequencer))


def test_sequencers_of_different_lengths_compare_as_hex_numbers():
    assert normalize_sequencer("FF") < normalize_sequencer("100")  # type: ignore[operator]


def test_an_older_sequencer_is_not_applied_whatever_its_time():
    stored = normalize_sequencer("0055")
    late_create = event(Change.CREATED, T0 + timedelta(hours=1), "0054")
    assert not is_newer(late_create, stored, T0, stored_deleted=True)
    assert is_newer(event(Change.CREATED, T0, "0056"), stored, T0, stored_deleted=True)


def test_the_event_last_applied_delivered_again_is_not_newer():
    stored = normalize_sequencer("0055")
    assert not is_newer(event(Change.REMOVED, T0, "0055"), stored, T0, stored_deleted=True)
    assert not is_newer(event(Change.CREATED, T0), None, T0, stored_deleted=False)


def test_without_sequencers_time_decides_and_a_tie_favours_the_removal():
    removed_at_t0 = (None, T0, True)
    assert not is_newer(event(Change.CREATED, T0 - timedelta(seconds=1)), *removed_at_t0)
    assert not is_newer(event(Change.CREATED, T0), *removed_at_t0)
    assert is_newer(event(Change.REMOVED, T0), None, T0, False)
    assert is_newer(event(Change.CREATED, T0 + timedelta(milliseconds=1)), *removed_at_t0)
    assert is_newer(event(Change.CREATED, T0), None, None, False)


def test_in_order_sorts_each_keys_events_by_sequencer_then_time():
    first = event(Change.CREATED, T0, "01")
    second = event(Change.REMOVED, T0, "02")
    other = ObjectEvent("bkt", "other", Change.CREATED, T0)
    assert in_order([second, other, first]) == [first, second, other]


def test_a_version_removal_is_told_from_a_delete_marker():
    permanent = s3_record("ObjectRemoved:Delete", "a.jpg", versionId="v1")
    marker = s3_record("ObjectRemoved:DeleteMarkerCreated", "a.jpg", versionId="m1")
    unversioned = s3_record("ObjectRemoved:Delete", "a.jpg")
    assert parse_message(body(permanent)).events[0].one_version
    assert not parse_message(body(marker)).events[0].one_version
    assert not parse_message(body(unversioned)).events[0].one_version

"""`tracker.events` message by message: every field of an event, every reason a message is
malformed (the DLQ's only explanation, so asserted word for word), and the order rules.

Seen to fail on `scripts/mutants`' mutants of `_event`, `_eventbridge`, `_record`, `_time`,
`_size`, `normalize_sequencer` and `parse_message` (a field dropped, a message changed,
a check inverted).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tracker.events import (
    SEQUENCER_WIDTH,
    Change,
    MalformedMessage,
    Message,
    ObjectEvent,
    decode_key,
    in_order,
    is_newer,
    normalize_sequencer,
    parse_message,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _record(name: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    return {
        "eventName": name,
        "eventTime": "2026-01-02T03:04:05.000Z",
        "s3": {"bucket": {"name": "my-bucket"}, "object": {"key": "a.jpg", **obj}},
    }


def _body(*records: Any) -> str:
    return json.dumps({"Records": list(records)})


def _bridge(detail_type: str, **detail: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "bucket": {"name": "my-bucket"},
        "object": {"key": "b%2Bc+d.jpg", "size": 7, "etag": "e1", "version-id": "v2"},
    }
    return {"detail-type": detail_type, "time": "2026-01-02T03:04:05Z", "detail": base | detail}


def _malformed(body: str) -> str:
    with pytest.raises(MalformedMessage) as caught:
        parse_message(body)
    return str(caught.value)


def test_an_s3_record_gives_every_field_of_its_event() -> None:
    body = _body(
        _record(size=12, eTag='"abc"', versionId="v1", sequencer="0055AB"),
    )
    assert parse_message(body) == Message(
        events=(
            ObjectEvent(
                bucket="my-bucket",
                key="a.jpg",
                change=Change.CREATED,
                time=T0,
                size=12,
                etag="abc",
                version_id="v1",
                # right-padded, as AWS's "Event message structure" page says
                sequencer="0055AB" + "0" * (SEQUENCER_WIDTH - 6),
                one_version=False,
            ),
        ),
        skipped=None,
    )


def test_an_event_without_the_optional_fields_has_none() -> None:
    (event,) = parse_message(_body(_record("ObjectRemoved:DeleteMarkerCreated"))).events
    assert event == ObjectEvent("my-bucket", "a.jpg", Change.REMOVED, T0)
    (blank,) = parse_message(_body(_record(eTag='""', versionId="", sequencer=""))).events
    assert (blank.etag, blank.version_id, blank.sequencer) == (None, None, None)


def test_only_a_delete_naming_a_version_removes_one_version() -> None:
    (one,) = parse_message(_body(_record("ObjectRemoved:Delete", versionId="v1"))).events
    assert one.one_version is True and one.change is Change.REMOVED
    (plain,) = parse_message(_body(_record("ObjectRemoved:Delete"))).events
    assert plain.one_version is False
    (created,) = parse_message(_body(_record("ObjectCreated:Put", versionId="v1"))).events
    assert created.one_version is False


def test_eventbridge_events_are_read_field_for_field() -> None:
    (created,) = parse_message(json.dumps(_bridge("Object Created"))).events
    # EventBridge keys are raw, not URL-encoded as S3's own notifications are
    assert created == ObjectEvent(
        "my-bucket", "b%2Bc+d.jpg", Change.CREATED, T0, size=7, etag="e1", version_id="v2"
    )
    permanent = _bridge("Object Deleted", **{"deletion-type": "Permanently Deleted"})
    (removed,) = parse_message(json.dumps(permanent)).events
    assert removed.change is Change.REMOVED and removed.one_version is True
    marker = _bridge("Object Deleted", **{"deletion-type": "Delete Marker Created"})
    assert parse_message(json.dumps(marker)).events[0].one_version is False


def test_other_eventbridge_events_are_skipped_with_their_type_cut_short() -> None:
    other = _bridge("Object Restore Completed because of a very long reason indeed")
    assert parse_message(json.dumps(other)) == Message(
        skipped="EventBridge 'Object Restore Completed because of a ve'"
    )


def test_an_sns_envelope_is_opened_and_a_test_event_skipped() -> None:
    inner = _body(_record())
    envelope = {"Type": "Notification", "Message": inner}
    assert parse_message(json.dumps(envelope)).events[0].key == "a.jpg"
    test_event = json.dumps({"Type": "Notification", "Message": '{"Event": "s3:TestEvent"}'})
    assert parse_message(test_event) == Message(skipped="s3:TestEvent")
    # a "Message" without the SNS type is not an envelope
    not_envelope = json.dumps({"Message": inner, "Records": [_record()]})
    assert parse_message(not_envelope).events[0].key == "a.jpg"


def test_records_that_neither_create_nor_remove_are_skipped() -> None:
    tagging = _record("ObjectTagging:Put")
    assert parse_message(_body(tagging)) == Message(skipped="no object created or removed events")
    both = parse_message(_body(tagging, _record("ObjectCreated:Copy")))
    assert [e.change for e in both.events] == [Change.CREATED]


@pytest.mark.parametrize(
    "body,reason",
    [
        ("nope", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"Type": "Notification", "Message": 3}', "SNS envelope whose Message is not a string"),
        ('{"Type": "Notification", "Message": "[]"}', "not a JSON object"),
        ("{}", "no Records, no SNS envelope, no EventBridge detail"),
        ('{"Records": []}', "no Records, no SNS envelope, no EventBridge detail"),
        ('{"Records": {"a": 1}}', "no Records, no SNS envelope, no EventBridge detail"),
        ('{"Records": [3]}', "record without eventName"),
        ('{"Records": [{"eventName": 3}]}', "record without eventName"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "record without s3.bucket"),
        (
            '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": "b"}}]}',
            "record without s3.bucket",
        ),
        ('{"detail-type": "Object Created"}', "EventBridge event without detail"),
        ('{"detail-type": "Object Created", "detail": []}', "EventBridge event without detail"),
    ],
)
def test_a_message_that_cannot_be_read_says_why(body: str, reason: str) -> None:
    assert _malformed(body) == reason


def _with(record: dict[str, Any], **changes: Any) -> str:
    return _body(record | changes)


def test_a_record_missing_its_bucket_key_or_time_says_which() -> None:
    base = _record()
    assert _malformed(_with(base, s3={"bucket": {"name": ""}, "object": {"key": "k"}})) == (
        "bucket name missing"
    )
    assert _malformed(_with(base, s3={"bucket": {"name": 5}, "object": {"key": "k"}})) == (
        "bucket name missing"
    )
    assert _malformed(_with(base, s3={"bucket": {"name": "b"}})) == "object key missing"
    assert _malformed(_with(base, s3={"bucket": {"name": "b"}, "object": {"key": 1}})) == (
        "object key missing"
    )
    bad_key = {"bucket": {"name": "b"}, "object": {"key": "%ff"}}
    assert _malformed(_with(base, s3=bad_key)) == "object key is not URL-encoded UTF-8"
    assert _malformed(_with(base, eventTime=None)) == "event time missing"
    assert _malformed(_with(base, eventTime="yesterday at noon, roughly, in the afternoon")) == (
        "event time 'yesterday at noon, roughly, in the after' is not ISO 8601"
    )
    assert _malformed(_with(base, eventTime="2026-01-02T03:04:05")) == (
        "event time '2026-01-02T03:04:05' has no time zone"
    )


def test_an_eventbridge_event_without_a_bucket_is_malformed() -> None:
    no_bucket = _bridge("Object Created", bucket="my-bucket")
    assert _malformed(json.dumps(no_bucket)) == "bucket name missing"


def test_an_event_time_keeps_its_offset() -> None:
    (event,) = parse_message(_with(_record(), eventTime="2026-01-02T05:04:05+02:00")).events
    assert event.time == T0
    assert event.time.utcoffset() == timedelta(hours=2)
    assert event.time.tzinfo == timezone(timedelta(hours=2))


def test_an_object_size_must_be_a_number() -> None:
    assert parse_message(_body(_record(size="42"))).events[0].size == 42
    assert parse_message(_body(_record(size=0))).events[0].size == 0
    assert _malformed(_body(_record(size="big"))) == "object size 'big' is not a number"
    assert _malformed(_body(_record(size=[1]))) == "object size '[1]' is not a number"


def test_a_sequencer_is_upper_case_hex_right_padded_to_its_width() -> None:
    assert normalize_sequencer(None) is None
    assert normalize_sequencer("") is None
    assert normalize_sequencer(" 0a1b ") == "0A1B" + "0" * 60
    assert normalize_sequencer(255) == "255" + "0" * 61
    assert normalize_sequencer("F" * 64) == "F" * 64
    for raw in ("0x1", "G1", " ", "F" * 65):
        with pytest.raises(MalformedMessage) as caught:
            normalize_sequencer(raw)
        assert str(caught.value) == f"sequencer {raw!r} is not a hex number"
    with pytest.raises(MalformedMessage) as caught:
        normalize_sequencer("Z" * 100)
    assert str(caught.value) == f"sequencer {'Z' * 80!r} is not a hex number"


def test_a_key_is_decoded_as_a_form_value() -> None:
    assert decode_key("a+b%2B%C3%A9") == "a b+é"
    with pytest.raises(UnicodeDecodeError):
        decode_key("%C3")


def _event(
    change: Change, at: datetime, sequencer: str | None = None, key: str = "k"
) -> ObjectEvent:
    return ObjectEvent("b", key, change, at, sequencer=sequencer)


def test_a_key_never_seen_takes_any_event() -> None:
    assert is_newer(_event(Change.CREATED, T0, "01"), None, None, False)


def test_sequencers_decide_when_both_sides_have_one() -> None:
    later_time = T0 + timedelta(hours=1)
    assert not is_newer(_event(Change.CREATED, later_time, "01"), "02", T0, False)
    assert not is_newer(_event(Change.CREATED, later_time, "02"), "02", T0, False)
    assert is_newer(_event(Change.CREATED, T0 - timedelta(hours=1), "03"), "02", T0, False)
    # a stored sequencer without a stored time still decides
    assert not is_newer(_event(Change.CREATED, T0, "01"), "02", None, False)
    assert is_newer(_event(Change.CREATED, T0, "03"), "02", None, False)


def test_without_both_sequencers_the_times_decide() -> None:
    assert is_newer(_event(Change.CREATED, T0 + timedelta(seconds=1)), "02", T0, False)
    assert not is_newer(_event(Change.REMOVED, T0 - timedelta(seconds=1), "03"), None, T0, False)
    assert is_newer(_event(Change.REMOVED, T0), None, T0, False)
    assert not is_newer(_event(Change.REMOVED, T0), None, T0, True)
    assert not is_newer(_event(Change.CREATED, T0), None, T0, False)
    assert is_newer(_event(Change.CREATED, T0), "02", None, False) is True


def test_events_are_ordered_per_key_keys_in_first_seen_order() -> None:
    a2 = _event(Change.REMOVED, T0, "02", "a")
    a1 = _event(Change.CREATED, T0 + timedelta(1), "01", "a")
    b_late = _event(Change.CREATED, T0 + timedelta(2), None, "b")
    b_early = _event(Change.REMOVED, T0, None, "b")
    assert in_order([b_late, a2, b_early, a1]) == [b_early, b_late, a1, a2]
    assert in_order(iter([a2, a1])) == [a1, a2]


def test_a_message_field_without_the_sns_type_is_not_opened() -> None:
    body = json.dumps({"Message": 3, "Records": [_record()]})
    assert parse_message(body).events[0].key == "a.jpg"


def test_events_without_a_sequencer_come_before_those_with_one() -> None:
    with_one = _event(Change.CREATED, T0, "01")
    without = _event(Change.REMOVED, T0 + timedelta(1))
    assert in_order([with_one, without]) == [without, with_one]


def test_long_times_and_sizes_are_cut_to_forty_characters_in_the_reason() -> None:
    late = "2026-01-02T03:04:05Z, then words to pass forty characters"
    assert _malformed(_with(_record(), eventTime=late)) == (
        f"event time {late[:40]!r} is not ISO 8601"
    )
    naive = "2026-01-02T03:04:05." + "1" * 36  # any number of digits parses
    assert _malformed(_with(_record(), eventTime=naive)) == (
        f"event time {naive[:40]!r} has no time zone"
    )
    size = "9" * 30 + "x" * 30
    assert _malformed(_body(_record(size=size))) == f"object size {size[:40]!r} is not a number"


def test_an_etag_loses_only_its_quotes() -> None:
    (event,) = parse_message(_body(_record(eTag='"XeX"'))).events
    assert event.etag == "XeX"

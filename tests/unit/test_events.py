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
    Stored,
    Verdict,
    in_order,
    is_newer,
    normalize_sequencer,
    parse_message,
    verdict,
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
        "bkt", "img/a.jpg", Change.CREATED, T0, 12, "abc", "v1", "0A".ljust(SEQUENCER_WIDTH, "0")
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
        "a+b.jpg",  # EventBridge's keys are raw: see the next tests
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


def test_sequencers_of_different_lengths_compare_right_padded_as_aws_documents():
    """AWS's "Event message structure" page: "first right pad the shorter value with
    zeros, and then do a lexicographical comparison". Seen to fail with left padding."""
    older, newer = "0055AED6DCD90281E500", "0055AED6DCD90281E6"
    assert normalize_sequencer(newer) > normalize_sequencer(older)  # type: ignore[operator]
    assert normalize_sequencer("FF") > normalize_sequencer("100")  # type: ignore[operator]
    assert normalize_sequencer("0A") == normalize_sequencer("0a000")
    stored = normalize_sequencer(older)
    assert is_newer(event(Change.REMOVED, T0, newer), stored, T0, stored_deleted=False)
    assert not is_newer(event(Change.CREATED, T0, "0055AED6DCD90281E4FF"), stored, T0, False)
    assert verdict(event(Change.REMOVED, T0, newer), Stored(stored, T0, False)) is (Verdict.APPLY)


def test_a_stored_left_padded_sequencer_is_not_compared_with_a_right_padded_one():
    """Sequencers stored before right padding: the event times decide, a removal asks."""
    legacy = "0055AED6DCD90281E5".rjust(SEQUENCER_WIDTH, "0")
    late_removal = event(Change.REMOVED, T0 + timedelta(seconds=1), "0055AED6DCD90281E4")
    assert verdict(late_removal, Stored(legacy, T0, False)) is Verdict.ASK
    assert is_newer(event(Change.CREATED, T0 + timedelta(seconds=1), "00"), legacy, T0, False)


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


def bridge_body(key: str, kind: str = "Object Created", **detail: object) -> str:
    return json.dumps(
        {
            "version": "0",
            "detail-type": kind,
            "source": "aws.s3",
            "time": "2026-11-24T12:00:00Z",
            "detail": {"bucket": {"name": "bkt"}, "object": {"key": key, "size": 1}, **detail},
        }
    )


RAW_KEYS = [
    "a+b.jpg",
    "100%.jpg",
    "a%41.png",
    "Screenshot from 2026-03-11 18-23-57.png",
    "é 雪.jpg",
]


@pytest.mark.parametrize("key", RAW_KEYS)
def test_an_eventbridge_key_is_taken_as_it_is_never_url_decoded(key):
    """Seen to fail with the old code's `unquote_plus` of EventBridge keys."""
    (created,) = parse_message(bridge_body(key)).events
    (deleted,) = parse_message(
        bridge_body(key, "Object Deleted", **{"deletion-type": "Permanently Deleted"})
    ).events
    assert created.key == deleted.key == key


@pytest.mark.parametrize("key", RAW_KEYS)
def test_an_s3_notification_key_is_url_decoded_bare_or_in_an_sns_envelope(key):
    from urllib.parse import quote_plus

    inner = body(s3_record("ObjectCreated:Put", quote_plus(key, safe="/"), size=1))
    (bare,) = parse_message(inner).events
    (wrapped,) = parse_message(json.dumps({"Type": "Notification", "Message": inner})).events
    assert bare.key == wrapped.key == key


@pytest.mark.parametrize(
    ("what", "text"),
    [
        ("size past BIGINT", body(s3_record("ObjectCreated:Put", "a.jpg", size=2**70))),
        ("negative size", body(s3_record("ObjectCreated:Put", "a.jpg", size=-1))),
        ("lone surrogate", body(s3_record("ObjectCreated:Put", "a\ud800.jpg", size=1))),
        ("NUL in key", body(s3_record("ObjectCreated:Put", "a%00.jpg", size=1))),
        ("key too long", body(s3_record("ObjectCreated:Put", "k" * 1025, size=1))),
        (
            "year 1 east of UTC",
            body(
                {
                    **s3_record("ObjectCreated:Put", "a.jpg"),
                    "eventTime": "0001-01-01T00:30:00+01:00",
                }
            ),
        ),
        (
            "year 9999",
            body({**s3_record("ObjectCreated:Put", "a.jpg"), "eventTime": "9999-12-31T23:59:59Z"}),
        ),
        ("surrogate in an EventBridge key", bridge_body("a\udfff.jpg")),
    ],
)
def test_a_message_the_database_cannot_store_is_malformed(what, text):
    """Validated where it is parsed, so the watcher leaves it for the DLQ and goes on.
    Seen to fail before the checks: each parsed, then stopped `tracker watch`."""
    with pytest.raises(MalformedMessage):
        parse_message(text)


def test_the_largest_storable_size_is_read():
    (created,) = parse_message(body(s3_record("ObjectCreated:Put", "a.jpg", size=2**63 - 1))).events
    assert created.size == 2**63 - 1


# -- verdict: what an event proves, and when S3 must be asked ---------------------------

SEQ = normalize_sequencer("0055")


def removal(sequencer: str | None = "0056", *, version: str | None = None, one: bool = False,
            at: datetime = T0) -> ObjectEvent:  # fmt: skip
    return ObjectEvent("bkt", "k", Change.REMOVED, at, version_id=version,
                       sequencer=normalize_sequencer(sequencer), one_version=one)  # fmt: skip


def test_a_later_delete_or_delete_marker_proves_the_key_gone():
    assert verdict(removal(), Stored(SEQ, T0, False)) is Verdict.APPLY
    assert verdict(removal(version="m1"), Stored(SEQ, T0, False)) is Verdict.APPLY
    assert verdict(removal(), None) is Verdict.APPLY  # a key never seen: recorded deleted


def test_an_older_or_redelivered_event_is_skipped():
    assert verdict(removal("0055"), Stored(SEQ, T0, False)) is Verdict.SKIP
    assert verdict(removal("0054", one=True, version="v1"), Stored(SEQ, T0, True)) is (Verdict.SKIP)


def test_removing_a_version_asks_s3_even_one_not_recorded_as_current():
    """Reordered: put v1, delete marker, put v3, v3 removed (deleted in the end), the
    removal arriving after v1's put and before v3's. Skipping it as "not the current v1"
    left the key live once v3's put came. Seen to fail on that shortcut."""
    assert verdict(removal(one=True, version="v3"), Stored(SEQ, T0, False)) is Verdict.ASK
    assert verdict(removal("0054", one=True, version="v3"), Stored(SEQ, T0, False)) is (
        Verdict.SKIP
    )


def test_removing_a_version_of_a_listed_key_asks_s3():
    """A listing records no version: the removed one may be old or current. Seen to fail
    on the old rule (unknown version taken as the removed one: marked deleted)."""
    assert verdict(removal(one=True, version="v1"), Stored(None, None, False)) is Verdict.ASK


def test_removing_the_recorded_version_asks_s3_the_previous_one_may_be_current():
    assert verdict(removal(one=True, version="v2"), Stored(SEQ, T0, False)) is Verdict.ASK


def test_removing_a_version_of_a_deleted_key_asks_s3_it_may_be_an_undelete():
    """The delete marker's removal brings the object back. Seen to fail on the old rule
    (any version but the recorded one: skipped, the key left deleted)."""
    assert verdict(removal(one=True, version="m1"), Stored(SEQ, T0, True)) is Verdict.ASK
    assert verdict(removal(one=True, version="m1"), Stored(SEQ, T0, True)) is Verdict.ASK
    assert verdict(removal(one=True, version="m1"), None) is Verdict.ASK


def test_a_removal_that_cannot_be_ordered_against_a_live_key_asks_s3():
    listed = Stored(None, None, False)
    assert verdict(removal(), listed) is Verdict.ASK
    assert verdict(removal(None, at=T0 + timedelta(seconds=1)), Stored(SEQ, T0, False)) is (
        Verdict.ASK
    )
    assert verdict(removal(None, at=T0), Stored(None, T0, False)) is Verdict.ASK
    # Older by time than the event last applied: skipped without asking.
    earlier = removal(None, at=T0 - timedelta(seconds=1))
    assert verdict(earlier, Stored(None, T0, False)) is Verdict.SKIP


def test_a_creation_never_asks():
    created = ObjectEvent("bkt", "k", Change.CREATED, T0, 1, sequencer=normalize_sequencer("56"))
    for stored in (None, Stored(None, None, True), Stored(SEQ, T0, True)):
        assert verdict(created, stored) is Verdict.APPLY
    assert verdict(created, Stored(normalize_sequencer("57"), T0, True)) is Verdict.SKIP

"""The compact column types (`tracker.models.ETag`, `CompactUTCDateTime`): every value comes
back exactly as it went in, on SQLite in its compact form and on PostgreSQL unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from tracker.models import (
    CompactUTCDateTime,
    ETag,
    from_micros,
    pack_etag,
    to_micros,
    unpack_etag,
)

SQLITE, PG = sqlite.dialect(), postgresql.dialect()

ETAGS = [
    "d41d8cd98f00b204e9800998ecf8427e",
    "00000000000000000000000000000000",
    "D41D8CD98F00B204E9800998ECF8427E",
    "d41d8cd98f00b204e9800998ecf8427e-12",
    '"d41d8cd98f00b204e9800998ecf8427e"',
    "d41d8cd98f00b204e9800998ecf8427",
    "d41d8cd98f00b204e9800998ecf8427e0",
    "zz1d8cd98f00b204e9800998ecf8427e",
    "d41d8cd98f00b204e9800998ecf8427\n",
    "٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠١",  # Unicode digits are not hex digits
    "é",
    "",
]

TIMES = [
    datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
    datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 5, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
]


@pytest.mark.parametrize("etag", ETAGS)
def test_an_etag_round_trips_exactly_through_its_sqlite_form(etag):
    stored = ETag().process_bind_param(etag, SQLITE)
    assert ETag().process_result_value(stored, SQLITE) == etag
    assert unpack_etag(pack_etag(etag)) == etag


def test_only_a_lowercase_md5_etag_is_stored_as_its_16_bytes():
    packed = [e for e in ETAGS if isinstance(pack_etag(e), bytes)]
    assert packed == ETAGS[:2]
    assert pack_etag(ETAGS[0]) == bytes.fromhex(ETAGS[0])


def test_an_etag_goes_to_postgresql_as_text_unchanged():
    assert ETag().process_bind_param(ETAGS[0], PG) == ETAGS[0]
    assert ETag().process_result_value(ETAGS[0], PG) == ETAGS[0]
    assert ETag().process_bind_param(None, SQLITE) is None
    assert ETag().process_result_value(None, SQLITE) is None


@pytest.mark.parametrize("moment", TIMES)
def test_a_time_round_trips_exactly_as_integer_microseconds_on_sqlite(moment):
    stored = CompactUTCDateTime().process_bind_param(moment, SQLITE)
    assert isinstance(stored, int)
    back = CompactUTCDateTime().process_result_value(stored, SQLITE)
    assert back == moment and back.tzinfo is UTC
    assert from_micros(to_micros(moment)) == moment


def test_microseconds_order_as_the_times_do():
    ordered = sorted(TIMES)
    assert sorted(to_micros(t) for t in TIMES) == [to_micros(t) for t in ordered]


def test_a_time_still_in_sqlite_text_form_reads_as_it_did():
    read = CompactUTCDateTime().process_result_value
    assert read("2024-05-01 12:00:00", SQLITE) == TIMES[0]
    assert read("2024-05-01 12:00:00.000001", SQLITE) == TIMES[1]


def test_a_naive_time_is_refused_and_postgresql_gets_an_aware_one():
    with pytest.raises(ValueError, match="naive"):
        CompactUTCDateTime().process_bind_param(datetime(2024, 5, 1), SQLITE)
    sent = CompactUTCDateTime().process_bind_param(TIMES[5], PG)
    assert sent == TIMES[5] and sent.tzinfo is UTC

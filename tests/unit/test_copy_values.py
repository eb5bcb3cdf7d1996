"""`tracker db copy`'s value conversions between SQLite and PostgreSQL, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from tracker.copy import row_converter, sqlite_utc_text
from tracker.models import UTCDateTime, items, objects

TIMES = [
    datetime(1969, 7, 20, 20, 17, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 11, 24, 23, 30, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
]


@pytest.mark.parametrize("value", TIMES)
def test_a_time_becomes_the_text_sqlalchemy_stores_on_sqlite(value):
    dialect = sqlite.dialect()
    store = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert sqlite_utc_text(value) == store(value)


def test_rows_between_two_databases_of_one_kind_are_passed_as_read():
    assert row_converter(objects, sqlite.dialect(), sqlite.dialect(), [None] * 12) is None
    assert row_converter(items, postgresql.dialect(), postgresql.dialect(), [None] * 30) is None


def test_a_sqlite_item_row_becomes_postgresql_values():
    """Booleans stored as 0/1 become booleans; enums stay their text; times stay SQLite's
    UTC text (the target session reads it in UTC); NULLs stay NULL."""
    columns = list(items.columns)
    convert = row_converter(items, sqlite.dialect(), postgresql.dialect(), [None] * len(columns))
    assert convert is not None
    row = [None] * len(columns)
    names = [c.name for c in columns]
    row[names.index("imported")] = 1
    row[names.index("state")] = "annotated"
    row[names.index("created_at")] = "2026-11-24 20:00:00.000001"
    out = convert(row)
    assert out[names.index("imported")] is True
    assert out[names.index("state")] == "annotated"
    assert out[names.index("created_at")] == "2026-11-24 20:00:00.000001"
    assert out[names.index("answer")] is None

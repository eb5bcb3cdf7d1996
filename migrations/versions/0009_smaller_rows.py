"""smaller rows: ETags as 16 bytes and objects' times as integers, on SQLite

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24

SQLite only, and values only: a column there takes any storage class whatever its declared
type, so the schema (DDL) does not change and no table is rebuilt. Each value is rewritten
in place with UPDATE (indexes on other columns are untouched):

- `objects.etag` and `items.answer_etag`: a plain MD5 ETag (32 lowercase hex digits, as the
  tracker keeps it without S3's quotes) becomes its 16 bytes (a BLOB); any other ETag stays
  text (`tracker.models.ETag`).
- `objects.last_modified` and `objects.created_at`: naive-UTC text becomes integer
  microseconds since the epoch (`tracker.models.CompactUTCDateTime`).

The conversions are copied here (not imported) so that this revision keeps meaning what it
meant when the models change. PostgreSQL keeps its types: nothing to do there. The
downgrade writes the old text back, exactly as SQLAlchemy writes it. The file only shrinks
after a `VACUUM`, which cannot run inside the migration's transaction: `tracker db upgrade`
says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import op
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine.processors import str_to_datetime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MD5_ETAG = re.compile(r"[0-9a-f]{32}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: The ETag columns, and the time columns of `objects`, rewritten.
_ETAGS = (("objects", "etag"), ("items", "answer_etag"))
_TIMES = (("objects", "last_modified"), ("objects", "created_at"))


def _pack_etag(value: Any) -> Any:
    if isinstance(value, str) and _MD5_ETAG.fullmatch(value):
        return bytes.fromhex(value)
    return value


def _micros(value: Any) -> Any:
    """A time as SQLite text, read as the old code read it (SQLAlchemy's parser, naive
    meaning UTC), as integer microseconds; a text it cannot read is left as it is."""
    if not isinstance(value, str):
        return value
    try:
        moment = str_to_datetime(value)
    except ValueError:
        return value
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return (moment - _EPOCH) // _MICROSECOND


#: The text SQLAlchemy writes for a (naive UTC) datetime in a SQLite DATETIME column.
_sqlalchemy_text = sqlite.DATETIME().bind_processor(sqlite.dialect())


def _text(value: Any) -> Any:
    """Integer microseconds back as the text the old code wrote."""
    if not isinstance(value, int):
        return value
    moment = (_EPOCH + value * _MICROSECOND).replace(tzinfo=None)
    return _sqlalchemy_text(moment) if _sqlalchemy_text else moment.isoformat(" ")


def _register(**functions: Any) -> None:
    """Python functions for the UPDATEs (SQLite 3.40 has no unhex())."""
    driver = op.get_bind().connection.driver_connection
    for name, function in functions.items():
        driver.create_function(name, 1, function, deterministic=True)


@contextmanager
def _triggers_set_aside() -> Iterator[None]:
    """The triggers on `objects` and `items` dropped while values change form, re-created
    from their own SQL after (all in the migration's transaction).

    Revision 0007's counters fire on ETag updates (an overwritten object counts as
    changed): rewriting an ETag in another form is no change, yet between the `objects`
    and the `items` UPDATE each answered key would look changed, and each object's update
    would rewrite every dataset's counters (seconds per million keys). SQLite cannot
    disable a trigger, so they are set aside; the counts stay exactly what they were.
    """
    bind = op.get_bind()
    triggers = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
        "AND tbl_name IN ('objects', 'items')"
    ).all()
    for name, _ in triggers:
        op.execute(f'DROP TRIGGER "{name}"')
    yield
    for _, sql in triggers:
        op.execute(sql)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _register(tracker_0009_pack_etag=_pack_etag, tracker_0009_micros=_micros)
    with _triggers_set_aside():
        _compact()


def _compact() -> None:
    for table, column in _ETAGS:
        op.execute(
            f"UPDATE {table} SET {column} = tracker_0009_pack_etag({column}) "
            f"WHERE typeof({column}) = 'text' AND length({column}) = 32"
        )
    assignments = ", ".join(f"{c} = tracker_0009_micros({c})" for _, c in _TIMES)
    wanted = " OR ".join(f"typeof({c}) = 'text'" for _, c in _TIMES)
    op.execute(f"UPDATE objects SET {assignments} WHERE {wanted}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _register(tracker_0009_text=_text)
    with _triggers_set_aside():
        _expand()


def _expand() -> None:
    for table, column in _ETAGS:
        op.execute(
            f"UPDATE {table} SET {column} = lower(hex({column})) WHERE typeof({column}) = 'blob'"
        )
    assignments = ", ".join(f"{c} = tracker_0009_text({c})" for _, c in _TIMES)
    wanted = " OR ".join(f"typeof({c}) = 'integer'" for _, c in _TIMES)
    op.execute(f"UPDATE objects SET {assignments} WHERE {wanted}")

"""The state database's schema: sources, their listing cursors, and one row per S3 key.

Migrations in `migrations/` must produce exactly this schema; `tests/test_migrations.py`
fails on any drift.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Named constraints from day one: SQLite cannot drop an unnamed constraint later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: S3 allows keys of up to 1024 bytes of UTF-8; a character is at least one byte.
MAX_KEY_LENGTH = 1024

#: Integer primary keys that are 64-bit on PostgreSQL and SQLite's rowid alias on SQLite.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class ItemState(enum.StrEnum):
    """Where one S3 key stands."""

    #: Listed, never served, or handed back (released, requeued, reset).
    PENDING = "pending"
    #: Handed to an annotator under a lease; claimable again once the lease expires.
    SERVED = "served"
    #: At least one answer was recorded.
    ANNOTATED = "annotated"
    #: Could not be served (vanished, not an image); `failure_reason` says why.
    FAILED = "failed"


class Answer(enum.StrEnum):
    """Prodigy's answer values."""

    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zone type and hands back naive values; storing naive UTC there and
    re-attaching UTC on the way out keeps comparisons in SQL and in Python consistent.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A portable enum: a VARCHAR with a named CHECK constraint, no native PG type."""
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Source(Base):
    """A bucket and prefix that is listed and annotated as one collection."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("bucket", "prefix"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ListingCursor(Base):
    """Where the S3 listing of a source stands: token AND last key, so either can resume it."""

    __tablename__ = "listing_cursors"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    continuation_token: Mapped[str | None] = mapped_column(Text)
    last_key: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    pages_listed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    keys_listed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    exhausted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Item(Base):
    """One S3 key of a source and its annotation state."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "key"),
        # Claiming the oldest pending keys and counting by state: an index range scan.
        Index("ix_items_queue", "source_id", "state", "id"),
        # Expired leases: only served rows are indexed, so the index stays small.
        Index(
            "ix_items_leases",
            "source_id",
            "lease_expires_at",
            sqlite_where=text("state = 'served'"),
            postgresql_where=text("state = 'served'"),
        ),
        # Answer split and recent throughput for `tracker status`, without touching rows.
        Index(
            "ix_items_answers",
            "source_id",
            "answer",
            "annotated_at",
            sqlite_where=text("answer IS NOT NULL"),
            postgresql_where=text("answer IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    size: Mapped[int | None] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(255))
    last_modified: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[ItemState] = mapped_column(
        _enum(ItemState, "item_state"), default=ItemState.PENDING, server_default="pending"
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    session_id: Mapped[str | None] = mapped_column(String(255))
    answer: Mapped[Answer | None] = mapped_column(_enum(Answer, "answer"))
    answer_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Defaults in SQL: recording a page then sends no per-row timestamps to convert.
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=func.current_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=func.current_timestamp()
    )
    served_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    annotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


sources = Source.__table__
listing_cursors = ListingCursor.__table__
items = Item.__table__

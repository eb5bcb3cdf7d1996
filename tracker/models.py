"""The state database's schema: sources and their listing cursors, the objects listed
(shared by every dataset), datasets, registered stream owners, and per-dataset key state.

Migrations in `migrations/` must produce exactly this schema; `tests/integration/test_migrations.py`
fails on any drift.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.processors import str_to_datetime
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from tracker.states import Answer as Answer
from tracker.states import ItemState as ItemState

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

#: An s3:// URI of an inventory manifest: a bucket name, a key and the scheme.
MAX_MANIFEST_LENGTH = MAX_KEY_LENGTH + 80

#: Integer primary keys that are 64-bit on PostgreSQL and SQLite's rowid alias on SQLite.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact: no float)."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + value * _MICROSECOND


class _SQLiteRawDateTime(sqlite.DATETIME):
    """SQLite's DATETIME in the DDL (so the schema is the migrations' one) with the values
    passed through as they are: `CompactUTCDateTime` hands it integers."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class CompactUTCDateTime(UTCDateTime):
    """A `UTCDateTime` stored as integer microseconds since the epoch on SQLite: 8 bytes
    instead of 26 of text, for the per-key columns of `objects` (PostgreSQL's timestamptz is
    8 bytes already and is kept).

    Reads also take SQLite's text form: a column's DDL default (CURRENT_TIMESTAMP, which a
    migration cannot change without rebuilding the table) or a row written before 0009.
    Only compare such a column in SQL with values of its own type.
    """

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteRawDateTime())  # type: ignore[no-untyped-call]
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return super().process_bind_param(value, dialect)
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return to_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if isinstance(value, int):
            return from_micros(value)
        if isinstance(value, str):  # what SQLAlchemy's SQLite DATETIME would have read
            value = str_to_datetime(value)
        return super().process_result_value(value, dialect)


#: An ETag as the tracker keeps it (S3's quotes stripped, `tracker.lister`) when S3 gave
#: the MD5 of an object uploaded in one part: 32 lowercase hex digits. Anything else
#: (multipart `...-12`, uppercase, quoted, odd) is kept as text.
_MD5_ETAG = re.compile(r"[0-9a-f]{32}")


def pack_etag(etag: str) -> str | bytes:
    """An ETag as SQLite stores it: an MD5 one as its 16 bytes (a BLOB), any other as is."""
    return bytes.fromhex(etag) if _MD5_ETAG.fullmatch(etag) else etag


def unpack_etag(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes) else value


class ETag(TypeDecorator[str]):
    """An ETag, 16 bytes on SQLite when it is a plain MD5 (`pack_etag`) instead of 32.

    Every column holding ETags that SQL compares with one another must use this type, so
    that one ETag is always stored the same way. PostgreSQL keeps text.
    """

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return pack_etag(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unpack_etag(value)


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
    """A bucket and prefix that is listed once and annotated by any number of datasets.

    The prefix is stored in one normal form (`tracker.s3uri.normalize_prefix`), and no two
    sources of one bucket overlap (the store refuses `s3://b/a` beside `s3://b`), so one
    key is never two rows that two recipes could serve at once.
    """

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("bucket", "prefix"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ListingCursor(Base):
    """Where the S3 listing of a source stands: token AND last key, so either can resume it.

    `generation` grows on every `reset --listing`: a lister that read the cursor before a
    reset still records its page's keys, but may no longer move the cursor.
    """

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
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The last complete-pass id handed out (`Store.begin_pass`); every key a listing page
    #: or an event records is stamped with it (`objects.seen_pass`).
    pass_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: When `tracker watch` last applied an S3 event notification to this source.
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Object(Base):
    """One listed S3 key of a source and its listing facts, shared by every dataset."""

    __tablename__ = "objects"
    __table_args__ = (
        UniqueConstraint("source_id", "key"),
        # Listing order within a source: what a dataset's frontier walks through.
        Index("ix_objects_order", "source_id", "id"),
        # Deleted keys only (few): `status` counts them, pending counts subtract them.
        Index(
            "ix_objects_deleted",
            "source_id",
            "id",
            sqlite_where=text("deleted_at IS NOT NULL"),
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    size: Mapped[int | None] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(ETag)
    last_modified: Mapped[datetime | None] = mapped_column(CompactUTCDateTime)
    #: The DDL default is CURRENT_TIMESTAMP (text on SQLite); the store's inserts write
    #: `now_micros()` there instead, so that every row has the compact form.
    created_at: Mapped[datetime] = mapped_column(
        CompactUTCDateTime, server_default=func.current_timestamp()
    )
    #: When a complete listing pass or an ObjectRemoved event found the key gone (None:
    #: live). A deleted key is never served; a listing or event that sees it again clears it.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The source's `pass_seq` when a page or an event last saw the key: a complete pass
    #: marks deleted the keys last seen before it began.
    seen_pass: Mapped[int | None] = mapped_column(Integer)
    #: The object's version (versioned buckets), when an event named it.
    version_id: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    #: The last event applied to the key: S3's `sequencer` (left-padded hex) when it sent
    #: one, and the event time; an older event for the key is not applied.
    event_sequencer: Mapped[str | None] = mapped_column(String(64))
    event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Dataset(Base):
    """A Prodigy dataset annotating a source.

    A dataset has an `items` row only for the keys it has touched (served, answered,
    failed, or handed back). Every object of the source with an id above `frontier` is
    pending for it without a row: a new dataset over 10M keys costs one row, and its claims
    walk `ix_objects_order` from the frontier, an index range read.
    """

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("source_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    #: The highest object id this dataset has taken into `items`; above it, all pending.
    frontier: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: The serving order its pending rows are ranked for (`tracker.ordering.Order.label`,
    #: e.g. `random:7`); NULL: listing order, claimed from the frontier without ranks.
    ranked_as: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Owner(Base):
    """A live stream process, registered under its lease owner name with a heartbeat.

    A second process under the same name is refused while the heartbeat is fresh; once it
    is stale, the owner's leases are expired early and a restart under the name takes over.
    """

    __tablename__ = "owners"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    token: Mapped[str] = mapped_column(String(36))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


#: A pending row without a rank (`ix_items_unranked`'s condition, written in the queries
#: as is so that SQLite, which cannot match a bound value to it, uses the index too).
UNRANKED = "state = 'pending' AND rank IS NULL"


class Item(Base):
    """The annotation state of one key for one dataset: the unit of a lease.

    One row per (dataset, object) today. Per-annotator overlap (k answers per key) adds an
    `annotator` column to the unique constraint and to the lease: each (key, dataset,
    annotator) is then a row of its own, leased, answered and counted as rows are now.
    """

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("dataset_id", "object_id"),
        # Claiming handed-back keys and counting by state: an index range scan.
        Index("ix_items_queue", "dataset_id", "state", "object_id"),
        # Expired leases: only served rows are indexed, so the index stays small.
        Index(
            "ix_items_leases",
            "dataset_id",
            "lease_expires_at",
            sqlite_where=text("state = 'served'"),
            postgresql_where=text("state = 'served'"),
        ),
        # An owner's keys (restart, release, a dead owner's leases).
        Index(
            "ix_items_owner",
            "lease_owner",
            sqlite_where=text("state = 'served'"),
            postgresql_where=text("state = 'served'"),
        ),
        # Claiming in a ranked order (random, priority, by prefix): an index range read.
        Index("ix_items_rank", "dataset_id", "state", "rank", "object_id"),
        # Pending rows still to rank (put back by a requeue, made by an answer): almost
        # always none, and a ranked claim asks on every call.
        Index(
            "ix_items_unranked",
            "dataset_id",
            sqlite_where=text(UNRANKED),
            postgresql_where=text(UNRANKED),
        ),
        # Per-annotator numbers for `tracker status`: each session's answers, newest last.
        Index(
            "ix_items_sessions",
            "dataset_id",
            "session_id",
            "annotated_at",
            "answer",
            sqlite_where=text("answer IS NOT NULL"),
            postgresql_where=text("answer IS NOT NULL"),
        ),
        # Answer split and recent throughput for `tracker status`, without touching rows.
        Index(
            "ix_items_answers",
            "dataset_id",
            "answer",
            "annotated_at",
            sqlite_where=text("answer IS NOT NULL"),
            postgresql_where=text("answer IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"))
    state: Mapped[ItemState] = mapped_column(
        _enum(ItemState, "item_state"), default=ItemState.PENDING, server_default="pending"
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Leases granted since the last answer or hand-back: bounded by `max_attempts`.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Leases ever granted; never reset, so each serve gets its own `_task_hash`.
    serves: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    session_id: Mapped[str | None] = mapped_column(String(255))
    answer: Mapped[Answer | None] = mapped_column(_enum(Answer, "answer"))
    answer_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The distinct later answers counted in `answer_count`, as (answer, session) pairs
    #: (`tracker.records.later_answers_text`): a replay of one is not counted again.
    #: NULL for a key answered once, nearly every key.
    later_answers: Mapped[str | None] = mapped_column(Text)
    #: Serving position in the dataset's ranked order (lowest first); NULL in listing order.
    rank: Mapped[float | None] = mapped_column(Float(precision=53))
    #: The lease owner (`--owner`, a stream process) whose lease the first answer ended;
    #: shown as `owner` (the column keeps its first name: no migration for a rename).
    answered_via: Mapped[str | None] = mapped_column(String(255))
    #: The answer came from `import-answers` (kept out of "annotated in the last hour").
    imported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Defaults in SQL: recording rows then sends no per-row timestamps to convert.
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=func.current_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=func.current_timestamp()
    )
    served_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    annotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The object's ETag (and version) when the first answer was recorded: an object
    #: overwritten since has another ETag, and the answer is "changed".
    answer_etag: Mapped[str | None] = mapped_column(ETag)
    answer_version_id: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))


sources: Table = Source.__table__  # type: ignore[assignment]
listing_cursors: Table = ListingCursor.__table__  # type: ignore[assignment]
objects: Table = Object.__table__  # type: ignore[assignment]
datasets: Table = Dataset.__table__  # type: ignore[assignment]
owners: Table = Owner.__table__  # type: ignore[assignment]
items: Table = Item.__table__  # type: ignore[assignment]


class ListingShard(Base):
    """One shard of a parallel listing (`tracker sync --parallel N`): the keys k of a source
    with `start_after < k <= end_key` in S3's UTF-8 binary order (None: unbounded), listed
    by one LIST chain with its own cursor, committed with each of its pages.

    A plan is the set of rows with the same `plan` number; a new plan (another split, after
    `--from-start` or a finished pass) replaces the rows. `generation` is the source
    cursor's generation the plan was made under: a `reset --listing` since makes it stale.
    `closed_at` is set once every shard is exhausted and the source's cursor was moved.
    """

    __tablename__ = "listing_shards"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    plan: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    start_after: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    end_key: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    continuation_token: Mapped[str | None] = mapped_column(Text)
    last_key: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    pages_listed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    keys_listed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    exhausted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The complete-pass id of a plan listing the whole source (`Store.begin_pass`); its
    #: closing marks deleted the keys the pass did not see.
    pass_id: Mapped[int | None] = mapped_column(Integer)


listing_shards: Table = ListingShard.__table__  # type: ignore[assignment]


class InventoryIngest(Base):
    """An S3 Inventory report read into a source (`tracker sync --inventory`), and how far.

    Data files are read in the manifest's order; `file_index` is the file being read and
    `row_offset` the rows of it already recorded, moved in the same transaction as each
    batch of keys, so a killed ingestion continues exactly there. `max_key` is the greatest
    key of the source seen so far, kept for people: the listing cursor never moves to it
    (a report proves no range covered; see `tracker.inventory`). `snapshot_at` is the
    report's date, shown by `tracker status`.
    """

    __tablename__ = "inventory_ingests"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    #: The manifest's s3:// URI: one report is one row, whatever path named it.
    manifest: Mapped[str] = mapped_column(String(MAX_MANIFEST_LENGTH), primary_key=True)
    snapshot_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    files: Mapped[int] = mapped_column(Integer)
    file_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    row_offset: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    keys_recorded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    max_key: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


inventory_ingests: Table = InventoryIngest.__table__  # type: ignore[assignment]


class KeyPriority(Base):
    """A key's priority from `tracker priority` (higher: served sooner in priority order),
    kept by key so that it also applies to keys not listed yet, once they are."""

    __tablename__ = "key_priorities"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    priority: Mapped[float] = mapped_column(Float(precision=53))


key_priorities: Table = KeyPriority.__table__  # type: ignore[assignment]


class SourceCount(Base):
    """Counters of a source's objects, kept by triggers (migration 0007): keys listed,
    keys marked deleted. The source's numbers are the sums of its rows: one row on SQLite,
    delta rows on PostgreSQL until they are compacted (see `tracker.counters`)."""

    __tablename__ = "source_counts"
    __table_args__ = (Index("ix_source_counts_source_id", "source_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    #: No foreign key, on purpose: see migration 0007 (a KEY SHARE lock per delta).
    source_id: Mapped[int] = mapped_column(BigIntId)
    listed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    deleted: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DatasetCount(Base):
    """Counters of a dataset's `items` rows, kept by triggers (migration 0007); what each
    column counts is `tracker.counters.ITEM_COUNTERS`. Summed like `SourceCount`."""

    __tablename__ = "dataset_counts"
    __table_args__ = (Index("ix_dataset_counts_dataset_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    #: No foreign key, on purpose: see migration 0007 (a KEY SHARE lock per delta).
    dataset_id: Mapped[int] = mapped_column(BigIntId)
    served: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    annotated: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    live_served: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    live_annotated: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    live_failed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    accepted: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    rejected: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    ignored: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    changed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


source_counts: Table = SourceCount.__table__  # type: ignore[assignment]
dataset_counts: Table = DatasetCount.__table__  # type: ignore[assignment]

#: The tables `tracker db check` reports PostgreSQL's statistics for.
TRACKED_TABLES: tuple[Table, ...] = (
    sources,
    listing_cursors,
    objects,
    datasets,
    items,
    owners,
    listing_shards,
    inventory_ingests,
    key_priorities,
    source_counts,
    dataset_counts,
)

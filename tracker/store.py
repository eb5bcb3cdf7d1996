"""The state store: the one module that runs SQL.

Every write is one transaction (`BEGIN IMMEDIATE` on SQLite, see `tracker.db`); every
operation works the same on SQLite and PostgreSQL, with `FOR UPDATE SKIP LOCKED` in the
claim on PostgreSQL so that concurrent claimers never wait on, or take, each other's rows.

Time: every lease, heartbeat and answer time is the database's clock on PostgreSQL
(`now()` in the statement), so hosts whose clocks disagree still agree on who holds a
lease. SQLite runs inside this process: its clock is this host's.

Layout: a source's keys are `objects`, listed once; each dataset has `items` rows only
for the keys it touched, and every object above its `frontier` is pending for it (see
`tracker.models.Dataset`). Claims take handed-back keys first, then walk the frontier. A
dataset in a ranked order (random, priority, by-prefix: `tracker.ordering`) has a pending
row with a rank for every key listed so far instead, and claims read them by rank.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, wraps
from itertools import islice
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Interval,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from tracker.counters import (
    ITEM_COUNTERS,
    DatasetTally,
    Numbers,
    SourceTally,
    TableHealth,
    changes_of,
    counts_of,
    numbers,
    numbers_of,
)
from tracker.counters import pending as counter_pending
from tracker.cursors import cursor_move
from tracker.db import (
    PG_FRONTIER_LOCK,
    create_db_engine,
    ensure_schema,
    masked,
    translate_db_errors,
)
from tracker.errors import (
    DatasetNotFound,
    OwnerInUse,
    SourceNotFound,
    StateDBError,
    UsageError,
)
from tracker.events import Change, Current, ObjectEvent, Stored, Verdict, in_order, verdict
from tracker.models import (
    TRACKED_TABLES,
    UNRANKED,
    Answer,
    CompactUTCDateTime,
    ItemState,
    UTCDateTime,
    dataset_counts,
    datasets,
    inventory_ingests,
    items,
    key_priorities,
    listing_cursors,
    listing_shards,
    objects,
    owners,
    pack_etag,
    source_counts,
    sources,
    to_micros,
    utcnow,
)
from tracker.ordering import Order, Unranked, ranks
from tracker.records import (
    AnnotatorStats,
    AnswerRecord,
    BucketChanges,
    Counts,
    Cursor,
    DatasetRef,
    ExistingAnswer,
    InventoryProgress,
    ItemFilter,
    ItemRow,
    Lease,
    ListedObject,
    OpenWork,
    SourceRef,
    later_answers_of,
    later_answers_text,
    plan_answers,
)
from tracker.s3uri import normalize_prefix, prefixes_overlap
from tracker.s3uri import utf8_after as _utf8_after
from tracker.shards import ShardCursor

#: Rows per statement when acting on many ids; under every backend's bound-parameter limit.
_CHUNK = 500

_LEASE_CLEARED: dict[str, Any] = {
    "lease_owner": None,
    "lease_token": None,
    "lease_expires_at": None,
}


def _facts_of_object(column: Any) -> Any:
    """The answered object's `column` now (a scalar subquery correlated to `items`)."""
    return select(column).where(objects.c.id == items.c.object_id).scalar_subquery()


#: What the first answer for a key writes (`new_answer`, `new_session`, `answered`,
#: `imported` and `now` are bound).
_FIRST_ANSWER: dict[str, Any] = {
    "state": ItemState.ANNOTATED,
    "answer": bindparam("new_answer"),
    "session_id": bindparam("new_session"),
    "answer_count": 1,
    "later_answers": None,
    "annotated_at": bindparam("answered", type_=UTCDateTime()),
    "imported": bindparam("imported"),
    # The old value: the process whose lease this answer ended (per-annotator reporting).
    "answered_via": items.c.lease_owner,
    "attempts": 0,
    "updated_at": bindparam("now", type_=UTCDateTime()),
    "failure_reason": None,
    # Which object the answer was given for: an overwrite later changes the object's ETag.
    "answer_etag": _facts_of_object(objects.c.etag),
    "answer_version_id": _facts_of_object(objects.c.version_id),
    **_LEASE_CLEARED,
}


def never_answered(attempts: int) -> str:
    """Why a key that keeps coming back unanswered was set aside."""
    return (
        f"served {attempts} times, never answered: already in the Prodigy dataset "
        "(Prodigy skips it), a task-hash collision, or dropped by Prodigy's duplicate filter"
    )


@dataclass(frozen=True)
class OwnerRegistration:
    """A stream process registered under its lease owner name."""

    name: str
    token: str


_P = ParamSpec("_P")
_R = TypeVar("_R")

#: How far back "annotated in the last hour" reaches (`Store._in_last_hour`).
_LAST_HOUR = timedelta(hours=1)

#: PostgreSQL's SQLSTATE for a transaction it rolled back to break a deadlock.
_DEADLOCK_DETECTED = "40P01"
#: Runs of a transaction `_again_after_deadlock` makes at most.
_DEADLOCK_TRIES = 3


def _again_after_deadlock(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a store method (one write transaction) again when PostgreSQL rolled it back to
    break a deadlock: with the frontier locks, a claim and an import of answers or a batch
    of events can wait on each other (see `Store._hold_frontier`). Nothing of the rolled
    back run was kept, and the other transaction has gone on, so running it again is safe."""

    @wraps(method)
    def again(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        tries = 1
        while True:
            try:
                return method(*args, **kwargs)
            except StateDBError as error:
                if error.sqlstate != _DEADLOCK_DETECTED or tries >= _DEADLOCK_TRIES:
                    raise
                tries += 1

    return again


class Store:
    """Operations on the state DB. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        #: Keys are inserted set-based (`_insert_objects`); the benchmark turns it off to
        #: time the row-by-row path, through SQLAlchemy, beside it.
        self.bulk_insert = True
        #: Per thread: the connection of an open `snapshot()`, which `_read` then uses.
        self._snapshots = threading.local()

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True) -> Store:
        """Open the state DB at `url` (see `tracker.db.resolve_url`), creating or upgrading it."""
        engine = create_db_engine(url)
        if migrate:
            try:
                ensure_schema(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine)

    @property
    def url(self) -> str:
        """The DB URL with its password masked."""
        return masked(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with translate_db_errors(self.engine.url), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        held: Connection | None = getattr(self._snapshots, "conn", None)
        if held is not None:  # inside `snapshot()`: its transaction, not a new one
            with translate_db_errors(self.engine.url):
                yield held
            return
        with (
            translate_db_errors(self.engine.url),
            self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read of this store in this thread inside the block sees one point in time.

        `tracker db check` compares the counters with a recount: read in separate
        transactions beside a writer, the two sides see different rows and differ although
        both are exact. One read-only transaction for the whole block (PostgreSQL:
        REPEATABLE READ READ ONLY; SQLite: one deferred read transaction, which WAL keeps
        at the state of its first read) makes them one snapshot. Reads only: writes take
        their own transaction as always, and the snapshot does not see them.
        """
        if getattr(self._snapshots, "conn", None) is not None:
            yield  # already in one
            return
        with translate_db_errors(self.engine.url), self.engine.connect() as conn:
            if self._pg:
                conn = conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            else:
                conn = conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                self._snapshots.conn = conn
                try:
                    yield
                finally:
                    self._snapshots.conn = None

    def _insert(self, table: Any) -> Any:
        if self._pg:
            return postgresql.insert(table)
        if table is objects:
            # Not the DDL default (CURRENT_TIMESTAMP, text): see `Object.created_at`.
            return sqlite.insert(table).values(created_at=literal_column(SQLITE_NOW_MICROS))
        return sqlite.insert(table)

    # -- objects inserted before the frontier walks past them -----------------------------
    #
    # Object ids come from a sequence: on PostgreSQL a transaction can take lower ids than
    # another yet commit after it. Were a claim to move a dataset's frontier past the ids
    # it sees while an insert holding a lower id is still in flight, that object would land
    # behind the frontier without an items row: never served, never counted pending by the
    # recount, while the counters count it. So every transaction inserting a source's
    # objects holds a shared advisory lock on the source (inserters do not wait on each
    # other), and a frontier walk takes it exclusive before it reads the objects past the
    # frontier: it waits for the inserts in flight to commit, and an insert that starts
    # later draws its ids from the sequence after every id the walk can see.
    #
    # Deadlocks: a walk holds its dataset's row and the `items` rows it leased first while
    # it waits, and no inserter waits on a dataset's row. Importing answers for never-listed
    # keys, or applying events that end leases, locks `items` rows after the shared lock:
    # should a claim hold one of those rows and wait to walk the frontier, PostgreSQL breaks
    # the cycle by rolling one of the two back, and that one runs again
    # (`_again_after_deadlock`). SQLite serialises writers: nothing to do there.

    def _inserting_objects(self, conn: Connection, source: SourceRef) -> None:
        """Before inserting objects of `source`: hold the shared frontier lock."""
        if self._pg:
            conn.execute(
                text("SELECT pg_advisory_xact_lock_shared(:lock_class, :lock_source)"),
                {"lock_class": PG_FRONTIER_LOCK, "lock_source": source.id},
            )

    def _hold_frontier(self, conn: Connection, source: SourceRef) -> None:
        """Before reading objects past a frontier to move it: wait for the inserts of
        `source`'s objects in flight to commit, and keep new ones out until this commits."""
        if self._pg:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:lock_class, :lock_source)"),
                {"lock_class": PG_FRONTIER_LOCK, "lock_source": source.id},
            )

    # -- the clock ------------------------------------------------------------------------

    @cached_property
    def _now(self) -> ColumnElement[datetime]:
        """ "Now" inside a statement: the server's clock on PostgreSQL, this host's on SQLite
        (bound as `now`, see `_times`)."""
        if self._pg:
            return func.now().cast(UTCDateTime())
        return bindparam("now", type_=UTCDateTime())

    def _in(self, name: str) -> ColumnElement[datetime]:
        """`now + <interval bound as name>` on PostgreSQL; a bound time on SQLite."""
        if self._pg:
            return (func.now() + bindparam(name, type_=Interval())).cast(UTCDateTime())
        return bindparam(f"{name}_at", type_=UTCDateTime())

    @staticmethod
    def _times(**intervals: timedelta) -> dict[str, Any]:
        """Parameters for `_now` and `_in(name)`: both forms, each backend takes its own."""
        now = utcnow()
        params: dict[str, Any] = {"now": now}
        for name, interval in intervals.items():
            params[name] = interval
            params[f"{name}_at"] = now + interval
        return params

    # -- sources and listing cursors ------------------------------------------------------

    def source(self, bucket: str, prefix: str = "", *, create: bool = False) -> SourceRef:
        """The source for bucket + prefix (normalised: `img` is `img/`); created with an
        empty cursor when `create`. A new source that overlaps an existing one of the same
        bucket (`s3://b` beside `s3://b/a/`) is refused: its keys would be two rows."""
        prefix = normalize_prefix(prefix)
        where = and_(sources.c.bucket == bucket, sources.c.prefix == prefix)
        with self._read() as conn:
            row = conn.execute(select(sources.c.id).where(where)).first()
        if row is not None:
            return SourceRef(row.id, bucket, prefix)
        uri = SourceRef(0, bucket, prefix).uri
        if not create:
            raise SourceNotFound(f"the state DB has no source {uri} (run `tracker sync`)")
        with self._write() as conn:
            for other in conn.execute(
                select(sources.c.prefix).where(
                    sources.c.bucket == bucket, sources.c.prefix != prefix
                )
            ).scalars():
                if prefixes_overlap(prefix, other):
                    raise UsageError(
                        f"{uri} overlaps the source {SourceRef(0, bucket, other).uri} of this "
                        "state DB; use that source (or a state DB of its own)"
                    )
            conn.execute(
                self._insert(sources)
                .values(bucket=bucket, prefix=prefix, created_at=utcnow())
                .on_conflict_do_nothing()
            )
            row = conn.execute(select(sources.c.id).where(where)).one()
            conn.execute(
                self._insert(listing_cursors)
                .values(source_id=row.id, updated_at=utcnow())
                .on_conflict_do_nothing()
            )
        return SourceRef(row.id, bucket, prefix)

    def sources(self) -> list[SourceRef]:
        with self._read() as conn:
            rows = conn.execute(
                select(sources.c.id, sources.c.bucket, sources.c.prefix).order_by(sources.c.id)
            )
            return [SourceRef(r.id, r.bucket, r.prefix) for r in rows]

    def dataset(self, source: SourceRef, name: str, *, create: bool = False) -> DatasetRef:
        """The dataset `name` of `source`; created (at frontier 0: every key pending) when
        `create`. Creating one costs one row, however many keys the source has."""
        if not name:
            raise UsageError("the dataset name must not be empty")
        if len(name) > 255 or "\x00" in name:
            raise UsageError("a dataset name has at most 255 characters and no NUL")
        where = and_(datasets.c.source_id == source.id, datasets.c.name == name)
        with self._read() as conn:
            found = conn.execute(select(datasets.c.id).where(where)).scalar()
        if found is None:
            if not create:
                raise DatasetNotFound(f"{source.uri} has no dataset {name!r}")
            with self._write() as conn:
                conn.execute(
                    self._insert(datasets)
                    .values(source_id=source.id, name=name, created_at=utcnow())
                    .on_conflict_do_nothing()
                )
                found = conn.execute(select(datasets.c.id).where(where)).scalar_one()
        return DatasetRef(found, name, source)

    def datasets(self, source: SourceRef) -> list[DatasetRef]:
        with self._read() as conn:
            rows = conn.execute(
                select(datasets.c.id, datasets.c.name)
                .where(datasets.c.source_id == source.id)
                .order_by(datasets.c.id)
            )
            return [DatasetRef(r.id, r.name, source) for r in rows]

    def object_count(self, source: SourceRef) -> int:
        """Keys listed in the source (every dataset's total), from its counters."""
        with self._read() as conn:
            return self._source_tally(conn, source).listed

    def cursor(self, source: SourceRef) -> Cursor:
        with self._read() as conn:
            return self._cursor(conn, source)

    def _cursor(self, conn: Connection, source: SourceRef, *, lock: bool = False) -> Cursor:
        query = select(listing_cursors).where(listing_cursors.c.source_id == source.id)
        if lock and self._pg:
            query = query.with_for_update()
        row = conn.execute(query).one()
        return Cursor(
            continuation_token=row.continuation_token,
            last_key=row.last_key,
            pages_listed=row.pages_listed,
            keys_listed=row.keys_listed,
            exhausted_at=row.exhausted_at,
            updated_at=row.updated_at,
            generation=row.generation,
            pass_seq=row.pass_seq,
            last_event_at=row.last_event_at,
        )

    def record_page(
        self,
        source: SourceRef,
        page: Sequence[ListedObject],
        *,
        next_token: str | None,
        last_key: str | None,
        exhausted: bool,
        generation: int | None = None,
        page_token: str | None = None,
        seen: Sequence[ListedObject] | None = None,
    ) -> int:
        """Insert a listed page's keys and advance the cursor, in one transaction.

        `seen`: every object the page listed (default: `page`, the keys taken by the
        filter): known keys among them take the listed size and ETag, are live again if
        they were deleted, and are stamped as seen by the source's current pass
        (`begin_pass`).

        Re-recording a page is harmless: known keys keep their state. The cursor only moves
        forward (in S3's UTF-8 binary order): it is read under a row lock on PostgreSQL
        (SQLite serialises writers), so a slower concurrent lister, or a `--from-start`
        pass, never drags it back. A page read under an older `generation` (the listing was
        reset since) still records its keys but leaves the cursor alone. An empty page that
        S3 says is truncated moves the token on, so the next LIST asks for the page after
        it, if the cursor still holds `page_token`, the token that page was asked with (a
        token cannot be ordered: only the lister that stands there may move it). Returns
        the number of new keys.
        """
        now = utcnow()
        with self._write() as conn:
            current = self._cursor(conn, source, lock=True)
            inserted = self._insert_objects(conn, source, page, seen)
            values: dict[str, Any] = {
                "pages_listed": listing_cursors.c.pages_listed + 1,
                "keys_listed": listing_cursors.c.keys_listed + inserted,
                "updated_at": now,
            }
            if generation is None or generation == current.generation:
                values.update(
                    cursor_move(current, next_token, last_key, exhausted, now, page_token)
                )
            conn.execute(
                update(listing_cursors)
                .where(listing_cursors.c.source_id == source.id)
                .values(**values)
            )
            return inserted

    def reset_cursor(self, source: SourceRef) -> None:
        """Forget the listing position: the next sync starts from the first page. Listers
        that read the old position keep recording keys but no longer move the cursor."""
        with self._write() as conn:
            conn.execute(
                update(listing_cursors)
                .where(listing_cursors.c.source_id == source.id)
                .values(
                    continuation_token=None,
                    last_key=None,
                    exhausted_at=None,
                    generation=listing_cursors.c.generation + 1,
                    updated_at=utcnow(),
                )
            )

    # -- owners ---------------------------------------------------------------------------

    def register_owner(
        self, name: str, *, stale_after: timedelta, dead: tuple[str, int] | None = None
    ) -> OwnerRegistration:
        """Register this process as the live holder of the lease owner `name`.

        Refused (`OwnerInUse`) while another registration of the name has a heartbeat
        younger than `stale_after`, unless it is the one `dead` names (host, pid: a process
        the caller knows has died); a stale one (a crashed process) is taken over.
        """
        token = str(uuid.uuid4())
        values = {
            "name": name,
            "token": token,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": self._now,
            "heartbeat_at": self._now,
        }
        params = self._times(stale=-stale_after)
        with self._write() as conn:
            inserted = conn.execute(
                self._insert(owners)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(owners.c.name),
                params,
            ).first()
            if inserted is None:
                query = select(
                    owners.c.host,
                    owners.c.pid,
                    (owners.c.heartbeat_at > self._in("stale")).label("live"),
                ).where(owners.c.name == name)
                if self._pg:
                    query = query.with_for_update()
                row = conn.execute(query, params).one()
                if row.live and (row.host, row.pid) != dead:
                    raise OwnerInUse(
                        f"lease owner {name!r} is in use by a live process (pid {row.pid} on "
                        f"{row.host}); stop it, or give this one another owner",
                        host=row.host,
                        pid=row.pid,
                    )
                conn.execute(update(owners).where(owners.c.name == name).values(**values), params)
        return OwnerRegistration(name, token)

    def heartbeat(self, registration: OwnerRegistration) -> bool:
        """Mark the owner alive; False when its registration was taken over or removed."""
        with self._write() as conn:
            result = conn.execute(
                update(owners)
                .where(owners.c.name == registration.name, owners.c.token == registration.token)
                .values(heartbeat_at=self._now),
                self._times(),
            )
            return result.rowcount == 1

    def unregister_owner(self, registration: OwnerRegistration) -> None:
        with self._write() as conn:
            conn.execute(
                delete(owners).where(
                    owners.c.name == registration.name, owners.c.token == registration.token
                )
            )

    # -- leases ---------------------------------------------------------------------------

    @_again_after_deadlock
    def claim(
        self,
        dataset: DatasetRef,
        owner: str,
        limit: int,
        lease: timedelta,
        *,
        max_attempts: int | None = None,
        stale_after: timedelta | None = None,
    ) -> list[Lease]:
        """Lease up to `limit` keys to `owner`: expired leases first, then keys handed
        back, then new keys from the dataset's frontier in listing order. A dataset in a
        ranked order (`set_order`) takes every pending key by rank instead, after ranking
        the keys listed since its last claim.

        Before that, in the same transaction: leases of owners whose heartbeat is older
        than `stale_after` end now, and an expired key leased `max_attempts` times without
        an answer is set aside as failed, so that the stream always ends.
        """
        params = self._times(lease=lease, stale=-(stale_after or timedelta(0)))
        params.update(
            in_dataset=dataset.id,
            in_source=dataset.source.id,
            owner=owner,
            token=str(uuid.uuid4()),
            limit=limit,
        )
        with self._write() as conn:
            if stale_after is not None:
                conn.execute(self._expire_dead_owners, params)
            if max_attempts is not None:
                conn.execute(
                    self._fail_exhausted,
                    dict(params, max_attempts=max_attempts, reason=never_answered(max_attempts)),
                )
            rows = list(conn.execute(self._claim_expired, params).all())
            if len(rows) < limit:
                order = self._order_for_claim(conn, dataset)
                if order.ranked:
                    self._rank_new(conn, dataset, order)
                    rows += conn.execute(
                        self._claim_ranked, dict(params, limit=limit - len(rows))
                    ).all()
                    return self._leases(conn, rows, by_rank=True)
                rows += conn.execute(
                    self._claim_pending, dict(params, limit=limit - len(rows))
                ).all()
            if len(rows) < limit:
                rows += self._claim_new(conn, dataset, limit - len(rows), params)
            return self._leases(conn, rows)

    def _order_for_claim(
        self, conn: Connection, dataset: DatasetRef, *, lock: bool = False
    ) -> Order:
        """The dataset's serving order. In a ranked order (or with `lock`) its row is
        locked on PostgreSQL, so that claimers of one dataset rank new keys and move its
        frontier one at a time; listing-order claims keep taking handed-back keys side by
        side (SKIP LOCKED) and lock it only to walk the frontier (`_claim_new`)."""
        query = select(datasets.c.ranked_as).where(datasets.c.id == dataset.id)
        order = Order.from_label(conn.execute(query).scalar_one())
        if self._pg and (lock or order.ranked):
            order = Order.from_label(conn.execute(query.with_for_update()).scalar_one())
        return order

    # -- serving order --------------------------------------------------------------------

    def order(self, dataset: DatasetRef) -> Order:
        """The order the dataset's keys are served in (listing order until `set_order`)."""
        with self._read() as conn:
            label = conn.execute(
                select(datasets.c.ranked_as).where(datasets.c.id == dataset.id)
            ).scalar_one()
        return Order.from_label(label)

    def set_order(self, dataset: DatasetRef, order: Order) -> bool:
        """Serve the dataset's keys in `order` from the next claim on, for every process
        serving it. Returns whether the order changed.

        Changing to a ranked order ranks every pending row (once: a cost in the number of
        pending rows) and takes every key listed so far into `items` as a pending row with
        its rank, so that claims read the rank index only. Back to listing order, the ranks
        stay unused.
        """
        with self._write() as conn:
            current = self._order_for_claim(conn, dataset, lock=True)
            if current == order:
                return False
            conn.execute(
                update(datasets).where(datasets.c.id == dataset.id).values(ranked_as=order.label)
            )
            if order.ranked:
                pending = select(items.c.id).where(
                    items.c.dataset_id == dataset.id, items.c.state == ItemState.PENDING
                )
                self._rank_rows(conn, dataset, order, pending, after=0.0)
                self._rank_new(conn, dataset, order)
            return True

    def _rank_new(self, conn: Connection, dataset: DatasetRef, order: Order) -> None:
        """Rank what a ranked claim cannot take from the index yet: pending rows without a
        rank (put back by a requeue, or made by an answer) and the objects listed past the
        frontier, which get pending rows with their rank; the frontier moves past them.
        Both are index range reads that find nothing when nothing new was listed."""
        unranked = select(items.c.id).where(items.c.dataset_id == dataset.id, text(UNRANKED))
        # Asked first on its own, from `ix_items_unranked`: usually there is none, and the
        # ranking join's plan (sized for a whole dataset by `set_order`) costs more.
        if conn.execute(unranked.limit(1)).first() is not None:
            self._rank_rows(conn, dataset, order, unranked, after=self._last_rank(conn, dataset))
        self._hold_frontier(conn, dataset.source)
        frontier = conn.execute(
            select(datasets.c.frontier).where(datasets.c.id == dataset.id)
        ).scalar_one()
        new = [
            Unranked(r.id, r.key, r.priority)
            for r in conn.execute(
                select(objects.c.id, objects.c.key, key_priorities.c.priority)
                .select_from(objects)
                .outerjoin(key_priorities, self._priority_of_object)
                .where(objects.c.source_id == dataset.source.id, objects.c.id > frontier)
                .order_by(objects.c.id)
            )
        ]
        if not new:
            return
        given = ranks(
            order, new, prefix=dataset.source.prefix, after=self._last_rank(conn, dataset)
        )
        insert = self._insert(items)
        statement = insert.on_conflict_do_update(
            index_elements=["dataset_id", "object_id"],
            set_={"rank": insert.excluded.rank},
            # An object that already had a row (an answer imported ahead) keeps its state.
            where=items.c.state == ItemState.PENDING,
        )
        for chunk in batched(zip(new, given, strict=True), _CHUNK * 10):
            conn.execute(
                statement,
                [{"dataset_id": dataset.id, "object_id": r.object_id, "rank": g} for r, g in chunk],
            )
        conn.execute(
            update(datasets).where(datasets.c.id == dataset.id).values(frontier=new[-1].object_id)
        )

    def _rank_rows(
        self,
        conn: Connection,
        dataset: DatasetRef,
        order: Order,
        ids: Select[Any],
        *,
        after: float,
    ) -> None:
        """Give the dataset's rows selected by `ids` their rank in `order`, after `after`
        (`tracker.ordering.ranks`): 0 when every pending row is re-ranked, since the old
        ranks may be another order's (a priority's 1e300 would swallow small steps)."""
        rows = conn.execute(
            select(
                items.c.id,
                objects.c.id.label("object_id"),
                objects.c.key,
                key_priorities.c.priority,
            )
            .select_from(items)
            .join(objects, objects.c.id == items.c.object_id)
            .outerjoin(key_priorities, self._priority_of_object)
            .where(items.c.id.in_(ids.scalar_subquery()))
            .order_by(items.c.object_id)
        ).all()
        if not rows:
            return
        keyed = [Unranked(r.object_id, r.key, r.priority) for r in rows]
        given = ranks(order, keyed, prefix=dataset.source.prefix, after=after)
        for chunk in batched(zip(rows, given, strict=True), _CHUNK * 10):
            conn.execute(self._set_rank, [{"item_id": r.id, "new_rank": g} for r, g in chunk])

    @property
    def _priority_of_object(self) -> ColumnElement[bool]:
        return and_(
            key_priorities.c.source_id == objects.c.source_id,
            key_priorities.c.key == objects.c.key,
        )

    def _last_rank(self, conn: Connection, dataset: DatasetRef) -> float:
        """The highest rank among the dataset's pending rows (0 when none): the end of the
        index range a ranked claim reads."""
        last = conn.execute(
            select(func.max(items.c.rank)).where(
                items.c.dataset_id == dataset.id, items.c.state == ItemState.PENDING
            )
        ).scalar_one()
        return float(last or 0)

    @cached_property
    def _set_rank(self) -> Any:
        return (
            update(items)
            .where(items.c.id == bindparam("item_id"))
            .values(rank=bindparam("new_rank"))
        )

    def set_priorities(self, source: SourceRef, priorities: dict[str, float]) -> int:
        """Set keys' priorities (higher: sooner in priority order), in one transaction:
        for keys listed or not (a key listed later is ranked with its priority). Pending
        rows of datasets served in priority order are re-ranked at once. Returns how many
        of the keys are listed now."""
        values = [{"source_id": source.id, "key": k, "priority": p} for k, p in priorities.items()]
        insert = self._insert(key_priorities)
        upsert = insert.on_conflict_do_update(
            index_elements=["source_id", "key"], set_={"priority": insert.excluded.priority}
        )
        with self._write() as conn:
            for chunk in batched(values, _CHUNK):
                conn.execute(upsert, list(chunk))
            known = self._object_ids(conn, source, sorted(priorities))
            order = Order("priority")
            keyed = [Unranked(i, k, priorities[k]) for k, i in known.items()]
            given = ranks(order, keyed, prefix=source.prefix, after=0)
            ranked = select(datasets.c.id).where(
                datasets.c.source_id == source.id, datasets.c.ranked_as == order.label
            )
            rerank = (
                update(items)
                .where(
                    items.c.dataset_id.in_(ranked.scalar_subquery()),
                    items.c.state == ItemState.PENDING,
                    items.c.object_id == bindparam("oid"),
                )
                .values(rank=bindparam("new_rank"))
            )
            for chunk in batched(zip(keyed, given, strict=True), _CHUNK):
                conn.execute(rerank, [{"oid": r.object_id, "new_rank": g} for r, g in chunk])
        return len(known)

    def _claim_new(
        self, conn: Connection, dataset: DatasetRef, limit: int, params: dict[str, Any]
    ) -> list[Any]:
        """Lease keys past the dataset's frontier: read the next object ids in listing order
        from `ix_objects_order`, insert their items rows already leased, move the frontier.

        On PostgreSQL the dataset row is locked meanwhile, so concurrent claimers take
        successive ranges. Objects past the frontier that already have a row (an answer
        imported ahead) are skipped by the insert and passed by the frontier.
        """
        frontier_query = select(datasets.c.frontier).where(datasets.c.id == dataset.id)
        if self._pg:
            frontier_query = frontier_query.with_for_update()
        frontier = conn.execute(frontier_query).scalar_one()
        self._hold_frontier(conn, dataset.source)
        claimed: list[Any] = []
        # Windows of ids, not "the next N past the frontier": on a PostgreSQL table never
        # analyzed, `id > frontier ORDER BY id LIMIT n` (and an anti-join against items)
        # was planned as a read and sort of every object past the frontier, per claim. A
        # window bounds what any plan reads; `max(id)` is an index probe on both databases.
        last = conn.execute(
            select(func.max(objects.c.id)).where(objects.c.source_id == dataset.source.id)
        ).scalar_one()
        start, span = frontier, limit
        while len(claimed) < limit and last is not None and start < last:
            want = limit - len(claimed)
            # Only the objects the dataset has no row for, at most `want` of them: a window
            # past thousands of answers imported ahead holds nothing in memory.
            rows = conn.execute(self._past_frontier(dataset, start, span, want)).all()
            live = [r.id for r in rows if not r.gone]
            gone = [r.id for r in rows if r.gone]
            if len(rows) == want:
                moved = start = rows[-1].id
            else:
                # The window held fewer keys to take than wanted (other sources' ids, rows
                # made by answers imported ahead): all of it is passed, and further windows
                # grow. The frontier only ever moves to an object seen (an id past the last
                # object may still be given to an object listed later).
                moved = conn.execute(
                    select(func.max(objects.c.id)).where(
                        objects.c.source_id == dataset.source.id,
                        objects.c.id > start,
                        objects.c.id <= start + span,
                    )
                ).scalar_one()
                moved = frontier if moved is None else moved
                start += span
                span = min(span * 8, 100 * _CHUNK)
            if live:
                claimed += self._insert_leased(conn, live, params)
            if gone:
                # Deleted keys the frontier passes get a pending row, never leased: should
                # the object come back, the key is pending again like any handed-back one.
                conn.execute(
                    self._insert(items).on_conflict_do_nothing(
                        index_elements=["dataset_id", "object_id"]
                    ),
                    [{"dataset_id": dataset.id, "object_id": i} for i in gone],
                )
            if moved != frontier:
                frontier = moved
                conn.execute(
                    update(datasets).where(datasets.c.id == dataset.id).values(frontier=frontier)
                )
        return claimed

    def _past_frontier(
        self, dataset: DatasetRef, frontier: int, span: int, limit: int
    ) -> Select[Any]:
        """The first `limit` objects of the source with ids in (frontier, frontier + span]
        that the dataset has no row for, in listing order, each with whether it is deleted."""
        window = (
            select(objects.c.id, objects.c.deleted_at)
            .where(
                objects.c.source_id == dataset.source.id,
                objects.c.id > frontier,
                objects.c.id <= frontier + span,
            )
            .subquery()
        )
        gone = window.c.deleted_at.is_not(None).label("gone")
        if not self._pg:
            has_row = (
                select(items.c.id)
                .where(items.c.dataset_id == dataset.id, items.c.object_id == window.c.id)
                .exists()
            )
            return select(window.c.id, gone).where(~has_row).order_by(window.c.id).limit(limit)
        # A LATERAL lookup per object in the unique (dataset_id, object_id) index: an
        # EXISTS became a hashed subplan that read every row of the dataset.
        row = (
            select(items.c.id)
            .where(items.c.dataset_id == dataset.id, items.c.object_id == window.c.id)
            .limit(1)
            .lateral()
        )
        return (
            select(window.c.id, gone)
            .select_from(window.outerjoin(row, true()))
            .where(row.c.id.is_(None))
            .order_by(window.c.id)
            .limit(limit)
        )

    def _insert_leased(self, conn: Connection, ids: list[int], params: dict[str, Any]) -> list[Any]:
        """Items rows for new keys, already leased: one multi-row INSERT ... RETURNING."""
        row = {
            "dataset_id": params["in_dataset"],
            "state": ItemState.SERVED,
            "lease_owner": params["owner"],
            "lease_token": params["token"],
            "lease_expires_at": self._in("lease"),
            "served_at": self._now,
            "attempts": 1,
            "serves": 1,
        }
        statement = (
            self._insert(items)
            .values([dict(row, object_id=i) for i in ids])
            .on_conflict_do_nothing(index_elements=["dataset_id", "object_id"])
            .returning(*self._lease_columns)
        )
        return list(conn.execute(statement, params).all())

    @property
    def _lease_columns(self) -> tuple[Any, ...]:
        return (
            items.c.id,
            items.c.object_id,
            items.c.lease_token,
            items.c.lease_expires_at,
            items.c.serves,
            items.c.rank,
        )

    def _leases(
        self, conn: Connection, rows: Sequence[Any], *, by_rank: bool = False
    ) -> list[Lease]:
        """Leases for claimed rows, with their keys, in listing order (or rank order)."""
        facts: dict[int, Any] = {}
        for chunk in batched(sorted({r.object_id for r in rows}), _CHUNK):
            for o in conn.execute(
                select(objects.c.id, objects.c.key, objects.c.size, objects.c.etag).where(
                    objects.c.id.in_(chunk)
                )
            ):
                facts[o.id] = o

        # RETURNING promises no order. A rank is never NULL for a pending row of a ranked
        # dataset, but an expired lease taken first may predate the order: it goes first.
        def position(r: Any) -> tuple[float, int]:
            if not by_rank:
                return (0.0, r.object_id)
            return (float("-inf") if r.rank is None else r.rank, r.object_id)

        ordered = sorted(rows, key=position)
        return [
            Lease(
                facts[r.object_id].key,
                facts[r.object_id].size,
                facts[r.object_id].etag,
                r.lease_token,
                r.lease_expires_at,
                item_id=r.id,
                serves=r.serves,
            )
            for r in ordered
        ]

    def reclaim(self, dataset: DatasetRef, owner: str, lease: timedelta) -> list[Lease]:
        """Renew every lease `owner` still holds: a restarted recipe gets its own keys back
        at once instead of waiting for the leases to run out."""
        params = self._times(lease=lease)
        params.update(owner=owner, token=str(uuid.uuid4()))
        with self._write() as conn:
            ids = list(
                conn.execute(
                    select(items.c.id)
                    .where(
                        items.c.dataset_id == dataset.id,
                        items.c.state == ItemState.SERVED,
                        items.c.lease_owner == owner,
                        ~_object_deleted(items.c.object_id),
                    )
                    .order_by(items.c.object_id)
                ).scalars()
            )
            rows: list[Any] = []
            for chunk in batched(ids, _CHUNK):
                rows += conn.execute(self._lease_ids, dict(params, ids=list(chunk))).all()
            return self._leases(conn, rows)

    def confirm(self, lease: Lease, duration: timedelta) -> Lease | None:
        """Check, at the moment a task is handed over, that its lease is still ours and
        live, and restart it from now. None when it expired or another claim took it: the
        task must not be shown."""
        params = self._times(lease=duration)
        params.update(item_id=lease.item_id, token=lease.token)
        with self._write() as conn:
            row = conn.execute(self._confirm, params).first()
        if row is None:
            return None
        return Lease(
            lease.key,
            lease.size,
            lease.etag,
            lease.token,
            row.lease_expires_at,
            item_id=lease.item_id,
            serves=lease.serves,
        )

    @cached_property
    def _confirm(self) -> Any:
        return (
            update(items)
            .where(
                items.c.id == bindparam("item_id"),
                items.c.state == ItemState.SERVED,
                items.c.lease_token == bindparam("token"),
                items.c.lease_expires_at > self._now,
                ~_object_deleted(items.c.object_id),
            )
            .values(lease_expires_at=self._in("lease"), served_at=self._now)
            .returning(items.c.lease_expires_at)
        )

    # Claim statements are built once: building and cache-keying a statement costs more
    # than running it on SQLite, and a claim sits on every batch an annotator receives.

    @cached_property
    def _claim_expired(self) -> Any:
        candidates = (
            select(items.c.id)
            .where(
                items.c.dataset_id == bindparam("in_dataset"),
                items.c.state == ItemState.SERVED,
                items.c.lease_expires_at <= self._now,
                ~_object_deleted(items.c.object_id),
            )
            .order_by(items.c.lease_expires_at, items.c.id)
            .limit(bindparam("limit"))
        )
        return self._lease_where(candidates)

    @cached_property
    def _claim_pending(self) -> Any:
        """Handed-back keys in listing order (`ix_items_queue`)."""
        return self._claim_pending_by(items.c.object_id)

    @cached_property
    def _claim_ranked(self) -> Any:
        """Pending keys of a ranked dataset by rank (`ix_items_rank`)."""
        return self._claim_pending_by(items.c.rank, items.c.object_id)

    def _claim_pending_by(self, *order: Any) -> Any:
        candidates = (
            select(items.c.id)
            .where(
                items.c.dataset_id == bindparam("in_dataset"),
                items.c.state == ItemState.PENDING,
                ~_object_deleted(items.c.object_id),
            )
            .order_by(*order)
            .limit(bindparam("limit"))
        )
        return self._lease_where(candidates)

    @cached_property
    def _lease_ids(self) -> Any:
        return self._lease_update(items.c.id.in_(bindparam("ids", expanding=True)))

    def _lease_where(self, candidates: Select[Any]) -> Any:
        if self._pg:
            candidates = candidates.with_for_update(skip_locked=True)
        return self._lease_update(items.c.id.in_(candidates.scalar_subquery()))

    def _lease_update(self, condition: Any) -> Any:
        return (
            update(items)
            .where(condition)
            .values(
                state=ItemState.SERVED,
                lease_owner=bindparam("owner"),
                lease_token=bindparam("token"),
                lease_expires_at=self._in("lease"),
                served_at=self._now,
                updated_at=self._now,
                attempts=items.c.attempts + 1,
                serves=items.c.serves + 1,
            )
            .returning(*self._lease_columns)
        )

    @cached_property
    def _fail_exhausted(self) -> Any:
        return (
            update(items)
            .where(
                items.c.dataset_id == bindparam("in_dataset"),
                items.c.state == ItemState.SERVED,
                items.c.lease_expires_at <= self._now,
                items.c.attempts >= bindparam("max_attempts"),
            )
            .values(
                state=ItemState.FAILED,
                failure_reason=bindparam("reason"),
                updated_at=self._now,
                **_LEASE_CLEARED,
            )
        )

    @cached_property
    def _expire_dead_owners(self) -> Any:
        """End now the live leases of owners whose heartbeat is older than `stale`."""
        dead = select(owners.c.name).where(owners.c.heartbeat_at <= self._in("stale"))
        return (
            update(items)
            .where(
                items.c.state == ItemState.SERVED,
                items.c.lease_owner.in_(dead.scalar_subquery()),
                items.c.lease_expires_at > self._now,
            )
            .values(lease_expires_at=self._now)
        )

    def release(
        self,
        dataset: DatasetRef,
        owner: str,
        leases: Iterable[Lease] | None = None,
    ) -> int:
        """Hand `owner`'s unanswered keys back to `pending`: all of them, or the `leases`
        given, each only while its token still holds it (a key another claim has taken
        since is left alone). A handed-back key's attempt is not counted."""
        conditions = [
            items.c.dataset_id == dataset.id,
            items.c.state == ItemState.SERVED,
            items.c.lease_owner == owner,
        ]
        values = {
            "state": ItemState.PENDING,
            "updated_at": utcnow(),
            "attempts": func.max(items.c.attempts - 1, 0)
            if not self._pg
            else func.greatest(items.c.attempts - 1, 0),
            **_LEASE_CLEARED,
        }
        with self._write() as conn:
            if leases is None:
                return conn.execute(update(items).where(*conditions).values(**values)).rowcount
            by_token: dict[str, list[int]] = {}
            for held in leases:
                by_token.setdefault(held.token, []).append(held.item_id)
            released = 0
            for token, ids in by_token.items():
                for chunk in batched(ids, _CHUNK):
                    statement = update(items).where(
                        *conditions, items.c.lease_token == token, items.c.id.in_(chunk)
                    )
                    released += conn.execute(statement.values(**values)).rowcount
            return released

    # -- answers and failures -------------------------------------------------------------

    @_again_after_deadlock
    def record_answers(
        self,
        dataset: DatasetRef,
        answers: Sequence[AnswerRecord],
        *,
        served_only: bool = False,
    ) -> int:
        """Record answers; returns how many keys became annotated.

        Never drops an answer for a key this dataset was served: one whose lease expired,
        or that was re-served to someone else, still annotates it. With `served_only` (the
        recipe's `update`, whose endpoint anyone who reaches Prodigy can post to) an answer
        for a key this dataset never served is not recorded; `import-answers` records any
        key of the source, inserting keys never listed. Concurrent writers of one key are
        serialised: the first answer wins and the others are counted. Run again when
        PostgreSQL rolls it back to break a deadlock (`_again_after_deadlock`): nothing of
        the rolled back run was kept, so each answer still counts once.
        """
        if not answers:
            return 0
        with self._write() as conn:
            return self._record_answers(conn, dataset, answers, served_only=served_only)

    @_again_after_deadlock
    def import_answers(
        self,
        dataset: DatasetRef,
        answers: Sequence[AnswerRecord],
        *,
        requeue_missing: bool = False,
    ) -> tuple[int, int]:
        """Record answers read from `prodigy db-out` and, with `requeue_missing`, put keys
        annotated here but absent from `answers` back to `pending`: all in ONE transaction.

        Imported answers keep their `answered_at` and stay out of "annotated in the last
        hour". Returns (keys newly annotated, keys requeued).
        """
        with self._write() as conn:
            annotated = (
                self._record_answers(conn, dataset, answers, imported=True) if answers else 0
            )
            if not requeue_missing:
                return annotated, 0
            named = {a.key for a in answers}
            missing = [
                r.id
                for r in conn.execute(
                    select(items.c.id, objects.c.key)
                    .join(objects, objects.c.id == items.c.object_id)
                    .where(items.c.dataset_id == dataset.id, items.c.state == ItemState.ANNOTATED)
                )
                if r.key not in named
            ]
            values = _back_to_pending(utcnow())
            for chunk in batched(missing, _CHUNK):
                conn.execute(update(items).where(items.c.id.in_(chunk)).values(**values))
            return annotated, len(missing)

    def _record_answers(
        self,
        conn: Connection,
        dataset: DatasetRef,
        answers: Sequence[AnswerRecord],
        *,
        served_only: bool = False,
        imported: bool = False,
    ) -> int:
        now = utcnow()
        keys = sorted({a.key for a in answers})  # one lock order for every writer
        object_ids = self._object_ids(conn, dataset.source, keys)
        if not served_only:
            missing = [k for k in keys if k not in object_ids]
            if missing:
                # Never-listed keys go in as a listed page would, so that a concurrent
                # writer of the same key waits instead of failing on the unique constraint.
                self._inserting_objects(conn, dataset.source)
                conn.execute(
                    self._insert(objects).on_conflict_do_nothing(
                        index_elements=["source_id", "key"]
                    ),
                    [{"source_id": dataset.source.id, "key": key} for key in missing],
                )
                # Every one of them: no other writer runs beside this one on SQLite (the
                # only backend where this counts, see `_count_new_objects`).
                self._count_new_objects(conn, dataset.source, len(missing))
                object_ids.update(self._object_ids(conn, dataset.source, missing))
            # Keys this dataset has no row for yet get one (pending), then are answered.
            conn.execute(
                self._insert(items).on_conflict_do_nothing(
                    index_elements=["dataset_id", "object_id"]
                ),
                [{"dataset_id": dataset.id, "object_id": object_ids[k]} for k in keys],
            )
        existing = self._lock_answered(conn, dataset, object_ids)
        if served_only:
            existing = {k: row for k, row in existing.items() if row.serves > 0}
            answers = [a for a in answers if a.key in existing]
        plan = plan_answers(answers, {k: row.existing for k, row in existing.items()})
        if plan.first:
            conn.execute(
                self._annotate,
                [
                    {
                        "item_id": i,
                        "new_answer": r.answer,
                        "new_session": r.session_id,
                        "answered": r.answered_at or now,
                        "imported": imported,
                        "now": now,
                    }
                    for i, r in plan.first.items()
                ],
            )
        if plan.extra:
            conn.execute(
                self._count_answer,
                [
                    {
                        "item_id": i,
                        "more": n,
                        "later": later_answers_text(plan.later[i]),
                        "now": now,
                    }
                    for i, n in plan.extra.items()
                ],
            )
        return len(plan.first)

    def _object_ids(
        self, conn: Connection, source: SourceRef, keys: Sequence[str]
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in batched(keys, _CHUNK):
            if self._pg:
                # `key IN (...)`'s plan depends on statistics: on a table never analyzed
                # (autovacuum off or behind, right after a big sync) it scanned the whole
                # source, 612 ms per 500 keys at 2M keys, against 1 ms by index.
                wanted = _array(list(chunk), Text())
                query = _one_per_value(objects, "source_id", source.id, "key", wanted)
            else:
                query = select(objects).where(
                    objects.c.source_id == source.id, objects.c.key.in_(chunk)
                )
            for r in conn.execute(query):
                found[r.key] = r.id
        return found

    def _lock_answered(
        self, conn: Connection, dataset: DatasetRef, object_ids: dict[str, int]
    ) -> dict[str, _Answered]:
        """The dataset's rows for these keys, locked on PostgreSQL until the transaction
        ends, so that two writers answering one key at once are serialised: the first
        answer wins, the second is counted (SQLite's BEGIN IMMEDIATE serialises writers)."""
        key_of = {i: k for k, i in object_ids.items()}
        found: dict[str, _Answered] = {}
        for chunk in batched(sorted(key_of), _CHUNK):
            rows = conn.execute(self._answered_rows, {"in_dataset": dataset.id, "ids": chunk})
            for r in rows:
                found[key_of[r.object_id]] = _Answered(
                    ExistingAnswer(
                        r.id, r.state, r.answer, r.session_id, later_answers_of(r.later_answers)
                    ),
                    r.serves,
                )
        return found

    @cached_property
    def _answered_rows(self) -> Any:
        if self._pg:
            # One lookup per object in the unique (dataset_id, object_id) index whatever
            # the statistics (see `_object_ids`), each row locked as it is found: every
            # writer locks in the same order, that of the sorted object ids.
            ids = bindparam("ids", type_=postgresql.ARRAY(BigInteger()))
            found = _one_per_value(
                items, "dataset_id", bindparam("in_dataset"), "object_id", ids, lock=True
            )
            return found.order_by(found.selected_columns.id)
        return (
            select(items)
            .where(
                items.c.dataset_id == bindparam("in_dataset"),
                items.c.object_id.in_(bindparam("ids", expanding=True)),
            )
            .order_by(items.c.id)
        )

    @cached_property
    def _annotate(self) -> Any:
        return update(items).where(items.c.id == bindparam("item_id")).values(**_FIRST_ANSWER)

    @cached_property
    def _count_answer(self) -> Any:
        return (
            update(items)
            .where(items.c.id == bindparam("item_id"))
            .values(
                answer_count=items.c.answer_count + bindparam("more"),
                later_answers=bindparam("later"),
                updated_at=bindparam("now", type_=UTCDateTime()),
            )
        )

    def open_work(self, dataset: DatasetRef, owner: str | None = None) -> OpenWork:
        """What is left to annotate: pending and served counts (and how many of the served
        keys `owner` holds), and the next lease expiry.

        The stream asks this when it has nothing to claim, to tell "wait for other owners'
        leases" from "done". Counters and index range reads, whatever the size of the source.
        """
        # Deleted keys are not work: never served again, so never waited for.
        in_dataset = and_(items.c.dataset_id == dataset.id, ~_object_deleted(items.c.object_id))
        with self._read() as conn:
            tallies = self._tallies(conn, dataset)
            pending, served = counter_pending(*tallies), tallies[1].live_served
            next_expiry, now = conn.execute(
                select(
                    select(func.min(items.c.lease_expires_at))
                    .where(in_dataset, items.c.state == ItemState.SERVED)
                    .scalar_subquery(),
                    self._now,
                ),
                self._times(),
            ).one()
            mine = 0
            if owner is not None:
                mine = conn.execute(
                    select(func.count()).where(
                        in_dataset, items.c.state == ItemState.SERVED, items.c.lease_owner == owner
                    )
                ).scalar_one()
        if next_expiry is not None and next_expiry.tzinfo is None:
            next_expiry = next_expiry.replace(tzinfo=UTC)
        return OpenWork(
            pending=pending,
            served=served,
            next_expiry=next_expiry,
            served_by_owner=mine,
            next_expiry_in=None if next_expiry is None else (next_expiry - now).total_seconds(),
        )

    def _pending(self, conn: Connection, dataset: DatasetRef) -> int:
        """Keys pending for the dataset: its pending rows, plus the objects past its
        frontier that have no row yet (rows past the frontier are counted by state).
        Deleted keys are not pending: they are never served."""
        frontier = conn.execute(
            select(datasets.c.frontier).where(datasets.c.id == dataset.id)
        ).scalar_one()
        live = ~_object_deleted(items.c.object_id)
        rows = conn.execute(
            select(func.count()).where(
                items.c.dataset_id == dataset.id, items.c.state == ItemState.PENDING, live
            )
        ).scalar_one()
        past = and_(objects.c.source_id == dataset.source.id, objects.c.id > frontier)
        beyond = conn.execute(select(func.count()).where(past)).scalar_one()
        # From the small partial index of deleted objects.
        gone_beyond = conn.execute(
            select(func.count()).where(past, objects.c.deleted_at.is_not(None))
        ).scalar_one()
        rows_beyond = conn.execute(
            select(func.count()).where(
                items.c.dataset_id == dataset.id, items.c.object_id > frontier, live
            )
        ).scalar_one()
        return int(rows + beyond - gone_beyond - rows_beyond)

    def mark_failed(self, dataset: DatasetRef, key: str, reason: str) -> bool:
        """Set aside a key that cannot be served; an annotated key keeps its answer."""
        with self._write() as conn:
            object_id = self._object_ids(conn, dataset.source, [key]).get(key)
            if object_id is None:
                return False
            conn.execute(
                self._insert(items)
                .values(dataset_id=dataset.id, object_id=object_id)
                .on_conflict_do_nothing(index_elements=["dataset_id", "object_id"])
            )
            result = conn.execute(
                update(items)
                .where(
                    items.c.dataset_id == dataset.id,
                    items.c.object_id == object_id,
                    items.c.state != ItemState.ANNOTATED,
                )
                .values(
                    state=ItemState.FAILED,
                    failure_reason=reason,
                    updated_at=utcnow(),
                    **_LEASE_CLEARED,
                )
            )
            return result.rowcount > 0

    # -- operator tools -------------------------------------------------------------------

    def iter_items(self, dataset: DatasetRef, where: ItemFilter | None = None) -> Iterator[ItemRow]:
        """Stream matching keys of the dataset in listing order, in constant memory.

        Walks the source's objects by id (keyset pagination, short read transactions, so
        a slow consumer never holds a snapshot or a lock open), each with the dataset's row
        if it has one: a key without one is pending. A key list is looked up through the
        unique index instead, a chunk at a time.
        """
        where = where or ItemFilter()
        state = func.coalesce(items.c.state, literal(ItemState.PENDING, items.c.state.type))
        base = (
            select(
                objects.c.id,
                objects.c.key,
                state.label("state"),
                items.c.answer,
                items.c.session_id,
                items.c.lease_owner,
                items.c.served_at,
                items.c.failure_reason,
                items.c.attempts,
                key_priorities.c.priority,
            )
            .select_from(objects)
            .outerjoin(
                items, and_(items.c.object_id == objects.c.id, items.c.dataset_id == dataset.id)
            )
            .outerjoin(key_priorities, self._priority_of_object)
            .where(
                objects.c.source_id == dataset.source.id,
                *_conditions(where, state, objects.c.id),
            )
        )
        rows: list[Any] = []
        if where.keys is not None:
            for chunk in batched(sorted(where.keys), _CHUNK):
                with self._read() as conn:
                    rows += conn.execute(base.where(objects.c.key.in_(chunk))).all()
            rows.sort(key=lambda r: r.id)
            yield from (_item_row(r) for r in rows if where.matches_key(r.key))
            return
        after = 0
        while True:
            query = base.where(objects.c.id > after).order_by(objects.c.id).limit(1000)
            with self._read() as conn:
                rows = list(conn.execute(query).all())
            if not rows:
                return
            yield from (_item_row(r) for r in rows if where.matches_key(r.key))
            after = rows[-1].id

    def to_pending(self, dataset: DatasetRef, where: ItemFilter) -> int:
        """Put matching keys back to `pending` (requeue, reset), in one transaction.

        Clears the lease, the recorded answer, the attempts and any failure: the key will
        be served and answered again. Every condition of `where` is part of the UPDATE, so
        a key that changed since a dry run (re-claimed by someone else) is left alone. The
        answers themselves stay in the Prodigy dataset.
        """
        values = _back_to_pending(utcnow())
        base = [
            items.c.dataset_id == dataset.id,
            items.c.state != ItemState.PENDING,
            *_conditions(where, items.c.state),
        ]
        moved = 0
        with self._write() as conn:
            if where.keys is None and where.match is None:
                return conn.execute(update(items).where(*base).values(**values)).rowcount
            candidates = select(items.c.id, objects.c.key).join(
                objects, objects.c.id == items.c.object_id
            )
            key_chunks: Iterable[tuple[str, ...] | None] = (
                [None] if where.keys is None else batched(sorted(where.keys), _CHUNK)
            )
            for keys in key_chunks:
                conditions = base if keys is None else [*base, objects.c.key.in_(keys)]
                ids = [
                    r.id
                    for r in conn.execute(candidates.where(*conditions))
                    if where.matches_key(r.key)
                ]
                for chunk in batched(ids, _CHUNK):
                    # The filter's conditions again: the UPDATE itself decides.
                    statement = update(items).where(*base, items.c.id.in_(chunk))
                    moved += conn.execute(statement.values(**values)).rowcount
        return moved

    def counts(self, dataset: DatasetRef) -> Counts:
        """Counts by state and answer, expired leases and the last hour's annotations.

        States and answers are the counters' sums (`tracker.counters`): a few rows whatever
        the number of keys. Expired leases and the last hour stay index range counts, small
        by nature. Imported answers are not "annotated in the last hour".
        """
        with self._read() as conn:
            counts = counts_of(*self._tallies(conn, dataset))
            self._recent(conn, dataset, counts)
        return counts

    def recount(self, dataset: DatasetRef) -> Counts:
        """`counts` from COUNT(*)s of the rows (index range counts that grow with the
        source): the oracle that `tracker db check` compares the counters with."""
        in_dataset = items.c.dataset_id == dataset.id
        # One index range count per state and per answer: on SQLite this is about twice as
        # fast as GROUP BY over the same covering index (no grouping of a million entries).
        states = [s for s in ItemState if s is not ItemState.PENDING]
        answers = list(Answer)
        with self._read() as conn:
            by_state = conn.execute(
                select(
                    *(
                        select(func.count()).where(in_dataset, items.c.state == s).scalar_subquery()
                        for s in states
                    )
                )
            ).one()
            counts = Counts(by_state={s: n for s, n in zip(states, by_state, strict=True) if n})
            pending = self._pending(conn, dataset)
            if pending:
                counts.by_state[ItemState.PENDING] = pending
            by_answer = conn.execute(
                select(
                    *(
                        select(func.count())
                        .where(in_dataset, items.c.answer == a)
                        .scalar_subquery()
                        for a in answers
                    )
                )
            ).one()
            counts.by_answer = {a: n for a, n in zip(answers, by_answer, strict=True) if n}
            self._recent(conn, dataset, counts)
        return counts

    def _recent(self, conn: Connection, dataset: DatasetRef, counts: Counts) -> None:
        """Fill in expired leases and the last hour's annotations: index range counts."""
        params = self._times(hour=-_LAST_HOUR)
        counts.expired_leases = conn.execute(
            select(func.count()).where(
                items.c.dataset_id == dataset.id,
                items.c.state == ItemState.SERVED,
                items.c.lease_expires_at <= self._now,
            ),
            params,
        ).scalar_one()
        counts.annotated_last_hour = conn.execute(
            select(func.count()).where(*self._in_last_hour(dataset)), params
        ).scalar_one()

    def _in_last_hour(self, dataset: DatasetRef) -> list[ColumnElement[bool]]:
        """The one "annotated in the last hour" rule (`status`, the annotators' table): an
        answer given since `_LAST_HOUR` ago by the DB's clock (bound as `hour`, see
        `_times`), not imported; `ix_items_answers` reads it by range."""
        return [
            items.c.dataset_id == dataset.id,
            items.c.answer.in_(list(Answer)),
            items.c.annotated_at >= self._in("hour"),
            items.c.imported.is_(False),
        ]

    def annotators(self, dataset: DatasetRef, *, timed: int = 1000) -> list[AnnotatorStats]:
        """Per Prodigy session that answered: answers by answer, answers in the last hour,
        the median time from hand-over to answer over its latest `timed` answers, its last
        answer time, and the keys leased now to the process its latest answer came through.

        Read from `ix_items_sessions` (answers by session, newest last), `ix_items_answers`
        (the last hour) and `ix_items_owner`: bounded by the answers, never by the keys.
        Imported answers count as answers, but are neither timed nor "in the last hour".
        """
        answered = [items.c.dataset_id == dataset.id, items.c.answer.is_not(None)]
        params = self._times(hour=-_LAST_HOUR)
        with self._read() as conn:
            # One pass over `ix_items_sessions` in its own order (session, then time): no
            # sort, one group per session, the answer split counted with FILTER.
            by_session: dict[str, dict[Answer, int]] = {}
            last_at: dict[str, datetime | None] = {}
            for r in conn.execute(
                select(
                    items.c.session_id,
                    func.max(items.c.annotated_at).label("last"),
                    *(func.count().filter(items.c.answer == a).label(a.value) for a in Answer),
                )
                .where(*answered, items.c.session_id.is_not(None))
                .group_by(items.c.session_id)
            ):
                by_session[r.session_id] = {a: getattr(r, a.value) for a in Answer}
                last_at[r.session_id] = r.last
            # The last hour's answers are few: read from `ix_items_answers` by time and
            # counted here (a GROUP BY would make SQLite walk every answer in session order).
            recent = Counter(
                conn.execute(
                    select(items.c.session_id).where(*self._in_last_hour(dataset)),
                    params,
                ).scalars()
            )
            found = []
            leased: dict[str, int] = {}
            for session in sorted(by_session):
                latest = conn.execute(
                    select(items.c.served_at, items.c.annotated_at, items.c.answered_via)
                    .where(*answered, items.c.session_id == session, items.c.imported.is_(False))
                    .order_by(items.c.annotated_at.desc())
                    .limit(timed)
                ).all()
                owner = latest[0].answered_via if latest else None
                if owner is not None and owner not in leased:  # sessions share processes
                    leased[owner] = conn.execute(
                        select(func.count()).where(
                            items.c.lease_owner == owner,
                            items.c.state == ItemState.SERVED,
                            items.c.dataset_id == dataset.id,
                        )
                    ).scalar_one()
                found.append(
                    AnnotatorStats(
                        session_id=session,
                        by_answer=by_session[session],
                        last_hour=int(recent.get(session, 0)),
                        median_seconds=_median_seconds(latest),
                        last_answer_at=last_at.get(session),
                        owner=owner,
                        leased=leased.get(owner, 0) if owner is not None else 0,
                    )
                )
        return found

    # == parallel listing (`tracker sync --parallel N`): shard plans and their cursors =====
    #
    # A source listed by N chains has a plan of shards (`listing_shards`), each with its own
    # cursor, moved in the same transaction as the shard's page of keys. The source's own
    # cursor is left alone until every shard is exhausted (`finish_shards`).

    def _insert_objects(
        self,
        conn: Connection,
        source: SourceRef,
        page: Sequence[ListedObject],
        seen: Sequence[ListedObject] | None = None,
    ) -> int:
        """Insert a page's keys, and bring the known keys of `seen` (default: `page`) up to
        date: listed size and ETag, live again, seen by the current pass. Rows already so
        are not written. Returns how many keys were new.

        The hot path of listing and of inventory ingestion, so the insert skips
        SQLAlchemy's per-row parameter processing: on PostgreSQL one INSERT ... SELECT from
        the page's columns as arrays (row by row costs ~4x more there), on SQLite multi-row
        VALUES. Both return the keys inserted, so that only the others are refreshed.
        created_at comes from the column's SQL default.
        """
        seen = page if seen is None else seen
        if not page and not seen:
            return 0
        pass_seq = conn.execute(
            select(listing_cursors.c.pass_seq).where(listing_cursors.c.source_id == source.id)
        ).scalar_one()
        new_keys: set[str] = set()
        if page:
            self._inserting_objects(conn, source)
            if not self.bulk_insert:
                new_keys = self._insert_rows(conn, source, page, pass_seq)
            elif self._pg:
                new_keys = _bulk_insert_objects(conn, source, page, pass_seq)
            else:
                new_keys = _sqlite_insert_objects(conn, source, page, pass_seq)
            self._count_new_objects(conn, source, len(new_keys))
            seen = [o for o in seen if o.key not in new_keys]
        if seen:
            conn.execute(
                self._refresh_seen,
                [
                    {
                        "in_source": source.id,
                        "seen_key": o.key,
                        "seen_size": o.size,
                        "seen_etag": o.etag,
                        "seen_modified": o.last_modified,
                        "seen_pass": pass_seq,
                    }
                    for o in seen
                ],
            )
        return len(new_keys)

    def _insert_rows(
        self, conn: Connection, source: SourceRef, page: Sequence[ListedObject], pass_seq: int
    ) -> set[str]:
        """The row-by-row insert through SQLAlchemy (`bulk_insert = False`: the benchmark's
        baseline); returns the keys inserted."""
        rows = [
            {
                "source_id": source.id,
                "key": o.key,
                "size": o.size,
                "etag": o.etag,
                "last_modified": o.last_modified,
                "seen_pass": pass_seq,
            }
            for o in page
        ]
        statement = self._insert(objects).on_conflict_do_nothing(
            index_elements=["source_id", "key"]
        )
        return set(conn.execute(statement.returning(objects.c.key), rows).scalars())

    @cached_property
    def _refresh_seen(self) -> Any:
        """A listed key's facts, live, seen by the pass: only when one of them differs."""
        size = bindparam("seen_size", type_=objects.c.size.type)
        etag = bindparam("seen_etag", type_=objects.c.etag.type)
        modified = bindparam("seen_modified", type_=CompactUTCDateTime())
        seen_pass = bindparam("seen_pass", type_=objects.c.seen_pass.type)
        return (
            update(objects)
            .where(
                objects.c.source_id == bindparam("in_source"),
                objects.c.key == bindparam("seen_key"),
                or_(
                    objects.c.seen_pass.is_distinct_from(seen_pass),
                    objects.c.deleted_at.is_not(None),
                    and_(etag.is_not(None), objects.c.etag.is_distinct_from(etag)),
                    and_(size.is_not(None), objects.c.size.is_distinct_from(size)),
                ),
            )
            .values(
                size=func.coalesce(size, objects.c.size),
                etag=func.coalesce(etag, objects.c.etag),
                last_modified=func.coalesce(modified, objects.c.last_modified),
                deleted_at=None,
                seen_pass=seen_pass,
            )
        )

    # -- bucket changes: complete passes, events, deleted and changed keys ------------------

    def begin_pass(self, source: SourceRef) -> int:
        """Start a complete listing pass of the source: a new pass id. Every key recorded
        from now on (by any page or event) is stamped with it or a later one."""
        with self._write() as conn:
            return int(
                conn.execute(
                    update(listing_cursors)
                    .where(listing_cursors.c.source_id == source.id)
                    .values(pass_seq=listing_cursors.c.pass_seq + 1)
                    .returning(listing_cursors.c.pass_seq)
                ).scalar_one()
            )

    def finish_pass(self, source: SourceRef, pass_id: int) -> int:
        """A complete pass `pass_id` has listed every key: mark deleted, in one set-based
        UPDATE, the live keys last seen before it began. Returns how many."""
        with self._write() as conn:
            return self._mark_unseen(conn, source, pass_id)

    def _mark_unseen(self, conn: Connection, source: SourceRef, pass_id: int) -> int:
        marked = int(
            conn.execute(
                update(objects)
                .where(
                    objects.c.source_id == source.id,
                    objects.c.deleted_at.is_(None),
                    or_(objects.c.seen_pass.is_(None), objects.c.seen_pass < pass_id),
                )
                .values(deleted_at=utcnow())
            ).rowcount
        )
        if marked:
            self._end_deleted_leases(conn, source)
        return marked

    def _end_deleted_leases(self, conn: Connection, source: SourceRef) -> None:
        """Served keys whose object is gone go back to pending (where, being deleted, they
        are not counted and never claimed): no dataset waits for them or counts them as
        out; should the object come back, they are pending like any other."""
        conn.execute(
            update(items)
            .where(
                items.c.dataset_id.in_(
                    select(datasets.c.id).where(datasets.c.source_id == source.id)
                ),
                items.c.state == ItemState.SERVED,
                _object_deleted(items.c.object_id),
            )
            .values(state=ItemState.PENDING, updated_at=utcnow(), **_LEASE_CLEARED)
        )

    @_again_after_deadlock
    def apply_events(
        self,
        source: SourceRef,
        events: Sequence[ObjectEvent],
        accepts: Callable[[str, int | None], bool],
        ask: Callable[[str], Current | None] | None = None,
    ) -> int:
        """Apply S3 events for this source's keys in one transaction; returns how many
        changed the state. A creation records the key (pending) or its new size and ETag,
        live again; a removal marks it deleted when it proves the key gone. An event older
        than the last one applied to its key is skipped, so a redelivered or reordered
        message changes nothing twice (`tracker.events.verdict` decides). When the event
        leaves open what is current (a version removed, an undelete, a removal of a key
        recorded by a listing), `ask(key)` says what S3 holds now (None: no live object),
        and that is recorded; without `ask`, such an event is skipped: a key is never
        marked deleted on a guess. `accepts(key, size)`: the listing filter; a key it
        refuses is not added (a known one is still updated)."""
        now = utcnow()
        applied = 0
        # One question per key, asked before the write transaction where the state read
        # now says so: S3's answer (milliseconds, or a timeout) holds no lock. A key whose
        # state changes meanwhile is asked inside it.
        answers: dict[str, Current | None] = {}
        if ask is not None:
            for key in self._keys_to_ask(source, events):
                answers[key] = ask(key)
        with self._write() as conn:
            pass_seq = self._cursor(conn, source, lock=True).pass_seq
            for event in in_order(events):
                query = select(
                    objects.c.id,
                    objects.c.event_sequencer,
                    objects.c.event_at,
                    objects.c.deleted_at,
                ).where(objects.c.source_id == source.id, objects.c.key == event.key)
                row = conn.execute(query.with_for_update() if self._pg else query).first()
                if row is None and not accepts(event.key, event.size):
                    continue
                stored = (
                    None
                    if row is None
                    else Stored(row.event_sequencer, row.event_at, row.deleted_at is not None)
                )
                decided = verdict(event, stored)
                if decided is Verdict.SKIP or (decided is Verdict.ASK and ask is None):
                    continue
                facts: dict[str, Any] = {
                    "event_sequencer": event.sequencer,
                    "event_at": event.time,
                    "seen_pass": pass_seq,
                }
                # What is live now: S3's answer, the created version, or nothing.
                current: Current | None = None
                if decided is Verdict.ASK:
                    assert ask is not None
                    if event.key not in answers:
                        answers[event.key] = ask(event.key)
                    current = answers[event.key]
                    if row is None and current is not None and not accepts(event.key, current.size):
                        continue  # e.g. a zero-byte object, which no listing takes either
                elif event.change is Change.CREATED:
                    current = Current(event.size, event.etag, event.version_id, event.time)
                if current is not None:
                    facts.update(
                        size=current.size,
                        etag=current.etag,
                        version_id=current.version_id,
                        last_modified=current.last_modified,
                        deleted_at=None,
                    )
                elif row is None or row.deleted_at is None:
                    facts["deleted_at"] = now
                inserted = 0
                if row is None:  # a listing may insert it meanwhile: then it is updated
                    self._inserting_objects(conn, source)
                    inserted = conn.execute(
                        self._insert(objects)
                        .values(source_id=source.id, key=event.key, **facts)
                        .on_conflict_do_nothing(index_elements=["source_id", "key"])
                    ).rowcount
                    gone = int(facts.get("deleted_at") is not None)
                    self._count_new_objects(conn, source, inserted, deleted=inserted * gone)
                if not inserted:
                    conn.execute(
                        update(objects)
                        .where(objects.c.source_id == source.id, objects.c.key == event.key)
                        .values(**facts)
                    )
                applied += 1
            if any(e.change is Change.REMOVED for e in events):
                self._end_deleted_leases(conn, source)
            conn.execute(
                update(listing_cursors)
                .where(listing_cursors.c.source_id == source.id)
                .values(last_event_at=now)
            )
        return applied

    def _keys_to_ask(self, source: SourceRef, events: Sequence[ObjectEvent]) -> list[str]:
        """Keys of `events` one of which needs S3 asked (`Verdict.ASK`) against the state
        recorded now."""
        keys = sorted({e.key for e in events})
        stored: dict[str, Stored] = {}
        with self._read() as conn:
            for chunk in batched(keys, _CHUNK):
                rows = conn.execute(
                    select(
                        objects.c.key,
                        objects.c.event_sequencer,
                        objects.c.event_at,
                        objects.c.deleted_at,
                    ).where(objects.c.source_id == source.id, objects.c.key.in_(chunk))
                )
                for r in rows:
                    stored[r.key] = Stored(r.event_sequencer, r.event_at, r.deleted_at is not None)
        return sorted({e.key for e in events if verdict(e, stored.get(e.key)) is Verdict.ASK})

    def bucket_changes(self, dataset: DatasetRef) -> BucketChanges:
        """Deleted keys of the dataset's source, and of them those it annotated; annotated
        keys whose object was overwritten since the answer. From the counters."""
        with self._read() as conn:
            return changes_of(*self._tallies(conn, dataset))

    def recount_bucket_changes(self, dataset: DatasetRef) -> BucketChanges:
        """`bucket_changes` from COUNT(*)s of the rows: the oracle of its counters."""
        live = objects.c.source_id == dataset.source.id
        with self._read() as conn:
            deleted = conn.execute(
                select(func.count()).where(live, objects.c.deleted_at.is_not(None))
            ).scalar_one()
            deleted_annotated = conn.execute(
                select(func.count()).where(
                    items.c.dataset_id == dataset.id,
                    items.c.state == ItemState.ANNOTATED,
                    _object_deleted(items.c.object_id),
                )
            ).scalar_one()
            changed = conn.execute(
                select(func.count()).where(
                    items.c.dataset_id == dataset.id, _object_changed(items.c.object_id)
                )
            ).scalar_one()
        return BucketChanges(int(deleted), int(deleted_annotated), int(changed))

    def deleted_count(self, source: SourceRef) -> int:
        """Keys of the source marked deleted, from its counters."""
        with self._read() as conn:
            return self._source_tally(conn, source).deleted

    # -- counters (`tracker.counters`): kept by triggers, recounted by `db check` --------

    def _count_new_objects(
        self, conn: Connection, source: SourceRef, listed: int, *, deleted: int = 0
    ) -> None:
        """Add objects this transaction inserted to the source's counters, on SQLite.

        Every other counter is kept by triggers; on SQLite a row-level trigger on INSERT
        INTO objects cost 10-25% of bulk recording (migration 0007), so each statement that
        inserts objects calls this instead. On PostgreSQL a statement-level trigger counts
        them (one grouped row per INSERT): nothing to do here.
        """
        if self._pg or not (listed or deleted):
            return
        conn.execute(
            update(source_counts)
            .where(source_counts.c.source_id == source.id)
            .values(
                listed=source_counts.c.listed + listed,
                deleted=source_counts.c.deleted + deleted,
            )
        )

    def _source_tally(self, conn: Connection, source: SourceRef) -> SourceTally:
        """The source's counters: the sum of its rows (one on SQLite; deltas not yet
        compacted on PostgreSQL, at most about a thousand)."""
        row = conn.execute(
            select(
                func.coalesce(func.sum(source_counts.c.listed), 0),
                func.coalesce(func.sum(source_counts.c.deleted), 0),
            ).where(source_counts.c.source_id == source.id)
        ).one()
        return SourceTally(int(row[0]), int(row[1]))

    def _tallies(self, conn: Connection, dataset: DatasetRef) -> tuple[SourceTally, DatasetTally]:
        """The dataset's counters and its source's."""
        row = conn.execute(
            select(
                *(func.coalesce(func.sum(dataset_counts.c[name]), 0) for name in ITEM_COUNTERS)
            ).where(dataset_counts.c.dataset_id == dataset.id)
        ).one()
        tally = DatasetTally(**{name: int(n) for name, n in zip(ITEM_COUNTERS, row, strict=True)})
        return self._source_tally(conn, dataset.source), tally

    def numbers(self, dataset: DatasetRef) -> Numbers:
        """Every number the counters stand for (`tracker db check`'s "kept" side)."""
        with self._read() as conn:
            return numbers_of(*self._tallies(conn, dataset))

    def recount_numbers(self, dataset: DatasetRef) -> Numbers:
        """The same numbers from COUNT(*)s of the rows: the oracle."""
        listed, _ = self.recount_source(dataset.source)
        in_dataset = and_(items.c.dataset_id == dataset.id, ~_object_deleted(items.c.object_id))
        with self._read() as conn:
            open_served = conn.execute(
                select(func.count()).where(in_dataset, items.c.state == ItemState.SERVED)
            ).scalar_one()
        return numbers(
            listed, self.recount(dataset), self.recount_bucket_changes(dataset), int(open_served)
        )

    def source_numbers(self, source: SourceRef) -> tuple[int, int]:
        """The source's counters: keys listed, keys deleted."""
        with self._read() as conn:
            tally = self._source_tally(conn, source)
        return tally.listed, tally.deleted

    def recount_source(self, source: SourceRef) -> tuple[int, int]:
        """Keys listed and deleted from COUNT(*)s of `objects`: the oracle."""
        in_source = objects.c.source_id == source.id
        with self._read() as conn:
            listed = conn.execute(select(func.count()).where(in_source)).scalar_one()
            deleted = conn.execute(
                select(func.count()).where(in_source, objects.c.deleted_at.is_not(None))
            ).scalar_one()
        return int(listed), int(deleted)

    def repair_counts(self) -> None:
        """Rewrite every counter from the rows, in one transaction.

        On PostgreSQL, `objects` and `items` are locked against writes meanwhile (SHARE
        mode: readers go on; writers in flight finish first), so that no delta lands
        between the recount and the rewrite. No compaction runs beside it either: the
        compactions run inside those writes' triggers, which wait for the lock.
        """
        state, deleted = items.c.state, objects.c.deleted_at
        live = deleted.is_(None)
        conditions = {
            "served": state == ItemState.SERVED,
            "annotated": state == ItemState.ANNOTATED,
            "failed": state == ItemState.FAILED,
            "live_served": and_(state == ItemState.SERVED, live),
            "live_annotated": and_(state == ItemState.ANNOTATED, live),
            "live_failed": and_(state == ItemState.FAILED, live),
            "accepted": items.c.answer == Answer.ACCEPT,
            "rejected": items.c.answer == Answer.REJECT,
            "ignored": items.c.answer == Answer.IGNORE,
            "changed": _answer_changed(objects.c.etag),
        }
        per_dataset = (
            select(
                datasets.c.id,
                *(
                    func.coalesce(func.sum(case((conditions[name], 1), else_=0)), 0)
                    for name in ITEM_COUNTERS
                ),
            )
            .select_from(datasets)
            .outerjoin(items, items.c.dataset_id == datasets.c.id)
            .outerjoin(objects, objects.c.id == items.c.object_id)
            .group_by(datasets.c.id)
        )
        per_source = select(
            sources.c.id,
            select(func.count()).where(objects.c.source_id == sources.c.id).scalar_subquery(),
            select(func.count())
            .where(objects.c.source_id == sources.c.id, deleted.is_not(None))
            .scalar_subquery(),
        )
        with self._write() as conn:
            if self._pg:
                conn.exec_driver_sql("LOCK TABLE objects, items IN SHARE MODE")
            conn.execute(delete(dataset_counts))
            conn.execute(delete(source_counts))
            conn.execute(
                dataset_counts.insert().from_select(["dataset_id", *ITEM_COUNTERS], per_dataset)
            )
            conn.execute(
                source_counts.insert().from_select(["source_id", "listed", "deleted"], per_source)
            )

    def table_health(self) -> list[TableHealth]:
        """PostgreSQL's statistics of the tracker's tables (`pg_stat_user_tables`): rows
        live and dead, rows changed since the last ANALYZE, and whether there was one.
        Empty on SQLite, which plans without statistics and has no dead tuples."""
        if not self._pg:
            return []
        names = sorted(t.name for t in TRACKED_TABLES)
        with self._read() as conn:
            rows = conn.execute(
                text(
                    "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze, "
                    "coalesce(last_analyze, last_autoanalyze) IS NOT NULL AS analyzed "
                    "FROM pg_stat_user_tables "
                    "WHERE schemaname = current_schema() AND relname = ANY(:names) "
                    "ORDER BY relname"
                ),
                {"names": names},
            ).all()
        return [
            TableHealth(
                r.relname,
                int(r.n_live_tup),
                int(r.n_dead_tup),
                int(r.n_mod_since_analyze),
                bool(r.analyzed),
            )
            for r in rows
        ]

    def analyze_tables(self, tables: Sequence[str]) -> None:
        """ANALYZE the named tracker tables (PostgreSQL), outside a transaction."""
        known = {t.name for t in TRACKED_TABLES}
        with translate_db_errors(self.engine.url), self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                if table not in known:
                    raise UsageError(f"{table} is not a tracker table")
                conn.exec_driver_sql(f"ANALYZE {table}")

    # -- S3 Inventory ingestion (`tracker sync --inventory`) ------------------------------
    #
    # One row per (source, manifest) holds the position (data file, rows recorded), moved
    # in the same transaction as each batch of keys; see `tracker.inventory`.

    def inventory(self, source: SourceRef, manifest: str | None = None) -> InventoryProgress | None:
        """The ingestion of `manifest` into the source; without one, the latest started."""
        query = select(inventory_ingests).where(inventory_ingests.c.source_id == source.id)
        if manifest is not None:
            query = query.where(inventory_ingests.c.manifest == manifest)
        query = query.order_by(inventory_ingests.c.started_at.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        return _inventory(row) if row is not None else None

    def start_inventory(
        self, source: SourceRef, manifest: str, *, snapshot_at: datetime | None, files: int
    ) -> InventoryProgress:
        """The ingestion of `manifest`: created at its first file, or as far as it got."""
        with self._write() as conn:
            conn.execute(
                self._insert(inventory_ingests)
                .values(
                    source_id=source.id,
                    manifest=manifest,
                    snapshot_at=snapshot_at,
                    files=files,
                    started_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["source_id", "manifest"])
            )
        progress = self.inventory(source, manifest)
        assert progress is not None
        return progress

    def record_inventory_batch(
        self,
        source: SourceRef,
        manifest: str,
        batch: Sequence[ListedObject],
        *,
        file_index: int,
        row_offset: int,
        max_key: str | None,
    ) -> int:
        """Insert a batch of an inventory's keys and move its position to (`file_index`,
        `row_offset`: rows of that file read so far), in one transaction. The position only
        moves forward, so a second process reading the same report cannot drag it back.
        Returns the number of new keys."""
        where = and_(
            inventory_ingests.c.source_id == source.id,
            inventory_ingests.c.manifest == manifest,
            or_(
                inventory_ingests.c.file_index < file_index,
                and_(
                    inventory_ingests.c.file_index == file_index,
                    inventory_ingests.c.row_offset < row_offset,
                ),
            ),
        )
        with self._write() as conn:
            inserted = self._insert_objects(conn, source, batch)
            values: dict[str, Any] = {
                "file_index": file_index,
                "row_offset": row_offset,
                "keys_recorded": inventory_ingests.c.keys_recorded + inserted,
            }
            if max_key is not None:
                values["max_key"] = max_key
            conn.execute(update(inventory_ingests).where(where).values(**values))
            if inserted:
                conn.execute(
                    update(listing_cursors)
                    .where(listing_cursors.c.source_id == source.id)
                    .values(keys_listed=listing_cursors.c.keys_listed + inserted)
                )
            return inserted

    def finish_inventory(self, source: SourceRef, manifest: str) -> None:
        """Mark the ingestion done; then statistics are refreshed. The listing cursor is
        left as it was: an inventory adds keys but proves no range of the source covered
        (its configuration may filter on a narrower prefix, which the manifest does not
        record), so moving the cursor past keys it cannot prove it held would hide them
        from every later listing. The next sync, or the recipe, still lists what the
        report may have missed, once (issue 20, item 1)."""
        now = utcnow()
        with self._write() as conn:
            row = conn.execute(
                select(inventory_ingests).where(
                    inventory_ingests.c.source_id == source.id,
                    inventory_ingests.c.manifest == manifest,
                )
            ).one()
            if row.finished_at is not None:
                return
            conn.execute(
                update(inventory_ingests)
                .where(
                    inventory_ingests.c.source_id == source.id,
                    inventory_ingests.c.manifest == manifest,
                )
                .values(finished_at=now, file_index=row.files, row_offset=0)
            )
        self.analyze()

    def analyze(self) -> None:
        """Refresh the planner's statistics after a bulk load (PostgreSQL): without them a
        key lookup over millions of fresh rows may scan the whole source (autovacuum, which
        would gather them, may be off or lag on a busy server). SQLite plans without."""
        if not self._pg:
            return
        with translate_db_errors(self.engine.url), self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE objects")

    def shards(self, source: SourceRef) -> list[ShardCursor]:
        """The source's current shard plan (empty when it was never listed in parallel)."""
        with self._read() as conn:
            rows = conn.execute(
                select(listing_shards)
                .where(listing_shards.c.source_id == source.id)
                .order_by(listing_shards.c.shard)
            ).all()
        return [_shard(r) for r in rows]

    def plan_shards(
        self,
        source: SourceRef,
        bounds: Sequence[tuple[str | None, str | None]],
        *,
        generation: int,
        pass_id: int | None = None,
    ) -> list[ShardCursor]:
        """Replace the source's shard plan with new shards `(start_after, end_key)`, none
        listed yet; the plan number grows, so pages of an older plan move no cursor."""
        now = utcnow()
        with self._write() as conn:
            previous = conn.execute(
                select(func.max(listing_shards.c.plan)).where(
                    listing_shards.c.source_id == source.id
                )
            ).scalar_one()
            plan = int(previous or 0) + 1
            conn.execute(delete(listing_shards).where(listing_shards.c.source_id == source.id))
            conn.execute(
                listing_shards.insert(),
                [
                    {
                        "source_id": source.id,
                        "shard": index,
                        "plan": plan,
                        "start_after": start_after,
                        "end_key": end_key,
                        "generation": generation,
                        "pass_id": pass_id,
                        "updated_at": now,
                    }
                    for index, (start_after, end_key) in enumerate(bounds)
                ],
            )
        return self.shards(source)

    def record_shard_page(
        self,
        source: SourceRef,
        shard: ShardCursor,
        page: Sequence[ListedObject],
        *,
        next_token: str | None,
        last_key: str | None,
        exhausted: bool,
        page_token: str | None = None,
        seen: Sequence[ListedObject] | None = None,
    ) -> int:
        """`record_page` for one shard: the page's keys and the shard's cursor after them,
        in one transaction. The cursor moves only forward (`cursor_move`), and only while
        the shard still belongs to `shard.plan` (a newer plan has replaced it otherwise:
        the keys are still recorded). Returns the number of new keys."""
        now = utcnow()
        where = and_(
            listing_shards.c.source_id == source.id,
            listing_shards.c.shard == shard.shard,
            listing_shards.c.plan == shard.plan,
        )
        with self._write() as conn:
            inserted = self._insert_objects(conn, source, page, seen)
            query = select(listing_shards).where(where)
            if self._pg:
                query = query.with_for_update()
            row = conn.execute(query).one_or_none()
            if row is None:
                return inserted
            current = _shard(row)
            as_cursor = Cursor(
                continuation_token=current.continuation_token,
                last_key=current.last_key,
                pages_listed=current.pages_listed,
                keys_listed=current.keys_listed,
                exhausted_at=current.exhausted_at,
                updated_at=None,
                generation=current.generation,
            )
            values: dict[str, Any] = {
                "pages_listed": listing_shards.c.pages_listed + 1,
                "keys_listed": listing_shards.c.keys_listed + inserted,
                "updated_at": now,
                **cursor_move(as_cursor, next_token, last_key, exhausted, now, page_token),
            }
            conn.execute(update(listing_shards).where(where).values(**values))
            return inserted

    def finish_shards(self, source: SourceRef, plan: int) -> bool:
        """Once every shard of `plan` is exhausted, move the source's cursor to the end of
        the listing (last key: the last key of all shards; no token; exhausted) and add the
        shards' page and key counts to it, once. Returns whether the plan is closed.

        The cursor only moves forward, and not at all when the listing was reset since
        the plan was made (its generation).

        A plan that is a complete pass (`pass_id`) marks, as it closes, the keys it did not
        see deleted (`finish_pass`), in the same transaction."""
        now = utcnow()
        with self._write() as conn:
            current = self._cursor(conn, source, lock=True)
            raw = conn.execute(
                select(listing_shards).where(
                    listing_shards.c.source_id == source.id, listing_shards.c.plan == plan
                )
            ).all()
            rows = [_shard(r) for r in raw]
            if not rows or not all(s.exhausted for s in rows):
                return False
            if rows[0].closed_at is not None:
                return True
            values: dict[str, Any] = {
                "pages_listed": listing_cursors.c.pages_listed + sum(s.pages_listed for s in rows),
                "keys_listed": listing_cursors.c.keys_listed + sum(s.keys_listed for s in rows),
                "updated_at": now,
            }
            last: str | None = None
            for s in rows:
                if _utf8_after(s.last_key, last):
                    last = s.last_key
            if rows[0].generation == current.generation:
                # The shards together are the pass's final page, ending at their last key.
                values.update(cursor_move(current, None, last, True, now, None))
            conn.execute(
                update(listing_cursors)
                .where(listing_cursors.c.source_id == source.id)
                .values(**values)
            )
            conn.execute(
                update(listing_shards)
                .where(listing_shards.c.source_id == source.id, listing_shards.c.plan == plan)
                .values(closed_at=now)
            )
            if raw[0].pass_id is not None:
                self._mark_unseen(conn, source, raw[0].pass_id)
            return True


@dataclass(frozen=True)
class _Answered:
    existing: ExistingAnswer
    serves: int


def _bulk_insert_objects(
    conn: Connection, source: SourceRef, page: Sequence[ListedObject], pass_seq: int
) -> set[str]:
    """PostgreSQL: a page's keys as four arrays unnested into one set-based insert, in the
    page's order (one round trip whatever the page's size). Times go as integer
    microseconds since the epoch: psycopg adapts an array of datetimes ~8x slower. Returns
    the keys inserted."""
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(
            "INSERT INTO objects (source_id, key, size, etag, last_modified, seen_pass) "
            "SELECT %s, k, s, e, timestamptz 'epoch' + m * interval '1 microsecond', %s "
            "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bigint[]) "
            "WITH ORDINALITY AS page(k, s, e, m, n) ORDER BY n "
            "ON CONFLICT (source_id, key) DO NOTHING RETURNING key",
            (
                source.id,
                pass_seq,
                [o.key for o in page],
                [o.size for o in page],
                [o.etag for o in page],
                [
                    None if o.last_modified is None else round(o.last_modified.timestamp() * 1e6)
                    for o in page
                ],
            ),
        )
        return {row[0] for row in cursor.fetchall()}


#: Rows per multi-row INSERT on SQLite: 6 parameters each, under SQLite's 32,766 (>= 3.32).
SQLITE_INSERT_ROWS = 5_000

#: "Now" as `CompactUTCDateTime` stores it on SQLite (to the second, as CURRENT_TIMESTAMP).
SQLITE_NOW_MICROS = "(CAST(strftime('%s', 'now') AS INTEGER) * 1000000)"


def _sqlite_insert_objects(
    conn: Connection, source: SourceRef, page: Sequence[ListedObject], pass_seq: int
) -> set[str]:
    """SQLite: a page's keys in multi-row INSERTs through the driver, in the page's order;
    returns the keys inserted (RETURNING skips those already known)."""
    inserted: set[str] = set()
    for start in range(0, len(page), SQLITE_INSERT_ROWS):
        chunk = page[start : start + SQLITE_INSERT_ROWS]
        values = ", ".join([f"(?, ?, ?, ?, ?, ?, {SQLITE_NOW_MICROS})"] * len(chunk))
        parameters: list[Any] = []
        for o in chunk:
            parameters += [
                source.id,
                o.key,
                o.size,
                None if o.etag is None else pack_etag(o.etag),
                None if o.last_modified is None else to_micros(o.last_modified),
                pass_seq,
            ]
        rows = conn.exec_driver_sql(
            "INSERT INTO objects "
            "(source_id, key, size, etag, last_modified, seen_pass, created_at) "
            f"VALUES {values} ON CONFLICT (source_id, key) DO NOTHING RETURNING key",
            tuple(parameters),
        )
        inserted.update(row[0] for row in rows)
    return inserted


def _inventory(row: Any) -> InventoryProgress:
    return InventoryProgress(
        manifest=row.manifest,
        snapshot_at=row.snapshot_at,
        files=row.files,
        file_index=row.file_index,
        row_offset=row.row_offset,
        keys_recorded=row.keys_recorded,
        max_key=row.max_key,
        finished_at=row.finished_at,
    )


def _median_seconds(rows: Sequence[Any]) -> float | None:
    """The median of `annotated_at - served_at` over rows that have both."""
    spans = [
        (r.annotated_at - r.served_at).total_seconds()
        for r in rows
        if r.served_at is not None and r.annotated_at is not None
    ]
    return float(statistics.median(spans)) if spans else None


def _shard(row: Any) -> ShardCursor:
    return ShardCursor(
        shard=row.shard,
        plan=row.plan,
        start_after=row.start_after,
        end_key=row.end_key,
        continuation_token=row.continuation_token,
        last_key=row.last_key,
        pages_listed=row.pages_listed,
        keys_listed=row.keys_listed,
        exhausted_at=row.exhausted_at,
        closed_at=row.closed_at,
        generation=row.generation,
    )


def _back_to_pending(now: datetime) -> dict[str, Any]:
    """What putting a key back to `pending` writes: lease, answer and failure cleared."""
    return {
        "state": ItemState.PENDING,
        "answer": None,
        "session_id": None,
        "answer_count": 0,
        "later_answers": None,
        "annotated_at": None,
        "imported": False,
        "attempts": 0,
        "served_at": None,
        "failure_reason": None,
        "updated_at": now,
        "answer_etag": None,
        "answer_version_id": None,
        **_LEASE_CLEARED,
    }


def _item_row(r: Any) -> ItemRow:
    return ItemRow(
        r.id,
        r.key,
        r.state,
        r.answer,
        r.session_id,
        r.lease_owner,
        r.served_at,
        r.failure_reason,
        r.attempts or 0,
        r.priority,
    )


def _object_deleted(object_id: Any) -> Any:
    """The object `object_id` is marked deleted (an alias: never correlated away)."""
    o = objects.alias("gone")
    return select(o.c.id).where(o.c.id == object_id, o.c.deleted_at.is_not(None)).exists()


def _answer_changed(etag_now: Any) -> ColumnElement[bool]:
    """The one "changed" rule: the answer was given for another ETag than the object's
    `etag_now` (both known)."""
    return and_(
        items.c.answer_etag.is_not(None), etag_now.is_not(None), etag_now != items.c.answer_etag
    )


def _object_changed(object_id: Any) -> Any:
    """`_answer_changed` for the object `object_id` (a correlated EXISTS; the row's own
    `answer_etag` test stays outside it too, so unanswered rows are ruled out first)."""
    o = objects.alias("now_object")
    return and_(
        items.c.answer_etag.is_not(None),
        select(o.c.id).where(o.c.id == object_id, _answer_changed(o.c.etag)).exists(),
    )


def _conditions(where: ItemFilter, state: Any, object_id: Any = None) -> list[Any]:
    """SQL conditions for the filter's fields, except `keys` and `match`: a key list may
    exceed the backend's bound-parameter limit and a glob has no portable SQL form.
    `state` is the state column, or the expression that reads a missing row as pending;
    `object_id` the object id column (default: the items row's)."""
    object_id = items.c.object_id if object_id is None else object_id
    conditions: list[Any] = []
    if where.deleted:
        conditions.append(_object_deleted(object_id))
    if where.changed:
        conditions.append(_object_changed(object_id))
    if where.states is not None:
        conditions.append(state.in_(sorted(where.states)))
    if where.answers is not None:
        conditions.append(items.c.answer.in_(sorted(where.answers)))
    if where.owner is not None:
        conditions.append(items.c.lease_owner == where.owner)
    if where.session is not None:
        conditions.append(items.c.session_id == where.session)
    if where.served_before is not None:
        conditions.append(items.c.served_at <= where.served_before)
    return conditions


def batched(values: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    """`itertools.batched` (Python 3.12) for Python 3.11."""
    iterator = iter(values)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def _array(values: list[Any], element: Any) -> ColumnElement[Any]:
    """A PostgreSQL array parameter of `element`s."""
    return cast(bindparam(None, values, type_=postgresql.ARRAY(element)), postgresql.ARRAY(element))


def _one_per_value(
    table: Table,
    scope: str,
    scope_id: Any,
    column: str,
    values: ColumnElement[Any],
    *,
    lock: bool = False,
) -> Select[Any]:
    """PostgreSQL: `table`'s row where `scope = scope_id AND column = v`, for each `v` of
    the array `values`, with a plan that does not depend on statistics.

    `(scope, column)` is unique. A LATERAL subquery with LIMIT 1 is never flattened into a
    join: the plan can only be a nested loop of one unique-index lookup per value, where a
    join against `unnest`, `= ANY` or an IN list became a hash join or a scan of the whole
    scope on a table never analyzed.
    """
    wanted = func.unnest(values).table_valued("value").render_derived()
    inner = select(table).where(table.c[scope] == scope_id, table.c[column] == wanted.c.value)
    one = (inner.with_for_update() if lock else inner).limit(1).lateral()
    return select(one).select_from(wanted).join(one, true())

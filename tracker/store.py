"""The state store: the one module that runs SQL.

Every write is one transaction (`BEGIN IMMEDIATE` on SQLite, see `tracker.db`); every
operation works the same on SQLite and PostgreSQL, with `FOR UPDATE SKIP LOCKED` in the
claim on PostgreSQL so that concurrent claimers never wait on, or take, each other's rows.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import islice
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    func,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from tracker.db import create_db_engine, ensure_schema, masked, translate_db_errors
from tracker.errors import SourceNotFound
from tracker.models import Answer, ItemState, items, listing_cursors, sources, utcnow
from tracker.records import (
    AnswerRecord,
    Counts,
    Cursor,
    ExistingAnswer,
    ItemFilter,
    ItemRow,
    Lease,
    ListedObject,
    OpenWork,
    SourceRef,
    plan_answers,
)

#: Rows per statement when acting on many ids; under every backend's bound-parameter limit.
_CHUNK = 500

_LEASE_CLEARED: dict[str, Any] = {
    "lease_owner": None,
    "lease_token": None,
    "lease_expires_at": None,
}


#: What the first answer for a key writes (`new_answer`, `new_session`, `now` are bound).
_FIRST_ANSWER: dict[str, Any] = {
    "state": ItemState.ANNOTATED,
    "answer": bindparam("new_answer"),
    "session_id": bindparam("new_session"),
    "answer_count": 1,
    "annotated_at": bindparam("now"),
    "updated_at": bindparam("now"),
    "failure_reason": None,
    **_LEASE_CLEARED,
}


class Store:
    """Operations on the state DB. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

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
        with (
            translate_db_errors(self.engine.url),
            self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn,
            conn.begin(),
        ):
            yield conn

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self._pg else sqlite
        return dialect.insert(table)

    # -- sources and listing cursors ------------------------------------------------------

    def source(self, bucket: str, prefix: str = "", *, create: bool = False) -> SourceRef:
        """The source for bucket + prefix; created with an empty cursor when `create`."""
        where = and_(sources.c.bucket == bucket, sources.c.prefix == prefix)
        with self._read() as conn:
            row = conn.execute(select(sources.c.id).where(where)).first()
        if row is None:
            if not create:
                uri = SourceRef(0, bucket, prefix).uri
                raise SourceNotFound(f"the state DB has no source {uri} (run `tracker sync`)")
            with self._write() as conn:
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

    def cursor(self, source: SourceRef) -> Cursor:
        with self._read() as conn:
            return self._cursor(conn, source)

    def _cursor(self, conn: Connection, source: SourceRef) -> Cursor:
        row = conn.execute(
            select(listing_cursors).where(listing_cursors.c.source_id == source.id)
        ).one()
        return Cursor(
            continuation_token=row.continuation_token,
            last_key=row.last_key,
            pages_listed=row.pages_listed,
            keys_listed=row.keys_listed,
            exhausted_at=row.exhausted_at,
            updated_at=row.updated_at,
        )

    def record_page(
        self,
        source: SourceRef,
        objects: Sequence[ListedObject],
        *,
        next_token: str | None,
        last_key: str | None,
        exhausted: bool,
    ) -> int:
        """Insert a listed page's keys and advance the cursor, in one transaction.

        Re-recording a page is harmless: known keys keep their state. The cursor only moves
        forward (in S3's UTF-8 binary order), so a slower concurrent lister, or a
        `--from-start` pass, never drags it back. Returns the number of new keys.
        """
        now = utcnow()
        with self._write() as conn:
            inserted = 0
            if objects:
                # state, answer_count and timestamps come from the columns' SQL defaults.
                rows = [
                    {
                        "source_id": source.id,
                        "key": o.key,
                        "size": o.size,
                        "etag": o.etag,
                        "last_modified": o.last_modified,
                    }
                    for o in objects
                ]
                statement = self._insert(items).on_conflict_do_nothing(
                    index_elements=["source_id", "key"]
                )
                if self._pg:  # psycopg's executemany reports no total row count
                    inserted = len(conn.execute(statement.returning(items.c.id), rows).all())
                else:
                    inserted = conn.execute(statement, rows).rowcount
            current = self._cursor(conn, source)
            values: dict[str, Any] = {
                "pages_listed": listing_cursors.c.pages_listed + 1,
                "keys_listed": listing_cursors.c.keys_listed + inserted,
                "updated_at": now,
            }
            if _utf8_after(last_key, current.last_key) or (exhausted and last_key is None):
                values["last_key"] = last_key if last_key is not None else current.last_key
                values["continuation_token"] = None if exhausted else next_token
                values["exhausted_at"] = now if exhausted else None
            conn.execute(
                update(listing_cursors)
                .where(listing_cursors.c.source_id == source.id)
                .values(**values)
            )
            return inserted

    def reset_cursor(self, source: SourceRef) -> None:
        """Forget the listing position: the next sync starts from the first page."""
        with self._write() as conn:
            conn.execute(
                update(listing_cursors)
                .where(listing_cursors.c.source_id == source.id)
                .values(
                    continuation_token=None,
                    last_key=None,
                    exhausted_at=None,
                    updated_at=utcnow(),
                )
            )

    def forget_token(self, source: SourceRef) -> None:
        """Drop a continuation token that S3 rejected; the last key still resumes the listing."""
        with self._write() as conn:
            conn.execute(
                update(listing_cursors)
                .where(listing_cursors.c.source_id == source.id)
                .values(continuation_token=None, updated_at=utcnow())
            )

    # -- leases ---------------------------------------------------------------------------

    def claim(
        self,
        source: SourceRef,
        owner: str,
        limit: int,
        lease: timedelta,
        *,
        now: datetime | None = None,
    ) -> list[Lease]:
        """Lease up to `limit` keys to `owner`: expired leases first, then pending keys in
        listing order. Each claimed key gets a fresh lease token."""
        now = now or utcnow()
        params = self._lease_params(source, owner, lease, now)
        params["limit"] = limit
        with self._write() as conn:
            if not self._pg:  # writers are serialised: one statement picks both kinds
                rows = conn.execute(self._claim_any, params).all()
            else:
                rows = conn.execute(self._claim_expired, params).all()
                if len(rows) < limit:
                    params["limit"] = limit - len(rows)
                    rows += conn.execute(self._claim_pending, params).all()
        rows.sort(key=lambda r: r.id)  # RETURNING promises no order
        token, expires = params["token"], params["expires"]
        return [Lease(r.key, r.size, r.etag, token, expires) for r in rows]

    def reclaim(
        self,
        source: SourceRef,
        owner: str,
        lease: timedelta,
        *,
        served_before: datetime | None = None,
        limit: int | None = None,
        now: datetime | None = None,
    ) -> list[Lease]:
        """Renew the leases `owner` still holds (served before `served_before`, if given).

        A restarted recipe gets its own keys back at once instead of waiting for the lease;
        a running one re-sends a batch the browser dropped.
        """
        now = now or utcnow()
        params = self._lease_params(source, owner, lease, now)
        query = select(items.c.id).where(
            items.c.source_id == source.id,
            items.c.state == ItemState.SERVED,
            items.c.lease_owner == owner,
        )
        if served_before is not None:
            query = query.where(items.c.served_at <= served_before)
        query = query.order_by(items.c.served_at, items.c.id).limit(limit)
        if self._pg:
            query = query.with_for_update(skip_locked=True)
        with self._write() as conn:
            ids = list(conn.execute(query).scalars())
            rows = {r.id: r for r in conn.execute(self._lease_ids, dict(params, ids=ids))}
        token, expires = params["token"], params["expires"]
        return [Lease(r.key, r.size, r.etag, token, expires) for i in ids if (r := rows.get(i))]

    @staticmethod
    def _lease_params(
        source: SourceRef, owner: str, lease: timedelta, now: datetime
    ) -> dict[str, Any]:
        return {
            "in_source": source.id,
            "owner": owner,
            "token": str(uuid.uuid4()),
            "expires": now + lease,
            "now": now,
        }

    # Claim statements are built once: building and cache-keying a statement costs more
    # than running it on SQLite, and a claim sits on every batch an annotator receives.

    @staticmethod
    def _expired_ids() -> Select[Any]:
        return (
            select(items.c.id)
            .where(
                items.c.source_id == bindparam("in_source"),
                items.c.state == ItemState.SERVED,
                items.c.lease_expires_at <= bindparam("now"),
            )
            .order_by(items.c.lease_expires_at, items.c.id)
            .limit(bindparam("limit"))
        )

    @staticmethod
    def _pending_ids() -> Select[Any]:
        return (
            select(items.c.id)
            .where(items.c.source_id == bindparam("in_source"), items.c.state == ItemState.PENDING)
            .order_by(items.c.id)
            .limit(bindparam("limit"))
        )

    @cached_property
    def _claim_expired(self) -> Any:
        return self._lease_where(self._expired_ids())

    @cached_property
    def _claim_pending(self) -> Any:
        return self._lease_where(self._pending_ids())

    @cached_property
    def _claim_any(self) -> Any:
        """Expired leases first, then pending keys, in one statement (SQLite only: PostgreSQL
        does not allow FOR UPDATE in a UNION)."""
        both = union_all(
            select(self._expired_ids().subquery().c.id),
            select(self._pending_ids().subquery().c.id),
        ).limit(bindparam("limit"))
        return self._lease_update(items.c.id.in_(both.scalar_subquery()))

    @cached_property
    def _lease_ids(self) -> Any:
        return self._lease_update(items.c.id.in_(bindparam("ids", expanding=True)))

    def _lease_where(self, candidates: Select[Any]) -> Any:
        if self._pg:
            candidates = candidates.with_for_update(skip_locked=True)
        return self._lease_update(items.c.id.in_(candidates.scalar_subquery()))

    @staticmethod
    def _lease_update(condition: Any) -> Any:
        return (
            update(items)
            .where(condition)
            .values(
                state=ItemState.SERVED,
                lease_owner=bindparam("owner"),
                lease_token=bindparam("token"),
                lease_expires_at=bindparam("expires"),
                served_at=bindparam("now"),
                updated_at=bindparam("now"),
            )
            .returning(items.c.id, items.c.key, items.c.size, items.c.etag)
        )

    def release(self, source: SourceRef, owner: str, keys: Iterable[str] | None = None) -> int:
        """Hand `owner`'s unanswered keys (all, or those named) back to `pending`."""
        conditions = [
            items.c.source_id == source.id,
            items.c.state == ItemState.SERVED,
            items.c.lease_owner == owner,
        ]
        values = {"state": ItemState.PENDING, "updated_at": utcnow(), **_LEASE_CLEARED}
        with self._write() as conn:
            if keys is None:
                return conn.execute(update(items).where(*conditions).values(**values)).rowcount
            released = 0
            for chunk in batched(keys, _CHUNK):
                statement = update(items).where(*conditions, items.c.key.in_(chunk))
                released += conn.execute(statement.values(**values)).rowcount
            return released

    # -- answers and failures -------------------------------------------------------------

    def record_answers(
        self, source: SourceRef, answers: Sequence[AnswerRecord], *, now: datetime | None = None
    ) -> int:
        """Record answers; returns how many keys became annotated.

        Never drops an answer: one for a key whose lease expired, or that was re-served to
        someone else, still annotates it; one for a key never listed inserts it (in key
        order). Concurrent writers of one key are serialised, so the first answer wins and
        the others are counted on PostgreSQL as on SQLite.
        """
        if not answers:
            return 0
        now = now or utcnow()
        with self._write() as conn:
            return self._record_answers(conn, source, answers, now)

    def import_answers(
        self,
        source: SourceRef,
        answers: Sequence[AnswerRecord],
        *,
        requeue_missing: bool = False,
        now: datetime | None = None,
    ) -> tuple[int, int]:
        """Record answers read from `prodigy db-out` and, with `requeue_missing`, put keys
        annotated here but absent from `answers` back to `pending`: all in ONE transaction.

        Returns (keys newly annotated, keys requeued).
        """
        now = now or utcnow()
        with self._write() as conn:
            annotated = self._record_answers(conn, source, answers, now) if answers else 0
            if not requeue_missing:
                return annotated, 0
            named = {a.key for a in answers}
            missing = [
                r.id
                for r in conn.execute(
                    select(items.c.id, items.c.key).where(
                        items.c.source_id == source.id, items.c.state == ItemState.ANNOTATED
                    )
                )
                if r.key not in named
            ]
            values = _back_to_pending(now)
            for chunk in batched(missing, _CHUNK):
                conn.execute(update(items).where(items.c.id.in_(chunk)).values(**values))
            return annotated, len(missing)

    def _record_answers(
        self, conn: Connection, source: SourceRef, answers: Sequence[AnswerRecord], now: datetime
    ) -> int:
        annotated = 0
        if not self._pg:
            annotated, answers = self._annotate_first_answers(conn, source, answers, now)
            if not answers:
                return annotated
        keys = sorted({a.key for a in answers})  # one lock order for every writer
        existing = self._lock_answered(conn, source, keys)
        missing = [k for k in keys if k not in existing]
        if missing:
            # Never-listed keys go in as pending rows first, as a listed page would: a
            # concurrent writer of the same key then waits and counts its answer instead
            # of failing on the unique constraint. The plan annotates them below.
            conn.execute(
                self._insert(items).on_conflict_do_nothing(index_elements=["source_id", "key"]),
                [{"source_id": source.id, "key": key} for key in missing],
            )
            existing.update(self._lock_answered(conn, source, missing))
        plan = plan_answers(answers, existing)
        if plan.first:
            conn.execute(
                self._annotate,
                [
                    {
                        "item_id": i,
                        "new_answer": r.answer,
                        "new_session": r.session_id,
                        "now": now,
                    }
                    for i, r in plan.first.items()
                ],
            )
        if plan.extra:
            conn.execute(
                self._count_answer,
                [{"item_id": i, "more": n, "now": now} for i, n in plan.extra.items()],
            )
        return annotated + len(plan.first)

    def _annotate_first_answers(
        self, conn: Connection, source: SourceRef, answers: Sequence[AnswerRecord], now: datetime
    ) -> tuple[int, Sequence[AnswerRecord]]:
        """The common case in one statement per distinct answer: keys not yet annotated,
        answered once in the batch. Returns how many it annotated and the answers left for
        the general path (repeats, later answers, never-listed keys).

        SQLite only: its writers are serialised, so no lock order is needed.
        """
        once = Counter(a.key for a in answers)
        groups: dict[tuple[Answer, str | None], list[str]] = {}
        for a in answers:
            if once[a.key] == 1:
                groups.setdefault((a.answer, a.session_id), []).append(a.key)
        done: set[str] = set()
        for (answer, session), keys in groups.items():
            for chunk in batched(keys, _CHUNK):
                params = {
                    "in_source": source.id,
                    "keys": chunk,
                    "new_answer": answer,
                    "new_session": session,
                    "now": now,
                }
                done.update(conn.execute(self._annotate_unanswered, params).scalars())
        return len(done), [a for a in answers if a.key not in done]

    def _lock_answered(
        self, conn: Connection, source: SourceRef, keys: Sequence[str]
    ) -> dict[str, ExistingAnswer]:
        """The rows for `keys`, locked on PostgreSQL until the transaction ends, so that two
        writers answering one key at once are serialised: the first answer wins, the second
        is counted (SQLite's BEGIN IMMEDIATE already serialises every writer)."""
        existing: dict[str, ExistingAnswer] = {}
        for chunk in batched(keys, _CHUNK):
            rows = conn.execute(self._answered_rows, {"in_source": source.id, "keys": chunk})
            for r in rows:
                existing[r.key] = ExistingAnswer(r.id, r.state, r.answer, r.session_id)
        return existing

    @cached_property
    def _answered_rows(self) -> Any:
        query = (
            select(items.c.id, items.c.key, items.c.state, items.c.answer, items.c.session_id)
            .where(
                items.c.source_id == bindparam("in_source"),
                items.c.key.in_(bindparam("keys", expanding=True)),
            )
            .order_by(items.c.id)
        )
        return query.with_for_update() if self._pg else query

    @cached_property
    def _annotate(self) -> Any:
        return update(items).where(items.c.id == bindparam("item_id")).values(**_FIRST_ANSWER)

    @cached_property
    def _annotate_unanswered(self) -> Any:
        return (
            update(items)
            .where(
                items.c.source_id == bindparam("in_source"),
                items.c.key.in_(bindparam("keys", expanding=True)),
                items.c.state != ItemState.ANNOTATED,
            )
            .values(**_FIRST_ANSWER)
            .returning(items.c.key)
        )

    @cached_property
    def _count_answer(self) -> Any:
        return (
            update(items)
            .where(items.c.id == bindparam("item_id"))
            .values(
                answer_count=items.c.answer_count + bindparam("more"), updated_at=bindparam("now")
            )
        )

    def open_work(self, source: SourceRef, owner: str | None = None) -> OpenWork:
        """What is left to annotate: pending and served counts (and how many of the served
        keys `owner` holds), and the next lease expiry.

        The stream asks this when it has nothing to claim, to tell "wait for other owners'
        leases" from "done". Two indexed queries, whatever the size of the source.
        """
        in_source = items.c.source_id == source.id
        with self._read() as conn:
            by_state = dict(
                conn.execute(
                    select(items.c.state, func.count())
                    .where(in_source, items.c.state.in_([ItemState.PENDING, ItemState.SERVED]))
                    .group_by(items.c.state)
                ).all()
            )
            next_expiry = conn.execute(
                select(func.min(items.c.lease_expires_at)).where(
                    in_source, items.c.state == ItemState.SERVED
                )
            ).scalar_one()
            mine = 0
            if owner is not None:
                mine = conn.execute(
                    select(func.count()).where(
                        in_source, items.c.state == ItemState.SERVED, items.c.lease_owner == owner
                    )
                ).scalar_one()
        if next_expiry is not None and next_expiry.tzinfo is None:
            next_expiry = next_expiry.replace(tzinfo=UTC)
        return OpenWork(
            pending=by_state.get(ItemState.PENDING, 0),
            served=by_state.get(ItemState.SERVED, 0),
            next_expiry=next_expiry,
            served_by_owner=mine,
        )

    def mark_failed(self, source: SourceRef, key: str, reason: str) -> bool:
        """Set aside a key that cannot be served; an annotated key keeps its answer."""
        now = utcnow()
        with self._write() as conn:
            result = conn.execute(
                update(items)
                .where(
                    items.c.source_id == source.id,
                    items.c.key == key,
                    items.c.state != ItemState.ANNOTATED,
                )
                .values(
                    state=ItemState.FAILED,
                    failure_reason=reason,
                    updated_at=now,
                    **_LEASE_CLEARED,
                )
            )
            return result.rowcount > 0

    # -- operator tools -------------------------------------------------------------------

    def iter_items(self, source: SourceRef, where: ItemFilter | None = None) -> Iterator[ItemRow]:
        """Stream matching items in listing order, in constant memory.

        Pages by id (keyset pagination) in short read transactions, so a slow consumer
        never holds a snapshot or a lock open. A key list is looked up through the unique
        index instead, a chunk at a time: memory then grows with the list, not the source.
        """
        where = where or ItemFilter()
        base = select(
            items.c.id,
            items.c.key,
            items.c.state,
            items.c.answer,
            items.c.session_id,
            items.c.lease_owner,
            items.c.served_at,
            items.c.failure_reason,
        ).where(items.c.source_id == source.id, *_conditions(where))
        if where.keys is not None:
            rows = []
            for chunk in batched(sorted(where.keys), _CHUNK):
                with self._read() as conn:
                    rows += conn.execute(base.where(items.c.key.in_(chunk))).all()
            rows.sort(key=lambda r: r.id)
            yield from (_item_row(r) for r in rows if where.matches_key(r.key))
            return
        after = 0
        while True:
            query = base.where(items.c.id > after).order_by(items.c.id).limit(1000)
            with self._read() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            yield from (_item_row(r) for r in rows if where.matches_key(r.key))
            after = rows[-1].id

    def to_pending(self, source: SourceRef, where: ItemFilter) -> int:
        """Put matching items back to `pending` (requeue, reset), in one transaction.

        Clears the lease, the recorded answer and any failure: the key will be served and
        answered again. The answers themselves stay in the Prodigy dataset.
        """
        values = _back_to_pending(utcnow())
        base = [items.c.source_id == source.id, *_conditions(where)]
        key_chunks: Iterable[tuple[str, ...] | None] = (
            [None] if where.keys is None else batched(sorted(where.keys), _CHUNK)
        )
        moved = 0
        with self._write() as conn:
            for keys in key_chunks:
                conditions = base if keys is None else [*base, items.c.key.in_(keys)]
                if where.match is None:
                    statement = update(items).where(*conditions).values(**values)
                    moved += conn.execute(statement).rowcount
                    continue
                ids = [
                    r.id
                    for r in conn.execute(select(items.c.id, items.c.key).where(*conditions))
                    if where.matches_key(r.key)
                ]
                for chunk in batched(ids, _CHUNK):
                    conn.execute(update(items).where(items.c.id.in_(chunk)).values(**values))
                moved += len(ids)
        return moved

    def counts(self, source: SourceRef, *, now: datetime | None = None) -> Counts:
        """Counts by state and answer, expired leases and the last hour's annotations.

        Each is answered from an index (see `tracker.models.Item`), so this stays fast at
        millions of keys.
        """
        now = now or utcnow()
        in_source = items.c.source_id == source.id
        # One index range count per state and per answer: on SQLite this is about twice as
        # fast as GROUP BY over the same covering index (no grouping of a million entries).
        states, answers = list(ItemState), list(Answer)
        with self._read() as conn:
            by_state = conn.execute(
                select(
                    *(
                        select(func.count()).where(in_source, items.c.state == s).scalar_subquery()
                        for s in states
                    )
                )
            ).one()
            counts = Counts(by_state={s: n for s, n in zip(states, by_state, strict=True) if n})
            by_answer = conn.execute(
                select(
                    *(
                        select(func.count()).where(in_source, items.c.answer == a).scalar_subquery()
                        for a in answers
                    )
                )
            ).one()
            counts.by_answer = {a: n for a, n in zip(answers, by_answer, strict=True) if n}
            counts.expired_leases = conn.execute(
                select(func.count()).where(
                    in_source,
                    items.c.state == ItemState.SERVED,
                    items.c.lease_expires_at <= now,
                )
            ).scalar_one()
            counts.annotated_last_hour = conn.execute(
                select(func.count()).where(
                    in_source,
                    items.c.answer.in_(list(Answer)),
                    items.c.annotated_at >= now - timedelta(hours=1),
                )
            ).scalar_one()
        return counts


def _back_to_pending(now: datetime) -> dict[str, Any]:
    """What putting a key back to `pending` writes: lease, answer and failure cleared."""
    return {
        "state": ItemState.PENDING,
        "answer": None,
        "session_id": None,
        "answer_count": 0,
        "annotated_at": None,
        "failure_reason": None,
        "updated_at": now,
        **_LEASE_CLEARED,
    }


def _item_row(r: Any) -> ItemRow:
    return ItemRow(
        r.id, r.key, r.state, r.answer, r.session_id, r.lease_owner, r.served_at, r.failure_reason
    )


def _conditions(where: ItemFilter) -> list[Any]:
    """SQL conditions for the filter's fields, except `keys` and `match`: a key list may
    exceed the backend's bound-parameter limit and a glob has no portable SQL form."""
    conditions: list[Any] = []
    if where.states is not None:
        conditions.append(items.c.state.in_(sorted(where.states)))
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


def _utf8_after(key: str | None, than: str | None) -> bool:
    """True when `key` sorts after `than` in S3's listing order (UTF-8 bytes)."""
    if key is None:
        return False
    return than is None or key.encode("utf-8", "surrogatepass") > than.encode(
        "utf-8", "surrogatepass"
    )

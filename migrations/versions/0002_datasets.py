"""datasets: objects listed once per source, annotation state per (dataset, object)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Upgrade: the old `items` rows become `objects` (same ids, so listing order is kept), and
every old row with state (anything but a plain `pending` key) becomes an `items` row of the
dataset its source's state belongs to. That dataset is read from the lease owners (the 0001
default owner is `DATASET@HOST`) and the Prodigy sessions (`DATASET` or `DATASET-NAME`), or
given by the operator (`tracker db upgrade --dataset NAME`, `alembic -x dataset=NAME`) when
they do not name exactly one. When they do not and none is given, the upgrade stops before
it changes anything, with one line. A source with only pending keys gets no dataset: the
new store creates one on first use, and frontier 0 makes every key pending for it.

Downgrade works while each source has at most one dataset (the 0001 schema has room for
one state per key); with more it stops with one line before changing anything. What 0001
cannot hold is dropped: dataset names, owners, attempts, serves, `imported`, `generation`.

Both directions copy tables instead of altering them (create, copy, drop, create, copy):
the same statements on SQLite and PostgreSQL, and every constraint gets its declared name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

from tracker.db import masked
from tracker.errors import StateDBError

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Old rows that carry state worth a per-dataset row. A `pending` row of 0001 holds nothing
#: but listing facts (going back to pending clears lease, answer and session), so it becomes
#: an object only; the answer clause is a guard should one ever hold an answer.
_HAS_STATE = "(state <> 'pending' OR answer IS NOT NULL OR answer_count > 0)"

#: The old items while the new `items` table takes their name.
_COPY = "items_0001_copy"

#: At most this many candidate names per source in the one-line message.
_MAX_NAMES = 6

UPGRADE_COMMAND = "tracker db upgrade --dataset NAME"


class MigrationRefused(StateDBError, CommandError):
    """The migration cannot proceed without the operator: one line, nothing changed.

    A `StateDBError` for the tracker (one line, exit 4) and a `CommandError` for the
    `alembic` command line (which prints it as one `FAILED:` line instead of a traceback).
    """


# -- attribution ------------------------------------------------------------------------------


def names_from_owner(owner: str | None) -> set[str] | None:
    """The dataset a 0001 lease owner names: `DATASET@HOST` -> `DATASET`.

    A custom owner (no `@`) names no dataset: it says nothing either way.
    """
    if not owner or "@" not in owner:
        return None
    dataset = owner.rsplit("@", 1)[0]
    return {dataset} if dataset else None


def names_from_session(session: str | None) -> set[str] | None:
    """The datasets a Prodigy `_session_id` may belong to.

    Prodigy writes `DATASET` or `DATASET-SESSION`, and dataset names may hold `-` too, so
    `cats-v2-alice` may be dataset `cats`, `cats-v2` or `cats-v2-alice`.
    """
    if not session:
        return None
    names = {session}
    names.update(session[:i] for i, char in enumerate(session) if char == "-" and i > 0)
    return names


def attribute(evidence: list[set[str]]) -> tuple[str | None, list[str]]:
    """(the one dataset every piece of evidence allows, or None; candidate names to show).

    One name fits when it is the only one allowed by every owner and session of the source:
    `cats@host` with sessions `cats-alice` and `cats-bob` is `cats`; `cats@a` beside
    `dogs@b`, or a lone session `cats-alice`, is ambiguous.
    """
    if not evidence:
        return None, []
    common = set.intersection(*evidence)
    if len(common) == 1:
        return next(iter(common)), []
    if common:
        return None, sorted(common, key=lambda n: (len(n), n))
    shown: set[str] = set()
    for names in evidence:
        shown.add(min(names, key=lambda n: (len(n), n)))  # owner's name, session's shortest
    return None, sorted(shown)


def _given_dataset() -> str | None:
    """`config.attributes["dataset"]` (the tracker) or `-x dataset=NAME` (alembic CLI)."""
    given = context.config.attributes.get("dataset") or context.get_x_argument(
        as_dictionary=True
    ).get("dataset")
    if given is None:
        return None
    name = str(given).strip()
    if not name or len(name) > 255:
        raise MigrationRefused("--dataset needs a name of 1 to 255 characters")
    return name


def _source_uri(bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _plan_datasets(conn: sa.Connection) -> dict[int, str]:
    """source id -> dataset name for every source whose old items hold state; or refuse."""
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT source_id, lease_owner, session_id FROM items "
            f"WHERE {_HAS_STATE} ORDER BY source_id"
        )
    ).all()
    evidence: dict[int, list[set[str]]] = defaultdict(list)
    for source_id, owner, session in rows:
        evidence.setdefault(source_id, [])
        for names in (names_from_owner(owner), names_from_session(session)):
            if names:
                evidence[source_id].append(names)
    given = _given_dataset()
    plan: dict[int, str] = {}
    unresolved: list[str] = []
    for source_id, pieces in evidence.items():
        name, candidates = attribute(pieces)
        if name is None and given is not None:
            name = given
        if name is not None:
            plan[source_id] = name
            continue
        bucket, prefix = conn.execute(
            sa.text("SELECT bucket, prefix FROM sources WHERE id = :id"), {"id": source_id}
        ).one()
        if candidates:
            more = len(candidates) - _MAX_NAMES
            listed = ", ".join(candidates[:_MAX_NAMES]) + (f", +{more} more" if more > 0 else "")
            why = f"candidates: {listed}"
        else:
            why = "no lease owner or session names one"
        unresolved.append(f"{_source_uri(bucket, prefix)} ({why})")
    if unresolved:
        raise MigrationRefused(
            f"state DB {masked(conn.engine.url)} needs a dataset name to upgrade to schema "
            f"0002: the annotation state of {'; '.join(unresolved)} belongs to no single "
            f"Prodigy dataset; nothing was changed; run `{UPGRADE_COMMAND}`"
        )
    return plan


# -- tables -----------------------------------------------------------------------------------


def _create_new_items() -> None:
    op.create_table(
        "items",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("dataset_id", BigIntId, nullable=False),
        sa.Column("object_id", BigIntId, nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "served",
                "annotated",
                "failed",
                name="item_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("serves", sa.Integer(), server_default="0", nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column(
            "answer",
            sa.Enum(
                "accept",
                "reject",
                "ignore",
                name="answer",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("answer_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("imported", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("annotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_items_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.id"],
            name=op.f("fk_items_object_id_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("dataset_id", "object_id", name=op.f("uq_items_dataset_id_object_id")),
    )
    op.create_index("ix_items_queue", "items", ["dataset_id", "state", "object_id"])
    op.create_index(
        "ix_items_leases",
        "items",
        ["dataset_id", "lease_expires_at"],
        sqlite_where=sa.text("state = 'served'"),
        postgresql_where=sa.text("state = 'served'"),
    )
    op.create_index(
        "ix_items_owner",
        "items",
        ["lease_owner"],
        sqlite_where=sa.text("state = 'served'"),
        postgresql_where=sa.text("state = 'served'"),
    )
    op.create_index(
        "ix_items_answers",
        "items",
        ["dataset_id", "answer", "annotated_at"],
        sqlite_where=sa.text("answer IS NOT NULL"),
        postgresql_where=sa.text("answer IS NOT NULL"),
    )


def _create_old_items() -> None:
    """The 0001 `items` table, as revision 0001 creates it."""
    op.create_table(
        "items",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("source_id", BigIntId, nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("etag", sa.String(length=255), nullable=True),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "served",
                "annotated",
                "failed",
                name="item_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column(
            "answer",
            sa.Enum(
                "accept",
                "reject",
                "ignore",
                name="answer",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("answer_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("annotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_items_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("source_id", "key", name=op.f("uq_items_source_id_key")),
    )
    op.create_index(
        "ix_items_answers",
        "items",
        ["source_id", "answer", "annotated_at"],
        sqlite_where=sa.text("answer IS NOT NULL"),
        postgresql_where=sa.text("answer IS NOT NULL"),
    )
    op.create_index(
        "ix_items_leases",
        "items",
        ["source_id", "lease_expires_at"],
        sqlite_where=sa.text("state = 'served'"),
        postgresql_where=sa.text("state = 'served'"),
    )
    op.create_index("ix_items_queue", "items", ["source_id", "state", "id"])


def _sync_sequence(table: str) -> None:
    """PostgreSQL: move `table`'s id sequence past the ids copied in with explicit values.

    SQLite needs nothing: an INTEGER PRIMARY KEY takes max(rowid) + 1.
    """
    if context.get_context().dialect.name != "postgresql":
        return
    op.execute(
        sa.text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        )
    )


# -- upgrade ----------------------------------------------------------------------------------


def upgrade() -> None:
    # First, before any DDL: an upgrade that needs a name stops with the DB untouched.
    if context.is_offline_mode():
        # `alembic upgrade --sql`: no data to read, so the name must be given.
        given = _given_dataset()
        if given is None:
            raise MigrationRefused(
                "an offline (--sql) upgrade to 0002 cannot read which dataset the state "
                "belongs to: give it with -x dataset=NAME"
            )
        plan: dict[int, str] | None = None
    else:
        plan = _plan_datasets(op.get_bind())

    op.create_table(
        "owners",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_owners")),
    )
    op.create_table(
        "datasets",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("source_id", BigIntId, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("frontier", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_datasets_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("source_id", "name", name=op.f("uq_datasets_source_id_name")),
    )
    op.create_table(
        "objects",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("source_id", BigIntId, nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("etag", sa.String(length=255), nullable=True),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_objects_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objects")),
        sa.UniqueConstraint("source_id", "key", name=op.f("uq_objects_source_id_key")),
    )
    op.create_index("ix_objects_order", "objects", ["source_id", "id"])
    with op.batch_alter_table("listing_cursors") as batch_op:
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), server_default="0", nullable=False)
        )

    # Every listed key, pending or not, under its old id: listing order is id order.
    op.execute(
        sa.text(
            "INSERT INTO objects (id, source_id, key, size, etag, last_modified, created_at) "
            "SELECT id, source_id, key, size, etag, last_modified, created_at FROM items"
        )
    )
    _sync_sequence("objects")

    # Frontier 0: every object without an items row is pending for the dataset, which is
    # exactly what the old pending keys were.
    if plan is None:  # offline: every source with state, under the name given
        op.execute(
            sa.text(
                "INSERT INTO datasets (source_id, name, frontier, created_at) "
                "SELECT s.id, :name, 0, s.created_at FROM sources s WHERE EXISTS "
                f"(SELECT 1 FROM items WHERE source_id = s.id AND {_HAS_STATE})"
            ).bindparams(name=given)
        )
    for source_id, name in sorted((plan or {}).items()):
        op.execute(
            sa.text(
                "INSERT INTO datasets (source_id, name, frontier, created_at) "
                "SELECT id, :name, 0, created_at FROM sources WHERE id = :id"
            ).bindparams(id=source_id, name=name)
        )

    op.execute(sa.text(f"CREATE TABLE {_COPY} AS SELECT * FROM items WHERE {_HAS_STATE}"))
    op.drop_table("items")  # its indexes and (PostgreSQL) id sequence go with it
    _create_new_items()
    # A served row had one lease granted since its last hand-back (attempts) and, like any
    # row that was ever served, at least one in all (serves: each serve's own task hash).
    op.execute(
        sa.text(
            "INSERT INTO items (id, dataset_id, object_id, state, failure_reason, lease_owner, "
            "lease_token, lease_expires_at, attempts, serves, session_id, answer, "
            "answer_count, imported, created_at, updated_at, served_at, annotated_at) "
            "SELECT c.id, d.id, c.id, c.state, c.failure_reason, c.lease_owner, "
            "c.lease_token, c.lease_expires_at, "
            "CASE WHEN c.state = 'served' THEN 1 ELSE 0 END, "
            "CASE WHEN c.state = 'served' OR c.served_at IS NOT NULL THEN 1 ELSE 0 END, "
            "c.session_id, c.answer, c.answer_count, :imported, c.created_at, c.updated_at, "
            f"c.served_at, c.annotated_at FROM {_COPY} c "
            "JOIN datasets d ON d.source_id = c.source_id"
        ).bindparams(sa.bindparam("imported", False, type_=sa.Boolean()))
    )
    op.drop_table(_COPY)
    _sync_sequence("items")


# -- downgrade --------------------------------------------------------------------------------


def _refuse_crowded_sources(conn: sa.Connection) -> None:
    """Refuse, before any change, when a source has several datasets: 0001 has one row."""
    crowded = conn.execute(
        sa.text(
            "SELECT s.bucket, s.prefix, COUNT(*) FROM datasets d "
            "JOIN sources s ON s.id = d.source_id "
            "GROUP BY s.id, s.bucket, s.prefix HAVING COUNT(*) > 1 ORDER BY s.id"
        )
    ).all()
    if crowded:
        listed = "; ".join(f"{_source_uri(b, p)} ({n} datasets)" for b, p, n in crowded)
        raise MigrationRefused(
            f"state DB {masked(conn.engine.url)} cannot go back to schema 0001, which holds "
            f"one annotation state per key: {listed}; nothing was changed"
        )


def downgrade() -> None:
    if not context.is_offline_mode():
        _refuse_crowded_sources(op.get_bind())
    # Offline (--sql), nothing can be checked; two datasets on a source would give two rows
    # with one id below, and the INSERT fails on the primary key instead of merging them.

    # Each object with its (single) dataset's row, if any; no row means pending.
    op.execute(
        sa.text(
            f"CREATE TABLE {_COPY} AS SELECT o.id AS id, o.source_id AS source_id, "
            "o.key AS key, o.size AS size, o.etag AS etag, o.last_modified AS last_modified, "
            "COALESCE(i.state, 'pending') AS state, i.failure_reason AS failure_reason, "
            "i.lease_owner AS lease_owner, i.lease_token AS lease_token, "
            "i.lease_expires_at AS lease_expires_at, i.session_id AS session_id, "
            "i.answer AS answer, COALESCE(i.answer_count, 0) AS answer_count, "
            "COALESCE(i.created_at, o.created_at) AS created_at, "
            "COALESCE(i.updated_at, o.created_at) AS updated_at, "
            "i.served_at AS served_at, i.annotated_at AS annotated_at "
            "FROM objects o LEFT JOIN datasets d ON d.source_id = o.source_id "
            "LEFT JOIN items i ON i.object_id = o.id AND i.dataset_id = d.id"
        )
    )
    op.drop_table("items")
    op.drop_table("datasets")
    op.drop_table("owners")
    op.drop_table("objects")
    _create_old_items()
    op.execute(
        sa.text(
            "INSERT INTO items (id, source_id, key, size, etag, last_modified, state, "
            "failure_reason, lease_owner, lease_token, lease_expires_at, session_id, answer, "
            "answer_count, created_at, updated_at, served_at, annotated_at) "
            "SELECT id, source_id, key, size, etag, last_modified, state, failure_reason, "
            "lease_owner, lease_token, lease_expires_at, session_id, answer, answer_count, "
            f"created_at, updated_at, served_at, annotated_at FROM {_COPY}"
        )
    )
    op.drop_table(_COPY)
    _sync_sequence("items")
    with op.batch_alter_table("listing_cursors") as batch_op:
        batch_op.drop_column("generation")

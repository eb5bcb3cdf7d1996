"""counters: per-source and per-dataset counts kept by triggers, so that `tracker status`
reads a few rows whatever the number of keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24

Two tables of counters, `source_counts` (keys listed, keys deleted) and `dataset_counts`
(rows by state, live rows by state, answers, changed answers), kept by database triggers
in the transaction that changes `objects` or `items`: no code path can forget one, and a
rolled-back transaction rolls its counts back with it. What the columns mean is
`tracker.counters`; the store's `recount` (plain COUNT(*)s) is the oracle `tracker db
check` compares them with.

SQLite serialises writers, so its row-level triggers update the one counter row of the
source or dataset in place. One exception, measured: a row-level trigger on INSERT INTO
objects cost 10-25% of SQLite's bulk recording rate (~100,000 keys/s), so on SQLite the
store adds the keys it inserted to `source_counts.listed` itself, in the same transaction
(`Store._count_new_objects`); every other counter, and every counter on PostgreSQL (where
the statement-level trigger costs ~5%), is kept by triggers.

PostgreSQL does not serialise writers: one row updated by every claim would serialise the
claims (and two such rows taken in different orders deadlock), so there
the triggers only INSERT delta rows, which no two transactions ever share; a reader sums
them, and every 1,024th delta compacts a dataset's (or source's) rows into one, under a
try-lock that a busy compactor makes the others skip. Statement-level triggers with
transition tables turn a bulk INSERT into one grouped delta row; updates use row-level
triggers limited to the columns that change a count (`UPDATE OF state, answer,
answer_etag`; `deleted_at, etag` on objects) and a WHEN clause, because PostgreSQL allows
no column list on a trigger with transition tables, and an UPDATE of other columns over
every row (a later migration's) must not pay for counting.

The counter tables have no foreign key on purpose: on PostgreSQL inserting a row that
references `datasets` takes a KEY SHARE lock on the dataset's row, which conflicts with the
claim's FOR UPDATE of it, and two claimers each holding one and waiting for the other
deadlock. Nothing deletes `items` or `objects` rows but a cascade from a deleted source or
dataset (the store never deletes either): there are no DELETE triggers, and `tracker db
check --repair` drops counter rows left by such a deletion.

The upgrade fills the counters from the current rows (one grouped pass over each table);
the downgrade drops the triggers, their functions and both tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Each counter of `dataset_counts` as a condition on an items row `r` and its object `o`.
#: Frozen here (not imported) so that this revision stays what it was.
_ITEM_COUNTERS: dict[str, str] = {
    "served": "{r}.state = 'served'",
    "annotated": "{r}.state = 'annotated'",
    "failed": "{r}.state = 'failed'",
    "live_served": "{r}.state = 'served' AND {o}.deleted_at IS NULL",
    "live_annotated": "{r}.state = 'annotated' AND {o}.deleted_at IS NULL",
    "live_failed": "{r}.state = 'failed' AND {o}.deleted_at IS NULL",
    "accepted": "{r}.answer = 'accept'",
    "rejected": "{r}.answer = 'reject'",
    "ignored": "{r}.answer = 'ignore'",
    "changed": "{r}.answer_etag IS NOT NULL AND {o}.etag IS NOT NULL "
    "AND {o}.etag <> {r}.answer_etag",
}
_COLUMNS = ", ".join(_ITEM_COUNTERS)

#: Only a change of these columns can change a count.
_ITEM_CHANGED = (
    "OLD.state IS DISTINCT FROM NEW.state OR OLD.answer IS DISTINCT FROM NEW.answer "
    "OR OLD.answer_etag IS DISTINCT FROM NEW.answer_etag"
)
_OBJECT_CHANGED = (
    "(OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL) OR OLD.etag IS DISTINCT FROM NEW.etag"
)

#: Deltas compact every this many ids of a delta table (PostgreSQL).
_COMPACT_EVERY = 1024
#: Advisory lock classes of the compactions (the object id is the dataset or source id).
_DATASET_LOCK = 70071
_SOURCE_LOCK = 70072


def _flag(condition: str, pg: bool) -> str:
    """A condition as 0 or 1 (a NULL answer compares to NULL: that is 0)."""
    return f"coalesce(({condition})::int, 0)" if pg else f"coalesce(({condition}), 0)"


def _delta(new: tuple[str, str], old: tuple[str, str] | None, pg: bool) -> list[str]:
    """Each counter's change from the pair `old` (None: no row) to `new`, as SQL."""
    out = []
    for condition in _ITEM_COUNTERS.values():
        term = _flag(condition.format(r=new[0], o=new[1]), pg)
        if old is not None:
            term += " - " + _flag(condition.format(r=old[0], o=old[1]), pg)
        out.append(term)
    return out


def _tables() -> None:
    op.create_table(
        "source_counts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("source_id", _ID, nullable=False),
        sa.Column("listed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("deleted", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_counts")),
    )
    op.create_index("ix_source_counts_source_id", "source_counts", ["source_id"])
    op.create_table(
        "dataset_counts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("dataset_id", _ID, nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            for name in _ITEM_COUNTERS
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_counts")),
    )
    op.create_index("ix_dataset_counts_dataset_id", "dataset_counts", ["dataset_id"])


def _fill(pg: bool) -> None:
    """Counters from the rows there are: one row per source and per dataset."""
    op.execute(
        "INSERT INTO source_counts (source_id, listed, deleted) "
        "SELECT s.id, (SELECT count(*) FROM objects o WHERE o.source_id = s.id), "
        "(SELECT count(*) FROM objects o WHERE o.source_id = s.id AND o.deleted_at IS NOT NULL) "
        "FROM sources s"
    )
    sums = ", ".join(f"coalesce(sum({t}), 0)" for t in _delta(("r", "o"), None, pg))
    op.execute(
        f"INSERT INTO dataset_counts (dataset_id, {_COLUMNS}) "
        f"SELECT d.id, {sums} FROM datasets d "
        "LEFT JOIN items r ON r.dataset_id = d.id LEFT JOIN objects o ON o.id = r.object_id "
        "GROUP BY d.id"
    )


# -- SQLite: one counter row per source and dataset, updated in place ----------------------


def _sqlite_set(new: tuple[str, str], old: tuple[str, str] | None) -> str:
    """`(counters) = (SELECT counter + delta, ...)`: one statement for every counter."""
    deltas = _delta(new, old, pg=False)
    added = ", ".join(f"{c} + {d}" for c, d in zip(_ITEM_COUNTERS, deltas, strict=True))
    return f"({_COLUMNS}) = (SELECT {added} FROM objects o WHERE o.id = NEW.object_id)"


def _sqlite_upgrade() -> None:
    triggers = [
        "CREATE TRIGGER tracker_count_new_source AFTER INSERT ON sources BEGIN "
        "INSERT INTO source_counts (source_id) VALUES (NEW.id); END",
        "CREATE TRIGGER tracker_count_new_dataset AFTER INSERT ON datasets BEGIN "
        "INSERT INTO dataset_counts (dataset_id) VALUES (NEW.id); END",
        "CREATE TRIGGER tracker_count_item_insert AFTER INSERT ON items BEGIN "
        f"UPDATE dataset_counts SET {_sqlite_set(('NEW', 'o'), None)} "
        "WHERE dataset_id = NEW.dataset_id; END",
        "CREATE TRIGGER tracker_count_item_update AFTER UPDATE OF state, answer, answer_etag "
        f"ON items WHEN {_ITEM_CHANGED.replace('IS DISTINCT FROM', 'IS NOT')} BEGIN "
        f"UPDATE dataset_counts SET {_sqlite_set(('NEW', 'o'), ('OLD', 'o'))} "
        "WHERE dataset_id = NEW.dataset_id; END",
    ]
    # An object deleted, revived or overwritten: its rows in every dataset of the source
    # (each found through the unique (dataset_id, object_id) index).
    deltas = _delta(("r", "NEW"), ("r", "OLD"), pg=False)
    added = ", ".join(
        f"{c} + coalesce((SELECT {d} FROM items r WHERE r.dataset_id = "
        "dataset_counts.dataset_id AND r.object_id = NEW.id), 0)"
        for c, d in zip(_ITEM_COUNTERS, deltas, strict=True)
    )
    triggers.append(
        "CREATE TRIGGER tracker_count_object_update AFTER UPDATE OF deleted_at, etag "
        f"ON objects WHEN {_OBJECT_CHANGED.replace('IS DISTINCT FROM', 'IS NOT')} BEGIN "
        "UPDATE source_counts SET deleted = deleted + (NEW.deleted_at IS NOT NULL) "
        "- (OLD.deleted_at IS NOT NULL) WHERE source_id = NEW.source_id; "
        f"UPDATE dataset_counts SET ({_COLUMNS}) = (SELECT {added}) "
        "WHERE dataset_id IN (SELECT id FROM datasets WHERE source_id = NEW.source_id); END"
    )
    for trigger in triggers:
        op.execute(trigger)


_SQLITE_TRIGGERS = (
    "tracker_count_new_source",
    "tracker_count_new_dataset",
    "tracker_count_item_insert",
    "tracker_count_item_update",
    "tracker_count_object_update",
)


# -- PostgreSQL: insert-only deltas, compacted now and then --------------------------------


def _after_insert_statement(function: str, table: str) -> None:
    """Run `function` once per INSERT statement into `table`, its rows as `inserted`."""
    op.execute(
        f"CREATE TRIGGER {function} AFTER INSERT ON {table} "
        "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {function}()"
    )


def _trigger_function(name: str, declare: str, body: str) -> None:
    """A PL/pgSQL trigger function: `declare`d variables, then `body`; returns NULL (an
    AFTER trigger's result is ignored)."""
    op.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"DECLARE {declare}\nBEGIN\n{body}    RETURN NULL;\nEND $$"
    )


def _pg_upgrade() -> None:
    sums = ", ".join(f"sum({c})" for c in _ITEM_COUNTERS)
    op.execute(
        f"""
CREATE FUNCTION tracker_compact_dataset_counts(d bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- One compactor per dataset at a time; the others skip (never wait, never deadlock).
    IF NOT pg_try_advisory_xact_lock({_DATASET_LOCK}, d::int) THEN RETURN; END IF;
    WITH gone AS (DELETE FROM dataset_counts WHERE dataset_id = d RETURNING *)
    INSERT INTO dataset_counts (dataset_id, {_COLUMNS})
    SELECT d, {sums} FROM gone HAVING count(*) > 0;
END $$"""
    )
    op.execute(
        f"""
CREATE FUNCTION tracker_compact_source_counts(s bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock({_SOURCE_LOCK}, s::int) THEN RETURN; END IF;
    WITH gone AS (DELETE FROM source_counts WHERE source_id = s RETURNING *)
    INSERT INTO source_counts (source_id, listed, deleted)
    SELECT s, sum(listed), sum(deleted) FROM gone HAVING count(*) > 0;
END $$"""
    )
    # Compacts the dataset whose delta took an id that is a multiple of _COMPACT_EVERY.
    compact_dataset = (
        f"IF delta_id % {_COMPACT_EVERY} = 0 THEN "
        "PERFORM tracker_compact_dataset_counts(delta_dataset); END IF;"
    )
    insert_sums = ", ".join(f"sum({d})" for d in _delta(("r", "o"), None, pg=True))
    _trigger_function(
        "tracker_count_items_inserted",
        "delta_id bigint; delta_dataset bigint;",
        f"""
    FOR delta_id, delta_dataset IN
        INSERT INTO dataset_counts (dataset_id, {_COLUMNS})
        SELECT r.dataset_id, {insert_sums}
        FROM inserted r JOIN objects o ON o.id = r.object_id GROUP BY r.dataset_id
        RETURNING id, dataset_id
    LOOP {compact_dataset} END LOOP;
""",
    )
    _after_insert_statement("tracker_count_items_inserted", "items")
    update_deltas = ", ".join(_delta(("NEW", "o"), ("OLD", "o"), pg=True))
    _trigger_function(
        "tracker_count_item_updated",
        "delta_id bigint; delta_dataset bigint := NEW.dataset_id;",
        f"""
    INSERT INTO dataset_counts (dataset_id, {_COLUMNS})
    SELECT NEW.dataset_id, {update_deltas} FROM objects o WHERE o.id = NEW.object_id
    RETURNING id INTO delta_id;
    {compact_dataset}
""",
    )
    op.execute(
        "CREATE TRIGGER tracker_count_item_updated AFTER UPDATE OF state, answer, answer_etag "
        f"ON items FOR EACH ROW WHEN ({_ITEM_CHANGED}) "
        "EXECUTE FUNCTION tracker_count_item_updated()"
    )
    _trigger_function(
        "tracker_count_objects_inserted",
        "delta_id bigint; delta_source bigint;",
        f"""
    FOR delta_id, delta_source IN
        INSERT INTO source_counts (source_id, listed, deleted)
        SELECT source_id, count(*), count(deleted_at) FROM inserted GROUP BY source_id
        RETURNING id, source_id
    LOOP
        IF delta_id % {_COMPACT_EVERY} = 0 THEN
            PERFORM tracker_compact_source_counts(delta_source);
        END IF;
    END LOOP;
""",
    )
    _after_insert_statement("tracker_count_objects_inserted", "objects")
    object_deltas = ", ".join(_delta(("r", "NEW"), ("r", "OLD"), pg=True))
    _trigger_function(
        "tracker_count_object_updated",
        "delta_id bigint; delta_dataset bigint;",
        f"""
    IF (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL) THEN
        INSERT INTO source_counts (source_id, deleted) VALUES (NEW.source_id,
            (NEW.deleted_at IS NOT NULL)::int - (OLD.deleted_at IS NOT NULL)::int)
        RETURNING id INTO delta_id;
        IF delta_id % {_COMPACT_EVERY} = 0 THEN
            PERFORM tracker_compact_source_counts(NEW.source_id);
        END IF;
    END IF;
    -- The object's row in each dataset of the source, through (dataset_id, object_id).
    FOR delta_id, delta_dataset IN
        INSERT INTO dataset_counts (dataset_id, {_COLUMNS})
        SELECT r.dataset_id, {object_deltas}
        FROM datasets ds JOIN items r ON r.dataset_id = ds.id AND r.object_id = NEW.id
        WHERE ds.source_id = NEW.source_id
        RETURNING id, dataset_id
    LOOP {compact_dataset} END LOOP;
""",
    )
    op.execute(
        "CREATE TRIGGER tracker_count_object_updated AFTER UPDATE OF deleted_at, etag "
        f"ON objects FOR EACH ROW WHEN ({_OBJECT_CHANGED}) "
        "EXECUTE FUNCTION tracker_count_object_updated()"
    )


_PG_TRIGGERS = (
    ("tracker_count_items_inserted", "items"),
    ("tracker_count_item_updated", "items"),
    ("tracker_count_objects_inserted", "objects"),
    ("tracker_count_object_updated", "objects"),
)
_PG_FUNCTIONS = (
    "tracker_count_items_inserted()",
    "tracker_count_item_updated()",
    "tracker_count_objects_inserted()",
    "tracker_count_object_updated()",
    "tracker_compact_dataset_counts(bigint)",
    "tracker_compact_source_counts(bigint)",
)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    _tables()
    _fill(pg)
    if pg:
        _pg_upgrade()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for trigger, table in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        for function in _PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {function}")
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.drop_index("ix_dataset_counts_dataset_id", table_name="dataset_counts")
    op.drop_table("dataset_counts")
    op.drop_index("ix_source_counts_source_id", table_name="source_counts")
    op.drop_table("source_counts")

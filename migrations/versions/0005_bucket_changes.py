"""bucket changes: deleted and changed objects, complete-pass ids, S3 event ordering

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-24

Columns only (all nullable or with a server default), plus one partial index: nothing is
rewritten. Answers recorded before this revision get the ETag their object has now, so that
an overwrite from here on is detected. The downgrade drops the columns (every row kept):
what is deleted or changed is forgotten (deleted keys become servable again).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("listing_cursors") as batch_op:
        batch_op.add_column(sa.Column("pass_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("objects") as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("seen_pass", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("version_id", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("event_sequencer", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("event_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_objects_deleted",
        "objects",
        ["source_id", "id"],
        sqlite_where=_DELETED,
        postgresql_where=_DELETED,
    )
    with op.batch_alter_table("items") as batch_op:
        batch_op.add_column(sa.Column("answer_etag", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("answer_version_id", sa.String(length=1024), nullable=True))
    with op.batch_alter_table("listing_shards") as batch_op:
        batch_op.add_column(sa.Column("pass_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE items SET answer_etag = "
        "(SELECT objects.etag FROM objects WHERE objects.id = items.object_id) "
        "WHERE answer IS NOT NULL"
    )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on both backends (SQLite >= 3.35, which the tracker needs):
    # a batch "move and copy" of `objects` on SQLite would drop the table its items rows
    # cascade from, deleting every answer.
    op.drop_index("ix_objects_deleted", table_name="objects")
    for table, columns in (
        ("listing_shards", ("pass_id",)),
        ("items", ("answer_version_id", "answer_etag")),
        ("objects", ("event_at", "event_sequencer", "version_id", "seen_pass", "deleted_at")),
        ("listing_cursors", ("last_event_at", "pass_seq")),
    ):
        for column in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")

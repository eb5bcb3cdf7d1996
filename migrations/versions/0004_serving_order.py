"""serving order: ranks on items, the order a dataset is ranked for, key priorities,
and the owner an answer came through (per-annotator reporting)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Existing data carries over unchanged: every dataset keeps listing order (`ranked_as`
NULL, ranks NULL). A dataset's pending rows are ranked the first time a stream asks for
another order (`Store.set_order`), so no rank has to be computed here. Answers recorded
before this revision have no `answered_via` (per-annotator tables show no process for
them). The downgrade drops the new columns, index and table: datasets go back to listing
order and the priorities are forgotten.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ANSWERED = sa.text("answer IS NOT NULL")
_UNRANKED = sa.text("state = 'pending' AND rank IS NULL")


def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy): adding nullable columns rewrites no row, even on
    # SQLite, so a 10M-key items table migrates in an instant.
    op.add_column("datasets", sa.Column("ranked_as", sa.String(length=64), nullable=True))
    op.add_column("items", sa.Column("rank", sa.Float(precision=53), nullable=True))
    op.add_column("items", sa.Column("answered_via", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_items_rank", "items", ["dataset_id", "state", "rank", "object_id"], unique=False
    )
    op.create_index(
        "ix_items_unranked",
        "items",
        ["dataset_id"],
        unique=False,
        sqlite_where=_UNRANKED,
        postgresql_where=_UNRANKED,
    )
    op.create_index(
        "ix_items_sessions",
        "items",
        ["dataset_id", "session_id", "annotated_at", "answer"],
        unique=False,
        sqlite_where=_ANSWERED,
        postgresql_where=_ANSWERED,
    )
    op.create_table(
        "key_priorities",
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("priority", sa.Float(precision=53), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_key_priorities_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", "key", name=op.f("pk_key_priorities")),
    )


def downgrade() -> None:
    op.drop_table("key_priorities")
    op.drop_index("ix_items_sessions", table_name="items")
    op.drop_index("ix_items_unranked", table_name="items")
    op.drop_index("ix_items_rank", table_name="items")
    # SQLite >= 3.35 drops an unindexed column in place; a batch copy would lose the
    # partial indexes' WHERE clauses on reflection.
    op.drop_column("items", "answered_via")
    op.drop_column("items", "rank")
    op.drop_column("datasets", "ranked_as")

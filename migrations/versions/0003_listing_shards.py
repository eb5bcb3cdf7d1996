"""listing_shards: per-shard cursors of a parallel listing (`tracker sync --parallel N`)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

A new table only: nothing existing changes, so the downgrade drops it (a parallel listing
in progress then starts again from its source's cursor).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "listing_shards",
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("plan", sa.Integer(), server_default="1", nullable=False),
        sa.Column("start_after", sa.String(length=1024), nullable=True),
        sa.Column("end_key", sa.String(length=1024), nullable=True),
        sa.Column("continuation_token", sa.Text(), nullable=True),
        sa.Column("last_key", sa.String(length=1024), nullable=True),
        sa.Column("pages_listed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("keys_listed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("exhausted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generation", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_listing_shards_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", "shard", name=op.f("pk_listing_shards")),
    )


def downgrade() -> None:
    op.drop_table("listing_shards")

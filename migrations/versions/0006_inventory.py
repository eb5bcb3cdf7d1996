"""inventory_ingests: S3 Inventory reports read into a source, and how far each got

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-24

A new table only: nothing existing changes, so the downgrade drops it (an ingestion in
progress then starts its report again; its keys, already recorded, stay and are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_ingests",
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("manifest", sa.String(length=1104), nullable=False),
        sa.Column("snapshot_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("file_index", sa.Integer(), server_default="0", nullable=False),
        sa.Column("row_offset", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("keys_recorded", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("max_key", sa.String(length=1024), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_inventory_ingests_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", "manifest", name=op.f("pk_inventory_ingests")),
    )


def downgrade() -> None:
    op.drop_table("inventory_ingests")

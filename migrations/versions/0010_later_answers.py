"""later answers: the distinct later answers counted for a key, so a replay counts once

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

One nullable column, `items.later_answers`: the (answer, session) pairs counted in
`answer_count` after the first answer (`tracker.records.later_answers_text`). NULL for every
row at first: an answer counted before this revision is not known, so its replay after the
upgrade counts once more (as before the upgrade), and then never again. ALTER TABLE ... ADD
COLUMN on both backends: no table is rewritten. The downgrade drops it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("later_answers", sa.Text(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on both backends (SQLite >= 3.35): a batch "move and
    # copy" of `items` on SQLite would rewrite every row.
    op.execute("ALTER TABLE items DROP COLUMN later_answers")

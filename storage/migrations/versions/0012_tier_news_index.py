"""tier news index: the members whose tier differs from the one they were last told about
(tier <> tier_announced), a handful at any time, found by a partial index instead of a scan of
every member each minute

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NEWS_DUE = sa.text("tier <> tier_announced")


def upgrade() -> None:
    op.create_index(
        "ix_members_tier_news",
        "members",
        ["id"],
        sqlite_where=NEWS_DUE,
        postgresql_where=NEWS_DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_members_tier_news", table_name="members")

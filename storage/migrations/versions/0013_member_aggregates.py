"""per-member aggregates that do not grow with history: the member's count of journal entries
(history pages tell "page X of Y" without counting them), an index of each member's usable lots
(the lots spent or burnt to zero are not in it), and the purchases' index carrying `qualifying`
(the tier window's spend is read from the index alone)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_USABLE = "status = 'active' AND remaining > 0"


def upgrade() -> None:
    # Plain ALTER TABLE on both databases: a batch (SQLite's copy of the table) would lose the
    # expression index ix_members_username_lower, which SQLite cannot reflect.
    op.add_column(
        "members", sa.Column("entries_count", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(
        "UPDATE members SET entries_count = "
        "(SELECT COUNT(*) FROM entries WHERE entries.member_id = members.id)"
    )
    op.create_index(
        "ix_lots_member_usable",
        "lots",
        ["member_id", "status", "expires_at", "remaining"],
        sqlite_where=sa.text(_USABLE),
        postgresql_where=sa.text(_USABLE),
    )
    op.create_index(
        "ix_purchases_member_spend", "purchases", ["member_id", "created_at", "qualifying"]
    )
    op.drop_index("ix_purchases_member_created", table_name="purchases")


def downgrade() -> None:
    op.create_index("ix_purchases_member_created", "purchases", ["member_id", "created_at"])
    op.drop_index("ix_purchases_member_spend", table_name="purchases")
    op.drop_index("ix_lots_member_usable", table_name="lots")
    op.execute("ALTER TABLE members DROP COLUMN entries_count")  # SQLite >= 3.35

"""username index: members and staff are found by @username case-insensitively
(lower(username) = ...), which scanned the whole members table (110 ms at 200,000 members)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_members_username_lower", "members", [sa.text("lower(username)")])
    op.create_index(
        "ix_staff_languages_username_lower", "staff_languages", [sa.text("lower(username)")]
    )


def downgrade() -> None:
    op.drop_index("ix_staff_languages_username_lower", table_name="staff_languages")
    op.drop_index("ix_members_username_lower", table_name="members")

"""staff names: the @username and first name a staff member's Telegram was last seen with,
so that admins find and list staff who are not members by name

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_languages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("first_name", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_languages", schema=None) as batch_op:
        batch_op.drop_column("first_name")
        batch_op.drop_column("username")

"""redemption requests remember the cashier's waiting message, to take its [Cancel] away when
the request ends

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("redemption_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cashier_message_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("redemption_requests", schema=None) as batch_op:
        batch_op.drop_column("cashier_message_id")

"""support desk: answers to tickets; the languages of staff and of a redemption's cashier

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answer", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("closed_by", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("redemption_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cashier_language", sa.String(length=8), nullable=True))
    op.create_table(
        "staff_languages",
        sa.Column("telegram_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("telegram_id", name=op.f("pk_staff_languages")),
    )


def downgrade() -> None:
    op.drop_table("staff_languages")
    with op.batch_alter_table("redemption_requests", schema=None) as batch_op:
        batch_op.drop_column("cashier_language")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("closed_by")
        batch_op.drop_column("answer")

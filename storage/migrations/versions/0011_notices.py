"""notices and claims: an outbox row may be a notice (a kind and its data, rendered in the
member's language when it is sent) written in the transaction of the change it tells of; a
claimed row carries the claiming sender's epoch, and `outbox_lease` hands out the epochs (a
sender that takes over voids the claims of older ones at once)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("payload", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("claim_epoch", sa.Integer(), nullable=True))
    op.create_table(
        "outbox_lease",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("taken_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("outbox_lease")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("claim_epoch")
        batch_op.drop_column("payload")
        batch_op.drop_column("kind")

"""broadcasts: a marketer's broadcasts, their members (recipients and control group), and an
index of the outbox by broadcast

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("segment_name", sa.String(length=100), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("photo", sa.String(length=256), nullable=True),
        sa.Column("button_text", sa.String(length=64), nullable=True),
        sa.Column("button_url", sa.String(length=512), nullable=True),
        sa.Column("control_percent", sa.Integer(), nullable=False),
        sa.Column("gift_points", sa.Integer(), server_default="0", nullable=False),
        sa.Column("gift_days", sa.Integer(), server_default="14", nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("send_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.Integer(), server_default="0", nullable=False),
        sa.Column("control", sa.Integer(), server_default="0", nullable=False),
        sa.Column("recipients", sa.Integer(), server_default="0", nullable=False),
        sa.Column("fed_through", sa.Integer(), server_default="0", nullable=False),
        sa.Column("fed_all", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("progress_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("progress_message_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
        sa.UniqueConstraint("public_id", name=op.f("uq_broadcasts_public_id")),
    )
    op.create_index("ix_broadcasts_status", "broadcasts", ["status", "send_at"], unique=False)
    op.create_table(
        "broadcast_members",
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("control", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_members_broadcast_id_broadcasts"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_broadcast_members_member_id_members")
        ),
        sa.PrimaryKeyConstraint("broadcast_id", "member_id", name=op.f("pk_broadcast_members")),
    )
    op.create_index(
        "ix_outbox_broadcast",
        "outbox",
        ["broadcast_id", "status"],
        unique=False,
        sqlite_where=sa.text("broadcast_id IS NOT NULL"),
        postgresql_where=sa.text("broadcast_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_broadcast", table_name="outbox")
    op.drop_table("broadcast_members")
    op.drop_index("ix_broadcasts_status", table_name="broadcasts")
    op.drop_table("broadcasts")

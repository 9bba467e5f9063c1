"""ledger: members, operations, lots, entries, purchases

Revision ID: 0001
Revises:
Create Date: 2026-11-24 04:00:03.505565
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("card_number", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("first_name", sa.String(length=128), nullable=True),
        sa.Column("last_name", sa.String(length=128), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), server_default="ru", nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="Europe/Moscow", nullable=False),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("birthday_set_at", sa.DateTime(), nullable=True),
        sa.Column("referral_code", sa.String(length=16), nullable=False),
        sa.Column("referred_by", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("notify_reminders", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("notify_tier", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("notify_offers", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("unreachable", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("consent_at", sa.DateTime(), nullable=True),
        sa.Column("erased_at", sa.DateTime(), nullable=True),
        sa.Column("last_purchase_at", sa.DateTime(), nullable=True),
        sa.Column("balance", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pending", sa.Integer(), server_default="0", nullable=False),
        sa.Column("debt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tier", sa.String(length=16), server_default="base", nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_members_balance_not_negative")),
        sa.CheckConstraint("debt >= 0", name=op.f("ck_members_debt_not_negative")),
        sa.CheckConstraint("pending >= 0", name=op.f("ck_members_pending_not_negative")),
        sa.ForeignKeyConstraint(
            ["referred_by"], ["members.id"], name=op.f("fk_members_referred_by_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("card_number", name=op.f("uq_members_card_number")),
        sa.UniqueConstraint("phone", name=op.f("uq_members_phone")),
        sa.UniqueConstraint("referral_code", name=op.f("uq_members_referral_code")),
        sa.UniqueConstraint("telegram_id", name=op.f("uq_members_telegram_id")),
    )
    op.create_table(
        "lots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("available_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= points", name=op.f("ck_lots_remaining_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_lots_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
    )
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_lots_member_open", ["member_id", "status", "expires_at"], unique=False
        )
        batch_op.create_index("ix_lots_status_available", ["status", "available_at"], unique=False)
        batch_op.create_index("ix_lots_status_expires", ["status", "expires_at"], unique=False)

    op.create_table(
        "operations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_operations_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint("key", name=op.f("uq_operations_key")),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("receipt_id", sa.String(length=100), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("redeemed", sa.Integer(), nullable=False),
        sa.Column("accrued", sa.Integer(), nullable=False),
        sa.Column("earn_entry_id", sa.Integer(), nullable=True),
        sa.Column("redeem_entry_id", sa.Integer(), nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reversed_accrued", sa.Integer(), server_default="0", nullable=False),
        sa.Column("returned_redeemed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("qualifying", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "refunded_amount <= amount", name=op.f("ck_purchases_refund_within_amount")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_purchases_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
        sa.UniqueConstraint("receipt_id", name=op.f("uq_purchases_receipt_id")),
    )
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchases_member_created", ["member_id", "created_at"], unique=False
        )

    op.create_table(
        "referral_rewards",
        sa.Column("invited_phone_hash", sa.String(length=64), nullable=False),
        sa.Column("inviter_id", sa.Integer(), nullable=False),
        sa.Column("invited_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invited_id"], ["members.id"], name=op.f("fk_referral_rewards_invited_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["inviter_id"], ["members.id"], name=op.f("fk_referral_rewards_inviter_id_members")
        ),
        sa.PrimaryKeyConstraint("invited_phone_hash", name=op.f("pk_referral_rewards")),
    )
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), server_default="0", nullable=False),
        sa.Column("debt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("reversed_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_entries_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_entries_operation_id_operations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entries")),
    )
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.create_index("ix_entries_member_id", ["member_id", "id"], unique=False)

    op.create_table(
        "spends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("returned", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "returned >= 0 AND returned <= points", name=op.f("ck_spends_returned_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_spends_entry_id_entries")
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name=op.f("fk_spends_lot_id_lots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spends")),
    )
    with op.batch_alter_table("spends", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spends_entry_id"), ["entry_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("spends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spends_entry_id"))

    op.drop_table("spends")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_member_id")

    op.drop_table("entries")
    op.drop_table("referral_rewards")
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.drop_index("ix_purchases_member_created")

    op.drop_table("purchases")
    op.drop_table("operations")
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index("ix_lots_status_expires")
        batch_op.drop_index("ix_lots_status_available")
        batch_op.drop_index("ix_lots_member_open")

    op.drop_table("lots")
    op.drop_table("members")

"""support desk: answers to tickets; the languages of staff and of a redemption's cashier;
on PostgreSQL, a notification whenever an API key changes (processes keep verified keys)

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


    if op.get_bind().dialect.name == "postgresql":
        # Whatever revokes or deletes a key (the CLI, psql, a restored backup) tells every
        # process that keeps verified keys in memory (api/keys.py).
        op.execute(
            "CREATE FUNCTION loyalty_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_notify('loyalty_api_key_revoked', OLD.id::text); RETURN NULL; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER api_key_changed AFTER UPDATE OR DELETE ON api_keys "
            "FOR EACH ROW EXECUTE FUNCTION loyalty_api_key_changed()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER api_key_changed ON api_keys")
        op.execute("DROP FUNCTION loyalty_api_key_changed()")
    op.drop_table("staff_languages")
    with op.batch_alter_table("redemption_requests", schema=None) as batch_op:
        batch_op.drop_column("cashier_language")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("closed_by")
        batch_op.drop_column("answer")

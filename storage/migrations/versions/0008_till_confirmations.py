"""till confirmations: a redemption request asked for by a till over the HTTP API names its key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("redemption_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_redemption_requests_api_key_id_api_keys"),
            "api_keys",
            ["api_key_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("redemption_requests", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_redemption_requests_api_key_id_api_keys"), type_="foreignkey"
        )
        batch_op.drop_column("api_key_id")

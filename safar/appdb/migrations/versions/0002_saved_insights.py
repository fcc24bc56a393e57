"""Saved insights: funnel, retention and trends specs kept under a name.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_insights",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("kind", "name", name="uq_saved_insights_kind_name"),
        sa.CheckConstraint(
            "kind in ('funnel', 'retention', 'trends')", name="ck_saved_insights_kind"
        ),
    )


def downgrade() -> None:
    op.drop_table("saved_insights")

"""Segments defined in the app: SQL, builder trees and static lists with their members.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("slug", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("owner", sa.String(200), nullable=False, server_default=""),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("definition", sa.Text),
        sa.Column("refresh", sa.String(16), nullable=False, server_default="live"),
        sa.Column("list_digest", sa.String(64)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("kind in ('sql', 'builder', 'static')", name="ck_segments_kind"),
    )
    op.create_table(
        "segment_list_members",
        sa.Column(
            "slug",
            sa.String(63),
            sa.ForeignKey("segments.slug", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("person_id", sa.String(256), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("segment_list_members")
    op.drop_table("segments")

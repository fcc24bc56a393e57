"""Table definitions for SQLAlchemy Core queries; the migrations are the source of truth.

Timestamps are naive UTC, as everywhere in Safar.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("write_key", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
)

INSIGHT_KINDS = ("funnel", "retention", "trends")

saved_insights = sa.Table(
    "saved_insights",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("kind", "name", name="uq_saved_insights_kind_name"),
    sa.CheckConstraint("kind in ('funnel', 'retention', 'trends')", name="ck_saved_insights_kind"),
)

SEGMENT_KINDS = ("sql", "builder", "static")

segments = sa.Table(
    "segments",
    metadata,
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

segment_list_members = sa.Table(
    "segment_list_members",
    metadata,
    sa.Column(
        "slug", sa.String(63), sa.ForeignKey("segments.slug", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("person_id", sa.String(256), primary_key=True),
)

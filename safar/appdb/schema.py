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

DELIVERY_STATES = ("queued", "sending", "sent", "delivered", "failed", "bounced", "dropped")

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("person_id", sa.String(256), nullable=False),
    sa.Column("user_id", sa.String(256)),
    sa.Column("address", sa.Text),
    sa.Column("time_zone", sa.String(64)),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.String(128)),
    sa.Column("journey_id", sa.String(128)),
    sa.Column("ttl_seconds", sa.Integer),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("in_doubt", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("not_before", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("provider", sa.String(32)),
    sa.Column("provider_message_id", sa.String(256)),
    sa.Column("detail", sa.Text),
    sa.Column("response", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.CheckConstraint(
        "state in ('queued', 'sending', 'sent', 'delivered', 'failed', 'bounced', 'dropped')",
        name="ck_outbox_state",
    ),
    sa.Index("ix_outbox_due", "state", "not_before"),
    sa.Index("ix_outbox_person_sent", "person_id", "sent_at"),
    sa.Index("ix_outbox_provider_message", "provider", "provider_message_id"),
)

delivery_events = sa.Table(
    "delivery_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("delivery_id", sa.String(64), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("published_at", sa.DateTime),
    sa.Index("ix_delivery_events_unpublished", "published_at", "id"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("person_id", sa.String(256), primary_key=True),
    sa.Column("category", sa.String(64), primary_key=True),
    sa.Column("unsubscribed_at", sa.DateTime, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("delivery_id", sa.String(64)),
)

dead_addresses = sa.Table(
    "dead_addresses",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("address", sa.String(1024), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("delivery_id", sa.String(64)),
    sa.Column("dead_at", sa.DateTime, nullable=False),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("person_id", sa.String(256), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime),
    sa.Column("seen_at", sa.DateTime),
    sa.Column("clicked_at", sa.DateTime),
    sa.Column("dismissed_at", sa.DateTime),
    sa.Index("ix_inbox_person", "person_id", "created_at"),
)

delivery_settings = sa.Table(
    "delivery_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

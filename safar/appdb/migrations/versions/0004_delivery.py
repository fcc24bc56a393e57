"""Delivery: the outbox, its events, subscriptions, dead addresses, the in-app inbox, settings.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATES = "'queued', 'sending', 'sent', 'delivered', 'failed', 'bounced', 'dropped'"


def upgrade() -> None:
    op.create_table(
        "outbox",
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
        sa.CheckConstraint(f"state in ({STATES})", name="ck_outbox_state"),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "not_before"])
    op.create_index("ix_outbox_person_sent", "outbox", ["person_id", "sent_at"])
    op.create_index("ix_outbox_provider_message", "outbox", ["provider", "provider_message_id"])
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("published_at", sa.DateTime),
    )
    op.create_index("ix_delivery_events_unpublished", "delivery_events", ["published_at", "id"])
    op.create_table(
        "subscriptions",
        sa.Column("person_id", sa.String(256), primary_key=True),
        sa.Column("category", sa.String(64), primary_key=True),
        sa.Column("unsubscribed_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("delivery_id", sa.String(64)),
    )
    op.create_table(
        "dead_addresses",
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("address", sa.String(1024), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("delivery_id", sa.String(64)),
        sa.Column("dead_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "inbox",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(256), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime),
        sa.Column("seen_at", sa.DateTime),
        sa.Column("clicked_at", sa.DateTime),
        sa.Column("dismissed_at", sa.DateTime),
    )
    op.create_index("ix_inbox_person", "inbox", ["person_id", "created_at"])
    op.create_table(
        "delivery_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("delivery_settings")
    op.drop_index("ix_inbox_person", table_name="inbox")
    op.drop_table("inbox")
    op.drop_table("dead_addresses")
    op.drop_table("subscriptions")
    op.drop_index("ix_delivery_events_unpublished", table_name="delivery_events")
    op.drop_table("delivery_events")
    op.drop_index("ix_outbox_provider_message", table_name="outbox")
    op.drop_index("ix_outbox_person_sent", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")

"""Delivery: the policies every message passes before a channel sends it, and the outbox."""

"""Delivery: the outbox is sent from a sensor, as it fills, without a run launch."""

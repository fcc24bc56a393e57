"""Channels: one module per way of reaching a person, behind the ``Sender`` protocol of ``base``."""

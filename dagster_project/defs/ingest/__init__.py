"""The ingest sensor: new landing files start a micro-batch."""

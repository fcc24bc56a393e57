"""Dagster definitions for Safar: thin wiring over :mod:`safar` (see ``defs/``)."""

"""All segments in one list: the files in ``segments_sql/`` and those made in the app."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from safar.appdb import segments as app_segments
from safar.segments.definitions import SegmentDefinition, load_file_segments, merge_segments
from safar.segments.evaluate import StaticMembers


def load_segments(engine: sa.Engine, directory: Path | None = None) -> list[SegmentDefinition]:
    """Every segment, by slug.

    Raises:
        DefinitionError: a bad file, or a slug defined both in a file and in the app.
    """
    return merge_segments(load_file_segments(directory), app_segments.list_segments(engine))


def file_slugs(directory: Path | None = None) -> frozenset[str]:
    """The slugs that belong to files (the app may not reuse them)."""
    return frozenset(d.slug for d in load_file_segments(directory))


def static_members(engine: sa.Engine) -> StaticMembers:
    """Reads a static list's members from the app DB."""
    return lambda slug: app_segments.list_members(engine, slug)

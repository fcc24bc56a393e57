"""The ingest sensor's cursor: a high-watermark file id plus the ids inside a lookback window.

A writer in another process names its file when it starts writing and renames it into place
when done, so a slow write can appear *after* a newer id was seen. Re-listing a window below
the watermark and skipping the ids already handled catches it without handling anything twice.
Pure functions, so the rules are unit-tested without Dagster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

LOOKBACK_MS = 120_000


def lookback_floor(file_id: str, lookback_ms: int = LOOKBACK_MS) -> str:
    """The smallest id prefix still inside the lookback window below ``file_id``.

    File ids start with 13 digits of epoch milliseconds, so ids compare as strings.

    Example:
        >>> lookback_floor("170000000012300000-abcdef0", lookback_ms=1000)
        '1699999999123'
    """
    return f"{max(int(file_id[:13]) - lookback_ms, 0):013d}"


@dataclass(frozen=True)
class LandingCursor:
    """What the sensor has handled: a high-watermark plus the ids inside its lookback window.

    ``profiles_owed_since`` (epoch seconds) is set while the live lane has refreshed the event
    models for handled files but not yet the profile models (``safar.micro_batch``);
    ``lane_closed_until`` (epoch seconds) while batches go to runs because a refresh in place
    took too long for a sensor tick.
    """

    last_file_id: str | None = None
    recent_file_ids: frozenset[str] = field(default_factory=frozenset)
    profiles_owed_since: float | None = None
    lane_closed_until: float | None = None

    @classmethod
    def loads(cls, raw: str | None) -> LandingCursor:
        """Parse a cursor written by :meth:`dumps` (``None`` or empty: nothing handled yet).

        Example:
            >>> LandingCursor.loads(None) == LandingCursor()
            True
            >>> cursor = LandingCursor.loads('{"last_file_id": "b", "recent_file_ids": ["a", "b"]}')
            >>> cursor.last_file_id, sorted(cursor.recent_file_ids)
            ('b', ['a', 'b'])
        """
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            data.get("last_file_id"),
            frozenset(data.get("recent_file_ids", ())),
            data.get("profiles_owed_since"),
            data.get("lane_closed_until"),
        )

    def dumps(self) -> str:
        """The cursor as JSON with sorted ids, so equal cursors serialize identically."""
        data: dict = {
            "last_file_id": self.last_file_id,
            "recent_file_ids": sorted(self.recent_file_ids),
        }
        for key in ("profiles_owed_since", "lane_closed_until"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return json.dumps(data)

    def floor(self) -> str | None:
        """Only files with an id above this can be new (``None``: every file can)."""
        return lookback_floor(self.last_file_id) if self.last_file_id else None

    def unseen(self, file_ids: list[str]) -> list[str]:
        """The ids in ``file_ids`` this cursor has not handled, in order."""
        floor = self.floor()
        return [
            i for i in file_ids if i not in self.recent_file_ids and (floor is None or i > floor)
        ]

    def advance(self, new_ids: list[str]) -> LandingCursor:
        """The cursor after handling ``new_ids``: new watermark, window trimmed below it."""
        last = max([*new_ids, *([self.last_file_id] if self.last_file_id else [])])
        floor = lookback_floor(last)
        recent = frozenset(i for i in self.recent_file_ids | set(new_ids) if i > floor)
        return replace(self, last_file_id=last, recent_file_ids=recent)

    def owing_profiles(self, now: float) -> LandingCursor:
        """The cursor once events are ahead of profiles (since ``now``, unless already).

        Example:
            >>> LandingCursor("b").owing_profiles(10.0).owing_profiles(20.0).profiles_owed_since
            10.0
        """
        return replace(self, profiles_owed_since=self.profiles_owed_since or now)

    def profiles_settled(self) -> LandingCursor:
        """The cursor once profiles have caught up with events."""
        return replace(self, profiles_owed_since=None)

    def lane_closed(self, now: float) -> bool:
        """Whether batches go to runs at ``now`` (see ``lane_closed_until``)."""
        return self.lane_closed_until is not None and now < self.lane_closed_until

    def closing_lane(self, until: float) -> LandingCursor:
        """The cursor with the live lane closed until ``until`` (epoch seconds)."""
        return replace(self, lane_closed_until=until)

"""Segment messages → an identity-resolved event log for analytics (``--events PATH``).

Identity follows ``docs/warehouse.md`` and applies retroactively to every event:

- a message carrying both ``userId`` and ``anonymousId`` (an ``identify``, or a ``track`` sent
  while signed in) links the anonymous id to that user; an anonymous id linked to several
  users belongs to the first;
- ``alias`` (``previousId`` → ``userId``) merges the previous id into the user; chains resolve
  to the final target;
- a person's id is their resolved user id; anonymous-only people keep their anonymous id.

Person properties are the traits of the person's identify calls, later values winning (by
timestamp, then file order). Only behavioural messages (track, page, screen) become events.
A message without a timestamp or an id is skipped; a malformed timestamp is an error naming
the message's (1-based) position.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from safar.messages import parse_timestamp

BEHAVIOURAL_TYPES = frozenset({"track", "page", "screen"})


@dataclass(frozen=True)
class Event:
    """One behavioural event of a resolved person; ``timestamp`` is naive UTC."""

    person_id: str
    event: str
    timestamp: datetime
    properties: Mapping[str, Any]
    type: str
    position: int
    """The message's line in the input: breaks timestamp ties deterministically."""


@dataclass(frozen=True)
class EventLog:
    """Events in (timestamp, position) order and each person's latest traits."""

    events: tuple[Event, ...]
    person_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _event_name(message: Mapping[str, Any]) -> str:
    if message.get("type") == "track":
        return str(message.get("event") or "")
    return str(message.get("name") or (message.get("properties") or {}).get("name") or "")


def build_event_log(messages: Iterable[Mapping[str, Any]]) -> EventLog:
    """Resolve identities and keep the behavioural events.

    Args:
        messages: decoded Segment messages, in input order.

    Returns:
        The event log.

    Example:
        >>> log = build_event_log([
        ...     {"type": "track", "event": "view", "anonymousId": "a1",
        ...      "timestamp": "2026-01-01T00:00:00Z"},
        ...     {"type": "identify", "anonymousId": "a1", "userId": "u1",
        ...      "traits": {"plan": "pro"}, "timestamp": "2026-01-02T00:00:00Z"},
        ...     {"type": "alias", "previousId": "u1", "userId": "u2",
        ...      "timestamp": "2026-01-03T00:00:00Z"},
        ... ])
        >>> [(e.person_id, e.event) for e in log.events], dict(log.person_properties)
        ([('u2', 'view')], {'u2': {'plan': 'pro'}})
    """
    messages = list(messages)
    anonymous_owner: dict[str, str] = {}
    alias_target: dict[str, str] = {}
    for message in messages:
        user_id, anonymous_id = _id(message.get("userId")), _id(message.get("anonymousId"))
        if message.get("type") == "alias":
            previous_id = _id(message.get("previousId"))
            if previous_id is not None and user_id is not None and previous_id != user_id:
                alias_target.setdefault(previous_id, user_id)
        elif user_id is not None and anonymous_id is not None:
            anonymous_owner.setdefault(anonymous_id, user_id)

    def resolve(message: Mapping[str, Any]) -> str | None:
        user_id, anonymous_id = _id(message.get("userId")), _id(message.get("anonymousId"))
        person = user_id or (anonymous_owner.get(anonymous_id) if anonymous_id else None)
        person = person or anonymous_id
        seen = set()
        while person in alias_target and person not in seen:
            seen.add(person)
            person = alias_target[person]
        return person

    events: list[Event] = []
    traits: dict[str, list[tuple[datetime, int, Mapping[str, Any]]]] = {}
    for position, message in enumerate(messages):
        kind = message.get("type")
        person = resolve(message)
        raw_timestamp = message.get("timestamp") or message.get("originalTimestamp")
        try:
            timestamp = parse_timestamp(raw_timestamp)
        except ValueError as exc:
            raise ValueError(f"message {position + 1}: {exc}") from None
        if person is None or timestamp is None:
            continue
        if kind == "identify":
            values = message.get("traits") or (message.get("context") or {}).get("traits") or {}
            traits.setdefault(person, []).append((timestamp, position, values))
        elif kind in BEHAVIOURAL_TYPES:
            properties = message.get("properties") or {}
            name = _event_name(message)
            events.append(Event(person, name, timestamp, properties, kind, position))

    person_properties: dict[str, dict[str, Any]] = {}
    for person, calls in traits.items():
        merged: dict[str, Any] = {}
        for _, _, values in sorted(calls, key=lambda call: call[:2]):
            merged.update(values)
        person_properties[person] = merged
    events.sort(key=lambda e: (e.timestamp, e.position))
    return EventLog(tuple(events), person_properties)


def load_event_log(path: str | Path) -> EventLog:
    """Read a JSONL file of Segment messages (blank lines skipped) into an :class:`EventLog`.

    Args:
        path: the JSONL file.

    Returns:
        The event log, see :func:`build_event_log`.
    """
    with open(path, "rb") as file:
        return build_event_log(orjson.loads(line) for line in file if line.strip())

"""The workspace's delivery settings, kept in the app DB and checked before they are saved.

One JSON document (``delivery_settings`` row ``config``) holds the policies (DND, caps, minimum
gaps, throttles, time zone, week start), the marketing categories people can unsubscribe from,
retry limits and the provider of each channel. :func:`parse_config` turns it into typed
settings or says, for every problem, where it is and what is wrong — a settings page shows
them next to the fields. The signing secret of tracking and unsubscribe links is a separate
row, made once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from channels.base import CHANNELS
from safar.appdb.engine import dialect_insert
from safar.appdb.schema import delivery_settings
from safar.delivery.dispatcher import DispatchSettings
from safar.delivery.policy import Cap, DndWindow, MinGap, PolicySettings

CONFIG_KEY = "config"
SECRET_KEY = "tracking_secret"
PERIODS = ("day", "week", "month")
DEFAULT_CATEGORIES = ("promotions", "news", "reminders")


class ConfigError(ValueError):
    """Delivery settings with problems; ``problems`` lists (where, what) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {what}" for where, what in problems))


@dataclass(frozen=True)
class ProviderConfig:
    """Which provider sends a channel's messages, and its options (addresses, keys)."""

    provider: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryConfig:
    """Everything the dispatcher and the preference page need to know."""

    dispatch: DispatchSettings = DispatchSettings()
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def parse_config(data: Mapping[str, Any]) -> DeliveryConfig:
    """Typed settings from the stored JSON document; every problem is reported at once.

    Example:
        >>> config = parse_config({"dnd": {"start": "22:00", "end": "08:00"},
        ...                        "caps": [{"count": 2, "period": "day"}],
        ...                        "throttle_per_minute": {"sms": 600}})
        >>> config.dispatch.policy.dnd.start, config.dispatch.throttle_per_minute["sms"]
        (datetime.time(22, 0), 600)
        >>> parse_config({"caps": [{"count": 0, "period": "fortnight"}]})
        Traceback (most recent call last):
        ...
        safar.delivery.settings.ConfigError: caps[0].count: must be a whole number ≥ 1, not 0; \
caps[0].period: must be one of day, week, month, not 'fortnight'
    """
    problems: list[tuple[str, str]] = []
    zone = data.get("time_zone", "Asia/Tehran")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(("time_zone", f"{zone!r} is not a time zone name (like Asia/Tehran)"))
    week_starts_on = data.get("week_starts_on", 5)
    if week_starts_on not in range(7):
        problems.append(("week_starts_on", "must be 0 (Monday) … 6 (Sunday)"))
    dnd = _dnd(data.get("dnd"), problems)
    caps = tuple(
        cap
        for i, item in enumerate(_list(data, "caps", problems))
        if (cap := _cap(item, f"caps[{i}]", problems)) is not None
    )
    gaps = tuple(
        gap
        for i, item in enumerate(_list(data, "min_gaps", problems))
        if (gap := _gap(item, f"min_gaps[{i}]", problems)) is not None
    )
    throttles: dict[str, int] = {}
    for channel, rate in dict(data.get("throttle_per_minute") or {}).items():
        where = f"throttle_per_minute.{channel}"
        if channel not in CHANNELS:
            problems.append((where, f"unknown channel; channels are {', '.join(CHANNELS)}"))
        elif _count(rate) is None:
            problems.append((where, f"must be a whole number ≥ 1 per minute, not {rate!r}"))
        else:
            throttles[channel] = rate
    categories = data.get("categories", list(DEFAULT_CATEGORIES))
    if not isinstance(categories, list) or not all(
        isinstance(c, str) and c and c not in ("transactional", "*") for c in categories
    ):
        problems.append(("categories", "must be a list of names (not 'transactional' or '*')"))
        categories = list(DEFAULT_CATEGORIES)
    max_attempts = data.get("max_attempts", 8)
    if _count(max_attempts) is None:
        problems.append(("max_attempts", f"must be a whole number ≥ 1, not {max_attempts!r}"))
        max_attempts = 8
    providers: dict[str, ProviderConfig] = {}
    for channel, item in dict(data.get("providers") or {}).items():
        where = f"providers.{channel}"
        if channel not in CHANNELS:
            problems.append((where, f"unknown channel; channels are {', '.join(CHANNELS)}"))
        elif not isinstance(item, Mapping) or not isinstance(item.get("provider"), str):
            problems.append((where, 'must be {"provider": name, "options": {...}}'))
        else:
            providers[channel] = ProviderConfig(item["provider"], dict(item.get("options") or {}))
    if problems:
        raise ConfigError(problems)
    policy = PolicySettings(
        time_zone=str(zone), dnd=dnd, caps=caps, min_gaps=gaps, week_starts_on=week_starts_on
    )
    return DeliveryConfig(
        dispatch=DispatchSettings(
            policy=policy, throttle_per_minute=throttles, max_attempts=max_attempts
        ),
        categories=tuple(categories),
        providers=providers,
        raw=dict(data),
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _list(data: Mapping[str, Any], key: str, problems: list[tuple[str, str]]) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        problems.append((key, "must be a list"))
        return []
    return value


def _clock(value: Any, where: str, problems: list[tuple[str, str]]) -> time | None:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        problems.append((where, f"must be a time like 22:00, not {value!r}"))
        return None


def _dnd(value: Any, problems: list[tuple[str, str]]) -> DndWindow | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(("dnd", 'must be {"start": "22:00", "end": "08:00", "action": "queue"}'))
        return None
    start = _clock(value.get("start"), "dnd.start", problems)
    end = _clock(value.get("end"), "dnd.end", problems)
    action = value.get("action", "queue")
    if action not in ("queue", "drop"):
        problems.append(("dnd.action", f"must be queue or drop, not {action!r}"))
    if start is not None and start == end:
        problems.append(("dnd", "start and end are the same time; remove the window instead"))
    if start is None or end is None or action not in ("queue", "drop") or start == end:
        return None
    return DndWindow(start, end, action)


def _channel(item: Mapping[str, Any], where: str, problems: list[tuple[str, str]]) -> bool:
    channel = item.get("channel")
    if channel is not None and channel not in CHANNELS:
        problems.append((f"{where}.channel", f"unknown channel {channel!r}"))
        return False
    return True


def _cap(item: Any, where: str, problems: list[tuple[str, str]]) -> Cap | None:
    if not isinstance(item, Mapping):
        problems.append((where, 'must be {"count": N, "period": "day", "channel": null}'))
        return None
    count, period = item.get("count"), item.get("period")
    ok = _channel(item, where, problems)
    if _count(count) is None:
        problems.append((f"{where}.count", f"must be a whole number ≥ 1, not {count!r}"))
        ok = False
    if period not in PERIODS:
        problems.append((f"{where}.period", f"must be one of day, week, month, not {period!r}"))
        ok = False
    return Cap(count, period, item.get("channel")) if ok else None


def _gap(item: Any, where: str, problems: list[tuple[str, str]]) -> MinGap | None:
    if not isinstance(item, Mapping):
        problems.append((where, 'must be {"minutes": N, "channel": null}'))
        return None
    minutes = item.get("minutes")
    ok = _channel(item, where, problems)
    if _count(minutes) is None:
        problems.append((f"{where}.minutes", f"must be a whole number ≥ 1, not {minutes!r}"))
        ok = False
    return MinGap(timedelta(minutes=minutes), item.get("channel")) if ok else None


def load_config(engine: sa.Engine) -> DeliveryConfig:
    """The stored settings (defaults when none were saved)."""
    value = load_setting(engine, CONFIG_KEY)
    return parse_config(json.loads(value) if value else {})


def save_config(engine: sa.Engine, data: Mapping[str, Any]) -> DeliveryConfig:
    """Check and store new settings; nothing is stored when there is a problem."""
    config = parse_config(data)
    store_setting(engine, CONFIG_KEY, json.dumps(data, ensure_ascii=False, sort_keys=True))
    return config


def tracking_secret(engine: sa.Engine) -> str:
    """The secret that signs tracking and unsubscribe links, made on first use."""
    value = load_setting(engine, SECRET_KEY)
    if value:
        return value
    store_setting(engine, SECRET_KEY, secrets.token_urlsafe(32), replace=False)
    return tracking_secret(engine)


def load_setting(engine: sa.Engine, key: str) -> str | None:
    """One stored settings row's value, or None."""
    with engine.connect() as con:
        return con.execute(
            sa.select(delivery_settings.c.value).where(delivery_settings.c.key == key)
        ).scalar()


def store_setting(engine: sa.Engine, key: str, value: str, *, replace: bool = True) -> None:
    """Store one settings row; with ``replace=False`` an existing value is kept."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as con:
        statement = dialect_insert(con)(delivery_settings).values(
            key=key, value=value, updated_at=now
        )
        if replace:
            statement = statement.on_conflict_do_update(
                index_elements=[delivery_settings.c.key],
                set_={"value": value, "updated_at": now},
            )
        else:  # two processes making the secret at once: the first one wins
            statement = statement.on_conflict_do_nothing()
        con.execute(statement)

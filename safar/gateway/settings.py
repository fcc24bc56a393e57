"""The gateway's limits and timings, in one place, with Segment's limits as defaults."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from safar.messages import MAX_EVENT_BYTES

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR ranges, e.g. ``["127.0.0.1", "10.0.0.0/8"]``.

    Raises:
        ValueError: one of them is neither.

    Example:
        >>> [str(n) for n in parse_networks(["127.0.0.1", "10.0.0.0/8"])]
        ['127.0.0.1/32', '10.0.0.0/8']
    """
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway behaves; every field has a production default.

    Attributes:
        max_event_bytes: largest message (as JSON); Segment's limit is 32 KB.
        max_request_bytes: largest request body, before and after gunzip; Segment's is 500 KB.
        key_ttl_seconds: how long a write key lookup is cached, so a revoked key stops
            working within this many seconds without a database query per request.
        flush_interval_seconds: the oldest accepted event waits at most this long in the
            write-ahead log before its segment is closed and turned into a landing file.
        segment_max_bytes: a segment is also closed when it grows past this.
        max_pending_events: accepted events not yet in the landing zone, past which new
            requests get ``429`` (the landing zone is falling behind).
        trusted_proxies: peers whose ``X-Forwarded-For`` (and ``X-Forwarded-Proto``/``-Host``)
            are believed; empty means the TCP peer is the client.
    """

    max_event_bytes: int = MAX_EVENT_BYTES
    max_request_bytes: int = 500 * 1024
    key_ttl_seconds: float = 5.0
    flush_interval_seconds: float = 1.0
    segment_max_bytes: int = 64 * 1024 * 1024
    max_pending_events: int = 1_000_000
    trusted_proxies: tuple[IPNetwork, ...] = field(default_factory=tuple)

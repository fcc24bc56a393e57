"""Hypothesis strategies for Segment messages, well-formed and not (shared by the fuzz tests)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
timestamps = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        datetime.isoformat
    ),
    st.sampled_from(["2026-01-15T09:00:00Z", "2026-01-15T12:30:00+03:30", "1970-01-01", "x"]),
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "x"]),
            json_values,
        ),
        "event": st.one_of(st.text(max_size=10), json_values),
        "name": st.one_of(st.text(max_size=10), json_values),
        "userId": st.one_of(st.text(max_size=6), st.integers(), json_values),
        "anonymousId": st.one_of(st.text(max_size=6), json_values),
        "previousId": st.one_of(st.text(max_size=6), json_values),
        "groupId": st.one_of(st.text(max_size=6), st.integers()),
        "messageId": st.one_of(st.text(max_size=6), json_values),
        "timestamp": timestamps,
        "sentAt": timestamps,
        "properties": st.one_of(st.dictionaries(st.text(max_size=5), json_values), json_values),
        "traits": st.one_of(st.dictionaries(st.text(max_size=5), json_values), json_values),
        "context": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "device": st.dictionaries(
                        st.sampled_from(["id", "type", "token", "model"]), json_values
                    ),
                    "ip": json_values,
                    "traits": json_values,
                    "page": st.dictionaries(st.just("url"), json_values),
                },
            ),
            json_values,
        ),
    },
)


"""A message built from plausible and implausible parts alike."""

"""``/openapi.json`` describes what the gateway does, and fuzzing finds no 5xx.

The fuzz run sends hypothesis-made requests (messages well-formed and not, batches, raw
bytes, gzip, every auth style and content type) to every ingest path of a running gateway,
and checks each answer is below 500, is a status the description lists for that path, and
has the documented body.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import jsonschema
import pytest
from gateway_helpers import Gateway, basic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from message_strategies import json_values, messages

from safar.gateway.app import INGEST_ROUTES

INGEST_PATHS = [path for _, paths in INGEST_ROUTES.values() for path in paths]


@pytest.fixture(scope="module")
def spec(gateway: Gateway) -> dict[str, Any]:
    return httpx.get(f"{gateway.url}/openapi.json").json()


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    return jsonschema.Draft202012Validator({**schema, "components": spec["components"]})


def test_every_endpoint_is_described(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    for path in INGEST_PATHS:
        assert set(paths[path]) == {"post", "options"}, path
        post = paths[path]["post"]
        assert set(post["responses"]) == {"200", "400", "401", "415", "429", "503"}
        assert post["requestBody"]["content"].keys() == {"application/json", "text/plain"}
        assert {"basicAuth": []} in post["security"] and {} in post["security"]
    settings_path = paths["/v1/projects/{writeKey}/settings"]
    assert set(settings_path["get"]["responses"]) == {"200", "401"}
    assert set(spec["components"]["securitySchemes"]) == {"basicAuth", "writeKeyHeader"}


def test_documented_request_bodies_accept_what_sdks_send(spec: dict[str, Any]) -> None:
    schema = spec["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]
    validator = _validator(spec, schema["schema"])
    segment_python_batch = {
        "batch": [
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u1",
                "properties": {"revenue": 10},
                "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
                "timestamp": "2026-01-15T09:30:00.123+00:00",
                "messageId": "a1",
                "integrations": {},
            }
        ],
        "sentAt": "2026-01-15T09:30:01.000+00:00",
        "writeKey": "k",
    }
    validator.validate(segment_python_batch)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"batch": [{"type": "alias", "userId": "u1"}]})  # no previousId


_auth = st.sampled_from(["basic", "header", "body", "wrong", "none"])
_content_types = st.sampled_from(
    ["application/json", "text/plain;charset=UTF-8", None, "application/x-www-form-urlencoded"]
)
_bodies = st.one_of(
    messages,
    st.fixed_dictionaries(
        {"batch": st.lists(messages, max_size=5)},
        optional={"sentAt": json_values | st.just("2026-01-15T09:30:00Z"), "context": json_values},
    ),
    json_values,
)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(INGEST_PATHS),
    body=_bodies,
    raw=st.one_of(st.none(), st.binary(max_size=64)),
    auth=_auth,
    content_type=_content_types,
    gzipped=st.booleans(),
)
def test_fuzzed_requests_never_get_a_5xx_and_match_the_description(
    client: httpx.Client,
    spec: dict[str, Any],
    write_key: str,
    path: str,
    body: Any,
    raw: bytes | None,
    auth: str,
    content_type: str | None,
    gzipped: bool,
) -> None:
    headers: dict[str, str] = {}
    if auth == "basic":
        headers |= basic(write_key)
    elif auth == "header":
        headers["X-Write-Key"] = write_key
    elif auth == "wrong":
        headers |= basic("wrong-key")
    elif auth == "body" and isinstance(body, dict):
        body = {**body, "writeKey": write_key}
    if content_type:
        headers["Content-Type"] = content_type
    content = raw if raw is not None else json.dumps(body).encode()
    if gzipped:
        content = gzip.compress(content)
        headers["Content-Encoding"] = "gzip"

    response = client.post(path, content=content, headers=headers)

    assert response.status_code < 500, response.text
    documented = spec["paths"][path]["post"]["responses"]
    assert str(response.status_code) in documented
    schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    _validator(spec, schema).validate(response.json())
    if response.status_code == 200 and isinstance(body, dict) and "batch" in body:
        assert response.json()["accepted"] + response.json()["rejected"] == len(body["batch"])

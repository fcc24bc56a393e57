"""Stand-ins for dbt's and this project's macros so sqlfluff's jinja templater can lint models.

sqlfluff (``.sqlfluff`` at the repository root) renders models with plain Jinja, offline and
without a warehouse; these objects turn each macro call into SQL of the same shape as the
DuckDB implementation. They only need to parse, not to run. Not importable by dbt: this folder
has no ``dbt`` module and ``dbt/`` itself never gets an ``__init__.py``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

_PROJECT_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "dbt_project.yml").read_text()
)["vars"]


def var(name: str, default=None):
    """dbt's ``var()`` with the defaults from dbt_project.yml."""
    return _PROJECT_VARS.get(name, default)


def _call(name: str):
    return lambda *args: f"{name}({', '.join(str(a) for a in args)})"


dbt = SimpleNamespace(
    dateadd=lambda datepart, interval, expression: (
        f"date_add({expression}, interval ({interval}) {datepart})"
    ),
    datediff=lambda first, second, datepart: f"date_diff('{datepart}', {first}, {second})",
    date_trunc=lambda datepart, expression: f"date_trunc('{datepart}', {expression})",
    hash=lambda expression: f"md5(cast({expression} as varchar))",
    concat=lambda expressions: f"concat({', '.join(expressions)})",
    bool_or=lambda expression: f"bool_or({expression})",
)

safar = SimpleNamespace(
    json_extract_string=lambda column, key: f"json_extract_string({column}, '$.{key}')",
    json_extract_json_by_key=lambda column, key: f"json_extract({column}, {key})",
    json_value_as_string=lambda text: f"json_extract_string({text}, '$')",
    json_object_keys=_call("json_keys"),
    json_object_agg=lambda key, value: f"string_agg({key} || ':' || {value}, ',')",
    json_is_object=lambda text: f"json_valid({text})",
    epoch_seconds=_call("epoch"),
    regexp_full_match=lambda expression, pattern: f"regexp_full_match({expression}, '{pattern}')",
    try_cast=lambda expression, data_type: f"try_cast({expression} as {data_type})",
    unnest_array=_call("unnest"),
    max_by=_call("max_by"),
    min_by=_call("min_by"),
    sort_key=lambda columns: f"row({', '.join(columns)})",
    day_spine=lambda start, end: (
        f"select unnest(generate_series({start}, {end}, interval 1 day)) as date_day"
    ),
    is_unit_test=lambda: False,
    landing_zone_has_files=lambda *args: True,
    empty_source_relation=lambda *args: "select 1 as message_id",
)

# Jinja that only runs against a live warehouse (dbt's `execute` phase) stays switched off.
execute = False


def run_query(sql: str):
    raise RuntimeError("run_query is not available while linting")

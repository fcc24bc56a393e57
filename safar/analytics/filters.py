"""Property filters (``safar.analytics.spec.Filter``) compiled to DuckDB boolean expressions.

Properties are JSON. The rules, shared with the reference implementation in the tests:

- a property is *set* when the key exists and is not JSON ``null``;
- ``eq``/``neq`` with a list mean any-of / none-of;
- values of the same kind compare as they are (numbers numerically); values of different
  kinds compare as text, where ``true`` is ``"true"`` and ``1`` is ``"1"``;
- ``contains``/``not_contains`` are case-insensitive; ``regex`` searches the text;
- every test but ``neq``, ``not_contains`` and ``is_not_set`` is false on an unset property.

User values only ever enter the SQL as sqlglot literals.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from safar.analytics.spec import AllOf, AnyOf, Condition, Filter

_NUMERIC_TYPES = ("BIGINT", "UBIGINT", "DOUBLE")
_COMPARISONS = {"gt": exp.GT, "gte": exp.GTE, "lt": exp.LT, "lte": exp.LTE}


def json_path(prop: str) -> exp.Literal:
    """The JSONPath of a top-level key, quoted so dots and spaces stay part of the name."""
    escaped = prop.replace("\\", "\\\\").replace('"', '\\"')
    return exp.Literal.string(f'$."{escaped}"')


def property_json(props: exp.Expression, prop: str) -> exp.Expression:
    """The property's JSON value (SQL NULL when the key is missing)."""
    return exp.func("json_extract", props.copy(), json_path(prop))


def property_text(props: exp.Expression, prop: str) -> exp.Expression:
    """The property as text: strings unquoted, other values as JSON (``true``, ``1.5``)."""
    return exp.func("json_extract_string", props.copy(), json_path(prop))


def property_key(props: exp.Expression, prop: str) -> exp.Expression:
    """The property's JSON text, NULL when unset; tells ``1``, ``"1"`` and ``true`` apart."""
    value = exp.cast(property_json(props, prop), "VARCHAR")
    return exp.func("nullif", value, exp.Literal.string("null"))


def value_text(value: Any) -> str:
    """A JSON value as filters compare it as text: ``true``/``false``, numbers as printed."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Property:
    def __init__(self, props: exp.Expression, prop: str) -> None:
        self.json = property_json(props, prop)
        self.text = property_text(props, prop)
        kind = exp.func("json_type", self.json.copy())
        self.is_set = exp.and_(
            exp.Not(this=exp.Is(this=self.json.copy(), expression=exp.Null())),
            exp.NEQ(this=kind.copy(), expression=exp.Literal.string("NULL")),
        )
        self.is_number = exp.In(
            this=kind, expressions=[exp.Literal.string(t) for t in _NUMERIC_TYPES]
        )

    def compare(self, op: type[exp.Binary], target: Any) -> exp.Expression:
        """``value op target`` by the kind rules above (NULL when unset)."""
        text = op(this=self.text.copy(), expression=exp.Literal.string(value_text(target)))
        if not _is_number(target):
            return text
        number = op(
            this=exp.TryCast(this=self.text.copy(), to=exp.DataType.build("DOUBLE")),
            expression=exp.Literal.number(target),
        )
        return exp.If(this=self.is_number.copy(), true=number, false=text)


def _condition(cond: Condition, props: exp.Expression) -> exp.Expression:
    value = _Property(props, cond.property)
    op = cond.op
    if op == "is_set":
        return value.is_set
    if op == "is_not_set":
        return exp.Not(this=exp.Paren(this=value.is_set))
    if op in ("eq", "neq"):
        targets = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        hit = exp.or_(*(value.compare(exp.EQ, t) for t in targets))
        hit = exp.func("coalesce", exp.Paren(this=hit), exp.false())
        return hit if op == "eq" else exp.Not(this=hit)
    if op in ("contains", "not_contains"):
        needle = exp.Literal.string(value_text(cond.value).lower())
        hit = exp.func("contains", exp.Lower(this=value.text.copy()), needle)
        hit = exp.func("coalesce", hit, exp.false())
        return hit if op == "contains" else exp.Not(this=hit)
    if op == "regex":
        hit = exp.func("regexp_matches", value.text.copy(), exp.Literal.string(str(cond.value)))
        return exp.func("coalesce", hit, exp.false())
    return exp.func("coalesce", value.compare(_COMPARISONS[op], cond.value), exp.false())


def compile_filter(
    filt: Filter, event_properties: exp.Expression, person_properties: exp.Expression
) -> exp.Expression:
    """A boolean expression (never NULL) for one filter.

    Args:
        filt: the filter.
        event_properties: the SQL expression of the event's properties (JSON).
        person_properties: the SQL expression of the person's properties (JSON).

    Example:
        >>> from sqlglot import exp
        >>> sql = compile_filter(Condition("plan", "eq", "pro"), exp.column("p"), exp.column("q"))
        >>> print(sql.sql("duckdb"))
        COALESCE((JSON_EXTRACT_STRING(p, '$."plan"') = 'pro'), FALSE)
    """
    if isinstance(filt, AnyOf | AllOf):
        parts = [compile_filter(f, event_properties, person_properties) for f in filt.filters]
        if not parts:
            return exp.true() if isinstance(filt, AllOf) else exp.false()
        combine = exp.or_ if isinstance(filt, AnyOf) else exp.and_
        return exp.Paren(this=combine(*parts))
    props = person_properties if filt.scope == "person" else event_properties
    return _condition(filt, props)


def compile_filters(
    filters: tuple[Filter, ...], event_properties: exp.Expression, person_properties: exp.Expression
) -> exp.Expression:
    """All ``filters`` together (TRUE when there are none)."""
    if not filters:
        return exp.true()
    return exp.and_(*(compile_filter(f, event_properties, person_properties) for f in filters))


def uses_person_properties(filters: tuple[Filter, ...]) -> bool:
    """Whether any filter (nested included) reads person properties."""
    for filt in filters:
        if isinstance(filt, AnyOf | AllOf):
            if uses_person_properties(filt.filters):
                return True
        elif filt.scope == "person":
            return True
    return False

"""From a segment definition to the checked query that finds its members at a given time.

SQL and builder segments both end as one sandbox-checked query. "Now" is pinned to the
evaluation time: the builder compiles relative to it, and in analyst SQL every ``now()``,
``current_timestamp``, ``current_date`` … becomes a literal. So an evaluation is reproducible
(the same data and time give the same members), a replayed batch finds the same answer, and
a segment whose query reads the clock is known to be *time-relative*: it must be re-checked as
time passes even when no event arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlglot import exp

from safar.segments.builder import BuilderError, compile_condition, describe, parse_condition
from safar.segments.definitions import SegmentDefinition
from safar.segments.sandbox import MEMBERSHIP, Catalog, SandboxError, validate

_CLOCK_FUNCTIONS = frozenset({"now", "get_current_timestamp", "transaction_timestamp"})


class CompileError(ValueError):
    """A definition that cannot become a query; ``where`` says which segment and what part."""

    def __init__(
        self, slug: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(f"segment {slug!r}: {message}")
        self.slug = slug
        self.reason = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class CompiledSegment:
    """A definition ready to run at ``as_of``; static lists have no query."""

    definition: SegmentDefinition
    as_of: datetime
    query: exp.Query | None
    time_relative: bool
    tables: frozenset[str]
    description: str

    @property
    def reads_membership(self) -> bool:
        """Whether it depends on other segments (and so is evaluated after them)."""
        return MEMBERSHIP in self.tables


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as naive UTC, the warehouse's time convention."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _is_clock(node: exp.Expression) -> bool:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower() in _CLOCK_FUNCTIONS
    return isinstance(
        node, exp.CurrentTimestamp | exp.CurrentDate | exp.CurrentTime | exp.Localtimestamp
    )


def _clock_literal(node: exp.Expression, as_of: datetime) -> exp.Expression:
    if isinstance(node, exp.CurrentDate):
        return exp.cast(exp.Literal.string(as_of.date().isoformat()), exp.DataType.Type.DATE)
    if isinstance(node, exp.CurrentTime):
        text = as_of.time().isoformat(timespec="microseconds")
        return exp.cast(exp.Literal.string(text), exp.DataType.Type.TIME)
    text = as_of.isoformat(sep=" ", timespec="microseconds")
    return exp.cast(exp.Literal.string(text), exp.DataType.Type.TIMESTAMP)


def pin_clock(query: exp.Query, as_of: datetime) -> tuple[exp.Query, bool]:
    """``query`` with every read of the clock replaced by ``as_of``; and whether there was one.

    Example:
        >>> import sqlglot
        >>> q = sqlglot.parse_one("select 1 where current_date > date '2026-01-01'", read="duckdb")
        >>> pinned, relative = pin_clock(q, datetime(2026, 2, 1, 9, 30))
        >>> pinned.sql("duckdb"), relative
        ("SELECT 1 WHERE CAST('2026-02-01' AS DATE) > CAST('2026-01-01' AS DATE)", True)
    """
    found = False

    def replace(node: exp.Expression) -> exp.Expression:
        nonlocal found
        if _is_clock(node):
            found = True
            return _clock_literal(node, as_of)
        return node

    return query.copy().transform(replace), found


def _tables(query: exp.Query) -> frozenset[str]:
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    return frozenset(t.name.lower() for t in query.find_all(exp.Table)) - ctes


def compile_segment(
    definition: SegmentDefinition, catalog: Catalog, *, as_of: datetime
) -> CompiledSegment:
    """The checked, clock-pinned query of ``definition`` at ``as_of`` (naive UTC or aware).

    Raises:
        CompileError: the SQL fails the sandbox or the builder tree is invalid; the message
            names the segment and carries the sandbox's line and column.
    """
    as_of = naive_utc(as_of)
    slug = definition.slug
    if definition.kind == "static":
        return CompiledSegment(definition, as_of, None, False, frozenset(), "A static list")
    if definition.kind == "sql":
        try:
            checked = validate(definition.sql or "", catalog)
        except SandboxError as exc:
            raise CompileError(slug, str(exc), exc.line, exc.column) from None
        query, relative = pin_clock(checked, as_of)
        return CompiledSegment(
            definition, as_of, query, relative, _tables(query), definition.description
        )
    try:
        condition = parse_condition(definition.condition)
        built = compile_condition(condition, now=as_of)
        # "Does the query depend on now?" answered exactly: compile it for another now.
        later = compile_condition(condition, now=as_of + timedelta(days=1))
    except BuilderError as exc:
        field = f"condition.{exc.path}" if exc.path else "condition"
        raise CompileError(slug, f"{field}: {str(exc).removeprefix(f'{exc.path}: ')}") from None
    try:
        query = validate(built.sql("duckdb"), catalog)
    except SandboxError as exc:
        raise CompileError(slug, f"the builder's query fails the sandbox: {exc}") from None
    relative = built.sql("duckdb") != later.sql("duckdb")
    return CompiledSegment(definition, as_of, query, relative, _tables(query), describe(condition))

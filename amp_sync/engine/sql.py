"""SQL fragments of the diff, as sqlglot expressions: a value's JSON text, and whether two values differ.

Each fragment is written once and emitted in any dialect sqlglot knows; the engine here runs them
in DuckDB. Two values differ when Amplitude would see two different JSON values, which is the
comparison of typed values when both sides have one type, and of JSON text otherwise.
"""

from __future__ import annotations

import json
import re

import sqlglot
from sqlglot import exp

from amp_sync.engine.ingest import Family, decimal_scale, is_decimal

DIALECT = "duckdb"
_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_]\w*)")


def parse(template: str, **parts: exp.Expr | str) -> exp.Expr:
    """A fragment from its template, `:name` placeholders replaced by expressions (or column names)."""
    # Prefixed, so that a placeholder never reads as a keyword (:user, :where, :double...).
    tree = sqlglot.parse_one(_PLACEHOLDER.sub(r":x_\1", template), read=DIALECT)
    values = {f"x_{k}": (exp.column(v) if isinstance(v, str) else v) for k, v in parts.items()}
    return exp.replace_placeholders(tree, **values)


def text(value: str) -> exp.Expr:
    """A string literal."""
    return exp.Literal.string(value)


def json_key(name: str) -> exp.Expr:
    """`"name":` as a literal, escaped as JSON."""
    return text(json.dumps(name, ensure_ascii=False) + ":")


def json_of(value: exp.Expr, kind: str) -> exp.Expr:
    """The JSON text Amplitude receives for `value` of stored type `kind` (NULL for NULL)."""
    if kind == Family.NULL:
        return exp.Null()
    if kind == Family.INT:
        return parse("CAST(:v AS VARCHAR)", v=value)
    if kind == Family.JSON:
        return parse("CAST(:v AS VARCHAR)", v=value)
    if is_decimal(kind):
        # Whole decimals are sent as exact integers, others as the nearest double (values.to_json).
        return parse(
            "CASE WHEN :v = trunc(:v) THEN CAST(CAST(:v AS HUGEINT) AS VARCHAR) "
            "ELSE CAST(to_json(CAST(:v AS DOUBLE)) AS VARCHAR) END",
            v=value,
        )
    return parse("CAST(to_json(:v) AS VARCHAR)", v=value)  # text, doubles, booleans


def differs(new: exp.Expr, new_kind: str, old: exp.Expr, old_kind: str) -> exp.Expr:
    """True when Amplitude would see `new` and `old` as different values (NULL and '' differ)."""
    if new_kind == Family.NULL:
        return parse(":o IS NOT NULL", o=old)
    if old_kind == Family.NULL:
        return parse(":n IS NOT NULL", n=new)
    if new_kind == old_kind == Family.DOUBLE:
        # -0.0 = 0.0 in SQL, but Amplitude is sent "-0.0" and "0.0".
        return parse(":n IS DISTINCT FROM :o OR signbit(:n) <> signbit(:o)", n=new, o=old)
    if new_kind == old_kind:
        return parse(":n IS DISTINCT FROM :o", n=new, o=old)
    return parse(":n IS DISTINCT FROM :o", n=json_of(new, new_kind), o=json_of(old, old_kind))


def increment(new: exp.Expr, new_kind: str, old: exp.Expr, old_kind: str) -> exp.Expr:
    """The JSON text of `new - old`, for `$add`: whole numbers exactly, as Python would, others as doubles."""
    exact = parse("CAST(CAST(:n AS HUGEINT) - CAST(:o AS HUGEINT) AS VARCHAR)", n=new, o=old)
    if new_kind == old_kind == Family.INT:
        return exact
    double = parse("CAST(to_json(CAST(:n AS DOUBLE) - CAST(:o AS DOUBLE)) AS VARCHAR)", n=new, o=old)
    whole = parse(":a AND :b", a=_whole(new, new_kind), b=_whole(old, old_kind))
    return parse("CASE WHEN :w THEN :exact ELSE :double END", w=whole, exact=exact, double=double)


def _whole(value: exp.Expr, kind: str) -> exp.Expr:
    """Whether a number is sent as an integer."""
    if kind == Family.INT:
        return exp.true()
    if is_decimal(kind):
        return parse(":v = trunc(:v)", v=value)
    if kind == Family.JSON:
        return parse("json_type(:v) IN ('BIGINT', 'UBIGINT')", v=value)
    return exp.false()


def common_type(stored: str, new: str) -> str:
    """The type that holds values of both types without changing the JSON Amplitude is sent."""
    if stored == new or new == Family.NULL:
        return stored
    if stored == Family.NULL:
        return new
    if is_decimal(stored) and is_decimal(new):
        return Family.decimal(max(decimal_scale(stored), decimal_scale(new)))
    pair = {stored, new}
    if Family.INT in pair:
        other = (pair - {Family.INT}).pop()
        if is_decimal(other) and decimal_scale(other) <= 18:  # a BIGINT has 19 digits at most
            return other
    return Family.JSON


def cast_to(value: exp.Expr, kind: str, target: str) -> exp.Expr:
    """`value` of type `kind` as type `target` (see common_type)."""
    if kind == target:
        return value
    if target == Family.JSON:
        return parse("CAST(:v AS JSON)", v=json_of(value, kind))
    return exp.cast(value, sqlglot.parse_one(target, into=exp.DataType, read=DIALECT))

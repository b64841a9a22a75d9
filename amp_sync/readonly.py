"""A model only reads: exactly one query, as the warehouse engine's own grammar reads it.

DuckDB models are split and typed by DuckDB's parser (`duckdb.extract_statements`) and their
tree (`json_serialize_sql`) is searched for data-changing CTEs. Every other engine's model is
parsed by sqlglot in that engine's dialect. Whatever cannot be parsed is refused: amp_sync never
runs a model it could not read. The check returns the text to run, which is exactly the one
statement that was checked (see `Checked.sql`); the engines add their own guards on top
(warehouse.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from amp_sync.errors import WarehouseError

# SQLAlchemy backend names to sqlglot dialects.
DIALECTS = {
    "postgresql": "postgres", "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql",
    "snowflake": "snowflake", "bigquery": "bigquery", "redshift": "redshift",
    "databricks": "databricks", "trino": "trino", "presto": "presto", "mssql": "tsql",
    "oracle": "oracle", "clickhouse": "clickhouse", "awsathena": "athena", "hive": "hive",
    "spark": "spark", "teradatasql": "teradata", "teradata": "teradata", "exasol": "exasol",
    "starrocks": "starrocks", "doris": "doris", "materialize": "materialize",
    "risingwave": "risingwave", "singlestoredb": "singlestore", "dremio": "dremio", "drill": "drill",
}  # fmt: skip
# The engines whose drivers run the model's own text one statement at a time (warehouse.py makes
# sure of it); the others run the text sqlglot writes back from the checked tree.
OWN_TEXT = frozenset({"duckdb", "postgresql", "sqlite"})

# Functions that act outside the query (files, other sessions, settings) though called in a SELECT.
_SIDE_EFFECTS = {
    "postgres": {
        "lo_export", "lo_import", "lo_unlink", "lo_create", "lo_put", "lo_from_bytea", "dblink",
        "dblink_exec", "dblink_send_query", "dblink_connect", "pg_read_file", "pg_read_binary_file",
        "pg_ls_dir", "pg_stat_file", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
        "pg_rotate_logfile", "set_config", "pg_notify", "pg_advisory_lock", "pg_advisory_xact_lock",
        "pg_try_advisory_lock", "pg_promote", "pg_switch_wal", "nextval", "setval",
    },
    "sqlite": {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"},
    "mysql": {"load_file", "get_lock", "release_lock", "sys_exec", "sys_eval"},
}  # fmt: skip
_SIDE_EFFECTS["redshift"] = _SIDE_EFFECTS["postgres"]

# Nodes that write, change the session or run something else, wherever they sit in the tree.
_FORBIDDEN: tuple[type[exp.Expression], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command,
    exp.Copy, exp.Pragma, exp.Set, exp.Attach, exp.Detach, exp.Into, exp.Lock, exp.Transaction,
    exp.Commit, exp.Rollback, exp.Use, exp.LoadData, exp.Cache, exp.Uncache, exp.Refresh,
    exp.Analyze, exp.Grant, exp.Revoke, exp.TruncateTable, exp.Install, exp.Describe, exp.Show,
    exp.Kill, exp.Export,
)  # fmt: skip
_QUERIES = (exp.Select, exp.SetOperation, exp.Values, exp.Subquery)
# DuckDB tree nodes a query may hold; DELETE_QUERY_NODE, INSERT_QUERY_NODE and the like may not.
_DUCKDB_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})


class _NoCommandFallback(logging.Filter):
    """sqlglot logs a warning, with the SQL, before reading unknown syntax as a Command.

    A Command is refused here with words of our own, so that warning would only be noise on stderr.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_NoCommandFallback())


@dataclass(frozen=True, slots=True)
class Checked:
    """A model once checked: the one statement to run, and the grammar that read it."""

    sql: str
    grammar: str  # "duckdb", or the sqlglot dialect


def check_read_only(sql: str, backend: str) -> Checked:
    """Accept exactly one query (SELECT, WITH, VALUES, TABLE, UNION...) read by `backend`'s grammar."""
    if not sql.strip():
        raise WarehouseError("the model is empty: write one SELECT statement")
    if backend == "duckdb":
        return _duckdb(sql)
    dialect = DIALECTS.get(backend)
    if dialect is None:
        raise WarehouseError(
            f"amp_sync cannot read {backend} SQL, so it cannot check that the model only reads; "
            f"it reads DuckDB and {', '.join(sorted(DIALECTS))}"
        )
    return _sqlglot(sql, backend, dialect)


def _duckdb(sql: str) -> Checked:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise WarehouseError(f"the warehouse refused the model: {_first_line(exc)}") from None
    statement = _one(statements, len(statements))
    if statement.type != duckdb.StatementType.SELECT:
        first = statement.query.split(None, 1)[0].upper() if statement.query.split() else ""
        raise WarehouseError(_not_a_query(first if first.isalpha() else statement.type.name))
    text = statement.query.strip().rstrip(";").strip()
    _duckdb_tree(text)
    return Checked(text, "duckdb")


def _duckdb_tree(text: str) -> None:
    """Refuse data-changing CTEs, which DuckDB still types as SELECT."""
    with duckdb.connect(":memory:", config={"enable_external_access": False}) as con:
        row = con.execute("select json_serialize_sql(?)", [text]).fetchone()
    try:
        tree = json.loads(row[0] if row else "null")
    except (RecursionError, ValueError):
        raise WarehouseError("the model nests too deeply for amp_sync to check that it only reads") from None
    if not isinstance(tree, dict) or tree.get("error"):
        message = tree.get("error_message", "") if isinstance(tree, dict) else ""
        raise WarehouseError(f"DuckDB cannot parse the model: {message or 'unknown error'}")
    for node in _node_types(tree):
        if node.endswith("_NODE") and node not in _DUCKDB_NODES:
            action = node.removesuffix("_QUERY_NODE").removesuffix("_NODE").replace("_", " ")
            raise WarehouseError(_contains(action))


def _node_types(tree: Any) -> Iterator[str]:
    """Every "type" value of the tree's objects, walked without recursion."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if isinstance(kind, str):
                yield kind
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _sqlglot(sql: str, backend: str, dialect: str) -> Checked:
    try:
        trees = sqlglot.parse(sql, read=dialect, error_level=ErrorLevel.RAISE)
    except (ParseError, TokenError) as exc:
        raise WarehouseError(
            f"amp_sync cannot parse the model as {dialect} SQL ({_parse_words(exc)}), so it will not run "
            "it: a model must be one query it can check"
        ) from None
    except RecursionError:
        raise WarehouseError("the model nests too deeply for amp_sync to check that it only reads") from None
    statements = [t for t in trees if t is not None]
    tree = _one(statements, len(statements))
    if not isinstance(tree, _QUERIES):
        raise WarehouseError(_not_a_query(_kind(tree)))
    for node in tree.walk():
        if isinstance(node, exp.Expression):
            _refuse_node(node, dialect)
    text = sql.strip().rstrip(";").strip() if backend in OWN_TEXT else tree.sql(dialect=dialect)
    return Checked(text, dialect)


def _refuse_node(node: exp.Expression, dialect: str) -> None:
    if isinstance(node, exp.Lock):
        raise WarehouseError("the model locks rows (FOR UPDATE / FOR SHARE): models only read")
    if isinstance(node, _FORBIDDEN):
        raise WarehouseError(_contains(_kind(node)))
    if isinstance(node, exp.Func):
        name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
        if name in _SIDE_EFFECTS.get(dialect, ()):
            raise WarehouseError(
                f"the model calls {name}(), which acts outside the query (files, sessions or "
                "settings): models only read"
            )


def _one(statements: list[Any], count: int) -> Any:
    if count == 0:
        raise WarehouseError("the model is empty: write one SELECT statement")
    if count > 1:
        raise WarehouseError(
            f"the model has {count} statements: a model is exactly one query (SELECT or WITH)"
        )
    return statements[0]


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Describe):
        return "DESCRIBE"
    if isinstance(node, exp.Into):
        return "INTO"
    return node.key.upper().replace("TRUNCATETABLE", "TRUNCATE")


def _not_a_query(kind: str) -> str:
    return f"the model must be a SELECT or WITH query, not {kind}: models only read"


def _contains(kind: str) -> str:
    return f"the model contains {kind}, which can change data or settings: models only read"


def _parse_words(exc: ParseError | TokenError) -> str:
    """sqlglot's first complaint, with where it is: "Unexpected token at line 1, column 31, near 'users'"."""
    errors = getattr(exc, "errors", None) or [{}]
    first = errors[0]
    words = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", first.get("description") or _first_line(exc))
    words = words.replace("Invalid expression / ", "")
    if first.get("line"):
        words += f" at line {first['line']}, column {first['col']}"
    if first.get("highlight"):
        words += f", near {first['highlight']!r}"
    return words


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__

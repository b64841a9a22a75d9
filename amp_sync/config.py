"""The sync file: one TOML document that fully describes one sync, parsed into frozen values."""

from __future__ import annotations

import os
import re
import tomllib
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from amp_sync.errors import ConfigError
from amp_sync.secret import Secret


class Region(StrEnum):
    """Amplitude data centre; a project's keys work in one region only."""

    US = "us"
    EU = "eu"


class SyncObject(StrEnum):
    """What a row of the model updates in Amplitude."""

    USER = "user"
    DEVICE = "device"
    GROUP = "group"
    EVENT = "event"


class Operation(StrEnum):
    """User-property operations of the Identify API that a mapping may use."""

    SET = "$set"
    SET_ONCE = "$setOnce"
    ADD = "$add"
    APPEND = "$append"
    PREPEND = "$prepend"
    PRE_INSERT = "$preInsert"
    POST_INSERT = "$postInsert"
    REMOVE = "$remove"


# Ingestion and the dashboard REST API have hosts of their own, per region:
# https://amplitude.com/docs/apis/analytics/http-v2, https://amplitude.com/docs/apis/analytics/dashboard-rest
INGEST_HOSTS = {Region.US: "https://api2.amplitude.com", Region.EU: "https://api.eu.amplitude.com"}
REST_HOSTS = {Region.US: "https://amplitude.com", Region.EU: "https://analytics.eu.amplitude.com"}

# Profiles (users, devices, groups) are updated or created; events are only ever appended.
UPDATE_OR_CREATE, INSERT = "update_or_create", "insert"
BEHAVIORS = (UPDATE_OR_CREATE, INSERT)
ID_TYPES = ("user", "device")
# Operations the Group Identify API takes; $unset comes from nulls:
# https://amplitude.com/docs/apis/analytics/group-identify
GROUP_OPERATIONS = (Operation.SET, Operation.SET_ONCE, Operation.ADD, Operation.APPEND, Operation.PREPEND)
# Matched in full (\Z, not $, which also matches before a final newline): the name names files.
SYNC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}\Z")
# `${NAME}` reads a variable and `$${` writes a literal `${`. Any other `${` is a mistake to report,
# never text to send: it runs to its `}` on the same line or, unclosed, to the end of the word.
_VAR = re.compile(
    r"\$(?P<escaped>\$\{)|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bad>\$\{[^}\n]*\}|\$\{[^\s}'\"]*)"
)
# A SQLite or DuckDB URL whose database is a path: dialect[+driver]:///path[?query].
_FILE_URL = re.compile(
    r"(?P<head>(?:sqlite|duckdb)(?:\+\w+)?:///)(?P<path>[^?]*)(?P<query>\?.*)?\Z", re.DOTALL
)


@dataclass(frozen=True, slots=True)
class Source:
    """Where the model runs: any SQLAlchemy URL (which may hold a password, so it is a Secret).

    `read_files` are the files, folders and globs a DuckDB model may read (absolute paths); a
    DuckDB model can read no other file.
    """

    url: Secret
    read_files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Destination:
    """An Amplitude project, reached through its region's hosts or one custom endpoint."""

    name: str
    api_key: Secret
    secret_key: Secret | None
    region: Region
    endpoint: str | None = None

    @property
    def ingest_url(self) -> str:
        """Base URL of the ingestion APIs (/identify, /2/httpapi, /batch)."""
        return self.endpoint or INGEST_HOSTS[self.region]

    @property
    def rest_url(self) -> str:
        """Base URL of the dashboard REST API (/api/2/...)."""
        return self.endpoint or REST_HOSTS[self.region]


@dataclass(frozen=True, slots=True)
class Model:
    """A named SQL query: one read-only SELECT or WITH statement."""

    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class Mapping_:
    """One model column sent as one Amplitude property with one operation."""

    column: str
    property: str
    op: Operation = Operation.SET


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """The [sync] keys that only some objects take; each is None (or its default) elsewhere."""

    group_type: str | None = None  # group syncs: the group type, a constant
    id_type: str = "user"  # event syncs: the key column holds user ids or device ids
    event_type: str | None = None  # event syncs: a constant event type ...
    event_type_column: str | None = None  # ... or the column that holds it
    time_column: str | None = None  # event syncs: when each event happened
    insert_id_column: str | None = None  # event syncs: Amplitude's de-duplication key
    skip_user_properties_sync: bool = True  # event syncs: leave current user properties alone
    synthetic_event: str | None = None  # user and device syncs: one event per updated profile


@dataclass(frozen=True, slots=True)
class Sync:
    """How the model's rows become Amplitude updates."""

    name: str
    object: SyncObject
    behavior: str
    key: str
    mappings: tuple[Mapping_, ...]
    user_key: str | None = None
    options: SyncOptions = SyncOptions()

    @property
    def key_label(self) -> str:
        """What the key column holds, in words: user id, device id or group value."""
        if self.object is SyncObject.GROUP:
            return "group value"
        if self.object is SyncObject.EVENT:
            return f"{self.options.id_type} id"
        return f"{self.object} id"

    @property
    def is_profile(self) -> bool:
        """User, device and group syncs update profiles; event syncs append events."""
        return self.object is not SyncObject.EVENT


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """One whole sync file."""

    source: Source
    destination: Destination
    model: Model
    sync: Sync

    def required_columns(self) -> tuple[str, ...]:
        """Every model column the sync reads, key first, without repeats."""
        o = self.sync.options
        extra = [self.sync.user_key, o.event_type_column, o.time_column, o.insert_id_column]
        names = [self.sync.key, *(n for n in extra if n)]
        names += [m.column for m in self.sync.mappings]
        return tuple(dict.fromkeys(names))

    def writes(self) -> set[str]:
        """What the sync writes, as "<profile>:<property>": users and devices share one profile."""
        sync = self.sync
        if sync.object is SyncObject.EVENT:
            return set()
        kind = f"group {sync.options.group_type}" if sync.object is SyncObject.GROUP else "user"
        return {f"{kind}:{m.property}" for m in sync.mappings}

    def missing_columns(self, columns: list[str]) -> list[str]:
        """Problems for each required column the model does not return."""
        have = set(columns)
        shown = ", ".join(columns) or "no columns"
        return [
            f"the model does not return the column {name!r} (it returns: {shown})"
            for name in self.required_columns()
            if name not in have
        ]


# Exactly these keys, as documented in the README; "required" ones must be present.
_SCHEMA: dict[str, tuple[set[str], set[str]]] = {
    "source": ({"url"}, {"read_files"}),
    "destination": ({"name", "api_key", "region"}, {"secret_key", "endpoint"}),
    "model": ({"name", "sql"}, set()),
    "sync": (
        {"name", "object", "key"},
        {"behavior", "user_key", "mappings", "group_type", "id_type", "event_type", "event_type_column",
         "time_column", "insert_id_column", "skip_user_properties_sync", "synthetic_event"},
    ),
}  # fmt: skip
_BOOLEANS = {"skip_user_properties_sync"}
_TEXT_LISTS = {"read_files"}
# Which object each optional [sync] key belongs to; any other object refuses it.
_OPTION_OBJECTS = {
    "user_key": (SyncObject.DEVICE, SyncObject.EVENT),
    "group_type": (SyncObject.GROUP,),
    "id_type": (SyncObject.EVENT,),
    "event_type": (SyncObject.EVENT,),
    "event_type_column": (SyncObject.EVENT,),
    "time_column": (SyncObject.EVENT,),
    "insert_id_column": (SyncObject.EVENT,),
    "skip_user_properties_sync": (SyncObject.EVENT,),
    "synthetic_event": (SyncObject.USER, SyncObject.DEVICE),
}
_MAPPING_KEYS = ({"column", "property"}, {"op"})


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> SyncConfig:
    """Read and validate a sync file; ConfigError lists every problem found.

    A relative SQLite or DuckDB file path in `[source].url` is read from the sync file's folder.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"sync file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sync file {path}: {exc}") from None
    return parse_config(text, env, base=path.parent)


def parse_config(
    text: str, env: Mapping[str, str] | None = None, base: Path | None = None, *, keep: Collection[str] = ()
) -> SyncConfig:
    """Parse sync-file text; `${VAR}` in any string is read from `env` (default os.environ).

    With `base`, a relative SQLite or DuckDB file path in `[source].url` is made absolute against it.
    Strings at the places in `keep` (e.g. "destination.api_key") keep their `${VAR}` as written, to
    be read when used; they are still checked for malformed placeholders.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the sync file is not valid TOML: {exc}") from None
    problems: list[str] = []
    data = _substitute(raw, os.environ if env is None else env, problems, "", frozenset(keep))
    problems += _check_keys(data)
    if problems:
        raise ConfigError(problems)
    if base is not None:  # after ${VAR}: a variable may hold an absolute folder
        data["source"]["url"] = absolute_file_url(data["source"]["url"], base)
    data["source"]["read_files"] = read_file_paths(data["source"].get("read_files", []), base or Path.cwd())
    return _build(data)


def absolute_file_url(url: str, base: Path) -> str:
    """`url` with a relative SQLite or DuckDB file path made absolute against `base`; else unchanged.

    `sqlite:///rel.db` is relative and `sqlite:////abs.db` absolute; `sqlite://`, `sqlite:///`,
    `duckdb:///:memory:`, `duckdb:///md:name` and `sqlite:///file:x?uri=true` name no plain file.
    The query string is kept.
    """
    match = _FILE_URL.match(url)
    if match is None:
        return url
    database = unquote(match["path"])  # SQLAlchemy decodes %XX in the database part
    # A colon before any slash: :memory:, md:, file: URIs or a Windows drive, not a relative path.
    if not database or Path(database).is_absolute() or re.match(r"[^/\\]*:", database):
        return url
    path = os.path.normpath(base.resolve() / database)
    return match["head"] + path.replace("%", "%25").replace("?", "%3F") + (match["query"] or "")


def _substitute(
    value: Any, env: Mapping[str, str], problems: list[str], where: str, keep: frozenset[str] = frozenset()
) -> Any:
    """Replace ${VAR} in every string but those at `keep`, noting each problem with its place."""
    if isinstance(value, str):
        if where in keep:
            problems += placeholder_problems(value, _shown(where))
            return value
        return _fill(value, lambda name: _lookup(name, env, problems, where), problems, _shown(where))
    if isinstance(value, dict):
        return {k: _substitute(v, env, problems, _join(where, k), keep) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, problems, f"{where}[{i}]", keep) for i, v in enumerate(value)]
    return value


def _lookup(name: str, env: Mapping[str, str], problems: list[str], where: str) -> str:
    if name in env:
        return env[name]
    problems.append(f"environment variable {name} is not set (used in {where})")
    return "${" + name + "}"  # left as written, so no second problem is reported for it


def _fill(text: str, lookup: Callable[[str], str], problems: list[str], where: str) -> str:
    """`text` with each ${NAME} replaced by `lookup(NAME)` and each $${ by ${; malformed ones noted."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "${"
        if match["name"]:
            return lookup(match["name"])
        problems.append(_malformed(match["bad"], where))
        return match["bad"]

    return _VAR.sub(one, text)


def _malformed(text: str, where: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "…"
    return f"{where}: malformed placeholder {shown!r}: write ${{NAME}} with letters, digits and _"


def _shown(where: str) -> str:
    """A place as the sync file's reader finds it: "[destination].api_key"."""
    table, dot, rest = where.partition(".")
    return f"[{table}].{rest}" if dot else where


def resolve(template: str, env: Mapping[str, str], where: str) -> str:
    """`template` with each ${VAR} read from `env` and each $${ made ${; ConfigError lists each problem.

    `where` names the place in the messages, e.g. "the API key of the destination 'Prod'".
    """
    problems: list[str] = []
    text = _fill(template, lambda name: _lookup(name, env, problems, where), problems, where)
    if problems:
        raise ConfigError(problems)
    return text


def references(template: str) -> list[str]:
    """The variables `template` reads, each once, in order."""
    return list(dict.fromkeys(m["name"] for m in _VAR.finditer(template) if m["name"]))


def placeholder_problems(template: str, where: str) -> list[str]:
    """Each malformed placeholder in `template`, said with `where` it is."""
    return [_malformed(m["bad"], where) for m in _VAR.finditer(template) if m["bad"]]


def escape(text: str) -> str:
    """The template that resolves to `text` itself: each ${ written $${."""
    return text.replace("${", "$${")


def fill_in(template: str, values: Mapping[str, str]) -> str:
    """`template` with the variables in `values` written in as literal text; the others kept."""

    def one(match: re.Match[str]) -> str:
        name = match["name"]
        return escape(values[name]) if name in values else match[0]

    return _VAR.sub(one, template)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_keys(data: dict[str, Any]) -> list[str]:
    """Unknown, missing and mistyped keys, each named with its table."""
    problems = [f"unknown table [{t}]" for t in data if t not in _SCHEMA]
    for table, (required, optional) in _SCHEMA.items():
        section = data.get(table)
        if not isinstance(section, dict):
            problems.append(f"missing table [{table}]")
            continue
        problems += _check_section(section, table, required, optional)
    sync = data.get("sync")
    if isinstance(sync, dict):
        problems += _check_sync(sync, data.get("destination"))
    model = data.get("model")
    if isinstance(model, dict):
        problems += _check_model_name(model.get("name"))
    return problems


def _check_model_name(name: Any) -> list[str]:
    """A model's name shows in lists and names its warehouse: one line of printable text."""
    if isinstance(name, str) and has_control_characters(name):
        return [f"[model].name {name!r} must not hold line breaks, tabs or other control characters"]
    return []


def has_control_characters(text: str) -> bool:
    """True when `text` holds a line break, tab or another control character."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def _check_section(section: dict[str, Any], table: str, required: set[str], optional: set[str]) -> list[str]:
    problems = [f"unknown key {k!r} in [{table}]" for k in section if k not in required | optional]
    problems += [f"missing key {k!r} in [{table}]" for k in sorted(required) if k not in section]
    for key, value in section.items():
        if key in _BOOLEANS and not isinstance(value, bool):
            problems.append(f"[{table}].{key} must be true or false")
        elif key in _TEXT_LISTS:
            problems += _check_text_list(value, f"[{table}].{key}")
        elif key in _BOOLEANS or key == "mappings":
            continue
        elif key in required | optional and not isinstance(value, str):
            problems.append(f"[{table}].{key} must be a string")
        elif isinstance(value, str) and key in required and not value.strip():
            problems.append(f"[{table}].{key} must not be empty")
    return problems


def _check_text_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        return [f'{where} must be a list of paths, e.g. ["data/users.csv", "exports/*.parquet"]']
    return []


def read_file_paths(entries: list[str] | tuple[str, ...], base: Path) -> tuple[str, ...]:
    """`[source].read_files` entries made absolute against `base`; `~` is the user's home."""
    paths = []
    for entry in entries:
        path = Path(entry).expanduser()
        absolute = path if path.is_absolute() else base.resolve() / path
        # normpath drops a trailing "/", which marks a folder: it is put back.
        text = os.path.normpath(absolute)
        paths.append(text + "/" if entry.endswith(("/", "\\")) else text)
    return tuple(paths)


def _check_sync(sync: dict[str, Any], destination: Any) -> list[str]:
    problems = list(_check_choices(sync, destination))
    name = sync.get("name")
    if isinstance(name, str) and name and not SYNC_NAME.fullmatch(name):
        problems.append(
            f"[sync].name {name!r} may hold only letters, digits, spaces, '.', '_' and '-' "
            "(it names the sync's saved state)"
        )
    obj = sync.get("object")
    if obj in tuple(SyncObject):
        problems += _check_options(sync, SyncObject(obj))
    problems += _check_mappings(sync.get("mappings"), obj)
    return problems


def _check_options(sync: dict[str, Any], obj: SyncObject) -> list[str]:
    """Keys that belong to another object, and what each object needs."""
    problems = []
    for key, objects in _OPTION_OBJECTS.items():
        if sync.get(key) is None or obj in objects:
            continue
        if key == "user_key":
            problems.append('[sync].user_key is only for device syncs (object = "device")')
        else:
            names = " or ".join(f'"{o}"' for o in objects)
            problems.append(f"[sync].{key} is only for {names} syncs, not {str(obj)!r} ones")
    if obj is SyncObject.EVENT and sync.get("user_key") is not None and sync.get("id_type") != "device":
        problems.append('[sync].user_key is only for events keyed on device ids (id_type = "device")')
    behavior = sync.get("behavior")
    expected = INSERT if obj is SyncObject.EVENT else UPDATE_OR_CREATE
    if isinstance(behavior, str) and behavior in BEHAVIORS and behavior != expected:
        problems.append(f'[sync].behavior of {str(obj)!r} syncs is "{expected}", not {behavior!r}')
    if obj is SyncObject.GROUP and sync.get("group_type") is None:
        problems.append('group syncs need [sync].group_type, the group type (e.g. "company")')
    if obj is SyncObject.EVENT:
        problems += _check_event_keys(sync)
    for key in ("group_type", "event_type", "synthetic_event"):
        problems += _check_name(sync.get(key), key)
    return problems


def _check_event_keys(sync: dict[str, Any]) -> list[str]:
    problems = []
    constant, column = sync.get("event_type"), sync.get("event_type_column")
    if (constant is None) == (column is None):
        problems.append("event syncs need exactly one of [sync].event_type (a constant) and "
                        "[sync].event_type_column (the column that holds it)")  # fmt: skip
    if sync.get("time_column") is None:
        problems.append("event syncs need [sync].time_column, the column that says when each event happened")
    id_type = sync.get("id_type")
    if isinstance(id_type, str) and id_type not in ID_TYPES:
        problems.append(f"[sync].id_type must be one of {', '.join(ID_TYPES)}, not {id_type!r}")
    return problems


def _check_name(value: Any, key: str) -> list[str]:
    """Group types and event types: text Amplitude accepts as a name of its own."""
    if not isinstance(value, str) or not value.strip():
        return []
    if value.startswith("$") or value.startswith("[Amplitude]"):
        return [f"[sync].{key} {value!r}: names starting with '$' or '[Amplitude]' are reserved by Amplitude"]
    if len(value) > 1024:
        return [f"[sync].{key} is longer than 1,024 characters"]
    return []


def _check_choices(sync: dict[str, Any], destination: Any) -> list[str]:
    checks: list[tuple[Any, str, tuple[str, ...]]] = [
        (sync.get("object"), "[sync].object", tuple(SyncObject)),
        (sync.get("behavior"), "[sync].behavior", BEHAVIORS),
    ]
    problems = []
    if isinstance(destination, dict):
        checks.append((destination.get("region"), "[destination].region", tuple(Region)))
        endpoint = destination.get("endpoint")
        if isinstance(endpoint, str) and not re.match(r"^https?://[^\s/]+", endpoint):
            problems.append(f"[destination].endpoint must be an http:// or https:// URL, not {endpoint!r}")
    problems += [
        f"{where} must be one of {', '.join(choices)}, not {value!r}"
        for value, where, choices in checks
        if isinstance(value, str) and value not in choices
    ]
    return problems


def _check_mappings(mappings: Any, obj: Any = None) -> list[str]:
    if mappings is None:
        if obj == SyncObject.EVENT:
            return []  # an event needs no properties
        return ["[sync] has no [[sync.mappings]]: map at least one column to a property"]
    if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
        return ["[[sync.mappings]] must be a list of tables with column, property and op"]
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(mappings, start=1):
        problems += _check_section(m, f"sync.mappings #{i}", *_MAPPING_KEYS)
        problems += _check_mapping_values(m, i)
        problems += _check_mapping_op(m, i, obj)
        prop = m.get("property")
        if isinstance(prop, str) and prop in seen:
            problems.append(f"mappings #{seen[prop]} and #{i} both write the property {prop!r}")
        elif isinstance(prop, str):
            seen[prop] = i
    return problems


def _check_mapping_op(m: dict[str, Any], i: int, obj: Any) -> list[str]:
    op = m.get("op", Operation.SET)
    if obj == SyncObject.EVENT and op != Operation.SET:
        return [f"mapping #{i}: event properties are sent as they are; op {op!r} is only for profiles"]
    if obj == SyncObject.GROUP and op in tuple(Operation) and op not in GROUP_OPERATIONS:
        allowed = ", ".join(GROUP_OPERATIONS)
        return [f"mapping #{i}: group properties take {allowed}, not {op!r}"]
    return []


def _check_mapping_values(m: dict[str, Any], i: int) -> list[str]:
    problems = []
    op = m.get("op", Operation.SET)
    if isinstance(op, str) and op not in tuple(Operation):
        problems.append(f"mapping #{i}: op must be one of {', '.join(Operation)}, not {op!r}")
    prop = m.get("property")
    if isinstance(prop, str) and prop.startswith("$"):
        problems.append(f"mapping #{i}: property names starting with '$' are reserved by Amplitude")
    if isinstance(prop, str) and len(prop) > 1024:
        problems.append(f"mapping #{i}: property name longer than 1,024 characters")
    return problems


def _build(data: dict[str, Any]) -> SyncConfig:
    src, dst, model, sync = (data[t] for t in ("source", "destination", "model", "sync"))
    secret = dst.get("secret_key")
    destination = Destination(
        name=dst["name"],
        api_key=Secret(dst["api_key"]),
        secret_key=Secret(secret) if secret else None,
        region=Region(dst["region"]),
        endpoint=(dst.get("endpoint") or "").rstrip("/") or None,
    )
    mappings = tuple(
        Mapping_(m["column"], m["property"], Operation(m.get("op", Operation.SET)))
        for m in sync.get("mappings", [])
    )
    obj = SyncObject(sync["object"])
    options = SyncOptions(
        group_type=sync.get("group_type"),
        id_type=sync.get("id_type", "user"),
        event_type=sync.get("event_type"),
        event_type_column=sync.get("event_type_column") or None,
        time_column=sync.get("time_column") or None,
        insert_id_column=sync.get("insert_id_column") or None,
        skip_user_properties_sync=sync.get("skip_user_properties_sync", True),
        synthetic_event=sync.get("synthetic_event") or None,
    )
    return SyncConfig(
        source=Source(Secret(src["url"]), tuple(src["read_files"])),
        destination=destination,
        model=Model(model["name"], model["sql"]),
        sync=Sync(
            name=sync["name"],
            object=obj,
            behavior=sync.get("behavior", INSERT if obj is SyncObject.EVENT else UPDATE_OR_CREATE),
            key=sync["key"],
            mappings=mappings,
            user_key=sync.get("user_key") or None,
            options=options,
        ),
    )

"""The sync file: one TOML document that fully describes one sync, parsed into frozen values."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

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


# Documented hosts (shared/amplitude-api.md §0): ingestion and the dashboard REST API differ.
INGEST_HOSTS = {Region.US: "https://api2.amplitude.com", Region.EU: "https://api.eu.amplitude.com"}
REST_HOSTS = {Region.US: "https://amplitude.com", Region.EU: "https://analytics.eu.amplitude.com"}

BEHAVIORS = ("update_or_create",)
SYNC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Source:
    """Where the model runs: any SQLAlchemy URL (which may hold a password, so it is a Secret)."""

    url: Secret


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
class Sync:
    """How the model's rows become Amplitude updates."""

    name: str
    object: SyncObject
    behavior: str
    key: str
    mappings: tuple[Mapping_, ...]
    user_key: str | None = None


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """One whole sync file."""

    source: Source
    destination: Destination
    model: Model
    sync: Sync

    def required_columns(self) -> tuple[str, ...]:
        """Every model column the sync reads, key first, without repeats."""
        names = [self.sync.key, *([self.sync.user_key] if self.sync.user_key else [])]
        names += [m.column for m in self.sync.mappings]
        return tuple(dict.fromkeys(names))

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
    "source": ({"url"}, set()),
    "destination": ({"name", "api_key", "region"}, {"secret_key", "endpoint"}),
    "model": ({"name", "sql"}, set()),
    "sync": ({"name", "object", "behavior", "key"}, {"user_key", "mappings"}),
}
_MAPPING_KEYS = ({"column", "property"}, {"op"})


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> SyncConfig:
    """Read and validate a sync file; ConfigError lists every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"sync file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sync file {path}: {exc}") from None
    return parse_config(text, env)


def parse_config(text: str, env: Mapping[str, str] | None = None) -> SyncConfig:
    """Parse sync-file text; `${VAR}` in any string is read from `env` (default os.environ)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the sync file is not valid TOML: {exc}") from None
    problems: list[str] = []
    data = _substitute(raw, os.environ if env is None else env, problems, "")
    problems += _check_keys(data)
    if problems:
        raise ConfigError(problems)
    return _build(data)


def _substitute(value: Any, env: Mapping[str, str], problems: list[str], where: str) -> Any:
    """Replace ${VAR} in every string, noting each unset variable once per place."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: _lookup(m.group(1), env, problems, where), value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, problems, _join(where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, problems, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _lookup(name: str, env: Mapping[str, str], problems: list[str], where: str) -> str:
    if name in env:
        return env[name]
    problems.append(f"environment variable {name} is not set (used in {where})")
    return "${" + name + "}"  # left as written, so no second problem is reported for it


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
    return problems


def _check_section(section: dict[str, Any], table: str, required: set[str], optional: set[str]) -> list[str]:
    problems = [f"unknown key {k!r} in [{table}]" for k in section if k not in required | optional]
    problems += [f"missing key {k!r} in [{table}]" for k in sorted(required) if k not in section]
    for key, value in section.items():
        if key != "mappings" and key in required | optional and not isinstance(value, str):
            problems.append(f"[{table}].{key} must be a string")
        elif isinstance(value, str) and key in required and not value.strip():
            problems.append(f"[{table}].{key} must not be empty")
    return problems


def _check_sync(sync: dict[str, Any], destination: Any) -> list[str]:
    problems = list(_check_choices(sync, destination))
    name = sync.get("name")
    if isinstance(name, str) and name and not SYNC_NAME.match(name):
        problems.append(
            f"[sync].name {name!r} may hold only letters, digits, spaces, '.', '_' and '-' "
            "(it names the sync's saved state)"
        )
    if sync.get("user_key") is not None and sync.get("object") != SyncObject.DEVICE:
        problems.append('[sync].user_key is only for device syncs (object = "device")')
    problems += _check_mappings(sync.get("mappings"))
    return problems


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


def _check_mappings(mappings: Any) -> list[str]:
    if mappings is None:
        return ["[sync] has no [[sync.mappings]]: map at least one column to a property"]
    if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
        return ["[[sync.mappings]] must be a list of tables with column, property and op"]
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(mappings, start=1):
        problems += _check_section(m, f"sync.mappings #{i}", *_MAPPING_KEYS)
        problems += _check_mapping_values(m, i)
        prop = m.get("property")
        if isinstance(prop, str) and prop in seen:
            problems.append(f"mappings #{seen[prop]} and #{i} both write the property {prop!r}")
        elif isinstance(prop, str):
            seen[prop] = i
    return problems


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
        Mapping_(m["column"], m["property"], Operation(m.get("op", Operation.SET))) for m in sync["mappings"]
    )
    return SyncConfig(
        source=Source(Secret(src["url"])),
        destination=destination,
        model=Model(model["name"], model["sql"]),
        sync=Sync(
            name=sync["name"],
            object=SyncObject(sync["object"]),
            behavior=sync["behavior"],
            key=sync["key"],
            mappings=mappings,
            user_key=sync.get("user_key") or None,
        ),
    )

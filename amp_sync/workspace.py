"""The app's saved objects (destinations, warehouses, models, syncs) in one owner-only file."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from amp_sync.config import (
    INSERT,
    UPDATE_OR_CREATE,
    Destination,
    Mapping_,
    Model,
    Operation,
    Region,
    Source,
    Sync,
    SyncConfig,
    SyncObject,
    SyncOptions,
    absolute_file_url,
    parse_config,
)
from amp_sync.errors import ConfigError, StateError
from amp_sync.secret import Secret
from amp_sync.state import DestinationRef, rename_state

WORKSPACE_FILE = "workspace.json"
SANDBOX_DESTINATION = "Amplitude sandbox"
DEMO_WAREHOUSE = "Demo warehouse (DuckDB)"
KEY_VARS = ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY")
PASSWORD_VAR = "WAREHOUSE_PASSWORD"


@dataclass(frozen=True, slots=True)
class Warehouse:
    """A named warehouse connection; the URL may hold a password, so it is a Secret."""

    name: str
    url: Secret


@dataclass(frozen=True, slots=True)
class SavedModel:
    """A named SQL model run against one saved warehouse."""

    name: str
    warehouse: str
    sql: str


@dataclass(frozen=True, slots=True)
class SavedSync:
    """A sync as the app keeps it: names of its model and destination plus the mapping."""

    name: str
    model: str
    destination: str
    object: SyncObject
    key: str
    mappings: tuple[Mapping_, ...]
    user_key: str | None = None
    options: SyncOptions = field(default_factory=SyncOptions)


def takes_user_key(obj: SyncObject, options: SyncOptions) -> bool:
    """Device syncs, and event syncs keyed on device ids, may name the user each row belongs to."""
    return obj is SyncObject.DEVICE or (obj is SyncObject.EVENT and options.id_type == "device")


def relevant_options(obj: SyncObject, options: SyncOptions) -> SyncOptions:
    """Only the options `obj` takes; the others back to their defaults (a form may hold leftovers)."""
    if obj is SyncObject.GROUP:
        return SyncOptions(group_type=options.group_type)
    if obj is SyncObject.EVENT:
        return replace(options, group_type=None, synthetic_event=None)
    return SyncOptions(synthetic_event=options.synthetic_event)


def behavior_of(obj: SyncObject) -> str:
    """Events are inserted; profiles are updated or created."""
    return INSERT if obj is SyncObject.EVENT else UPDATE_OR_CREATE


Item = TypeVar("Item", Destination, Warehouse, SavedModel, SavedSync)


def _destination_out(d: Destination) -> dict[str, Any]:
    return {
        "name": d.name, "api_key": d.api_key.reveal(), "region": str(d.region), "endpoint": d.endpoint,
        "secret_key": d.secret_key.reveal() if d.secret_key else None,
    }  # fmt: skip


def _destination_in(r: dict[str, Any]) -> Destination:
    secret = r.get("secret_key")
    return Destination(
        r["name"],
        Secret(r["api_key"]),
        Secret(secret) if secret else None,
        Region(r["region"]),
        r.get("endpoint"),
    )


def _sync_out(s: SavedSync) -> dict[str, Any]:
    return {
        "name": s.name, "model": s.model, "destination": s.destination, "object": str(s.object),
        "key": s.key, "user_key": s.user_key,
        "mappings": [{"column": m.column, "property": m.property, "op": str(m.op)} for m in s.mappings],
        "options": asdict(s.options),
    }  # fmt: skip


_OPTION_FIELDS = frozenset(f.name for f in fields(SyncOptions))


def _sync_in(r: dict[str, Any]) -> SavedSync:
    mappings = tuple(Mapping_(m["column"], m["property"], Operation(m["op"])) for m in r["mappings"])
    # Files written before a sync had options have none: the defaults are what those syncs did.
    options = {k: v for k, v in (r.get("options") or {}).items() if k in _OPTION_FIELDS}
    return SavedSync(
        r["name"],
        r["model"],
        r["destination"],
        SyncObject(r["object"]),
        r["key"],
        mappings,
        r.get("user_key"),
        SyncOptions(**options),
    )


@dataclass(frozen=True, slots=True)
class _Kind:
    section: str
    label: str
    dump: Callable[[Any], dict[str, Any]]
    load: Callable[[dict[str, Any]], Any]


_KINDS: dict[type, _Kind] = {
    Destination: _Kind("destinations", "destination", _destination_out, _destination_in),
    Warehouse: _Kind(
        "warehouses",
        "warehouse",
        lambda w: {"name": w.name, "url": w.url.reveal()},
        lambda r: Warehouse(r["name"], Secret(r["url"])),
    ),
    SavedModel: _Kind(
        "models",
        "model",
        lambda m: {"name": m.name, "warehouse": m.warehouse, "sql": m.sql},
        lambda r: SavedModel(r["name"], r["warehouse"], r["sql"]),
    ),
    SavedSync: _Kind("syncs", "sync", _sync_out, _sync_in),
}
# Which saved objects point at which: (kind referred to, kind referring, field holding the name).
_REFERENCES = (
    (Warehouse, SavedModel, "warehouse"),
    (SavedModel, SavedSync, "model"),
    (Destination, SavedSync, "destination"),
)


class Workspace:
    """Everything the app saved, read fresh on each call so several sessions stay consistent."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / WORKSPACE_FILE
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read the workspace file {self.path}: {exc}") from None
        return {k.section: dict(data.get(k.section, {})) for k in _KINDS.values()}

    def _write(self, data: dict[str, dict[str, dict[str, Any]]]) -> None:
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".workspace-", dir=self.home)  # created 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, ensure_ascii=False)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateError(f"cannot save the workspace in {self.home}: {exc}") from None

    def all(self, kind: type[Item]) -> list[Item]:
        """Every saved object of one kind, by name."""
        spec = _KINDS[kind]
        return [
            spec.load(r) for _, r in sorted(self._read()[spec.section].items(), key=lambda kv: kv[0].lower())
        ]

    def get(self, kind: type[Item], name: str) -> Item:
        """One saved object; ConfigError when there is none of that name."""
        spec = _KINDS[kind]
        record = self._read()[spec.section].get(name)
        if record is None:
            raise ConfigError(f"there is no {spec.label} named {name!r}")
        return spec.load(record)

    def names(self, kind: type[Item]) -> list[str]:
        """The names of every saved object of one kind."""
        return [item.name for item in self.all(kind)]

    def save(self, item: Item, previous_name: str | None = None) -> Item:
        """Create or replace `item`; renaming (previous_name) updates everything that refers to it.

        A warehouse's relative SQLite or DuckDB file path is saved absolute, against the working
        directory (the folder the app runs in), so it reads the same file wherever amp_sync starts.
        """
        if isinstance(item, Warehouse):
            item = with_absolute_path(item, Path.cwd())
        spec = _KINDS[type(item)]
        problems = _check_name(item.name, spec.label)
        with self._lock:
            data = self._read()
            section = data[spec.section]
            if item.name != previous_name and item.name in section:
                problems.append(f"a {spec.label} named {item.name!r} already exists")
            if problems:
                raise ConfigError(problems)
            if previous_name and previous_name != item.name:
                section.pop(previous_name, None)
                _rename_references(data, type(item), previous_name, item.name)
                if isinstance(item, SavedSync):
                    rename_state(self.home, previous_name, item.name)
            section[item.name] = spec.dump(item)
            self._write(data)
        return item

    def delete(self, kind: type[Item], name: str) -> None:
        """Remove a saved object; refused while others still use it."""
        spec = _KINDS[kind]
        with self._lock:
            data = self._read()
            users = _users_of(data, kind, name)
            if users:
                raise ConfigError(
                    f"the {spec.label} {name!r} is used by {', '.join(users)}; change or delete those first"
                )
            data[spec.section].pop(name, None)
            self._write(data)

    def sync_config(self, name: str) -> SyncConfig:
        """The full sync file behind a saved sync, validated like an imported one."""
        sync = self.get(SavedSync, name)
        model = self.get(SavedModel, sync.model)
        return SyncConfig(
            source=Source(self.get(Warehouse, model.warehouse).url),
            destination=self.get(Destination, sync.destination),
            model=Model(model.name, model.sql),
            sync=Sync(
                sync.name, sync.object, behavior_of(sync.object), sync.key, sync.mappings,
                sync.user_key if takes_user_key(sync.object, sync.options) else None,
                relevant_options(sync.object, sync.options),
            ),
        )  # fmt: skip

    def writers(self, config: SyncConfig, skip: str) -> dict[str, list[str]]:
        """Other saved syncs that write any property `config` writes, at the same Amplitude project."""
        here, writes = DestinationRef.of(config.destination).ident, config.writes()
        found: dict[str, list[str]] = {}
        for name in self.names(SavedSync):
            if name == skip:
                continue
            try:
                other = self.sync_config(name)
            except (ConfigError, StateError, KeyError):
                continue  # an incomplete sync writes nothing yet
            shared = sorted(writes & other.writes())
            if shared and DestinationRef.of(other.destination).ident == here:
                found[name] = shared
        return found

    def syncs_sending_to(self, destination: str) -> list[str]:
        """The names of the saved syncs whose destination is `destination`."""
        records = self._read()[_KINDS[SavedSync].section]
        return sorted((n for n, r in records.items() if r.get("destination") == destination), key=str.lower)

    def set_destination(self, sync: str, destination: str) -> SavedSync:
        """Save the sync `sync` with another saved destination (a promotion); its state stays as it is."""
        self.get(Destination, destination)  # ConfigError when there is none of that name
        return self.save(replace(self.get(SavedSync, sync), destination=destination), previous_name=sync)

    def import_sync(self, text: str, env: Mapping[str, str] | None = None) -> SavedSync:
        """Save the destination, warehouse, model and sync of a sync file (replacing same names).

        A relative warehouse file path is read from the working directory, as when saved by hand.
        """
        config = parse_config(text, env, base=Path.cwd())
        warehouse_name = f"{config.model.name} warehouse"
        existing = {w.url.reveal(): w.name for w in self.all(Warehouse)}
        warehouse_name = existing.get(config.source.url.reveal(), warehouse_name)
        items: list[Any] = [
            config.destination,
            Warehouse(warehouse_name, config.source.url),
            SavedModel(config.model.name, warehouse_name, config.model.sql),
            SavedSync(
                config.sync.name, config.model.name, config.destination.name, config.sync.object,
                config.sync.key, config.sync.mappings, config.sync.user_key, config.sync.options,
            ),
        ]  # fmt: skip
        for item in items:
            self.save(item, previous_name=item.name)
        return items[-1]

    def make_paths_absolute(self, base: Path) -> int:
        """Make saved warehouses' relative file paths absolute against `base`; how many changed."""
        with self._lock:
            data = self._read()
            changed = 0
            for record in data[_KINDS[Warehouse].section].values():
                url = absolute_file_url(record["url"], base)
                changed += url != record["url"]
                record["url"] = url
            if changed:
                self._write(data)
        return changed

    def ensure_defaults(self, sandbox_url: str, demo_warehouse_url: str) -> None:
        """On the first start: the sandbox destination and the demo warehouse."""
        if self.path.exists():
            return
        from amp_sync.sandbox import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

        self.save(
            Destination(
                SANDBOX_DESTINATION,
                Secret(SANDBOX_API_KEY),
                Secret(SANDBOX_SECRET_KEY),
                Region.US,
                sandbox_url,
            )
        )
        self.save(Warehouse(DEMO_WAREHOUSE, Secret(demo_warehouse_url)))


def promoted(config: SyncConfig, destination: Destination) -> SyncConfig:
    """`config` sending to `destination` instead: what a promotion previews before anything is saved."""
    return replace(config, destination=destination)


def with_absolute_path(warehouse: Warehouse, base: Path) -> Warehouse:
    """`warehouse` with a relative SQLite or DuckDB file path in its URL made absolute against `base`."""
    url = absolute_file_url(warehouse.url.reveal(), base)
    return warehouse if url == warehouse.url.reveal() else replace(warehouse, url=Secret(url))


def _check_name(name: str, label: str) -> list[str]:
    if not name.strip():
        return [f"give the {label} a name"]
    if len(name) > 100:
        return [f"the {label} name is longer than 100 characters"]
    return []


def _users_of(data: dict[str, dict[str, dict[str, Any]]], kind: type, name: str) -> list[str]:
    return [
        f"{_KINDS[user].label} {other!r}"
        for target, user, name_field in _REFERENCES
        if target is kind
        for other, record in data[_KINDS[user].section].items()
        if record.get(name_field) == name
    ]


def _rename_references(data: dict[str, dict[str, dict[str, Any]]], kind: type, old: str, new: str) -> None:
    for target, user, name_field in _REFERENCES:
        if target is kind:
            for record in data[_KINDS[user].section].values():
                if record.get(name_field) == old:
                    record[name_field] = new


def export_sync(config: SyncConfig, with_secrets: bool = False) -> str:
    """The sync file of `config`; keys and any warehouse password become ${VAR} placeholders."""
    d = config.destination
    api_key = d.api_key.reveal() if with_secrets else _placeholder(KEY_VARS[0])
    lines = [
        "[source]",
        f"url = {_toml(_url_for_export(config.source.url, with_secrets))}",
        "",
        "[destination]",
    ]
    lines += [f"name = {_toml(d.name)}", f"api_key = {_toml(api_key)}"]
    if d.secret_key:
        secret = d.secret_key.reveal() if with_secrets else _placeholder(KEY_VARS[1])
        lines.append(f"secret_key = {_toml(secret)}")
    lines.append(f"region = {_toml(str(d.region))}")
    if d.endpoint:
        lines.append(f"endpoint = {_toml(d.endpoint)}")
    lines += ["", "[model]", f"name = {_toml(config.model.name)}", f"sql = {_toml(config.model.sql)}", ""]
    s = config.sync
    lines += ["[sync]", f"name = {_toml(s.name)}", f"object = {_toml(str(s.object))}"]
    lines += [f"behavior = {_toml(s.behavior)}", f"key = {_toml(s.key)}"]
    if s.user_key:
        lines.append(f"user_key = {_toml(s.user_key)}")
    lines += _option_lines(s.object, s.options)
    for m in s.mappings:
        lines += ["", "[[sync.mappings]]", f"column = {_toml(m.column)}", f"property = {_toml(m.property)}"]
        lines.append(f"op = {_toml(str(m.op))}")
    return "\n".join(lines) + "\n"


def _option_lines(obj: SyncObject, options: SyncOptions) -> list[str]:
    """The [sync] keys of `obj`'s options, each only when it is set (booleans always, for events)."""
    o = relevant_options(obj, options)
    texts = [("group_type", o.group_type), ("synthetic_event", o.synthetic_event)]
    if obj is SyncObject.EVENT:
        texts = [
            ("id_type", o.id_type), ("event_type", o.event_type), ("event_type_column", o.event_type_column),
            ("time_column", o.time_column), ("insert_id_column", o.insert_id_column),
        ]  # fmt: skip
    lines = [f"{key} = {_toml(value)}" for key, value in texts if value]
    if obj is SyncObject.EVENT:
        lines.append(f"skip_user_properties_sync = {'true' if o.skip_user_properties_sync else 'false'}")
    return lines


def _url_for_export(url: Secret, with_secrets: bool) -> str:
    text = url.reveal()
    try:
        parsed = make_url(text)
    except ArgumentError:  # exported as it was typed
        return text
    if with_secrets or not parsed.password:
        return text
    marker = "AMPSYNCPASSWORDPLACEHOLDER"
    return (
        parsed.set(password=marker)
        .render_as_string(hide_password=False)
        .replace(marker, _placeholder(PASSWORD_VAR))
    )


def _placeholder(var: str) -> str:
    return "${" + var + "}"


def _toml(text: str) -> str:
    """A TOML string: multi-line literal-friendly for SQL, basic (JSON-compatible) otherwise."""
    plain = all(c in "\n\t" or ord(c) >= 32 for c in text) and "\x7f" not in text
    if "\n" in text and plain:
        body = text.replace("\\", "\\\\").replace('"""', '""\\"')
        if body.endswith('"'):
            body = body[:-1] + '\\"'  # keep the closing quotes unambiguous
        return f'"""\n{body}"""'
    # JSON strings are TOML basic strings, except that TOML forbids a raw DEL character.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")

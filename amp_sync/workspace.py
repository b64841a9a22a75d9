"""The app's saved objects (destinations, warehouses, models, syncs) in one owner-only file.

The file holds no secret. A key or URL saved as `${VAR}` is a reference, read from the
environment (or a deployed app's secrets) each time it is used; one typed in clear goes to the
vault (vault.py: the system keyring, else an owner-only secrets.json) and the file keeps only
where it went.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from amp_sync.config import (
    INSERT,
    SYNC_NAME,
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
    escape,
    fill_in,
    has_control_characters,
    parse_config,
    placeholder_problems,
    references,
    resolve,
)
from amp_sync.errors import ConfigError, StateError
from amp_sync.health import Check, scrubbed
from amp_sync.secret import Secret
from amp_sync.state import DestinationRef, rename_state
from amp_sync.vault import Entry, Place, Vault
from amp_sync.warehouse import describe_url

WORKSPACE_FILE = "workspace.json"
# 1: keys and URLs in clear (moved to the vault on first read); 2: ${VAR} references and vault entries.
FORMAT = 2
SANDBOX_DESTINATION = "Amplitude sandbox"
DEMO_WAREHOUSE = "Demo warehouse (DuckDB)"
KEY_VARS = ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY")
PASSWORD_VAR = "WAREHOUSE_PASSWORD"
# The places of a sync file whose ${VAR} an import keeps as written, to be read when used.
SECRET_PLACES = ("source.url", "destination.api_key", "destination.secret_key")
_LABELS = {"api_key": "API key", "secret_key": "secret key", "url": "URL"}
_MARK = "AMPSYNCREFERENCE"  # stands for a ${VAR} while a URL is taken apart: valid in every part
# Query parameters that carry credentials: DuckDB's motherduck_token, Snowflake's private_key_file_pwd…
_SECRET_QUERY = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)
_CHECK = "last_check"  # in a destination's or warehouse's record; `save` drops it: a change is unchecked


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Kept(Secret):
    """A saved key or URL: its value when it can be read now, and how it is kept.

    Saving an object whose secret is a Kept keeps it as it was (a reference stays a reference);
    a plain Secret is text as typed, where `${VAR}` is a reference and the rest a typed secret.
    """

    stored: str | Entry = ""  # the ${VAR} text as saved, or the vault entry holding it
    origin: str = ""  # where the value comes from, in words
    problem: str | None = None  # why the value cannot be read now; None when it can
    note: str = ""  # the problem in two or three words, for a list

    def reveal(self) -> str:
        """The real value; ConfigError, naming the variable and the object, when it cannot be read."""
        if self.problem is not None:
            raise ConfigError(self.problem)
        return Secret.reveal(self)

    def masked(self) -> str:
        """Bullets and the last four characters; where it would come from, when it cannot be read."""
        return f"{self.origin} ({self.note})" if self.problem else Secret.masked(self)

    def __bool__(self) -> bool:
        return self.problem is not None or Secret.__bool__(self)

    def __eq__(self, other: object) -> bool:
        # The same value is the same key, however it is kept: a saved config equals a parsed one.
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash((self._value,))


@dataclass(frozen=True, slots=True)
class Warehouse:
    """A named warehouse connection; the URL may hold a password, so it is a Secret.

    `read_files`: the absolute files, folders and globs its DuckDB models may read (see Source).
    """

    name: str
    url: Secret
    read_files: tuple[str, ...] = ()


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


def described(secret: Secret | None) -> str:
    """A saved key as a list shows it: masked, and where it comes from (or why it cannot be read)."""
    if secret is None:
        return "—"
    if isinstance(secret, Kept) and not secret.problem:
        return f"{secret.masked()}, {secret.origin}"
    return secret.masked()


def origin(secret: Secret) -> str:
    """Where a saved key or URL comes from, in words ("" for one not read from the workspace)."""
    return secret.origin if isinstance(secret, Kept) else ""


def shown_url(warehouse: Warehouse) -> str:
    """The warehouse's URL with its password hidden; as saved, with why, when it cannot be read now."""
    url = warehouse.url
    if isinstance(url, Kept) and url.problem:
        saved = f"{_described_url(url.stored)} " if isinstance(url.stored, str) else ""
        return f"{saved}({url.origin}: {url.note})"
    return _described_url(url.reveal())


def _described_url(text: str) -> str:
    try:
        return describe_url(text)
    except ValueError:  # a port that is not a number (a ${VAR}, or a typo)
        return "(a URL whose port is not a number)"


Item = TypeVar("Item", Destination, Warehouse, SavedModel, SavedSync)


def _destination_out(d: Destination) -> dict[str, Any]:
    return {"name": d.name, "region": str(d.region), "endpoint": d.endpoint}


def _destination_in(r: dict[str, Any]) -> Destination:
    return Destination(
        r["name"], r["api_key"], r.get("secret_key") or None, Region(r["region"]), r.get("endpoint")
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
    dump: Callable[[Any], dict[str, Any]]  # the record, but for its secrets (the workspace keeps those)
    load: Callable[[dict[str, Any]], Any]  # from a record whose secrets are Kept values
    secrets: tuple[str, ...] = ()
    page: str = ""  # where a missing secret is typed again


_KINDS: dict[type, _Kind] = {
    Destination: _Kind(
        "destinations",
        "destination",
        _destination_out,
        _destination_in,
        ("api_key", "secret_key"),
        "Destinations",
    ),
    Warehouse: _Kind(
        "warehouses",
        "warehouse",
        lambda w: {"name": w.name, "read_files": list(w.read_files)},
        lambda r: Warehouse(r["name"], r["url"], tuple(r.get("read_files") or ())),
        ("url",),
        "Warehouses",
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
Data = dict[str, dict[str, dict[str, Any]]]


class Workspace:
    """Everything the app saved, read fresh on each call so several sessions stay consistent.

    `${VAR}` references are read from `env` (default: os.environ, when used); typed secrets are
    kept in `vault` (default: the system keyring, else `<home>/secrets.json`).
    """

    def __init__(self, home: Path, env: Mapping[str, str] | None = None, vault: Vault | None = None) -> None:
        self.home = home
        self.path = home / WORKSPACE_FILE
        self.env = env
        self.vault = vault if vault is not None else Vault(home)
        self._lock = threading.RLock()  # re-entrant: the first read of an old file rewrites it

    def _read(self) -> Data:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {"format": FORMAT}
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read the workspace file {self.path}: {exc}") from None
        if not isinstance(data, dict):
            raise StateError(f"cannot read the workspace file {self.path}: it is not a JSON object")
        sections = {k.section: dict(data.get(k.section, {})) for k in _KINDS.values()}
        version = data.get("format", 1)
        if version == 1:
            return self._upgrade(sections)
        if version != FORMAT:
            raise StateError(
                f"the workspace file {self.path} was written by a newer amp_sync (format {version}): "
                "upgrade amp_sync to use it"
            )
        return sections

    def _upgrade(self, data: Data) -> Data:
        """Format 1 held keys and URLs in clear: move them to the vault, rewrite the file without them."""
        with self._lock:
            for spec in _KINDS.values():
                for name, record in data[spec.section].items():
                    for key in spec.secrets:
                        if record.get(key):  # a value as typed, which is no template: escaped
                            record[key] = self._keep(spec, name, key, escape(str(record[key])))
            self._write(data)
        return data

    def _write(self, data: Data) -> None:
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".workspace-", dir=self.home)  # created 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, **data}, f, indent=2, ensure_ascii=False)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateError(f"cannot save the workspace in {self.home}: {exc}") from None

    def all(self, kind: type[Item]) -> list[Item]:
        """Every saved object of one kind, by name, secrets read; ConfigError when one cannot be read."""
        spec, items, problems = _KINDS[kind], [], []
        for name, record in _by_name(self._read()[spec.section]):
            try:
                items.append(self._load(spec, name, record, strict=True))
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return items

    def listing(self, kind: type[Item]) -> list[Item]:
        """Every saved object of one kind for a list: a secret that cannot be read now says why instead.

        Such a secret is a Kept whose `reveal()` raises that ConfigError: use `get` to act on one.
        """
        spec = _KINDS[kind]
        return [
            self._load(spec, name, record, strict=False)
            for name, record in _by_name(self._read()[spec.section])
        ]

    def get(self, kind: type[Item], name: str) -> Item:
        """One saved object, secrets read; ConfigError when there is none of that name or one is unread."""
        spec = _KINDS[kind]
        return self._load(spec, name, self._record(spec, name), strict=True)

    def listed(self, kind: type[Item], name: str) -> Item:
        """One saved object as `listing` gives it: what a form edits, keys kept as they are."""
        spec = _KINDS[kind]
        return self._load(spec, name, self._record(spec, name), strict=False)

    def names(self, kind: type[Item]) -> list[str]:
        """The names of every saved object of one kind (no secret is read)."""
        return [name for name, _ in _by_name(self._read()[_KINDS[kind].section])]

    def _record(self, spec: _Kind, name: str) -> dict[str, Any]:
        record = self._read()[spec.section].get(name)
        if record is None:
            raise ConfigError(f"there is no {spec.label} named {name!r}")
        return record

    def _load(self, spec: _Kind, name: str, record: dict[str, Any], strict: bool) -> Any:
        kept = {k: self._kept(spec, name, k, _stored_in(record[k])) for k in spec.secrets if record.get(k)}
        problems = [s.problem for s in kept.values() if s.problem]
        if strict and problems:
            raise ConfigError(problems)
        return spec.load({**record, **kept})

    def _kept(self, spec: _Kind, name: str, key: str, stored: str | Entry) -> Kept:
        """One saved secret read: from the template saved in place, or the vault's."""
        where = _where(spec, name, key)
        if isinstance(stored, str):
            return self._resolved(stored, stored, _origin(stored), where)
        origin = self.vault.where(stored.place)
        try:
            template = self.vault.get(stored)
        except StateError as exc:
            return Kept("", stored, origin, str(exc), "cannot be read")
        if template is None:
            problem = f"{where} is missing ({origin}): enter it again on the {spec.page} page"
            return Kept("", stored, origin, problem, "missing")
        return self._resolved(template, stored, origin, where)

    def _resolved(self, template: str, stored: str | Entry, origin: str, where: str) -> Kept:
        env = self._env()
        try:
            return Kept(resolve(template, env, where), stored, origin)
        except ConfigError as exc:
            unset = any(name not in env for name in references(template))
            return Kept("", stored, origin, str(exc), "not set" if unset else "malformed")

    def _env(self) -> Mapping[str, str]:
        return os.environ if self.env is None else self.env

    def save(self, item: Item, previous_name: str | None = None) -> Item:
        """Create or replace `item`; renaming (previous_name) updates everything that refers to it.

        A key or URL given as a plain Secret is text as typed: `${VAR}` in it is a reference, read
        when used; other text is a typed secret, kept in the vault. One read from the workspace (a
        Kept) stays as it was kept, its vault entry following a rename.

        A warehouse's relative SQLite or DuckDB file path is saved absolute, against the working
        directory (the folder the app runs in), so it reads the same file wherever amp_sync starts.
        """
        if isinstance(item, Warehouse):
            item = with_absolute_path(item, Path.cwd())
        spec = _KINDS[type(item)]
        with self._lock:
            data = self._read()
            problems = self._problems(data, spec, item, previous_name)
            if problems:
                raise ConfigError(problems)
            record = {**spec.dump(item), **{k: self._keep_value(spec, item, k) for k in spec.secrets}}
            old = data[spec.section].pop(previous_name or item.name, None)
            if previous_name and previous_name != item.name:
                _rename_references(data, type(item), previous_name, item.name)
                if isinstance(item, SavedSync):
                    rename_state(self.home, previous_name, item.name)
            data[spec.section][item.name] = record
            self._write(data)
            self._forget(spec, old, record)
        return item

    def _problems(self, data: Data, spec: _Kind, item: Any, previous_name: str | None) -> list[str]:
        """Why `item` cannot be saved (replacing `previous_name`), in words; [] when it can."""
        problems = _check_name(item.name, spec.label)
        section = data[spec.section]
        if item.name != previous_name and item.name in section:
            problems.append(f"a {spec.label} named {item.name!r} already exists")
        elif isinstance(item, SavedSync):
            problems += _case_clash(section, item.name, previous_name)
        for key in spec.secrets:
            value = getattr(item, key)
            if value is not None and not isinstance(value, Kept):
                problems += placeholder_problems(value.reveal(), _where(spec, item.name, key))
        return problems

    def _keep_value(self, spec: _Kind, item: Any, key: str) -> Any:
        """What the record holds for the secret `key` of `item`: a template, or where the vault keeps it."""
        value = getattr(item, key)
        if value is None:
            return None
        if not isinstance(value, Kept):
            return self._keep(spec, item.name, key, value.reveal())
        entry = value.stored
        if not isinstance(entry, Entry) or entry.name == self._entry_name(spec, item.name, key):
            return _stored_out(entry)
        template = self.vault.get(entry)  # renamed: the vault entry moves to the new name
        if template is None:
            raise ConfigError(value.problem or f"{_where(spec, item.name, key)} is missing ({value.origin})")
        return self._keep(spec, item.name, key, template)

    def _keep(self, spec: _Kind, name: str, key: str, template: str) -> Any:
        if not _holds_secret(key, template):
            return template
        return _stored_out(self.vault.put(self._entry_name(spec, name, key), template))

    def _entry_name(self, spec: _Kind, name: str, key: str) -> str:
        """The vault's name for one secret: the object, the field and the home it belongs to."""
        return f"{spec.label} {name!r} {key} in {self.home.absolute()}"

    def _forget(self, spec: _Kind, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Delete the vault entries `old` held that `new` no longer uses."""
        if old is None:
            return
        used = {_stored_in(new[k]) for k in spec.secrets if new and new.get(k)}
        for key in spec.secrets:
            entry = _stored_in(old[key]) if old.get(key) else None
            if isinstance(entry, Entry) and entry not in used:
                self.vault.delete(entry)

    def record_check(self, kind: type[Destination] | type[Warehouse], name: str, check: Check) -> None:
        """Keep `check` as the last check of the saved `name`, its reason freed of the object's secrets."""
        spec = _KINDS[kind]
        with self._lock:
            data = self._read()
            record = data[spec.section].get(name)
            if record is None:
                return  # deleted meanwhile: nothing to mark
            secrets = _secret_texts(self._load(spec, name, record, strict=False), spec.secrets)
            record[_CHECK] = Check(check.ok, scrubbed(check.reason, secrets), check.at).record()
            self._write(data)

    def checks(self, kind: type[Destination] | type[Warehouse]) -> dict[str, Check | None]:
        """The last check of every saved object of `kind`, by name; None for one never checked."""
        section = self._read()[_KINDS[kind].section]
        return {name: Check.from_record(record.get(_CHECK)) for name, record in _by_name(section)}

    def delete(self, kind: type[Item], name: str) -> None:
        """Remove a saved object and its vault entries; refused while others still use it."""
        spec = _KINDS[kind]
        with self._lock:
            data = self._read()
            users = _users_of(data, kind, name)
            if users:
                raise ConfigError(
                    f"the {spec.label} {name!r} is used by {', '.join(users)}; change or delete those first"
                )
            old = data[spec.section].pop(name, None)
            self._write(data)
            self._forget(spec, old, None)

    def sync_config(self, name: str) -> SyncConfig:
        """The full sync file behind a saved sync, validated like an imported one, its secrets read."""
        return self._sync_config(name, strict=True)

    def export(self, name: str, with_secrets: bool = False) -> str:
        """The sync file of a saved sync (see export_sync); its ${VAR} references need not be set."""
        return export_sync(self._sync_config(name, strict=with_secrets), with_secrets)

    def _sync_config(self, name: str, strict: bool) -> SyncConfig:
        sync = self.get(SavedSync, name)
        model = self.get(SavedModel, sync.model)
        read = self.get if strict else self.listed
        problems: list[str] = []
        # Both are read before any problem is raised, so every variable to set is named at once.
        destination = _noting(lambda: read(Destination, sync.destination), problems)
        warehouse = _noting(lambda: read(Warehouse, model.warehouse), problems)
        if problems or destination is None or warehouse is None:
            raise ConfigError(problems)
        return SyncConfig(
            source=Source(warehouse.url, warehouse.read_files),
            destination=destination,
            model=Model(model.name, model.sql),
            sync=Sync(
                sync.name, sync.object, behavior_of(sync.object), sync.key, sync.mappings,
                sync.user_key if takes_user_key(sync.object, sync.options) else None,
                relevant_options(sync.object, sync.options),
            ),
        )  # fmt: skip

    def run_problems(self, name: str) -> list[str]:
        """What stops the saved sync `name` running now: a variable not set, a key gone; [] if nothing."""
        try:
            self.sync_config(name)
        except ConfigError as exc:
            return exc.problems
        return []

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
        self._record(_KINDS[Destination], destination)  # ConfigError when there is none of that name
        return self.save(replace(self.get(SavedSync, sync), destination=destination), previous_name=sync)

    def import_sync(
        self, text: str, env: Mapping[str, str] | None = None, typed: Mapping[str, str] | None = None
    ) -> SavedSync:
        """Save the destination, warehouse, model and sync of a sync file (replacing same names).

        `${VAR}` in the keys and the warehouse URL is saved as written and read when used, so it
        need not be set yet; a variable in `typed` (a key typed beside the file) is written in as a
        typed secret instead. Elsewhere `${VAR}` is read from `env` (default: the workspace's).
        A relative warehouse file path is read from the working directory, as when saved by hand.
        """
        config = parse_config(text, self._env() if env is None else env, keep=SECRET_PLACES)
        d, values = config.destination, typed or {}
        secret_key = _typed_in(d.secret_key, values) if d.secret_key else None
        destination = replace(d, api_key=_typed_in(d.api_key, values), secret_key=secret_key)
        url = _typed_in(config.source.url, values)
        found = Warehouse(f"{config.model.name} warehouse", url, config.source.read_files)
        warehouse = with_absolute_path(found, Path.cwd())
        warehouse = replace(warehouse, name=self._warehouse_with(warehouse.url.reveal()) or warehouse.name)
        # The same Amplitude project and key already saved under another name: that one is used.
        destination = replace(destination, name=self._destination_like(destination) or destination.name)
        sync = SavedSync(
            config.sync.name, config.model.name, destination.name, config.sync.object,
            config.sync.key, config.sync.mappings, config.sync.user_key, config.sync.options,
        )  # fmt: skip
        problems = self._problems(self._read(), _KINDS[SavedSync], sync, sync.name)
        if problems:  # said before anything is saved
            raise ConfigError(problems)
        model = SavedModel(config.model.name, warehouse.name, config.model.sql)
        self.save(destination, previous_name=destination.name)
        self.save(warehouse, previous_name=warehouse.name)
        self.save(model, previous_name=model.name)
        return self.save(sync, previous_name=sync.name)

    def _destination_like(self, wanted: Destination) -> str | None:
        """The saved destination with `wanted`'s region, endpoint and API key as saved, if any."""
        for name, record in _by_name(self._read()[_KINDS[Destination].section]):
            place = (record.get("region"), record.get("endpoint"))
            if place != (str(wanted.region), wanted.endpoint) or name == wanted.name:
                continue
            if self._saved_template(record, "api_key") == wanted.api_key.reveal():
                return name
        return None

    def _warehouse_with(self, template: str) -> str | None:
        """The saved warehouse whose URL was saved as `template`, if any."""
        for name, record in _by_name(self._read()[_KINDS[Warehouse].section]):
            if self._saved_template(record, "url") == template:
                return name
        return None

    def _saved_template(self, record: dict[str, Any], key: str) -> str | None:
        """A secret of `record` as it was saved (in place or in the vault); None when unreadable now."""
        stored = _stored_in(record.get(key, ""))
        try:
            return stored if isinstance(stored, str) else self.vault.get(stored)
        except StateError:
            return None

    def make_paths_absolute(self, base: Path) -> int:
        """Make saved warehouses' relative file paths absolute against `base`; how many changed."""
        with self._lock:
            data = self._read()
            changed = 0
            for record in data[_KINDS[Warehouse].section].values():
                text = _literal(record["url"]) if isinstance(record.get("url"), str) else None
                if text is not None and (url := absolute_file_url(text, base)) != text:
                    record["url"] = escape(url)
                    changed += 1
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
                Secret(escape(SANDBOX_API_KEY)),
                Secret(escape(SANDBOX_SECRET_KEY)),
                Region.US,
                sandbox_url,
            )
        )
        self.save(Warehouse(DEMO_WAREHOUSE, Secret(escape(demo_warehouse_url))))


def promoted(config: SyncConfig, destination: Destination) -> SyncConfig:
    """`config` sending to `destination` instead: what a promotion previews before anything is saved."""
    return replace(config, destination=destination)


def with_absolute_path(warehouse: Warehouse, base: Path) -> Warehouse:
    """`warehouse` with a relative SQLite or DuckDB file path in its URL made absolute against `base`.

    Only a URL as typed (a plain Secret) that reads no ${VAR}: a variable may hold an absolute
    folder, and a URL read from the workspace (a Kept) was made absolute when it was saved.
    """
    text = None if isinstance(warehouse.url, Kept) else _literal(warehouse.url.reveal())
    if text is None:
        return warehouse
    url = absolute_file_url(text, base)
    return warehouse if url == text else replace(warehouse, url=Secret(escape(url)))


def _noting(read: Callable[[], Item], problems: list[str]) -> Item | None:
    """What `read` returns; None, its problems added to `problems`, when it raises ConfigError."""
    try:
        return read()
    except ConfigError as exc:
        problems += exc.problems
        return None


def _secret_texts(item: Any, keys: tuple[str, ...]) -> list[str]:
    """The texts of `item`'s secrets that can be read now, and the password inside a URL."""
    texts = []
    for key in keys:
        value = getattr(item, key)
        if value is None or (isinstance(value, Kept) and value.problem):
            continue
        texts.append(value.reveal())
        try:
            password = str(make_url(value.reveal()).password or "")
        except (ArgumentError, ValueError):  # not a URL: its whole text is hidden already
            continue
        texts += [password, quote(password, safe="")]  # as typed, or %-escaped as in the URL
    return texts


def _by_name(section: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(section.items(), key=lambda kv: kv[0].lower())


def _where(spec: _Kind, name: str, key: str) -> str:
    return f"the {_LABELS[key]} of the {spec.label} {name!r}"


def _origin(template: str) -> str:
    """Where a value saved in place comes from, in words."""
    names = references(template)
    if names:
        return "read from " + ", ".join(f"${{{n}}}" for n in names)
    return "kept in the workspace file, as it holds nothing secret"


def _stored_in(value: Any) -> str | Entry:
    """A secret as the workspace file holds it: a template, or {"vault": place, "name": name}."""
    if isinstance(value, dict):
        return Entry(Place(value["vault"]), str(value["name"]))
    return str(value)


def _stored_out(stored: str | Entry) -> Any:
    return {"vault": str(stored.place), "name": stored.name} if isinstance(stored, Entry) else stored


def _literal(template: str) -> str | None:
    """The text `template` stands for when it reads no variable; None when it does (or is malformed)."""
    if references(template) or placeholder_problems(template, ""):
        return None
    return resolve(template, {}, "")


def _typed_in(secret: Secret, typed: Mapping[str, str]) -> Secret:
    return Secret(fill_in(secret.reveal(), typed))


def _published(text: str) -> bool:
    """The sandbox's keys are in its documentation: nothing secret, and no keyring entry per home."""
    from amp_sync.sandbox import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

    return text in (SANDBOX_API_KEY, SANDBOX_SECRET_KEY)


def _holds_secret(key: str, template: str) -> bool:
    """Whether `template` holds typed secret text, not only ${VAR} references.

    In a URL only the password and credential-like query parameters count: the rest names a host
    or a file, which the workspace file may show.
    """
    marked = resolve(template, dict.fromkeys(references(template), _MARK), "")
    if key != "url":
        return bool(marked.replace(_MARK, "")) and not _published(marked)
    try:
        url = make_url(marked)
    except (ArgumentError, ValueError):  # a URL that cannot be taken apart is kept whole, as a secret
        return True
    parts = [url.password or "", *(str(v) for k, v in url.query.items() if _SECRET_QUERY.search(k))]
    return any(str(part).replace(_MARK, "") for part in parts)


def _check_name(name: str, label: str) -> list[str]:
    if not name.strip():
        return [f"give the {label} a name"]
    if len(name) > 100:
        return [f"the {label} name is longer than 100 characters"]
    if has_control_characters(name):
        return [f"the {label} name {name!r} must not hold line breaks, tabs or other control characters"]
    if label == "sync" and not SYNC_NAME.fullmatch(name):
        return [
            f"the sync name {name!r} may hold only letters, digits, spaces, '.', '_' and '-', starting "
            "with a letter or digit (it names the sync's saved state)"
        ]
    return []


def _case_clash(syncs: Iterable[str], name: str, previous_name: str | None) -> list[str]:
    """A sync named like another but for case: on macOS and Windows both would use one state file."""
    clash = next(
        (s for s in syncs if s.casefold() == name.casefold() and s not in (name, previous_name)), None
    )
    if clash is None:
        return []
    return [
        f"a sync named {clash!r} already exists: names that differ only in case would share one state "
        "file on macOS and Windows, so choose another name"
    ]


def _users_of(data: Data, kind: type, name: str) -> list[str]:
    return [
        f"{_KINDS[user].label} {other!r}"
        for target, user, name_field in _REFERENCES
        if target is kind
        for other, record in data[_KINDS[user].section].items()
        if record.get(name_field) == name
    ]


def _rename_references(data: Data, kind: type, old: str, new: str) -> None:
    for target, user, name_field in _REFERENCES:
        if target is kind:
            for record in data[_KINDS[user].section].values():
                if record.get(name_field) == old:
                    record[name_field] = new


def export_sync(config: SyncConfig, with_secrets: bool = False) -> str:
    """The sync file of `config`; keys and any warehouse password become ${VAR} placeholders.

    A key or URL saved as a ${VAR} reference is written as that reference; one kept in the vault
    (or typed) as ${AMPLITUDE_API_KEY}, ${AMPLITUDE_SECRET_KEY} or ${WAREHOUSE_PASSWORD}; with
    `with_secrets`, as its value. Any other `${` is written `$${`, so the file reads back as it was.
    """
    d = config.destination
    lines = [
        "[source]",
        f"url = {_toml(_url_for_export(config.source.url, with_secrets))}",
        *_read_files_lines(config.source.read_files),
        "",
        "[destination]",
    ]
    lines += [
        f"name = {_text(d.name)}",
        f"api_key = {_toml(_key_for_export(d.api_key, KEY_VARS[0], with_secrets))}",
    ]
    if d.secret_key:
        lines.append(f"secret_key = {_toml(_key_for_export(d.secret_key, KEY_VARS[1], with_secrets))}")
    lines.append(f"region = {_text(str(d.region))}")
    if d.endpoint:
        lines.append(f"endpoint = {_text(d.endpoint)}")
    lines += ["", "[model]", f"name = {_text(config.model.name)}", f"sql = {_text(config.model.sql)}", ""]
    s = config.sync
    lines += ["[sync]", f"name = {_text(s.name)}", f"object = {_text(str(s.object))}"]
    lines += [f"behavior = {_text(s.behavior)}", f"key = {_text(s.key)}"]
    if s.user_key:
        lines.append(f"user_key = {_text(s.user_key)}")
    lines += _option_lines(s.object, s.options)
    for m in s.mappings:
        lines += ["", "[[sync.mappings]]", f"column = {_text(m.column)}", f"property = {_text(m.property)}"]
        lines.append(f"op = {_text(str(m.op))}")
    return "\n".join(lines) + "\n"


def _read_files_lines(read_files: tuple[str, ...]) -> list[str]:
    if not read_files:
        return []
    return [f"read_files = [{', '.join(_toml(escape(f)) for f in read_files)}]"]


def _option_lines(obj: SyncObject, options: SyncOptions) -> list[str]:
    """The [sync] keys of `obj`'s options, each only when it is set (booleans always, for events)."""
    o = relevant_options(obj, options)
    texts = [("group_type", o.group_type), ("synthetic_event", o.synthetic_event)]
    if obj is SyncObject.EVENT:
        texts = [
            ("id_type", o.id_type), ("event_type", o.event_type), ("event_type_column", o.event_type_column),
            ("time_column", o.time_column), ("insert_id_column", o.insert_id_column),
        ]  # fmt: skip
    lines = [f"{key} = {_text(value)}" for key, value in texts if value]
    if obj is SyncObject.EVENT:
        lines.append(f"skip_user_properties_sync = {'true' if o.skip_user_properties_sync else 'false'}")
    return lines


def _reference(secret: Secret) -> str | None:
    """The ${VAR} text `secret` was saved as, when it was saved as a reference; else None."""
    if isinstance(secret, Kept) and isinstance(secret.stored, str) and references(secret.stored):
        return secret.stored
    return None


def _key_for_export(key: Secret, var: str, with_secrets: bool) -> str:
    if with_secrets:
        return escape(key.reveal())
    return _reference(key) or _placeholder(var)


def _url_for_export(url: Secret, with_secrets: bool) -> str:
    if not with_secrets and (reference := _reference(url)):
        return reference
    text = url.reveal()
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):  # exported as it was typed
        return escape(text)
    if with_secrets or not parsed.password:
        return escape(text)
    marker = "AMPSYNCPASSWORDPLACEHOLDER"
    rendered = parsed.set(password=marker).render_as_string(hide_password=False)
    return escape(rendered).replace(marker, _placeholder(PASSWORD_VAR))


def _placeholder(var: str) -> str:
    return "${" + var + "}"


def _text(text: str) -> str:
    """Plain text as a sync file writes it: `${` escaped, so it reads back as the same text."""
    return _toml(escape(text))


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

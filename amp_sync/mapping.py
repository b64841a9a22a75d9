"""The field mapper's logic: which columns can be mapped, auto-mapping, validation, the saved sync."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amp_sync.config import SYNC_NAME, Mapping_, Operation, SyncObject
from amp_sync.errors import ConfigError
from amp_sync.workspace import SavedSync

# Column names that usually hold Amplitude's ids, tried in order when guessing the key.
_KEY_GUESSES = {
    SyncObject.USER: ("user_id", "userid", "user_uuid", "uid", "id"),
    SyncObject.DEVICE: ("device_id", "deviceid", "device_uuid", "id"),
}
_MAX_PROPERTY = 1024  # Amplitude cuts longer property names


@dataclass(frozen=True, slots=True)
class Draft:
    """A sync as the page holds it while being edited: any part may still be missing or wrong."""

    name: str
    model: str | None
    destination: str | None
    object: SyncObject
    key: str | None
    mappings: tuple[Mapping_, ...]
    user_key: str | None = None


def mappable_columns(columns: Sequence[str], key: str | None, user_key: str | None = None) -> list[str]:
    """The model's columns that can become properties: all but the key and the user field."""
    return [c for c in columns if c not in (key, user_key)]


def guess_key(columns: Sequence[str], object_: SyncObject) -> str | None:
    """The column most likely to hold the Amplitude User ID (or Device ID), if one is obvious."""
    by_lower = {c.lower(): c for c in reversed(columns)}
    return next((by_lower[g] for g in _KEY_GUESSES[object_] if g in by_lower), None)


def auto_map(
    columns: Sequence[str], key: str | None, user_key: str | None, mapped: Sequence[str]
) -> list[str]:
    """Every mappable column mapped: those already mapped first, in their order, then the rest."""
    return [*mapped, *(c for c in mappable_columns(columns, key, user_key) if c not in mapped)]


def field_rows(mapped: Sequence[str], known: Mapping[str, Mapping_]) -> list[dict[str, str]]:
    """One table row per mapped column; a column mapped for the first time keeps its name, $set."""
    rows = []
    for column in mapped:
        m = known.get(column, Mapping_(column, column, Operation.SET))
        rows.append({"column": column, "property": m.property, "operation": str(m.op)})
    return rows


def mappings_from_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[Mapping_, ...]:
    """The mappings of an edited table; an emptied cell becomes '' (flagged) or $set."""
    mappings = []
    for row in rows:
        op, prop = row.get("operation"), row.get("property")
        op = op if isinstance(op, str) and op else Operation.SET  # a grid gives None or NaN when emptied
        if op not in tuple(Operation):
            raise ConfigError(f"{op!r} is not an operation: choose one of {', '.join(Operation)}")
        mappings.append(Mapping_(str(row["column"]), prop if isinstance(prop, str) else "", Operation(op)))
    return tuple(mappings)


def problems(draft: Draft, columns: Sequence[str] | None = None) -> list[str]:
    """Everything that stops `draft` from being saved, in words; `columns` are the model's, if known."""
    found = _name_problems(draft.name)
    found += [
        f"choose a {what}"
        for what, v in (("model", draft.model), ("destination", draft.destination))
        if not v
    ]
    found += _key_problems(draft)
    found += _mapping_problems(draft.mappings)
    if columns is not None:
        found += _missing(draft, columns)
    return found


def build_sync(draft: Draft, columns: Sequence[str] | None = None) -> SavedSync:
    """The SavedSync of a draft; ConfigError listing every problem when it is not ready."""
    found = problems(draft, columns)
    if found:
        raise ConfigError(found)
    assert draft.model and draft.destination and draft.key  # checked by problems()
    return SavedSync(
        draft.name.strip(),
        draft.model,
        draft.destination,
        draft.object,
        draft.key,
        draft.mappings,
        draft.user_key if draft.object is SyncObject.DEVICE else None,
    )


def _name_problems(name: str) -> list[str]:
    if not name.strip():
        return ["give the sync a name"]
    if not SYNC_NAME.match(name.strip()):
        return [
            f"the name {name!r} may hold only letters, digits, spaces, '.', '_' and '-', "
            "starting with a letter or digit, at most 100 characters (it names the sync's saved state)"
        ]
    return []


def _key_problems(draft: Draft) -> list[str]:
    ids = "Device ID" if draft.object is SyncObject.DEVICE else "User ID"
    found = [] if draft.key else [f"choose the key column: the one holding the Amplitude {ids}"]
    if draft.object is SyncObject.DEVICE and draft.user_key and draft.user_key == draft.key:
        found.append(
            f"the user field {draft.user_key!r} is also the key column: choose the column holding the "
            "user's id, or no user field"
        )
    return found


def _mapping_problems(mappings: Sequence[Mapping_]) -> list[str]:
    if not mappings:
        return ["map at least one column to an Amplitude property"]
    found: list[str] = []
    seen_columns: set[str] = set()
    writers: dict[str, str] = {}
    for m in mappings:
        if m.column in seen_columns:
            found.append(f"the column {m.column!r} is mapped twice")
        seen_columns.add(m.column)
        found += _property_problems(m)
        if m.property in writers:
            found.append(
                f"the columns {writers[m.property]!r} and {m.column!r} both write the property "
                f"{m.property!r}: give each its own property"
            )
        elif m.property.strip():
            writers[m.property] = m.column
    return found


def _property_problems(m: Mapping_) -> list[str]:
    if not m.property.strip():
        return [f"give the column {m.column!r} a property name"]
    if m.property.startswith("$"):
        return [
            f"the property {m.property!r} (column {m.column!r}) starts with '$', which Amplitude reserves"
        ]
    if len(m.property) > _MAX_PROPERTY:
        return [f"the property of the column {m.column!r} is longer than 1,024 characters"]
    if m.property != m.property.strip():
        return [f"the property {m.property!r} (column {m.column!r}) starts or ends with a space"]
    return []


def _missing(draft: Draft, columns: Sequence[str]) -> list[str]:
    have = set(columns)
    wanted = [draft.key, draft.user_key if draft.object is SyncObject.DEVICE else None]
    wanted += [m.column for m in draft.mappings]
    return [
        f"the model does not return the column {name!r}"
        for name in dict.fromkeys(w for w in wanted if w)
        if name not in have
    ]

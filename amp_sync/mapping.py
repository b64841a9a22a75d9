"""The field mapper's logic: which columns can be mapped, auto-mapping, validation, the saved sync."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from amp_sync.config import (
    GROUP_OPERATIONS,
    ID_TYPES,
    SYNC_NAME,
    Mapping_,
    Operation,
    SyncObject,
    SyncOptions,
)
from amp_sync.errors import ConfigError
from amp_sync.workspace import SavedSync, relevant_options, takes_user_key

# Column names that usually hold Amplitude's ids, tried in order when guessing the key.
_KEY_GUESSES = {
    SyncObject.USER: ("user_id", "userid", "user_uuid", "uid", "id"),
    SyncObject.DEVICE: ("device_id", "deviceid", "device_uuid", "id"),
    SyncObject.GROUP: ("group_value", "group_id", "company_id", "company", "account_id", "org_id", "team_id"),
}
# In an event table "id" is usually the event's own id, so it is not guessed as the user's.
_EVENT_KEY_GUESSES = {
    "user": ("user_id", "userid", "user_uuid", "uid"),
    "device": ("device_id", "deviceid", "device_uuid"),
}
_TIME_GUESSES = ("event_time", "occurred_at", "time", "timestamp", "event_timestamp", "created_at", "ts")
_EVENT_TYPE_GUESSES = ("event_type", "event_name", "event", "type", "name")
_MAX_PROPERTY = 1024  # Amplitude cuts longer property names
_MAX_NAME = 1024  # group types and event types alike


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
    options: SyncOptions = field(default_factory=SyncOptions)

    @property
    def takes_user_key(self) -> bool:
        """Whether this draft's object may name the user each row belongs to."""
        return takes_user_key(self.object, self.options)

    def role_columns(self) -> list[str]:
        """The columns with a role other than a property: key, user field and the event's columns."""
        o = self.options
        event = (
            [o.event_type_column, o.time_column, o.insert_id_column]
            if self.object is SyncObject.EVENT
            else []
        )
        found = [self.key, self.user_key if self.takes_user_key else None, *event]
        return list(dict.fromkeys(c for c in found if c))


def mappable_columns(
    columns: Sequence[str], key: str | None, user_key: str | None = None, also: Sequence[str] = ()
) -> list[str]:
    """The model's columns that can become properties: all but the key, the user field and `also`."""
    taken = {key, user_key, *also}
    return [c for c in columns if c not in taken]


def guess_key(columns: Sequence[str], object_: SyncObject, id_type: str = "user") -> str | None:
    """The column most likely to hold the key (a User ID, Device ID or group value), if obvious."""
    guesses = _EVENT_KEY_GUESSES.get(id_type, ()) if object_ is SyncObject.EVENT else _KEY_GUESSES[object_]
    return _first_named(columns, guesses)


def guess_time_column(columns: Sequence[str]) -> str | None:
    """The column most likely to say when each event happened, if one is obvious."""
    return _first_named(columns, _TIME_GUESSES)


def guess_event_type_column(columns: Sequence[str]) -> str | None:
    """The column most likely to hold each event's type, if one is obvious."""
    return _first_named(columns, _EVENT_TYPE_GUESSES)


def _first_named(columns: Sequence[str], names: Sequence[str]) -> str | None:
    by_lower = {c.lower(): c for c in reversed(columns)}
    return next((by_lower[g] for g in names if g in by_lower), None)


def auto_map(
    columns: Sequence[str],
    key: str | None,
    user_key: str | None,
    mapped: Sequence[str],
    also: Sequence[str] = (),
) -> list[str]:
    """Every mappable column mapped: those already mapped first, in their order, then the rest."""
    return [*mapped, *(c for c in mappable_columns(columns, key, user_key, also) if c not in mapped)]


def operations(object_: SyncObject) -> tuple[Operation, ...]:
    """The operations a mapping of this object may use: events are sent as they are ($set)."""
    if object_ is SyncObject.EVENT:
        return (Operation.SET,)
    return GROUP_OPERATIONS if object_ is SyncObject.GROUP else tuple(Operation)


def suggest_property(column: str, known: Sequence[str] = ()) -> str:
    """The property a newly mapped column writes: an existing one of the same name, else the column's."""
    by_word = {_word(k): k for k in reversed(known)}
    return by_word.get(_word(column), column)


def _word(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def new_mapping(column: str, known: Sequence[str] = ()) -> Mapping_:
    """A column mapped for the first time: to its suggested property, with $set."""
    return Mapping_(column, suggest_property(column, known), Operation.SET)


def rearranged(
    mappings: Sequence[Mapping_], order: Sequence[str], known: Sequence[str] = ()
) -> tuple[Mapping_, ...]:
    """The mappings in the order a drag left: a column new to the list is added, one gone removed."""
    by_column = {m.column: m for m in mappings}
    return tuple(by_column.get(c) or new_mapping(c, known) for c in dict.fromkeys(order))


def column_choices(mappable: Sequence[str], mappings: Sequence[Mapping_], index: int) -> list[str]:
    """The columns row `index` may switch to: its own and every mappable column no other row maps."""
    taken = {m.column for i, m in enumerate(mappings) if i != index}
    own = mappings[index].column
    return [own, *(c for c in mappable if c not in taken and c != own)]


def unsaved(mappings: Sequence[Mapping_], saved: Sequence[Mapping_] | None) -> bool:
    """Whether the mapping differs from the saved sync's (a new sync: whether anything is mapped)."""
    return tuple(mappings) != tuple(saved or ())


def problems(draft: Draft, columns: Sequence[str] | None = None) -> list[str]:
    """Everything that stops `draft` from being saved, in words; `columns` are the model's, if known."""
    found = _name_problems(draft.name)
    found += [
        f"choose a {what}"
        for what, v in (("model", draft.model), ("destination", draft.destination))
        if not v
    ]
    found += _key_problems(draft)
    found += _option_problems(draft)
    found += _mapping_problems(draft.mappings, draft.object)
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
        draft.user_key if draft.takes_user_key else None,
        relevant_options(draft.object, _stripped(draft.options)),
    )


def _stripped(o: SyncOptions) -> SyncOptions:
    """Typed names without surrounding spaces; an emptied one is no value."""
    return replace(
        o,
        group_type=(o.group_type or "").strip() or None,
        event_type=(o.event_type or "").strip() or None,
        synthetic_event=(o.synthetic_event or "").strip() or None,
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


def key_words(object_: SyncObject, id_type: str = "user") -> str:
    """What the key column holds, as the page says it: the Amplitude User ID, Device ID or group value."""
    if object_ is SyncObject.GROUP:
        return "group value"
    device = object_ is SyncObject.DEVICE or (object_ is SyncObject.EVENT and id_type == "device")
    return "Amplitude Device ID" if device else "Amplitude User ID"


def _key_problems(draft: Draft) -> list[str]:
    ids = key_words(draft.object, draft.options.id_type)
    found = [] if draft.key else [f"choose the key column: the one holding the {ids}"]
    if draft.takes_user_key and draft.user_key and draft.user_key == draft.key:
        found.append(
            f"the user field {draft.user_key!r} is also the key column: choose the column holding the "
            "user's id, or no user field"
        )
    return found


def _option_problems(draft: Draft) -> list[str]:
    o = _stripped(draft.options)
    if draft.object is SyncObject.GROUP:
        if not o.group_type:
            return ['group syncs need a group type (e.g. "company")']
        return _name_of("group type", o.group_type)
    if draft.object is SyncObject.EVENT:
        return _event_problems(o)
    if draft.options.synthetic_event is not None and not o.synthetic_event:
        return ["give the synthetic event a name, or turn it off"]
    return _name_of("synthetic event", o.synthetic_event)


def _event_problems(o: SyncOptions) -> list[str]:
    found = []
    if o.id_type not in ID_TYPES:
        found.append(f"the id type must be one of {', '.join(ID_TYPES)}, not {o.id_type!r}")
    if (o.event_type is None) == (o.event_type_column is None):
        found.append(
            "event syncs need exactly one of an event type (a constant) and an event type column "
            "(the column that holds it)"
        )
    found += _name_of("event type", o.event_type)
    if not o.time_column:
        found.append("event syncs need a time column, the column that says when each event happened")
    return found


def _name_of(what: str, value: str | None) -> list[str]:
    """Group, event and synthetic event types: names Amplitude does not reserve."""
    if not value:
        return []
    if value.startswith("$") or value.startswith("[Amplitude]"):
        return [f"the {what} {value!r}: names starting with '$' or '[Amplitude]' are reserved by Amplitude"]
    if len(value) > _MAX_NAME:
        return [f"the {what} is longer than 1,024 characters"]
    return []


def _mapping_problems(mappings: Sequence[Mapping_], object_: SyncObject = SyncObject.USER) -> list[str]:
    if not mappings and object_ is not SyncObject.EVENT:  # an event needs no properties
        return ["map at least one column to an Amplitude property"]
    found: list[str] = []
    seen_columns: set[str] = set()
    writers: dict[str, str] = {}
    for m in mappings:
        if m.column in seen_columns:
            found.append(f"the column {m.column!r} is mapped twice")
        seen_columns.add(m.column)
        found += _property_problems(m)
        found += _operation_problems(m, object_)
        if m.property in writers:
            found.append(
                f"the columns {writers[m.property]!r} and {m.column!r} both write the property "
                f"{m.property!r}: give each its own property"
            )
        elif m.property.strip():
            writers[m.property] = m.column
    return found


def _operation_problems(m: Mapping_, object_: SyncObject) -> list[str]:
    if object_ is SyncObject.EVENT and m.op is not Operation.SET:
        return [
            f"the column {m.column!r}: event properties are sent as they are; {m.op} is only for profiles"
        ]
    if object_ is SyncObject.GROUP and m.op not in GROUP_OPERATIONS:
        allowed = ", ".join(GROUP_OPERATIONS)
        return [f"the column {m.column!r}: group properties take {allowed}, not {m.op}"]
    return []


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
    wanted = [*draft.role_columns(), *(m.column for m in draft.mappings)]
    return [
        f"the model does not return the column {name!r}"
        for name in dict.fromkeys(w for w in wanted if w)
        if name not in have
    ]

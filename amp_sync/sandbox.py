"""A local Amplitude look-alike: the embedded default destination and the fake Amplitude in tests.

It answers /identify, /groupidentify, /2/httpapi, /batch and /api/2/events/list with Amplitude's
status codes and bodies, validates as Amplitude does (a request with one bad item is refused whole,
with the bad indexes), and keeps the profiles, groups and events it builds in memory, readable
through `SandboxStore` or GET /sandbox/... . Nothing it receives is ever logged: request bodies and
query strings can hold API keys. Limits and rules come from shared/amplitude-api.md §0–§6.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
import threading
import time
import urllib.request
from base64 import b64decode
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"
DEFAULT_PORT = 8766

# Amplitude's documented limits (amplitude-api.md §0, §2, §3, §4).
DEFAULT_MIN_ID_LENGTH = 5
MAX_STRING_LENGTH = 1024
MAX_EVENTS = 2000
MAX_GROUP_IDENTIFICATIONS = 1024
BATCH_MAX_BODY_BYTES = 20_000_000

# Ids Amplitude refuses with a 400 (amplitude-api.md §2 "IDs"); matched after strip, any case.
JUNK_IDS = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        '""',
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)
USER_OPERATIONS = frozenset(
    {
        "$set",
        "$setOnce",
        "$add",
        "$append",
        "$prepend",
        "$preInsert",
        "$postInsert",
        "$remove",
        "$unset",
        "$clearAll",
    }
)
GROUP_OPERATIONS = frozenset({"$set", "$setOnce", "$add", "$append", "$prepend", "$unset"})
# Identify calls are not events: Amplitude lists neither as an event type.
_IDENTIFY_EVENT_TYPES = frozenset({"$identify", "$groupidentify"})
_ID_FIELDS = ("user_id", "device_id")

JSON = dict[str, Any]
# (invalid field names, missing field names) of one item
_Faults = tuple[list[str], list[str]]


# --- property operations (pure) -------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_list(value: object) -> list[Any]:
    """A property value as a list: absent is empty, a scalar becomes a one-item list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _new_values(current: list[Any], values: object) -> list[Any]:
    """The values not yet in `current`, each once, in the order given."""
    fresh: list[Any] = []
    for value in _as_list(values):
        if value not in current and value not in fresh:
            fresh.append(value)
    return fresh


def _set(props: JSON, values: JSON) -> None:
    props.update(values)


def _set_once(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        props.setdefault(name, value)


def _add(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        base = props.get(name)
        props[name] = (base if _is_number(base) else 0) + value


def _append(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        props[name] = _as_list(props.get(name)) + _as_list(value)


def _prepend(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        props[name] = _as_list(value) + _as_list(props.get(name))


def _post_insert(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        current = _as_list(props.get(name))
        props[name] = current + _new_values(current, value)


def _pre_insert(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        current = _as_list(props.get(name))
        props[name] = _new_values(current, value) + current


def _remove(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        if name in props:
            gone = _as_list(value)
            props[name] = [item for item in _as_list(props[name]) if item not in gone]


def _unset(props: JSON, values: JSON) -> None:
    for name in values:
        props.pop(name, None)


_OPERATORS: dict[str, Callable[[JSON, JSON], None]] = {
    "$set": _set,
    "$setOnce": _set_once,
    "$add": _add,
    "$append": _append,
    "$prepend": _prepend,
    "$preInsert": _pre_insert,
    "$postInsert": _post_insert,
    "$remove": _remove,
    "$unset": _unset,
}


def _apply_operations(current: JSON, operations: JSON) -> JSON:
    """The properties after `operations`; $clearAll goes first so the rest start from nothing."""
    result: JSON = {} if "$clearAll" in operations else dict(current)
    for operation, values in operations.items():
        if operation != "$clearAll":
            _OPERATORS[operation](result, values)
    return result


# --- validation (pure) ----------------------------------------------------------------------


def _too_long(value: object) -> bool:
    """Whether any string in `value` is over Amplitude's 1,024-character limit."""
    if isinstance(value, str):
        return len(value) > MAX_STRING_LENGTH
    if isinstance(value, list):
        return any(_too_long(item) for item in value)
    if isinstance(value, dict):
        return any(_too_long(item) for item in value.values())
    return False


def _operations_valid(operations: JSON) -> bool:
    """Whether each operation holds a dict, $add only numbers, and no property appears twice."""
    seen: set[str] = set()
    for operation, values in operations.items():
        if operation == "$clearAll":
            continue  # its value is a placeholder, usually "-"
        if not isinstance(values, dict) or not seen.isdisjoint(values) or _too_long(values):
            return False
        if operation == "$add" and not all(_is_number(v) for v in values.values()):
            return False
        seen.update(values)
    return True


def _as_operations(props: object, allowed: frozenset[str]) -> JSON | None:
    """`props` as {operation: {name: value}} (a plain dict is $set); None if Amplitude refuses."""
    if not isinstance(props, dict):
        return None
    named = [key for key in props if key in USER_OPERATIONS]
    if not named:
        operations: JSON = {"$set": props}
    elif len(named) < len(props) or not allowed.issuperset(named):
        return None  # Amplitude refuses operations mixed with plain properties
    else:
        operations = props
    return operations if _operations_valid(operations) else None


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_STRING_LENGTH


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_id(value: object, min_length: int) -> bool:
    return (
        isinstance(value, str)
        and min_length <= len(value) <= MAX_STRING_LENGTH
        and value.strip().lower() not in JUNK_IDS
    )


def _id_faults(item: JSON, min_length: int, *, required: bool = True) -> _Faults:
    """Bad user_id/device_id values, and "user_id" as missing when the item has neither."""
    invalid = [f for f in _ID_FIELDS if item.get(f) is not None and not _valid_id(item[f], min_length)]
    has_id = any(item.get(f) is not None for f in _ID_FIELDS)
    return invalid, [] if has_id or not required else ["user_id"]


def _identify_faults(item: JSON) -> _Faults:
    """What Amplitude would refuse in one /identify item."""
    invalid, missing = _id_faults(item, DEFAULT_MIN_ID_LENGTH)
    props = item.get("user_properties")
    if props is not None and _as_operations(props, USER_OPERATIONS) is None:
        invalid.append("user_properties")
    return invalid, missing


def _group_faults(item: JSON) -> _Faults:
    """What Amplitude would refuse in one /groupidentify item."""
    invalid: list[str] = []
    missing: list[str] = []
    for name in ("group_type", "group_value"):
        if item.get(name) is None:
            missing.append(name)
        elif not _is_name(item[name]):
            invalid.append(name)
    props = item.get("group_properties")
    if props is not None and _as_operations(props, GROUP_OPERATIONS) is None:
        invalid.append("group_properties")
    return invalid, missing


def _valid_groups(groups: object) -> bool:
    """Whether `groups` maps group types to a group value or a list of them."""
    if not isinstance(groups, dict) or not groups:
        return False
    values = [v for value in groups.values() for v in _as_list(value)]
    return all(_is_name(k) for k in groups) and bool(values) and all(_is_name(v) for v in values)


def _event_property_faults(event: JSON) -> list[str]:
    """Bad user_properties, and for $groupidentify bad groups/group_properties."""
    faults: list[str] = []
    props = event.get("user_properties")
    if event.get("event_type") == "$identify":
        valid = props is None or _as_operations(props, USER_OPERATIONS) is not None
    else:  # operations only count on $identify; elsewhere user_properties is a plain dict
        valid = props is None or (isinstance(props, dict) and not _too_long(props))
    faults += [] if valid else ["user_properties"]
    if event.get("event_type") == "$groupidentify":
        faults += [] if _valid_groups(event.get("groups")) else ["groups"]
        group_props = event.get("group_properties")
        if group_props is not None and _as_operations(group_props, GROUP_OPERATIONS) is None:
            faults.append("group_properties")
    return faults


def _event_faults(event: JSON, min_length: int) -> _Faults:
    """What Amplitude would refuse in one HTTP V2 / Batch event."""
    event_type = event.get("event_type")
    # The official SDK sends $groupidentify without ids; only the group matters.
    invalid, missing = _id_faults(event, min_length, required=event_type != "$groupidentify")
    if event_type is None:
        missing.append("event_type")
    elif not _is_name(event_type):
        invalid.append("event_type")
    if "time" in event and not _is_int(event["time"]):
        invalid.append("time")  # ms since epoch only; ISO strings get a 400
    return invalid + _event_property_faults(event), missing


def _min_id_length(options: object) -> int:
    """The request's options.min_id_length, or Amplitude's default of 5."""
    value = options.get("min_id_length") if isinstance(options, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return DEFAULT_MIN_ID_LENGTH


# --- store ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Profile:
    """One Amplitude user: a user_id and/or the devices merged onto it."""

    user_id: str | None
    device_ids: list[str]
    properties: JSON

    def public(self) -> JSON:
        return {
            "user_id": self.user_id,
            "device_ids": list(self.device_ids),
            "user_properties": copy.deepcopy(self.properties),
        }

    def sort_key(self) -> tuple[bool, str, str]:
        return (self.user_id is None, self.user_id or "", next(iter(self.device_ids), ""))


class SandboxStore:
    """Everything the sandbox received and built, in memory; one lock makes it thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._by_user: dict[str, _Profile] = {}
        self._by_device: dict[str, _Profile] = {}
        self._groups: dict[tuple[str, str], JSON] = {}
        self._events: list[JSON] = []
        self._insert_ids: set[str] = set()
        self._requests: list[JSON] = []
        self._inactive: set[str] = set()

    def profiles(self) -> list[JSON]:
        """Every profile, by user_id (device-only profiles last), then first device id."""
        with self._lock:
            anonymous = [p for p in self._by_device.values() if p.user_id is None]
            found = sorted([*self._by_user.values(), *anonymous], key=_Profile.sort_key)
            return [profile.public() for profile in found]

    def profile(self, *, user_id: str | None = None, device_id: str | None = None) -> JSON | None:
        """The profile of this user_id (or, if none is given, this device_id), or None."""
        if user_id is None and device_id is None:
            raise ValueError("profile() needs a user_id or a device_id")
        with self._lock:
            found = self._find(user_id, device_id)
            return found.public() if found else None

    def events(self) -> list[JSON]:
        """The events ingested (each once per insert_id), in arrival order."""
        with self._lock:
            return copy.deepcopy(self._events)

    def groups(self) -> list[JSON]:
        """Every group with its properties, sorted by group type then value."""
        with self._lock:
            return [
                {"group_type": kind, "group_value": value, "group_properties": copy.deepcopy(props)}
                for (kind, value), props in sorted(self._groups.items())
            ]

    def requests(self) -> list[JSON]:
        """Every Amplitude API request received: path (no query), status, item count."""
        with self._lock:
            return [dict(request) for request in self._requests]

    def reset(self) -> None:
        """Forget everything: profiles, groups, events, insert_ids, requests, inactive types."""
        with self._lock:
            for collection in (self._by_user, self._by_device, self._groups, self._events):
                collection.clear()
            for bag in (self._insert_ids, self._requests, self._inactive):
                bag.clear()

    def mark_inactive(self, event_type: str, inactive: bool = True) -> None:
        """Flag an event type as inactive (or active again), as Amplitude's Data settings do."""
        with self._lock:
            if inactive:
                self._inactive.add(event_type)
            else:
                self._inactive.discard(event_type)

    def _find(self, user_id: str | None, device_id: str | None) -> _Profile | None:
        if user_id is not None:
            return self._by_user.get(user_id)
        return self._by_device.get(device_id) if device_id is not None else None

    # The methods below take items the server has already validated. Validation reads only the
    # request, so holding the lock while applying keeps each request atomic.

    def _record(self, path: str, status: int, items: int) -> None:
        with self._lock:
            self._requests.append({"path": path, "status": status, "items": items})

    def _apply_identifications(self, items: Iterable[JSON]) -> None:
        with self._lock:
            for item in items:
                profile = self._resolve(item.get("user_id"), item.get("device_id"))
                props = item.get("user_properties") or {}
                self._update(profile, _as_operations(props, USER_OPERATIONS))

    def _apply_group_identifications(self, items: Iterable[JSON]) -> None:
        with self._lock:
            for item in items:
                props = item.get("group_properties") or {}
                operations = _as_operations(props, GROUP_OPERATIONS)
                self._update_group(item["group_type"], item["group_value"], operations)

    def _ingest(self, events: Iterable[JSON]) -> int:
        """Store new events and apply their properties; returns the server time in ms."""
        with self._lock:
            received = int(self._clock() * 1000)
            for event in events:
                if not self._is_duplicate(event.get("insert_id")):
                    self._events.append({**event, "server_received_time": received})
                    self._apply_event(event)
            return received

    def _event_list(self) -> list[JSON]:
        """Event types with totals and activity, as GET /api/2/events/list lists them."""
        with self._lock:
            names = (e["event_type"] for e in self._events)
            totals = Counter(name for name in names if name not in _IDENTIFY_EVENT_TYPES)
            inactive = self._inactive
            return [
                {
                    "name": n,
                    "totals": c,
                    "non_active": n in inactive,
                    "deleted": False,
                    "display": n,
                }
                for n, c in totals.items()
            ]

    def _is_duplicate(self, insert_id: object) -> bool:
        # Amplitude ignores an insert_id seen in the past 7 days; a sandbox never lives that long.
        if not isinstance(insert_id, str) or not insert_id:
            return False
        if insert_id in self._insert_ids:
            return True
        self._insert_ids.add(insert_id)
        return False

    def _apply_event(self, event: JSON) -> None:
        if event["event_type"] == "$groupidentify":
            operations = _as_operations(event.get("group_properties") or {}, GROUP_OPERATIONS)
            for kind, values in event["groups"].items():
                for value in _as_list(values):
                    self._update_group(kind, value, operations)
            return
        profile = self._resolve(event.get("user_id"), event.get("device_id"))
        self._update(profile, _event_operations(event))

    def _update_group(self, kind: str, value: str, operations: JSON | None) -> None:
        current = self._groups.get((kind, value), {})
        self._groups[(kind, value)] = _apply_operations(current, operations or {})

    @staticmethod
    def _update(profile: _Profile, operations: JSON | None) -> None:
        if operations:
            profile.properties = _apply_operations(profile.properties, operations)

    def _resolve(self, user_id: str | None, device_id: str | None) -> _Profile:
        """The profile these ids land on, created or merged as Amplitude merges users."""
        if user_id is None:
            return self._device_profile(cast(str, device_id))
        profile = self._by_user.get(user_id)
        if profile is None:
            profile = self._by_user[user_id] = _Profile(user_id, [], {})
        if device_id is not None:
            self._attach(profile, device_id)
        return profile

    def _device_profile(self, device_id: str) -> _Profile:
        profile = self._by_device.get(device_id)
        if profile is None:
            profile = self._by_device[device_id] = _Profile(None, [device_id], {})
        return profile

    def _attach(self, profile: _Profile, device_id: str) -> None:
        """Put `device_id` on the user's profile, merging an anonymous device profile into it."""
        current = self._by_device.get(device_id)
        if current is profile:
            return
        if current is not None and current.user_id is None:
            # Logging in merges the device's anonymous history; the user's own values win.
            profile.properties = {**current.properties, **profile.properties}
        elif current is not None:
            current.device_ids.remove(device_id)  # a shared device follows its latest user
        profile.device_ids.append(device_id)
        self._by_device[device_id] = profile


def _event_operations(event: JSON) -> JSON | None:
    """The user-property operations an ingested event carries, if any."""
    props = event.get("user_properties")
    if event["event_type"] == "$identify":
        return _as_operations(props or {}, USER_OPERATIONS)
    # Backfills set this flag so old values do not overwrite the live profile (§3).
    if not props or event.get("$skip_user_properties_sync") is True:
        return None
    return {"$set": props}


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    """An HTTP answer: a str body goes as text/plain, anything else as JSON."""

    status: int
    body: JSON | list[Any] | str
    items: int = 0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Request:
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class _Limits:
    items: int
    body_bytes: int


@dataclass(frozen=True, slots=True)
class _App:
    store: SandboxStore
    api_keys: dict[str, str | None]
    limits: dict[str, _Limits]
    max_body_bytes: int

    def body_limit(self, path: str) -> int:
        limits = self.limits.get(path)
        return limits.body_bytes if limits else self.max_body_bytes


def _error(status: int, message: str, **extra: Any) -> _Reply:
    return _Reply(status, {"code": status, "error": message, **extra})


def _too_large(items: int = 0) -> _Reply:
    return _Reply(413, {"code": 413, "error": "Payload too large"}, items)


def _parse_json(data: str | bytes | None) -> Any:
    """The decoded JSON value, or None when `data` is absent or not JSON."""
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None


def _json_object(data: bytes) -> JSON | None:
    parsed = _parse_json(data)
    return parsed if isinstance(parsed, dict) else None


def _is_object_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _form(body: bytes) -> dict[str, str]:
    """The first value of each form field."""
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _identifications(text: str | None) -> list[JSON] | None:
    """The `identification` field as a list of objects, or None if missing or malformed."""
    parsed = _parse_json(text)
    items = [parsed] if isinstance(parsed, dict) else parsed
    return items if _is_object_list(items) and items else None


def _key_refusal(app: _App, api_key: object) -> _Reply | None:
    """Amplitude's 400 for a missing or unknown API key; None when the key is accepted."""
    if not api_key:
        return _error(400, "Request missing required field", missing_field="api_key")
    if not isinstance(api_key, str) or api_key not in app.api_keys:
        return _error(400, f"Invalid API key: {api_key}")
    return None


def _rejection(items: list[JSON], faults_of: Callable[[JSON], _Faults]) -> _Reply | None:
    """Amplitude's 400 listing every bad item by field, or None when all items are good."""
    invalid: dict[str, list[int]] = {}
    missing: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        bad, absent = faults_of(item)
        for name in bad:
            invalid.setdefault(name, []).append(index)
        for name in absent:
            missing.setdefault(name, []).append(index)
    if not invalid and not missing:
        return None
    body = {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_fields": invalid,
        "events_with_missing_fields": missing,
    }
    return _Reply(400, body, len(items))


def _form_endpoint(
    app: _App,
    request: _Request,
    faults_of: Callable[[JSON], _Faults],
    apply: Callable[[list[JSON]], None],
) -> _Reply:
    """/identify and /groupidentify: form fields api_key and identification."""
    form = _form(request.body)
    refused = _key_refusal(app, form.get("api_key"))
    if refused:
        return refused
    items = _identifications(form.get("identification"))
    if items is None:
        return _error(400, "missing_event")
    if len(items) > app.limits[request.path].items:
        return _too_large(len(items))
    rejection = _rejection(items, faults_of)
    if rejection:
        return rejection
    apply(items)
    return _Reply(200, "success", len(items))


def _handle_identify(app: _App, request: _Request) -> _Reply:
    return _form_endpoint(app, request, _identify_faults, app.store._apply_identifications)


def _handle_group_identify(app: _App, request: _Request) -> _Reply:
    return _form_endpoint(app, request, _group_faults, app.store._apply_group_identifications)


def _handle_events(app: _App, request: _Request) -> _Reply:
    """/2/httpapi and /batch: a JSON body {api_key, events, options}."""
    payload = _json_object(request.body)
    if payload is None:
        return _error(400, "Invalid JSON request body" if request.body else "Missing request body")
    refused = _key_refusal(app, payload.get("api_key"))
    if refused:
        return refused
    events = payload.get("events")
    if not events:
        return _error(400, "Request missing required field", missing_field="events")
    if not _is_object_list(events):
        return _error(400, "Invalid event JSON")
    if len(events) > app.limits[request.path].items:
        return _too_large(len(events))
    min_length = _min_id_length(payload.get("options"))
    rejection = _rejection(events, lambda event: _event_faults(event, min_length))
    if rejection:
        return rejection
    received = app.store._ingest(events)
    # events_ingested counts every event sent, duplicates of earlier insert_ids included: that is
    # what Amplitude reports, so clients cannot use it to detect de-duplication.
    body = {"code": 200, "events_ingested": len(events), "payload_size_bytes": len(request.body)}
    return _Reply(200, {**body, "server_upload_time": received}, len(events))


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(api_key, secret_key) from an HTTP Basic Authorization header."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        return None
    api_key, colon, secret = decoded.partition(":")
    return (api_key, secret) if colon else None


def _authorized(app: _App, header: str | None) -> bool:
    credentials = _basic_credentials(header)
    if credentials is None:
        return False
    expected = app.api_keys.get(credentials[0])
    return expected is not None and hmac.compare_digest(expected.encode(), credentials[1].encode())


def _handle_event_list(app: _App, request: _Request) -> _Reply:
    if not _authorized(app, request.authorization):
        return _Reply(401, {"error": "Invalid credentials"})
    return _Reply(200, {"data": app.store._event_list()})


def _first(query: dict[str, list[str]], name: str) -> str | None:
    return query[name][0] if query.get(name) else None


def _handle_profiles(app: _App, request: _Request) -> _Reply:
    """All profiles, or a list of the one matching ?user_id= or ?device_id= (maybe empty)."""
    user_id, device_id = _first(request.query, "user_id"), _first(request.query, "device_id")
    if user_id is None and device_id is None:
        return _Reply(200, app.store.profiles())
    found = app.store.profile(user_id=user_id, device_id=device_id)
    return _Reply(200, [found] if found else [])


def _handle_inactive(app: _App, request: _Request) -> _Reply:
    payload = _json_object(request.body) or {}
    event_type, inactive = payload.get("event_type"), payload.get("inactive", True)
    if not isinstance(event_type, str) or not _is_name(event_type) or not isinstance(inactive, bool):
        return _error(400, 'Send JSON {"event_type": "<name>", "inactive": true or false}')
    app.store.mark_inactive(event_type, inactive)
    return _Reply(200, {"code": 200})


def _handle_reset(app: _App, request: _Request) -> _Reply:
    app.store.reset()
    return _Reply(200, {"code": 200})


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    handle: Callable[[_App, _Request], _Reply]


_ROUTES: dict[str, _Route] = {
    "/identify": _Route("POST", _handle_identify),
    "/groupidentify": _Route("POST", _handle_group_identify),
    "/2/httpapi": _Route("POST", _handle_events),
    "/batch": _Route("POST", _handle_events),
    "/api/2/events/list": _Route("GET", _handle_event_list),
    "/sandbox/profiles": _Route("GET", _handle_profiles),
    "/sandbox/events": _Route("GET", lambda app, _: _Reply(200, app.store.events())),
    "/sandbox/groups": _Route("GET", lambda app, _: _Reply(200, app.store.groups())),
    "/sandbox/requests": _Route("GET", lambda app, _: _Reply(200, app.store.requests())),
    "/sandbox/reset": _Route("POST", _handle_reset),
    "/sandbox/inactive": _Route("POST", _handle_inactive),
    "/health": _Route("GET", lambda app, _: _Reply(200, "ok")),
}


def _respond(app: _App, method: str, request: _Request, too_large: bool) -> _Reply:
    route = _ROUTES.get(request.path)
    if route is None:
        return _error(404, "Invalid request path")
    if method != route.method:
        return _Reply(405, {"code": 405, "error": "Method not allowed"}, 0, (("Allow", route.method),))
    return _too_large() if too_large else route.handle(app, request)


def _is_inspection(path: str) -> bool:
    # Not recorded, so that looking at the log does not change it.
    return path == "/health" or path.startswith("/sandbox/")


def _content_length(header: str | None) -> int:
    try:
        return max(int(header or 0), 0)
    except ValueError:
        return 0


class _Handler(BaseHTTPRequestHandler):
    """Routes each request; never logs, as query strings and bodies can hold keys."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Write nothing: the request line can carry an API key in its query string."""

    def _dispatch(self, method: str) -> None:
        app = cast(_Server, self.server).app
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        body = self._read_body(app.body_limit(path))
        auth = self.headers.get("Authorization")
        request = _Request(path, parse_qs(url.query), auth, body or b"")
        reply = _respond(app, method, request, too_large=body is None)
        if not _is_inspection(path):
            app.store._record(path, reply.status, reply.items)
        self._send(reply)

    def _read_body(self, limit: int) -> bytes | None:
        """The request body, or None when it is over `limit` bytes."""
        length = _content_length(self.headers.get("Content-Length"))
        if length <= limit:
            return self.rfile.read(length)
        # Read what the client sent before answering, else it sees a reset instead of our 413.
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)
        return None

    def _send(self, reply: _Reply) -> None:
        if isinstance(reply.body, str):
            data, content_type = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(reply.body).encode(), "application/json"
        self.send_response(reply.status)
        for name, value in (("Content-Type", content_type), *reply.headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must never keep the process alive
    # socketserver's default backlog of 5 drops connections when several senders connect at
    # once, and each dropped one then waits a 1 s SYN retry.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        super().__init__(address, _Handler)
        self.app = app


class Sandbox:
    """A sandbox server bound at construction and served from a daemon thread; a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: dict[str, str | None] | None = None,
        max_identifications: int = 1000,
        max_body_bytes: int = 1_000_000,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self.store = SandboxStore()
        keys: dict[str, str | None] = (
            {SANDBOX_API_KEY: SANDBOX_SECRET_KEY} if api_keys is None else dict(api_keys)
        )
        limits = {
            "/identify": _Limits(max_identifications, max_body_bytes),
            "/groupidentify": _Limits(MAX_GROUP_IDENTIFICATIONS, max_body_bytes),
            "/2/httpapi": _Limits(max_events, max_body_bytes),
            "/batch": _Limits(max_events, BATCH_MAX_BODY_BYTES),
        }
        self._server = _Server((host, port), _App(self.store, keys, limits, max_body_bytes))
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        """Serve in a daemon thread (once); returns self."""
        if self._thread is None:
            # A short poll interval lets close() return within ~50 ms, keeping test suites fast.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="amp-sync-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(host: str, port: int, api_keys: dict[str, str | None]) -> None:
    """Serve a sandbox in the foreground until Ctrl+C (the `amp-sync sandbox` command)."""
    sandbox = Sandbox(host, port, api_keys)
    print(f"Amplitude sandbox listening on {sandbox.url}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how the user stops it
            sandbox._server.serve_forever()
    finally:
        sandbox._server.server_close()


def fetch(base_url: str, what: str = "profiles", timeout: float = 5.0) -> list[JSON]:
    """Read a running sandbox's profiles, events, groups or requests over HTTP."""
    if what not in ("profiles", "events", "groups", "requests"):
        raise ValueError(f"unknown sandbox listing {what!r}")
    url = f"{base_url.rstrip('/')}/sandbox/{what}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        data = json.loads(resp.read())
    return list(data)


def is_running(base_url: str, timeout: float = 1.0) -> bool:
    """True when a sandbox answers at `base_url`."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False

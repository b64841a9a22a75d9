"""Check a destination's keys without ingesting anything."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

import requests

from amp_sync.amplitude import region_hint, tls_failure
from amp_sync.config import Destination
from amp_sync.secret import Secret


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The verdict on a destination's keys, in words for the user."""

    ok: bool
    message: str


def check_keys(destination: Destination, timeout: float = 15.0) -> KeyCheck:
    """With a secret key, read the event list; without one, send a request that ingests nothing."""
    try:
        if destination.secret_key:
            return _check_pair(destination, destination.secret_key, timeout)
        return _check_api_key(destination, timeout)
    except requests.Timeout:
        return KeyCheck(False, f"{_where(destination)} did not answer within {timeout:g} s")
    except requests.exceptions.SSLError as exc:
        return KeyCheck(False, tls_failure(_where(destination), exc))
    except requests.ConnectionError:
        return KeyCheck(False, f"cannot reach {_where(destination)}: check the endpoint and your network")


def _check_pair(destination: Destination, secret: Secret, timeout: float) -> KeyCheck:
    # Dashboard REST: GET /api/2/events/list is read-only (https://amplitude.com/docs/apis/analytics/dashboard-rest).
    url = f"{destination.rest_url}/api/2/events/list"
    resp = requests.get(url, auth=(destination.api_key.reveal(), secret.reveal()), timeout=timeout)
    if resp.status_code == 200 and _is_json_object(resp.text):
        return KeyCheck(True, f"ok: the API key and secret key of {destination.name!r} are valid")
    if resp.status_code in (401, 403):
        return KeyCheck(
            False,
            "the API key and secret key were refused: check both keys, and that the project "
            f"is in the {destination.region.upper()} region (keys work in their own region only)",
        )
    return _unexpected(destination, resp)


def _check_api_key(destination: Destination, timeout: float) -> KeyCheck:
    # An HTTP V2 request with no events cannot ingest anything; the key is checked first.
    url = f"{destination.ingest_url}/2/httpapi"
    body = {"api_key": destination.api_key.reveal(), "events": []}
    resp = requests.post(url, json=body, timeout=timeout)
    text = resp.text.lower()
    if "invalid api key" in text or "invalid_api_key" in text:
        return KeyCheck(
            False,
            "Amplitude refused the API key: check that it is the project's API key (not the secret "
            f"key) and {region_hint(destination.region)}",
        )
    # Amplitude answers this request in JSON; anything else is not Amplitude (a proxy, a web page).
    if resp.status_code in (200, 400) and _is_json_object(resp.text):
        return KeyCheck(
            True,
            f"ok: Amplitude accepts the API key of {destination.name!r} "
            "(add the secret key to check both keys)",
        )
    return _unexpected(destination, resp)


def _unexpected(destination: Destination, resp: requests.Response) -> KeyCheck:
    where, status = _where(destination), resp.status_code
    if status >= 500 or status == 429:
        return KeyCheck(False, f"{where} answered HTTP {status}; try again later")
    what = "" if _is_json_object(resp.text) else " with a body that is not Amplitude's JSON"
    return KeyCheck(
        False,
        f"{where} answered HTTP {status}{what}: check that the endpoint is Amplitude's "
        "(or the sandbox's) base URL",
    )


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _where(destination: Destination) -> str:
    return destination.endpoint or f"Amplitude ({destination.region.upper()})"


class Activity(StrEnum):
    """Whether Amplitude counts an event type toward active users (Data → Events → Activity)."""

    INACTIVE = "inactive"
    ACTIVE = "active"
    NOT_SEEN = "not seen"  # the project has no such event yet
    UNCHECKED = "unchecked"  # no secret key: the event list cannot be read
    UNKNOWN = "unknown"  # the event list could not be read


@dataclass(frozen=True, slots=True)
class EventActivity:
    """The activity of the synthetic event type, with what to do about it in words."""

    activity: Activity
    message: str


HOW_TO_MARK_INACTIVE = (
    "in Amplitude, open Data → Events, tick the event and choose Edit Activity → Inactive, so it "
    "does not count users as active"
)


def event_activity(destination: Destination, event_type: str, timeout: float = 15.0) -> EventActivity:
    """Read the event type's `non_active` flag from /api/2/events/list (needs the secret key)."""
    if not destination.secret_key:
        return EventActivity(
            Activity.UNCHECKED,
            f"add the project's secret key to the destination to check that {event_type!r} is "
            f"inactive; {HOW_TO_MARK_INACTIVE}",
        )
    url = f"{destination.rest_url}/api/2/events/list"
    auth = (destination.api_key.reveal(), destination.secret_key.reveal())
    try:
        resp = requests.get(url, auth=auth, timeout=timeout)
        listed = resp.json().get("data") if resp.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        listed = None
    if not isinstance(listed, list):
        return EventActivity(
            Activity.UNKNOWN,
            f"could not read the project's event list from {_where(destination)} to check "
            f"{event_type!r}; {HOW_TO_MARK_INACTIVE}",
        )
    found = next((e for e in listed if isinstance(e, dict) and e.get("name") == event_type), None)
    if found is None:
        return EventActivity(
            Activity.NOT_SEEN,
            f"{event_type!r} is not in the project yet: its first events arrive with this run; "
            f"then {HOW_TO_MARK_INACTIVE}",
        )
    if found.get("non_active") is True:
        return EventActivity(Activity.INACTIVE, f"{event_type!r} is marked inactive in Amplitude")
    return EventActivity(
        Activity.ACTIVE,
        f"{event_type!r} is active in Amplitude, so every user it reaches counts as active: "
        f"{HOW_TO_MARK_INACTIVE}",
    )


@dataclass(frozen=True, slots=True)
class KnownProperties:
    """The user properties a project already has, or why they could not be read (`names` empty)."""

    names: tuple[str, ...]
    reason: str | None = None


def user_properties(destination: Destination, timeout: float = 10.0) -> KnownProperties:
    """The project's user properties, from the Taxonomy API (needs the secret key and Enterprise)."""
    if not destination.secret_key:
        return KnownProperties(
            (), "add the project's secret key to the destination to pick from its properties"
        )
    # Taxonomy API: GET /api/2/taxonomy/user-property, Enterprise plan only
    # (https://amplitude.com/docs/apis/analytics/taxonomy).
    url = f"{destination.rest_url}/api/2/taxonomy/user-property"
    auth = (destination.api_key.reveal(), destination.secret_key.reveal())
    try:
        resp = requests.get(url, auth=auth, timeout=timeout)
    except requests.RequestException:
        return KnownProperties((), f"could not reach {_where(destination)} to read the project's properties")
    if resp.status_code in (401, 403):
        return KnownProperties(
            (),
            "Amplitude does not list this project's properties (its Taxonomy API is on the Enterprise plan)",
        )
    if resp.status_code == 404:
        return KnownProperties((), f"{_where(destination)} does not offer Amplitude's Taxonomy API")
    names = _property_names(resp) if resp.status_code == 200 else None
    if names is None:
        return KnownProperties(
            (), f"{_where(destination)} did not list the project's properties (HTTP {resp.status_code})"
        )
    return KnownProperties(names)


def _property_names(resp: requests.Response) -> tuple[str, ...] | None:
    """The names in a taxonomy answer, {"data": [{"user_property": name, ...}]}, without the "gp:" prefix."""
    try:
        data = resp.json().get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    found = (p.get("user_property") for p in data if isinstance(p, dict))
    return tuple(dict.fromkeys(n.removeprefix("gp:") for n in found if isinstance(n, str) and n))

"""Check a destination's keys without ingesting anything."""

from __future__ import annotations

import json
from dataclasses import dataclass

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
    # Dashboard REST: GET /api/2/events/list is read-only (shared/amplitude-api.md §6).
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

"""Talk to Amplitude's ingestion APIs: encode requests, read answers, retry what is worth retrying."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus

import requests
import urllib3

from amp_sync.config import Destination, Region
from amp_sync.errors import FatalError
from amp_sync.secret import Secret

# Identify limits: not documented; Group Identify's documented caps serve as safe bounds
# (https://amplitude.com/docs/apis/analytics/group-identify, "Limits").
MAX_ITEMS = 1000
MAX_BYTES = 1_000_000
DEFAULT_ATTEMPTS = 8
NOT_AMPLITUDE = "an answer that is not Amplitude's: check that the endpoint is Amplitude's base URL"
# Amplitude refuses the events of a user or device past its daily quota (500,000 events in a
# rolling 24 h, enforced on ids it flags as spamming) until the id is under it again:
# https://amplitude.com/docs/apis/analytics/batch-event-upload ("Daily limit").
OVER_DAILY_QUOTA = "over Amplitude's daily limit of events for this user or device; sent again on a later run"
# A Retry-After longer than this (a proxy's mistake, a date far ahead) would park a sending
# thread for the rest of the run. After 10 minutes the retry asks again, and the attempts bound
# the total, so a real long outage still ends the run with the rows in doubt, not stuck.
MAX_RETRY_AFTER = 600.0


class Outcome(StrEnum):
    """What an answer from Amplitude means for the batch that was sent."""

    OK = "ok"
    RETRY = "retry"  # 429, 5xx, timeouts, dropped connections
    SPLIT = "split"  # 413: the batch is too large
    INVALID_KEY = "invalid_key"  # stops the run
    REJECTED = "rejected"  # 400 naming the items at fault: drop them, resend the rest
    FAILED = "failed"  # 400 without details: the batch cannot be sent as it is


@dataclass(frozen=True, slots=True)
class Answer:
    """A classified response."""

    outcome: Outcome
    detail: str = ""
    bad_items: tuple[int, ...] = ()
    throttled: bool = False
    retry_after: float | None = None  # seconds the answer's Retry-After header asks to wait
    quota_users: frozenset[str] = frozenset()  # 429: user_ids over their daily quota
    quota_devices: frozenset[str] = frozenset()  # 429: device_ids over their daily quota
    # The request may have been ingested although no answer says so (a 500, a timeout, a
    # connection lost after sending): its items stay in doubt, never counted as refused.
    maybe_ingested: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; 429 waits as Amplitude asks, on each API."""

    attempts: int = DEFAULT_ATTEMPTS
    base_delay: float = 0.5
    max_delay: float = 30.0
    # None: each route's pause (Route.throttle_delay); a number: that pause on every route.
    throttle_delay: float | None = None
    timeout: float = 30.0
    max_retry_after: float = MAX_RETRY_AFTER

    def delay(self, attempt: int, answer: Answer, route: Route, rng: random.Random) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if answer.retry_after is not None:
            return min(answer.retry_after, self.max_retry_after)
        if answer.throttled:
            pause = route.throttle_delay if self.throttle_delay is None else self.throttle_delay
            return pause + rng.uniform(0, self.base_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


def classify(status: int, body: str) -> Answer:
    """Read an Identify answer; the body may be JSON or plain text, so status leads."""
    data = _json(body)
    error = str(data.get("error", "")) if data else body.strip()
    if 200 <= status < 300 and (data is not None or _is_success(body)):
        return Answer(Outcome.OK)
    if 200 <= status < 300:
        # Not Amplitude's "success": a web page or a proxy answered, and the rows did not arrive.
        return Answer(Outcome.FAILED, f"HTTP {status} with {NOT_AMPLITUDE}")
    if status == 413:
        return Answer(Outcome.SPLIT, "payload too large")
    if status == 429:
        users, devices = _quota_ids(data, "users"), _quota_ids(data, "devices")
        detail = "throttled (429)"
        return Answer(Outcome.RETRY, detail, throttled=True, quota_users=users, quota_devices=devices)
    if status >= 500 or status == 408:
        # 500, 502 and 504 "may or may not" have been accepted; a 503 was not
        # (https://amplitude.com/docs/apis/analytics/http-v2#status-codes).
        return Answer(Outcome.RETRY, f"server error {status}", maybe_ingested=status != 503)
    if status == 400 and ("invalid api key" in error.lower() or "invalid_api_key" in error.lower()):
        return Answer(Outcome.INVALID_KEY, "invalid API key")
    bad = _bad_indexes(data) if data else ()
    if status == 400 and bad:
        return Answer(Outcome.REJECTED, _summary(error), bad_items=bad)
    if error.startswith("<"):  # an HTML error page: its markup says nothing to the user
        return Answer(Outcome.FAILED, f"HTTP {status} with {NOT_AMPLITUDE}")
    return Answer(Outcome.FAILED, f"HTTP {status}: {_summary(error)}")


def _is_success(body: str) -> bool:
    return body.strip().strip('"').lower() == "success"


def _json(body: str) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _bad_indexes(data: dict[str, Any]) -> tuple[int, ...]:
    found: set[int] = set()
    for name in (
        "events_with_invalid_fields", "events_with_missing_fields",
        "events_with_invalid_id_lengths", "silenced_events",
    ):  # fmt: skip
        value = data.get(name)
        groups = value.values() if isinstance(value, dict) else [value] if value else []
        for group in groups:
            found.update(i for i in group if isinstance(i, int))
    return tuple(sorted(found))


def _quota_ids(data: dict[str, Any] | None, kind: str) -> frozenset[str]:
    # HTTP V2 and Batch: {"exceeded_daily_quota_users": {id: events in 24 h}, ...}
    value = (data or {}).get(f"exceeded_daily_quota_{kind}")
    return frozenset(k for k in value if isinstance(k, str)) if isinstance(value, dict) else frozenset()


def over_quota(answer: Answer, items: Sequence[bytes]) -> Answer | None:
    """REJECTED for the items of a 429's users/devices over their daily quota; None if none."""
    if not (answer.quota_users or answer.quota_devices):
        return None
    bad = tuple(i for i, item in enumerate(items) if _is_over_quota(item, answer))
    return Answer(Outcome.REJECTED, OVER_DAILY_QUOTA, bad_items=bad) if bad else None


def _is_over_quota(item: bytes, answer: Answer) -> bool:
    data = _json(item.decode("utf-8", errors="replace")) or {}
    user_id, device_id = data.get("user_id"), data.get("device_id")
    return (isinstance(user_id, str) and user_id in answer.quota_users) or (
        isinstance(device_id, str) and device_id in answer.quota_devices
    )


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks to wait (delay-seconds or an HTTP date); None if unreadable."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except ValueError:  # neither whole seconds nor an HTTP date: the client's own delay applies
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _summary(error: str) -> str:
    # Amplitude echoes the API key in some errors ("Invalid API key: <key>"); never repeat it.
    text = error.split(":", 1)[0] if error.lower().startswith("invalid api key") else error
    return text[:200] or "no details"


class Channel(StrEnum):
    """How an item travels; a sender sends one partition's channels in this order."""

    IDENTIFY = "identify"  # Identify API: user and device properties
    GROUPS = "groups"  # Group Identify API: group properties
    EVENTS = "events"  # HTTP V2: $identify / $groupidentify events for accumulating operations
    BATCH = "batch"  # Batch API: backfilled events
    SYNTHETIC = "synthetic"  # HTTP V2: the "updated" event, once the profile is acknowledged


@dataclass(frozen=True, slots=True)
class Route:
    """Where a channel's requests go, how large one may be, and how long a 429 pauses it."""

    path: str
    form: bool  # form fields api_key + identification, or a JSON body of events
    max_items: int
    max_bytes: int
    throttle_delay: float  # seconds Amplitude asks throttled users/devices to pause


# Identify's limits are not documented; Group Identify's (1,024 items, 1 MB) serve as safe bounds.
# HTTP V2: < 2,000 events and < 1 MB; Batch: 2,000 events and 20 MB.
# A 429 pauses 15 s on Identify and Group Identify (https://amplitude.com/docs/apis/analytics/identify),
# 30 s on HTTP V2 (https://amplitude.com/docs/apis/analytics/http-v2), and 30 s on Batch, which
# averages each id's rate over 30 s (https://amplitude.com/docs/apis/analytics/batch-event-upload).
IDENTIFY_THROTTLE_DELAY = 15.0
EVENTS_THROTTLE_DELAY = 30.0
ROUTES = {
    Channel.IDENTIFY: Route("/identify", True, MAX_ITEMS, MAX_BYTES, IDENTIFY_THROTTLE_DELAY),
    Channel.GROUPS: Route("/groupidentify", True, MAX_ITEMS, MAX_BYTES, IDENTIFY_THROTTLE_DELAY),
    Channel.EVENTS: Route("/2/httpapi", False, MAX_ITEMS, MAX_BYTES, EVENTS_THROTTLE_DELAY),
    Channel.BATCH: Route("/batch", False, 2000, 20_000_000, EVENTS_THROTTLE_DELAY),
    Channel.SYNTHETIC: Route("/2/httpapi", False, MAX_ITEMS, MAX_BYTES, EVENTS_THROTTLE_DELAY),
}


# Operations that add to what is there. Resent after an answer that was lost (a 500 after
# ingesting, a timeout), they would count twice; only HTTP V2 de-duplicates, on insert_id for
# 7 days (https://amplitude.com/docs/apis/analytics/http-v2), so rows using them travel as
# $identify events.
ACCUMULATING = frozenset({"$add", "$append", "$prepend"})


def encode_events(api_key: Secret, items: Sequence[bytes]) -> bytes:
    """An HTTP V2 body: {"api_key": ..., "events": [...]}."""
    return b'{"api_key":' + json.dumps(api_key.reveal()).encode() + b',"events":[' + b",".join(items) + b"]}"


def event_size(item: bytes) -> int:
    """Bytes one event adds to an HTTP V2 body (with its comma)."""
    return len(item) + 1


# /identify takes multipart form data as well as url-encoded forms:
# multipart carries the JSON as it is, where url-encoding would escape a quarter of its bytes,
# growing the body and costing a Python-level loop per byte at both ends.
BOUNDARY = b"amp-sync-form-boundary-" + uuid.uuid4().hex.encode()
FORM_CONTENT_TYPE = "multipart/form-data; boundary=" + BOUNDARY.decode()


def _field(name: bytes, value: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="'
        + name
        + b'"\r\n\r\n'
        + value
        + b"\r\n"
    )


def encode_body(api_key: Secret, items: Sequence[bytes]) -> bytes:
    """An Identify body as multipart form data: api_key and identification (a JSON array)."""
    array = b"[" + b",".join(items) + b"]"
    if BOUNDARY in array:  # a value that happens to hold the boundary: url-encode this one instead
        return _urlencoded(api_key, items)
    return (
        _field(b"api_key", api_key.reveal().encode())
        + _field(b"identification", array)
        + b"--"
        + BOUNDARY
        + b"--\r\n"
    )


def _urlencoded(api_key: Secret, items: Sequence[bytes]) -> bytes:
    array = b"%5B" + b"%2C".join(quote_plus(i).encode("ascii") for i in items) + b"%5D"
    return b"api_key=" + quote_plus(api_key.reveal()).encode("ascii") + b"&identification=" + array


def body_content_type(body: bytes) -> str:
    """The Content-Type of a body made by encode_body."""
    return FORM_CONTENT_TYPE if body.startswith(b"--") else "application/x-www-form-urlencoded"


def encoded_size(item: bytes) -> int:
    """Bytes one item adds to an Identify body (with its comma)."""
    return len(item) + 1


INVALID_KEY_MESSAGE = (
    "Amplitude refused the API key of destination {name!r}: check that it is the project's "
    "API key (not the secret key) and {region_hint}"
)


@dataclass(slots=True)
class IdentifyClient:
    """Sends Identify requests to one destination; one instance per sending thread."""

    destination: Destination
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    session: requests.Session = field(default_factory=requests.Session)
    requests_sent: int = 0
    channel: Channel = Channel.IDENTIFY
    clock: Callable[[], float] = time.time  # reads Retry-After dates

    @property
    def route(self) -> Route:
        """This client's endpoint and request limits."""
        return ROUTES[self.channel]

    @property
    def url(self) -> str:
        """The endpoint of this client's channel."""
        return f"{self.destination.ingest_url}{self.route.path}"

    def encode(self, items: Sequence[bytes]) -> bytes:
        """The request body for `items` on this client's channel."""
        encoder = encode_body if self.route.form else encode_events
        return encoder(self.destination.api_key, items)

    def item_size(self, item: bytes) -> int:
        """Bytes one item adds to a body on this client's channel."""
        return encoded_size(item) if self.route.form else event_size(item)

    def post(self, items: Sequence[bytes]) -> Answer:
        """Send one batch once; transport failures come back as RETRY answers."""
        body = self.encode(items)
        form = self.route.form
        headers = {"Content-Type": body_content_type(body) if form else "application/json"}
        self.requests_sent += 1
        try:
            resp = self.session.post(self.url, data=body, headers=headers, timeout=self.policy.timeout)
        except requests.ConnectTimeout:
            return Answer(Outcome.RETRY, f"could not reach {self.destination.ingest_url} (timed out)")
        except requests.Timeout:
            return Answer(Outcome.RETRY, "timed out", maybe_ingested=True)
        except requests.exceptions.SSLError as exc:
            return Answer(Outcome.RETRY, tls_failure(self.destination.ingest_url, exc))
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                return Answer(Outcome.RETRY, f"could not reach {self.destination.ingest_url}")
            return Answer(Outcome.RETRY, "the connection closed without an answer", maybe_ingested=True)
        except requests.RequestException as exc:  # e.g. an answer cut off midway: unknown outcome
            detail = f"the answer was cut off ({type(exc).__name__})"
            return Answer(Outcome.RETRY, detail, maybe_ingested=True)
        answer = classify(resp.status_code, resp.text)
        if resp.status_code == 429 or resp.status_code >= 500:
            wait = retry_after(resp.headers.get("Retry-After"), self.clock())
            answer = answer if wait is None else replace(answer, retry_after=wait)
        return answer

    def send(self, items: Sequence[bytes]) -> Answer:
        """Send one batch, retrying with backoff until it is answered for good.

        A 429 naming users/devices over their daily quota comes back at once as REJECTED for
        their items: retrying them within the run cannot succeed.
        """
        answer, doubt = Answer(Outcome.RETRY), False
        for attempt in range(1, self.policy.attempts + 1):
            answer = self.post(items)
            doubt = doubt or answer.maybe_ingested  # any try may have been the one that arrived
            if answer.outcome is Outcome.INVALID_KEY:
                raise FatalError(invalid_key_message(self.destination))
            rejected = self._over_quota(attempt, answer, items)
            if rejected is not None:
                return replace(rejected, maybe_ingested=doubt)
            if answer.outcome is not Outcome.RETRY or attempt == self.policy.attempts:
                return replace(answer, maybe_ingested=doubt)
            self.sleep(self.policy.delay(attempt, answer, self.route, self.rng))
        return replace(answer, maybe_ingested=doubt)

    def _over_quota(self, attempt: int, answer: Answer, items: Sequence[bytes]) -> Answer | None:
        rejected = over_quota(answer, items)
        if rejected is not None and len(rejected.bad_items) < len(items):
            # The caller resends the rest at once: the throttle pause is waited out here first.
            self.sleep(self.policy.delay(attempt, answer, self.route, self.rng))
        return rejected


def _never_connected(exc: requests.ConnectionError) -> bool:
    """Whether the connection failed before the request left (refused, no route, no such host)."""
    reason = exc.args[0] if exc.args else None
    return isinstance(getattr(reason, "reason", reason), urllib3.exceptions.NewConnectionError)


def invalid_key_message(destination: Destination) -> str:
    """What to check when Amplitude refuses the key, without the key."""
    return INVALID_KEY_MESSAGE.format(name=destination.name, region_hint=region_hint(destination.region))


def region_hint(region: Region) -> str:
    """Why a valid key may still be refused: keys work only in their project's data centre."""
    other = Region.EU if region is Region.US else Region.US
    return (
        f"that the project is in the {region.upper()} region "
        f'(for a project in the {other.upper()} data centre, set region = "{other}")'
    )


def tls_failure(where: str, exc: requests.exceptions.SSLError) -> str:
    """A failed TLS handshake in words: the likely cause, from the TLS library's reason."""
    reason = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        cause = "the server's certificate is not trusted (self-signed, expired, or a proxy's)"
    elif "WRONG_VERSION_NUMBER" in reason or "record layer failure" in reason:
        cause = "the server does not speak HTTPS on that port (should the endpoint start with http://?)"
    else:
        cause = "check the endpoint's scheme, any proxy in between, and its certificate"
    return f"the TLS handshake with {where} failed: {cause}"

"""The Amplitude client: answers classified, retries bounded, batches split, keys never echoed."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from scripted import DROP, Scripted, serve

from amp_sync.amplitude import (
    MAX_RETRY_AFTER,
    OVER_DAILY_QUOTA,
    ROUTES,
    Answer,
    Channel,
    IdentifyClient,
    Outcome,
    RetryPolicy,
    classify,
    encode_body,
    encoded_size,
    retry_after,
)
from amp_sync.config import Destination, Region
from amp_sync.errors import FatalError
from amp_sync.sandbox import SANDBOX_API_KEY, Faults, Sandbox
from amp_sync.secret import Secret

KEY = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0  # the clients' clock in these tests
THROTTLED = '{"code":429,"error":"Too many requests for some devices and users"}'


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, "success", Outcome.OK),
        (200, '{"code":200}', Outcome.OK),
        (413, '{"code":413,"error":"Payload too large"}', Outcome.SPLIT),
        (429, '{"code":429,"error":"Too many requests for some devices and users"}', Outcome.RETRY),
        (500, "", Outcome.RETRY),
        (502, "<html>bad gateway</html>", Outcome.RETRY),
        (503, "", Outcome.RETRY),
        (504, "", Outcome.RETRY),
        (400, '{"code":400,"error":"Invalid API key: abc"}', Outcome.INVALID_KEY),
        (400, "invalid_api_key", Outcome.INVALID_KEY),
        (
            400,
            '{"code":400,"error":"x","events_with_invalid_fields":{"user_id":[1,3]}}',
            Outcome.REJECTED,
        ),
        (400, "missing_event", Outcome.FAILED),
        (403, '{"code":403,"error":"Forbidden"}', Outcome.FAILED),
    ],
)
def test_classify_reads_every_documented_answer(status: int, body: str, outcome: Outcome) -> None:
    assert classify(status, body).outcome is outcome


def test_classify_names_the_rejected_items_and_never_echoes_a_key() -> None:
    answer = classify(
        400, '{"error":"Invalid field values","events_with_invalid_fields":{"a":[2],"b":[0,2]}}'
    )
    assert answer.bad_items == (0, 2)
    assert KEY not in classify(400, json.dumps({"error": f"Invalid API key: {KEY}"})).detail


def test_body_is_form_data_with_a_json_array() -> None:
    from email.parser import BytesParser

    from amp_sync.amplitude import body_content_type

    items = [b'{"user_id":"alice1","user_properties":{"$set":{"x":"a&b=c \\u00e9"}}}', b'{"user_id":"bobby"}']
    body = encode_body(Secret(KEY), items)
    # Read it back as any standard multipart parser would.
    head = b"Content-Type: " + body_content_type(body).encode() + b"\r\n\r\n"
    parts = BytesParser().parsebytes(head + body).get_payload()
    form = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True) for p in parts}
    assert form["api_key"] == KEY.encode()
    assert json.loads(form["identification"]) == [json.loads(i) for i in items]
    overhead = len(encode_body(Secret(KEY), []))
    assert len(body) == overhead + sum(encoded_size(i) for i in items) - 1


def test_a_value_holding_the_boundary_falls_back_to_url_encoding() -> None:
    from urllib.parse import parse_qs

    from amp_sync.amplitude import BOUNDARY, body_content_type

    item = b'{"user_id":"alice1","user_properties":{"$set":{"x":"' + BOUNDARY + b'"}}}'
    body = encode_body(Secret(KEY), [item])
    assert body_content_type(body) == "application/x-www-form-urlencoded"
    assert json.loads(parse_qs(body.decode())["identification"][0]) == [json.loads(item)]


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_grows_within_bounds(attempt: int) -> None:
    policy, route = RetryPolicy(base_delay=0.5, max_delay=30), ROUTES[Channel.IDENTIFY]
    delay = policy.delay(attempt, Answer(Outcome.RETRY), route, random.Random(attempt))
    ceiling = min(30, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(attempt, Answer(Outcome.RETRY, throttled=True), route, random.Random(1)) >= 15


@pytest.fixture
def amplitude():
    scripted = Scripted()
    server, url = serve(scripted)
    yield scripted, url
    server.shutdown()


def _client(url: str, sleeps: list[float], attempts: int = 5) -> IdentifyClient:
    dest = Destination("test", Secret(KEY), None, Region.US, endpoint=url)
    policy = RetryPolicy(attempts=attempts, timeout=5)
    return IdentifyClient(dest, policy, sleep=sleeps.append, rng=random.Random(0))


@pytest.mark.parametrize(
    "failure",
    [(429, '{"code":429,"error":"Too many requests"}'), (500, ""), (502, ""), (503, ""), DROP],
)
def test_transient_failures_are_retried_until_acknowledged(amplitude, failure) -> None:
    scripted, url = amplitude
    scripted.script = [failure, failure]
    sleeps: list[float] = []
    answer = _client(url, sleeps).send([b'{"user_id":"alice1"}'])
    assert answer.outcome is Outcome.OK
    assert len(scripted.received) == 3 and len(sleeps) == 2
    if failure != DROP and failure[0] == 429:
        assert all(15 <= s < 15.5 for s in sleeps)  # Identify asks a 15 s pause for throttled users


def test_retries_are_bounded(amplitude) -> None:
    scripted, url = amplitude
    scripted.script = [(500, "")] * 10
    sleeps: list[float] = []
    answer = _client(url, sleeps, attempts=4).send([b'{"user_id":"alice1"}'])
    assert answer.outcome is Outcome.RETRY
    assert len(scripted.received) == 4 and len(sleeps) == 3


def test_invalid_key_stops_with_advice_and_without_the_key(amplitude) -> None:
    scripted, url = amplitude
    scripted.script = [(400, json.dumps({"code": 400, "error": f"Invalid API key: {KEY}"}))]
    with pytest.raises(FatalError) as err:
        _client(url, []).send([b'{"user_id":"alice1"}'])
    message = str(err.value)
    assert KEY not in message
    assert "region" in message and "API key" in message
    assert len(scripted.received) == 1


def test_unreachable_endpoint_is_a_retry_not_a_traceback() -> None:
    sleeps: list[float] = []
    answer = _client("http://127.0.0.1:9", sleeps, attempts=2).send([b'{"user_id":"alice1"}'])
    assert answer.outcome is Outcome.RETRY and "could not reach" in answer.detail


def test_an_answer_cut_off_midway_is_retried() -> None:
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        for n in range(2):
            conn, _ = listener.accept()
            conn.recv(65536)
            if n == 0:  # promise 100 bytes, send 5, hang up
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsucce")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    sleeps: list[float] = []
    answer = _client(f"http://127.0.0.1:{port}", sleeps).send([b'{"user_id":"alice1"}'])
    listener.close()
    assert answer.outcome is Outcome.OK and len(sleeps) == 1


# --- 429 and Retry-After, as each API asks ---------------------------------------------------------


class Headed:
    """A loopback Amplitude answering from a script of (status, body, headers), then 'success'."""

    def __init__(self, script: list[tuple[int, str, dict[str, str]]]) -> None:
        self.script = list(script)
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def next(self, path: str, body: bytes) -> tuple[int, str, dict[str, str]]:
        with self.lock:
            self.received.append((path, body))
            return self.script.pop(0) if self.script else (200, "success", {})

    def events(self, n: int) -> list[dict[str, Any]]:
        """The events of the n-th request received (an HTTP V2 or Batch body)."""
        return json.loads(self.received[n][1])["events"]


@pytest.fixture
def headed() -> Iterator[tuple[Headed, str]]:
    script = Headed([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, text, headers = script.next(self.path, body)
            data = text.encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A short poll interval lets shutdown() return at once, not after the default half second.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield script, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _on(channel: Channel, url: str, sleeps: list[float], attempts: int = 5) -> IdentifyClient:
    client = _client(url, sleeps, attempts)
    client.channel, client.clock = channel, lambda: NOW
    return client


@pytest.mark.parametrize(
    ("channel", "pause"),
    [
        (Channel.IDENTIFY, 15),  # https://amplitude.com/docs/apis/analytics/identify
        (Channel.GROUPS, 15),
        (Channel.EVENTS, 30),  # https://amplitude.com/docs/apis/analytics/http-v2
        (Channel.SYNTHETIC, 30),
        (Channel.BATCH, 30),  # https://amplitude.com/docs/apis/analytics/batch-event-upload
    ],
)
def test_a_429_pauses_as_long_as_each_api_asks(headed, channel: Channel, pause: float) -> None:
    amplitude, url = headed
    amplitude.script = [(429, THROTTLED, {})]
    sleeps: list[float] = []
    client = _on(channel, url, sleeps)
    assert client.send([b'{"user_id":"alice1","event_type":"x"}']).outcome is Outcome.OK
    assert [path for path, _ in amplitude.received] == [ROUTES[channel].path] * 2
    assert len(sleeps) == 1 and pause <= sleeps[0] < pause + client.policy.base_delay


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retry_after_in_seconds_is_waited_instead_of_the_clients_own_delay(headed, status: int) -> None:
    amplitude, url = headed
    amplitude.script = [(status, THROTTLED if status == 429 else "", {"Retry-After": "7"})]
    sleeps: list[float] = []
    assert _on(Channel.EVENTS, url, sleeps).send([b'{"user_id":"alice1"}']).outcome is Outcome.OK
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date_is_waited_until_that_moment(headed) -> None:
    amplitude, url = headed
    amplitude.script = [(429, THROTTLED, {"Retry-After": formatdate(NOW + 20, usegmt=True)})]
    sleeps: list[float] = []
    assert _on(Channel.IDENTIFY, url, sleeps).send([b'{"user_id":"alice1"}']).outcome is Outcome.OK
    assert sleeps == [20.0]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW + 30, usegmt=True).replace("GMT", "-0000"), 30.0),  # no zone: GMT
        (formatdate(NOW - 60, usegmt=True), 0.0),  # a moment past: retry now
        ("soon", None),
        ("1.5", None),  # not delay-seconds, which are whole
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, NOW) == seconds


def test_retry_after_is_capped_and_ignored_where_amplitude_does_not_send_it(headed) -> None:
    policy, route = RetryPolicy(), ROUTES[Channel.BATCH]
    long_wait = Answer(Outcome.RETRY, throttled=True, retry_after=86_400)
    assert policy.delay(1, long_wait, route, random.Random(0)) == MAX_RETRY_AFTER == 600
    amplitude, url = headed  # a 413 is split, never waited on, whatever its headers say
    amplitude.script = [(413, '{"code":413,"error":"Payload too large"}', {"Retry-After": "7"})]
    sleeps: list[float] = []
    assert _on(Channel.EVENTS, url, sleeps).send([b'{"user_id":"alice1"}']).outcome is Outcome.SPLIT
    assert sleeps == []


def _quota_body(users: dict[str, int], devices: dict[str, int], events: list[int]) -> str:
    return json.dumps(
        {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": 1000,
            "throttled_devices": {},
            "throttled_users": {"busy-user": 1200},
            "exceeded_daily_quota_users": users,
            "exceeded_daily_quota_devices": devices,
            "throttled_events": events,
        }
    )


def test_classify_reads_the_ids_over_their_daily_quota() -> None:
    answer = classify(429, _quota_body({"spammer1": 500_200}, {"device-99": 500_900}, [0, 2]))
    assert (answer.outcome, answer.throttled) == (Outcome.RETRY, True)
    assert (answer.quota_users, answer.quota_devices) == ({"spammer1"}, {"device-99"})
    assert classify(429, THROTTLED).quota_users == frozenset()


@pytest.mark.parametrize("channel", [Channel.EVENTS, Channel.BATCH])
def test_ids_over_their_daily_quota_are_rejected_after_one_request_and_the_rest_retried(
    headed, channel: Channel
) -> None:
    amplitude, url = headed
    items = [
        b'{"user_id":"spammer1","event_type":"a","insert_id":"i0"}',
        b'{"user_id":"alice1","event_type":"a","insert_id":"i1"}',
        b'{"device_id":"device-99","event_type":"a","insert_id":"i2"}',
        b'{"user_id":"spammer1","device_id":"device-01","event_type":"b","insert_id":"i3"}',
        b'{"user_id":"busy-user","event_type":"a","insert_id":"i4"}',
    ]
    amplitude.script = [(429, _quota_body({"spammer1": 500_200}, {"device-99": 500_900}, [0, 2, 3, 4]), {})]
    sleeps: list[float] = []
    client = _on(channel, url, sleeps)
    answer = client.send(items)
    assert (answer.outcome, answer.bad_items) == (Outcome.REJECTED, (0, 2, 3))
    words = "over Amplitude's daily limit of events for this user or device; sent again on a later run"
    assert answer.detail == OVER_DAILY_QUOTA == words
    assert len(amplitude.received) == 1  # not retried 8 times
    assert len(sleeps) == 1 and 30 <= sleeps[0] < 30.5  # the rest waits out the throttle first
    # The caller drops the rejected items and resends the rest at once, as for any REJECTED answer.
    rest = [item for i, item in enumerate(items) if i not in answer.bad_items]
    assert client.send(rest).outcome is Outcome.OK
    assert [e["insert_id"] for e in amplitude.events(1)] == ["i1", "i4"] and len(sleeps) == 1


def test_a_batch_wholly_over_its_daily_quota_is_rejected_whole_without_a_pause(headed) -> None:
    amplitude, url = headed
    amplitude.script = [(429, _quota_body({"spammer1": 500_001}, {}, [0, 1]), {})]
    sleeps: list[float] = []
    items = [b'{"user_id":"spammer1","event_type":"a"}', b'{"user_id":"spammer1","event_type":"b"}']
    answer = _on(Channel.BATCH, url, sleeps).send(items)
    assert (answer.outcome, answer.bad_items) == (Outcome.REJECTED, (0, 1))
    assert len(amplitude.received) == 1 and sleeps == []


def test_a_429_naming_quota_ids_of_no_item_sent_is_a_plain_throttle(headed) -> None:
    amplitude, url = headed
    amplitude.script = [(429, _quota_body({"someone-else": 500_001}, {}, []), {})]
    sleeps: list[float] = []
    assert _on(Channel.EVENTS, url, sleeps).send([b'{"user_id":"alice1"}']).outcome is Outcome.OK
    assert len(amplitude.received) == 2 and len(sleeps) == 1 and sleeps[0] >= 30


# --- against the sandbox, which validates on its own -----------------------------------------------


def _sandbox_client(sb: Sandbox, channel: Channel, sleeps: list[float], attempts: int = 5) -> IdentifyClient:
    dest = Destination("sandbox", Secret(SANDBOX_API_KEY), None, Region.US, endpoint=sb.url)
    policy = RetryPolicy(attempts=attempts, timeout=5)
    return IdentifyClient(dest, policy, sleeps.append, random.Random(0), channel=channel, clock=lambda: NOW)


def _event(user_id: str, insert_id: str) -> bytes:
    return json.dumps({"user_id": user_id, "event_type": "Viewed", "insert_id": insert_id}).encode()


def test_the_client_reads_the_sandboxs_daily_quota_answer() -> None:
    with Sandbox(faults=Faults(daily_quota=2), clock=lambda: NOW) as sb:
        sleeps: list[float] = []
        client = _sandbox_client(sb, Channel.BATCH, sleeps)
        assert client.send([_event("spammer1", "a"), _event("spammer1", "b")]).outcome is Outcome.OK
        answer = client.send([_event("spammer1", "c"), _event("alice1", "d")])
        assert (answer.outcome, answer.bad_items, answer.detail) == (Outcome.REJECTED, (0,), OVER_DAILY_QUOTA)
        assert client.send([_event("alice1", "d")]).outcome is Outcome.OK
        assert [e["insert_id"] for e in sb.store.events()] == ["a", "b", "d"]
        assert len(sleeps) == 1 and sleeps[0] >= 30


def test_the_sandboxs_throttle_can_ask_a_retry_after() -> None:
    with Sandbox(faults=Faults(throttle=1.0, retry_after=7)) as sb:
        sleeps: list[float] = []
        answer = _sandbox_client(sb, Channel.IDENTIFY, sleeps, attempts=3).send([b'{"user_id":"alice1"}'])
        assert answer.outcome is Outcome.RETRY and sleeps == [7.0, 7.0]

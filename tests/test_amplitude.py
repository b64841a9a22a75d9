"""The Identify client: answers classified, retries bounded, batches split, keys never echoed."""

from __future__ import annotations

import json
import random

import pytest
from scripted import DROP, Scripted, serve

from amp_sync.amplitude import (
    IdentifyClient,
    Outcome,
    RetryPolicy,
    classify,
    encode_body,
    encoded_size,
)
from amp_sync.config import Destination, Region
from amp_sync.errors import FatalError
from amp_sync.secret import Secret

KEY = "0123456789abcdef0123456789abcdef"


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
    policy = RetryPolicy(base_delay=0.5, max_delay=30)
    delay = policy.delay(attempt, throttled=False, rng=random.Random(attempt))
    ceiling = min(30, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(attempt, throttled=True, rng=random.Random(1)) >= 15


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
        assert all(s >= 15 for s in sleeps)  # Amplitude asks a 15 s pause for throttled users


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

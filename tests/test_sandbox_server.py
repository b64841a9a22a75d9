"""The sandbox as a local server: web pages cannot drive it, idle clients cannot hold it, deep or
half-bad requests change nothing. Real HTTP over loopback; http.client and raw sockets where a test
needs headers or bytes that `requests` would not send."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from amp_sync.sandbox import (
    CONTROL_HEADERS,
    SANDBOX_API_KEY,
    SANDBOX_SECRET_KEY,
    Faults,
    Sandbox,
    fetch,
    get_faults,
    set_faults,
)

USER, OTHER, NEWCOMER = "user-00001", "user-00002", "user-00003"
HUGE = 10**400  # a whole number past a float's range: adding a float to it overflows
EVIL = "http://evil.example"


def raw(
    sb: Sandbox, method: str, path: str, headers: dict[str, str] | None = None, body: str | bytes = b""
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, body: decoded if JSON) of one request with exactly these headers, Host included."""
    connection = http.client.HTTPConnection(urlsplit(sb.url).netloc, timeout=10)
    try:
        connection.request(method, path, body or None, headers or {})
        response = connection.getresponse()
        data = response.read()
        is_json = response.getheader("Content-Type") == "application/json"
        return response.status, dict(response.getheaders()), json.loads(data) if is_json else data
    finally:
        connection.close()


def port(sb: Sandbox) -> int:
    return int(urlsplit(sb.url).port or 0)


def post(sb: Sandbox, path: str, items: list[dict[str, Any]]) -> requests.Response:
    """Items as Amplitude takes them on `path`: a form for the identify calls, JSON for events."""
    if path in ("/identify", "/groupidentify"):
        form = {"api_key": SANDBOX_API_KEY, "identification": json.dumps(items)}
        return requests.post(sb.url + path, data=form, timeout=10)
    return requests.post(sb.url + path, json={"api_key": SANDBOX_API_KEY, "events": items}, timeout=10)


def identify(sb: Sandbox, user_id: str, props: Any) -> requests.Response:
    return post(sb, "/identify", [{"user_id": user_id, "user_properties": props}])


def listings(sb: Sandbox) -> dict[str, list[dict[str, Any]]]:
    """What an analyst reads back over HTTP: every profile, event and group."""
    return {what: fetch(sb.url, what) for what in ("profiles", "events", "groups")}


def event_list(sb: Sandbox) -> list[dict[str, Any]]:
    auth = (SANDBOX_API_KEY, SANDBOX_SECRET_KEY)
    return list(requests.get(f"{sb.url}/api/2/events/list", auth=auth, timeout=10).json()["data"])


def nested(depth: int) -> dict[str, Any]:
    """A properties object `depth` layers deep: nested(1) is {"k": "x"}."""
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


def nested_text(depth: int) -> str:
    """nested(depth) as JSON text, written out: json.dumps would recurse as deep as it nests."""
    return '{"k":' * depth + '"x"' + "}" * depth


def viewed(user_id: str = USER, **fields: Any) -> dict[str, Any]:
    return {"event_type": "Viewed", "user_id": user_id, **fields}


def identify_event(user_id: str = USER, **fields: Any) -> dict[str, Any]:
    return {"event_type": "$identify", "user_id": user_id, **fields}


def group_event(value: object, properties: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": "$groupidentify", "groups": {"org": value}, "group_properties": properties}


def group(value: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"group_type": "org", "group_value": value, "group_properties": properties}


def refused(field: str, index: int) -> dict[str, Any]:
    return {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_fields": {field: [index]},
        "events_with_missing_fields": {},
    }


# --- web pages cannot drive the control endpoints -------------------------------------------


# What a web page can send to another origin without a preflight: a form or text/plain POST.
SIMPLE_POSTS = {
    "cross-origin text/plain": {"Content-Type": "text/plain", "Origin": EVIL},
    "cross-origin form": {"Content-Type": "application/x-www-form-urlencoded", "Origin": EVIL},
    "without Origin": {"Content-Type": "text/plain"},  # as from a browser that leaves it out
}


@pytest.mark.parametrize("headers", SIMPLE_POSTS.values(), ids=SIMPLE_POSTS.keys())
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sandbox/faults", '{"drop": 1.0}'),
        ("/sandbox/reset", ""),
        ("/sandbox/inactive", '{"event_type": "Viewed", "inactive": true}'),
    ],
)
def test_a_simple_post_from_a_web_page_changes_nothing(
    sb: Sandbox, headers: dict[str, str], path: str, body: str
) -> None:
    set_faults(sb.url, Faults(error_503=0.25))
    identify(sb, USER, {"plan": "pro"})
    post(sb, "/2/httpapi", [{"event_type": "Viewed", "user_id": USER}])
    before = (get_faults(sb.url), listings(sb), event_list(sb))

    status, _, answer = raw(sb, "POST", path, {"Host": f"127.0.0.1:{port(sb)}", **headers}, body)

    assert status == 403
    assert "web page" in answer["error"].lower()
    assert (get_faults(sb.url), listings(sb), event_list(sb)) == before


def test_a_cross_origin_post_is_refused_even_with_the_control_header(sb: Sandbox) -> None:
    headers = {"Host": f"127.0.0.1:{port(sb)}", "Origin": EVIL, "Content-Type": "application/json"}
    status, _, answer = raw(sb, "POST", "/sandbox/faults", {**headers, **CONTROL_HEADERS}, '{"drop": 1.0}')
    assert (status, answer["error"]) == (
        403,
        f"Web pages from {EVIL} may not use the sandbox; only loopback origins may",
    )
    assert get_faults(sb.url) == Faults()


def test_a_browser_preflight_is_never_approved(sb: Sandbox) -> None:
    for origin in (EVIL, "http://localhost:8501"):
        headers = {
            "Host": f"127.0.0.1:{port(sb)}",
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-amp-sync-sandbox,content-type",
        }
        status, answer_headers, _ = raw(sb, "OPTIONS", "/sandbox/faults", headers)
        assert status in (403, 405), origin
        assert not any(name.lower().startswith("access-control-") for name in answer_headers), origin


def test_the_projects_own_helpers_still_work(sb: Sandbox) -> None:
    wanted = Faults(throttle=0.1, error_500=0.2, slow=0.5, slow_seconds=0.25, seed=9)
    assert set_faults(sb.url, wanted) == wanted
    assert get_faults(sb.url) == wanted == sb.faults
    assert set_faults(sb.url, Faults()) == get_faults(sb.url) == Faults()
    assert identify(sb, USER, {"plan": "pro"}).status_code == 200
    assert fetch(sb.url, "profiles") == [
        {"user_id": USER, "device_ids": [], "user_properties": {"plan": "pro"}}
    ]


def test_control_requests_with_the_header_work(sb: Sandbox) -> None:
    identify(sb, USER, {"plan": "pro"})
    reset = requests.post(f"{sb.url}/sandbox/reset", headers=CONTROL_HEADERS, timeout=10)
    assert reset.status_code == 200
    assert fetch(sb.url, "profiles") == []


def test_a_control_post_without_the_header_says_what_to_send(sb: Sandbox) -> None:
    response = requests.post(f"{sb.url}/sandbox/faults", json={"drop": 1.0}, timeout=10)
    assert response.status_code == 403
    assert "X-Amp-Sync-Sandbox: control" in response.json()["error"]
    assert get_faults(sb.url) == Faults()


# --- the Host header (DNS rebinding) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sandbox/profiles"),
        ("GET", "/sandbox/events"),
        ("GET", "/sandbox/groups"),
        ("GET", "/sandbox/requests"),
        ("GET", "/sandbox/faults"),
        ("GET", "/health"),
    ],
)
def test_a_page_that_rebinds_its_name_to_the_sandbox_reads_nothing(
    sb: Sandbox, method: str, path: str
) -> None:
    identify(sb, USER, {"email": "someone@example.com"})
    status, _, answer = raw(sb, method, path, {"Host": f"evil.example:{port(sb)}"})
    assert status == 403
    assert answer["error"].startswith(f"Host 'evil.example:{port(sb)}' is not this machine")
    assert "someone@example.com" not in json.dumps(answer)


def test_an_ingestion_request_under_another_host_is_refused_and_not_recorded(sb: Sandbox) -> None:
    body = json.dumps({"api_key": SANDBOX_API_KEY, "events": [{"event_type": "Viewed", "user_id": USER}]})
    headers = {"Host": f"evil.example:{port(sb)}", "Content-Type": "text/plain"}
    status, _, _ = raw(sb, "POST", "/2/httpapi", headers, body)
    assert status == 403
    assert fetch(sb.url, "events") == fetch(sb.url, "requests") == []


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LocalHost",
        "127.0.0.1",
        "127.8.9.10:{port}",
        "[::1]:{port}",
        "[::1]",
        "::1",
    ],
)
def test_loopback_hosts_are_served(sb: Sandbox, host: str) -> None:
    status, _, answer = raw(sb, "GET", "/sandbox/profiles", {"Host": host.format(port=port(sb))})
    assert (status, answer) == (200, [])


@pytest.mark.parametrize(
    "host",
    [
        "",
        "evil.example",
        "127.0.0.1.evil.example:{port}",
        "localhost.evil.example",
        "evil.example#@127.0.0.1",
        "[::1",
        "127.0.0.1:{port}:{port}",
        "10.1.2.3:{port}",
    ],
)
def test_other_or_malformed_hosts_are_refused(sb: Sandbox, host: str) -> None:
    status, _, answer = raw(sb, "GET", "/sandbox/profiles", {"Host": host.format(port=port(sb))})
    assert (status, answer["code"]) == (403, 403)


def test_a_request_without_a_host_header_is_refused(sb: Sandbox) -> None:
    connection = http.client.HTTPConnection(urlsplit(sb.url).netloc, timeout=10)
    try:
        connection.putrequest("GET", "/sandbox/profiles", skip_host=True)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 403
    finally:
        connection.close()


def own_address() -> str | None:
    """This machine's address on its default route, or None when it has none but loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a documentation address: a UDP connect sends nothing
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_a_sandbox_bound_to_every_address_takes_the_host_it_was_started_on() -> None:
    with Sandbox(host="0.0.0.0") as sb:
        assert raw(sb, "GET", "/health", {"Host": f"0.0.0.0:{port(sb)}"})[0] == 200
        assert raw(sb, "GET", "/health", {"Host": f"evil.example:{port(sb)}"})[0] == 403
        address = own_address()
        if address is not None:  # reached on its own address, with that address as its Host
            connection = http.client.HTTPConnection(address, port(sb), timeout=10)
            try:
                connection.request("GET", "/sandbox/profiles")
                assert connection.getresponse().status == 200
            finally:
                connection.close()


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        (EVIL, 403),
        ("null", 403),  # sandboxed iframes and file:// pages
        ("http://127.0.0.1.evil.example", 403),
        ("http://[::1", 403),
        ("http://localhost:8501", 200),
        ("http://127.0.0.1:3000", 200),
        ("http://[::1]:3000", 200),
    ],
)
def test_only_loopback_origins_are_served(sb: Sandbox, origin: str, status: int) -> None:
    headers = {"Host": f"127.0.0.1:{port(sb)}", "Origin": origin}
    assert raw(sb, "GET", "/sandbox/profiles", headers)[0] == status


# --- idle connections ------------------------------------------------------------------------


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closes `connection` before the client's own 10 s timeout."""
    try:
        while connection.recv(65536):
            pass  # an answer to a whole request sent first: read it, then wait for the close
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
        b"POST /identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\napi_key=sandbox",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # then silence on a kept-alive connection
    ],
    ids=["nothing", "half the headers", "half the body", "idle after an answer"],
)
def test_a_silent_client_is_disconnected_after_the_idle_timeout(sent: bytes) -> None:
    with Sandbox(idle_timeout=0.5) as sb:
        host, listening = urlsplit(sb.url).hostname or "127.0.0.1", port(sb)
        with socket.create_connection((host, listening), timeout=10) as connection:
            started = time.monotonic()
            connection.sendall(sent)
            assert closed_by_server(connection)
            waited = time.monotonic() - started
        assert 0.4 <= waited < 5
        assert requests.get(f"{sb.url}/health", timeout=10).text == "ok"  # and it goes on serving
        assert fetch(sb.url, "profiles") == fetch(sb.url, "requests") == []


# --- deep values (https://amplitude.com/docs/apis/analytics/http-v2: "Object depth may not exceed 40 layers")


@pytest.mark.parametrize(
    ("path", "item", "field"),
    [
        ("/identify", {"user_id": USER, "user_properties": nested(41)}, "user_properties"),
        ("/identify", {"user_id": USER, "user_properties": {"$set": nested(41)}}, "user_properties"),
        ("/groupidentify", group("acme", nested(41)), "group_properties"),
        ("/2/httpapi", identify_event(user_properties={"$set": nested(41)}), "user_properties"),
        ("/2/httpapi", viewed(user_properties=nested(41)), "user_properties"),
        ("/batch", viewed(event_properties=nested(41)), "event_properties"),
        ("/batch", viewed(plan=[nested(40)]), "plan"),
        ("/batch", group_event("acme", {"$set": nested(41)}), "group_properties"),
    ],
)
def test_properties_nested_41_deep_are_refused_and_change_nothing(
    sb: Sandbox, path: str, item: dict[str, Any], field: str
) -> None:
    identify(sb, USER, {"plan": "free"})
    before = listings(sb)
    goods = {"/identify": {"user_id": OTHER}, "/groupidentify": group("beta", {"plan": "pro"})}
    response = post(sb, path, [goods.get(path, viewed(OTHER)), item])
    assert (response.status_code, response.json()) == (400, refused(field, 1))
    assert listings(sb) == before


@pytest.mark.parametrize("props", [nested(40), {"$set": nested(40)}, {"tags": [nested(38)]}])  # 1 + 1 + 38
def test_properties_nested_40_deep_are_kept_and_listed(sb: Sandbox, props: dict[str, Any]) -> None:
    assert identify(sb, USER, props).status_code == 200
    response = requests.get(f"{sb.url}/sandbox/profiles", timeout=10)
    assert response.status_code == 200
    assert response.json()[0]["user_properties"] == props.get("$set", props)


def test_event_properties_nested_40_deep_are_kept_and_listed(sb: Sandbox) -> None:
    assert post(sb, "/batch", [viewed(event_properties=nested(40))]).ok
    response = requests.get(f"{sb.url}/sandbox/events", timeout=10)
    assert response.status_code == 200
    assert response.json()[0]["event_properties"] == nested(40)


DEEP = 800  # deep, but within what json.loads takes: checking it must not recurse either
NOT_JSON = "[" * 100_000 + "]" * 100_000  # deeper than json.loads can take


def form(identification: str) -> tuple[str, str]:
    body = urlencode({"api_key": SANDBOX_API_KEY, "identification": identification})
    return body, "application/x-www-form-urlencoded"


def events(text: str, api_key: str = json.dumps(SANDBOX_API_KEY)) -> tuple[str, str]:
    return f'{{"api_key": {api_key}, "events": {text}}}', "application/json"


DEEP_EVENT = f'[{{"event_type": "Viewed", "user_id": "{USER}", "event_properties": {nested_text(DEEP)}}}]'
DEEP_USER = f'{{"user_id": "{USER}", "user_properties": {nested_text(DEEP)}}}'


@pytest.mark.parametrize(
    ("path", "sent", "error"),
    [
        ("/2/httpapi", (NOT_JSON, "application/json"), "nested too deep"),
        ("/batch", events(NOT_JSON), "nested too deep"),
        ("/identify", form(NOT_JSON), "nested too deep"),
        ("/2/httpapi", events(DEEP_EVENT), "Invalid field values"),
        ("/identify", form(DEEP_USER), "Invalid field values"),
        ("/2/httpapi", events("[]", api_key=nested_text(DEEP)), "Invalid API key"),
    ],
    ids=["body", "events", "identification", "event_properties", "user_properties", "api_key"],
)
def test_very_deep_bodies_get_a_400_and_the_server_goes_on(
    sb: Sandbox, path: str, sent: tuple[str, str], error: str
) -> None:
    body, content_type = sent
    response = requests.post(sb.url + path, data=body, headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert fetch(sb.url, "profiles") == fetch(sb.url, "events") == []
    assert identify(sb, USER, {"plan": "pro"}).status_code == 200  # still serving
    assert requests.get(f"{sb.url}/sandbox/profiles", timeout=10).status_code == 200


def test_deep_fault_settings_get_a_400_and_change_nothing(sb: Sandbox) -> None:
    set_faults(sb.url, Faults(drop=0.5))
    body = f'{{"throttle": {nested_text(DEEP)}}}'
    headers = {**CONTROL_HEADERS, "Content-Type": "application/json"}
    response = requests.post(f"{sb.url}/sandbox/faults", data=body, headers=headers, timeout=10)
    assert response.status_code == 400
    assert "throttle must be numbers" in response.json()["error"]
    assert get_faults(sb.url) == Faults(drop=0.5)


# --- a request that fails halfway applies nothing -------------------------------------------

SETUPS = {
    "huge user": ("/identify", [{"user_id": USER, "user_properties": {"n": HUGE}}]),
    "huge group": ("/groupidentify", [group("acme", {"n": HUGE})]),
}
ADD = {"$add": {"n": 1.5}}
PRO = {"$set": {"plan": "pro"}}


@pytest.mark.parametrize(
    ("setup", "path", "items", "field"),
    [
        (
            "huge user",
            "/identify",
            [
                {"user_id": OTHER, "user_properties": {"plan": "pro"}},
                {"user_id": NEWCOMER, "device_id": "device-0001", "user_properties": {"$append": {"t": 1}}},
                {"user_id": USER, "user_properties": ADD},
            ],
            "user_properties",
        ),
        (
            "huge group",
            "/groupidentify",
            [group("beta", {"plan": "pro"}), group("acme", PRO), group("acme", ADD)],
            "group_properties",
        ),
        (
            "huge user",
            "/2/httpapi",
            [
                viewed(OTHER, insert_id="viewed-1", user_properties={"plan": "pro"}),
                identify_event(device_id="device-0001", user_properties=PRO),
                identify_event(user_properties=ADD),
            ],
            "user_properties",
        ),
        (
            "huge group",
            "/batch",
            [viewed(OTHER, insert_id="viewed-1"), group_event(["beta"], PRO), group_event("acme", ADD)],
            "group_properties",
        ),
    ],
    ids=["/identify", "/groupidentify", "/2/httpapi", "/batch"],
)
def test_a_bad_last_item_leaves_the_store_as_it_was(
    sb: Sandbox, setup: str, path: str, items: list[dict[str, Any]], field: str
) -> None:
    # Valid on its own, the last item cannot be applied: its $add overflows what the store holds.
    assert post(sb, *SETUPS[setup]).status_code == 200
    before = listings(sb)

    response = post(sb, path, items)

    assert (response.status_code, response.json()) == (400, refused(field, len(items) - 1))
    assert listings(sb) == before
    assert post(sb, path, items[:-1]).status_code == 200  # the rest goes in once the bad item is out
    sent_events = [item for item in items[:-1] if "event_type" in item]
    assert len(fetch(sb.url, "events")) == len(sent_events)  # their insert_ids were not kept either


def test_a_refused_request_does_not_count_towards_the_daily_quota(sb: Sandbox) -> None:
    identify(sb, USER, {"n": HUGE})
    sb.set_faults(Faults(daily_quota=2))
    assert post(sb, "/2/httpapi", [viewed(), identify_event(user_properties=ADD)]).status_code == 400
    assert post(sb, "/2/httpapi", [viewed(), viewed()]).status_code == 200  # the refused two never counted
    assert post(sb, "/2/httpapi", [viewed()]).status_code == 429


def test_ingest_then_500_still_applies_the_whole_request(sb: Sandbox) -> None:
    sb.set_faults(Faults(ingest_then_500=1.0))
    items = [{"user_id": USER, "user_properties": {"plan": "pro"}}, {"user_id": OTHER}]
    assert post(sb, "/identify", items).status_code == 500
    assert [p["user_id"] for p in fetch(sb.url, "profiles")] == [USER, OTHER]


def test_a_client_that_resets_its_connection_prints_no_traceback(sb: Sandbox, capfd) -> None:
    """The server's terminal stays quiet when a client goes away in the middle of a request."""
    import struct

    host, port = sb.url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(
                f"POST /batch HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                'Content-Length: 100000\r\n\r\n{"api_key": '.encode()
            )
            # SO_LINGER 0: close() sends a reset, as a killed client's kernel does.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert requests.get(f"{sb.url}/health", timeout=5).status_code == 200
    time.sleep(0.2)  # let the handler threads meet the reset; nothing is waited for but their output
    assert "Traceback" not in capfd.readouterr().err


def test_the_taxonomy_api_lists_the_user_properties_the_profiles_hold(sb: Sandbox) -> None:
    url = f"{sb.url}/api/2/taxonomy/user-property"
    assert requests.get(url, auth=(SANDBOX_API_KEY, "wrong"), timeout=5).status_code == 401
    assert requests.get(url, auth=(SANDBOX_API_KEY, SANDBOX_SECRET_KEY), timeout=5).json()["data"] == []
    items = [{"user_id": "alice-001", "user_properties": {"$set": {"plan": "pro", "seats": 3}}}]
    assert post(sb, "/identify", items).status_code == 200
    got = requests.get(url, auth=(SANDBOX_API_KEY, SANDBOX_SECRET_KEY), timeout=5).json()
    assert got["success"] is True and [p["user_property"] for p in got["data"]] == ["plan", "seats"]

"""The sandbox answers like Amplitude and keeps what it built: real HTTP over loopback, no mocks."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from amp_sync.sandbox import (
    CONTROL_HEADERS,
    JUNK_IDS,
    SANDBOX_API_KEY,
    SANDBOX_SECRET_KEY,
    Faults,
    Sandbox,
    parse_faults,
)

USER = "user-00001"
DEVICE = "device-00001"
BASE = {"plan": "free", "tags": ["a"], "n": 2, "name": "x"}


@pytest.fixture(scope="module")
def server() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def sb(server: Sandbox) -> Sandbox:
    server.store.reset()
    return server


@pytest.fixture(scope="module")
def tight_server() -> Iterator[Sandbox]:
    keys = {SANDBOX_API_KEY: SANDBOX_SECRET_KEY, "key-without-secret": None}
    with Sandbox(api_keys=keys, max_identifications=3, max_body_bytes=2_000) as sb:
        yield sb


@pytest.fixture
def tight(tight_server: Sandbox) -> Sandbox:
    tight_server.store.reset()
    return tight_server


def identify(sb: Sandbox, items: Any, api_key: str = SANDBOX_API_KEY) -> requests.Response:
    form = {"api_key": api_key, "identification": json.dumps(items)}
    return requests.post(f"{sb.url}/identify", data=form, timeout=5)


def send(sb: Sandbox, events: list[dict[str, Any]], path: str = "/2/httpapi", **extra: Any):
    body = {"api_key": SANDBOX_API_KEY, "events": events, **extra}
    return requests.post(sb.url + path, json=body, timeout=5)


def event(name: str = "Viewed", user_id: str = USER, **fields: Any) -> dict[str, Any]:
    return {"event_type": name, "user_id": user_id, **fields}


def props_of(sb: Sandbox, user_id: str = USER) -> dict[str, Any] | None:
    profile = sb.store.profile(user_id=user_id)
    return profile["user_properties"] if profile else None


def refused(invalid: dict[str, list[int]], missing: dict[str, list[int]] | None = None):
    return {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_fields": invalid,
        "events_with_missing_fields": missing or {},
    }


# --- /identify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"plan": "pro"}], {**BASE, "plan": "pro"}),
        ([{"$set": {"plan": "pro", "city": "Oslo"}}], {**BASE, "plan": "pro", "city": "Oslo"}),
        ([{"$setOnce": {"plan": "pro", "city": "Oslo"}}], {**BASE, "city": "Oslo"}),
        ([{"$add": {"n": 3, "m": 1.5}}], {**BASE, "n": 5, "m": 1.5}),
        (
            [{"$append": {"tags": "b", "name": "y", "new": ["p", "q"]}}],
            {**BASE, "tags": ["a", "b"], "name": ["x", "y"], "new": ["p", "q"]},
        ),
        (
            [{"$prepend": {"tags": ["z", "a"], "name": "w"}}],
            {**BASE, "tags": ["z", "a", "a"], "name": ["w", "x"]},
        ),
        ([{"$postInsert": {"tags": ["a", "b", "b"]}}], {**BASE, "tags": ["a", "b"]}),
        ([{"$preInsert": {"tags": ["c", "a", "b"]}}], {**BASE, "tags": ["c", "b", "a"]}),
        ([{"$append": {"tags": ["b", "a"]}}, {"$remove": {"tags": "a"}}], {**BASE, "tags": ["b"]}),
        ([{"$unset": {"plan": "-", "absent": "-"}}], {"tags": ["a"], "n": 2, "name": "x"}),
        ([{"$clearAll": "-"}], {}),
        ([{"$clearAll": "-", "$set": {"k": "v"}}], {"k": "v"}),
        ([{"$set": {"plan": "pro"}, "$add": {"n": -2}}], {**BASE, "plan": "pro", "n": 0}),
        ([{}], BASE),
    ],
)
def test_identify_applies_operations_in_order(
    sb: Sandbox, steps: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    items = [{"user_id": USER, "user_properties": props} for props in [BASE, *steps]]
    response = identify(sb, items)
    assert (response.status_code, response.text) == (200, "success")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert props_of(sb) == expected


def test_identify_accepts_a_single_object(sb: Sandbox) -> None:
    assert identify(sb, {"device_id": DEVICE, "user_properties": {"a": 1}}).status_code == 200
    assert sb.store.profiles() == [{"user_id": None, "device_ids": [DEVICE], "user_properties": {"a": 1}}]


def test_device_merges_onto_the_user_it_logs_in_as(sb: Sandbox) -> None:
    identify(sb, {"device_id": DEVICE, "user_properties": {"seen": "anon", "plan": "free"}})
    identify(sb, {"user_id": USER, "user_properties": {"plan": "pro"}})
    identify(sb, {"user_id": USER, "device_id": DEVICE, "user_properties": {"$add": {"n": 1}}})
    merged = {
        "user_id": USER,
        "device_ids": [DEVICE],
        "user_properties": {"seen": "anon", "plan": "pro", "n": 1},
    }
    assert sb.store.profiles() == [merged]
    assert sb.store.profile(device_id=DEVICE) == merged


def test_a_shared_device_follows_its_latest_user(sb: Sandbox) -> None:
    identify(sb, [{"user_id": USER, "device_id": DEVICE}, {"user_id": "user-00002", "device_id": DEVICE}])
    assert [(p["user_id"], p["device_ids"]) for p in sb.store.profiles()] == [
        (USER, []),
        ("user-00002", [DEVICE]),
    ]


def test_profiles_sort_by_user_then_device(sb: Sandbox) -> None:
    identify(
        sb,
        [
            {"device_id": "device-b"},
            {"user_id": "user-b"},
            {"device_id": "device-a"},
            {"user_id": "user-a"},
        ],
    )
    keys = [(p["user_id"], p["device_ids"]) for p in sb.store.profiles()]
    assert keys == [("user-a", []), ("user-b", []), (None, ["device-a"]), (None, ["device-b"])]


@pytest.mark.parametrize("path", ["/identify", "/groupidentify", "/2/httpapi", "/batch"])
def test_unknown_api_key_is_refused_like_amplitude(sb: Sandbox, path: str) -> None:
    items = [{"user_id": USER, "group_type": "org", "group_value": "acme", "event_type": "Viewed"}]
    if path.startswith("/2") or path == "/batch":
        response = requests.post(sb.url + path, json={"api_key": "wrong-key-1", "events": items}, timeout=5)
    else:
        form = {"api_key": "wrong-key-1", "identification": json.dumps(items)}
        response = requests.post(sb.url + path, data=form, timeout=5)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "Invalid API key: wrong-key-1"}
    assert sb.store.profiles() == sb.store.events() == sb.store.groups() == []


@pytest.mark.parametrize("path", ["/identify", "/2/httpapi"])
def test_missing_api_key_names_the_field(sb: Sandbox, path: str) -> None:
    if path == "/identify":
        response = requests.post(sb.url + path, data={"identification": "[]"}, timeout=5)
    else:
        response = requests.post(sb.url + path, json={"events": [event()]}, timeout=5)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Request missing required field",
        "missing_field": "api_key",
    }


@pytest.mark.parametrize("identification", [None, "", "not json", "[]", "42", "[1]", '"text"'])
def test_missing_or_malformed_identification(sb: Sandbox, identification: str | None) -> None:
    form = {"api_key": SANDBOX_API_KEY}
    if identification is not None:
        form["identification"] = identification
    response = requests.post(f"{sb.url}/identify", data=form, timeout=5)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "missing_event"}


def test_bad_ids_are_refused_by_index_and_nothing_is_applied(sb: Sandbox) -> None:
    items = [
        {"user_id": USER, "user_properties": {"a": 1}},
        {"user_id": "abcd"},
        {"device_id": "dev1"},
        {"user_properties": {"a": 1}},
        {"user_id": 123456},
        {"user_id": USER, "device_id": ""},
    ]
    response = identify(sb, items)
    assert response.status_code == 400
    assert response.json() == refused({"user_id": [1, 4], "device_id": [2, 5]}, {"user_id": [3]})
    assert sb.store.profiles() == []


LONG_JUNK = sorted(junk for junk in JUNK_IDS if len(junk) >= 5)


@pytest.mark.parametrize("junk", [*LONG_JUNK, *(j.upper() for j in LONG_JUNK), " Null ", "  nil  "])
def test_identify_refuses_junk_ids_of_any_case(sb: Sandbox, junk: str) -> None:
    response = identify(sb, [{"device_id": DEVICE}, {"user_id": USER, "device_id": junk}])
    assert response.status_code == 400
    assert response.json()["events_with_invalid_fields"] == {"device_id": [1]}
    assert sb.store.profiles() == []


@pytest.mark.parametrize(
    "bad",
    [
        {"$set": {"a": 1}, "b": 2},
        {"$set": {"a": 1}, "$add": {"a": 2}},
        {"a": "x" * 1025},
        {"$append": {"a": ["x" * 1025]}},
        {"a": {"b": ["x" * 1025]}},
        {"$set": {"a": [{"b": "x" * 1025}]}},
        {"$add": {"n": "3"}},
        {"$add": {"n": True}},
        {"$set": "a"},
        ["a"],
        "a=1",
    ],
)
def test_invalid_user_properties_refuse_the_whole_request(sb: Sandbox, bad: Any) -> None:
    items = [
        {"user_id": USER, "user_properties": {"a": 1}},
        {"user_id": USER, "user_properties": bad},
    ]
    response = identify(sb, items)
    assert response.status_code == 400
    assert response.json() == refused({"user_properties": [1]})
    assert sb.store.profiles() == []


def test_a_string_of_exactly_1024_characters_is_accepted(sb: Sandbox) -> None:
    assert identify(sb, {"user_id": USER, "user_properties": {"a": "x" * 1024}}).status_code == 200


def test_identify_413_on_too_many_items_or_too_large_a_body(tight: Sandbox) -> None:
    items = [{"user_id": f"user-{i:05}"} for i in range(4)]
    assert identify(tight, items[:3]).status_code == 200
    for response in (
        identify(tight, items),
        identify(tight, {"user_id": USER, "user_properties": {"a": "x" * 1000, "b": "y" * 1000}}),
    ):
        assert response.status_code == 413
        assert response.json() == {"code": 413, "error": "Payload too large"}
    assert len(tight.store.profiles()) == 3


def test_concurrent_requests_apply_atomically(sb: Sandbox) -> None:
    def add_one(_: int) -> int:
        return identify(sb, {"user_id": USER, "user_properties": {"$add": {"n": 1}}}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(add_one, range(80))) == {200}
    assert props_of(sb) == {"n": 80}


# --- /groupidentify -------------------------------------------------------------------------


def group_identify(sb: Sandbox, items: Any) -> requests.Response:
    form = {"api_key": SANDBOX_API_KEY, "identification": json.dumps(items)}
    return requests.post(f"{sb.url}/groupidentify", data=form, timeout=5)


def test_groupidentify_applies_group_operations(sb: Sandbox) -> None:
    first = {"$set": {"plan": "pro", "tier": 1}, "$add": {"seats": 3}, "$append": {"tags": "x"}}
    then = {
        "$setOnce": {"plan": "free", "city": "Oslo"},
        "$prepend": {"tags": "w"},
        "$unset": {"tier": "-"},
    }
    assert (
        group_identify(sb, {"group_type": "org", "group_value": "acme", "group_properties": first}).text
        == "success"
    )
    group_identify(sb, [{"group_type": "org", "group_value": "acme", "group_properties": then}])
    props = {"plan": "pro", "seats": 3, "tags": ["w", "x"], "city": "Oslo"}
    assert sb.store.groups() == [{"group_type": "org", "group_value": "acme", "group_properties": props}]


def test_groupidentify_refuses_user_only_operations_and_missing_fields(sb: Sandbox) -> None:
    items = [
        {"group_type": "org", "group_value": "acme", "group_properties": {"$remove": {"a": 1}}},
        {"group_type": "org"},
    ]
    response = group_identify(sb, items)
    assert response.status_code == 400
    assert response.json() == refused({"group_properties": [0]}, {"group_value": [1]})
    assert sb.store.groups() == []


def test_groupidentify_413_beyond_1024_items(sb: Sandbox) -> None:
    items = [{"group_type": "org", "group_value": f"g{i}"} for i in range(1025)]
    assert group_identify(sb, items).status_code == 413
    assert group_identify(sb, items[:1024]).status_code == 200


# --- /2/httpapi and /batch ------------------------------------------------------------------


def test_httpapi_success_body(sb: Sandbox) -> None:
    before = int(time.time() * 1000)
    response = send(sb, [event(insert_id="a"), event("Clicked", device_id=DEVICE, insert_id="b")])
    after = int(time.time() * 1000)
    body = response.json()
    assert response.status_code == 200
    assert body["code"] == 200 and body["events_ingested"] == 2
    assert body["payload_size_bytes"] == len(response.request.body or b"")
    assert before <= body["server_upload_time"] <= after
    stored = sb.store.events()
    assert [e["event_type"] for e in stored] == ["Viewed", "Clicked"]
    assert all(e["server_received_time"] == body["server_upload_time"] for e in stored)


def test_insert_id_is_deduplicated_but_still_counted(sb: Sandbox) -> None:
    first = send(sb, [event(insert_id="a"), event(insert_id="b")])
    again = send(
        sb,
        [
            event(insert_id="b", user_properties={"plan": "dup"}),
            event(insert_id="c"),
            event(insert_id="c"),
        ],
    )
    assert [first.json()["events_ingested"], again.json()["events_ingested"]] == [2, 3]
    assert [e["insert_id"] for e in sb.store.events()] == ["a", "b", "c"]
    assert props_of(sb) == {}


@pytest.mark.parametrize(
    ("bad", "invalid", "missing"),
    [
        ({"user_id": USER}, {}, {"event_type": [1]}),
        (event(time="2024-01-01T00:00:00"), {"time": [1]}, {}),
        (event(time=1.7e12), {"time": [1]}, {}),
        (event(user_id="abc"), {"user_id": [1]}, {}),
        ({"event_type": "Viewed"}, {}, {"user_id": [1]}),
        (event(event_type=""), {"event_type": [1]}, {}),
        (event(user_properties={"a": "x" * 1025}), {"user_properties": [1]}, {}),
        (
            event("$identify", user_properties={"$set": {"a": 1}, "b": 1}),
            {"user_properties": [1]},
            {},
        ),
        (event("$groupidentify", groups="org"), {"groups": [1]}, {}),
    ],
)
def test_httpapi_refuses_invalid_events_whole(
    sb: Sandbox, bad: dict[str, Any], invalid: dict[str, list[int]], missing: dict[str, list[int]]
) -> None:
    response = send(sb, [event(), bad])
    assert response.status_code == 400
    assert response.json() == refused(invalid, missing)
    assert sb.store.events() == []


@pytest.mark.parametrize("junk", sorted(JUNK_IDS))
@pytest.mark.parametrize("spell", [str.upper, str.title, lambda s: f" {s} "])
def test_httpapi_refuses_every_junk_id_whatever_the_length_option(sb: Sandbox, junk: str, spell: Any) -> None:
    response = send(sb, [event(), event(user_id=spell(junk))], options={"min_id_length": 1})
    assert response.status_code == 400
    assert response.json()["events_with_invalid_fields"] == {"user_id": [1]}


def test_min_id_length_option_allows_short_ids(sb: Sandbox) -> None:
    assert send(sb, [event(user_id="abc")], options={"min_id_length": 3}).status_code == 200
    assert send(sb, [event(user_id="abc")]).status_code == 400


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"api_key": SANDBOX_API_KEY},
            {"error": "Request missing required field", "missing_field": "events"},
        ),
        (
            {"api_key": SANDBOX_API_KEY, "events": []},
            {"error": "Request missing required field", "missing_field": "events"},
        ),
        ({"api_key": SANDBOX_API_KEY, "events": [1]}, {"error": "Invalid event JSON"}),
        ("not json", {"error": "Invalid JSON request body"}),
        ("", {"error": "Missing request body"}),
    ],
)
def test_httpapi_malformed_requests(sb: Sandbox, body: Any, expected: dict[str, Any]) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    response = requests.post(f"{sb.url}/2/httpapi", data=data, timeout=5)
    assert response.status_code == 400
    assert response.json() == {"code": 400, **expected}


def test_identify_event_applies_operations(sb: Sandbox) -> None:
    ops = {"$set": {"a": 1}, "$add": {"n": 2}, "$append": {"tags": "x"}}
    assert send(sb, [event("$identify", user_properties=ops, device_id=DEVICE)]).status_code == 200
    assert sb.store.profile(device_id=DEVICE) == {
        "user_id": USER,
        "device_ids": [DEVICE],
        "user_properties": {"a": 1, "n": 2, "tags": ["x"]},
    }


@pytest.mark.parametrize(
    ("skip", "expected"), [(False, {"plan": "pro"}), (True, {}), (None, {"plan": "pro"})]
)
def test_event_user_properties_sync_unless_skipped(
    sb: Sandbox, skip: bool | None, expected: dict[str, Any]
) -> None:
    flag = {} if skip is None else {"$skip_user_properties_sync": skip}
    assert send(sb, [event(user_properties={"plan": "pro"}, **flag)]).status_code == 200
    assert props_of(sb) == expected


def test_groupidentify_event_updates_groups(sb: Sandbox) -> None:
    group_event = {
        "event_type": "$groupidentify",
        "groups": {"org": ["acme", "initech"]},
        "group_properties": {"$set": {"plan": "pro"}},
    }
    assert send(sb, [group_event]).status_code == 200
    assert [(g["group_value"], g["group_properties"]) for g in sb.store.groups()] == [
        ("acme", {"plan": "pro"}),
        ("initech", {"plan": "pro"}),
    ]


def big_event() -> dict[str, Any]:
    # 1.5 MB: over HTTP V2's 1 MB, well under Batch's 20 MB.
    return event(event_properties={f"p{i}": "x" * 1000 for i in range(1500)})


def test_batch_takes_bodies_that_httpapi_refuses(sb: Sandbox) -> None:
    refused_too_large = send(sb, [big_event()], "/2/httpapi")
    assert (refused_too_large.status_code, refused_too_large.json()) == (
        413,
        {"code": 413, "error": "Payload too large"},
    )
    assert send(sb, [big_event()], "/batch").status_code == 200
    assert len(sb.store.events()) == 1


@pytest.mark.parametrize("path", ["/2/httpapi", "/batch"])
def test_more_than_2000_events_is_413(sb: Sandbox, path: str) -> None:
    events = [event(insert_id=str(i)) for i in range(2001)]
    assert send(sb, events, path).status_code == 413
    assert send(sb, events[:2000], path).json()["events_ingested"] == 2000


# --- /api/2/events/list ---------------------------------------------------------------------


def basic(key: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_events_list_totals_and_activity(sb: Sandbox) -> None:
    send(
        sb,
        [event(), event(), event("Updated by sync"), event("$identify", user_properties={"a": 1})],
    )
    inactive = requests.post(
        f"{sb.url}/sandbox/inactive",
        json={"event_type": "Updated by sync", "inactive": True},
        headers=CONTROL_HEADERS,
        timeout=5,
    )
    assert inactive.status_code == 200
    response = requests.get(
        f"{sb.url}/api/2/events/list", headers=basic(SANDBOX_API_KEY, SANDBOX_SECRET_KEY), timeout=5
    )
    assert response.status_code == 200
    assert response.json() == {
        "data": [
            {
                "name": "Viewed",
                "totals": 2,
                "non_active": False,
                "deleted": False,
                "display": "Viewed",
            },
            {
                "name": "Updated by sync",
                "totals": 1,
                "non_active": True,
                "deleted": False,
                "display": "Updated by sync",
            },
        ]
    }
    sb.store.mark_inactive("Updated by sync", False)
    data = requests.get(
        f"{sb.url}/api/2/events/list", auth=(SANDBOX_API_KEY, SANDBOX_SECRET_KEY), timeout=5
    ).json()
    assert [entry["non_active"] for entry in data["data"]] == [False, False]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(SANDBOX_API_KEY, "wrong-secret"),
        basic("unknown-key", SANDBOX_SECRET_KEY),
        basic("key-without-secret", ""),
        basic("key-without-secret", "None"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Bearer {SANDBOX_SECRET_KEY}"},
    ],
)
def test_events_list_refuses_bad_credentials(tight: Sandbox, headers: dict[str, str]) -> None:
    response = requests.get(f"{tight.url}/api/2/events/list", headers=headers, timeout=5)
    assert (response.status_code, response.json()) == (401, {"error": "Invalid credentials"})


# --- inspection, routing, logging -----------------------------------------------------------


def test_inspection_endpoints(sb: Sandbox) -> None:
    identify(
        sb,
        [
            {"user_id": USER, "device_id": DEVICE, "user_properties": {"a": 1}},
            {"user_id": "user-00002"},
        ],
    )
    send(sb, [event()])
    group_identify(sb, {"group_type": "org", "group_value": "acme"})

    def get(path: str) -> Any:
        response = requests.get(sb.url + path, timeout=5)
        assert response.status_code == 200
        return response.json()

    assert get("/sandbox/profiles") == sb.store.profiles()
    assert get(f"/sandbox/profiles?device_id={DEVICE}") == [sb.store.profile(user_id=USER)]
    assert get("/sandbox/profiles?user_id=nobody") == []
    assert get("/sandbox/events") == sb.store.events()
    assert get("/sandbox/groups") == [{"group_type": "org", "group_value": "acme", "group_properties": {}}]
    assert get("/sandbox/requests") == sb.store.requests()
    assert requests.get(f"{sb.url}/health", timeout=5).text == "ok"


def test_reset_forgets_everything(sb: Sandbox) -> None:
    identify(sb, {"user_id": USER, "user_properties": {"a": 1}})
    send(sb, [event(insert_id="a")])
    group_identify(sb, {"group_type": "org", "group_value": "acme"})
    assert requests.post(f"{sb.url}/sandbox/reset", headers=CONTROL_HEADERS, timeout=5).status_code == 200
    assert sb.store.profiles() == sb.store.events() == sb.store.groups() == sb.store.requests() == []
    send(sb, [event(insert_id="a")])  # its insert_id is forgotten too
    assert len(sb.store.events()) == 1


def test_requests_log_counts_items_and_skips_inspection(sb: Sandbox) -> None:
    identify(sb, [{"user_id": USER}, {"user_id": "user-00002"}])
    send(sb, [event(), event(), event()])
    identify(sb, {"user_id": USER}, api_key="wrong-key-1")
    requests.get(f"{sb.url}/sandbox/profiles", timeout=5)
    requests.get(f"{sb.url}/health", timeout=5)
    requests.get(f"{sb.url}/api/2/events/list?api_key=in-query", timeout=5)
    requests.get(f"{sb.url}/nope", timeout=5)
    assert sb.store.requests() == [
        {"path": "/identify", "status": 200, "items": 2},
        {"path": "/2/httpapi", "status": 200, "items": 3},
        {"path": "/identify", "status": 400, "items": 0},
        {"path": "/api/2/events/list", "status": 401, "items": 0},
        {"path": "/nope", "status": 404, "items": 0},
    ]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("POST", "/2/httpapi/extra", 404),
        ("GET", "/identify", 405),
        ("PUT", "/2/httpapi", 405),
        ("DELETE", "/batch", 405),
        ("POST", "/health", 405),
        ("POST", "/api/2/events/list", 405),
    ],
)
def test_unknown_paths_and_wrong_methods(sb: Sandbox, method: str, path: str, status: int) -> None:
    response = requests.request(method, sb.url + path, data=b"x" * 10, timeout=5)
    assert response.status_code == status
    assert response.json()["code"] == status


def test_one_connection_carries_every_request(sb: Sandbox) -> None:
    connection = http.client.HTTPConnection(urlsplit(sb.url).netloc, timeout=5)
    sockets = []
    try:
        for n in range(3):
            form = {"api_key": SANDBOX_API_KEY, "identification": json.dumps({"user_id": f"user-{n:05}"})}
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            connection.request("POST", "/identify", urlencode(form), headers)
            response = connection.getresponse()
            assert (response.status, response.read(), response.will_close) == (200, b"success", False)
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert sockets[0] is sockets[1] is sockets[2]  # kept alive, never reopened
    assert [r["status"] for r in sb.store.requests()] == [200, 200, 200]


def test_a_chunked_body_is_not_read_and_its_connection_closes(sb: Sandbox) -> None:
    # Only Content-Length bodies are read; what follows a chunked one must not pass for a request.
    body = f"api_key={SANDBOX_API_KEY}&identification=%7B%7D".encode()
    response = requests.post(f"{sb.url}/identify", data=iter([body]), timeout=5)
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert (response.status_code, response.headers["Connection"]) == (400, "close")
    assert response.json()["missing_field"] == "api_key"
    assert sb.store.profiles() == []


def test_bad_inactive_request(sb: Sandbox) -> None:
    response = requests.post(
        f"{sb.url}/sandbox/inactive", json={"inactive": True}, headers=CONTROL_HEADERS, timeout=5
    )
    assert response.status_code == 400


def test_nothing_received_is_logged(sb: Sandbox, capfd: pytest.CaptureFixture[str]) -> None:
    requests.get(f"{sb.url}/identify?api_key=secret-in-query", timeout=5)
    identify(
        sb,
        {"user_id": USER, "user_properties": {"email": "someone@example.com"}},
        api_key="secret-in-body",
    )
    requests.get(f"{sb.url}/api/2/events/list", headers=basic(SANDBOX_API_KEY, "secret-in-header"), timeout=5)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_serve_prints_its_address_and_stops_cleanly_on_ctrl_c() -> None:
    code = "from amp_sync.sandbox import serve; serve('127.0.0.1', 0, {'k-12345': None})"
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("Amplitude sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert requests.get(f"{url}/health", timeout=5).text == "ok"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert (process.returncode, out, err) == (0, "", "")


# --- the daily quota per user and device (https://amplitude.com/docs/apis/analytics/batch-event-upload)


class Clock:
    """The sandbox's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def quota() -> Iterator[tuple[Sandbox, Clock]]:
    clock = Clock()
    with Sandbox(faults=Faults(daily_quota=2), clock=clock) as sb:
        yield sb, clock


@pytest.mark.parametrize(("path", "eps"), [("/2/httpapi", 30), ("/batch", 1000)])
def test_an_id_at_its_daily_quota_gets_amplitudes_429_and_nothing_applied(
    quota: tuple[Sandbox, Clock], path: str, eps: int
) -> None:
    sb, _ = quota
    first = [event(insert_id="e1", device_id=DEVICE), event("Clicked", insert_id="e2")]
    assert send(sb, first, path).status_code == 200
    other = "user-00002"
    second = [
        event(user_id=other, insert_id="e3", user_properties={"plan": "pro"}),
        event(insert_id="e4"),
        {"event_type": "Opened", "device_id": DEVICE, "insert_id": "e5"},
    ]
    response = send(sb, second, path)
    assert response.status_code == 429
    assert response.json() == {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": eps,
        "throttled_devices": {},
        "throttled_users": {},
        "exceeded_daily_quota_users": {USER: 2},
        "exceeded_daily_quota_devices": {},
        "throttled_events": [1],
    }
    assert [e["insert_id"] for e in sb.store.events()] == ["e1", "e2"]  # nothing of it applied
    assert sb.store.profile(user_id=other) is None
    assert sb.store.requests()[-1] == {"path": path, "status": 429, "items": 3, "fault": "daily_quota"}
    # The device reached its quota only with the first request's event plus one more.
    assert send(sb, [{"event_type": "Opened", "device_id": DEVICE}], path).status_code == 200
    refused = send(sb, [event(user_id=other), {"event_type": "Opened", "device_id": DEVICE}], path).json()
    assert (refused["exceeded_daily_quota_devices"], refused["throttled_events"]) == ({DEVICE: 2}, [1])


def test_the_daily_quota_rolls_over_24_hours_in_hourly_steps(quota: tuple[Sandbox, Clock]) -> None:
    sb, clock = quota
    start = clock.now // 3600 * 3600 + 1800  # halfway into an hour
    clock.now = start
    assert send(sb, [event()]).status_code == 200
    clock.now = start + 3600  # the next hour
    assert send(sb, [event()]).status_code == 200
    assert send(sb, [event()]).status_code == 429
    clock.now = start + 23 * 3600 + 1799  # the first event's hour is in the window till its end...
    assert send(sb, [event()]).status_code == 429
    clock.now = start + 23 * 3600 + 1800  # ...and leaves it as the 25th hour begins
    assert send(sb, [event()]).status_code == 200
    assert send(sb, [event()], "/batch").status_code == 429  # one quota for both endpoints
    assert len(sb.store.events()) == 3


def test_the_daily_quota_counts_only_events_and_only_once_set(quota: tuple[Sandbox, Clock]) -> None:
    sb, _ = quota
    for _ in range(3):  # Identify calls are not events
        assert identify(sb, {"user_id": USER, "user_properties": {"n": 1}}).status_code == 200
    assert send(sb, [event(), event()]).status_code == 200  # a request may take an id to its quota
    assert send(sb, [event()]).status_code == 429
    sb.store.reset()  # forgets the counts with everything else
    assert send(sb, [event(), event(), event()]).status_code == 200
    with Sandbox() as off:  # off by default, as Amplitude enforces it only on ids flagged as spam
        assert all(send(off, [event()] * 50).status_code == 200 for _ in range(3))


def test_the_throttle_can_carry_a_retry_after_header() -> None:
    with Sandbox(faults=Faults(throttle=1.0, retry_after=7)) as sb:
        response = send(sb, [event()])
        assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
        response = identify(sb, {"user_id": USER})
        assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    with Sandbox(faults=Faults(throttle=1.0)) as sb:
        assert "Retry-After" not in send(sb, [event()]).headers


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"daily_quota": 0}, "daily_quota must be a whole number of events, at least 1, not 0"),
        ({"daily_quota": 2.5}, "daily_quota must be a whole number of events"),
        ({"retry_after": -1}, "retry_after must be a whole number of seconds from 0 to 3600, not -1"),
        ({"retry_after": True}, "retry_after must be a whole number of seconds"),
    ],
)
def test_quota_and_retry_after_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(**settings)


def test_quota_and_retry_after_read_in_words_and_round_trip() -> None:
    faults = Faults(throttle=0.1, retry_after=7, daily_quota=500_000)
    assert faults.describe() == (
        "429 throttled 10% (Retry-After 7 s), 429 past 500,000 events per user or device in 24 h"
    )
    assert Faults.from_json(json.loads(json.dumps(faults.to_json()))) == faults
    assert Faults(daily_quota=5).active and not Faults(retry_after=5).active
    assert parse_faults({"daily_quota": "5", "retry_after": "7"}) == Faults(daily_quota=5, retry_after=7)


def test_the_cli_flag_sets_the_daily_quota(capsys: pytest.CaptureFixture[str]) -> None:
    from amp_sync.cli import _parser, main

    args = _parser().parse_args(["sandbox", "--daily-quota", "500000"])
    given = {field: getattr(args, f"fault_{field}") for field in args.fault_flags}
    texts = {field: text for field, text in given.items() if text is not None}
    assert parse_faults(texts, names=args.fault_flags) == Faults(daily_quota=500_000)
    assert main(["sandbox", "--port", "0", "--daily-quota", "0"]) == 2
    assert "--daily-quota must be a whole number of events, at least 1" in capsys.readouterr().err

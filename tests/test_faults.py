"""The sandbox fails on purpose as Amplitude and networks do; a sync under those failures loses nothing."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from streamlit.testing.v1 import AppTest

from amp_sync.amplitude import Outcome, RetryPolicy, classify
from amp_sync.cli import main
from amp_sync.config import Destination, Region, load_config
from amp_sync.errors import DestinationError
from amp_sync.runner import RunOptions, run
from amp_sync.sandbox import (
    CONTROL_HEADERS,
    INGESTION_PATHS,
    SANDBOX_API_KEY,
    SANDBOX_SECRET_KEY,
    Fault,
    Faults,
    Sandbox,
    get_faults,
    parse_faults,
    set_faults,
)
from amp_sync.secret import Secret
from amp_sync.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
USERS = ["user-00001", "user-00002", "user-00003"]


def identify(sb: Sandbox, users: list[str] = USERS, **props: Any) -> requests.Response:
    items = [{"user_id": u, "user_properties": {"$set": props or {"plan": "pro"}}} for u in users]
    form = {"api_key": SANDBOX_API_KEY, "identification": json.dumps(items)}
    return requests.post(f"{sb.url}/identify", data=form, timeout=10)


def ingest(sb: Sandbox, path: str) -> requests.Response:
    """One valid request to an ingestion endpoint, for `user-00001`."""
    if path in ("/identify", "/groupidentify"):
        item = (
            {"user_id": USERS[0], "user_properties": {"plan": "pro"}}
            if path == "/identify"
            else {"group_type": "org", "group_value": "acme", "group_properties": {"tier": "gold"}}
        )
        form = {"api_key": SANDBOX_API_KEY, "identification": json.dumps([item])}
        return requests.post(sb.url + path, data=form, timeout=10)
    event = {"user_id": USERS[0], "event_type": "signed_in", "user_properties": {"plan": "pro"}}
    return requests.post(sb.url + path, json={"api_key": SANDBOX_API_KEY, "events": [event]}, timeout=10)


def faults_seen(sb: Sandbox) -> Counter[str]:
    return Counter(r["fault"] for r in sb.store.requests() if "fault" in r)


# --- Faults, the value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"throttle": 1.5}, "throttle must be a probability from 0 to 1, not 1.5"),
        ({"drop": -0.1}, "drop must be a probability from 0 to 1"),
        ({"slow": float("nan")}, "slow must be a probability"),
        ({"error_500": True}, "error_500 must be a probability"),
        ({"error_503": "0.1"}, "error_503 must be a probability"),
        ({"throttle": 0.6, "ingest_then_500": 0.5}, "add up to 1.1"),
        ({"slow_seconds": -1}, "slow_seconds must be from 0 to 3600 seconds"),
        ({"slow_seconds": float("inf")}, "slow_seconds must be from 0"),
        ({"max_body_bytes": 0}, "max_body_bytes must be a whole number of bytes, at least 1"),
        ({"max_body_bytes": 10.5}, "max_body_bytes must be a whole number"),
        ({"seed": "x"}, "seed must be a whole number"),
    ],
)
def test_invalid_settings_are_refused_in_words(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Faults(**settings)


def test_the_exclusive_chances_may_add_up_to_exactly_one_and_slow_is_apart() -> None:
    faults = Faults(throttle=0.1, error_500=0.2, error_503=0.3, ingest_then_500=0.2, drop=0.2, slow=1.0)
    assert faults.active and not Faults(slow_seconds=5, seed=3).active


@pytest.mark.parametrize(
    ("roll", "outcome"),
    [
        (0.0, Fault.THROTTLE),
        (0.099, Fault.THROTTLE),
        (0.1, Fault.ERROR_500),
        (0.25, Fault.ERROR_503),
        (0.35, Fault.INGEST_THEN_500),
        (0.45, Fault.DROP),
        (0.5, None),
        (0.999, None),
    ],
)
def test_one_roll_picks_at_most_one_outcome(roll: float, outcome: Fault | None) -> None:
    faults = Faults(throttle=0.1, error_500=0.1, error_503=0.1, ingest_then_500=0.1, drop=0.1)
    assert faults.outcome(roll) is outcome


def test_settings_round_trip_through_json_and_read_in_words() -> None:
    faults = Faults(throttle=0.1, drop=0.05, slow=0.2, slow_seconds=2, max_body_bytes=50_000, seed=7)
    assert Faults.from_json(json.loads(json.dumps(faults.to_json()))) == faults
    assert faults.describe() == (
        "429 throttled 10%, dropped connection 5%, slow 20% (2 s), 413 above 50,000 bytes"
    )
    assert Faults().describe() == "no failures"
    with pytest.raises(ValueError, match="unknown settings fail_500"):
        Faults.from_json({"fail_500": 0.1})


def test_settings_written_as_text_are_parsed_and_named_as_the_caller_calls_them() -> None:
    assert parse_faults({"drop": "0.25", "seed": "7"}) == Faults(drop=0.25, seed=7)
    with pytest.raises(ValueError, match=r"^--seed expects a whole number, not 'drop'$"):
        parse_faults({"seed": "drop"}, names={"seed": "--seed", "drop": "--fail-drop"})
    with pytest.raises(ValueError, match=r"^--fail-drop must be a probability from 0 to 1, not 2\.0$"):
        parse_faults({"drop": "2"}, names={"drop": "--fail-drop"})


# --- each fault, as Amplitude shows it ----------------------------------------------------------


def test_throttle_answers_429_with_amplitudes_body_and_applies_nothing(sb: Sandbox) -> None:
    sb.set_faults(Faults(throttle=1.0))
    response = identify(sb)
    assert response.status_code == 429
    assert response.json() == {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {},
        "throttled_users": dict.fromkeys(USERS, 31),
        "throttled_events": [0, 1, 2],
    }
    assert sb.store.profiles() == []
    answer = classify(response.status_code, response.text)
    assert (answer.outcome, answer.throttled) == (Outcome.RETRY, True)
    assert sb.store.requests() == [{"path": "/identify", "status": 429, "items": 3, "fault": "throttle"}]


def test_throttle_names_devices_of_http_v2_events(sb: Sandbox) -> None:
    sb.set_faults(Faults(throttle=1.0))
    events = [
        {"device_id": "device-0001", "event_type": "a"},
        {"user_id": USERS[0], "device_id": "device-0002", "event_type": "b"},
    ]
    body = requests.post(f"{sb.url}/2/httpapi", json={"api_key": SANDBOX_API_KEY, "events": events}).json()
    assert body["throttled_devices"] == {"device-0001": 31, "device-0002": 31}
    assert (body["throttled_users"], body["throttled_events"]) == ({USERS[0]: 31}, [0, 1])
    assert sb.store.events() == []


@pytest.mark.parametrize(("fault", "status"), [("error_500", 500), ("error_503", 503)])
@pytest.mark.parametrize("path", sorted(INGESTION_PATHS))
def test_server_errors_reach_every_ingestion_endpoint_and_apply_nothing(
    sb: Sandbox, path: str, fault: str, status: int
) -> None:
    sb.set_faults(Faults(**{fault: 1.0}))
    response = ingest(sb, path)
    assert response.status_code == status and response.json()["code"] == status
    assert sb.store.profiles() == sb.store.events() == sb.store.groups() == []
    assert classify(response.status_code, response.text).outcome is Outcome.RETRY
    assert sb.store.requests() == [{"path": path, "status": status, "items": 0, "fault": fault}]


@pytest.mark.parametrize("path", sorted(INGESTION_PATHS))
def test_ingest_then_500_leaves_the_request_applied(sb: Sandbox, path: str) -> None:
    sb.set_faults(Faults(ingest_then_500=1.0))
    response = ingest(sb, path)
    assert response.status_code == 500
    if path == "/groupidentify":
        assert sb.store.groups()[0]["group_properties"] == {"tier": "gold"}
    else:
        profile = sb.store.profile(user_id=USERS[0])
        assert profile is not None and profile["user_properties"] == {"plan": "pro"}
    assert sb.store.requests() == [{"path": path, "status": 500, "items": 1, "fault": "ingest_then_500"}]


def test_ingest_then_500_of_a_refused_request_still_applies_nothing(sb: Sandbox) -> None:
    sb.set_faults(Faults(ingest_then_500=1.0))
    assert identify(sb, ["null"]).status_code == 500  # a placeholder id: Amplitude would say 400
    assert sb.store.profiles() == []


def test_a_dropped_connection_raises_in_requests_and_applies_nothing(sb: Sandbox) -> None:
    sb.set_faults(Faults(drop=1.0))
    with pytest.raises(requests.ConnectionError):
        identify(sb)
    assert sb.store.profiles() == []
    assert sb.store.requests() == [{"path": "/identify", "status": None, "items": 0, "fault": "drop"}]


def test_max_body_bytes_answers_413_above_the_size_only(sb: Sandbox) -> None:
    sb.set_faults(Faults(max_body_bytes=400))
    small, large = identify(sb, USERS[:1]), identify(sb, [f"user-{i:05d}" for i in range(20)])
    assert small.status_code == 200
    assert (large.status_code, large.json()) == (413, {"code": 413, "error": "Payload too large"})
    assert classify(large.status_code, large.text).outcome is Outcome.SPLIT
    assert [p["user_id"] for p in sb.store.profiles()] == USERS[:1]
    assert [r.get("fault") for r in sb.store.requests()] == [None, "max_body_bytes"]


def test_max_body_bytes_may_raise_the_usual_limit_too(sb: Sandbox) -> None:
    many = [f"user-{i:05d}" for i in range(950)]
    assert identify(sb, many, note="x" * 1_000).status_code == 413  # over the usual 1 MB
    sb.set_faults(Faults(max_body_bytes=5_000_000))
    assert identify(sb, many, note="x" * 1_000).status_code == 200


def test_a_slow_answer_takes_at_least_slow_seconds(sb: Sandbox) -> None:
    sb.set_faults(Faults(slow=1.0, slow_seconds=0.3))
    started = time.monotonic()
    response = identify(sb)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert sb.store.requests() == [{"path": "/identify", "status": 200, "items": 3, "slow_seconds": 0.3}]


def test_slow_combines_with_an_outcome(sb: Sandbox) -> None:
    sb.set_faults(Faults(error_503=1.0, slow=1.0, slow_seconds=0.1))
    assert identify(sb).status_code == 503
    assert sb.store.requests() == [
        {"path": "/identify", "status": 503, "items": 0, "fault": "error_503", "slow_seconds": 0.1}
    ]


def test_inspection_and_key_check_endpoints_never_fail(sb: Sandbox) -> None:
    sb.set_faults(Faults(drop=1.0, slow=1.0, slow_seconds=2, max_body_bytes=1))
    auth = (SANDBOX_API_KEY, SANDBOX_SECRET_KEY)
    started = time.monotonic()
    assert requests.post(f"{sb.url}/sandbox/reset", headers=CONTROL_HEADERS, timeout=5).status_code == 200
    for path in ("/health", "/sandbox/profiles", "/sandbox/events", "/sandbox/groups", "/sandbox/requests"):
        assert requests.get(sb.url + path, timeout=5).status_code == 200, path
    assert requests.get(f"{sb.url}/api/2/events/list", auth=auth, timeout=5).json() == {"data": []}
    assert requests.get(f"{sb.url}/sandbox/faults", timeout=5).json()["drop"] == 1.0
    assert requests.get(f"{sb.url}/identify", timeout=5).status_code == 405  # not an ingestion call
    assert time.monotonic() - started < 2  # none was slowed
    assert sb.store.requests() == [  # no "fault", no "slow_seconds"
        {"path": "/api/2/events/list", "status": 200, "items": 0},
        {"path": "/identify", "status": 405, "items": 0},
    ]


def test_the_same_seed_fails_the_same_requests(sb: Sandbox) -> None:
    def statuses(seed: int) -> list[int | None]:
        sb.store.reset()
        sb.set_faults(Faults(throttle=0.3, error_500=0.3, seed=seed))
        for _ in range(30):
            identify(sb)
        return [r["status"] for r in sb.store.requests()]

    first = statuses(11)
    assert statuses(11) == first and {200, 429, 500} <= set(first)
    assert statuses(12) != first


def test_faults_given_at_start_and_changed_while_serving() -> None:
    with Sandbox(faults=Faults(error_500=1.0)) as sb:
        assert sb.faults == Faults(error_500=1.0)
        assert identify(sb).status_code == 500
        sb.set_faults(Faults())
        assert identify(sb).status_code == 200


# --- faults over HTTP ---------------------------------------------------------------------------


def test_get_and_set_faults_over_http(sb: Sandbox) -> None:
    assert get_faults(sb.url) == Faults()
    wanted = Faults(throttle=0.25, error_503=0.5, slow=0.1, slow_seconds=0.5, max_body_bytes=9_999, seed=4)
    assert set_faults(sb.url + "/", wanted) == wanted
    assert get_faults(sb.url) == sb.faults == wanted
    assert set_faults(sb.url, Faults()) == sb.faults == Faults()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"throttle": 0.7, "drop": 0.7}, "add up to 1.4"),
        ({"throttle": "often"}, "throttle must be a probability"),
        ({"fail_429": 0.1}, "unknown settings fail_429"),
        ([0.1], "send a JSON object"),
    ],
)
def test_bad_settings_over_http_get_a_400_and_change_nothing(sb: Sandbox, body: Any, message: str) -> None:
    sb.set_faults(Faults(drop=0.5))
    response = requests.post(f"{sb.url}/sandbox/faults", json=body, headers=CONTROL_HEADERS, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid fault settings: ")
    assert message in response.json()["error"]
    assert sb.faults == Faults(drop=0.5)


def test_a_sandbox_that_is_not_there_is_said_in_words() -> None:
    with pytest.raises(DestinationError, match=r"could not reach the sandbox at http://127\.0\.0\.1:9"):
        get_faults("http://127.0.0.1:9", timeout=2)
    with pytest.raises(DestinationError, match="`amp-sync sandbox`"):
        set_faults("http://127.0.0.1:9", Faults(drop=0.1), timeout=2)


# --- the CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-429", "often"], "--fail-429 expects a number, not 'often'"),
        (["--fail-500", "1.5"], "--fail-500 must be a probability from 0 to 1, not 1.5"),
        (["--fail-503", "-0.1"], "--fail-503 must be a probability from 0 to 1, not -0.1"),
        (
            ["--fail-ingest-500", "0.6", "--fail-drop", "0.6"],
            "--fail-ingest-500 and --fail-drop add up to 1.2",
        ),
        (["--slow", "2"], "--slow must be a probability"),
        (["--slow-seconds", "-3"], "--slow-seconds must be from 0 to 3600 seconds, not -3.0"),
        (["--max-body-bytes", "0"], "--max-body-bytes must be a whole number of bytes, at least 1"),
        (["--max-body-bytes", "1e6"], "--max-body-bytes expects a whole number, not '1e6'"),
        (["--seed", "x"], "--seed expects a whole number, not 'x'"),
    ],
)
def test_cli_refuses_bad_fault_flags_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "--port", "0", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("amp-sync: ") and message in err


def test_cli_serves_the_faults_it_was_given() -> None:
    args = ["--fail-503", "1", "--slow", "0.5", "--slow-seconds", "0.01", "--max-body-bytes", "5000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "amp_sync", "sandbox", "--port", "0", *args, "--seed", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert proc.stdout.readline().strip() == (
            "Simulating Amplitude failures: 503 100%, slow 50% (0.01 s), 413 above 5,000 bytes"
        )
        assert get_faults(url) == Faults(
            error_503=1.0, slow=0.5, slow_seconds=0.01, max_body_bytes=5_000, seed=3
        )
        form = {"api_key": SANDBOX_API_KEY, "identification": json.dumps({"user_id": USERS[0]})}
        assert requests.post(f"{url}/identify", data=form, timeout=5).status_code == 503
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the Home page ------------------------------------------------------------------------------


def open_home() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    return at


def fault_panel(at: AppTest) -> Any:
    return next(e for e in at.expander if e.label == "Simulate Amplitude failures")


def test_demo_mode_offers_to_simulate_failures_and_applies_them(app_env) -> None:
    at = open_home()
    panel = fault_panel(at)
    assert "**Now:** no failures" in [m.value for m in panel.markdown]
    at.number_input(key="faults_throttle").set_value(0.2)
    at.number_input(key="faults_drop").set_value(0.1)
    at.number_input(key="faults_slow").set_value(0.5)
    at.number_input(key="faults_slow_seconds").set_value(2.0)
    at.button(key="faults_apply").click().run()
    assert not at.exception
    wanted = Faults(throttle=0.2, drop=0.1, slow=0.5, slow_seconds=2.0)
    assert app_env.sandbox.faults == wanted
    assert at.success[0].value == f"Applied: {wanted.describe()}."
    assert f"**Now:** {wanted.describe()}" in [m.value for m in fault_panel(at).markdown]

    at.button(key="faults_reset").click().run()
    assert app_env.sandbox.faults == Faults()
    assert at.number_input(key="faults_throttle").value == 0.0
    assert at.success[0].value == "Applied: no failures."


def test_settings_the_panel_has_no_input_for_are_kept_when_it_applies(app_env) -> None:
    app_env.sandbox.set_faults(Faults(daily_quota=50, retry_after=3, seed=7))
    at = open_home()
    at.number_input(key="faults_error_503").set_value(0.1)
    at.button(key="faults_apply").click().run()
    assert app_env.sandbox.faults == Faults(error_503=0.1, daily_quota=50, retry_after=3, seed=7)


def test_chances_over_one_are_not_applied_and_the_page_says_why(app_env) -> None:
    app_env.sandbox.set_faults(Faults(error_500=0.3))
    at = open_home()
    assert at.number_input(key="faults_error_500").value == 0.3  # the inputs start from the sandbox
    at.number_input(key="faults_throttle").set_value(0.8)
    at.button(key="faults_apply").click().run()
    assert app_env.sandbox.faults == Faults(error_500=0.3)
    error = at.error[0].value
    assert error.startswith("Not applied: “429 Too many requests”, “500 Internal server error”")
    assert "add up to 1.1" in error and "fails in one way at most" in error


def test_the_failure_panel_says_when_the_sandbox_cannot_be_reached(app_env, monkeypatch) -> None:
    monkeypatch.setenv("AMP_SYNC_SANDBOX_URL", "http://127.0.0.1:9")
    at = open_home()
    assert fault_panel(at).label
    assert any("could not reach the sandbox at http://127.0.0.1:9" in e.value for e in at.error)
    assert not at.number_input


def test_no_failure_panel_outside_demo_mode(app_env) -> None:
    Workspace(app_env.home).save(Destination("Prod", Secret("prod-api-key-0000"), None, Region.EU))
    at = open_home()
    assert not [e for e in at.expander if e.label == "Simulate Amplitude failures"]
    assert not at.number_input


# --- Guarantee 1 --------------------------------------------------------------------------------

ROWS = 20_000
PLANS = ["free", "starter", "pro", "enterprise"]
COUNTRIES = ["FR", "DE", "US", "JP", "BR", "Ελλάδα"]


def model_rows() -> list[tuple[Any, ...]]:
    """user_id, plan, ltv, country, seats, signed_up: some NULLs, floats, non-ASCII text."""
    return [
        (
            f"user-{i:06d}",
            PLANS[i % 4],
            round(i * 1.37, 2),
            None if i % 11 == 0 else COUNTRIES[i % 6],
            i % 50,
            f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
        )
        for i in range(ROWS)
    ]


def expected_profiles(rows: list[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    names = ("plan", "lifetime_value", "country", "seats", "signed_up")
    return {row[0]: {n: v for n, v in zip(names, row[1:], strict=True) if v is not None} for row in rows}


def test_guarantee_20k_rows_under_faults_arrive_exactly(tmp_path: Path, write_sync) -> None:
    rows = model_rows()
    db = sqlite3.connect(tmp_path / "w.db")
    db.execute(
        "create table users (user_id text, plan text, ltv real, country text, seats int, signed_up text)"
    )
    db.executemany("insert into users values (?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    faults = Faults(error_500=0.10, error_503=0.05, throttle=0.10, drop=0.05, ingest_then_500=0.05, seed=20)
    # At most 100 identifications per request (the client sends up to 1,000): every batch is split
    # on 413 down to ~62 rows, so the sandbox sees about a thousand requests and each fault often.
    with Sandbox(faults=faults, max_identifications=100) as sandbox:
        path = write_sync(
            f"sqlite:///{tmp_path / 'w.db'}",
            sandbox.url,
            sql="select user_id, plan, ltv, country, seats, signed_up from users",
            mappings=(
                ("plan", "plan", "$set"),
                ("ltv", "lifetime_value", "$set"),
                ("country", "country", "$set"),
                ("seats", "seats", "$set"),
                ("signed_up", "signed_up", "$set"),
            ),
        )
        config, home = load_config(path), tmp_path / "home"
        policy = RetryPolicy(attempts=25, base_delay=0, max_delay=0, throttle_delay=0)
        options = RunOptions(concurrency=4, policy=policy, sleep=lambda s: None)

        report = run(config, home, options)

        assert (report.failed, report.sent, report.error) == (0, ROWS, None)
        profiles = sandbox.store.profiles()
        assert len(profiles) == ROWS and all(p["device_ids"] == [] for p in profiles)
        assert {p["user_id"]: p["user_properties"] for p in profiles} == expected_profiles(rows)

        log = sandbox.store.requests()
        seen = faults_seen(sandbox)
        assert set(seen) == {"throttle", "error_500", "error_503", "ingest_then_500", "drop"}
        assert min(seen.values()) >= 10 and seen.total() >= 150
        assert sum(1 for r in log if r["status"] == 413) >= 200  # the splits happened too
        assert report.requests == len(log)  # every request the client made reached the sandbox

        second = run(config, home, options)
        assert (second.sent, second.failed, second.requests) == (0, 0, 0)
        assert second.plan.unchanged == ROWS
        assert sandbox.store.requests() == log

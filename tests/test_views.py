"""What the Preview and History pages show: diff rows, filters, confirmation, CSV, progress words."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime

import pytest

from amp_sync import views
from amp_sync.config import (
    Destination,
    Mapping_,
    Model,
    Region,
    Source,
    Sync,
    SyncConfig,
    SyncObject,
    SyncOptions,
)
from amp_sync.plan import SAMPLE_LIMIT, FieldChange, Plan, Rejection
from amp_sync.runner import Progress, Report
from amp_sync.secret import Secret
from amp_sync.state import DestinationRef, KnownDestination, RunRecord


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, "(unset)"),
        ("Starter", "Starter"),
        ("", ""),
        (29, "29"),
        (1.5, "1.5"),
        (True, "true"),
        (["a", "é"], '["a", "é"]'),
        ({"k": None}, '{"k": null}'),
    ],
)
def test_values_as_cells(value: object, cell: str) -> None:
    assert views.shown(value) == cell


def test_change_rows_mark_first_sync_and_unset() -> None:
    sample = [
        FieldChange("u_00001", "plan", "$set", None, "Pro", True),
        FieldChange("u_00002", "plan", "$set", "Pro", None, False),
        FieldChange("u_00002", "ltv", "$add", 10, 25, False),
    ]
    rows = [tuple(row.values()) for row in views.change_rows(sample)]
    assert rows == [
        ("u_00001", "plan", "$set", "(new)", "Pro"),
        ("u_00002", "plan", "$set", "Pro", "(unset)"),
        ("u_00002", "ltv", "$add", "10", "25"),
    ]
    assert list(views.change_rows(sample)[0]) == ["Key", "Property", "Operation", "Last synced", "New value"]


ROWS = [
    {"Key": "u_000001", "Property": "plan"},
    {"Key": "u_000002", "Property": "Lifetime_Value"},
    {"Key": "dev-PLAN-9", "Property": "country"},
]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("", ["u_000001", "u_000002", "dev-PLAN-9"]),
        ("   ", ["u_000001", "u_000002", "dev-PLAN-9"]),
        ("plan", ["u_000001", "dev-PLAN-9"]),  # property or key, any case
        ("LIFETIME", ["u_000002"]),
        (" u_000002 ", ["u_000002"]),
        ("nothing", []),
    ],
)
def test_filter_by_key_or_property(text: str, keys: list[str]) -> None:
    assert [r["Key"] for r in views.filter_rows(ROWS, text)] == keys


def test_filter_keys_falls_back_to_every_key() -> None:
    keys = ["u_000001", "u_000002", "u_000010"]
    assert views.filter_keys(keys, "0001") == ["u_000001", "u_000010"]
    assert views.filter_keys(keys, "plan") == keys
    assert views.filter_keys(keys, "") == keys


def test_sample_truncated_at_the_limit() -> None:
    change = FieldChange("u_00001", "plan", "$set", None, "Pro", True)
    assert not views.sample_truncated(Plan(sample=[change] * (SAMPLE_LIMIT - 1)))
    assert views.sample_truncated(Plan(sample=[change] * SAMPLE_LIMIT))


def test_property_rows_most_users_first() -> None:
    rows = views.property_rows(Counter({"plan": 3, "ltv": 10, "country": 1}))
    assert rows == [
        {"Property": "ltv", "Users": 10},
        {"Property": "plan", "Users": 3},
        {"Property": "country", "Users": 1},
    ]


def test_payload_text_is_the_identification_as_json() -> None:
    item = {"user_id": "u_00001", "user_properties": {"$set": {"name": "Zoë 🚀"}}}
    text = views.payload_text(item)
    assert '"name": "Zoë 🚀"' in text
    assert text.startswith('{\n  "user_id": "u_00001"')


DIRTY = [
    Rejection("", "missing user id"),
    Rejection("abc", "user id 'abc' is shorter than 5 characters"),
    Rejection('we,"ird', "a reason, with a comma"),
]


def test_rejection_rows_show_a_missing_key() -> None:
    assert views.rejection_rows(DIRTY)[0] == {"Key": "(missing)", "Reason": "missing user id"}
    assert views.rejection_rows([("abc", "short")]) == [{"Key": "abc", "Reason": "short"}]


def test_rejections_csv_round_trips() -> None:
    text = views.rejections_csv(DIRTY)
    assert list(csv.reader(io.StringIO(text))) == [
        ["key", "reason"],
        ["", "missing user id"],
        ["abc", "user id 'abc' is shorter than 5 characters"],
        ['we,"ird', "a reason, with a comma"],
    ]
    assert views.rejections_csv([]) == "key,reason\n"


@pytest.mark.parametrize(
    ("to_send", "typed", "allowed"),
    [
        (0, "", True),
        (1_000, "", True),  # at the threshold: no confirmation
        (1_001, "", False),
        (1_001, "ltv", False),
        (1_001, "LTV-SYNC", False),  # exact name only
        (1_001, "ltv-sync", True),
        (1_001, "  ltv-sync ", True),
    ],
)
def test_typed_confirmation_above_the_threshold(to_send: int, typed: str, allowed: bool) -> None:
    assert views.needs_confirmation(to_send) is (to_send > views.CONFIRM_ABOVE)
    assert views.can_start(to_send, typed, "ltv-sync") is allowed


def test_threshold_is_configurable() -> None:
    assert views.can_start(50, "", "s", threshold=10) is False
    assert views.can_start(50, "s", "s", threshold=10) is True


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "—"),
        (0.04, "0.0 s"),
        (2.46, "2.5 s"),
        (12.4, "12 s"),
        (59.6, "1 min 00 s"),
        (185, "3 min 05 s"),
        (3720, "1 h 02 min"),
    ],
)
def test_duration_in_words(seconds: float | None, words: str) -> None:
    assert views.duration(seconds) == words


def test_time_left_from_the_rate_so_far() -> None:
    assert views.time_left(0, 100, 5.0) is None
    assert views.time_left(10, 100, 0.0) is None
    assert views.time_left(25, 100, 5.0) == pytest.approx(15.0)
    assert views.time_left(100, 100, 5.0) == 0.0


def test_progress_text_estimates_from_the_sending_phase_only() -> None:
    words = views.ProgressText()
    assert words.update(Progress("reading", 5_000, elapsed=10.0)) == (
        0.0,
        "Reading the model… 5,000 rows read",
    )
    words.update(Progress("reading", 12_000, elapsed=20.0))
    fraction, text = words.update(Progress("sending", 12_000, 4_000, 1_000, 0, 1, elapsed=22.0))
    assert fraction == 0.25
    # 1,000 rows in the 2 s since reading ended: 3,000 more take 6 s (not 3 × 22 s).
    assert text == "Sent 1,000 of 4,000 rows · 1 batches · about 6.0 s left"
    assert words.update(Progress("sending", 12_000, 4_000, 4_000, 0, 4, elapsed=26.0)) == (
        1.0,
        "Sent 4,000 of 4,000 rows · 4 batches",
    )
    assert words.update(Progress("sending", 12_000, 0, 0, 0, 0, elapsed=23.0))[0] == 1.0


def test_result_summary_says_failed_rows_go_out_next_run() -> None:
    plan = Plan(new=10)
    level, text = views.result_summary(Report("run", plan, sent=7, failed=3, seconds=1.0))
    assert level == "warning"
    assert "3 rows were not delivered" in text and "next run" in text
    assert views.result_summary(Report("run", plan, sent=10, seconds=1.0)) == (
        "success",
        "Sent 10 rows in 1.0 s. Amplitude acknowledged every new and changed value.",
    )
    assert views.result_summary(Report("run", Plan(unchanged=5)))[1].startswith("Nothing to send")


def test_failure_rows_most_rows_first() -> None:
    rows = views.failure_rows({"timeout": 2, "server error 500": 40})
    assert rows == [{"Reason": "server error 500", "Rows": 40}, {"Reason": "timeout", "Rows": 2}]


def _record(run_id: int, started: float, finished: float | None, **counts: int) -> RunRecord:
    status = "running" if finished is None else "ok"
    return RunRecord(run_id, "run", started, finished, status, counts, "")


def test_history_rows_and_chart() -> None:
    early = datetime(2026, 11, 2, 9, 30).timestamp()
    late = datetime(2026, 11, 3, 18, 5, 7).timestamp()
    runs = views.newest_first(
        {
            "a": [_record(1, early, early + 75, new=10, sent=9, failed=1, rejected=2)],
            "b": [_record(4, late, None)],
        }
    )
    rows = views.history_rows(runs)
    assert [(r["Sync"], r["Run"]) for r in rows] == [("b", 4), ("a", 1)]
    assert rows[0]["Started"] == "2026-11-03 18:05:07"
    assert rows[0]["Duration"] == "running"
    assert rows[1] == {
        "Sync": "a", "Destination": "", "Run": 1, "Kind": "run", "Started": "2026-11-02 09:30:00",
        "Duration": "1 min 15 s",
        "New": 10, "Changed": 0, "Unchanged": 0, "Removed": 0, "Rejected": 2, "Sent": 9, "Failed": 1,
        "Status": "ok", "Message": "",
    }  # fmt: skip
    assert views.chart_rows(runs) == [
        {"Started": "2026-11-02 09:30:00", "sent": 9, "failed": 1, "rejected": 2},
        {"Started": "2026-11-03 18:05:07", "sent": 0, "failed": 0, "rejected": 0},
    ]
    assert views.run_label("a", runs[1][1]) == "a · run 1 · 2026-11-02 09:30:00 · 2 rejected"


def _config(obj: SyncObject, options: SyncOptions) -> SyncConfig:
    sync = Sync("s", obj, "update_or_create", "user_id", (Mapping_("plan", "plan"),), None, options)
    destination = Destination("D", Secret("k" * 32), None, Region.US, None)
    return SyncConfig(Source(Secret("sqlite://")), destination, Model("m", "select 1"), sync)


@pytest.mark.parametrize(
    ("obj", "noun"),
    [(SyncObject.USER, "users"), (SyncObject.DEVICE, "devices"), (SyncObject.GROUP, "groups"),
     (SyncObject.EVENT, "events")],
)  # fmt: skip
def test_each_object_has_its_noun(obj: SyncObject, noun: str) -> None:
    assert views.object_noun(_config(obj, SyncOptions()).sync) == noun


def test_notes_of_an_event_preview_get_a_level_and_a_sentence() -> None:
    config = _config(SyncObject.EVENT, SyncOptions(event_type="Paid", time_column="at"))
    plan = Plan(new=2, first_time=1_780_000_000_000, last_time=1_790_000_000_000)
    assert views.note_levels(Report("preview", plan), config) == [
        ("info", "Events from 2026-05-28 20:26 UTC to 2026-09-21 14:13 UTC."),
        ("warning", views.VOLUME_WARNING.capitalize() + "."),
        ("warning", views.EDITED_ROWS_WARNING.capitalize() + "."),
    ]
    synthetic = _config(SyncObject.USER, SyncOptions(synthetic_event="Updated"))
    [(level, text)] = views.note_levels(
        Report("run", Plan(changed=3, synthetic=3), synthetic_sent=3), synthetic
    )
    assert level == "warning" and text.startswith("Sent 3 of 3 'Updated' events") and "inactive" in text


def test_event_rows_show_each_event_to_send() -> None:
    payloads = {
        "evt_1": {"user_id": "u_000001", "event_type": "Paid", "time": 1_780_000_000_000,
                  "event_properties": {"amount": 9.5, "currency": "EUR"}, "insert_id": "evt_1"},
        "amp_sync-ab": {"device_id": "d-1234", "event_type": "Seen", "time": 1_780_000_000_123,
                        "insert_id": "amp_sync-ab"},
    }  # fmt: skip
    rows = views.event_rows(payloads)
    assert rows == [
        {"Id": "u_000001", "Event type": "Paid", "Time": "2026-05-28 20:26:40 UTC",
         "Properties": '{"amount": 9.5, "currency": "EUR"}', "Insert id": "evt_1"},
        {"Id": "d-1234", "Event type": "Seen", "Time": "2026-05-28 20:26:40.123 UTC", "Properties": "",
         "Insert id": "amp_sync-ab"},
    ]  # fmt: skip
    assert views.filter_events(rows, "SEEN") == rows[1:]
    assert views.filter_events(rows, "evt_") == rows[:1]
    assert views.filter_events(rows, " ") == rows


def test_revert_rows_and_summary() -> None:
    sample = [
        FieldChange("u1", "plan", "$set", "Gold", "Starter", False),
        FieldChange("u1", "seen", "$set", "yes", None, False),
        FieldChange("u2", "tags", "$remove", ["a"], ["a"], False),
    ]
    columns = ("Key", "Property", "Operation", "Current value", "Restored value")
    assert views.revert_rows(sample) == [
        dict(zip(columns, row, strict=True))
        for row in [
            ("u1", "plan", "$set", "Gold", "Starter"),
            ("u1", "seen", "$unset", "yes", "(unset)"),
            ("u2", "tags", "$remove", '["a"]', '["a"]'),
        ]
    ]
    plan = Plan(changed=2, reverts_run=4)
    assert views.revert_summary(Report("revert", plan, sent=2, seconds=1.0)) == (
        "success",
        "Reverted run #4: sent 2 keys back to their values from before it, in 1.0 s.",
    )
    level, text = views.revert_summary(Report("revert", plan, sent=1, failed=1))
    assert level == "warning" and "1 were not delivered" in text and "Revert again" in text


def test_result_summary_of_events() -> None:
    report = Report("run", Plan(new=4), sent=4, seconds=2.0)
    assert views.result_summary(report, "events") == (
        "success",
        "Sent 4 events in 2.0 s. Amplitude acknowledged every event of the model.",
    )
    assert views.result_summary(Report("run", Plan(unchanged=4)), "events")[1] == (
        "Nothing to send: amp_sync last delivered every event of the model as it is now."
    )


def test_history_rows_name_the_destination_of_each_run() -> None:
    record = RunRecord(3, "run", 0.0, 1.0, "ok", {}, "", "Production")
    [row] = views.history_rows([("s", record)])
    assert (row["Sync"], row["Destination"], row["Run"]) == ("s", "Production", 3)


def _known(ident: int, name: str, endpoint: str) -> KnownDestination:
    return KnownDestination(ident, DestinationRef(name, endpoint, f"{ident:032d}"), 10, None, ())


@pytest.mark.parametrize(
    ("elsewhere", "offered"),
    [
        ([], False),
        ([_known(1, "Sandbox", "http://127.0.0.1:1")], False),  # another endpoint: another project
        ([_known(1, "Prod", "https://api2.amplitude.com")], True),  # same endpoint, other key
    ],
)
def test_a_rekey_is_offered_only_for_state_at_the_same_endpoint(elsewhere, offered) -> None:
    here = DestinationRef("Prod", "https://api2.amplitude.com", "f" * 32)
    report = Report("preview", Plan(new=10), destination=here, elsewhere=elsewhere)
    assert views.offers_rekey(report) is offered
    assert any("amp-sync rekey" in n for n in views.state_notes(report)) is offered

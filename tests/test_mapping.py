"""The field mapper's rules: mappable columns, auto-map, rows, suggestions, validation, the saved sync."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amp_sync.config import (
    GROUP_OPERATIONS,
    Destination,
    Mapping_,
    Model,
    Operation,
    Region,
    Source,
    Sync,
    SyncConfig,
    SyncObject,
    SyncOptions,
    parse_config,
)
from amp_sync.credentials import KnownProperties, user_properties
from amp_sync.errors import ConfigError
from amp_sync.mapping import (
    Draft,
    auto_map,
    build_sync,
    column_choices,
    guess_event_type_column,
    guess_key,
    guess_time_column,
    mappable_columns,
    new_mapping,
    operations,
    problems,
    rearranged,
    suggest_property,
    unsaved,
)
from amp_sync.secret import Secret
from amp_sync.workspace import SavedSync, export_sync

COLUMNS = ["user_id", "device_id", "plan", "ltv"]
SET, ADD = Operation.SET, Operation.ADD
EVENT = SyncOptions(event_type_column="event_type", time_column="occurred_at", insert_id_column="event_id")
EVENT_COLUMNS = [*COLUMNS, "event_type", "occurred_at", "event_id"]


def draft(**changes: object) -> Draft:
    base: dict[str, object] = {
        "name": "ltv sync",
        "model": "ltv",
        "destination": "Amplitude sandbox",
        "object": SyncObject.USER,
        "key": "user_id",
        "mappings": (Mapping_("plan", "plan", SET), Mapping_("ltv", "lifetime_value", ADD)),
        "user_key": None,
    }
    return Draft(**{**base, **changes})  # type: ignore[arg-type]


def test_key_and_user_field_are_not_offered_as_properties() -> None:
    assert mappable_columns(COLUMNS, "device_id", "user_id") == ["plan", "ltv"]
    assert mappable_columns(COLUMNS, None) == COLUMNS


@pytest.mark.parametrize(
    ("columns", "object_", "expected"),
    [
        (COLUMNS, SyncObject.USER, "user_id"),
        (COLUMNS, SyncObject.DEVICE, "device_id"),
        (["ID", "plan"], SyncObject.USER, "ID"),
        (["email", "plan"], SyncObject.USER, None),
        (["company", "seats"], SyncObject.GROUP, "company"),
        (["id", "Company_ID", "seats"], SyncObject.GROUP, "Company_ID"),
        (["id", "user_id", "event_type"], SyncObject.EVENT, "user_id"),
        (["id", "event_type"], SyncObject.EVENT, None),  # an event's "id" is its own, not the user's
    ],
)
def test_the_key_is_guessed_only_when_obvious(columns, object_, expected) -> None:
    assert guess_key(columns, object_) == expected


def test_event_columns_are_guessed_only_when_obvious() -> None:
    demo = ["event_id", "user_id", "event_type", "occurred_at"]
    assert guess_key(demo, SyncObject.EVENT, "device") is None
    assert guess_key(["device_id", *demo], SyncObject.EVENT, "device") == "device_id"
    assert (guess_time_column(demo), guess_event_type_column(demo)) == ("occurred_at", "event_type")
    assert (guess_time_column(["user_id", "plan"]), guess_event_type_column(["user_id", "plan"])) == (
        None,
        None,
    )


def test_the_event_columns_are_not_offered_as_properties() -> None:
    d = draft(object=SyncObject.EVENT, options=EVENT, mappings=())
    assert d.role_columns() == ["user_id", "event_type", "occurred_at", "event_id"]
    columns = ["event_id", "user_id", "event_type", "occurred_at", "amount"]
    assert mappable_columns(columns, d.key, None, d.role_columns()) == ["amount"]
    assert auto_map(columns, d.key, None, [], d.role_columns()) == ["amount"]


def test_auto_map_keeps_mapped_columns_first_and_adds_every_other_non_key_column() -> None:
    assert auto_map(COLUMNS, "user_id", None, ["ltv"]) == ["ltv", "device_id", "plan"]
    assert auto_map(COLUMNS, "device_id", "user_id", []) == ["plan", "ltv"]


def test_each_object_offers_its_operations() -> None:
    assert operations(SyncObject.USER) == operations(SyncObject.DEVICE) == tuple(Operation)
    assert operations(SyncObject.GROUP) == GROUP_OPERATIONS
    assert operations(SyncObject.EVENT) == (SET,)


@pytest.mark.parametrize(
    ("column", "known", "expected"),
    [
        ("plan", (), "plan"),
        ("plan", ("Plan", "country"), "Plan"),
        ("lifetime_value", ("Lifetime Value",), "Lifetime Value"),
        ("ltv", ("lifetime_value",), "ltv"),
    ],
)
def test_a_new_column_writes_an_existing_property_of_the_same_name(column, known, expected) -> None:
    assert suggest_property(column, known) == expected
    assert new_mapping(column, known) == Mapping_(column, expected, SET)


def test_a_drag_reorders_adds_and_removes_keeping_each_rows_edits() -> None:
    rows = (Mapping_("plan", "plan_name", ADD), Mapping_("ltv", "ltv"))
    assert rearranged(rows, ["ltv", "country", "plan"], ["Country"]) == (
        Mapping_("ltv", "ltv"), Mapping_("country", "Country"), Mapping_("plan", "plan_name", ADD),
    )  # fmt: skip
    assert rearranged(rows, ["plan"]) == rows[:1]


def test_a_row_may_switch_only_to_columns_no_other_row_maps() -> None:
    rows = (Mapping_("plan", "plan"), Mapping_("ltv", "ltv"))
    assert column_choices(["device_id", "plan", "ltv"], rows, 1) == ["ltv", "device_id"]


def test_the_mapping_is_unsaved_when_it_differs_from_the_saved_one() -> None:
    rows = (Mapping_("plan", "plan"),)
    assert not unsaved(rows, rows) and not unsaved((), None)
    assert unsaved(rows, None) and unsaved((Mapping_("plan", "plan_name"),), rows)
    assert unsaved(tuple(reversed((*rows, Mapping_("ltv", "ltv")))), (*rows, Mapping_("ltv", "ltv")))


@contextmanager
def taxonomy(status: int, body: object) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback server answering every GET with (status, body); yields its URL and what it received."""
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append({"path": self.path, "auth": self.headers.get("Authorization", "")})
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


TAXONOMY = {"success": True, "data": [{"user_property": "Plan"}, {"user_property": "gp:Country"}, {}]}


def project(url: str, secret: str | None = "s" * 32) -> Destination:
    return Destination("Prod", Secret("k" * 32), Secret(secret) if secret else None, Region.US, url)


def test_the_projects_user_properties_are_read_with_both_keys() -> None:
    with taxonomy(200, TAXONOMY) as (url, received):
        assert user_properties(project(url)) == KnownProperties(("Plan", "Country"))
    assert received[0]["path"] == "/api/2/taxonomy/user-property"
    assert received[0]["auth"] == "Basic " + base64.b64encode(f"{'k' * 32}:{'s' * 32}".encode()).decode()


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (403, {"error": "forbidden"}, "its Taxonomy API is on the Enterprise plan"),
        (401, "Invalid API key", "its Taxonomy API is on the Enterprise plan"),
        (404, {"error": "Invalid request path"}, "does not offer Amplitude's Taxonomy API"),
        (500, "oops", "HTTP 500"),
        (200, "<html>", "HTTP 200"),
        (200, {"data": "none"}, "HTTP 200"),
    ],
)
def test_any_failure_leaves_names_to_be_typed_and_says_why(status, body, reason) -> None:
    with taxonomy(status, body) as (url, _):
        found = user_properties(project(url))
    assert found.names == () and reason in (found.reason or "")


def test_without_a_secret_key_or_a_server_nothing_is_offered() -> None:
    with taxonomy(200, TAXONOMY) as (url, received):
        assert "add the project's secret key" in (user_properties(project(url, None)).reason or "")
    assert received == []
    with taxonomy(200, TAXONOMY) as (url, _):
        pass  # closed: nothing listens there any more
    assert "could not reach" in (user_properties(project(url), timeout=2).reason or "")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": " "}, "give the sync a name"),
        ({"name": "ltv/sync"}, "may hold only letters, digits"),
        ({"model": None}, "choose a model"),
        ({"destination": None}, "choose a destination"),
        ({"key": None}, "choose the key column: the one holding the Amplitude User ID"),
        ({"key": None, "object": SyncObject.DEVICE}, "the Amplitude Device ID"),
        ({"mappings": ()}, "map at least one column to an Amplitude property"),
        (
            {"mappings": (Mapping_("plan", "tier"), Mapping_("ltv", "tier"))},
            "the columns 'plan' and 'ltv' both write the property 'tier': give each its own property",
        ),
        ({"mappings": (Mapping_("plan", "$plan"),)}, "starts with '$', which Amplitude reserves"),
        ({"mappings": (Mapping_("plan", ""),)}, "give the column 'plan' a property name"),
        ({"mappings": (Mapping_("plan", "plan "),)}, "starts or ends with a space"),
        ({"mappings": (Mapping_("plan", "p" * 1025),)}, "longer than 1,024 characters"),
        ({"mappings": (Mapping_("plan", "a"), Mapping_("plan", "b"))}, "the column 'plan' is mapped twice"),
        (
            {"object": SyncObject.DEVICE, "key": "device_id", "user_key": "device_id"},
            "the user field 'device_id' is also the key column",
        ),
        ({"object": SyncObject.GROUP, "key": None}, "choose the key column: the one holding the group value"),
        ({"object": SyncObject.GROUP}, 'group syncs need a group type (e.g. "company")'),
        ({"object": SyncObject.GROUP, "options": SyncOptions(group_type="  ")}, "need a group type"),
        (
            {"object": SyncObject.GROUP, "options": SyncOptions(group_type="$org")},
            "the group type '$org': names starting with '$' or '[Amplitude]' are reserved by Amplitude",
        ),
        (
            {
                "object": SyncObject.GROUP,
                "options": SyncOptions(group_type="org"),
                "mappings": (Mapping_("plan", "plan", Operation.REMOVE),),
            },
            "the column 'plan': group properties take $set, $setOnce, $add, $append, $prepend, not $remove",
        ),
        (
            {"object": SyncObject.EVENT, "options": SyncOptions(time_column="occurred_at")},
            "event syncs need exactly one of an event type (a constant) and an event type column",
        ),
        (
            {
                "object": SyncObject.EVENT,
                "options": SyncOptions(event_type="Paid", event_type_column="event_type", time_column="t"),
            },
            "event syncs need exactly one of an event type",
        ),
        (
            {"object": SyncObject.EVENT, "options": SyncOptions(event_type="Paid")},
            "event syncs need a time column, the column that says when each event happened",
        ),
        (
            {"object": SyncObject.EVENT, "options": SyncOptions(event_type="[Amplitude] x", time_column="t")},
            "names starting with '$' or '[Amplitude]' are reserved",
        ),
        (
            {"object": SyncObject.EVENT, "options": EVENT, "key": None},
            "choose the key column: the one holding the Amplitude User ID",
        ),
        (
            {
                "object": SyncObject.EVENT,
                "options": SyncOptions(id_type="device", event_type="Paid", time_column="t"),
                "key": None,
            },
            "the one holding the Amplitude Device ID",
        ),
        (
            {"object": SyncObject.EVENT, "options": EVENT},
            "the column 'ltv': event properties are sent as they are; $add is only for profiles",
        ),
        (
            {"options": SyncOptions(synthetic_event="")},
            "give the synthetic event a name, or turn it off",
        ),
        (
            {"object": SyncObject.DEVICE, "key": "device_id", "options": SyncOptions(synthetic_event="$x")},
            "the synthetic event '$x': names starting with '$'",
        ),
    ],
)
def test_each_problem_is_named_in_words(changes, expected) -> None:
    found = problems(draft(**changes), COLUMNS)
    assert any(expected in p for p in found), found


def test_an_event_sync_needs_no_property_and_names_its_missing_columns() -> None:
    d = draft(object=SyncObject.EVENT, options=EVENT, mappings=())
    assert problems(d, EVENT_COLUMNS) == []
    assert problems(d, COLUMNS) == [
        "the model does not return the column 'event_type'",
        "the model does not return the column 'occurred_at'",
        "the model does not return the column 'event_id'",
    ]


def test_ready_drafts_of_each_object_keep_only_their_options() -> None:
    leftovers = SyncOptions(group_type=" org ", synthetic_event=" Updated ", time_column="t")
    user = build_sync(draft(options=leftovers))
    assert user.options == SyncOptions(synthetic_event="Updated")
    group = build_sync(draft(object=SyncObject.GROUP, key="plan", mappings=(Mapping_("ltv", "arr", ADD),),
                             options=leftovers, user_key="user_id"))  # fmt: skip
    assert (group.options, group.user_key) == (SyncOptions(group_type="org"), None)
    event = build_sync(draft(object=SyncObject.EVENT, options=EVENT, mappings=(), user_key="device_id"))
    assert (event.options, event.mappings, event.user_key) == (EVENT, (), None)
    on_devices = SyncOptions(id_type="device", event_type=" Paid ", time_column="occurred_at")
    event = build_sync(draft(object=SyncObject.EVENT, key="device_id", options=on_devices, mappings=()))
    assert event.options.event_type == "Paid"
    assert build_sync(draft(object=SyncObject.EVENT, key="device_id", options=on_devices, mappings=(),
                            user_key="user_id")).user_key == "user_id"  # fmt: skip


def test_columns_the_model_does_not_return_are_listed_once_known() -> None:
    d = draft(key="uid", mappings=(Mapping_("arr", "arr"),))
    assert problems(d) == []
    assert problems(d, COLUMNS) == [
        "the model does not return the column 'uid'",
        "the model does not return the column 'arr'",
    ]


def test_a_ready_draft_becomes_the_saved_sync() -> None:
    d = draft(name=" ltv sync ", object=SyncObject.DEVICE, key="device_id", user_key="user_id")
    assert problems(d, COLUMNS) == []
    assert build_sync(d, COLUMNS) == SavedSync(
        "ltv sync", "ltv", "Amplitude sandbox", SyncObject.DEVICE, "device_id", d.mappings, "user_id"
    )


def test_a_user_sync_drops_a_leftover_user_field() -> None:
    assert build_sync(draft(user_key="device_id")).user_key is None


def test_an_unready_draft_is_refused_with_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        build_sync(draft(name="", key=None))
    assert caught.value.problems == [
        "give the sync a name",
        "choose the key column: the one holding the Amplitude User ID",
    ]


_words = st.text(alphabet="ab $_-./", max_size=6)


@given(
    name=_words,
    key=st.sampled_from(["user_id", "device_id", ""]),
    object_=st.sampled_from(list(SyncObject)),
    user_key=st.sampled_from([None, "user_id", "device_id"]),
    mappings=st.lists(
        st.builds(Mapping_, st.sampled_from(["plan", "ltv"]), _words, st.sampled_from(list(Operation))),
        max_size=3,
    ),
    options=st.builds(
        SyncOptions,
        group_type=st.none() | _words,
        id_type=st.sampled_from(["user", "device"]),
        event_type=st.none() | _words,
        event_type_column=st.sampled_from([None, "event_type"]),
        time_column=st.sampled_from([None, "occurred_at"]),
        insert_id_column=st.sampled_from([None, "event_id"]),
        skip_user_properties_sync=st.booleans(),
        synthetic_event=st.none() | _words,
    ),
)
def test_whatever_the_mapper_accepts_the_sync_file_accepts(
    name, key, object_, user_key, mappings, options
) -> None:
    d = Draft(name, "ltv", "Sandbox", object_, key or None, tuple(mappings), user_key, options)
    if problems(d, EVENT_COLUMNS):
        return
    saved = build_sync(d, EVENT_COLUMNS)
    config = SyncConfig(
        Source(Secret("sqlite://")),
        Destination("Sandbox", Secret("k" * 32), None, Region.US, None),
        Model("ltv", "select 1"),
        Sync(
            saved.name,
            saved.object,
            "insert" if object_ is SyncObject.EVENT else "update_or_create",
            saved.key,
            saved.mappings,
            saved.user_key,
            saved.options,
        ),
    )
    assert parse_config(export_sync(config, with_secrets=True)).sync == config.sync

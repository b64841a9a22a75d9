"""The Syncs page: build a sync on a saved model, map fields, validate, save, export, import, promote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_mapping import TAXONOMY, taxonomy
from test_page_preview import MAPPINGS, SMALL_SQL, SYNC, metrics, notes, save_sync, table, texts

from amp_sync import runner
from amp_sync.config import Destination, Mapping_, Operation, Region, SyncObject, SyncOptions
from amp_sync.sandbox import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Sandbox
from amp_sync.secret import Secret
from amp_sync.templates import template
from amp_sync.workspace import DEMO_WAREHOUSE, SANDBOX_DESTINATION, SavedModel, SavedSync, Workspace

ROOT = Path(__file__).resolve().parents[1]
LTV = template("lifetime_value")


def open_syncs(app_env, *models: SavedModel) -> AppTest:
    """The Syncs page after the first start (demo warehouse, sandbox destination) plus `models`."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    ws = Workspace(app_env.home)
    for model in models:
        ws.save(model)
    at.switch_page("app_pages/syncs.py").run()
    assert not at.exception
    return at


def mapper(at: AppTest):
    return next(e for e in at.get("component_instance") if "sortable" in e.proto.component_name)


def board(at: AppTest) -> dict[str, list[str]]:
    """What the drag board shows: card labels per container header."""
    return {c["header"]: c["items"] for c in json.loads(mapper(at).proto.json_args)["items"]}


def mapped(at: AppTest) -> list[str]:
    """The model column of each mapping row, top to bottom, as its selectbox shows it."""
    return [s.value for s in at.selectbox if (s.key or "").startswith("sync_map_col_")]


def properties(at: AppTest) -> list[str]:
    """The property of each mapping row, as its field shows it."""
    fields = [*at.text_input, *at.selectbox]
    return [str(w.value) for w in fields if (w.key or "").startswith("sync_map_prop_")]


def row_key(at: AppTest, index: int, part: str) -> str:
    """The widget key of one part (col, prop, op, rm) of the mapping row at `index`."""
    return f"sync_map_{part}_{at.session_state['sync_map_rows'][index][0]}"


def drag(at: AppTest, *columns: str) -> AppTest:
    """What dragging does in the browser: the board sends its new containers, the page reruns.

    `columns` become the mapped list, in this order; a card already there keeps its label.
    """
    shown = board(at)
    labels = {label.split(" → ")[0]: label for label in shown["Mapped columns"]}
    rest = [c for c in shown["Model columns"] + list(labels) if c not in columns]
    at.session_state[mapper(at).key] = [
        {"header": "Model columns", "items": rest},
        {"header": "Mapped columns", "items": [labels.get(c, c) for c in columns]},
    ]
    at.run()
    assert not at.exception
    return at


def edit_row(at: AppTest, index: int, prop: str | None = None, op: str | None = None) -> AppTest:
    """Type a property name and pick an operation in one mapping row, as a person does in place."""
    if prop is not None:
        at.text_input(key=row_key(at, index, "prop")).input(prop).run()
    if op is not None:
        at.selectbox(key=row_key(at, index, "op")).select(op).run()
    assert not at.exception
    return at


def unsaved_marked(at: AppTest) -> bool:
    return any("Unsaved changes" in m.value for m in at.markdown)


def save(at: AppTest, name: str) -> AppTest:
    at.text_input(key="sync_name").input(name).run()  # Save is enabled once nothing is missing
    at.button(key="sync_save").click().run()
    assert not at.exception
    return at


def rendered(at: AppTest) -> str:
    """The text a user can read on the page."""
    parts = [e.value for kind in ("markdown", "code", "caption", "info", "warning", "error", "success")
             for e in getattr(at, kind)]  # fmt: skip
    parts += [str(e.value) for e in at.text_input] + [str(e.value) for e in at.text_area]
    return "\n".join(parts)


def test_with_no_model_the_page_points_to_models(app_env) -> None:
    at = open_syncs(app_env)
    assert "write one on the Models page first" in at.info[0].value
    assert not at.get("component_instance") and not at.selectbox(key="sync_pick").options[1:]


def test_build_a_sync_by_dragging_two_columns_and_naming_their_properties(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    assert at.selectbox(key="sync_destination").value == SANDBOX_DESTINATION
    at.selectbox(key="sync_key").select("user_id").run()
    assert "user_id" not in board(at)["Model columns"]
    drag(at, "lifetime_value", "plan")
    assert mapped(at) == ["lifetime_value", "plan"]
    assert board(at)["Mapped columns"] == ["lifetime_value", "plan"]
    edit_row(at, 0, prop="ltv", op="$add")
    save(at, "ltv-sync")

    assert at.success[0].value == "Saved the sync 'ltv-sync'."
    assert Workspace(app_env.home).get(SavedSync, "ltv-sync") == SavedSync(
        "ltv-sync", "ltv", SANDBOX_DESTINATION, SyncObject.USER, "user_id",
        (Mapping_("lifetime_value", "ltv", Operation.ADD), Mapping_("plan", "plan", Operation.SET)),
    )  # fmt: skip
    assert at.selectbox(key="sync_pick").value == "ltv-sync"
    assert at.session_state["selected_sync"] == "ltv-sync"
    at.button(key="sync_open_preview").click().run()  # opens Preview with the preview computed
    assert not at.exception and at.selectbox(key="preview_sync").value == "ltv-sync"
    assert {m.label for m in at.metric} >= {"New", "Changed", "Rejected"}  # computed on arrival


def test_auto_map_maps_every_column_but_the_key(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    assert at.selectbox(key="sync_key").value == "user_id"  # guessed
    at.button(key="sync_automap").click().run()
    expected = ["lifetime_value", "payment_count", "currency", "first_paid_date", "last_paid_date", "plan"]
    assert board(at) == {"Model columns": [], "Mapped columns": expected}
    assert mapped(at) == expected and properties(at) == expected
    save(at, "ltv-all")
    saved = Workspace(app_env.home).get(SavedSync, "ltv-all")
    assert saved.mappings == tuple(Mapping_(c, c, Operation.SET) for c in expected)


@pytest.mark.parametrize(
    ("edits", "problem"),
    [
        ((1, "lifetime_value"), "both write the property 'lifetime_value'"),
        ((0, "$ltv"), "starts with '$', which Amplitude reserves"),
        ((0, ""), "give the column 'lifetime_value' a property name"),
    ],
)
def test_problems_are_listed_and_block_saving(app_env, edits, problem) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    at = edit_row(drag(at, "lifetime_value", "plan"), edits[0], prop=edits[1])
    at.text_input(key="sync_name").input("ltv-sync").run()
    assert problem in at.warning[0].value
    assert at.button(key="sync_save").disabled
    assert Workspace(app_env.home).names(SavedSync) == []


def test_a_new_sync_lists_what_is_missing(app_env) -> None:
    at = open_syncs(app_env, SavedModel("emails", DEMO_WAREHOUSE, "select email, name from users"))
    assert at.selectbox(key="sync_key").value is None  # no obvious id column
    assert at.warning[0].value.splitlines()[1:] == [
        "- give the sync a name",
        "- choose the key column: the one holding the Amplitude User ID",
        "- map at least one column to an Amplitude property",
    ]


def test_a_device_sync_with_a_user_field(app_env) -> None:
    at = open_syncs(app_env, SavedModel("devices", DEMO_WAREHOUSE, "select * from devices"))
    at.radio(key="sync_object").set_value("device").run()
    assert "Choose **Device** when your rows are devices" in rendered(at)
    at.selectbox(key="sync_key").select("device_id").run()
    at.selectbox(key="sync_user_key").select("device_id").run()
    assert "the user field 'device_id' is also the key column" in at.warning[0].value
    at.selectbox(key="sync_user_key").select("user_id").run()
    assert board(at)["Model columns"] == ["platform", "last_seen_at"]
    save(drag(at, "platform"), "devices-sync")
    saved = Workspace(app_env.home).get(SavedSync, "devices-sync")
    assert (saved.object, saved.key, saved.user_key) == (SyncObject.DEVICE, "device_id", "user_id")
    assert saved.mappings == (Mapping_("platform", "platform"),)


def test_a_saved_sync_loads_edits_renames_and_deletes(app_env) -> None:
    ws = Workspace(app_env.home)
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    save(drag(at, "plan"), "first")
    at.selectbox(key="sync_pick").select("New sync").run()
    assert at.text_input(key="sync_name").value == "" and at.info  # nothing mapped
    at.selectbox(key="sync_pick").select("first").run()
    assert mapped(at) == ["plan"] and not unsaved_marked(at)
    edit_row(at, 0, prop="plan_name")
    save(at, "second")
    assert ws.names(SavedSync) == ["second"]
    assert ws.get(SavedSync, "second").mappings == (Mapping_("plan", "plan_name"),)

    at.button(key="sync_delete").click().run()
    assert "Delete the sync 'second'?" in at.warning[0].value
    at.button(key="sync_delete_yes").click().run()
    assert not at.exception
    assert at.success[0].value == "Deleted the sync 'second'."
    assert ws.names(SavedSync) == [] and at.selectbox(key="sync_pick").value == "New sync"


def test_export_has_placeholders_and_keys_only_on_request(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    save(drag(at, "plan"), "ltv-sync")
    exported = at.code[0].value
    assert 'api_key = "${AMPLITUDE_API_KEY}"' in exported
    assert SANDBOX_API_KEY not in rendered(at) and SANDBOX_SECRET_KEY not in rendered(at)
    at.checkbox(key="sync_export_keys").check().run()
    assert "clear text" in at.warning[0].value
    assert not at.code and SANDBOX_API_KEY not in rendered(at)


def test_an_exported_file_imports_back_with_the_keys_typed_once(app_env) -> None:
    ws = Workspace(app_env.home)
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    save(drag(at, "plan", "currency"), "ltv-sync")
    original, exported = ws.get(SavedSync, "ltv-sync"), at.code[0].value
    at.button(key="sync_delete").click().run()
    at.button(key="sync_delete_yes").click().run()

    at.text_area(key="sync_import_text").input(exported)
    at.button(key="sync_import").click().run()  # no keys typed, none set: saved, not yet runnable
    assert not at.exception and all("AMPLITUDE_API_KEY is not set" in e.value for e in at.error)
    assert at.success[0].value == "Imported the sync 'ltv-sync' with its model and destination."
    said = at.warning[0].value.replace("\\$", "$")
    assert said.startswith("Before “ltv-sync” can run: environment variable AMPLITUDE_API_KEY is not set")
    assert (
        "AMPLITUDE_SECRET_KEY is not set (used in the secret key of the destination 'Amplitude sandbox')"
        in said
    )
    assert ws.run_problems("ltv-sync") and "${AMPLITUDE_API_KEY}" in ws.path.read_text()

    at.text_area(key="sync_import_text").input(exported)
    at.text_input(key="sync_import_api_key").input(SANDBOX_API_KEY)
    at.text_input(key="sync_import_secret_key").input(SANDBOX_SECRET_KEY)
    at.button(key="sync_import").click().run()
    assert not at.exception
    assert at.success[0].value == "Imported the sync 'ltv-sync' with its model and destination."
    assert ws.get(SavedSync, "ltv-sync") == original
    assert ws.sync_config("ltv-sync").destination.api_key.reveal() == SANDBOX_API_KEY
    assert at.selectbox(key="sync_pick").value == "ltv-sync"
    assert mapped(at) == ["plan", "currency"]
    assert at.text_input(key="sync_import_api_key").value == ""
    assert SANDBOX_API_KEY not in rendered(at)
    assert not at.warning and ws.run_problems("ltv-sync") == []


def test_keys_typed_beside_an_imported_file_are_kept_out_of_the_workspace_file(app_env, monkeypatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # this machine may have one
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    typed_key = "typed-api-key-5e6f7a8b9c0d"
    ws = Workspace(app_env.home)
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    save(drag(at, "plan"), "ltv-sync")
    exported = at.code[0].value.replace('name = "Amplitude sandbox"', 'name = "Prod"')
    at.text_area(key="sync_import_text").input(exported.replace('name = "ltv-sync"', 'name = "prod-sync"'))
    at.text_input(key="sync_import_api_key").input(typed_key)
    at.button(key="sync_import").click().run()
    assert not at.exception and at.success[0].value.startswith("Imported the sync 'prod-sync'")
    assert ws.listed(Destination, "Prod").api_key.reveal() == typed_key  # its secret key is not set
    assert typed_key not in ws.path.read_text() and typed_key not in rendered(at)
    assert typed_key in (app_env.home / "secrets.json").read_text()
    said = at.warning[0].value.replace("\\$", "$")  # the secret key is still a ${VAR}, not set
    assert "AMPLITUDE_SECRET_KEY is not set (used in the secret key of the destination 'Prod')" in said


def test_an_invalid_file_lists_every_problem(app_env) -> None:
    at = open_syncs(app_env)
    at.text_area(key="sync_import_text").input('[source]\nurl = "sqlite://"\n[sync]\nname = "x"\n')
    at.button(key="sync_import").click().run()
    assert not at.exception
    message = at.error[0].value
    assert message.startswith("Please fix these:")
    assert "- missing table [destination]" in message and "- missing key 'key' in [sync]" in message


def test_unsaved_edits_survive_a_visit_to_another_page(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    drag(at, "plan")
    at.text_input(key="sync_name").input("half-done").run()
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/syncs.py").run()
    assert not at.exception
    assert at.text_input(key="sync_name").value == "half-done"
    assert mapped(at) == ["plan"]


EVENTS_SQL = "select event_id, user_id, event_type, occurred_at from events where user_id < 'u_000012'"
COMPANIES_SQL = "select company, count(*) as seats, max(plan_id) as top_plan from users group by company"


def ops_offered(at: AppTest) -> list[str] | None:
    """The operations the first mapping row offers, or None when it has no operation field."""
    ops = [s for s in at.selectbox if (s.key or "").startswith("sync_map_op_")]
    return ops[0].options if ops else None


def test_the_object_selector_offers_every_object(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    assert at.radio(key="sync_object").options == ["User", "Device", "Group", "Event"]
    drag(at, "plan")
    assert ops_offered(at) == [str(op) for op in Operation]  # a user sync keeps every operation


def test_a_group_sync_needs_its_group_type_and_takes_group_operations_only(app_env) -> None:
    at = open_syncs(app_env, SavedModel("companies", DEMO_WAREHOUSE, COMPANIES_SQL))
    at.selectbox(key="sync_key").select("company").run()
    edit_row(drag(at, "seats", "top_plan"), 1, op="$remove")  # picked for users, kept on switching
    at.radio(key="sync_object").set_value("group").run()
    assert "one group (an account, a company, a team)" in rendered(at)
    assert at.selectbox(key="sync_key").value == "company"  # guessed for groups
    assert ops_offered(at) == ["$set", "$setOnce", "$add", "$append", "$prepend"]
    edit_row(at, 0, op="$add")
    at.text_input(key="sync_name").input("companies-sync").run()
    found = at.warning[0].value
    assert '- group syncs need a group type (e.g. "company")' in found
    assert "group properties take $set, $setOnce, $add, $append, $prepend, not $remove" in found
    assert at.button(key="sync_save").disabled

    at.text_input(key="sync_group_type").input("company").run()
    edit_row(at, 1, op="$set")
    assert at.selectbox(key=row_key(at, 1, "op")).options == [
        "$set",
        "$setOnce",
        "$add",
        "$append",
        "$prepend",
    ]
    save(at, "companies-sync")
    saved = Workspace(app_env.home).get(SavedSync, "companies-sync")
    assert (saved.object, saved.key, saved.options.group_type) == (SyncObject.GROUP, "company", "company")
    assert saved.mappings == (Mapping_("seats", "seats", Operation.ADD), Mapping_("top_plan", "top_plan"))
    assert 'group_type = "company"' in at.code[0].value  # the exported file says it too


def test_an_event_sync_guesses_its_columns_and_needs_no_property(app_env) -> None:
    at = open_syncs(app_env, SavedModel("events", DEMO_WAREHOUSE, EVENTS_SQL))
    at.radio(key="sync_object").set_value("event").run()
    assert "Each row becomes one event" in rendered(at) and "**Insert**" in rendered(at)
    assert at.radio(key="sync_id_type").value == "user"
    assert at.selectbox(key="sync_key").value == "user_id"
    assert at.radio(key="sync_type_source").value == "column"
    assert at.selectbox(key="sync_event_type_column").value == "event_type"
    assert at.selectbox(key="sync_time_column").value == "occurred_at"
    assert at.selectbox(key="sync_insert_id_column").value is None
    assert at.checkbox(key="sync_skip_user_props").value is True
    assert (
        at.checkbox(key="sync_skip_user_props").label
        == "Keep current user properties (skip user properties sync)"
    )
    assert board(at) == {"Model columns": ["event_id"], "Mapped columns": []}
    assert "No event property mapped" in rendered(at)
    assert not at.get("toggle")  # the synthetic event is for user and device syncs

    save(at, "events-sync")
    saved = Workspace(app_env.home).get(SavedSync, "events-sync")
    assert (saved.object, saved.key, saved.mappings) == (SyncObject.EVENT, "user_id", ())
    assert saved.options == SyncOptions(event_type_column="event_type", time_column="occurred_at")
    exported = at.code[0].value
    assert 'behavior = "insert"' in exported and "skip_user_properties_sync = true" in exported


def test_an_event_sync_with_a_constant_type_an_insert_id_and_a_property(app_env) -> None:
    at = open_syncs(app_env, SavedModel("events", DEMO_WAREHOUSE, EVENTS_SQL))
    at.radio(key="sync_object").set_value("event").run()
    at.radio(key="sync_type_source").set_value("constant").run()
    at.text_input(key="sync_name").input("logins").run()
    assert (
        "event syncs need exactly one of an event type (a constant) and an event type column"
        in at.warning[0].value
    )
    at.text_input(key="sync_event_type").input("Logged in").run()
    at.selectbox(key="sync_insert_id_column").select("event_id").run()
    at.checkbox(key="sync_skip_user_props").uncheck().run()
    assert board(at)["Model columns"] == ["event_type"]
    drag(at, "event_type")
    assert ops_offered(at) is None  # no operation column: event properties are sent as they are
    assert mapped(at) == ["event_type"]
    edit_row(at, 0, prop="source_type")
    save(at, "logins")
    saved = Workspace(app_env.home).get(SavedSync, "logins")
    assert saved.options == SyncOptions(
        event_type="Logged in", time_column="occurred_at", insert_id_column="event_id",
        skip_user_properties_sync=False,
    )  # fmt: skip
    assert saved.mappings == (Mapping_("event_type", "source_type", Operation.SET),)

    at.selectbox(key="sync_pick").select("New sync").run()
    at.selectbox(key="sync_pick").select("logins").run()  # loads back as it was saved
    assert (
        at.radio(key="sync_object").value == "event" and at.radio(key="sync_type_source").value == "constant"
    )
    assert at.text_input(key="sync_event_type").value == "Logged in"
    assert at.selectbox(key="sync_insert_id_column").value == "event_id"
    assert at.checkbox(key="sync_skip_user_props").value is False


def test_an_event_sync_keyed_on_devices_may_name_the_user(app_env) -> None:
    sql = "select device_id, user_id, 'Seen' as kind, last_seen_at from devices where user_id < 'u_000012'"
    at = open_syncs(app_env, SavedModel("seen", DEMO_WAREHOUSE, sql))
    at.radio(key="sync_object").set_value("event").run()
    assert at.selectbox(key="sync_key").value == "user_id"
    assert not [s for s in at.selectbox if s.key == "sync_user_key"]
    at.radio(key="sync_id_type").set_value("device").run()
    assert at.selectbox(key="sync_key").value == "device_id"  # guessed again for device ids
    at.selectbox(key="sync_user_key").select("user_id").run()
    at.radio(key="sync_type_source").set_value("column").run()
    at.selectbox(key="sync_event_type_column").select("kind").run()
    at.selectbox(key="sync_time_column").select("last_seen_at").run()
    save(at, "seen")
    saved = Workspace(app_env.home).get(SavedSync, "seen")
    assert (saved.key, saved.user_key, saved.options.id_type) == ("device_id", "user_id", "device")


def test_a_user_sync_with_a_synthetic_updated_event(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    toggle = at.toggle(key="sync_synthetic")
    assert toggle.label == "Send a synthetic 'updated' event" and toggle.value is False
    text = rendered(at)
    assert "shows an updated user property only on events that arrive after the update" in text
    assert "counts toward your event volume" in text and "inactive" in text
    toggle.set_value(True).run()
    assert at.text_input(key="sync_synthetic_name").value == "Updated by amp_sync"
    save(drag(at, "plan"), "ltv-updated")
    saved = Workspace(app_env.home).get(SavedSync, "ltv-updated")
    assert saved.options == SyncOptions(synthetic_event="Updated by amp_sync")
    assert 'synthetic_event = "Updated by amp_sync"' in at.code[0].value

    at.text_input(key="sync_synthetic_name").input(" ").run()
    assert "give the synthetic event a name, or turn it off" in at.warning[0].value
    at.toggle(key="sync_synthetic").set_value(False).run()
    save(at, "ltv-updated")
    assert Workspace(app_env.home).get(SavedSync, "ltv-updated").options == SyncOptions()


def test_an_exported_event_sync_imports_back(app_env) -> None:
    ws = Workspace(app_env.home)
    at = open_syncs(app_env, SavedModel("events", DEMO_WAREHOUSE, EVENTS_SQL))
    at.radio(key="sync_object").set_value("event").run()
    at.selectbox(key="sync_insert_id_column").select("event_id").run()
    save(at, "events-sync")
    original, exported = ws.get(SavedSync, "events-sync"), at.code[0].value
    at.button(key="sync_delete").click().run()
    at.button(key="sync_delete_yes").click().run()
    at.text_area(key="sync_import_text").input(exported)
    at.text_input(key="sync_import_api_key").input(SANDBOX_API_KEY)
    at.text_input(key="sync_import_secret_key").input(SANDBOX_SECRET_KEY)
    at.button(key="sync_import").click().run()
    assert not at.exception
    assert ws.get(SavedSync, "events-sync") == original
    assert at.radio(key="sync_object").value == "event"
    assert at.selectbox(key="sync_insert_id_column").value == "event_id"


def promote(at: AppTest, sync: str, destination: str) -> AppTest:
    """Pick the saved sync, then ask for the preview of its promotion to `destination`."""
    at.switch_page("app_pages/syncs.py").run()
    at.selectbox(key="sync_pick").select(sync).run()
    at.selectbox(key="sync_promote_to").select(destination).run()
    at.button(key="sync_promote").click().run()
    assert not at.exception
    assert at.title[0].value == "Preview"  # the page sent the user there
    return at.switch_page("app_pages/preview.py")  # as the browser's address now says


def test_promote_a_sync_from_the_sandbox_to_another_destination(app_env) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    assert runner.run(ws.sync_config(SYNC), app_env.home).sent == 30
    first = app_env.sandbox.store
    sent_first = len(first.requests())
    with Sandbox() as production:
        ws.save(Destination("Production", Secret(SANDBOX_API_KEY), None, Region.US, production.url))
        at = open_syncs(app_env)
        assert at.selectbox(key="sync_pick").options == ["New sync", SYNC]
        at = promote(at, SYNC, "Production")

        # The Preview page, computed at the new destination: every row is new there.
        assert at.selectbox(key="preview_sync").value == SYNC
        assert "from **Amplitude sandbox** to **Production**" in texts(at.info)
        assert (metrics(at)["New"], metrics(at)["Unchanged"]) == ("30", "0")
        said = notes(at)
        assert "never sent to 'Production'" in said and "sent to 'Amplitude sandbox'" in said
        assert "kept as it was" in said
        assert "preview_rekey" not in [b.key for b in at.button]  # another project, not a new key
        assert ws.get(SavedSync, SYNC).destination == SANDBOX_DESTINATION  # nothing saved yet
        assert production.store.profiles() == []

        start = at.button(key="start_sync")
        assert start.label == "Save the sync with 'Production' and start it"
        start.click().run()
        assert not at.exception
        assert "Saved the sync 'ltv-to-sandbox' with the destination 'Production'." in texts(at.success)
        assert metrics(at)["Sent"] == "30"
        assert ws.get(SavedSync, SYNC).destination == "Production"
        assert len(production.store.profiles()) == 30
        assert len(first.requests()) == sent_first  # the sandbox got nothing

        at.switch_page("app_pages/history.py").run()
        runs = table(at, "Run", "Destination")
        assert list(runs["Destination"]) == ["Production", SANDBOX_DESTINATION]

        # Pointed back, the sandbox's state is as it was: nothing to send there.
        at = promote(at, SYNC, SANDBOX_DESTINATION)
        assert (metrics(at)["New"], metrics(at)["Unchanged"]) == ("0", "30")
        at.button(key="preview_promotion_cancel").click().run()
        assert not at.exception
        assert ws.get(SavedSync, SYNC).destination == "Production" and not at.metric


def test_renaming_a_property_in_place_renames_its_card(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    drag(at, "plan", "currency")
    edit_row(at, 0, prop="plan_name")
    assert board(at)["Mapped columns"] == ["plan → plan_name", "currency"]
    assert properties(at) == ["plan_name", "currency"]
    drag(at, "currency", "plan")  # reordered by dragging the cards: each row keeps its edits
    assert mapped(at) == ["currency", "plan"] and properties(at) == ["currency", "plan_name"]
    save(at, "renamed")
    assert Workspace(app_env.home).get(SavedSync, "renamed").mappings == (
        Mapping_("currency", "currency"), Mapping_("plan", "plan_name"),
    )  # fmt: skip


def test_a_row_can_switch_to_another_column_in_place(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    drag(at, "plan", "currency")
    choice = at.selectbox(key=row_key(at, 0, "col"))
    assert "currency" not in choice.options  # another row maps it
    choice.select("lifetime_value").run()
    assert mapped(at) == ["lifetime_value", "currency"]
    assert properties(at) == ["lifetime_value", "currency"]  # a property named after its column follows
    assert "plan" in board(at)["Model columns"] and "lifetime_value" not in board(at)["Model columns"]


def test_one_click_removes_a_mapping(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    drag(at, "plan", "currency")
    edit_row(at, 1, prop="money")
    at.button(key=row_key(at, 0, "rm")).click().run()
    assert not at.exception
    assert mapped(at) == ["currency"] and properties(at) == ["money"]
    assert "plan" in board(at)["Model columns"]
    save(at, "one-left")
    assert Workspace(app_env.home).get(SavedSync, "one-left").mappings == (Mapping_("currency", "money"),)


def test_auto_map_adds_the_rest_after_the_rows_already_there(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    edit_row(drag(at, "plan"), 0, prop="plan_name")
    at.button(key="sync_automap").click().run()
    assert mapped(at) == [
        "plan",
        "lifetime_value",
        "payment_count",
        "currency",
        "first_paid_date",
        "last_paid_date",
    ]
    assert properties(at)[:2] == ["plan_name", "lifetime_value"]
    assert board(at)["Model columns"] == []


def test_unsaved_changes_are_marked_by_the_save_button(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    assert not unsaved_marked(at)
    drag(at, "plan")
    assert unsaved_marked(at)
    save(at, "marked")
    assert not unsaved_marked(at)
    edit_row(at, 0, prop="plan_name")
    assert unsaved_marked(at)
    edit_row(at, 0, prop="plan")  # back as saved
    assert not unsaved_marked(at)


def test_leaving_with_unsaved_changes_warns_on_return_and_discard_restores(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    save(drag(at, "plan"), "left")
    edit_row(at, 0, prop="plan_name")
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/syncs.py").run()
    assert not at.exception
    assert "You left unsaved changes to the mapping of 'left': Save them below, or Discard." in texts(
        at.warning
    )
    assert properties(at) == ["plan_name"] and unsaved_marked(at)  # the draft was kept
    at.button(key="sync_discard").click().run()
    assert not at.exception
    assert properties(at) == ["plan"] and not unsaved_marked(at)
    assert not any("You left unsaved" in w.value for w in at.warning)


def test_saving_after_coming_back_keeps_the_edits_and_ends_the_warning(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    drag(at, "plan")
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/syncs.py").run()
    assert "You left unsaved changes to the mapping of the new sync" in texts(at.warning)
    save(at, "came-back")
    assert not any("You left unsaved" in w.value for w in at.warning)
    assert Workspace(app_env.home).get(SavedSync, "came-back").mappings == (Mapping_("plan", "plan"),)


def captions(at: AppTest) -> str:
    return texts(at.caption)


def test_the_projects_user_properties_are_offered_when_its_keys_can_read_them(app_env) -> None:
    at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
    # The sandbox answers the Taxonomy API from the profiles it holds: none yet.
    assert "Property names are typed: the project has no user properties yet." in captions(at)
    seen = [{"user_id": "alice-001", "user_properties": {"$set": {"tier": "gold"}}}]
    app_env.sandbox.store._apply_identifications(seen)
    later = open_syncs(app_env)  # a new session reads the list again
    assert "Pick from the project's 1 user properties, or type a new name." in captions(later)
    with taxonomy(200, TAXONOMY) as (url, received):
        Workspace(app_env.home).save(
            Destination("Prod", Secret(SANDBOX_API_KEY), Secret(SANDBOX_SECRET_KEY), Region.US, url)
        )
        at.run().selectbox(key="sync_destination").select("Prod").run()
        assert "Pick from the project's 2 user properties, or type a new name." in captions(at)
        drag(at, "plan", "currency")
        assert properties(at) == ["Plan", "currency"]  # a column meets the property of its name
        field = at.selectbox(key=row_key(at, 1, "prop"))
        assert field.options == ["currency", "Plan", "Country"]
        field.select("Country").run()
        save(at, "picked")
    assert len(received) == 1  # read once, not on every rerun
    assert Workspace(app_env.home).get(SavedSync, "picked").mappings == (
        Mapping_("plan", "Plan"), Mapping_("currency", "Country"),
    )  # fmt: skip


def test_a_project_not_on_the_plan_leaves_names_to_be_typed(app_env) -> None:
    with taxonomy(403, {"error": "Forbidden"}) as (url, _):
        at = open_syncs(app_env, SavedModel("ltv", DEMO_WAREHOUSE, LTV.sql))
        Workspace(app_env.home).save(
            Destination("Prod", Secret(SANDBOX_API_KEY), Secret(SANDBOX_SECRET_KEY), Region.US, url)
        )
        at.run().selectbox(key="sync_destination").select("Prod").run()
        assert "its Taxonomy API is on the Enterprise plan" in captions(at)
        drag(at, "plan")
        edit_row(at, 0, prop="plan_tier")  # a text field, as without a secret key
        assert properties(at) == ["plan_tier"] and not at.exception

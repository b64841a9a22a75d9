"""Saved objects persist owner-only, renames follow references, sync files of every object round-trip."""

from __future__ import annotations

import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import open_state

from amp_sync.config import (
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
from amp_sync.errors import ConfigError, StateError
from amp_sync.secret import Secret
from amp_sync.workspace import (
    SavedModel,
    SavedSync,
    Warehouse,
    Workspace,
    _toml,
    export_sync,
    promoted,
)

KEY, SECRET = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"


def filled(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "home")
    ws.save(Destination("Prod", Secret(KEY), Secret(SECRET), Region.EU, None))
    ws.save(Warehouse("wh", Secret("postgresql+psycopg://analyst:p%40ss@db.example:5432/prod")))
    ws.save(SavedModel("ltv", "wh", 'select user_id, ltv\nfrom users\nwhere note = \'a """ b\''))
    mappings = (Mapping_("ltv", "lifetime_value", Operation.ADD),)
    ws.save(SavedSync("ltv-sync", "ltv", "Prod", SyncObject.DEVICE, "user_id", mappings, "uid"))
    return ws


def test_saved_objects_survive_a_restart(tmp_path) -> None:
    filled(tmp_path)
    again = Workspace(tmp_path / "home")
    assert again.get(Destination, "Prod").api_key.reveal() == KEY
    assert again.names(SavedSync) == ["ltv-sync"]
    config = again.sync_config("ltv-sync")
    assert config.destination.region is Region.EU and config.sync.user_key == "uid"


def test_the_workspace_file_is_owner_only(tmp_path) -> None:
    ws = filled(tmp_path)
    assert stat.S_IMODE(ws.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ws.home.stat().st_mode) == 0o700


def test_renaming_follows_references_and_deleting_a_used_object_is_refused(tmp_path) -> None:
    ws = filled(tmp_path)
    ws.save(SavedModel("ltv2", "wh", "select 1"), previous_name="ltv")
    assert ws.get(SavedSync, "ltv-sync").model == "ltv2"
    with pytest.raises(ConfigError, match="used by sync 'ltv-sync'"):
        ws.delete(Destination, "Prod")
    ws.delete(SavedSync, "ltv-sync")
    ws.delete(Destination, "Prod")
    assert ws.names(Destination) == []


def test_names_must_be_unique_and_present(tmp_path) -> None:
    ws = filled(tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        ws.save(Warehouse("wh", Secret("sqlite://")))
    with pytest.raises(ConfigError, match="give the model a name"):
        ws.save(SavedModel(" ", "wh", "select 1"))
    with pytest.raises(ConfigError, match="no destination named 'Nope'"):
        ws.get(Destination, "Nope")


def test_export_uses_placeholders_and_imports_back(tmp_path) -> None:
    ws = filled(tmp_path)
    config = ws.sync_config("ltv-sync")
    text = export_sync(config)
    assert KEY not in text and SECRET not in text and "p%40ss" not in text and "p@ss" not in text
    assert "${AMPLITUDE_API_KEY}" in text and "${WAREHOUSE_PASSWORD}" in text
    env = {"AMPLITUDE_API_KEY": KEY, "AMPLITUDE_SECRET_KEY": SECRET, "WAREHOUSE_PASSWORD": "p%40ss"}
    assert parse_config(text, env) == config
    assert parse_config(export_sync(config, with_secrets=True), {}) == config

    other = Workspace(tmp_path / "other")
    saved = other.import_sync(text, env)
    assert other.sync_config(saved.name) == config


def test_first_start_defaults(tmp_path) -> None:
    ws = Workspace(tmp_path / "home")
    ws.ensure_defaults("http://127.0.0.1:8766", "duckdb:///demo.duckdb")
    assert ws.names(Destination) == ["Amplitude sandbox"] and len(ws.names(Warehouse)) == 1
    ws.delete(Destination, "Amplitude sandbox")
    ws.ensure_defaults("http://127.0.0.1:8766", "duckdb:///demo.duckdb")  # not recreated once set up
    assert ws.names(Destination) == []


def test_a_broken_workspace_file_is_a_clear_error(tmp_path) -> None:
    ws = Workspace(tmp_path)
    ws.path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read the workspace file"):
        ws.all(Destination)


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_text_survives_a_toml_round_trip(text: str) -> None:
    import tomllib

    assert tomllib.loads(f"v = {_toml(text)}")["v"] == text


def test_renaming_a_sync_moves_its_snapshot_and_history(tmp_path) -> None:
    from amp_sync.state import history

    ws = filled(tmp_path)
    store = open_state(ws.home, "ltv-sync")
    store.commit([("alice", b"x", "{}")])
    store.finish_run(store.start_run("run"), "ok", {"sent": 1}, "", [])
    store.close()
    sync = ws.get(SavedSync, "ltv-sync")
    ws.save(
        SavedSync(
            "renamed", sync.model, sync.destination, sync.object, sync.key, sync.mappings, sync.user_key
        ),
        previous_name="ltv-sync",
    )
    assert [r.counts for r in history(ws.home, "renamed")] == [{"sent": 1}]
    assert history(ws.home, "ltv-sync") == []
    moved = open_state(ws.home, "renamed")
    assert moved.digests() == {"alice": b"x"}
    moved.close()


GROUP_OPTIONS = SyncOptions(group_type="company")
EVENT_OPTIONS = SyncOptions(
    id_type="device", event_type_column="event_type", time_column="occurred_at",
    insert_id_column="event_id", skip_user_properties_sync=False,
)  # fmt: skip
OBJECT_KINDS = [
    (SyncObject.USER, "user_id", (Mapping_("ltv", "ltv", Operation.ADD),), None,
     SyncOptions(synthetic_event="Updated by amp_sync")),
    (SyncObject.DEVICE, "device_id", (Mapping_("ltv", "ltv"),), "uid", SyncOptions()),
    (SyncObject.GROUP, "company", (Mapping_("ltv", "arr", Operation.SET_ONCE),), None, GROUP_OPTIONS),
    (SyncObject.EVENT, "device_id", (Mapping_("ltv", "amount"),), "uid", EVENT_OPTIONS),
    (SyncObject.EVENT, "user_id", (), None, SyncOptions(event_type="Purchase", time_column="paid_at")),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "key", "mappings", "user_key", "options"), OBJECT_KINDS)
def test_each_object_round_trips_through_the_workspace_and_its_sync_file(
    tmp_path, obj, key, mappings, user_key, options
) -> None:
    ws = filled(tmp_path)
    saved = SavedSync("objects", "ltv", "Prod", obj, key, mappings, user_key, options)
    ws.save(saved)
    assert Workspace(ws.home).get(SavedSync, "objects") == saved  # survives a restart
    config = ws.sync_config("objects")
    assert config.sync.options == options
    assert config.sync.behavior == ("insert" if obj is SyncObject.EVENT else "update_or_create")

    text = export_sync(config)
    env = {"AMPLITUDE_API_KEY": KEY, "AMPLITUDE_SECRET_KEY": SECRET, "WAREHOUSE_PASSWORD": "p%40ss"}
    assert parse_config(text, env) == config
    other = Workspace(tmp_path / "other")
    assert other.get(SavedSync, other.import_sync(text, env).name) == saved
    assert other.sync_config("objects") == config


def test_the_file_holds_only_the_keys_of_the_object() -> None:
    def exported(obj: SyncObject, options: SyncOptions, user_key: str | None = None) -> str:
        sync = Sync("s", obj, "update_or_create", "k", (Mapping_("a", "a"),), user_key, options)
        return export_sync(SyncConfig(Source(Secret("sqlite://")), Destination(
            "D", Secret(KEY), None, Region.US, None), Model("m", "select 1"), sync))  # fmt: skip

    user = exported(SyncObject.USER, SyncOptions())
    assert "synthetic_event" not in user and "skip_user_properties_sync" not in user
    assert 'synthetic_event = "Updated"' in exported(SyncObject.USER, SyncOptions(synthetic_event="Updated"))
    group = exported(SyncObject.GROUP, SyncOptions(group_type="org", synthetic_event="left over"))
    assert 'group_type = "org"' in group and "synthetic_event" not in group and "id_type" not in group
    event = exported(SyncObject.EVENT, SyncOptions(event_type="Paid", time_column="at"))
    assert 'id_type = "user"' in event and 'event_type = "Paid"' in event and 'time_column = "at"' in event
    assert "skip_user_properties_sync = true" in event and "insert_id_column" not in event
    off = SyncOptions(event_type="Paid", time_column="at", skip_user_properties_sync=False)
    assert "skip_user_properties_sync = false" in exported(SyncObject.EVENT, off)


def test_a_workspace_saved_before_sync_options_still_loads(tmp_path) -> None:
    import json

    ws = filled(tmp_path)
    data = json.loads(ws.path.read_text())
    del data["syncs"]["ltv-sync"]["options"]
    ws.path.write_text(json.dumps(data))
    saved = ws.get(SavedSync, "ltv-sync")
    assert saved.options == SyncOptions() and saved.user_key == "uid"
    assert ws.sync_config("ltv-sync").sync.behavior == "update_or_create"


def test_options_another_object_left_behind_never_reach_the_sync(tmp_path) -> None:
    ws = filled(tmp_path)
    leftovers = SyncOptions(group_type="company", time_column="at", synthetic_event="Updated")
    ws.save(SavedSync("user-sync", "ltv", "Prod", SyncObject.USER, "user_id", (Mapping_("ltv", "ltv"),),
                      "uid", leftovers))  # fmt: skip
    sync = ws.sync_config("user-sync").sync
    assert sync.options == SyncOptions(synthetic_event="Updated") and sync.user_key is None


def test_a_promotion_changes_only_the_destination_and_saves_only_when_asked(tmp_path) -> None:
    ws = filled(tmp_path)
    staging = Destination("Staging", Secret("s" * 32), None, Region.US, "http://127.0.0.1:9")
    ws.save(staging)
    config = ws.sync_config("ltv-sync")
    moved = promoted(config, staging)
    assert moved.destination == staging and moved.sync == config.sync and moved.model == config.model
    assert ws.get(SavedSync, "ltv-sync").destination == "Prod"  # building it saves nothing
    assert ws.syncs_sending_to("Prod") == ["ltv-sync"] and ws.syncs_sending_to("Staging") == []

    saved = ws.set_destination("ltv-sync", "Staging")
    assert saved.destination == "Staging" and ws.sync_config("ltv-sync") == moved
    assert ws.syncs_sending_to("Staging") == ["ltv-sync"] and ws.names(SavedSync) == ["ltv-sync"]
    with pytest.raises(ConfigError, match="no destination named 'Nope'"):
        ws.set_destination("ltv-sync", "Nope")

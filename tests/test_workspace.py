"""Saved objects persist owner-only, keys out of the file, renames follow references, files round-trip."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keyring.backends import fail
from support import TEST_DESTINATION, MemoryKeyring, open_state

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
from amp_sync.state import StateStore
from amp_sync.vault import SECRETS_FILE, Vault
from amp_sync.workspace import (
    SavedModel,
    SavedSync,
    Warehouse,
    Workspace,
    _toml,
    described,
    export_sync,
    promoted,
    shown_url,
)

KEY, SECRET = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
ENV = {"AMPLITUDE_API_KEY": KEY, "AMPLITUDE_SECRET_KEY": SECRET, "WAREHOUSE_PASSWORD": "p%40ss"}


def open_ws(home: Path, env=None, keyring=None) -> Workspace:
    """A workspace whose typed secrets go to `keyring` (default: none, so to secrets.json)."""
    return Workspace(home, env=env, vault=Vault(home, keyring if keyring is not None else fail.Keyring()))


def filled(tmp_path) -> Workspace:
    ws = open_ws(tmp_path / "home")
    ws.save(Destination("Prod", Secret(KEY), Secret(SECRET), Region.EU, None))
    ws.save(Warehouse("wh", Secret("postgresql+psycopg://analyst:p%40ss@db.example:5432/prod")))
    ws.save(SavedModel("ltv", "wh", 'select user_id, ltv\nfrom users\nwhere note = \'a """ b\''))
    mappings = (Mapping_("ltv", "lifetime_value", Operation.ADD),)
    ws.save(SavedSync("ltv-sync", "ltv", "Prod", SyncObject.DEVICE, "user_id", mappings, "uid"))
    return ws


def test_saved_objects_survive_a_restart(tmp_path) -> None:
    filled(tmp_path)
    again = open_ws(tmp_path / "home")
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
    assert parse_config(text, ENV) == config
    assert parse_config(export_sync(config, with_secrets=True), {}) == config

    other = open_ws(tmp_path / "other", env=ENV)  # the placeholders are read when used
    saved = other.import_sync(text)
    assert other.sync_config(saved.name) == config


def test_first_start_defaults(tmp_path) -> None:
    ws = open_ws(tmp_path / "home")
    ws.ensure_defaults("http://127.0.0.1:8766", "duckdb:///demo.duckdb")
    assert ws.names(Destination) == ["Amplitude sandbox"] and len(ws.names(Warehouse)) == 1
    ws.delete(Destination, "Amplitude sandbox")
    ws.ensure_defaults("http://127.0.0.1:8766", "duckdb:///demo.duckdb")  # not recreated once set up
    assert ws.names(Destination) == []


def test_a_broken_workspace_file_is_a_clear_error(tmp_path) -> None:
    ws = open_ws(tmp_path)
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
    assert open_ws(ws.home).get(SavedSync, "objects") == saved  # survives a restart
    config = ws.sync_config("objects")
    assert config.sync.options == options
    assert config.sync.behavior == ("insert" if obj is SyncObject.EVENT else "update_or_create")

    text = export_sync(config)
    assert parse_config(text, ENV) == config
    other = open_ws(tmp_path / "other", env=ENV)
    assert other.get(SavedSync, other.import_sync(text).name) == saved
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


# --- secrets at rest: ${VAR} references, the keyring, the owner-only file -------------------

PG = "postgresql+psycopg://analyst:p%40ss@db.example:5432/prod"
BACKENDS = ["keyring", "no keyring"]


def backend_for(kind: str, items: dict) -> object:
    return MemoryKeyring(items) if kind == "keyring" else fail.Keyring()


@pytest.mark.parametrize("kind", BACKENDS)
def test_typed_keys_and_passwords_go_to_the_vault_and_the_file_keeps_where(tmp_path, kind) -> None:
    items: dict = {}
    ws = open_ws(tmp_path / "home", keyring=backend_for(kind, items))
    ws.save(Destination("Prod", Secret(KEY), Secret(SECRET), Region.EU, None))
    ws.save(Warehouse("wh", Secret(PG)))
    text = ws.path.read_text()
    assert KEY not in text and SECRET not in text and "p%40ss" not in text
    assert json.loads(text)["format"] == 2
    again = open_ws(ws.home, keyring=backend_for(kind, items))
    destination = again.get(Destination, "Prod")
    assert (destination.api_key.reveal(), destination.secret_key.reveal()) == (KEY, SECRET)
    assert again.get(Warehouse, "wh").url.reveal() == PG
    secrets_file = ws.home / SECRETS_FILE
    if kind == "keyring":
        assert not secrets_file.exists() and sorted(items.values()) == sorted([KEY, SECRET, PG])
        names = [name for _, name in items]
        assert all(str(ws.home.absolute()) in name for name in names)  # the home, object and field
        assert f"destination 'Prod' api_key in {ws.home.absolute()}" in names
        assert described(again.listed(Destination, "Prod").api_key) == "••••cdef, kept in the system keyring"
    else:
        assert KEY in secrets_file.read_text() and stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        assert described(again.listed(Destination, "Prod").api_key) == (
            f"••••cdef, kept in an owner-only file {secrets_file}, no system keyring is available"
        )


def test_a_reference_is_saved_as_written_and_read_each_time_it_is_used(tmp_path) -> None:
    env: dict[str, str] = {}
    ws = open_ws(tmp_path / "home", env=env)
    ws.save(Destination("Prod", Secret("${PROD_KEY}"), None, Region.EU, None))
    ws.save(Warehouse("pg", Secret("postgresql+psycopg://analyst:${PG_PASSWORD}@db.example/prod")))
    assert '"api_key": "${PROD_KEY}"' in ws.path.read_text() and not (ws.home / SECRETS_FILE).exists()

    with pytest.raises(ConfigError) as err:
        ws.get(Destination, "Prod")
    assert err.value.problems == [
        "environment variable PROD_KEY is not set (used in the API key of the destination 'Prod')"
    ]
    with pytest.raises(ConfigError, match=r"PG_PASSWORD is not set .* the warehouse 'pg'"):
        ws.all(Warehouse)
    listed = ws.listing(Destination)  # a list still shows it, and says why it cannot be used
    assert [d.name for d in listed] == ["Prod"]
    assert described(listed[0].api_key) == "read from ${PROD_KEY} (not set)"
    assert shown_url(ws.listed(Warehouse, "pg")) == (
        "postgresql+psycopg://analyst:***@db.example/prod (read from ${PG_PASSWORD}: not set)"
    )
    assert ws.names(Destination) == ["Prod"]

    env.update(PROD_KEY=KEY, PG_PASSWORD="s3cret")  # set later: read at the next use
    assert ws.get(Destination, "Prod").api_key.reveal() == KEY
    assert ws.get(Warehouse, "pg").url.reveal() == "postgresql+psycopg://analyst:s3cret@db.example/prod"
    assert described(ws.listed(Destination, "Prod").api_key) == "••••cdef, read from ${PROD_KEY}"
    env["PROD_KEY"] = "another-key-000000000000"
    assert ws.get(Destination, "Prod").api_key.reveal() == "another-key-000000000000"


def test_saving_an_object_read_back_keeps_its_references(tmp_path) -> None:
    ws = open_ws(tmp_path / "home", env={"PROD_KEY": KEY})
    ws.save(Destination("Prod", Secret("${PROD_KEY}"), Secret(SECRET), Region.EU, None))
    for read in (ws.get(Destination, "Prod"), ws.listed(Destination, "Prod")):
        ws.save(replace(read, region=Region.US), previous_name="Prod")
        record = json.loads(ws.path.read_text())["destinations"]["Prod"]
        assert record["api_key"] == "${PROD_KEY}" and record["secret_key"]["vault"] == "file"
    assert ws.get(Destination, "Prod").region is Region.US


@pytest.mark.parametrize("kind", BACKENDS)
def test_renaming_moves_vault_entries_and_deleting_removes_them(tmp_path, kind) -> None:
    items: dict = {}
    ws = open_ws(tmp_path / "home", keyring=backend_for(kind, items))
    ws.save(Destination("Prod", Secret(KEY), Secret(SECRET), Region.EU, None))
    ws.save(Warehouse("wh", Secret(PG)))

    def kept() -> list[str]:
        if kind == "keyring":
            return sorted(name.split(" in ")[0] for _, name in items)
        return sorted(n.split(" in ")[0] for n in json.loads((ws.home / SECRETS_FILE).read_text())["secrets"])

    ws.save(replace(ws.listed(Destination, "Prod"), name="Production"), previous_name="Prod")
    ws.save(replace(ws.get(Warehouse, "wh"), name="warehouse"), previous_name="wh")
    assert kept() == [
        "destination 'Production' api_key", "destination 'Production' secret_key", "warehouse 'warehouse' url"
    ]  # fmt: skip
    assert ws.get(Destination, "Production").api_key.reveal() == KEY
    assert ws.get(Warehouse, "warehouse").url.reveal() == PG

    ws.save(
        Destination("Production", Secret("${PROD_KEY}"), None, Region.EU, None), previous_name="Production"
    )
    assert kept() == ["warehouse 'warehouse' url"]  # a key no longer typed leaves the vault
    ws.delete(Warehouse, "warehouse")
    assert kept() == []


def test_an_old_workspace_with_clear_keys_moves_them_to_the_vault_on_first_read(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    old = {  # format 1: no "format" key, keys and URLs as typed
        "destinations": {"Prod": {"name": "Prod", "api_key": KEY, "secret_key": "a${b", "region": "eu",
                                  "endpoint": None}},
        "warehouses": {"wh": {"name": "wh", "url": PG}, "demo": {"name": "demo", "url": "duckdb:////d.duckdb"}},
        "models": {}, "syncs": {},
    }  # fmt: skip
    (home / "workspace.json").write_text(json.dumps(old))
    ws = open_ws(home)
    assert ws.names(Warehouse) == ["demo", "wh"]  # a read is enough
    data = json.loads(ws.path.read_text())
    assert data["format"] == 2 and KEY not in ws.path.read_text() and "p%40ss" not in ws.path.read_text()
    assert data["warehouses"]["demo"]["url"] == "duckdb:////d.duckdb"  # holds no secret: stays in place
    destination = ws.get(Destination, "Prod")
    assert (destination.api_key.reveal(), destination.secret_key.reveal()) == (KEY, "a${b")  # no placeholder
    assert ws.get(Warehouse, "wh").url.reveal() == PG
    assert stat.S_IMODE((home / SECRETS_FILE).stat().st_mode) == 0o600


def test_exports_keep_references_and_write_vault_keys_as_the_default_placeholders(tmp_path) -> None:
    env = {"PROD_KEY": KEY, "PG_PASSWORD": "s3cret"}
    ws = open_ws(tmp_path / "home", env=env)
    ws.save(Destination("Prod", Secret("${PROD_KEY}"), Secret(SECRET), Region.EU, None))
    ws.save(Warehouse("pg", Secret("postgresql+psycopg://analyst:${PG_PASSWORD}@db.example/prod")))
    ws.save(SavedModel("ltv", "pg", "select user_id, '${not a variable}' as note from users"))
    ws.save(SavedSync("ltv-sync", "ltv", "Prod", SyncObject.USER, "user_id", (Mapping_("note", "note"),)))
    config = ws.sync_config("ltv-sync")
    text = export_sync(config)
    assert 'api_key = "${PROD_KEY}"' in text and 'secret_key = "${AMPLITUDE_SECRET_KEY}"' in text
    assert 'url = "postgresql+psycopg://analyst:${PG_PASSWORD}@db.example/prod"' in text
    assert "$${not a variable}" in text and KEY not in text and SECRET not in text and "s3cret" not in text
    assert parse_config(text, {**env, "AMPLITUDE_SECRET_KEY": SECRET}) == config

    unset = open_ws(ws.home, env={})  # a saved sync exports before its variables are set
    assert unset.export("ltv-sync") == text and unset.run_problems("ltv-sync")
    with pytest.raises(ConfigError, match="PROD_KEY is not set"):
        unset.export("ltv-sync", with_secrets=True)
    assert ws.export("ltv-sync", with_secrets=True) == export_sync(config, with_secrets=True)

    ws.save(Warehouse("pg", Secret(PG)), previous_name="pg")  # now a typed password
    assert 'url = "postgresql+psycopg://analyst:${WAREHOUSE_PASSWORD}@db.example:5432/prod"' in (
        export_sync(ws.sync_config("ltv-sync"))
    )


PG_URL_OF = "the URL of the warehouse 'users warehouse'"
KEY_OF = "the API key of the destination 'Sandbox'"


def test_an_import_saves_references_even_when_their_variables_are_not_set(tmp_path, monkeypatch) -> None:
    from support import sync_file_text

    text = sync_file_text("postgresql+psycopg://analyst:${WAREHOUSE_PASSWORD}@db/prod", "http://127.0.0.1:9")
    text = text.replace('api_key = "sandbox-api-key"', 'api_key = "${AMPLITUDE_API_KEY}"')
    ws = open_ws(tmp_path / "home", env={})
    saved = ws.import_sync(text)
    assert ws.run_problems(saved.name) == [
        f"environment variable AMPLITUDE_API_KEY is not set (used in {KEY_OF})",
        f"environment variable WAREHOUSE_PASSWORD is not set (used in {PG_URL_OF})",
    ]
    record = json.loads(ws.path.read_text())
    assert record["destinations"]["Sandbox"]["api_key"] == "${AMPLITUDE_API_KEY}"

    typed = ws.import_sync(text, typed={"AMPLITUDE_API_KEY": KEY})  # a key typed beside the file
    assert ws.get(Destination, "Sandbox").api_key.reveal() == KEY and KEY not in ws.path.read_text()
    assert ws.run_problems(typed.name) == [
        f"environment variable WAREHOUSE_PASSWORD is not set (used in {PG_URL_OF})"
    ]
    with pytest.raises(ConfigError, match="environment variable SCHEMA is not set"):
        ws.import_sync(text.replace("from users", "from ${SCHEMA}.users"))  # not a key: read at import


@pytest.mark.parametrize("typed", ["${ KEY }", "abc${", "${a-b}"])
def test_a_malformed_placeholder_typed_into_a_form_is_refused(tmp_path, typed) -> None:
    ws = open_ws(tmp_path / "home")
    with pytest.raises(ConfigError, match=r"the API key of the destination 'Prod': malformed placeholder"):
        ws.save(Destination("Prod", Secret(typed), None, Region.EU, None))
    assert ws.names(Destination) == []


# --- names: matched in full; no two syncs that differ only in case ---------------------------


def test_sync_names_that_differ_only_in_case_are_refused(tmp_path) -> None:
    ws = filled(tmp_path)
    sync = ws.get(SavedSync, "ltv-sync")
    with pytest.raises(
        ConfigError, match="a sync named 'ltv-sync' already exists: names that differ only in case"
    ):
        ws.save(replace(sync, name="LTV-Sync"))
    text = export_sync(ws.sync_config("ltv-sync")).replace('name = "ltv-sync"', 'name = "LTV-SYNC"')
    with pytest.raises(ConfigError, match="share one state file on macOS and Windows"):
        ws.import_sync(text, env=ENV)
    ws.save(replace(sync, name="LTV-sync"), previous_name="ltv-sync")  # a rename of the sync itself
    assert ws.names(SavedSync) == ["LTV-sync"]


def test_state_for_a_name_that_differs_only_in_case_is_refused(tmp_path) -> None:
    store = StateStore.open(tmp_path, "foo", TEST_DESTINATION)
    store.close()
    with pytest.raises(StateError, match=r"the state of the sync 'foo' is at .*foo\.sqlite: sync names that"):
        StateStore.open(tmp_path, "Foo", TEST_DESTINATION)
    StateStore.open(tmp_path, "foo", TEST_DESTINATION).close()  # the same name opens as before


@pytest.mark.parametrize("name", ["ltv\n", "ltv\r\nx", "bad\x00name"])
def test_a_sync_name_with_a_line_break_is_refused(tmp_path, name) -> None:
    ws = filled(tmp_path)
    with pytest.raises(ConfigError, match="must not hold line breaks"):
        ws.save(replace(ws.get(SavedSync, "ltv-sync"), name=name))
    with pytest.raises(ConfigError, match="may hold only letters"):
        ws.save(replace(ws.get(SavedSync, "ltv-sync"), name="ltv/../x"))
    assert ws.names(SavedSync) == ["ltv-sync"]


@pytest.mark.parametrize("kind", [SavedModel, Warehouse, Destination])
def test_other_names_with_a_line_break_are_refused(tmp_path, kind) -> None:
    ws = filled(tmp_path)
    item = ws.get(kind, {SavedModel: "ltv", Warehouse: "wh", Destination: "Prod"}[kind])
    with pytest.raises(ConfigError, match="must not hold line breaks"):
        ws.save(replace(item, name="two\nlines"))


def test_a_warehouse_keeps_the_files_its_models_may_read_through_import_and_export(tmp_path) -> None:
    ws = open_ws(tmp_path / "home")
    text = (
        '[source]\nurl = "duckdb:///:memory:"\nread_files = ["/data/plans.csv", "/data/exports/"]\n'
        '[destination]\nname = "D"\napi_key = "${AMPLITUDE_API_KEY}"\nregion = "us"\n'
        '[model]\nname = "m"\nsql = "select 1"\n'
        '[sync]\nname = "s"\nobject = "user"\nkey = "user_id"\n'
        '[[sync.mappings]]\ncolumn = "plan"\nproperty = "plan"\n'
    )
    ws.import_sync(text, env={})
    saved = ws.get(Warehouse, "m warehouse")
    assert saved.read_files == ("/data/plans.csv", "/data/exports/")
    exported = ws.export("s")
    assert 'read_files = ["/data/plans.csv", "/data/exports/"]' in exported
    assert parse_config(exported, env={"AMPLITUDE_API_KEY": "k" * 32}).source.read_files == saved.read_files


def test_a_connection_check_is_kept_until_the_object_is_saved_again(tmp_path) -> None:
    from amp_sync.health import Check

    ws = filled(tmp_path)
    assert ws.checks(Warehouse) == {"wh": None} and ws.checks(Destination) == {"Prod": None}
    ws.record_check(Warehouse, "wh", Check(True, "connected", 1000.0))
    ws.record_check(Destination, "Prod", Check(False, "refused", 2000.0))
    again = open_ws(tmp_path / "home")  # read back from the file
    assert again.checks(Warehouse) == {"wh": Check(True, "connected", 1000.0)}
    assert again.checks(Destination) == {"Prod": Check(False, "refused", 2000.0)}
    assert again.get(Warehouse, "wh").url.reveal().endswith("@db.example:5432/prod")  # the object is intact

    again.save(again.listed(Warehouse, "wh"), previous_name="wh")  # a saved change is not yet checked
    assert again.checks(Warehouse) == {"wh": None}
    ws.record_check(Warehouse, "gone", Check(True, "connected", 1.0))  # deleted meanwhile: nothing kept
    assert "gone" not in ws.checks(Warehouse)


def test_a_connection_check_never_keeps_a_secret(tmp_path) -> None:
    from amp_sync.health import Check

    ws = filled(tmp_path)
    url = ws.get(Warehouse, "wh").url.reveal()
    ws.record_check(Warehouse, "wh", Check(False, f"cannot use {url}: p@ss and p%40ss refused", 1.0))
    ws.record_check(Destination, "Prod", Check(False, f"keys {KEY} and {SECRET} refused", 1.0))
    assert ws.checks(Warehouse)["wh"].reason == "cannot use ***: *** and *** refused"  # type: ignore[union-attr]
    assert ws.checks(Destination)["Prod"].reason == "keys *** and *** refused"  # type: ignore[union-attr]
    text = (tmp_path / "home" / "workspace.json").read_text()
    assert KEY not in text and SECRET not in text and "p%40ss" not in text and "p@ss" not in text


def test_a_check_the_file_cannot_read_counts_as_never_checked(tmp_path) -> None:
    ws = filled(tmp_path)
    data = json.loads(ws.path.read_text())
    data["warehouses"]["wh"]["last_check"] = {"ok": True, "at": "yesterday"}
    ws.path.write_text(json.dumps(data))
    assert ws.checks(Warehouse) == {"wh": None}


def test_importing_reuses_a_saved_destination_of_the_same_project_and_key(tmp_path) -> None:
    ws = open_ws(tmp_path / "home")
    ws.save(Destination("Prod (saved)", Secret("${AMPLITUDE_API_KEY}"), None, Region.EU, None))
    text = (
        '[source]\nurl = "duckdb:///:memory:"\n'
        '[destination]\nname = "Amplitude prod"\napi_key = "${AMPLITUDE_API_KEY}"\nregion = "eu"\n'
        '[model]\nname = "m"\nsql = "select 1"\n'
        '[sync]\nname = "s"\nobject = "user"\nkey = "user_id"\n'
        '[[sync.mappings]]\ncolumn = "plan"\nproperty = "plan"\n'
    )
    saved = ws.import_sync(text, env={})
    assert saved.destination == "Prod (saved)" and ws.names(Destination) == ["Prod (saved)"]
    in_the_us = text.replace('region = "eu"', 'region = "us"').replace('"s"', '"t"')
    other_region = ws.import_sync(in_the_us, env={})
    assert other_region.destination == "Amplitude prod"

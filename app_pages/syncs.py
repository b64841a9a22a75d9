"""Syncs: what data, where, how and which fields; saved syncs, exported and imported as files."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import streamlit as st
from streamlit_sortables import sort_items

import ui
from amp_sync import warehouse
from amp_sync.config import Destination, Mapping_, Operation, SyncObject
from amp_sync.errors import AmpSyncError
from amp_sync.mapping import (
    Draft,
    auto_map,
    build_sync,
    field_rows,
    guess_key,
    mappable_columns,
    mappings_from_rows,
    problems,
)
from amp_sync.workspace import KEY_VARS, SANDBOX_DESTINATION, SavedModel, SavedSync, Warehouse, export_sync

NEW = "New sync"
MODEL_COLUMNS = "Model columns"
PROPERTIES = "Amplitude properties"
OBJECTS = {"user": "User", "device": "Device"}
# Widgets whose values outlive a visit to another page (Streamlit drops the state of unrendered widgets).
KEPT = (
    "sync_pick",
    "sync_name",
    "sync_model",
    "sync_destination",
    "sync_object",
    "sync_key",
    "sync_user_key",
)
state = st.session_state


def _load(name: str | None) -> None:
    """Fill the form with a saved sync, or empty it for a new one."""
    saved = ws.get(SavedSync, name) if name else None
    state.sync_loaded = name
    state.sync_name = name or ""
    state.sync_key = saved.key if saved else None
    state.sync_user_key = saved.user_key if saved else None
    state.sync_mapped = [m.column for m in saved.mappings] if saved else []
    state.sync_fields = {m.column: m for m in saved.mappings} if saved else {}
    state.sync_basis = state.sync_table_cols = None  # rebuild the mapper and the table
    state.sync_confirm_delete = False
    if saved:
        state.sync_model, state.sync_destination = saved.model, saved.destination
        state.sync_object = str(saved.object)
        state.selected_sync = name  # the Preview page preselects it


def _on_pick() -> None:
    ui.attempt(lambda: _load(None if state.sync_pick == NEW else state.sync_pick))


def _after(message: str, pick: str, widgets: dict[str, Any] | None = None) -> None:
    """Show `message` on the next run with `pick` loaded (and `widgets` set before they render)."""
    state.sync_flash = message
    state.sync_next = pick
    state.sync_pending = widgets or {}
    st.rerun()


def _apply_pending(syncs: list[str], models: list[str], destinations: list[str]) -> None:
    for k, v in state.pop("sync_pending", {}).items():
        state[k] = v
    if "sync_pick" not in state:  # first visit, or back from another page
        state.update({k: v for k, v in state.get("sync_kept", {}).items() if k not in state})
        state.sync_table_cols = None
    if "sync_next" in state:
        state.sync_pick = state.pop("sync_next")
        _load(None if state.sync_pick == NEW else state.sync_pick)
    if state.get("sync_pick") not in [NEW, *syncs]:
        state.sync_pick = NEW
        _load(None)
    if state.get("sync_model") not in models and models:
        state.sync_model = models[0]
    if state.get("sync_destination") not in destinations and destinations:
        default = SANDBOX_DESTINATION if SANDBOX_DESTINATION in destinations else destinations[0]
        state.sync_destination = default
    state.setdefault("sync_object", "user")
    state.setdefault("sync_ver", 0)
    state.setdefault("sync_table_ver", 0)


def _columns(model: SavedModel) -> list[str] | None:
    """The model's columns, read once per (warehouse URL, SQL); None after showing why not."""
    cache = state.setdefault("sync_columns", {})
    try:
        url = ws.get(Warehouse, model.warehouse).url.reveal()
        if (url, model.sql) not in cache:
            with st.spinner("Reading the model's columns…"):
                cache[(url, model.sql)] = warehouse.sample(url, model.sql, limit=20).columns
        return list(cache[(url, model.sql)])
    except AmpSyncError as exc:
        ui.show_error(exc)
        st.page_link(ui.MODELS, label="Fix the model on the Models page", icon="📝")
        return None


def _import_section(open_: bool) -> None:
    with st.expander("Import a sync file", expanded=open_):
        upload = st.file_uploader("Sync file (.toml)", type=["toml"], key="sync_import_file")
        text = st.text_area("…or paste it", key="sync_import_text", height=150)
        st.caption(
            f"Placeholders such as ${{{KEY_VARS[0]}}} are read from the environment, or from the keys "
            "typed here (saved with the destination, never shown)."
        )
        api, secret = st.columns(2)
        keys = (
            api.text_input("API key", type="password", key="sync_import_api_key"),
            secret.text_input("Secret key (optional)", type="password", key="sync_import_secret_key"),
        )
        if st.button("Import", key="sync_import"):
            body = upload.getvalue().decode("utf-8", errors="replace") if upload else text
            env = {**os.environ, **{var: key for var, key in zip(KEY_VARS, keys, strict=True) if key}}
            saved = ui.attempt(lambda: ws.import_sync(body, env))
            if saved:
                cleared = {"sync_import_text": "", "sync_import_api_key": "", "sync_import_secret_key": ""}
                _after(
                    f"Imported the sync {saved.name!r} with its model and destination.", saved.name, cleared
                )


def _where(columns: list[str], destinations: list[str]) -> tuple[str, SyncObject, str | None]:
    st.subheader("2. Where")
    destination = st.selectbox("Destination", destinations, key="sync_destination")
    obj = SyncObject(st.radio("Amplitude object", list(OBJECTS), format_func=OBJECTS.get, key="sync_object"))
    st.caption(
        "Choose **Device** when your rows are devices that can be associated with users; then pick "
        "the user field (the column with the user id) so each device joins its user's profile. "
        "Otherwise choose **User**."
    )
    user_key = None
    if obj is SyncObject.DEVICE:
        user_key = st.selectbox(
            "User field (optional)",
            [None, *columns],
            format_func=lambda c: "No user field" if c is None else c,
            key="sync_user_key",
        )
    return destination, obj, user_key


def _how(columns: list[str], obj: SyncObject) -> str | None:
    st.subheader("3. How")
    ids = "Device ID" if obj is SyncObject.DEVICE else "User ID"
    st.markdown(
        "**Update or Create**: each row updates the Amplitude "
        f"{obj.value} with that {ids}, creating it if Amplitude has not seen it; only the "
        "properties that changed since the last run are sent. It is the only behaviour: "
        f"Amplitude matches only on its own {ids}, so the key column must hold exactly those ids."
    )
    return st.selectbox(
        "Key column",
        [None, *columns],
        format_func=lambda c: "Choose a column" if c is None else c,
        key="sync_key",
    )


def _mapper(columns: list[str], model: str, key: str | None, user_key: str | None) -> tuple[Mapping_, ...]:
    st.subheader("4. Which fields")
    basis, previous = (model, tuple(columns), key, user_key), state.get("sync_basis")
    if previous != basis:  # a new item list reaches sort_items only under a new key
        if previous is not None and previous[0] != model:  # another model: keep what it returns
            state.sync_mapped = [c for c in state.sync_mapped if c in columns]
        state.sync_basis = basis
        state.sync_ver += 1
    st.caption(f"Drag columns from **{MODEL_COLUMNS}** into **{PROPERTIES}**, then name each property.")
    if st.button("Auto-map all columns", key="sync_automap"):
        state.sync_mapped = auto_map(columns, key, user_key, state.sync_mapped)
        state.sync_ver += 1
    mapped = list(state.sync_mapped)
    unmapped = [c for c in mappable_columns(columns, key, user_key) if c not in mapped]
    board = sort_items(
        [{"header": MODEL_COLUMNS, "items": unmapped}, {"header": PROPERTIES, "items": mapped}],
        multi_containers=True,
        direction="vertical",
        key=f"mapper_{state.sync_ver}",
    )
    state.sync_mapped = next((list(c["items"]) for c in board or [] if c.get("header") == PROPERTIES), [])
    return _fields_table(state.sync_mapped)


def _fields_table(mapped: list[str]) -> tuple[Mapping_, ...]:
    if not mapped:
        st.info("No field mapped yet: drag a column into Amplitude properties, or press Auto-map.")
        return ()
    if tuple(mapped) != state.get("sync_table_cols"):  # other rows: a fresh table from what is known
        state.sync_table_cols = tuple(mapped)
        state.sync_table_ver += 1
        state.sync_table_rows = field_rows(mapped, state.sync_fields)
    state.sync_fields_key = f"sync_fields_{state.sync_table_ver}"
    edited = st.data_editor(
        pd.DataFrame(state.sync_table_rows, columns=["column", "property", "operation"], dtype=object),
        key=state.sync_fields_key,
        hide_index=True,
        num_rows="fixed",
        disabled=["column"],
        column_config={
            "column": st.column_config.TextColumn("Model column"),
            "property": st.column_config.TextColumn("Amplitude property", required=True),
            "operation": st.column_config.SelectboxColumn(
                "Operation", options=[str(op) for op in Operation], required=True
            ),
        },
    )
    st.caption("$set overwrites; $setOnce keeps the first value; $add adds the increase since the last run.")
    mappings = ui.attempt(lambda: mappings_from_rows(edited.to_dict("records"))) or ()
    state.sync_fields.update({m.column: m for m in mappings})
    return mappings


def _save(draft: Draft, columns: list[str]) -> None:
    saved = ws.save(build_sync(draft, columns), previous_name=state.sync_loaded)
    state.selected_sync = saved.name
    _after(f"Saved the sync {saved.name!r}.", saved.name)


def _delete(name: str) -> None:
    ws.delete(SavedSync, name)
    if state.get("selected_sync") == name:
        del state["selected_sync"]
    _after(f"Deleted the sync {name!r}.", NEW)


def _saved_actions(name: str) -> None:
    st.page_link(ui.PREVIEW, label=f"Preview {name!r}: see exactly what would change", icon="🔍")
    if st.button("Delete sync", key="sync_delete"):
        state.sync_confirm_delete = True
    if state.get("sync_confirm_delete"):
        st.warning(f"Delete the sync {name!r}? Its run history stays on disk under that name.")
        yes, no = st.columns(2)
        if yes.button("Yes, delete it", key="sync_delete_yes"):
            ui.attempt(lambda: _delete(name))
        if no.button("Cancel", key="sync_delete_no"):
            state.sync_confirm_delete = False
            st.rerun()
    st.subheader("Export")
    with_keys = st.checkbox("Include keys", key="sync_export_keys")
    if with_keys:
        st.warning("The file will hold the API key, secret key and any warehouse password in clear text.")
    text = ui.attempt(lambda: export_sync(ws.sync_config(name), with_secrets=with_keys))
    if text is None:
        return
    if not with_keys:
        st.code(text, language="toml")
    st.download_button(
        "Download the sync file", text, file_name=f"{name}.toml", mime="application/toml", key="sync_export"
    )


st.title("Syncs")
st.caption("A sync sends a model's rows to Amplitude as user or device properties, only what changed.")
ws = ui.attempt(ui.workspace)
names = ui.attempt(lambda: [ws.names(k) for k in (SavedModel, SavedSync, Destination)]) if ws else None
if ws is None or names is None:
    st.stop()
models, syncs, destinations = names
_apply_pending(syncs, models, destinations)
if flash := state.pop("sync_flash", None):
    st.success(flash)
st.selectbox("Sync", [NEW, *syncs], key="sync_pick", on_change=_on_pick)
_import_section(open_=not models)
state.sync_kept = {k: state[k] for k in KEPT if k in state}
if not models:
    st.info(
        "A sync sends the rows of a saved model: write one on the Models page first (templates are there)."
    )
    st.page_link(ui.MODELS, label="Go to Models", icon="📝")
    st.stop()
if not destinations:
    st.info("Add an Amplitude destination first.")
    st.page_link(ui.DESTINATIONS, label="Go to Destinations", icon="🎯")
    st.stop()

st.subheader("1. What data")
model = ws.get(SavedModel, st.selectbox("Model", models, key="sync_model"))
st.caption(f"Runs on the warehouse {model.warehouse!r}. Edit its SQL on the Models page.")
columns = _columns(model)
if columns is None:
    st.stop()
if state.get("sync_key") not in columns:
    state.sync_key = guess_key(columns, SyncObject(state.sync_object))
if state.get("sync_user_key") not in columns:
    state.sync_user_key = None

destination, obj, user_key = _where(columns, destinations)
key = _how(columns, obj)
mappings = _mapper(columns, model.name, key, user_key)

st.subheader("Save")
name = st.text_input("Sync name", key="sync_name", placeholder="ltv-to-amplitude")
if state.sync_loaded and name.strip() != state.sync_loaded:
    st.caption("Saving renames the sync; its snapshot and run history move with it.")
draft = Draft(name, model.name, destination, obj, key, mappings, user_key)
found = problems(draft, columns)
if found:
    st.warning("Before saving:\n" + "\n".join(f"- {p}" for p in found))
if st.button("Save sync", key="sync_save", type="primary", disabled=bool(found)):
    ui.attempt(lambda: _save(draft, columns))
state.sync_kept = {k: state[k] for k in KEPT if k in state}
if state.sync_loaded:
    _saved_actions(state.sync_loaded)

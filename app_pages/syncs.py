"""Syncs: what data, where, how and which fields; saved syncs, exported, imported and promoted."""

from __future__ import annotations

from typing import Any

import streamlit as st

import ui
import ui_mapper
from amp_sync import catalog, warehouse
from amp_sync.config import Destination, Mapping_, SyncObject, SyncOptions
from amp_sync.errors import AmpSyncError
from amp_sync.mapping import (
    Draft,
    auto_map,
    build_sync,
    guess_event_type_column,
    guess_key,
    guess_time_column,
    key_words,
    mappable_columns,
    problems,
    unsaved,
)
from amp_sync.workspace import KEY_VARS, SANDBOX_DESTINATION, SavedModel, SavedSync, Warehouse

NEW = "New sync"
OBJECTS = {"user": "User", "device": "Device", "group": "Group", "event": "Event"}
ID_TYPES = {"user": "User ID", "device": "Device ID"}
TYPE_SOURCES = {"constant": "The same for every row", "column": "From a column"}
SYNTHETIC_DEFAULT = "Updated by amp_sync"
ABOUT_OBJECT = {
    "user": "Each row updates the properties of one Amplitude user.",
    "device": (
        "Choose **Device** when your rows are devices that can be associated with users; then pick "
        "the user field (the column with the user id) so each device joins its user's profile. "
        "Otherwise choose **User**."
    ),
    "group": (
        "Each row updates the properties of one group (an account, a company, a team): the key "
        "column holds the group's value, of the group type named here. Group properties need "
        "Amplitude's Accounts add-on."
    ),
    "event": (
        "Each row becomes one event, at the time its row says: a backfill of historical events. "
        "Events are sent once and never updated."
    ),
}
SYNTHETIC_NOTE = (
    "Amplitude shows an updated user property only on events that arrive after the update. With "
    "this on, every profile a run updates also gets one event carrying the new values, so charts "
    "show them at once. Each event counts toward your event volume: mark the event **inactive** in "
    "Amplitude (Data → Events → Edit Activity) so it does not count users as active."
)
# The option widgets and their values for a new sync (the event type's source is guessed).
OPTION_DEFAULTS: dict[str, Any] = {
    "sync_group_type": "",
    "sync_id_type": "user",
    "sync_event_type": "",
    "sync_event_type_column": None,
    "sync_time_column": None,
    "sync_insert_id_column": None,
    "sync_skip_user_props": True,
    "sync_synthetic": False,
    "sync_synthetic_name": SYNTHETIC_DEFAULT,
}
# Widgets whose values outlive a visit to another page (Streamlit drops the state of unrendered widgets).
KEPT = (
    "sync_pick",
    "sync_name",
    "sync_model",
    "sync_destination",
    "sync_object",
    "sync_key",
    "sync_user_key",
    "sync_type_source",
    *OPTION_DEFAULTS,
)
state = st.session_state


def _option_state(o: SyncOptions) -> dict[str, Any]:
    """The option widgets' values for saved options."""
    return {
        "sync_group_type": o.group_type or "",
        "sync_id_type": o.id_type,
        "sync_type_source": "column" if o.event_type_column else "constant",
        "sync_event_type": o.event_type or "",
        "sync_event_type_column": o.event_type_column,
        "sync_time_column": o.time_column,
        "sync_insert_id_column": o.insert_id_column,
        "sync_skip_user_props": o.skip_user_properties_sync,
        "sync_synthetic": o.synthetic_event is not None,
        "sync_synthetic_name": o.synthetic_event or SYNTHETIC_DEFAULT,
    }


def _load(name: str | None) -> None:
    """Fill the form with a saved sync, or empty it for a new one."""
    saved = ws.get(SavedSync, name) if name else None
    state.sync_loaded = name
    state.sync_name = name or ""
    state.sync_key = saved.key if saved else None
    state.sync_user_key = saved.user_key if saved else None
    ui_mapper.load(saved.mappings if saved else ())
    state.sync_basis = None
    state.pop("sync_left_unsaved", None)
    state.sync_confirm_delete = False
    state.pop("sync_type_source", None)  # guessed from the columns unless saved
    state.update(_option_state(saved.options) if saved else OPTION_DEFAULTS)
    if saved:
        state.sync_model, state.sync_destination = saved.model, saved.destination
        state.sync_object = str(saved.object)
        state.selected_sync = name  # the Preview page preselects it


def _on_object() -> None:
    state.sync_reguess = True  # another object: its key column is probably another one


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
        if state.get("sync_unsaved_of"):  # Streamlit cannot hold the user on the page: say it now
            state.sync_left_unsaved = state.sync_unsaved_of
    if "sync_next" in state:
        state.sync_pick = state.pop("sync_next")
        _load(None if state.sync_pick == NEW else state.sync_pick)
    if state.get("sync_pick") not in [NEW, *syncs]:
        state.sync_pick = NEW
        _load(None)
    if state.get("sync_model") not in models and models:
        state.sync_model = models[0]
    if state.get("sync_destination") not in destinations and destinations:
        # Never a destination whose last check failed, while another one works.
        default = catalog.default_choice(ws, Destination, destinations, preferred=SANDBOX_DESTINATION)
        state.sync_destination = default or destinations[0]
    state.setdefault("sync_object", "user")


def _columns(model: SavedModel) -> list[str] | None:
    """The model's columns, read once per (warehouse URL, SQL); None after showing why not."""
    cache = state.setdefault("sync_columns", {})
    try:
        source = ws.get(Warehouse, model.warehouse)
        url, files = source.url.reveal(), source.read_files
        seen = (url, files, model.sql)
        if seen not in cache:
            with st.spinner("Reading the model's columns…"):
                cache[seen] = warehouse.sample(url, model.sql, 20, read_files=files).columns
        return list(cache[seen])
    except AmpSyncError as exc:
        ui.show_error(exc)
        st.page_link(ui.MODELS, label="Fix the model on the Models page", icon=":material/edit_note:")
        return None


def _import_section(open_: bool) -> None:
    if note := state.pop("sync_import_note", None):
        st.warning(ui.literal(note))
    with st.expander("Import a sync file", expanded=open_):
        upload = st.file_uploader("Sync file (.toml)", type=["toml"], key="sync_import_file")
        text = st.text_area("…or paste it", key="sync_import_text", height=150)
        st.caption(
            f"Placeholders such as `${{{KEY_VARS[0]}}}` in the keys and the warehouse URL are saved as "
            "written and read from the environment (or the app's secrets) each time the sync runs. "
            "A key typed here is saved instead, in the system keyring (or an owner-only file where "
            "there is none), and never shown."
        )
        api, secret = st.columns(2)
        keys = (
            api.text_input("API key", type="password", key="sync_import_api_key"),
            secret.text_input("Secret key (optional)", type="password", key="sync_import_secret_key"),
        )
        if st.button("Import", key="sync_import"):
            body = upload.getvalue().decode("utf-8", errors="replace") if upload else text
            typed = {var: key for var, key in zip(KEY_VARS, keys, strict=True) if key}
            saved = ui.attempt(lambda: ws.import_sync(body, typed=typed))
            if saved:
                missing = ws.run_problems(saved.name)
                if missing:
                    state.sync_import_note = f"Before “{saved.name}” can run: " + "; ".join(missing) + "."
                cleared = {"sync_import_text": "", "sync_import_api_key": "", "sync_import_secret_key": ""}
                _after(
                    f"Imported the sync {saved.name!r} with its model and destination.", saved.name, cleared
                )


def _kept(key: str, default: Any) -> None:
    """Give an option widget its value before it renders (hidden widgets lose theirs)."""
    if key not in state:
        state[key] = default


def _column_choice(
    label: str, columns: list[str], key: str, none: str, help_: str | None = None
) -> str | None:
    """A selectbox of the model's columns, with None meaning `none`."""
    if state.get(key) not in columns:
        state[key] = None
    return st.selectbox(
        label, [None, *columns], format_func=lambda c: none if c is None else c, key=key, help=help_,
        placeholder=none,  # what the browser shows for None
    )  # fmt: skip


def _where(columns: list[str], destinations: list[str]) -> tuple[str, SyncObject, str | None]:
    st.subheader("2. Where")
    labels = catalog.health_labels(ws, Destination)
    destination = st.selectbox(
        "Destination", destinations, key="sync_destination", format_func=lambda n: labels.get(n, n)
    )
    obj = SyncObject(
        st.radio(
            "Amplitude object", list(OBJECTS), format_func=OBJECTS.get, key="sync_object",
            horizontal=True, on_change=_on_object,
        )
    )  # fmt: skip
    st.caption(ABOUT_OBJECT[obj])
    if obj is SyncObject.GROUP:
        _kept("sync_group_type", "")
        st.text_input(
            "Group type", key="sync_group_type", placeholder="company",
            help="The kind of group every row is, e.g. company, account or team: the same for every row.",
        )  # fmt: skip
    if obj is SyncObject.EVENT:
        _kept("sync_id_type", "user")
        st.radio(
            "The key column holds", list(ID_TYPES), format_func=ID_TYPES.get, key="sync_id_type",
            horizontal=True, on_change=_on_object,
        )  # fmt: skip
    user_key = None
    if obj is SyncObject.DEVICE or (obj is SyncObject.EVENT and state.sync_id_type == "device"):
        user_key = _column_choice("User field (optional)", columns, "sync_user_key", "No user field")
    return destination, obj, user_key


def _how(columns: list[str], obj: SyncObject) -> str | None:
    st.subheader("3. How")
    ids = key_words(obj, state.get("sync_id_type", "user")).removeprefix("Amplitude ")
    if obj is SyncObject.EVENT:
        st.markdown(
            "**Insert**: each row is sent once, as one event. A row already sent is never sent "
            "again: Amplitude knows each event by its insert_id, and so does the snapshot of this "
            "sync. Events cannot be updated or reverted once Amplitude has them."
        )
    else:
        st.markdown(
            "**Update or Create**: each row updates the Amplitude "
            f"{obj.value} with that {ids}, creating it if Amplitude has not seen it; only the "
            "properties that changed since the last run are sent. It is the only behaviour: "
            f"Amplitude matches only on its own {ids}, so the key column must hold exactly those."
        )
    return st.selectbox(
        "Key column",
        [None, *columns],
        format_func=lambda c: "Choose a column" if c is None else c,
        key="sync_key",
        help=f"The column holding the {key_words(obj, state.get('sync_id_type', 'user'))}.",
        placeholder="Choose a column",
    )


def _event_type(columns: list[str]) -> tuple[str | None, str | None]:
    """The event type: a constant typed here, or the column holding it."""
    _kept("sync_type_source", "column" if guess_event_type_column(columns) else "constant")
    source = st.radio(
        "Event type",
        list(TYPE_SOURCES),
        format_func=TYPE_SOURCES.get,
        key="sync_type_source",
        horizontal=True,
    )
    if source == "constant":
        _kept("sync_event_type", "")
        return st.text_input("Event type name", key="sync_event_type", placeholder="Purchase"), None
    if state.get("sync_event_type_column") not in columns:
        state.sync_event_type_column = guess_event_type_column(columns)
    return None, _column_choice("Event type column", columns, "sync_event_type_column", "Choose a column")


def _event_options(columns: list[str]) -> SyncOptions:
    """The event type, time and insert_id columns, and whether user properties are kept."""
    constant, column = _event_type(columns)
    if state.get("sync_time_column") not in columns:
        state.sync_time_column = guess_time_column(columns)
    time_column = _column_choice(
        "Time column", columns, "sync_time_column", "Choose a column",
        "When each event happened: a timestamp (UTC unless it says otherwise), a date or epoch milliseconds.",
    )  # fmt: skip
    insert_id = _column_choice(
        "Insert ID column (optional)", columns, "sync_insert_id_column", "None: a hash of the row",
        "A unique id per event, such as the event's own id. Without one, a row edited after it was "
        "sent arrives as a new event.",
    )  # fmt: skip
    _kept("sync_skip_user_props", True)
    skip = st.checkbox(
        "Keep current user properties (skip user properties sync)", key="sync_skip_user_props",
        help="A backfilled event would otherwise set the user's current properties from its own, older ones.",
    )  # fmt: skip
    return SyncOptions(
        id_type=state.get("sync_id_type", "user"), event_type=constant, event_type_column=column,
        time_column=time_column, insert_id_column=insert_id, skip_user_properties_sync=skip,
    )  # fmt: skip


def _synthetic_option() -> str | None:
    """The optional "updated" event of user and device syncs: its name, or None when off."""
    _kept("sync_synthetic", False)
    on = st.toggle("Send a synthetic 'updated' event", key="sync_synthetic")
    st.caption(SYNTHETIC_NOTE)
    if not on:
        return None
    _kept("sync_synthetic_name", SYNTHETIC_DEFAULT)
    return str(st.text_input("Event name", key="sync_synthetic_name"))


def _options(columns: list[str], obj: SyncObject) -> SyncOptions:
    """What this object needs beyond the key column."""
    if obj is SyncObject.EVENT:
        return _event_options(columns)
    if obj is SyncObject.GROUP:
        return SyncOptions(group_type=state.get("sync_group_type", ""))
    return SyncOptions(synthetic_event=_synthetic_option())


def _mapper(
    columns: list[str], model: str, key: str | None, user_key: str | None, roles: list[str], destination: str
) -> tuple[Mapping_, ...]:
    st.subheader("4. Which fields")
    previous = state.get("sync_basis")
    if previous is not None and previous != model:  # another model: keep the rows it still returns
        ui_mapper.keep_only(columns)
    state.sync_basis = model
    obj = SyncObject(state.sync_object)
    st.caption(
        "Drag a model column into **Mapped columns** (drag the cards there to reorder them), then set "
        "each row's property and operation in place."
    )
    known = _known_properties(destination, obj)
    mappable = mappable_columns(columns, key, user_key, roles)
    automap = lambda: auto_map(columns, key, user_key, [m.column for m in ui_mapper.mappings()], roles)  # noqa: E731
    mappings = ui_mapper.field_mapper(mappable, obj, known, automap)
    if mappings and obj is not SyncObject.EVENT:
        st.caption(ui_mapper.OP_HELP)
    return mappings


def _known_properties(destination: str, obj: SyncObject) -> list[str]:
    """The project's user properties to pick from (user and device syncs), or why there are none."""
    if obj not in (SyncObject.USER, SyncObject.DEVICE):
        return []
    try:
        project = ws.get(Destination, destination)
        found = ui_mapper.known_properties(project)
    except AmpSyncError as exc:
        st.caption(
            f":material/info: Property names are typed: the destination's keys cannot be read ({exc})."
        )
        return []
    if found.reason:
        st.caption(f":material/info: Property names are typed, not picked: {found.reason}.")
    elif not found.names:
        st.caption(":material/info: Property names are typed: the project has no user properties yet.")
    else:
        st.caption(
            f":material/check_circle: Pick from the project's {len(found.names)} user properties, "
            "or type a new name."
        )
    return list(found.names)


def _unsaved_marker(mappings: tuple[Mapping_, ...]) -> None:
    """Mark the mapping unsaved beside the Save button, and remember it for a warning on return."""
    saved = ui.attempt(lambda: ws.get(SavedSync, state.sync_loaded).mappings) if state.sync_loaded else ()
    changed = unsaved(mappings, saved)
    state.sync_unsaved_of = (state.sync_loaded or "the new sync") if changed else None
    if changed:
        st.badge("Unsaved changes", icon=":material/edit:", color="orange")
    else:
        state.pop("sync_left_unsaved", None)


def _left_unsaved_warning() -> None:
    """Back on the page with a mapping left unsaved: say so, with Save below and Discard here."""
    of = state.get("sync_left_unsaved")
    if not of:
        return
    shown = of if of == "the new sync" else repr(of)
    st.warning(
        f"You left unsaved changes to the mapping of {shown}: Save them below, or Discard.",
        icon=":material/warning:",
    )
    st.button("Discard the changes", key="sync_discard", icon=":material/undo:", on_click=_discard)


def _discard() -> None:
    """Put the mapping back as it was saved (empty for a new sync); the rest of the form stays."""
    saved = ui.attempt(lambda: ws.get(SavedSync, state.sync_loaded).mappings) if state.sync_loaded else ()
    ui_mapper.load(saved or ())
    state.pop("sync_left_unsaved", None)


def _save(draft: Draft, columns: list[str]) -> None:
    saved = ws.save(build_sync(draft, columns), previous_name=state.sync_loaded)
    state.selected_sync = saved.name
    _after(f"Saved the sync {saved.name!r}.", saved.name)


def _delete(name: str) -> None:
    ws.delete(SavedSync, name)
    if state.get("selected_sync") == name:
        del state["selected_sync"]
    _after(f"Deleted the sync {name!r}.", NEW)


def _promote_section(name: str, destinations: list[str]) -> None:
    """Send the saved sync to another destination (sandbox to production), after a preview there."""
    st.subheader("Promote to another destination")
    current = ws.get(SavedSync, name).destination
    others = [d for d in destinations if d != current]
    if not others:
        st.caption("Add another destination on the Destinations page to promote this sync to it.")
        return
    labels = catalog.health_labels(ws, Destination)
    target = st.selectbox("Promote to", others, key="sync_promote_to", format_func=lambda n: labels.get(n, n))
    st.caption(
        "Previews the saved sync at that destination: a row it never sent there is new. Nothing is "
        f"saved or sent until you start it from the preview; what it sent to {current!r} stays as it was."
    )
    if st.button("Preview the promotion", key="sync_promote"):
        ui.ask_promotion(name, str(target))


def _saved_actions(name: str) -> None:
    if st.button(
        f"Preview {name!r}: see exactly what would change", key="sync_open_preview", icon=":material/preview:"
    ):
        ui.open_preview(name)  # the Preview page opens with it computed
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
    ui.attempt(lambda: _promote_section(name, destinations))
    st.subheader("Export")
    with_keys = st.checkbox("Include keys", key="sync_export_keys")
    if with_keys:
        st.warning("The file will hold the API key, secret key and any warehouse password in clear text.")
    text = ui.attempt(lambda: ws.export(name, with_secrets=with_keys))
    if text is None:
        return
    if not with_keys:
        st.code(text, language="toml")
    st.download_button(
        "Download the sync file", text, file_name=f"{name}.toml", mime="application/toml", key="sync_export"
    )


st.title("Syncs")
st.caption(
    "A sync sends a model's rows to Amplitude: as user, device or group properties (only what "
    "changed), or as events (each once)."
)
ws = ui.attempt(ui.workspace)
names = ui.attempt(lambda: [ws.names(k) for k in (SavedModel, SavedSync, Destination)]) if ws else None
if ws is None or names is None:
    st.stop()
models, syncs, destinations = names
_apply_pending(syncs, models, destinations)
if flash := state.pop("sync_flash", None):
    st.success(flash)
_left_unsaved_warning()
st.selectbox("Sync", [NEW, *syncs], key="sync_pick", on_change=_on_pick)
_import_section(open_=not models)
state.sync_kept = {k: state[k] for k in KEPT if k in state}
if not models:
    st.info(
        "A sync sends the rows of a saved model: write one on the Models page first (templates are there)."
    )
    st.page_link(ui.MODELS, label="Go to Models", icon=":material/code:")
    st.stop()
if not destinations:
    st.info("Add an Amplitude destination first.")
    st.page_link(ui.DESTINATIONS, label="Go to Destinations", icon=":material/target:")
    st.stop()

st.subheader("1. What data")
model = ws.get(SavedModel, st.selectbox("Model", models, key="sync_model"))
st.caption(f"Runs on the warehouse {model.warehouse!r}. Edit its SQL on the Models page.")
columns = _columns(model)
if columns is None:
    st.stop()
guessed = guess_key(columns, SyncObject(state.sync_object), state.get("sync_id_type", "user"))
reguess = state.pop("sync_reguess", False) and guessed
if state.get("sync_key") not in columns or reguess:
    state.sync_key = guessed
if state.get("sync_user_key") not in columns:
    state.sync_user_key = None

destination, obj, user_key = _where(columns, destinations)
key = _how(columns, obj)
options = _options(columns, obj)
roles = Draft("", None, None, obj, key, (), user_key, options).role_columns()
mappings = _mapper(columns, model.name, key, user_key, roles, destination)

st.subheader("Save")
name = st.text_input("Sync name", key="sync_name", placeholder="ltv-to-amplitude")
if state.sync_loaded and name.strip() != state.sync_loaded:
    st.caption("Saving renames the sync; its snapshot and run history move with it.")
draft = Draft(name, model.name, destination, obj, key, mappings, user_key, options)
found = problems(draft, columns)
if found:
    st.warning("Before saving:\n" + "\n".join(f"- {p}" for p in found))
with st.container(horizontal=True, vertical_alignment="center"):
    save_clicked = st.button(
        "Save sync", key="sync_save", type="primary", disabled=bool(found), icon=":material/save:"
    )
    _unsaved_marker(mappings)
if save_clicked:
    ui.attempt(lambda: _save(draft, columns))
state.sync_kept = {k: state[k] for k in KEPT if k in state}
if state.sync_loaded:
    _saved_actions(state.sync_loaded)

"""Destinations: the Amplitude projects syncs send to, their keys checked on Connect."""

from __future__ import annotations

import time

import streamlit as st

import ui
from amp_sync import runner
from amp_sync.catalog import destination_from_form, mark, widget_ids
from amp_sync.config import Destination, Region
from amp_sync.credentials import KeyCheck, check_keys
from amp_sync.errors import AmpSyncError
from amp_sync.health import Check
from amp_sync.workspace import Workspace, described, origin

REGIONS = [str(r) for r in Region]
KEY_HELP = (
    "Type the key, or `${VAR}` to read it from an environment variable each time it is used "
    "(`$${` writes a literal `${`)."
)
LEVELS = {
    "success": (st.success, ":material/check_circle:"),
    "warning": (st.warning, ":material/warning:"),
    "info": (st.info, ":material/info:"),
}
SAME_PROJECT = "Same Amplitude project, new key: keep what was sent"
SAME_PROJECT_HELP = (
    "Tick it when the new API key belongs to the same Amplitude project: the syncs using this "
    "destination keep what they sent and send only what changed. Untouched, they send every row "
    "again as new."
)


def load_form(destination: Destination | None) -> None:
    """Fill the form with a saved destination, key fields empty (empty keeps the keys), or clear it."""
    state = st.session_state
    state.dest_name = destination.name if destination else ""
    state.dest_api_key = state.dest_secret_key = ""
    state.dest_region = str(destination.region) if destination else str(Region.US)
    state.dest_endpoint = (destination.endpoint or "") if destination else ""
    state.dest_editing = destination.name if destination else None
    state.dest_same_project = False


def show_check(check: KeyCheck) -> None:
    if check.ok:
        st.success(check.message, icon=":material/check_circle:")
    else:
        st.error(check.message, icon=":material/error:")


def end_editing() -> None:
    """Leave edit mode: the form is for a new destination again."""
    load_form(None)


def api_key(ws: Workspace, name: str) -> str | None:
    """The saved destination's API key, or None when it cannot be read now."""
    try:
        return ws.get(Destination, name).api_key.reveal()
    except AmpSyncError:
        return None


def checked(ws: Workspace, name: str) -> KeyCheck:
    """Check the saved destination's keys and keep the verdict as its last check."""
    return ui.check_saved(ws, Destination, name, check_keys, KeyCheck, f"Checking the keys of “{name}”…")


def kept_words(ws: Workspace, name: str) -> list[str]:
    """Where each key of the saved destination `name` is kept, in words."""
    saved = ws.listed(Destination, name)
    keys = [("API key", saved.api_key), ("secret key", saved.secret_key)]
    return [f"The {label} of “{name}” is {origin(key)}." for label, key in keys if key is not None]


def connect(ws: Workspace, editing: str | None) -> bool:
    """Save the form's destination and check its keys; the outcome is shown after a rerun."""
    s = st.session_state
    current = ws.listed(Destination, editing) if editing else None  # keys kept as they are saved
    before = api_key(ws, editing) if editing else None
    destination = destination_from_form(
        s.dest_name, s.dest_api_key, s.dest_secret_key, s.dest_region, s.dest_endpoint, current
    )
    ws.save(destination, previous_name=editing)
    s.dest_kept = kept_words(ws, destination.name)
    check = checked(ws, destination.name)
    s.dest_flash = (destination.name, check)
    after = api_key(ws, destination.name)
    new_key = before is not None and after is not None and before != after
    if current is not None and s.get("dest_same_project"):
        s.dest_rekeyed = rekey_syncs(ws, destination.name)
    elif new_key and (syncs := ws.syncs_sending_to(destination.name)):
        names = ", ".join(f"“{n}”" for n in syncs)
        s.dest_rekeyed = [("info", f"New API key: {names} will send every row again as new.")]
    s.dest_next = None  # saved: edit mode ends, the list marks a refused check
    return True


def rekey_syncs(ws: Workspace, destination: str) -> list[tuple[str, str]]:
    """Give each sync using `destination` its state under the old key; what each said, with a level."""
    said = []
    for name in ws.syncs_sending_to(destination):
        try:
            words = runner.rekey(ws.sync_config(name), ui.home())
            said.append(("success", f"Sync “{name}”: {words}."))
        except AmpSyncError as exc:
            said.append(("warning", f"Sync “{name}”: {exc}."))
    return said or [("info", f"No saved sync uses “{destination}”: there was nothing to keep.")]


def forget_if_editing(name: str) -> None:
    """A deleted destination can no longer be the one in the form."""
    if st.session_state.get("dest_editing") == name:
        load_form(None)


def render_flash() -> None:
    name, check = st.session_state.pop("dest_flash", (None, None))
    if check is not None:
        show_check(check)
        if not check.ok:
            st.caption(
                f"“{name}” is saved, marked as failing. Press Edit on it below to fix its keys, region "
                "or endpoint, then Connect again."
            )
    for words in st.session_state.pop("dest_kept", []):
        st.caption(ui.literal(words))
    for level, words in st.session_state.pop("dest_rekeyed", []):
        show, icon = LEVELS.get(level, LEVELS["info"])
        show(words, icon=icon)
    if deleted := st.session_state.pop("dest_deleted", None):
        st.success(f"Deleted the destination “{deleted}”.", icon=":material/delete:")


def render_form(ws: Workspace) -> None:
    editing = st.session_state.get("dest_editing")
    st.subheader(f"Edit destination “{editing}”" if editing else "New Amplitude destination")
    keep = " (leave empty to keep the saved one)" if editing else ""
    with st.form("destination_form"):
        st.text_input("Name", key="dest_name", placeholder="Amplitude (production)")
        st.text_input(f"API key{keep}", key="dest_api_key", type="password", help=KEY_HELP)
        st.text_input(
            f"Secret key{keep}", key="dest_secret_key", type="password",
            help="Optional. With it, Connect checks both keys against Amplitude's dashboard API. " + KEY_HELP,
        )  # fmt: skip
        st.radio(
            "Region", REGIONS, key="dest_region", format_func=str.upper, horizontal=True,
            help="Amplitude keys work in their project's data centre only.",
        )  # fmt: skip
        with st.expander("Advanced", icon=":material/tune:"):
            st.text_input(
                "Custom endpoint", key="dest_endpoint", placeholder="https://proxy.example.com",
                help=f"One base URL replacing the region's hosts, e.g. the local sandbox {ui.sandbox_url()}",
            )  # fmt: skip
        if editing:
            st.checkbox(SAME_PROJECT, key="dest_same_project", help=SAME_PROJECT_HELP)
        submitted = st.form_submit_button(
            "Connect", key="dest_connect", type="primary", icon=":material/link:"
        )
    if editing:
        st.button("Cancel editing", key="dest_cancel_edit", on_click=end_editing, icon=":material/close:")
    if submitted and ui.attempt(lambda: connect(ws, editing)):
        st.rerun()  # empties the key fields: a saved key never stays in the page


def render_destination(ws: Workspace, d: Destination, wid: str, check: Check | None) -> None:
    with st.container(border=True, key=f"dest_item_{wid}"):
        sandbox = ui.is_sandbox(d.endpoint)
        badge = (
            " :green-badge[:material/home: local sandbox · nothing leaves this machine]" if sandbox else ""
        )
        st.markdown(f"**{d.name}**{badge}")
        status = st.empty()  # filled below, once a Connect again pressed now has its verdict
        endpoint = d.endpoint or f"Amplitude {str(d.region).upper()} hosts"
        st.markdown(
            f"API key `{described(d.api_key)}` · secret key `{described(d.secret_key)}` · "
            f"region **{str(d.region).upper()}** · endpoint `{endpoint}`"
        )
        edit, test, remove = st.columns(3)
        edit.button(
            "Edit", key=f"dest_edit_{wid}", on_click=load_form, args=(d,), width="stretch",
            icon=":material/edit:",
        )  # fmt: skip
        tested = test.button("Connect again", key=f"dest_test_{wid}", width="stretch", icon=":material/sync:")
        remove.button(
            "Delete", key=f"dest_delete_{wid}", on_click=ui.ask_delete, args=("dest", d.name),
            width="stretch", icon=":material/delete:",
        )  # fmt: skip
        if tested:
            result = checked(ws, d.name)
            show_check(result)
            check = ws.checks(Destination).get(d.name)  # as kept: its reason freed of secrets
        with status.container(key=f"dest_status_{wid}"):
            st.markdown(mark(check, time.time()))
        ui.confirm_delete(ws, Destination, d.name, "destination", "dest", forget_if_editing)


st.title("Destinations")
st.caption(
    "The Amplitude projects your syncs send to. A typed key stays on this machine, in the system keyring "
    "(or an owner-only file where there is none); a key written as `${VAR}` is read from that environment "
    "variable, or the app's secrets when deployed, each time it is used."
)
ws = ui.attempt(ui.workspace)
if ws is None:
    st.stop()
if "dest_next" in st.session_state:
    load_form(st.session_state.pop("dest_next"))
elif "dest_name" not in st.session_state:  # the form's widgets are gone: back from another page
    end_editing()
st.session_state.setdefault("dest_region", str(Region.US))
render_flash()
render_form(ws)

st.subheader("Saved destinations")
destinations = ui.attempt(lambda: ws.listing(Destination)) or []
if not destinations:
    st.info("No destination yet: add one above.", icon=":material/info:")
ids = widget_ids(d.name for d in destinations)
checks = ui.attempt(lambda: ws.checks(Destination)) or {}
for item in destinations:
    render_destination(ws, item, ids[item.name], checks.get(item.name))

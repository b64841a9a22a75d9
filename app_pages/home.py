"""Home: what amp_sync does, where data goes, how far setup is, and the latest runs.

In demo mode it also lets the user make the sandbox fail like Amplitude can, to watch a sync cope.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd
import streamlit as st

import ui
from amp_sync import sandbox
from amp_sync.catalog import recent_runs, setup_steps
from amp_sync.config import Destination
from amp_sync.errors import AmpSyncError
from amp_sync.sandbox import Faults
from amp_sync.workspace import SavedSync, Workspace

STEPS = {
    "destination": ("Connect an Amplitude destination", ui.DESTINATIONS, "Destinations"),
    "warehouse": ("Connect a warehouse", ui.WAREHOUSES, "Warehouses"),
    "model": ("Write a model: the SQL that reads your users", ui.MODELS, "Models"),
    "sync": ("Map columns to properties and save a sync", ui.SYNCS, "Syncs"),
}


def render_sandbox_banner(ws: Workspace) -> bool:
    """The demo-mode and sandbox-stopped notices; True in demo mode (only the sandbox is set up)."""
    destinations = ui.attempt(lambda: ws.listing(Destination)) or []  # endpoints only: no key is read
    local = [d for d in destinations if ui.is_sandbox(d.endpoint)]
    demo = bool(local) and len(local) == len(destinations)
    if demo:
        st.info(
            f"**Demo mode.** Your destination is the local Amplitude sandbox at {ui.sandbox_url()}: "
            "nothing leaves this machine. Add your own project on the Destinations page when ready.",
            icon=":material/science:",
        )
    if local and not sandbox.is_running(ui.sandbox_url()):
        st.warning(
            f"The sandbox is not running at {ui.sandbox_url()}, so syncs to it will fail. Start it in a "
            "terminal with `amp-sync sandbox`, or start everything with `make run`.",
            icon=":material/warning:",
        )
    return demo


# The chance inputs: (Faults field, label, help). Widget keys are "faults_" + field.
FAULT_CHANCES = (
    (
        "throttle",
        "429 Too many requests",
        "Amplitude throttles every user in the request; nothing is applied.",
    ),
    ("error_500", "500 Internal server error", "Nothing is applied."),
    ("error_503", "503 Service unavailable", "Nothing is applied."),
    ("ingest_then_500", "500 after applying", "The profiles change, yet the answer says it failed."),
    ("drop", "Dropped connection", "The connection closes with no answer; nothing is applied."),
    ("slow", "Slow answer", "Any answer, delayed by the seconds below."),
)


def _show_faults_in_inputs(faults: Faults) -> None:
    """Put these settings into the inputs; only before they are drawn, or from a callback."""
    for field, _, _ in FAULT_CHANCES:
        st.session_state[f"faults_{field}"] = float(getattr(faults, field))
    st.session_state["faults_slow_seconds"] = float(faults.slow_seconds)
    st.session_state["faults_max_body_bytes"] = faults.max_body_bytes or 0
    # Settings the panel has no input for (set with `amp-sync sandbox` flags) are kept as they are.
    st.session_state["faults_kept"] = {f: getattr(faults, f) for f in ("seed", "retry_after", "daily_quota")}


def _faults_from_inputs() -> Faults:
    state = st.session_state
    chances = {field: float(state[f"faults_{field}"]) for field, _, _ in FAULT_CHANCES}
    limit = int(state["faults_max_body_bytes"])
    kept = state.get("faults_kept", {})
    seconds = float(state["faults_slow_seconds"])
    return Faults(**chances, slow_seconds=seconds, max_body_bytes=limit or None, **kept)


def _send_faults(read: Callable[[], Faults]) -> None:
    """Button callback: set the sandbox's faults; the outcome shows on the rerun that follows."""
    try:
        faults = read()
    except ValueError as exc:  # the inputs' limits leave only "the chances add up to over 1"
        labels = {field: f"“{label}”" for field, label, _ in FAULT_CHANCES}
        named = re.sub(r"\b(" + "|".join(labels) + r")\b", lambda m: labels[m[1]], str(exc))
        st.session_state["faults_message"] = ("error", f"Not applied: {named}.")
        return
    try:
        applied = sandbox.set_faults(ui.sandbox_url(), faults)
    except AmpSyncError as exc:
        st.session_state["faults_message"] = ("error", f"Not applied: {exc}.")
        return
    _show_faults_in_inputs(applied)
    st.session_state["faults_message"] = ("success", f"Applied: {applied.describe()}.")


def render_fault_controls() -> None:
    with st.expander("Simulate Amplitude failures", icon=":material/bolt:"):
        st.caption(
            "Make the sandbox fail the way Amplitude and networks can, then run a sync: it retries "
            "and delivers every row exactly once. Chances are per request, from 0 to 1."
        )
        current = ui.attempt(lambda: sandbox.get_faults(ui.sandbox_url()))
        if current is None:
            return
        if "faults_throttle" not in st.session_state:
            _show_faults_in_inputs(current)
        st.markdown(f"**Now:** {current.describe()}")
        columns = st.columns(3)
        for number, (field, label, text) in enumerate(FAULT_CHANCES):
            columns[number % 3].number_input(
                label,
                min_value=0.0,
                max_value=1.0,
                step=0.05,
                format="%.2f",
                help=text,
                key=f"faults_{field}",
            )
        columns[0].number_input(
            "Slow answer delay (s)", min_value=0.0, max_value=60.0, step=0.5, key="faults_slow_seconds"
        )
        columns[1].number_input(
            "413 above this many bytes (0: off)", min_value=0, step=10_000, key="faults_max_body_bytes"
        )
        buttons = st.container(horizontal=True)
        buttons.button(
            "Apply", key="faults_apply", type="primary", on_click=_send_faults, args=(_faults_from_inputs,)
        )
        buttons.button("Reset", key="faults_reset", on_click=_send_faults, args=(Faults,), help="No failures")
        message = st.session_state.pop("faults_message", None)
        if message:
            (st.success if message[0] == "success" else st.error)(message[1])


def render_checklist(ws: Workspace) -> None:
    st.subheader("Set up")
    for number, step in enumerate(ui.attempt(lambda: setup_steps(ws)) or [], start=1):
        title, page, label = STEPS[step.kind]
        with st.container(
            border=True, horizontal=True, vertical_alignment="center", key=f"home_step_{step.kind}"
        ):
            done = f":material/check_circle: done · {step.count} saved"
            status = done if step.done else ":material/radio_button_unchecked: not done yet"
            st.markdown(f"**{number}. {title}** — {status}")
            st.page_link(page, label=f"Open {label}", icon=":material/arrow_forward:")


def render_recent_runs(ws: Workspace) -> None:
    st.subheader("Recent runs")
    runs = ui.attempt(lambda: recent_runs(ui.home(), ws.names(SavedSync)))
    if not runs:
        st.info("No runs yet. Preview a saved sync to see what would change, then run it.")
        st.page_link(ui.PREVIEW, label="Open Preview", icon=":material/preview:")
        return
    frame = pd.DataFrame(
        {
            "sync": [r.sync for r in runs],
            "started": [r.started for r in runs],
            "duration": [r.seconds for r in runs],
            "status": [r.status for r in runs],
            "sent": [r.sent for r in runs],
            "failed": [r.failed for r in runs],
            "rejected": [r.rejected for r in runs],
        }
    )
    st.dataframe(
        frame,
        hide_index=True,
        key="home_recent_runs",
        column_config={
            "started": st.column_config.DatetimeColumn("started (local time)", format="YYYY-MM-DD HH:mm:ss"),
            "duration": st.column_config.NumberColumn("duration", format="%.1f s"),
        },
    )
    st.page_link(ui.HISTORY, label="All runs, with rejected rows: History", icon=":material/history:")


st.title("amp_sync")
st.markdown(
    "Write SQL against your warehouse, map its columns to Amplitude user or device properties, "
    "preview exactly what changes, and push **only the changes**."
)
ws = ui.attempt(ui.workspace)
if ws is None:
    st.stop()
if moved := ui.moved_state_note():  # an old ./.amp_sync, moved into the home or left with a how-to
    st.info(moved, icon=":material/inventory_2:")
if render_sandbox_banner(ws):
    render_fault_controls()
render_checklist(ws)
render_recent_runs(ws)
st.caption(
    "Good to know: Amplitude charts show an updated user property only on events ingested after "
    "the update; earlier events keep the values they had. User Look-up shows a profile's new values."
)

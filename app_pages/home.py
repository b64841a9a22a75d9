"""Home: what amp_sync does, where data goes, how far setup is, and the latest runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import ui
from amp_sync import sandbox
from amp_sync.catalog import recent_runs, setup_steps
from amp_sync.config import Destination
from amp_sync.workspace import SavedSync, Workspace

STEPS = {
    "destination": ("Connect an Amplitude destination", ui.DESTINATIONS, "Destinations"),
    "warehouse": ("Connect a warehouse", ui.WAREHOUSES, "Warehouses"),
    "model": ("Write a model: the SQL that reads your users", ui.MODELS, "Models"),
    "sync": ("Map columns to properties and save a sync", ui.SYNCS, "Syncs"),
}


def render_sandbox_banner(ws: Workspace) -> None:
    destinations = ui.attempt(lambda: ws.all(Destination)) or []
    local = [d for d in destinations if ui.is_sandbox(d.endpoint)]
    if local and len(local) == len(destinations):
        st.info(
            f"**Demo mode.** Your destination is the local Amplitude sandbox at {ui.sandbox_url()}: "
            "nothing leaves this machine. Add your own project on the Destinations page when ready.",
            icon="🧪",
        )
    if local and not sandbox.is_running(ui.sandbox_url()):
        st.warning(
            f"The sandbox is not running at {ui.sandbox_url()}, so syncs to it will fail. Start it in a "
            "terminal with `amp-sync sandbox`, or start everything with `make run`.",
            icon="⚠️",
        )


def render_checklist(ws: Workspace) -> None:
    st.subheader("Set up")
    for number, step in enumerate(ui.attempt(lambda: setup_steps(ws)) or [], start=1):
        title, page, label = STEPS[step.kind]
        with st.container(
            border=True, horizontal=True, vertical_alignment="center", key=f"home_step_{step.kind}"
        ):
            status = f"✅ done · {step.count} saved" if step.done else "⬜ not done yet"
            st.markdown(f"**{number}. {title}** — {status}")
            st.page_link(page, label=f"Open {label}", icon="➡️")


def render_recent_runs(ws: Workspace) -> None:
    st.subheader("Recent runs")
    runs = ui.attempt(lambda: recent_runs(ui.home(), ws.names(SavedSync)))
    if not runs:
        st.info("No runs yet. Preview a saved sync to see what would change, then run it.")
        st.page_link(ui.PREVIEW, label="Open Preview", icon="🔍")
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
    st.page_link(ui.HISTORY, label="All runs, with rejected rows: History", icon="📈")


st.title("amp_sync")
st.markdown(
    "Write SQL against your warehouse, map its columns to Amplitude user or device properties, "
    "preview exactly what changes, and push **only the changes**."
)
ws = ui.workspace()
render_sandbox_banner(ws)
render_checklist(ws)
render_recent_runs(ws)
st.caption(
    "Good to know: Amplitude charts show an updated user property only on events ingested after "
    "the update; earlier events keep the values they had. User Look-up shows a profile's new values."
)

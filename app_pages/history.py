"""History: every run of a sync, its counts over time, and the rows each run rejected."""

from __future__ import annotations

import streamlit as st

import ui
from amp_sync import state, views
from amp_sync.state import RunRecord
from amp_sync.workspace import SavedSync

ALL = "All syncs"
CHART_COLORS = ["#1e61f0", "#d62728", "#ff9f1a"]  # sent, failed, rejected


def choose_sync(names: list[str]) -> str:
    """The sync picker (or all of them), preselecting the one chosen on another page."""
    options = [ALL, *names]
    chosen = st.session_state.get("selected_sync")
    index = options.index(chosen) if chosen in options else 0
    pick = str(st.selectbox("Sync", options, index=index, key="history_sync"))
    if pick != ALL:
        st.session_state["selected_sync"] = pick
    return pick


def load_runs(names: list[str]) -> list[tuple[str, RunRecord]] | None:
    """The runs of `names`, newest first; None (with the reason shown) when a store is unreadable."""
    by_sync = ui.attempt(lambda: {name: state.history(ui.home(), name) for name in names})
    return None if by_sync is None else views.newest_first(by_sync)


def empty_state(pick: str) -> None:
    """No run yet: say where runs come from."""
    which = "this sync" if pick != ALL else "any sync"
    st.info(f"There is no run of {which} yet. Preview a sync, check what changes, then start it.")
    st.page_link(ui.PREVIEW, label="Go to Preview", icon="🔍")


def show_runs(runs: list[tuple[str, RunRecord]]) -> None:
    """The table of runs and a chart of what each one sent, failed and rejected."""
    st.dataframe(views.history_rows(runs), hide_index=True, width="stretch", key="history_runs")
    st.caption("Times are this machine's local time. Failed rows go out again on the next run.")
    st.subheader("Rows per run")
    st.bar_chart(
        views.chart_rows(runs), x="Started", y=list(views.CHART_COUNTS), color=CHART_COLORS,
        x_label="Run start", y_label="Rows",
    )  # fmt: skip


def show_rejections(runs: list[tuple[str, RunRecord]]) -> None:
    """Pick a run; see and download the rows it rejected."""
    st.subheader("Rejected rows of a run")
    by_label = {views.run_label(sync, record): (sync, record) for sync, record in runs}
    label = st.selectbox("Run", list(by_label), key="history_run")
    sync, record = by_label[str(label)]
    if record.message:
        st.caption(f"Run message: {record.message}")
    pairs = ui.attempt(lambda: state.run_rejections(ui.home(), sync, record.id))
    if not pairs:
        if pairs is not None:
            st.caption("This run rejected no rows.")
        return
    st.dataframe(views.rejection_rows(pairs), hide_index=True, width="stretch", key="history_rejections")
    st.download_button(
        f"Download {len(pairs):,} rejected rows (CSV)", views.rejections_csv(pairs),
        file_name=f"{sync}-run-{record.id}-rejected.csv", mime="text/csv", key="history_csv",
        on_click="ignore",
    )  # fmt: skip


st.title("History")
st.caption("Every run: what it found, what it sent, and the rows it could not send.")

ws = ui.attempt(ui.workspace)
names = ui.attempt(lambda: ws.names(SavedSync)) if ws else None
if names is None:
    st.stop()
if not names:
    empty_state(ALL)
    st.stop()

picked = choose_sync(names)
all_runs = load_runs(names if picked == ALL else [picked])
if all_runs is None:
    st.stop()
if not all_runs:
    empty_state(picked)
    st.stop()
show_runs(all_runs)
show_rejections(all_runs)

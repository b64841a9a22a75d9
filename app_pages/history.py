"""History: every run of a sync, its counts over time, the rows each run rejected, and the revert."""

from __future__ import annotations

import streamlit as st

import ui
from amp_sync import runner, state, views
from amp_sync.config import SyncConfig
from amp_sync.errors import AmpSyncError
from amp_sync.revert import NothingToRevert
from amp_sync.runner import Report, RunOptions
from amp_sync.state import RunRecord
from amp_sync.workspace import SavedSync

ALL = "All syncs"
CHART_COLORS = ["#1e61f0", "#d62728", "#ff9f1a"]  # sent, failed, rejected
REVERT_PREVIEW = "history_revert_plan"  # (sync name, newest run id then, config, Report)
REVERT_OUTCOME = "history_revert_result"  # (sync name, Report | AmpSyncError)
EVENTS_IMMUTABLE = (
    "Events cannot be reverted: Amplitude keeps every event it ingested as it arrived. To remove "
    "them, delete the users' data with Amplitude's User Privacy API (or the Data Deletion tools "
    "in Amplitude)."
)


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
    st.page_link(ui.PREVIEW, label="Go to Preview", icon=":material/preview:")


def show_runs(runs: list[tuple[str, RunRecord]]) -> None:
    """The table of runs and a chart of what each one sent, failed and rejected."""
    st.dataframe(
        views.history_rows(runs), hide_index=True, width="stretch", key="history_runs",
        column_config=ui.number_columns(views.HISTORY_NUMBERS),
    )  # fmt: skip
    st.caption(
        "Times are this machine's local time. Failed rows go out again on the next run. Each run "
        "belongs to the destination it sent to."
    )
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


def revert_section(name: str, newest: RunRecord) -> None:
    """Preview what reverting the sync's last run sends, then send it on confirmation."""
    st.subheader("Revert the last run")
    outcome = st.session_state.get(REVERT_OUTCOME)
    if outcome and outcome[0] == name:
        show_revert_outcome(outcome[1])
    config = ui.attempt(lambda: ws.sync_config(name))
    if config is None:
        return
    if not config.sync.is_profile:
        st.info(EVENTS_IMMUTABLE)
        return
    st.caption(
        "Sends back the values the last run that changed anything replaced, for exactly the keys it "
        "changed: changed values are set back, properties it set first are unset. The revert is a "
        "run of its own, listed above."
    )
    if st.button("Preview the revert", key="history_revert_preview"):
        preview_revert(name, newest, config)
    saved = st.session_state.get(REVERT_PREVIEW)
    if not saved or saved[0] != name:
        return
    if saved[1] != newest.id or saved[2] != config:
        st.info("A run finished, or the sync changed, after this revert preview: preview the revert again.")
        return
    show_revert_preview(saved[3], config)
    confirm_revert(name, config, saved[3])


def preview_revert(name: str, newest: RunRecord, config: SyncConfig) -> None:
    """What reverting would send; "nothing to revert" is a message, not an error."""
    st.session_state.pop(REVERT_PREVIEW, None)
    st.session_state.pop(REVERT_OUTCOME, None)
    try:
        report = runner.preview_revert(config, ui.home())
    except NothingToRevert as exc:
        st.info(str(exc)[:1].upper() + str(exc)[1:] + ".")
        return
    except AmpSyncError as exc:
        ui.show_error(exc)
        return
    st.session_state[REVERT_PREVIEW] = (name, newest.id, config, report)


def show_revert_preview(report: Report, config: SyncConfig) -> None:
    """Which run it undoes, how many keys, and every field before -> after."""
    plan = report.plan
    figures = [("Reverts run", f"#{plan.reverts_run}"), ("Keys to revert", f"{plan.changed:,}")]
    figures.append(("Already as before", f"{plan.unchanged:,}"))
    for col, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        col.metric(label, value)
    rows = views.revert_rows(plan.sample)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch", key="history_revert_changes")
        note = f"{len(rows):,} field changes shown"
        if views.sample_truncated(plan):
            note += f" (the first {len(rows):,}; a revert sends all of them)"
        st.caption(note + ". (unset): the property is cleared in Amplitude.")
    for level, text in views.note_levels(report, config):
        (st.warning if level == "warning" else st.info)(text)


def confirm_revert(name: str, config: SyncConfig, report: Report) -> None:
    """The confirm button, then the revert with a progress bar."""
    run = report.plan.reverts_run
    if report.plan.to_send == 0:
        st.caption(f"Nothing to send: amp_sync last delivered the values from before run #{run}.")
        return
    label = f"Revert run #{run}: send {report.plan.to_send:,} keys back"
    if not st.button(label, key="history_revert_confirm", type="primary"):
        return
    outcome = ui.send_with_progress(lambda cb: runner.revert(config, ui.home(), RunOptions(), cb))
    st.session_state[REVERT_OUTCOME] = (name, outcome)
    st.session_state.pop(REVERT_PREVIEW, None)
    st.rerun()


def show_revert_outcome(outcome: Report | AmpSyncError) -> None:
    """The last revert's result, or why it stopped."""
    if isinstance(outcome, AmpSyncError):
        ui.show_error(outcome)
        return
    level, text = views.revert_summary(outcome)
    (st.warning if level == "warning" else st.success)(text)


st.title("History")
st.caption("Every run: what it found, what it sent, and the rows it could not send.")

ws = ui.attempt(ui.workspace)
saved_names = ui.attempt(lambda: ws.names(SavedSync)) if ws else None
if saved_names is None:
    st.stop()
# Syncs run from a sync file (amp-sync run FILE) have state here too: their runs show as well.
names = sorted({*saved_names, *(ui.attempt(lambda: state.synced_names(ui.home())) or [])}, key=str.lower)
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
if picked == ALL:
    st.caption("Pick one sync above to revert its last run.")
elif picked not in saved_names:
    st.caption(
        f"“{picked}” runs from a sync file, not from the app: revert its last run with "
        "`amp-sync revert FILE`, or import the file on the Syncs page."
    )
else:
    revert_section(picked, all_runs[0][1])

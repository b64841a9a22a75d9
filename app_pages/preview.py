"""Preview: exactly what a sync changes in Amplitude, then the run that sends only that."""

from __future__ import annotations

import streamlit as st

import ui
from amp_sync import runner, state, views
from amp_sync.config import Destination, SyncConfig, SyncObject
from amp_sync.credentials import Activity, EventActivity, event_activity
from amp_sync.errors import AmpSyncError, DestinationError
from amp_sync.events import EVENT_SAMPLE
from amp_sync.outbox import Stale
from amp_sync.runner import Report, RunOptions
from amp_sync.workspace import SavedSync, Workspace, promoted

PREVIEWS = "preview_reports"  # sync name -> (config previewed, Report, what to do with stale items)
OUTCOME = "preview_outcome"  # (sync name, Report | AmpSyncError) of the last run started here
CHECKS = "preview_checks"  # sync name -> (ran before, EventActivity | None) at the last preview
FLASH = "preview_flash"  # (sync name, words) shown once, above the preview
STALE_CHOSEN = {
    Stale.DELIVERED: "The run takes the updates in doubt for over 7 days as delivered: their values "
    "count as sent, and they are not sent again.",
    Stale.RESEND: "The run resends the updates in doubt for over 7 days, exactly as they were; a "
    "value that adds ($add, $append) could then count twice.",
}
EVENTS_NOTE = (
    "Amplitude shows an updated user property only on events ingested **after** the update: "
    "past events never change, and a user who never sends another event never shows the new "
    "value in charts."
)
EMPTY_MODEL = (
    "The model returned no rows, so there is nothing to send. If that is unexpected, check its "
    "SQL (a WHERE clause that matches nothing?) on the Models page."
)


def choose_sync(names: list[str]) -> str:
    """The sync picker, preselecting the one chosen on another page."""
    chosen = st.session_state.get("selected_sync")
    index = names.index(chosen) if chosen in names else 0
    name = st.selectbox("Sync", names, index=index, key="preview_sync")
    st.session_state["selected_sync"] = name
    return str(name)


def describe(config: SyncConfig) -> None:
    """One line on what the sync reads and where it sends."""
    s, o = config.sync, config.sync.options
    where = " (the local sandbox)" if ui.is_sandbox(config.destination.endpoint) else ""
    what = f"{s.object} key `{s.key}`; {len(s.mappings)} mapped properties"
    if s.object is SyncObject.GROUP:
        what = (
            f"groups of type **{o.group_type}**, group value `{s.key}`; {len(s.mappings)} mapped properties"
        )
    elif s.object is SyncObject.EVENT:
        kind = f"**{o.event_type}**" if o.event_type else f"event type from `{o.event_type_column}`"
        what = f"events ({kind}) of the {s.key_label} in `{s.key}`, at `{o.time_column}`"
        what += f"; {len(s.mappings)} event properties"
    st.caption(f"Model **{config.model.name}** → destination **{config.destination.name}**{where}; {what}.")


def load_config(ws: Workspace, name: str, target: str | None) -> SyncConfig:
    """The saved sync, or with `target` the same sync sent to that destination (a promotion)."""
    config = ws.sync_config(name)
    return promoted(config, ws.get(Destination, target)) if target else config


def promotion_banner(ws: Workspace, name: str, target: str) -> None:
    """What a promotion does, and the way back."""
    current = ws.get(SavedSync, name).destination
    st.info(
        f"Promotion of **{name}** from **{current}** to **{target}**: nothing is saved or sent until "
        f"you start it. Starting it saves the sync with the destination **{target}**, then sends."
    )
    if st.button("Cancel the promotion", key="preview_promotion_cancel"):
        ui.end_promotion()
        st.session_state.get(PREVIEWS, {}).pop(name, None)
        st.rerun()


def run_preview(name: str, config: SyncConfig, stale: Stale = Stale.HOLD) -> bool:
    """Read and diff the model with progress; keep the Report so widgets do not redo it."""
    status = st.status("Reading the model…")

    def render(p: runner.Progress) -> None:
        status.update(label=f"Reading the model… {p.rows_read:,} rows read")

    def work(cb: runner.ProgressFn) -> Report:
        report = runner.preview(config, ui.home(), progress=cb, stale=stale)
        # Saved syncs that have not run yet write there too: the workspace knows them.
        report.overlaps = {**ui.workspace().writers(config, name), **report.overlaps}
        return report

    try:
        report = ui.run_with_progress(work, render)
    except AmpSyncError as exc:
        status.update(label="The preview stopped", state="error")
        ui.show_error(exc)
        return False
    rows = f"Read {report.plan.rows_read:,} rows in {views.duration(report.seconds)}"
    status.update(label=rows, state="complete")
    st.session_state.setdefault(PREVIEWS, {})[name] = (config, report, stale)
    st.session_state.setdefault(CHECKS, {})[name] = synthetic_checks(name, config)
    st.session_state.pop(OUTCOME, None)
    return True


def preview_again(name: str, config: SyncConfig, stale: Stale) -> None:
    """Recompute the preview (another choice for stale items, or after a rekey) and redraw."""
    if run_preview(name, config, stale):
        st.rerun()


def synthetic_checks(name: str, config: SyncConfig) -> tuple[bool, EventActivity | None]:
    """Whether the sync ran before, and (with a secret key) whether its synthetic event is inactive."""
    synthetic = config.sync.options.synthetic_event
    if not synthetic:
        return True, None
    ran = bool(ui.attempt(lambda: state.history(ui.home(), name)))
    activity = event_activity(config.destination, synthetic) if config.destination.secret_key else None
    return ran, activity


def show_counts(report: Report, config: SyncConfig) -> None:
    """The headline numbers, before anything is sent."""
    plan, noun = report.plan, views.object_noun(config.sync)
    if config.sync.is_profile:
        things = noun.capitalize()
        figures = [
            ("New", plan.new, f"{things} new to this sync: all their properties go out."),
            ("Changed", plan.changed, f"{things} with at least one property to update: only those go out."),
            ("Unchanged", plan.unchanged, f"{things} as amp_sync last delivered them: nothing is sent."),
            ("Removed", plan.removed, f"{things} synced before and no longer in the model: nothing is sent."),
        ]  # fmt: skip
        sends = f"A run sends {plan.to_send:,} {noun} (new and changed)"
    else:
        figures = [
            ("Events to send", plan.new, "Rows whose event Amplitude has not acknowledged yet."),
            ("Already sent", plan.unchanged, "Events this sync delivered before: never sent again."),
        ]
        sends = f"A run sends {plan.to_send:,} events"
    figures.append(("Rejected", plan.rejected, "Rows that cannot be sent; see the reasons below."))
    if report.in_doubt:
        figures.append(("In doubt", report.in_doubt, "Updates of earlier runs whose answer never came."))
    if plan.synthetic:
        figures.append(("Synthetic events", plan.synthetic, "One 'updated' event per profile a run updates."))
    for col, (label, value, hint) in zip(st.columns(len(figures)), figures, strict=True):
        col.metric(label, f"{value:,}", help=hint)
    st.caption(f"Read {plan.rows_read:,} rows in {views.duration(report.seconds)}. {sends}.")
    if plan.rows_read == 0:
        st.warning(EMPTY_MODEL)
    if config.sync.object in (SyncObject.USER, SyncObject.DEVICE):
        st.info(EVENTS_NOTE, icon=":material/info:")


def show_notes(name: str, report: Report, config: SyncConfig) -> None:
    """Time range, event volume, edited rows, synthetic events: what to know beyond the counts."""
    for level, text in views.note_levels(report, config):
        (st.warning if level == "warning" else st.info)(text)
    synthetic = config.sync.options.synthetic_event
    ran, activity = st.session_state.get(CHECKS, {}).get(name, (True, None))
    if synthetic and not ran:
        st.warning(
            f"Before the first run: once {synthetic!r} reaches Amplitude, mark it **inactive** "
            "(Data → Events → Edit Activity → Inactive) so it does not count users as active. "
            "It still counts toward your event volume."
        )
    if activity is not None:
        (st.success if activity.activity is Activity.INACTIVE else st.warning)(
            activity.message[:1].upper() + activity.message[1:] + "."
        )


def stale_section(name: str, config: SyncConfig, report: Report, stale: Stale) -> None:
    """Updates in doubt for longer than Amplitude de-duplicates: the user says what became of them."""
    if report.stale:
        st.markdown(f"**{report.stale:,} updates in doubt for over 7 days.** Check them in Amplitude, then:")
        arrived, lost = st.columns(2)
        if arrived.button("They arrived: take them as delivered", key="preview_stale_delivered"):
            preview_again(name, config, Stale.DELIVERED)
        if lost.button("They did not arrive: resend them", key="preview_stale_resend"):
            preview_again(name, config, Stale.RESEND)
    elif stale is not Stale.HOLD:
        st.info(STALE_CHOSEN[stale])
        if st.button("Leave them alone", key="preview_stale_hold"):
            preview_again(name, config, Stale.HOLD)


def rekey_section(name: str, config: SyncConfig, report: Report, stale: Stale) -> None:
    """Same project, new key: carry the sync's state over to the new key, then preview again."""
    if not views.offers_rekey(report):
        return
    if st.button("Same Amplitude project, new key: keep what was sent", key="preview_rekey"):
        said = ui.attempt(lambda: runner.rekey(config, ui.home()))
        if said:
            st.session_state[FLASH] = (name, said[:1].upper() + said[1:] + ".")
            preview_again(name, config, stale)


def show_properties(report: Report, config: SyncConfig) -> None:
    """How many users (groups, events) change per property."""
    events = not config.sync.is_profile
    label = views.object_noun(config.sync).capitalize()
    st.subheader("Event properties" if events else "Properties that change")
    rows = views.property_rows(report.plan.property_counts, label)
    if not rows:
        st.caption("The events carry no property." if events else "No property changes.")
        return
    most = max(report.plan.to_send, 1)
    bar = st.column_config.ProgressColumn(label, format="%d", min_value=0, max_value=most)
    st.dataframe(rows, hide_index=True, column_config={label: bar}, key="preview_properties")


def show_events(report: Report) -> str:
    """The exact events a run sends (the first ones), with a filter; returns the filter text."""
    st.subheader("The events to send")
    rows = views.event_rows(report.plan.payloads)
    if not rows:
        why = "every event was sent before" if report.plan.rows_read else "the model returned no rows"
        st.caption(f"No event to send: {why}.")
        return ""
    text = st.text_input(
        "Filter by id, event type or insert id", key="preview_filter", placeholder="u_000123 or Login"
    )
    shown = views.filter_events(rows, text)
    if shown:
        st.dataframe(shown, hide_index=True, width="stretch", key="preview_events")
    else:
        st.warning(f"No event in the preview has an id, event type or insert id containing {text.strip()!r}.")
    note = f"{len(shown):,} of {len(rows):,} events shown."
    if len(rows) >= EVENT_SAMPLE:
        note += f" The preview keeps the first {len(rows):,} events; a run sends all {report.plan.to_send:,}."
    st.caption(note + " Times are UTC.")
    return text


def show_changes(report: Report) -> str:
    """The field-level diff with its filter; returns the filter text."""
    st.subheader("What changes, field by field")
    rows = views.change_rows(report.plan.sample)
    if not rows:
        delivered = "amp_sync last delivered every value as it is"
        why = delivered if report.plan.rows_read else "the model returned no rows"
        st.caption(f"No field changes: {why}.")
        return ""
    text = st.text_input("Filter by key or property", key="preview_filter", placeholder="u_000123 or plan")
    shown = views.filter_rows(rows, text)
    if shown:
        st.dataframe(shown, hide_index=True, width="stretch", key="preview_changes")
    else:
        st.warning(f"No field change in the preview has a key or property containing {text.strip()!r}.")
    note = views.field_change_note(report.plan, len(shown))
    st.caption(note + " (new): first sync of that property; (unset): no value, cleared in Amplitude.")
    return text


PAYLOAD_NOTES = {
    SyncObject.GROUP: "One item of the `identification` list POSTed (form-encoded, beside the API key) "
    "to Amplitude's Group Identify API.",
    SyncObject.EVENT: "One event of the `events` list POSTed as JSON (beside the API key) to "
    "Amplitude's Batch API.",
}


def show_payload(report: Report, text: str, config: SyncConfig) -> None:
    """The exact identification (or event) a run sends for one chosen key."""
    st.subheader("Request payload")
    events = not config.sync.is_profile
    if events:
        keys = [r["Insert id"] for r in views.filter_events(views.event_rows(report.plan.payloads), text)]
    else:
        keys = views.filter_keys(list(report.plan.payloads), text)
    if not keys:
        st.caption("Nothing to send.")
        return
    key = st.selectbox("Insert id" if events else "Key", keys, key="preview_payload_key")
    st.code(views.payload_text(report.plan.payloads[key]), language="json")
    st.caption(
        PAYLOAD_NOTES.get(
            config.sync.object,
            "One item of the `identification` list POSTed (form-encoded, beside the API key) to "
            "Amplitude's Identify API.",
        )
    )


def show_rejections(name: str, report: Report) -> None:
    """Rows that are never sent, with the reasons."""
    st.subheader("Rows that are not sent")
    rejections = report.plan.rejections
    if not rejections:
        st.caption("Every row can be sent.")
        return
    st.dataframe(views.rejection_rows(rejections), hide_index=True, key="preview_rejections")
    st.download_button(
        "Download rejected rows (CSV)", views.rejections_csv(rejections), file_name=f"{name}-rejected.csv",
        mime="text/csv", key="preview_rejections_csv", on_click="ignore",
    )  # fmt: skip


def start_section(
    ws: Workspace, name: str, config: SyncConfig, report: Report, stale: Stale, target: str | None
) -> None:
    """The Start button, behind a typed confirmation when many rows would go out."""
    st.subheader("Send")
    to_send = report.plan.to_send
    typed = ""
    if views.needs_confirmation(to_send):
        typed = st.text_input(
            f"This sends {to_send:,} {views.object_noun(config.sync)} to **{config.destination.name}**. "
            f"Type the sync name **{name}** to confirm.",
            key="confirm_sync_name",
        )
    # A run with no row to send still resends what is in doubt and settles what the user decided.
    work = to_send or report.in_doubt or report.settled or target
    allowed = bool(work) and views.can_start(to_send, typed, name)
    label = "Start sync" if work else "Start sync (nothing to send)"
    if target:
        label = f"Save the sync with {target!r} and start it"
    clicked = st.button(label, key="start_sync", type="primary", disabled=not allowed)
    if clicked and allowed:
        start_run(ws, name, config, stale, target)
    elif clicked:
        st.warning(f"Type the sync name {name!r} above to confirm.")


def start_run(ws: Workspace, name: str, config: SyncConfig, stale: Stale, target: str | None) -> None:
    """Send with a progress bar (a promotion saves its destination first), and redraw the page."""
    if target:
        if ui.attempt(lambda: ws.set_destination(name, target)) is None:
            return
        ui.end_promotion()
        st.session_state[FLASH] = (name, f"Saved the sync {name!r} with the destination {target!r}.")
    options = RunOptions(stale=stale)
    outcome = ui.send_with_progress(lambda cb: runner.run(config, ui.home(), options, progress=cb))
    st.session_state[OUTCOME] = (name, outcome)
    st.session_state.get(PREVIEWS, {}).pop(name, None)  # the snapshot moved: preview again
    st.rerun()


def show_outcome(outcome: Report | AmpSyncError, config: SyncConfig) -> None:
    """The last run's result, or why it stopped."""
    st.subheader("Last run")
    if isinstance(outcome, AmpSyncError):
        ui.show_error(outcome)
        if isinstance(outcome, DestinationError):
            st.caption("Rows Amplitude acknowledged before this are saved; the rest go out on the next run.")
    else:
        figures = [("Sent", f"{outcome.sent:,}"), ("Failed", f"{outcome.failed:,}")]
        figures += [("Rejected", f"{outcome.plan.rejected:,}"), ("Duration", views.duration(outcome.seconds))]
        if outcome.plan.synthetic:
            figures.append(("Synthetic events sent", f"{outcome.synthetic_sent:,}"))
        for col, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
            col.metric(label, value)
        level, text = views.result_summary(outcome, "rows" if config.sync.is_profile else "events")
        (st.warning if level == "warning" else st.success)(text)
        if outcome.synthetic_failed:
            st.warning(
                f"{outcome.synthetic_failed:,} synthetic events were not delivered; their profiles were "
                "updated and show on the users' next events."
            )
        for note_level, note in views.note_levels(outcome, config):
            (st.warning if note_level == "warning" else st.info)(note)
        if outcome.failure_reasons:
            st.dataframe(views.failure_rows(outcome.failure_reasons), hide_index=True, key="run_failures")
    st.page_link(ui.HISTORY, label="See every run in History", icon=":material/history:")


st.title("Preview")
st.caption("See exactly what a sync changes in Amplitude, then send only that.")

ws = ui.attempt(ui.workspace)
names = ui.attempt(lambda: ws.names(SavedSync)) if ws else None
if ws is None or names is None:
    st.stop()
if not names:
    st.info("There is no saved sync yet. Create one on the Syncs page: a model, a destination, a mapping.")
    st.page_link(ui.SYNCS, label="Create a sync", icon=":material/sync_alt:")
    st.stop()

sync_name = choose_sync(names)
promote_to = ui.promotion(sync_name)
sync_config = ui.attempt(lambda: load_config(ws, sync_name, promote_to))
if sync_config is None:
    ui.end_promotion()
    st.page_link(ui.SYNCS, label="Fix the sync", icon=":material/sync_alt:")
    st.stop()
if promote_to:
    promotion_banner(ws, sync_name, promote_to)
describe(sync_config)

clicked = st.button("Preview", key="preview_button", type="primary")
asked = st.session_state.pop(ui.PREVIEW_ASKED, None) == sync_name  # from the Syncs page's button
if clicked or asked or (promote_to and st.session_state.pop(ui.PROMOTION_ASKED, False)):
    run_preview(sync_name, sync_config)
flash = st.session_state.pop(FLASH, None)
if flash and flash[0] == sync_name:
    st.success(flash[1])

last = st.session_state.get(OUTCOME)
if last and last[0] == sync_name:
    show_outcome(last[1], sync_config)

saved = st.session_state.get(PREVIEWS, {}).get(sync_name)
if saved and saved[0] != sync_config:
    st.info("The sync was edited after this preview: preview it again.")
elif saved:
    preview_report, stale_choice = saved[1], saved[2]
    show_counts(preview_report, sync_config)
    show_notes(sync_name, preview_report, sync_config)
    stale_section(sync_name, sync_config, preview_report, stale_choice)
    if not promote_to:  # a promotion goes to another project, not to a new key of this one
        rekey_section(sync_name, sync_config, preview_report, stale_choice)
    show_properties(preview_report, sync_config)
    table = show_changes if sync_config.sync.is_profile else show_events
    filter_text = table(preview_report)
    show_payload(preview_report, filter_text, sync_config)
    show_rejections(sync_name, preview_report)
    start_section(ws, sync_name, sync_config, preview_report, stale_choice, promote_to)

"""What the Preview and History pages show, as plain rows and words (no streamlit here)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from amp_sync.config import Sync, SyncConfig, SyncObject
from amp_sync.plan import SAMPLE_LIMIT, FieldChange, Plan, Rejection
from amp_sync.runner import Progress, Report
from amp_sync.state import RunRecord
from amp_sync.values import Invalid, nesting

# Sending more rows than this asks the user to type the sync's name first.
CONFIRM_ABOVE = 1_000
UNSET = "(unset)"
FIRST_SYNC = "(new)"
MISSING_KEY = "(missing)"
HISTORY_COUNTS = ("new", "changed", "unchanged", "removed", "rejected", "sent", "failed")
CHART_COUNTS = ("sent", "failed", "rejected")
# The History table's number columns, shown with thousands separators as the metrics are.
HISTORY_NUMBERS = tuple(name.capitalize() for name in HISTORY_COUNTS)

Row = dict[str, Any]


def shown(value: Any) -> str:
    """A property value as a table cell: text as it is, null as (unset), anything else as JSON."""
    if value is None:
        return UNSET
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def change_rows(sample: Iterable[FieldChange]) -> list[Row]:
    """The field-level diff: key, property, operation, last synced value and new value."""
    return [
        {
            "Key": c.key,
            "Property": c.property,
            "Operation": c.op,
            "Last synced": FIRST_SYNC if c.first_sync else shown(c.before),
            "New value": shown(c.after),
        }
        for c in sample
    ]


def filter_rows(rows: Sequence[Row], text: str) -> list[Row]:
    """Rows whose key or property contains `text` (any case); all rows for an empty filter."""
    needle = text.strip().lower()
    if not needle:
        return list(rows)
    return [r for r in rows if needle in r["Key"].lower() or needle in r["Property"].lower()]


def filter_keys(keys: Sequence[str], text: str) -> list[str]:
    """The keys containing `text` (any case); every key when none does or the filter is empty."""
    needle = text.strip().lower()
    matching = [k for k in keys if needle in k.lower()] if needle else []
    return matching or list(keys)


def field_change_total(plan: Plan) -> int:
    """Every field-level change the plan sends (the sample holds only the first of them)."""
    return sum(plan.property_counts.values())


def field_change_note(plan: Plan, shown: int) -> str:
    """How many field changes the grid shows, out of the true total."""
    total, kept = field_change_total(plan), len(plan.sample)
    if sample_truncated(plan):
        return (
            f"{shown:,} shown of {total:,} field changes: the preview keeps the first {kept:,}, a run "
            "sends all of them."
        )
    return f"{shown:,} of {max(total, kept):,} field changes shown."


def sample_truncated(plan: Plan) -> bool:
    """True when the plan holds only the first field changes, not all of them."""
    return len(plan.sample) >= SAMPLE_LIMIT


def property_rows(counts: Counter[str], label: str = "Users") -> list[Row]:
    """How many users (or `label`) change per property, most first."""
    return [{"Property": p, label: n} for p, n in counts.most_common()]


def payload_text(item: dict[str, Any]) -> str:
    """One identification exactly as it goes in the request's JSON list."""
    return json.dumps(item, indent=2, ensure_ascii=False)


def _pairs(rejections: Iterable[Rejection | tuple[str, str]]) -> list[tuple[str, str]]:
    return [(r.key, r.reason) if isinstance(r, Rejection) else (r[0], r[1]) for r in rejections]


def rejection_rows(rejections: Iterable[Rejection | tuple[str, str]]) -> list[Row]:
    """Rows that are not sent, with their reasons; an empty key is shown as (missing)."""
    return [{"Key": key or MISSING_KEY, "Reason": reason} for key, reason in _pairs(rejections)]


def rejections_csv(rejections: Iterable[Rejection | tuple[str, str]]) -> str:
    """The rejected rows as CSV (key,reason), keys exactly as the model returned them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["key", "reason"])
    writer.writerows(_pairs(rejections))
    return out.getvalue()


def needs_confirmation(to_send: int, threshold: int = CONFIRM_ABOVE) -> bool:
    """A run sending more rows than `threshold` must be confirmed by typing the sync's name."""
    return to_send > threshold


def can_start(to_send: int, typed: str, sync_name: str, threshold: int = CONFIRM_ABOVE) -> bool:
    """The run may start: few rows, or the sync's name typed exactly."""
    return not needs_confirmation(to_send, threshold) or typed.strip() == sync_name


def duration(seconds: float | None) -> str:
    """A duration in words: 0.4 s, 12 s, 3 min 05 s, 1 h 02 min."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def time_left(done: int, total: int, seconds: float) -> float | None:
    """Seconds until `total` at the rate so far; None until there is a rate to go by."""
    if done <= 0 or seconds <= 0:
        return None
    return max(0, total - done) * seconds / done


@dataclass(slots=True)
class ProgressText:
    """Turns a run's progress reports into a bar fraction and a line of words.

    The time left is estimated from the sending phase only: reading the model takes its own time.
    """

    sending_since: float | None = None
    last_read: float = 0.0

    def update(self, p: Progress) -> tuple[float, str]:
        """The bar's fraction (0 to 1) and the words under it."""
        if p.phase != "sending":
            self.last_read = p.elapsed
            return 0.0, f"Reading the model… {p.rows_read:,} rows read"
        if self.sending_since is None:
            self.sending_since = self.last_read
        fraction = min(1.0, p.sent / p.to_send) if p.to_send else 1.0
        text = f"Sent {p.sent:,} of {p.to_send:,} rows · {p.batches:,} batches"
        left = time_left(p.sent, p.to_send, p.elapsed - self.sending_since)
        if left:  # neither unknown nor done
            text += f" · about {duration(left)} left"
        return fraction, text


def result_summary(report: Report, noun: str = "rows") -> tuple[str, str]:
    """The outcome of a run in words, with its level: success or warning."""
    sent = f"Sent {report.sent:,} {noun} in {duration(report.seconds)}"
    if report.failed:
        return "warning", (
            f"{sent}; {report.failed:,} {noun} were not delivered. "
            "They go out on the next run: start it again."
        )
    p = report.plan
    if not (p.rows_read or p.to_send or p.unchanged or p.rejected):
        return "success", "The model returned no rows, so there was nothing to send."
    if report.plan.to_send == 0:
        every = "every event of the model" if noun == "events" else "every value"
        return "success", f"Nothing to send: amp_sync last delivered {every} as it is now."
    if noun == "events":
        return "success", f"{sent}. Amplitude acknowledged every event of the model."
    return "success", f"{sent}. Amplitude acknowledged every new and changed value."


def failure_rows(reasons: dict[str, int]) -> list[Row]:
    """Why rows were not delivered, most rows first."""
    return [{"Reason": r, "Rows": n} for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]


def local_time(epoch: float) -> str:
    """An epoch time in this machine's time zone."""
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def history_rows(runs: Iterable[tuple[str, RunRecord]]) -> list[Row]:
    """One table row per run: sync, destination, start (local), duration, counts and status."""
    rows = []
    for sync, r in runs:
        took = r.finished_at - r.started_at if r.finished_at is not None else None
        row: Row = {"Sync": sync, "Destination": r.destination, "Run": r.id, "Kind": r.kind}
        row["Started"] = local_time(r.started_at)
        row["Duration"] = duration(took) if took is not None else "running"
        row.update({name.capitalize(): r.counts.get(name, 0) for name in HISTORY_COUNTS})
        row.update({"Status": r.status, "Message": r.message})
        rows.append(row)
    return rows


def newest_first(runs_by_sync: dict[str, list[RunRecord]]) -> list[tuple[str, RunRecord]]:
    """Every sync's runs in one list, the most recent start first."""
    runs = [(sync, r) for sync, records in runs_by_sync.items() for r in records]
    return sorted(runs, key=lambda sr: sr[1].started_at, reverse=True)


def chart_rows(runs: Iterable[tuple[str, RunRecord]]) -> list[Row]:
    """Sent, failed and rejected rows per run start, oldest first, for a chart."""
    rows = [
        {"Started": local_time(r.started_at), **{n: r.counts.get(n, 0) for n in CHART_COUNTS}}
        for _, r in runs
    ]
    return sorted(rows, key=lambda row: row["Started"])


def run_label(sync: str, record: RunRecord) -> str:
    """How a run is named in a picker."""
    rejected = record.counts.get("rejected", 0)
    return f"{sync} · run {record.id} · {local_time(record.started_at)} · {rejected:,} rejected"


def event_time_text(ms: int) -> str:
    """An event time as the pages and the CLI show it: UTC, to the minute."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


VOLUME_WARNING = "backfilled events count toward your event volume and can take up to 48 hours to appear"
EDITED_ROWS_WARNING = "without insert_id_column, a row edited after it was sent arrives as a new event"


def report_notes(report: Report, config: SyncConfig) -> list[str]:
    """What a user should know about this sync's objects and options, beyond the counts."""
    plan, options, out = report.plan, config.sync.options, []
    events = not config.sync.is_profile
    if config.source.read_files:
        out.append(f"the model may read these files (read_files): {', '.join(config.source.read_files)}")
    if events and plan.first_time is not None and plan.last_time is not None:
        out.append(f"events from {event_time_text(plan.first_time)} to {event_time_text(plan.last_time)}")
    if events and plan.to_send:
        out.append(VOLUME_WARNING)
    if events and not options.insert_id_column:
        out.append(EDITED_ROWS_WARNING)
    out += state_notes(report)
    if options.synthetic_event and plan.synthetic:
        verb = "would send" if report.is_preview else f"sent {report.synthetic_sent:,} of"
        out.append(
            f"{verb} {plan.synthetic:,} {options.synthetic_event!r} events, one per updated profile "
            "(mark it inactive in Amplitude; it still counts toward event volume)"
        )
    return out


STALE_CHOICES = (
    "If Amplitude shows them, run with `--stale-in-doubt delivered`; if it does not, "
    "`--stale-in-doubt resend` sends them again (a value that adds, $add or $append, could then "
    "count twice). Their keys are left alone until then"
)


def state_notes(report: Report) -> list[str]:
    """What the saved state says about this run: items in doubt, other destinations, other syncs."""
    out = []
    preview, plan = report.is_preview, report.plan
    if report.resent:
        out.append(
            f"resent {_updates(report.resent)} left in doubt by an earlier run; Amplitude acknowledged them"
        )
    if report.in_doubt and preview:
        out.append(
            f"{_updates(report.in_doubt)} from an earlier run {_are(report.in_doubt)} in doubt (Amplitude's "
            "answer never came): the run resends them first, exactly as they were (same insert_id, "
            "which Amplitude de-duplicates), then compares the rows with the values they carry"
        )
    elif report.in_doubt:
        out.append(
            f"{_updates(report.in_doubt)} {_are(report.in_doubt)} in doubt (Amplitude's answer never came): "
            "they stay in the outbox, and the next run resends them first, exactly as they were"
        )
    if report.settled:
        out.append(
            f"{_updates(report.settled)} in doubt for over 7 days {'are' if preview else 'were'} taken as "
            "delivered, as you said: their values enter the state and nothing of them is resent"
        )
    if report.stale:
        out.append(
            f"{_updates(report.stale)} in doubt {_are(report.stale)} older than 7 days, Amplitude's "
            f"de-duplication window, so they are not resent blindly. {STALE_CHOICES}"
        )
    if plan.held:
        out.append(f"{plan.held:,} rows left alone: an earlier update of their key is still in doubt")
    out += _destination_notes(report)
    for other, props in report.overlaps.items():
        names = ", ".join(p.split(":", 1)[1] for p in props[:5]) + (" and more" if len(props) > 5 else "")
        out.append(f"the sync {other!r} also writes {names} at this destination: whichever runs last wins")
    return out


def _updates(n: int) -> str:
    return f"{n:,} update" if n == 1 else f"{n:,} updates"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _destination_notes(report: Report) -> list[str]:
    here = report.destination
    if here is None or not report.elsewhere:
        return []
    kept = "; ".join(
        f"{k.ref.describe()}" + (f", last used {_day(k.last_used)}" if k.last_used else "")
        for k in report.elsewhere
    )
    verb = "plans" if report.is_preview else "planned"
    out = [
        f"this sync has never sent to {here.describe()}, so the run {verb} every row as new; "
        f"what it sent to {kept}, is kept as it was"
    ]
    if offers_rekey(report):
        out.append(
            f"only if {here.name!r} is the same Amplitude project under a new API key (not another "
            "project in the same region), run `amp-sync rekey FILE` first (in the app: Same Amplitude "
            "project, new key): it keeps what was sent instead of sending every row again"
        )
    return out


def offers_rekey(report: Report) -> bool:
    """The sync has state only under another API key at this endpoint: it may be a new key."""
    here = report.destination
    return here is not None and any(k.ref.endpoint == here.endpoint for k in report.elsewhere)


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


# What the pages add to the notes above: their level, and the words for each object.
_WARNINGS = (VOLUME_WARNING, EDITED_ROWS_WARNING)
_WARNING_WORDS = ("mark it inactive", "in doubt", "never sent to", "also writes", "new API key")
_NOUNS = {SyncObject.USER: "users", SyncObject.DEVICE: "devices", SyncObject.GROUP: "groups"}
PROPERTY_NOUNS = {SyncObject.GROUP: "group properties", SyncObject.EVENT: "event properties"}


def object_noun(sync: Sync) -> str:
    """What a sync's rows are, in the plural: users, devices, groups or events."""
    return _NOUNS.get(sync.object, "events")


def note_levels(report: Report, config: SyncConfig) -> list[tuple[str, str]]:
    """report_notes as a page shows them: a level (info or warning) and a sentence."""
    out = []
    for note in report_notes(report, config):
        warn = note in _WARNINGS or any(w in note for w in _WARNING_WORDS)
        out.append(("warning" if warn else "info", note[:1].upper() + note[1:] + "."))
    return out


def event_time_exact(ms: int) -> str:
    """An event time to the second, in UTC (with milliseconds when it has any)."""
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{ms % 1000:03d} UTC" if ms % 1000 else f"{text} UTC"


def event_rows(payloads: dict[str, dict[str, Any]]) -> list[Row]:
    """The events a run sends, one row each: id, event type, time, properties, insert_id."""
    rows = []
    for insert_id, event in payloads.items():
        props = event.get("event_properties")
        rows.append(
            {
                "Id": event.get("user_id") or event.get("device_id") or "",
                "Event type": event.get("event_type", ""),
                "Time": event_time_exact(event["time"]) if isinstance(event.get("time"), int) else "",
                "Properties": json.dumps(props, ensure_ascii=False, sort_keys=True) if props else "",
                "Insert id": insert_id,
            }
        )
    return rows


def filter_events(rows: Sequence[Row], text: str) -> list[Row]:
    """Event rows whose id, event type or insert id contains `text` (any case)."""
    needle = text.strip().lower()
    if not needle:
        return list(rows)
    return [r for r in rows if any(needle in r[c].lower() for c in ("Id", "Event type", "Insert id"))]


def revert_rows(sample: Iterable[FieldChange]) -> list[Row]:
    """What a revert sends, field by field: the value in Amplitude now and the one restored."""
    return [
        {
            "Key": c.key,
            "Property": c.property,
            "Operation": c.op if c.after is not None else "$unset",
            "Current value": shown(c.before),
            "Restored value": shown(c.after),
        }
        for c in sample
    ]


def revert_summary(report: Report) -> tuple[str, str]:
    """The outcome of a revert in words, with its level: success or warning."""
    p = report.plan
    run = f"run #{p.reverts_run}" if p.reverts_run is not None else "the last run"
    if report.failed:
        return "warning", (
            f"Reverted {report.sent:,} of {p.to_send:,} keys of {run}; {report.failed:,} were not "
            "delivered. Revert again to send them."
        )
    if p.to_send == 0:
        return "success", f"Nothing to send: amp_sync last delivered the values from before {run}."
    return "success", (
        f"Reverted {run}: sent {report.sent:,} keys back to their values from before it, "
        f"in {duration(report.seconds)}."
    )


# Deeper than this, a grid shows a value as words: Arrow, which draws the grids, stops near 64.
GRID_DEPTH = 20


def grid_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Model rows as a grid can draw them: values too deep for it, or unreadable, in words."""
    return [tuple(_grid_cell(v) for v in row) for row in rows]


def _grid_cell(value: Any) -> Any:
    if isinstance(value, Invalid):
        return f"({value.reason})"
    if isinstance(value, list | tuple | dict) and (depth := nesting(value)) > GRID_DEPTH:
        return f"(a value nested {depth:,} levels deep)"
    return value

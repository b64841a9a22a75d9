"""Revert the last run: send back the values a run replaced, for exactly the keys it changed.

The snapshot remembers, per key, the run that last changed it and the fields before that run.
Reverting restores those fields in Amplitude: a changed value is set back, a property the run
set for the first time is unset, a running total ($add) gets the opposite increment, and a list
operation is undone with its opposite ($append and its kin with $remove, $remove with $append).
A $setOnce that already had a value is left alone: Amplitude kept the first one anyway.

A revert is a run of its own: previewed first, sent the same way, recorded in the history, and
itself revertible (reverting a revert re-applies what it undid).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from amp_sync.config import Operation, SyncConfig
from amp_sync.errors import AmpSyncError
from amp_sync.outbox import Outbox
from amp_sync.plan import (
    SAMPLE_LIMIT,
    USER_LINK,
    Doc,
    FieldChange,
    Plan,
    canonical,
    identification,
    queue_update,
    same_field,
)
from amp_sync.snapshot import NO_RAW, digest
from amp_sync.state import DestinationRef, StateStore

_LIST_UNDO = {
    Operation.APPEND: Operation.REMOVE,
    Operation.PREPEND: Operation.REMOVE,
    Operation.PRE_INSERT: Operation.REMOVE,
    Operation.POST_INSERT: Operation.REMOVE,
    Operation.REMOVE: Operation.APPEND,
}


class NothingToRevert(AmpSyncError):
    """The sync has no run whose changes can be reverted."""


def revert_changes(
    key: str, current: Doc, previous: Doc, undoing_a_revert: bool = False
) -> list[FieldChange]:
    """What to send so that `key`'s properties go back from `current` to `previous`.

    A list operation is undone by its opposite, for the item the reverted run sent: a run sent
    its own value, so that value is taken out again; a revert took the value before it out (or
    back in), so undoing that revert (`undoing_a_revert`) sends the mapping's own operation with
    that value once more.
    """
    changes = []
    for prop, (op, value) in current.items():
        if prop == USER_LINK:
            continue  # a device stays with its user: Amplitude cannot unlink them
        before = previous.get(prop)
        old = before[1] if before else None
        if before is not None and same_field(before, [op, value]):
            continue
        if op in _LIST_UNDO and undoing_a_revert:
            if old is not None:  # the revert took `old` out: send it as the mapping does
                changes.append(FieldChange(key, prop, op, value, old, False))
        elif op in _LIST_UNDO:
            if value is not None:  # undo what the run sent, item for item
                changes.append(FieldChange(key, prop, str(_LIST_UNDO[Operation(op)]), value, value, False))
        elif old is None:
            if value is not None:  # first set by that run: clear it
                changes.append(FieldChange(key, prop, str(Operation.SET), value, None, False))
        elif op == Operation.SET_ONCE:
            continue  # Amplitude kept the first value; that run changed nothing
        else:
            changes.append(FieldChange(key, prop, op, value, old, False))
    for prop, (op, old) in previous.items():
        if prop not in current and prop != USER_LINK and old is not None:
            # Not in the fields now (a revert cleared the key): send it again as on a first sync.
            changes.append(FieldChange(key, prop, op, None, old, True))
    return changes


def check_revertible(config: SyncConfig) -> None:
    """Event syncs cannot be reverted: Amplitude's events are immutable."""
    if not config.sync.is_profile:
        raise AmpSyncError(
            "an event sync cannot be reverted: Amplitude's events are immutable once ingested "
            "(Amplitude's own tools can delete them, by user, from its User Privacy API)"
        )


def last_run(store: StateStore | None) -> int:
    """The run a revert would undo, or NothingToRevert."""
    run_id = store.last_changed_run() if store else None
    if run_id is None:
        raise NothingToRevert("nothing to revert: no run of this sync has changed anything in Amplitude yet")
    return run_id


def plan_revert(
    config: SyncConfig,
    store: StateStore,
    run_id: int,
    outbox: Outbox | None,
    held: Iterable[str] = (),
) -> Plan:
    """Plan the revert of run `run_id` (see last_run); queue its updates when sending.

    Keys in `held` have an update still in doubt: they are left alone, as a run leaves them.
    """
    plan = Plan(reverts_run=run_id)
    sync = config.sync
    undoing = not _went_forward(store, run_id)
    where = DestinationRef.of(config.destination).ident
    waiting = set(held)
    for piece in store.touched(run_id):
        for key, doc, prev, seq in piece:
            plan.rows_read += 1
            if key in waiting:
                plan.held += 1
                continue
            current: Doc = json.loads(doc)
            previous: Doc = json.loads(prev) if prev else {}
            changes = revert_changes(key, current, previous, undoing)
            if not changes:
                plan.unchanged += 1
                continue
            plan.changed += 1
            item = identification(sync.object, key, current, changes, sync.options.group_type)
            _note(plan, key, item, changes)
            if outbox is not None:
                restored = canonical(previous)
                commit = (restored, digest(key, restored), NO_RAW, seq + 1, doc)
                queue_update(outbox, sync, where, key, item, commit)
    if sync.options.synthetic_event:
        plan.synthetic = plan.changed
    return plan


def _went_forward(store: StateStore, run_id: int) -> bool:
    """Whether run `run_id`'s list operations went forward (a run, or an even chain of reverts).

    A revert of a run sends the opposites; a revert of that revert sends the operations again.
    """
    forward, seen = True, set()
    record = store.run(run_id)
    while record is not None and record.kind == "revert" and record.id not in seen:
        seen.add(record.id)
        forward = not forward
        target = record.counts.get("reverts_run")
        record = store.run(int(target)) if target is not None else None
    return forward


def _note(plan: Plan, key: str, item: dict[str, Any], changes: list[FieldChange]) -> None:
    for change in changes:
        plan.property_counts[change.property] += 1
    room = SAMPLE_LIMIT - len(plan.sample)
    if room > 0:
        plan.sample += changes[:room]
        plan.payloads[key] = item

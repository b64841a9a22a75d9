"""The Syncs page's field mapper: model columns on the left, one editable row per mapping on the right.

The mapping list lives in one session-state entry (`ROWS`): the drag board, the rows and the saved
sync are all drawn from it, so renaming a property renames its card. Every key starts with `sync_map`
or `mapper_` and belongs to this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit_sortables import sort_items

from amp_sync.config import Destination, Mapping_, Operation, SyncObject
from amp_sync.credentials import KnownProperties, user_properties
from amp_sync.mapping import column_choices, operations, rearranged

ROWS = "sync_map_rows"  # list of (row id, Mapping_): the one source of truth
MODEL_COLUMNS = "Model columns"
DROP = "Mapped columns"
ARROW = " → "
OP_HELP = "$set overwrites; $setOnce keeps the first value; $add adds the increase since the last run."
# Streamlit's own look (its font, borders, radii and primary colour) for the cards in the iframe.
BOARD_STYLE = """
.sortable-component { font-family: "Source Sans Pro", "Source Sans 3", sans-serif; gap: 0.75rem;
  display: flex; flex-direction: column; }
.sortable-component.vertical .sortable-container { background: #fff; border: 1px solid rgba(49, 51, 63, 0.2);
  border-radius: 0.5rem; padding: 0.5rem; margin: 0; }
.sortable-component.vertical .sortable-container + .sortable-container { border: 1px dashed #1e61f0; }
.sortable-container-header { background: transparent; color: rgba(49, 51, 63, 0.6); font-size: 0.85rem;
  font-weight: 600; padding: 0 0.25rem 0.35rem; }
.sortable-container-body { background: transparent; min-height: 2.5rem; }
.sortable-item, .sortable-item:hover { background: #f0f2f6; color: #31333f; border: 1px solid transparent;
  border-radius: 0.5rem; font-size: 0.9rem; height: auto; padding: 0.3rem 0.6rem; margin: 0.2rem 0;
  text-align: left; cursor: grab; }
.sortable-item:hover { border-color: #1e61f0; }
.sortable-item::before { content: "⠿"; color: rgba(49, 51, 63, 0.4); margin-right: 0.45rem; }
"""
state = st.session_state


def mappings() -> tuple[Mapping_, ...]:
    """The mapping list as it stands."""
    return tuple(m for _, m in state.get(ROWS, []))


def load(saved: Sequence[Mapping_]) -> None:
    """Start the mapping list over from `saved` (a loaded sync, a discard, a new sync)."""
    _set([(_new_id(), m) for m in saved])


def keep_only(columns: Sequence[str]) -> None:
    """Drop the rows of columns the model no longer returns."""
    rows = state.get(ROWS, [])
    if any(m.column not in columns for _, m in rows):
        _set([(i, m) for i, m in rows if m.column in columns])


def known_properties(destination: Destination) -> KnownProperties:
    """The destination's user properties, read once per destination and endpoint in a session."""
    cache = state.setdefault("sync_map_known", {})
    seen = (destination.name, destination.rest_url, destination.secret_key is not None)
    if seen not in cache:
        with st.spinner("Reading the project's user properties…"):
            cache[seen] = user_properties(destination, timeout=5.0)
    return cache[seen]  # type: ignore[no-any-return]


def field_mapper(
    mappable: list[str], obj: SyncObject, known: Sequence[str], on_automap: Callable[[], list[str]]
) -> tuple[Mapping_, ...]:
    """Draw the board and the rows; returns the mappings they hold."""
    state.setdefault(ROWS, [])
    state.setdefault("sync_map_ver", 0)
    st.button(
        "Auto-map all columns", key="sync_automap", icon=":material/auto_awesome:",
        on_click=lambda: _add(on_automap(), known),
        help="Map every model column not mapped yet to the property of the same name, with $set.",
    )  # fmt: skip
    board, rows = st.columns([1, 2.6], gap="large")
    with board:
        _board(mappable, known)
    with rows, st.container(key="sync_fields_list"):
        _rows(mappable, obj, known)
    return mappings()


def _board(mappable: list[str], known: Sequence[str]) -> None:
    """The drag board: unmapped model columns above, the mapped ones (in order) below."""
    shown = _board_value(mappable)
    got = sort_items(
        shown, multi_containers=True, direction="vertical", custom_style=BOARD_STYLE,
        key=f"mapper_{state.sync_map_ver}",
    )  # fmt: skip
    if not got or got == shown:
        return
    dropped = next((c["items"] for c in got if c.get("header") == DROP), [])
    labels = {_label(m): m.column for m in mappings()}
    order = [labels.get(item, item) for item in dropped]
    _set(_with_ids(rearranged(mappings(), [c for c in order if c in mappable], known)))
    st.rerun()  # draw the board again from the list, with each new card under its property's name


def _board_value(mappable: list[str]) -> list[dict[str, object]]:
    mapped = mappings()
    taken = {m.column for m in mapped}
    return [
        {"header": MODEL_COLUMNS, "items": [c for c in mappable if c not in taken]},
        {"header": DROP, "items": [_label(m) for m in mapped]},
    ]


def _label(m: Mapping_) -> str:
    return m.column if m.property == m.column else f"{m.column}{ARROW}{m.property}"


def _rows(mappable: list[str], obj: SyncObject, known: Sequence[str]) -> None:
    rows = state[ROWS]
    if not rows:
        if obj is SyncObject.EVENT:
            st.info("No event property mapped: the events carry none. Drag a column here to add one.")
        else:
            st.info(
                "No field mapped yet: drag a model column into **Mapped columns**, or press Auto-map.",
                icon=":material/drag_indicator:",
            )
        return
    events = obj is SyncObject.EVENT
    widths = [3, 3, 0.6] if events else [3, 3, 2, 0.6]
    head = st.columns(widths, vertical_alignment="bottom")
    head[0].caption("**Model column**")
    head[1].caption("**Event property**" if events else f"**{_property_words(obj)}**")
    if not events:
        head[2].caption("**Operation**", help=OP_HELP)
    current = mappings()
    for index, (row_id, m) in enumerate(rows):
        _row(row_id, m, column_choices(mappable, current, index), obj, known, widths)
    if events:
        st.caption("Event properties are sent as the row holds them ($set): an event is never updated.")


def _property_words(obj: SyncObject) -> str:
    return "Group property" if obj is SyncObject.GROUP else "Amplitude property"


def _row(
    row_id: int, m: Mapping_, choices: list[str], obj: SyncObject, known: Sequence[str], widths: list[float]
) -> None:
    """One mapping: column → property → operation, and a button that removes it."""
    keys = {part: f"sync_map_{part}_{row_id}" for part in ("col", "prop", "op")}
    for part, value in (("col", m.column), ("prop", m.property), ("op", str(m.op))):
        if keys[part] not in state:
            state[keys[part]] = value
    cells = st.columns(widths, vertical_alignment="center")
    cells[0].selectbox(
        f"Model column of {m.column}", choices, key=keys["col"], label_visibility="collapsed",
        on_change=_edit, args=(row_id, "column", keys["col"]),
    )  # fmt: skip
    _property_input(cells[1], m, keys["prop"], known, row_id)
    if obj is not SyncObject.EVENT:
        ops = [str(op) for op in operations(obj)]
        cells[2].selectbox(
            f"Operation of {m.column}", ops if str(m.op) in ops else [*ops, str(m.op)], key=keys["op"],
            label_visibility="collapsed", on_change=_edit, args=(row_id, "op", keys["op"]),
        )  # fmt: skip
    cells[-1].button(
        ":material/close:", key=f"sync_map_rm_{row_id}", help=f"Remove the mapping of {m.column}",
        type="tertiary", on_click=_remove, args=(row_id,),
    )  # fmt: skip


def _property_input(cell: DeltaGenerator, m: Mapping_, key: str, known: Sequence[str], row_id: int) -> None:
    """A text field, or a pick of the project's properties that also takes a new name."""
    label, args = f"Property of {m.column}", (row_id, "property", key)
    if not known:
        cell.text_input(
            label, key=key, placeholder="property name", label_visibility="collapsed",
            on_change=_edit, args=args,
        )  # fmt: skip
        return
    cell.selectbox(
        label, list(dict.fromkeys([m.property, *known] if m.property else known)), key=key,
        accept_new_options=True, placeholder="Pick or type a name", label_visibility="collapsed",
        on_change=_edit, args=args,
    )  # fmt: skip


def _edit(row_id: int, part: str, key: str) -> None:
    """Write a widget's new value into its row of the list."""
    value = state[key]
    _set([(i, _changed(m, part, value) if i == row_id else m) for i, m in state[ROWS]])


def _changed(m: Mapping_, part: str, value: str | None) -> Mapping_:
    if part == "op":
        return replace(m, op=Operation(value or Operation.SET))
    if part == "column" and value:  # a property still named after its column follows the new one
        return replace(m, column=value, property=value if m.property == m.column else m.property)
    return replace(m, property=value or "")


def _remove(row_id: int) -> None:
    _set([(i, m) for i, m in state[ROWS] if i != row_id])


def _add(columns: list[str], known: Sequence[str]) -> None:
    """Append rows for `columns` (what auto-map returns: the mapped ones first, then the rest)."""
    _set(_with_ids(rearranged(mappings(), columns, known)))


def _with_ids(new: Sequence[Mapping_]) -> list[tuple[int, Mapping_]]:
    """Rows for `new`, each column keeping the id (and so the widgets) it had."""
    ids = {m.column: i for i, m in state.get(ROWS, [])}
    return [(ids.get(m.column) or _new_id(), m) for m in new]


def _new_id() -> int:
    state.sync_map_next = state.get("sync_map_next", 0) + 1
    return int(state.sync_map_next)


def _set(rows: list[tuple[int, Mapping_]]) -> None:
    """Replace the list; the board is redrawn under a new key (a component keeps what its key held)."""
    for row_id, m in rows:  # widgets show the list: an edit made elsewhere (a drag, a load) wins
        for part, value in (("col", m.column), ("prop", m.property), ("op", str(m.op))):
            state[f"sync_map_{part}_{row_id}"] = value
    state[ROWS] = rows
    state.sync_map_ver = state.get("sync_map_ver", 0) + 1

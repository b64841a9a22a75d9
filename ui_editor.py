"""The Models page's SQL editor, which hands its text over with no hidden step, and its results grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
from code_editor import code_editor

import ui
from amp_sync import catalog, views, warehouse
from amp_sync.errors import AmpSyncError

# Fonts found on Linux, macOS and Windows, each with room below the baseline for `_` (a font whose
# underscore falls outside Ace's line box shows `user_id` as `user id`).
FONT = '"DejaVu Sans Mono", "Menlo", "Consolas", "Liberation Mono", monospace'
# The completion popup takes a suggestion with Tab only: Enter always starts a new line.
# Ace's completer names its commands after their keys (ace/autocomplete.js, `commands`).
KEYS = {"completer": [{"name": "Return", "bindkey": ""}, {"name": "Shift-Return", "bindkey": ""}]}
PROPS = {
    "enableLiveAutocompletion": True,
    "enableSnippets": False,
    "placeholder": "select user_id, plan from users",
    "fontSize": 14,
    # A top scroll margin shifts the text but not the line numbers (react-ace's default is 15 px).
    "scrollMargin": [0, 0, 0, 0],
    "style": {"border": "1px solid rgba(49, 51, 63, 0.2)", "borderRadius": "0.5rem"},
}
OPTIONS = {"wrap": True, "showLineNumbers": True, "fontFamily": FONT, "showPrintMargin": False}
GRID_ROW_HEIGHT = 35  # st.dataframe draws each row, and the header, 35 px high
GRID_MAX_HEIGHT = 320


@dataclass(frozen=True, slots=True)
class EditorEvent:
    """What the editor last sent: its text, an id new with every send, and why it sent it."""

    text: str
    event_id: str
    kind: str  # "" (nothing sent yet), "change" (a pause in typing), "blur" or "submit" (Ctrl/Cmd+Enter)

    @property
    def submitted(self) -> bool:
        return self.kind == "submit"

    @property
    def blurred(self) -> bool:
        return self.kind == "blur"


@st.cache_data(ttl=300, show_spinner=False)
def completions(url: str) -> list[dict[str, Any]]:
    """Table and column names of the warehouse at `url`, as Ace completions (none if unreachable)."""
    try:
        tables = catalog.schema(url)
    except AmpSyncError:
        return []
    words = [{"caption": t, "value": t, "meta": "table", "score": 1000} for t in tables]
    columns = {(c, kind) for cols in tables.values() for c, kind in cols}
    words += [{"caption": c, "value": c, "meta": kind.lower(), "score": 900} for c, kind in sorted(columns)]
    return words


def sql_editor(text: str, *, key: str, words: list[dict[str, Any]]) -> EditorEvent:
    """Show `text` in an SQL editor; return what it holds, sent on every pause in typing and on blur.

    A new `key` loads new `text` (the editor keeps its own text for as long as its key lives).
    """
    response = code_editor(
        text,
        lang="sql",
        theme="default",
        shortcuts="vscode",
        height=[10, 24],
        response_mode=["debounce", "blur"],
        completions=words,
        keybindings=KEYS,
        props=PROPS,
        options=OPTIONS,
        key=key,
    )
    if not response or not response.get("id"):  # nothing sent yet: it shows what it was given
        return EditorEvent(text, "", "")
    return EditorEvent(response["text"], response["id"], response.get("type", ""))


def grid_height(rows: int) -> int:
    """Pixels for a grid of `rows` rows: tall enough to show them all when few, capped when many."""
    return min(GRID_MAX_HEIGHT, GRID_ROW_HEIGHT * (max(rows, 1) + 1) + 2)  # +1: the header; 2: borders


def row_count_text(result: warehouse.Sample) -> str:
    """How many rows the model returned and how many the grid holds, in words."""
    shown = len(result.rows)
    part = f"first {shown:,} shown" if result.row_count > shown else f"all {shown:,} shown"
    return f"Rows: {result.row_count:,} · {part} · read in {result.seconds:.2f} s"


def _type_name(values: tuple[Any, ...]) -> str:
    return next((type(v).__name__ for v in values if v is not None), "empty")


def show_result(result: warehouse.Sample | AmpSyncError | None) -> None:
    """The rows a model returned (or why it failed), with their count and each column's type."""
    if isinstance(result, AmpSyncError):
        ui.show_error(result)
    if not isinstance(result, warehouse.Sample):
        return
    st.markdown(row_count_text(result))
    names = [f"{c} ({i})" if c in result.columns[:i] else c for i, c in enumerate(result.columns)]
    rows = pd.DataFrame(views.grid_rows(result.rows), columns=names)
    columns = list(zip(*result.rows, strict=True)) if result.rows else [() for _ in names]
    types = pd.DataFrame({"column": names, "type": [_type_name(v) for v in columns]})
    grid, kinds = st.columns([4, 1])
    grid.dataframe(rows, hide_index=True, height=grid_height(len(rows)))
    kinds.dataframe(types, hide_index=True, height=grid_height(len(types)))

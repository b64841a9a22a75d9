"""Models: write SQL against a warehouse, see its first rows live, save it for syncs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from streamlit_ace import st_ace

import ui
from amp_sync import views, warehouse
from amp_sync.errors import AmpSyncError
from amp_sync.templates import STARTER_MODELS, template
from amp_sync.workspace import DEMO_WAREHOUSE, SavedModel, Warehouse

NEW = "New model"
SAMPLE_ROWS = 200
# Widgets whose values outlive a visit to another page (Streamlit drops the state of unrendered widgets).
KEPT = ("model_pick", "model_name", "model_warehouse", "model_template")
state = st.session_state


def _load(name: str | None, sql: str, warehouse_name: str | None = None) -> None:
    """Put a model (or a blank one) in the editor: a new editor key makes st_ace take the text."""
    state.model_loaded = name
    state.model_name = name or ""
    state.model_text = sql
    state.model_ver = state.get("model_ver", 0) + 1
    state.model_confirm_delete = False
    if warehouse_name:
        state.model_warehouse = warehouse_name


def _on_pick() -> None:
    if state.model_pick == NEW:
        _load(None, "")
        return
    model = ui.attempt(lambda: ws.get(SavedModel, state.model_pick))
    if model:
        _load(model.name, model.sql, model.warehouse)


def _on_template() -> None:
    starter = template(state.model_template)
    _load(None, starter.sql)
    state.model_name = starter.name
    state.model_pick = NEW


def _after(message: str, pick: str, sql: str | None = None) -> None:
    """Show `message` on the next run, with `pick` selected (and `sql` in a fresh editor)."""
    state.model_flash = message
    state.model_next = (pick, sql)
    st.rerun()


def _apply_pending(names: list[str], warehouses: list[str]) -> None:
    if "model_pick" not in state and "model_kept" in state:  # back from another page
        kept = state.model_kept
        state.update({k: v for k, v in kept.items() if k in KEPT})
        state.model_text, state.model_ver = kept["sql"], state.model_ver + 1
    pick, sql = state.pop("model_next", (None, None))
    if pick is not None:
        state.model_pick = pick
        state.model_loaded = None if pick == NEW else pick
        if sql is not None:
            _load(state.model_loaded, sql)
    if state.get("model_pick") not in [NEW, *names]:
        state.model_pick = NEW
        state.model_loaded = None
    if state.get("model_warehouse") not in warehouses:
        state.model_warehouse = DEMO_WAREHOUSE if DEMO_WAREHOUSE in warehouses else warehouses[0]


def _run(url: str, sql: str, read_files: tuple[str, ...]) -> None:
    with st.spinner("Running the model…"):
        try:
            state.model_result = warehouse.sample(url, sql, limit=SAMPLE_ROWS, read_files=read_files)
        except AmpSyncError as exc:
            state.model_result = exc
    state.model_ran = (url, sql)


def _type_name(values: list[Any]) -> str:
    return next((type(v).__name__ for v in values if v is not None), "empty")


def _show_result(result: warehouse.Sample | AmpSyncError | None) -> None:
    if isinstance(result, AmpSyncError):
        ui.show_error(result)
    if not isinstance(result, warehouse.Sample):
        return
    shown = f"first {len(result.rows):,} shown" if result.row_count > len(result.rows) else "all shown"
    st.markdown(f"Rows: {result.row_count:,} · {shown} · read in {result.seconds:.2f} s")
    names = [f"{c} ({i})" if c in result.columns[:i] else c for i, c in enumerate(result.columns)]
    grid, types = st.columns([4, 1])
    grid.dataframe(pd.DataFrame(views.grid_rows(result.rows), columns=names), hide_index=True, height=320)
    columns = list(zip(*result.rows, strict=True)) if result.rows else [[] for _ in names]
    types.dataframe(
        pd.DataFrame({"column": names, "type": [_type_name(list(v)) for v in columns]}),
        hide_index=True,
        height=320,
    )


def _save(name: str, warehouse_name: str, sql: str) -> None:
    warehouse.check_read_only(sql, ws.get(Warehouse, warehouse_name).url.reveal())
    name, previous = name.strip(), state.model_loaded
    ws.save(SavedModel(name, warehouse_name, sql), previous_name=previous)
    renamed = previous is not None and previous != name
    _after(f"Renamed {previous!r} to {name!r}." if renamed else f"Saved the model {name!r}.", name)


def _delete(name: str) -> None:
    ws.delete(SavedModel, name)
    _after(f"Deleted the model {name!r}.", NEW, "")


st.title("Models")
st.caption("A model is one SELECT query: each row becomes one Amplitude user or device in a sync.")
ws = ui.attempt(ui.workspace)
warehouses = ui.attempt(lambda: ws.names(Warehouse)) if ws else None
if ws is None or warehouses is None:
    st.stop()
if not warehouses:
    st.info("Add a warehouse first: models run against one.")
    st.page_link(ui.WAREHOUSES, label="Go to Warehouses", icon="🗄️")
    st.stop()
models = ws.names(SavedModel)
_apply_pending(models, warehouses)
state.setdefault("model_ver", 0)
state.setdefault("model_text", "")
state.setdefault("model_loaded", None)
state.setdefault("model_name", "")

pick_col, wh_col = st.columns(2)
pick_col.selectbox("Model", [NEW, *models], key="model_pick", on_change=_on_pick)
wh_name = wh_col.selectbox("Warehouse", warehouses, key="model_warehouse")
chosen_warehouse = ui.attempt(lambda: ws.get(Warehouse, wh_name))
if chosen_warehouse is None:
    st.stop()  # ui.attempt said why: a ${VAR} in its URL is not set
url, read_files = chosen_warehouse.url.reveal(), chosen_warehouse.read_files
wh_col.caption(f"`{warehouse.describe_url(url)}`")

with st.expander("Start from a template", expanded=not models):
    t_col, b_col = st.columns([3, 1], vertical_alignment="bottom")
    chosen = t_col.selectbox(
        "Starter model",
        [t.name for t in STARTER_MODELS],
        format_func=lambda n: template(n).title,
        key="model_template",
    )
    b_col.button("Load into the editor", key="model_load_template", on_click=_on_template)
    st.caption(template(chosen).description + " Written for the demo warehouse.")

sql = st_ace(
    value=state.model_text,
    placeholder="select user_id, plan from users",
    language="sql",
    theme="chrome",
    show_gutter=True,
    min_lines=10,
    key=f"model_sql_{state.model_ver}",
)
st.caption(
    "Ctrl/Cmd+Enter runs (or press APPLY in the editor's corner): until then the page has not "
    "seen your changes. Only SELECT and WITH queries are allowed."
)
run_clicked = st.button("Run", key="model_run", type="primary")
if sql.strip() and (run_clicked or state.get("model_ran") != (url, sql)):
    _run(url, sql, read_files)
elif not sql.strip():
    state.model_result = None
    state.model_ran = None
    if run_clicked:
        st.warning("The editor is empty: write a SELECT query, then press Ctrl/Cmd+Enter.")
_show_result(state.get("model_result"))

st.subheader("Save")
if flash := state.pop("model_flash", None):
    st.success(flash)
name = st.text_input("Model name", key="model_name", placeholder="user_ltv")
if state.model_loaded:
    st.caption("Change the name and save to rename it; syncs using it follow the new name.")
save_col, delete_col = st.columns([1, 1])
if save_col.button("Save model", key="model_save", type="primary"):
    ui.attempt(lambda: _save(name, wh_name, sql))
if state.model_loaded and delete_col.button("Delete model", key="model_delete"):
    state.model_confirm_delete = True
if state.model_loaded and state.get("model_confirm_delete"):
    st.warning(f"Delete the model {state.model_loaded!r}? This cannot be undone.")
    yes, no = st.columns([1, 1])
    if yes.button("Yes, delete it", key="model_delete_yes"):
        ui.attempt(lambda: _delete(state.model_loaded))
    if no.button("Cancel", key="model_delete_no"):
        state.model_confirm_delete = False
        st.rerun()
state.model_kept = {**{k: state[k] for k in KEPT if k in state}, "sql": sql}

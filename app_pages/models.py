"""Models: write SQL against a warehouse, run it to see its first rows, save it for syncs."""

from __future__ import annotations

import streamlit as st

import ui
import ui_editor
from amp_sync import catalog, warehouse
from amp_sync.errors import AmpSyncError
from amp_sync.templates import STARTER_MODELS, template
from amp_sync.workspace import DEMO_WAREHOUSE, SavedModel, Warehouse

NEW = "New model"
SAMPLE_ROWS = 200
# Widgets whose values outlive a visit to another page (Streamlit drops the state of unrendered widgets).
KEPT = ("model_pick", "model_name", "model_warehouse", "model_template")
state = st.session_state


def _load(name: str | None, sql: str, warehouse_name: str | None = None) -> None:
    """Put a model (or a blank one) in the editor: a new editor key makes the editor take the text."""
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
        # Never a warehouse whose last check failed, while another one works.
        chosen = catalog.default_choice(ws, Warehouse, warehouses, preferred=DEMO_WAREHOUSE)
        state.model_warehouse = chosen or warehouses[0]


def _run(url: str, sql: str, read_files: tuple[str, ...]) -> None:
    state.model_pending = True  # until the result is kept: a rerun may stop this one midway
    with st.spinner("Running the model…"):
        try:
            state.model_result = warehouse.sample(url, sql, limit=SAMPLE_ROWS, read_files=read_files)
        except AmpSyncError as exc:
            state.model_result = exc
    state.model_ran, state.model_pending = (url, sql), False


def _should_run(url: str, event: ui_editor.EditorEvent, run_clicked: bool) -> bool:
    """Run on the Run button or Ctrl/Cmd+Enter; by itself only when a model was just loaded.

    Pressing Run takes the focus from the editor, which then sends its text: that rerun can cut
    the Run button's rerun short (then the run is still pending) or come just after it (then the
    text it sends is what Run meant).
    """
    fresh = event.event_id != state.get("model_event")
    state.model_event = event.event_id
    follows_run = state.pop("model_follow", None) not in (None, event.text) and fresh and event.blurred
    if run_clicked:
        state.model_follow = event.text
    ran = state.get("model_ran")
    untouched = event.text == state.model_text  # as loaded from a saved model or a template
    moved = ran is not None and ran[0] != url  # the shown rows came from another warehouse
    asked = run_clicked or (event.submitted and fresh) or follows_run or state.get("model_pending", False)
    return asked or ((untouched or moved) and ran != (url, event.text))


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
    st.page_link(ui.WAREHOUSES, label="Go to Warehouses", icon=":material/storage:")
    st.stop()
models = ws.names(SavedModel)
_apply_pending(models, warehouses)
state.setdefault("model_ver", 0)
state.setdefault("model_text", "")
state.setdefault("model_loaded", None)
state.setdefault("model_name", "")

pick_col, wh_col = st.columns(2)
pick_col.selectbox("Model", [NEW, *models], key="model_pick", on_change=_on_pick)
wh_labels = catalog.health_labels(ws, Warehouse)
wh_name = wh_col.selectbox(
    "Warehouse", warehouses, key="model_warehouse", format_func=lambda n: wh_labels.get(n, n)
)
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

event = ui_editor.sql_editor(
    state.model_text, key=f"model_sql_{state.model_ver}", words=ui_editor.completions(url)
)
sql = event.text
st.caption(
    "Run (or Ctrl/Cmd+Enter in the editor) runs what the editor holds. Tab takes a suggestion; "
    "Enter starts a new line. Only SELECT and WITH queries are allowed."
)
run_clicked = st.button("Run", key="model_run", type="primary", icon=":material/play_arrow:")
asked = _should_run(url, event, run_clicked)
if sql.strip() and asked:
    _run(url, sql, read_files)
elif not sql.strip():
    state.model_result = None
    state.model_ran = None
    state.model_pending = False
    if run_clicked:
        st.warning("The editor is empty: write a SELECT query, then press Run.")
ui_editor.show_result(state.get("model_result"))

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

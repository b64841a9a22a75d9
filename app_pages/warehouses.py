"""Warehouses: SQLAlchemy URLs your models read from, a connection test and a schema browser."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from amp_sync import catalog
from amp_sync.catalog import (
    WAREHOUSE_EXAMPLES,
    ConnectionCheck,
    check_connection,
    default_choice,
    mark,
    warehouse_from_form,
    widget_ids,
)
from amp_sync.health import Check
from amp_sync.workspace import DEMO_WAREHOUSE, Warehouse, Workspace, origin, shown_url


def load_form(warehouse: Warehouse | None) -> None:
    """Fill the form with a saved warehouse, URL field empty (empty keeps the URL), or clear it."""
    st.session_state.wh_name = warehouse.name if warehouse else ""
    st.session_state.wh_url = ""
    st.session_state.wh_files = "\n".join(warehouse.read_files) if warehouse else ""
    st.session_state.wh_editing = warehouse.name if warehouse else None


def show_check(check: ConnectionCheck) -> None:
    if check.ok:
        st.success(check.message, icon=":material/check_circle:")
    else:
        st.error(check.message, icon=":material/error:")


def tested(ws: Workspace, name: str) -> ConnectionCheck:
    """Test the saved warehouse and keep the verdict as its last check."""
    return ui.check_saved(
        ws, Warehouse, name, lambda w: check_connection(w.url.reveal()), ConnectionCheck,
        f"Connecting to “{name}”…",
    )  # fmt: skip


def end_editing() -> None:
    """Leave edit mode: the form is for a new warehouse again."""
    load_form(None)


def save(ws: Workspace, editing: str | None) -> bool:
    """Save the form's warehouse and test it; the outcome is shown after a rerun."""
    current = ws.listed(Warehouse, editing) if editing else None  # its URL kept as it is saved
    s = st.session_state
    typed = warehouse_from_form(s.wh_name, s.wh_url, current, s.get("wh_files", ""))
    warehouse = ws.save(typed, previous_name=editing)
    if warehouse != typed:
        st.session_state.wh_absolute = (
            f"The relative file path of “{warehouse.name}” was saved absolute, against the folder "
            f"the app runs in ({Path.cwd()})."
        )
    st.session_state.wh_kept = (
        f"The URL of “{warehouse.name}” is {origin(ws.listed(Warehouse, warehouse.name).url)}."
    )
    check = tested(ws, warehouse.name)
    st.session_state.wh_flash = (warehouse.name, check)
    st.session_state.wh_next = None  # saved: edit mode ends, the list marks a failed check
    if check.ok:
        st.session_state.wh_browse = warehouse.name
    return True


def forget_if_editing(name: str) -> None:
    """A deleted warehouse can no longer be the one in the form."""
    if st.session_state.get("wh_editing") == name:
        load_form(None)


@st.cache_data(ttl=300, show_spinner="Reading the schema…")
def schema(url: str) -> dict[str, list[tuple[str, str]]]:
    return catalog.schema(url)


def render_flash() -> None:
    name, check = st.session_state.pop("wh_flash", (None, None))
    if check is not None:
        show_check(check)
        if not check.ok:
            st.caption(
                f"“{name}” is saved, marked as failing. Press Edit on it below to fix its URL "
                "(or install its driver), then save again."
            )
    if kept := st.session_state.pop("wh_kept", None):
        st.caption(ui.literal(kept))
    if absolute := st.session_state.pop("wh_absolute", None):
        st.info(absolute)
    if deleted := st.session_state.pop("wh_deleted", None):
        st.success(f"Deleted the warehouse “{deleted}”.", icon=":material/delete:")


def render_examples() -> None:
    with st.expander("URL examples", icon=":material/lightbulb:"):
        for example in WAREHOUSE_EXAMPLES:
            note = "" if example.bundled else f" — needs `pip install {example.package}`"
            st.markdown(f"**{example.label}**{note}")
            st.code(example.url, language=None)
        st.caption(
            "DuckDB, SQLite and PostgreSQL drivers come with amp_sync; others must be pip-installed "
            "into the app's environment. A relative file path is saved absolute, against the folder the app "
            "runs in."
        )


def render_form(ws: Workspace) -> None:
    editing = st.session_state.get("wh_editing")
    st.subheader(f"Edit warehouse “{editing}”" if editing else "Add a warehouse")
    current = ui.attempt(lambda: ws.listed(Warehouse, editing)) if editing else None
    with st.form("warehouse_form"):
        st.text_input("Name", key="wh_name", placeholder="Analytics (PostgreSQL)")
        st.text_input(
            "SQLAlchemy URL" + (" (leave empty to keep the saved one)" if editing else ""),
            key="wh_url",
            placeholder=shown_url(current) if current else "duckdb:///path/to/file.duckdb",
            help=(
                "After saving, the URL is shown with its password hidden. Write the password as `${VAR}` "
                "to read it from an environment variable each time it is used (`$${` writes a literal `${`)."
            ),
        )
        st.text_area(
            "Files its DuckDB models may read", key="wh_files", height=80,
            placeholder="/data/exports/plans.csv\n/data/exports/\n/data/*.parquet",
            help=(
                "A DuckDB model reads no file, folder or URL (read_csv, read_parquet, read_text...) unless "
                "it is listed here, one per line: a file, a glob (the files it matches) or a folder ending "
                "in / (everything in it, and globs in the SQL). The preview lists them."
            ),
        )  # fmt: skip
        submitted = st.form_submit_button(
            "Save and test connection", key="wh_save", type="primary", icon=":material/save:"
        )
    if editing:
        st.button("Cancel editing", key="wh_cancel_edit", on_click=end_editing, icon=":material/close:")
    render_examples()
    if submitted and ui.attempt(lambda: save(ws, editing)):
        st.rerun()  # empties the URL field: a saved password never stays in the page


def render_warehouse(ws: Workspace, w: Warehouse, wid: str, check: Check | None) -> None:
    with st.container(border=True, key=f"wh_item_{wid}"):
        st.markdown(f"**{w.name}**")
        status = st.empty()  # filled below, once a Test connection pressed now has its verdict
        st.code(shown_url(w), language=None)
        if w.read_files:
            st.caption("Its models may read: " + ", ".join(f"`{f}`" for f in w.read_files))
        edit, test, remove = st.columns(3)
        edit.button(
            "Edit",
            key=f"wh_edit_{wid}",
            on_click=load_form,
            args=(w,),
            width="stretch",
            icon=":material/edit:",
        )
        test_now = test.button(
            "Test connection", key=f"wh_test_{wid}", width="stretch", icon=":material/network_check:"
        )
        remove.button(
            "Delete", key=f"wh_delete_{wid}", on_click=ui.ask_delete, args=("wh", w.name), width="stretch",
            icon=":material/delete:",
        )  # fmt: skip
        if test_now:
            result = tested(ws, w.name)
            show_check(result)
            check = ws.checks(Warehouse).get(w.name)  # as kept: its reason freed of secrets
        with status.container(key=f"wh_status_{wid}"):
            st.markdown(mark(check, time.time()))
        ui.confirm_delete(ws, Warehouse, w.name, "warehouse", "wh", forget_if_editing)


def render_browser(ws: Workspace, warehouses: list[Warehouse]) -> None:
    st.subheader("Schema browser")
    by_name = {w.name: w for w in warehouses}
    if st.session_state.get("wh_browse") not in by_name:  # a working one, never a failing one first
        st.session_state.wh_browse = default_choice(ws, Warehouse, by_name, preferred=DEMO_WAREHOUSE)
    labels = catalog.health_labels(ws, Warehouse)
    name = st.selectbox("Warehouse", list(by_name), key="wh_browse", format_func=lambda n: labels.get(n, n))
    if st.button("Refresh", key="wh_browse_refresh", icon=":material/refresh:"):
        schema.clear()
    tables = ui.attempt(lambda: schema(by_name[name].url.reveal()))
    if tables is None:
        return
    if not tables:
        st.info("This warehouse has no tables or views (or none this user can see).", icon=":material/info:")
    for table, columns in tables.items():
        with st.expander(f"{table} · {len(columns)} columns", icon=":material/table:"):
            frame = pd.DataFrame(columns, columns=["column", "type"])
            st.dataframe(frame, hide_index=True)


st.title("Warehouses")
st.caption(
    "Where your models read from: any SQLAlchemy URL. Models only ever read. A URL holding a password "
    "is kept in the system keyring (or an owner-only file where there is none); a password written as "
    "`${VAR}` is read from that environment variable, or the app's secrets when deployed."
)
ws = ui.attempt(ui.workspace)
if ws is None:
    st.stop()
if "wh_next" in st.session_state:
    load_form(st.session_state.pop("wh_next"))
elif "wh_name" not in st.session_state:  # the form's widgets are gone: back from another page
    end_editing()
render_flash()
render_form(ws)

st.subheader("Saved warehouses")
warehouses = ui.attempt(lambda: ws.listing(Warehouse)) or []
if not warehouses:
    st.info("No warehouse yet: add one above.", icon=":material/info:")
ids = widget_ids(w.name for w in warehouses)
checks = ui.attempt(lambda: ws.checks(Warehouse)) or {}
for item in warehouses:
    render_warehouse(ws, item, ids[item.name], checks.get(item.name))
if warehouses:
    render_browser(ws, warehouses)

"""The Warehouses page: add a URL, test it, browse its schema, edit and delete it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from streamlit.testing.v1 import AppTest

from amp_sync.workspace import DEMO_WAREHOUSE, SavedModel, Warehouse, Workspace

ROOT = Path(__file__).resolve().parents[1]
DEMO_TABLES = {"users", "payments", "events", "plans", "devices"}


def open_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/warehouses.py").run()
    assert not at.exception
    return at


def rendered(at: AppTest) -> str:
    """Everything sent to the browser: every element's protobuf, as text."""
    return "\n".join(str(node.proto) for node in at._tree if hasattr(node, "proto"))


def save(at: AppTest, name: str, url: str) -> AppTest:
    at.text_input(key="wh_name").input(name)
    at.text_input(key="wh_url").input(url)
    at.button(key="wh_save").click().run()
    assert not at.exception
    return at


def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute("create table customers (customer_id text primary key, ltv real, signed_up date)")
        db.execute("create view big_customers as select customer_id from customers where ltv > 100")
    return path


def expanders(at: AppTest) -> dict[str, list[list[str]]]:
    """Schema browser: expander label -> its columns table as rows."""
    return {e.label: e.dataframe[0].value.values.tolist() for e in at.expander if e.dataframe}


def test_a_fresh_home_has_the_demo_warehouse_and_browses_its_tables(app_env) -> None:
    at = open_page()
    page = rendered(at)
    assert DEMO_WAREHOUSE in page and f"duckdb:///{app_env.demo}" in page
    assert "postgresql+psycopg://user:password@host:5432/db" in page and "sqlalchemy-bigquery" in page
    assert at.selectbox(key="wh_browse").value == DEMO_WAREHOUSE
    tables = expanders(at)
    assert {label.split(" · ")[0] for label in tables} == DEMO_TABLES
    users = next(rows for label, rows in tables.items() if label.startswith("users · "))
    assert ["user_id", "VARCHAR"] in users


def test_a_sqlite_file_is_saved_tested_and_browsed(app_env, tmp_path) -> None:
    path = sqlite_file(tmp_path)
    at = save(open_page(), "CRM", f"sqlite:///{path}")
    assert at.success[0].value.startswith(f"connected to sqlite:///{path}")
    assert Workspace(app_env.home).get(Warehouse, "CRM").url.reveal() == f"sqlite:///{path}"
    assert at.text_input(key="wh_url").value == "" and at.session_state["wh_editing"] is None
    assert at.selectbox(key="wh_browse").value == "CRM"
    tables = expanders(at)
    assert set(tables) == {"big_customers · 1 columns", "customers · 3 columns"}
    assert tables["customers · 3 columns"][1] == ["ltv", "REAL"]

    at.button(key="wh_test_crm").click().run()
    assert at.success[0].value.startswith("connected to sqlite:///")


def test_a_password_in_the_url_is_never_shown_after_saving(app_env) -> None:
    url = "postgresql+psycopg://analyst:hunter2-secret@127.0.0.1:9/prod"
    at = save(open_page(), "Prod", url)
    assert "cannot connect to the warehouse at postgresql+psycopg://analyst:***@127.0.0.1:9/prod" in (
        at.error[0].value
    )
    assert "hunter2-secret" not in rendered(at) and at.text_input(key="wh_url").value == ""
    assert Workspace(app_env.home).get(Warehouse, "Prod").url.reveal() == url


def test_bad_urls_are_refused_or_explained_in_words(app_env, tmp_path) -> None:
    at = save(open_page(), "Bad", "not a url")
    assert "this is not a SQLAlchemy URL" in at.error[0].value
    assert Workspace(app_env.home).names(Warehouse) == [DEMO_WAREHOUSE]

    at = save(at, "Missing", f"sqlite:///{tmp_path / 'nope.db'}")
    assert at.error[0].value.startswith(f"there is no sqlite file at {tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()

    at = save(open_page(), "Unknown driver", "snowflake://u:p@acct/db/schema?warehouse=WH")
    assert "snowflake" in at.error[0].value and "cannot use the warehouse URL" in at.error[0].value


def test_editing_with_an_empty_url_keeps_it(app_env, tmp_path) -> None:
    url = f"sqlite:///{sqlite_file(tmp_path)}"
    at = save(open_page(), "CRM", url)
    at.button(key="wh_edit_crm").click().run()
    assert at.text_input(key="wh_name").value == "CRM" and at.text_input(key="wh_url").value == ""
    assert at.text_input(key="wh_url").placeholder == url  # no password: shown as is
    at = save(at, "CRM (sqlite)", "")
    assert at.success[0].value.startswith("connected to")
    assert Workspace(app_env.home).get(Warehouse, "CRM (sqlite)").url.reveal() == url
    assert Workspace(app_env.home).names(Warehouse) == ["CRM (sqlite)", DEMO_WAREHOUSE]


def test_delete_asks_first_and_is_refused_while_a_model_uses_the_warehouse(app_env, tmp_path) -> None:
    at = save(open_page(), "CRM", f"sqlite:///{sqlite_file(tmp_path)}")
    Workspace(app_env.home).save(SavedModel("ltv", DEMO_WAREHOUSE, "select user_id from users"))

    at.button(key="wh_delete_crm").click().run()
    assert "Delete the warehouse “CRM”?" in at.warning[0].value
    at.button(key="wh_delete_confirm").click().run()
    assert at.success[0].value == "Deleted the warehouse “CRM”."
    assert at.selectbox(key="wh_browse").value == DEMO_WAREHOUSE

    at.button(key="wh_delete_demo-warehouse-duckdb").click().run()
    at.button(key="wh_delete_confirm").click().run()
    assert "is used by model 'ltv'" in at.error[0].value
    assert Workspace(app_env.home).names(Warehouse) == [DEMO_WAREHOUSE]

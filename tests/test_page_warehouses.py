"""The Warehouses page: add a URL, test it, browse its schema, edit and delete it."""

from __future__ import annotations

import os
import re
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


def marks(at: AppTest) -> dict[str, str]:
    """The last-check mark of each listed warehouse, by name, Markdown escapes removed."""
    shown = [m.value for m in at.markdown if re.match(r":(green|red|gray)\[:material/", m.value)]
    names = Workspace(Path(os.environ["AMP_SYNC_HOME"])).names(Warehouse)
    return dict(zip(names, [text.replace("\\", "") for text in shown], strict=True))


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


def test_without_a_keyring_a_typed_password_goes_to_an_owner_only_file_and_the_page_says_so(
    app_env, monkeypatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # as on a server
    at = save(open_page(), "Prod", "postgresql+psycopg://analyst:hunter2-secret@127.0.0.1:9/prod")
    secrets = app_env.home / "secrets.json"
    assert f"The URL of “Prod” is kept in an owner-only file {secrets}, no system keyring is available." in [
        c.value for c in at.caption
    ]
    assert "hunter2-secret" not in (app_env.home / "workspace.json").read_text()
    assert "hunter2-secret" in secrets.read_text() and "hunter2-secret" not in rendered(at)

    at = save(at, "CRM", f"sqlite:///{sqlite_file(app_env.home.parent)}")  # no password: nothing to hide
    assert "The URL of “CRM” is kept in the workspace file, as it holds nothing secret." in [
        c.value for c in at.caption
    ]


def test_a_password_written_as_a_variable_is_read_when_used_and_a_missing_one_is_said(
    app_env, monkeypatch
) -> None:
    monkeypatch.delenv("AMP_TEST_PG_PASSWORD", raising=False)
    at = save(open_page(), "Prod", "postgresql+psycopg://analyst:${AMP_TEST_PG_PASSWORD}@127.0.0.1:9/prod")
    assert at.error[0].value == (
        "environment variable AMP_TEST_PG_PASSWORD is not set (used in the URL of the warehouse 'Prod')"
    )
    assert "The URL of “Prod” is read from \\${AMP_TEST_PG_PASSWORD}." in [c.value for c in at.caption]
    listed = "postgresql+psycopg://analyst:***@127.0.0.1:9/prod (read from ${AMP_TEST_PG_PASSWORD}: not set)"
    assert listed in [c.value for c in at.code]  # the list still shows it

    monkeypatch.setenv("AMP_TEST_PG_PASSWORD", "hunter2-secret")
    at.button(key="wh_test_prod").click().run()
    assert "cannot connect to the warehouse at postgresql+psycopg://analyst:***@127.0.0.1:9/prod" in (
        at.error[0].value
    )
    assert "hunter2-secret" not in rendered(at)
    assert "hunter2-secret" not in (app_env.home / "workspace.json").read_text()


def test_files_a_warehouse_allows_are_read_by_its_models_and_no_others(app_env, tmp_path) -> None:
    import duckdb

    duckdb.connect(str(tmp_path / "local.duckdb")).close()
    (tmp_path / "plans.csv").write_text("user_id,plan\nalice-001,pro\n")
    (tmp_path / "private.csv").write_text("secret\nhunter2\n")
    at = open_page()
    at.text_area(key="wh_files").input(f"{tmp_path}/plans.csv")
    save(at, "Local files", f"duckdb:///{tmp_path}/local.duckdb")
    assert Workspace(app_env.home).get(Warehouse, "Local files").read_files == (f"{tmp_path}/plans.csv",)
    assert f"Its models may read: `{tmp_path}/plans.csv`" in [c.value for c in at.caption]

    at.switch_page("app_pages/models.py").run()
    at.selectbox(key="model_warehouse").select("Local files").run()
    key = next(e.key for e in at.get("component_instance") if e.key.startswith("model_sql_"))
    at.session_state[key] = {"text": f"select * from read_csv('{tmp_path}/plans.csv')", "id": "1"}
    at.button(key="model_run").click().run()
    assert not at.exception and at.dataframe[0].value.values.tolist() == [["alice-001", "pro"]]
    at.session_state[key] = {"text": f"select * from read_csv('{tmp_path}/private.csv')", "id": "2"}
    at.button(key="model_run").click().run()
    assert f"the model reads {tmp_path}/private.csv, which the sync does not allow" in at.error[0].value


def test_each_warehouse_shows_its_last_check_which_test_connection_renews(app_env, tmp_path) -> None:
    at = open_page()
    assert marks(at) == {DEMO_WAREHOUSE: ":gray[:material/help: Never checked]"}
    at.button(key="wh_test_demo-warehouse-duckdb").click().run()
    assert marks(at)[DEMO_WAREHOUSE] == ":green[:material/check_circle: Works · checked just now]"

    missing = tmp_path / "nope.db"
    at = save(at, "Missing", f"sqlite:///{missing}")
    assert marks(at)["Missing"].startswith(
        f":red[:material/error: Failed: there is no sqlite file at {missing}"
    )
    assert marks(at)["Missing"].endswith(" · checked just now]")
    assert "Works · checked just now" in marks(open_page())[DEMO_WAREHOUSE]  # kept on disk


def test_the_schema_browser_never_defaults_to_a_failing_warehouse(app_env, tmp_path) -> None:
    at = save(open_page(), "A broken one", f"sqlite:///{tmp_path / 'nope.db'}")  # sorts before the demo
    at = open_page()  # a new session: the browser picks its default afresh
    assert at.selectbox(key="wh_browse").value == DEMO_WAREHOUSE
    assert not at.error
    assert at.selectbox(key="wh_browse").options[0].startswith("A broken one · Failed: there is no sqlite")
    assert {label.split(" · ")[0] for label in expanders(at)} == DEMO_TABLES


def test_a_working_warehouse_is_the_default_over_a_never_checked_one(app_env, tmp_path) -> None:
    save(open_page(), "CRM", f"sqlite:///{sqlite_file(tmp_path)}")
    assert open_page().selectbox(key="wh_browse").value == "CRM"  # the demo was never checked


def test_a_failed_check_keeps_no_password(app_env) -> None:
    save(open_page(), "Prod", "postgresql+psycopg://analyst:hunter2-secret@127.0.0.1:9/prod")
    check = Workspace(app_env.home).checks(Warehouse)["Prod"]
    assert check is not None and not check.ok
    assert "postgresql+psycopg://analyst:***@127.0.0.1:9/prod" in check.reason
    assert "hunter2-secret" not in (app_env.home / "workspace.json").read_text()


def test_edit_mode_ends_on_leaving_the_page_on_cancel_and_on_saving(app_env) -> None:
    at = open_page()
    at.button(key="wh_edit_demo-warehouse-duckdb").click().run()
    assert at.subheader[0].value == f"Edit warehouse “{DEMO_WAREHOUSE}”"
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/warehouses.py").run()
    assert at.subheader[0].value == "Add a warehouse" and at.session_state["wh_editing"] is None
    assert at.text_input(key="wh_name").value == ""

    at.button(key="wh_edit_demo-warehouse-duckdb").click().run()
    at.button(key="wh_cancel_edit").click().run()
    assert at.subheader[0].value == "Add a warehouse"

    at.button(key="wh_edit_demo-warehouse-duckdb").click().run()
    at.button(key="wh_save").click().run()
    assert at.success[0].value.startswith("connected to")
    assert at.subheader[0].value == "Add a warehouse" and at.session_state["wh_editing"] is None

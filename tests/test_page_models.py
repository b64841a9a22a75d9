"""The Models page: SQL in the editor, live rows, errors in words, save / rename / delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui_editor
from amp_sync.config import SyncObject
from amp_sync.templates import template
from amp_sync.workspace import DEMO_WAREHOUSE, SavedModel, SavedSync, Workspace

ROOT = Path(__file__).resolve().parents[1]


def open_models() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception
    return at


def editor_key(at: AppTest) -> str:
    """The SQL editor's current key (it changes whenever a model or template is loaded)."""
    return next(e.key for e in at.get("component_instance") if "code_editor" in e.proto.component_name)


def editor_args(at: AppTest) -> dict:
    """What the page handed the SQL editor (its text is under "code")."""
    editor = next(e for e in at.get("component_instance") if e.key == editor_key(at))
    return json.loads(editor.proto.json_args)


def type_sql(at: AppTest, sql: str, kind: str = "blur") -> AppTest:
    """What the browser's editor sends: its text on a pause in typing, on blur or on Ctrl/Cmd+Enter."""
    sent = at.session_state["sent"] + 1 if "sent" in at.session_state else 1
    at.session_state["sent"] = sent
    at.session_state[editor_key(at)] = {"id": f"e{sent}", "type": kind, "text": sql, "lang": "sql"}
    at.run()
    assert not at.exception
    return at


def run_sql(at: AppTest, sql: str) -> AppTest:
    """Type `sql` into the editor, then press Run, as a person does."""
    type_sql(at, sql).button(key="model_run").click().run()
    assert not at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_with_no_warehouse_the_page_points_to_warehouses(app_env) -> None:
    Workspace(app_env.home).save(SavedModel("orphan", "gone", "select 1"))  # a workspace, no warehouse
    at = open_models()
    assert "Add a warehouse first" in at.info[0].value
    assert not at.get("component_instance")


def test_a_fresh_workspace_opens_on_an_empty_editor_over_the_demo_warehouse(app_env) -> None:
    at = open_models()
    assert at.selectbox(key="model_warehouse").value == DEMO_WAREHOUSE
    assert at.selectbox(key="model_pick").value == "New model"
    assert not at.dataframe and not at.error
    assert "Ctrl/Cmd+Enter in the editor) runs" in " ".join(c.value for c in at.caption)


def test_a_starter_template_runs_and_shows_every_row_counted(app_env) -> None:
    at = open_models()
    at.selectbox(key="model_template").select("lifetime_value")
    at.button(key="model_load_template").click().run()
    assert not at.exception
    assert "Rows: 12,007 · first 200 shown" in texts(at)
    grid = at.dataframe[0].value
    assert list(grid.columns)[:3] == ["user_id", "lifetime_value", "payment_count"]
    assert len(grid) == 200
    types = dict(at.dataframe[1].value.itertuples(index=False))
    assert types["user_id"] == "str" and types["first_paid_date"] == "date"
    assert at.text_input(key="model_name").value == "lifetime_value"


def test_typed_text_runs_on_run_and_again_on_each_press(app_env) -> None:
    at = type_sql(open_models(), "select 42 as answer")
    assert not at.dataframe  # typing alone runs nothing
    at.button(key="model_run").click().run()
    assert "Rows: 1 · all 1 shown" in texts(at)
    assert at.dataframe[0].value["answer"].tolist() == [42]
    type_sql(at, "select 43 as answer", kind="change")
    assert at.dataframe[0].value["answer"].tolist() == [42]  # the rows of the last run stay
    at.button(key="model_run").click().run()
    assert not at.exception and at.dataframe[0].value["answer"].tolist() == [43]


def test_ctrl_enter_in_the_editor_runs(app_env) -> None:
    at = type_sql(open_models(), "select 7 as seven", kind="submit")
    assert at.dataframe[0].value["seven"].tolist() == [7]


def test_text_sent_as_run_is_pressed_is_what_runs(app_env) -> None:
    """Pressing Run takes the focus from the editor, and its text may reach the page just after."""
    at = type_sql(open_models(), "select 1 as old", kind="change")
    at.button(key="model_run").click().run()
    type_sql(at, "select 2 as new")  # the blur that came with the press
    assert at.dataframe[0].value["new"].tolist() == [2]
    type_sql(at, "select 3 as later", kind="change")
    assert at.dataframe[0].value["new"].tolist() == [2]  # later typing does not run


def test_text_sent_just_after_run_on_a_fresh_editor_runs(app_env) -> None:
    at = open_models()
    at.button(key="model_run").click().run()  # the press reached the page before the text
    type_sql(at, "select 5 as five")
    assert at.dataframe[0].value["five"].tolist() == [5] and not at.warning


def test_run_on_an_empty_editor_says_so(app_env) -> None:
    at = open_models()
    at.button(key="model_run").click().run()
    assert "The editor is empty" in at.warning[0].value


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("select user_id from users limit 3", "Rows: 3 · all 3 shown"),
        ("select user_id from users where false", "Rows: 0 · all 0 shown"),
        ("select user_id from users", "Rows: 12,007 · first 200 shown"),
    ],
)
def test_the_grid_says_how_many_rows_it_shows(app_env, sql: str, words: str) -> None:
    at = run_sql(open_models(), sql)
    assert words in texts(at)
    assert len(at.dataframe[0].value) == min(int(words.split()[1].replace(",", "")), 200)


@pytest.mark.parametrize(
    ("rows", "height"),
    [(0, 72), (1, 72), (3, 142), (8, 317), (9, 320), (200, 320)],
)
def test_a_short_grid_is_as_tall_as_its_rows_and_a_long_one_scrolls(rows: int, height: int) -> None:
    assert ui_editor.grid_height(rows) == height
    if rows and height < ui_editor.GRID_MAX_HEIGHT:  # every row and the header fit
        assert height >= ui_editor.GRID_ROW_HEIGHT * (rows + 1)


def test_the_warehouse_schema_is_offered_as_completions(app_env) -> None:
    at = open_models()
    words = {(w["value"], w["meta"]) for w in editor_args(at)["completions"]}
    assert {("users", "table"), ("user_id", "varchar"), ("devices", "table")} <= words


def test_a_syntax_error_is_shown_in_the_databases_words(app_env) -> None:
    at = run_sql(open_models(), "select user_id from users where")
    assert not at.dataframe
    message = at.error[0].value
    assert message.startswith("the warehouse refused the model:")
    assert "syntax error" in message.lower()


def test_a_write_statement_is_refused_in_words(app_env) -> None:
    at = run_sql(open_models(), "delete from users")
    assert "must be a SELECT or WITH query, not DELETE" in at.error[0].value
    assert not at.dataframe


def test_save_rename_and_delete_a_model(app_env) -> None:
    ws = Workspace(app_env.home)
    at = run_sql(open_models(), "select user_id, plan_id from users")
    at.button(key="model_save").click().run()
    assert "give the model a name" in at.error[0].value
    at.text_input(key="model_name").input("plans")
    at.button(key="model_save").click().run()
    assert not at.exception
    assert at.success[0].value == "Saved the model 'plans'."
    assert ws.get(SavedModel, "plans") == SavedModel(
        "plans", DEMO_WAREHOUSE, "select user_id, plan_id from users"
    )
    assert at.selectbox(key="model_pick").value == "plans"

    ws.save(SavedSync("s", "plans", "Amplitude sandbox", SyncObject.USER, "user_id", ()))
    at.text_input(key="model_name").input("user plans")
    at.button(key="model_save").click().run()
    assert at.success[0].value == "Renamed 'plans' to 'user plans'."
    assert ws.names(SavedModel) == ["user plans"]
    assert ws.get(SavedSync, "s").model == "user plans"

    at.button(key="model_delete").click().run()
    at.button(key="model_delete_yes").click().run()
    assert "used by sync 's'" in at.error[0].value
    assert ws.names(SavedModel) == ["user plans"]
    ws.delete(SavedSync, "s")
    at.button(key="model_delete_yes").click().run()
    assert not at.exception
    assert at.success[0].value == "Deleted the model 'user plans'."
    assert ws.names(SavedModel) == []
    assert at.selectbox(key="model_pick").value == "New model"


def test_a_saved_model_loads_into_the_editor_and_runs(app_env) -> None:
    starter = template("trial_end")
    at = open_models()  # the first start adds the demo warehouse
    Workspace(app_env.home).save(SavedModel("trials", DEMO_WAREHOUSE, starter.sql))
    at.run()
    at.selectbox(key="model_pick").select("trials").run()
    assert not at.exception
    assert editor_args(at)["code"] == starter.sql
    assert "Rows: 12,007" in texts(at)
    assert list(at.dataframe[0].value.columns) == ["user_id", "trial_end_date", "trial_days_left"]


def test_unsaved_work_survives_a_visit_to_another_page(app_env) -> None:
    at = run_sql(open_models(), "select 7 as seven")
    at.text_input(key="model_name").input("sevens").run()
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception
    assert editor_args(at)["code"] == "select 7 as seven"
    assert at.text_input(key="model_name").value == "sevens"
    assert at.dataframe[0].value["seven"].tolist() == [7]


def test_values_nested_too_deep_for_the_grid_are_shown_in_words(app_env) -> None:
    at = run_sql(
        open_models(),
        "select 'user_00001' as user_id, (repeat('[', 100) || repeat(']', 100))::json as deep, "
        "(repeat('[', 5000) || repeat(']', 5000))::json as deeper, [[1, 2], [3]] as shallow",
    )
    assert not at.error
    grid = at.dataframe[0].value
    assert list(grid.columns) == ["user_id", "deep", "deeper", "shallow"]
    row = grid.iloc[0]
    assert row["deep"] == "(a value nested 100 levels deep)"
    assert row["deeper"].startswith("(the JSON value nests too deep to read")
    assert [list(x) for x in row["shallow"]] == [[1, 2], [3]]

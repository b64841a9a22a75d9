"""The Destinations page: connect Amplitude keys, see them masked, edit, test again, delete."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from streamlit.testing.v1 import AppTest

from amp_sync import runner
from amp_sync.config import Destination, Mapping_, Region, SyncObject
from amp_sync.sandbox import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Sandbox
from amp_sync.secret import Secret
from amp_sync.workspace import DEMO_WAREHOUSE, SANDBOX_DESTINATION, SavedModel, SavedSync, Workspace

ROOT = Path(__file__).resolve().parents[1]


def open_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/destinations.py").run()
    assert not at.exception
    return at


def rendered(at: AppTest) -> str:
    """Everything sent to the browser: every element's protobuf, as text."""
    return "\n".join(str(node.proto) for node in at._tree if hasattr(node, "proto"))


def marks(at: AppTest) -> list[str]:
    """The last-check mark of each listed destination, in list order, Markdown escapes removed."""
    shown = [m.value for m in at.markdown if re.match(r":(green|red|gray)\[:material/", m.value)]
    return [text.replace("\\", "") for text in shown]


def status_mark(at: AppTest, name: str) -> str:
    """The mark of the listed destination `name`."""
    names = Workspace(Path(os.environ["AMP_SYNC_HOME"])).names(Destination)
    return dict(zip(names, marks(at), strict=True))[name]


def fill(at: AppTest, name: str, api_key: str = "", secret_key: str = "", endpoint: str = "") -> AppTest:
    at.text_input(key="dest_name").input(name)
    at.text_input(key="dest_api_key").input(api_key)
    at.text_input(key="dest_secret_key").input(secret_key)
    at.text_input(key="dest_endpoint").input(endpoint)
    at.button(key="dest_connect").click().run()
    assert not at.exception
    return at


def test_a_fresh_home_lists_the_sandbox_with_its_keys_masked(app_env) -> None:
    at = open_page()
    assert at.title[0].value == "Destinations"
    page = rendered(at)
    assert SANDBOX_DESTINATION in page and "nothing leaves this machine" in page
    assert "••••-key" in page and app_env.sandbox.url in page
    assert SANDBOX_API_KEY not in page and SANDBOX_SECRET_KEY not in page


def test_connecting_with_the_sandbox_keys_saves_and_masks_them(app_env) -> None:
    at = fill(open_page(), "Mine", SANDBOX_API_KEY, SANDBOX_SECRET_KEY, app_env.sandbox.url)
    assert [s.value for s in at.success] == ["ok: the API key and secret key of 'Mine' are valid"]
    saved = Workspace(app_env.home).get(Destination, "Mine")
    assert (saved.api_key.reveal(), saved.secret_key.reveal()) == (SANDBOX_API_KEY, SANDBOX_SECRET_KEY)
    assert saved.endpoint == app_env.sandbox.url and saved.region is Region.US
    assert at.text_input(key="dest_api_key").value == "" and at.text_input(key="dest_name").value == ""
    page = rendered(at)
    assert "**Mine**" in page and "••••-key" in page
    assert SANDBOX_API_KEY not in page and SANDBOX_SECRET_KEY not in page


def test_a_wrong_key_is_saved_refused_in_words_and_marked_failing_until_fixed(app_env) -> None:
    at = fill(open_page(), "Typo", "not-the-sandbox-key", endpoint=app_env.sandbox.url)
    assert not at.success
    assert "Amplitude refused the API key" in at.error[0].value and "US region" in at.error[0].value
    assert at.session_state["dest_editing"] is None and at.text_input(key="dest_name").value == ""
    assert "Failed: Amplitude refused the API key" in status_mark(at, "Typo")
    assert "not-the-sandbox-key" not in rendered(at)

    at.button(key="dest_edit_typo").click().run()
    assert at.text_input(key="dest_name").value == "Typo"
    at.text_input(key="dest_api_key").input(SANDBOX_API_KEY)
    at.button(key="dest_connect").click().run()
    assert at.success[0].value.startswith("ok: Amplitude accepts the API key of 'Typo'")
    assert Workspace(app_env.home).get(Destination, "Typo").api_key.reveal() == SANDBOX_API_KEY


def test_a_wrong_secret_key_names_both_keys_and_the_region(app_env) -> None:
    at = fill(open_page(), "Pair", SANDBOX_API_KEY, "not-the-secret", app_env.sandbox.url)
    assert "refused" in at.error[0].value and "region" in at.error[0].value


def test_an_unreachable_endpoint_is_explained(app_env) -> None:
    at = fill(open_page(), "Nowhere", SANDBOX_API_KEY, endpoint="http://127.0.0.1:9")
    assert at.error[0].value == "cannot reach http://127.0.0.1:9: check the endpoint and your network"


def test_name_and_api_key_are_required_and_nothing_is_saved_without_them(app_env) -> None:
    at = fill(open_page(), "  ", endpoint="ftp://x")
    problems = at.error[0].value
    assert "give the destination a name" in problems and "enter the project's API key" in problems
    assert "http:// or https://" in problems
    assert Workspace(app_env.home).names(Destination) == [SANDBOX_DESTINATION]


def test_editing_with_empty_key_fields_keeps_the_saved_keys(app_env) -> None:
    at = fill(open_page(), "Mine", SANDBOX_API_KEY, SANDBOX_SECRET_KEY, app_env.sandbox.url)
    at.button(key="dest_edit_mine").click().run()
    assert at.text_input(key="dest_name").value == "Mine"
    assert at.text_input(key="dest_endpoint").value == app_env.sandbox.url
    assert at.text_input(key="dest_api_key").value == "" and at.text_input(key="dest_secret_key").value == ""

    at.text_input(key="dest_name").input("Mine (renamed)")
    at.button(key="dest_connect").click().run()
    assert at.success[0].value == "ok: the API key and secret key of 'Mine (renamed)' are valid"
    ws = Workspace(app_env.home)
    assert ws.names(Destination) == [SANDBOX_DESTINATION, "Mine (renamed)"]
    saved = ws.get(Destination, "Mine (renamed)")
    assert (saved.api_key.reveal(), saved.secret_key.reveal()) == (SANDBOX_API_KEY, SANDBOX_SECRET_KEY)
    assert at.session_state["dest_editing"] is None


def test_connect_again_checks_a_saved_destination(app_env) -> None:
    at = open_page()
    at.button(key="dest_test_amplitude-sandbox").click().run()
    assert at.success[0].value == "ok: the API key and secret key of 'Amplitude sandbox' are valid"
    app_env.sandbox.close()
    at.button(key="dest_test_amplitude-sandbox").click().run()
    assert at.error[0].value.startswith(f"cannot reach {app_env.sandbox.url}")


def test_delete_asks_first_and_is_refused_while_a_sync_uses_the_destination(app_env) -> None:
    at = open_page()
    ws = Workspace(app_env.home)
    ws.save(Destination("Spare", Secret("spare-api-key-0000"), None, Region.EU))
    ws.save(SavedModel("m", "Demo warehouse (DuckDB)", "select user_id, plan_id from users"))
    mapping = (Mapping_("plan_id", "plan"),)
    ws.save(SavedSync("s", "m", SANDBOX_DESTINATION, SyncObject.USER, "user_id", mapping))
    at.run()
    assert "••••0000" in rendered(at) and "region **EU**" in rendered(at)

    at.button(key="dest_delete_spare").click().run()
    assert "Delete the destination “Spare”?" in at.warning[0].value
    at.button(key="dest_delete_cancel").click().run()
    assert not at.warning and "Spare" in ws.names(Destination)

    at.button(key="dest_delete_spare").click().run()
    at.button(key="dest_delete_confirm").click().run()
    assert at.success[0].value == "Deleted the destination “Spare”."
    assert ws.names(Destination) == [SANDBOX_DESTINATION]

    at.button(key="dest_delete_amplitude-sandbox").click().run()
    at.button(key="dest_delete_confirm").click().run()
    assert not at.exception
    assert "is used by sync 's'" in at.error[0].value
    assert ws.names(Destination) == [SANDBOX_DESTINATION]


OLD_KEY, NEW_KEY = "old-project-key-0001", "new-project-key-0002"
PLANS = "select user_id, plan_id as plan from users where user_id between 'u_000002' and 'u_000031'"


def test_a_new_key_of_the_same_project_keeps_what_was_sent_when_asked(app_env) -> None:
    at = open_page()
    ws = Workspace(app_env.home)
    with Sandbox(api_keys={OLD_KEY: None, NEW_KEY: None}) as project:
        ws.save(Destination("Project", Secret(OLD_KEY), None, Region.US, project.url))
        ws.save(SavedModel("plans", DEMO_WAREHOUSE, PLANS))
        ws.save(
            SavedSync(
                "plans-sync", "plans", "Project", SyncObject.USER, "user_id", (Mapping_("plan", "plan"),)
            )
        )
        assert runner.run(ws.sync_config("plans-sync"), app_env.home).sent == 30
        at.run()

        # A new key, the box left unticked: said in one line, and nothing is carried over.
        at.button(key="dest_edit_project").click().run()
        assert at.checkbox(key="dest_same_project").value is False
        at.text_input(key="dest_api_key").input(NEW_KEY)
        at.button(key="dest_connect").click().run()
        assert not at.exception
        assert at.success[0].value.startswith("ok: Amplitude accepts the API key of 'Project'")
        assert [i.value for i in at.info] == ["New API key: “plans-sync” will send every row again as new."]
        assert runner.preview(ws.sync_config("plans-sync"), app_env.home).plan.new == 30

        # Same project after all: edit it again (the key field may stay empty) and tick the box.
        at.button(key="dest_edit_project").click().run()
        at.checkbox(key="dest_same_project").check()
        at.button(key="dest_connect").click().run()
        assert not at.exception
        said = [s.value for s in at.success]
        assert said[1].startswith("Sync “plans-sync”: kept the state of 'Project'")
        assert "the next run sends only what changed" in said[1]
        assert OLD_KEY not in rendered(at) and NEW_KEY not in rendered(at)
        seen = runner.preview(ws.sync_config("plans-sync"), app_env.home)
        assert (seen.plan.new, seen.plan.unchanged, seen.plan.to_send) == (0, 30, 0)

        # Ticked again, there is nothing left to carry over: said in words.
        at.button(key="dest_edit_project").click().run()
        at.checkbox(key="dest_same_project").check()
        at.button(key="dest_connect").click().run()
        assert "already has state" in at.warning[0].value and not at.exception


def shown(markdown: str) -> str:
    """What a user reads: the page escapes `$` so Markdown shows it as a dollar sign."""
    return markdown.replace("\\$", "$")


def test_without_a_keyring_a_typed_key_goes_to_an_owner_only_file_and_the_page_says_so(
    app_env, monkeypatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # as on a server
    at = fill(open_page(), "Prod", "prod-api-key-0123456789", "prod-secret-0123456789", app_env.sandbox.url)
    secrets = app_env.home / "secrets.json"
    assert [c.value for c in at.caption if "is kept" in c.value] == [
        f"The API key of “Prod” is kept in an owner-only file {secrets}, no system keyring is available.",
        f"The secret key of “Prod” is kept in an owner-only file {secrets}, no system keyring is available.",
    ]
    workspace_file = (app_env.home / "workspace.json").read_text()
    assert "prod-api-key-0123456789" not in workspace_file and "prod-secret-0123456789" not in workspace_file
    assert "prod-api-key-0123456789" in secrets.read_text() and stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert f"••••6789, kept in an owner-only file {secrets}" in rendered(at)
    assert "prod-api-key-0123456789" not in rendered(at)


def test_a_key_written_as_a_variable_is_read_when_used_and_a_missing_one_is_said(
    app_env, monkeypatch
) -> None:
    monkeypatch.delenv("AMP_TEST_PROD_KEY", raising=False)
    at = fill(open_page(), "Prod", "${AMP_TEST_PROD_KEY}", endpoint=app_env.sandbox.url)
    assert not at.exception
    assert (
        "environment variable AMP_TEST_PROD_KEY is not set (used in the API key of the destination 'Prod')"
        in (at.error[0].value)
    )
    assert "The API key of “Prod” is read from ${AMP_TEST_PROD_KEY}." in [shown(c.value) for c in at.caption]
    assert '"api_key": "${AMP_TEST_PROD_KEY}"' in (app_env.home / "workspace.json").read_text()
    assert "API key `read from ${AMP_TEST_PROD_KEY} (not set)`" in rendered(at)  # the list still shows it
    assert "**Amplitude sandbox**" in rendered(at)

    monkeypatch.setenv("AMP_TEST_PROD_KEY", SANDBOX_API_KEY)
    at.button(key="dest_test_prod").click().run()
    assert at.success[0].value.startswith("ok: Amplitude accepts the API key of 'Prod'")
    assert "API key `••••-key, read from ${AMP_TEST_PROD_KEY}`" in rendered(at)


def test_a_deployed_app_reads_keys_from_its_secrets(app_env, monkeypatch) -> None:
    monkeypatch.delenv("AMP_TEST_DEPLOYED_KEY", raising=False)
    ws = Workspace(app_env.home)
    ws.ensure_defaults(app_env.sandbox.url, f"duckdb:///{app_env.demo}")
    ws.save(Destination("Deployed", Secret("${AMP_TEST_DEPLOYED_KEY}"), None, Region.US, app_env.sandbox.url))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["AMP_TEST_DEPLOYED_KEY"] = SANDBOX_API_KEY  # what st.secrets holds on Community Cloud
    at.run()
    at.switch_page("app_pages/destinations.py").run()
    assert not at.exception
    assert "API key `••••-key, read from ${AMP_TEST_DEPLOYED_KEY}`" in rendered(at)
    at.button(key="dest_test_deployed").click().run()
    assert at.success[0].value.startswith("ok: Amplitude accepts the API key of 'Deployed'")
    saved = json.loads((app_env.home / "workspace.json").read_text())["destinations"]["Deployed"]
    assert saved["api_key"] == "${AMP_TEST_DEPLOYED_KEY}"  # never the value read


def test_each_destination_shows_its_last_check_which_connect_again_renews_and_keeps(app_env) -> None:
    at = open_page()
    assert status_mark(at, SANDBOX_DESTINATION) == ":gray[:material/help: Never checked]"

    at.button(key="dest_test_amplitude-sandbox").click().run()
    assert at.success[0].value.startswith("ok:")
    assert status_mark(at, SANDBOX_DESTINATION) == ":green[:material/check_circle: Works · checked just now]"
    assert "Works · checked just now" in status_mark(open_page(), SANDBOX_DESTINATION)  # kept on disk


def test_a_failed_check_is_kept_without_the_key(app_env) -> None:
    fill(open_page(), "Typo", "not-the-sandbox-key", endpoint=app_env.sandbox.url)
    check = Workspace(app_env.home).checks(Destination)["Typo"]
    assert check is not None and not check.ok and "Amplitude refused the API key" in check.reason
    assert "not-the-sandbox-key" not in (app_env.home / "workspace.json").read_text()


def test_edit_mode_ends_on_leaving_the_page_on_cancel_and_on_saving(app_env) -> None:
    at = open_page()
    at.button(key="dest_edit_amplitude-sandbox").click().run()
    assert at.subheader[0].value == f"Edit destination “{SANDBOX_DESTINATION}”"
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/destinations.py").run()
    assert at.subheader[0].value == "New Amplitude destination" and at.session_state["dest_editing"] is None
    assert at.text_input(key="dest_name").value == ""

    at.button(key="dest_edit_amplitude-sandbox").click().run()
    at.button(key="dest_cancel_edit").click().run()
    assert at.subheader[0].value == "New Amplitude destination"

    at.button(key="dest_edit_amplitude-sandbox").click().run()
    at.button(key="dest_connect").click().run()
    assert at.success[0].value.startswith("ok:")
    assert at.subheader[0].value == "New Amplitude destination" and at.session_state["dest_editing"] is None

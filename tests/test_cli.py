"""The amp-sync command as a user runs it: the demo end to end, key checks, clear errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amp_sync.cli import main
from amp_sync.demo import build_demo_warehouse
from amp_sync.sandbox import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Faults
from amp_sync.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def amp_sync(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMP_SYNC_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "amp_sync", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    build_demo_warehouse(folder / "demo" / "warehouse.duckdb")
    (folder / "examples").mkdir()
    return folder


def test_the_demo_sync_runs_into_the_sandbox_and_a_second_run_sends_nothing(demo_dir, sandbox, tmp_path):
    text = (ROOT / "examples" / "demo.toml").read_text()
    (demo_dir / "examples" / "demo.toml").write_text(text.replace("http://127.0.0.1:8766", sandbox.url))
    home = tmp_path / "home"

    first = amp_sync("run", "examples/demo.toml", "--json", cwd=demo_dir, home=home)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["new"] >= 10_000 and report["sent"] == report["new"] and report["failed"] == 0
    reasons = {r["reason"] for r in report["rejections"]}
    assert any("shorter than 5" in r for r in reasons) and any("placeholder" in r for r in reasons)
    assert any("appears 2 times" in r for r in reasons) and any("missing user id" in r for r in reasons)
    assert len(sandbox.store.profiles()) == report["sent"]
    alice = sandbox.store.profile(user_id="u_000010")
    assert alice is not None and "plan" in alice["user_properties"]

    requests_before = len(sandbox.store.requests())
    second = amp_sync("run", "examples/demo.toml", "--json", cwd=demo_dir, home=home)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert (again["sent"], again["new"], again["changed"]) == (0, 0, 0)
    assert again["unchanged"] == report["new"]
    assert len(sandbox.store.requests()) == requests_before


def test_text_output_shows_counts_and_rejections(demo_dir, tmp_path):
    shutil.copy(ROOT / "examples" / "demo.toml", demo_dir / "examples" / "demo.toml")
    result = amp_sync("preview", "examples/demo.toml", cwd=demo_dir, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert re.search(r"new 11,999 ", result.stdout) and "nothing was sent" in result.stdout
    assert "rejected rows" in result.stdout and "abc: user id 'abc' is shorter than 5" in result.stdout
    assert result.stderr == ""


def test_python_m_and_console_script_are_the_same_command(tmp_path):
    script = Path(sys.executable).with_name("amp-sync")
    if not script.exists():
        pytest.skip("the package is not installed in this environment (make test installs it)")
    a = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    b = amp_sync("--help", cwd=ROOT, home=tmp_path)
    assert a.stdout.replace("amp-sync", "X") == b.stdout.replace("amp-sync", "X")
    for command in ("preview", "run", "check", "sandbox", "demo"):
        assert command in a.stdout


def _check_file(tmp_path: Path, endpoint: str, api_key: str, secret: str | None) -> Path:
    secret_line = f'secret_key = "{secret}"' if secret else ""
    path = tmp_path / "check.toml"
    path.write_text(f"""
[source]
url = "sqlite://"
[destination]
name = "Sandbox"
api_key = "{api_key}"
{secret_line}
region = "eu"
endpoint = "{endpoint}"
[model]
name = "m"
sql = "select 1 as id"
[sync]
name = "check"
object = "user"
behavior = "update_or_create"
key = "id"
[[sync.mappings]]
column = "id"
property = "id"
""")
    return path


@pytest.mark.parametrize(
    ("api_key", "secret", "code", "words"),
    [
        (SANDBOX_API_KEY, SANDBOX_SECRET_KEY, 0, "ok: the API key and secret key"),
        (SANDBOX_API_KEY, None, 0, "ok: Amplitude accepts the API key"),
        (
            SANDBOX_API_KEY,
            "wrong-secret-key-123",
            1,
            "were refused: check both keys, and that the project is in the EU",
        ),
        ("wrong-api-key-456789", None, 1, "refused the API key"),
    ],
)
def test_check_says_ok_or_why_not_and_ingests_nothing(
    sandbox, tmp_path, capsys, api_key, secret, code, words
):
    path = _check_file(tmp_path, sandbox.url, api_key, secret)
    assert main(["check", str(path)]) == code
    out = capsys.readouterr().out
    assert words in out
    assert (secret or "-") not in out and "wrong-api-key-456789" not in out
    assert sandbox.store.profiles() == [] and sandbox.store.events() == []


def test_check_an_unreachable_endpoint(tmp_path, capsys):
    path = _check_file(tmp_path, "http://127.0.0.1:9", SANDBOX_API_KEY, None)
    assert main(["check", str(path)]) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[source\nurl=1", "not valid TOML"),
        ('[source]\nurl = "${NOT_SET_ANYWHERE_42}"\n', "environment variable NOT_SET_ANYWHERE_42 is not set"),
    ],
)
def test_config_errors_list_problems_without_traceback(tmp_path, home, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = amp_sync("run", str(path), cwd=tmp_path, home=home)
    assert result.returncode == 2 and words in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_sandbox_command_refuses_a_busy_port(sandbox, tmp_path):
    port = sandbox.url.rsplit(":", 1)[1]
    result = amp_sync("sandbox", "--port", port, cwd=tmp_path, home=tmp_path)
    assert result.returncode == 2 and "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_the_core_never_imports_streamlit():
    modules = "amp_sync.cli, amp_sync.runner, amp_sync.sandbox, amp_sync.demo, amp_sync.templates"
    code = f"import sys, {modules}; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
    for path in (ROOT / "amp_sync").glob("*.py"):
        assert "import streamlit" not in path.read_text(), path


@pytest.fixture
def saved_sync(sqlite_warehouse, sb, home, write_sync) -> Path:
    """A small sync file, also saved in the app's workspace under its name, "ltv-to-amplitude"."""
    rows = [{"user_id": f"user_{n:03d}", "plan": "pro", "ltv": n} for n in range(20)] + [
        {"user_id": "abc", "plan": "pro", "ltv": 1}
    ]
    sqlite_warehouse.execute(
        "create table users (user_id text, plan text, ltv integer)",
        "insert into users values (:user_id, :plan, :ltv)",
        rows=rows,
    )
    path = write_sync(sqlite_warehouse.url, sb.url)
    Workspace(home).import_sync(path.read_text())
    return path


def test_list_shows_saved_syncs_with_destination_and_last_run(saved_sync, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ltv-to-amplitude\s+Sandbox\s+never run", out)

    assert main(["run", "ltv-to-amplitude", "--json"]) == 0
    capsys.readouterr()
    assert main(["list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["destination"]) == ("ltv-to-amplitude", "Sandbox")
    assert listed["last_run"]["kind"] == "run" and listed["last_run"]["counts"]["sent"] == 20


def test_run_and_preview_a_saved_sync_by_name(saved_sync, sb, capsys):
    assert main(["preview", "ltv-to-amplitude"]) == 0
    assert "would send 20 rows; nothing was sent" in capsys.readouterr().out

    assert main(["run", "ltv-to-amplitude", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sent"] == 20 == len(sb.store.profiles())
    assert isinstance(report["run_id"], int) and report["failure_reasons"] == {}


def test_run_json_gives_the_failure_reasons(saved_sync, sb, capsys):
    sb.set_faults(Faults(error_500=1.0))
    assert main(["run", str(saved_sync), "--json", "--attempts", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] == 20 and report["run_id"] == 1
    assert sum(report["failure_reasons"].values()) == 20 and report["failure_reasons"]


def test_history_lists_runs_of_a_name_or_a_file_newest_first(saved_sync, sb, capsys):
    assert main(["run", "ltv-to-amplitude"]) == 0
    sb.set_faults(Faults(error_500=1.0))
    assert main(["run", str(saved_sync)]) == 0  # unchanged: nothing to send, nothing fails
    capsys.readouterr()

    assert main(["history", "ltv-to-amplitude", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["sync"] == "ltv-to-amplitude"
    assert [(r["id"], r["kind"], r["status"]) for r in shown["runs"]] == [(2, "run", "ok"), (1, "run", "ok")]
    first = shown["runs"][1]
    assert first["counts"]["sent"] == 20 and first["counts"]["rejected"] == 1 and first["started"]
    assert main(["history", str(saved_sync)]) == 0
    out = capsys.readouterr().out
    assert "ltv-to-amplitude: 2 runs" in out and "#1 run" in out and "sent 20" in out


def test_history_shows_why_rows_failed(saved_sync, sb, capsys):
    sb.set_faults(Faults(error_500=1.0))
    assert main(["run", "ltv-to-amplitude", "--attempts", "1"]) == 1
    capsys.readouterr()
    assert main(["history", "ltv-to-amplitude", "--json"]) == 0
    [failed] = json.loads(capsys.readouterr().out)["runs"]
    assert failed["status"] == "failed" and failed["counts"]["failed"] == 20
    assert failed["message"].startswith("20 rows: ")


@pytest.mark.parametrize("command", ["run", "preview", "history"])
def test_an_unknown_name_lists_the_saved_syncs(saved_sync, capsys, command):
    assert main([command, "no-such-sync"]) == 2
    err = capsys.readouterr().err
    assert "no sync file 'no-such-sync' and no sync of that name saved in the app" in err
    assert "the saved syncs are: ltv-to-amplitude" in err


def test_an_unknown_name_with_nothing_saved_says_to_give_a_file(home, capsys):
    assert main(["run", "no-such-sync"]) == 2
    assert "no syncs saved in the app" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "no syncs are saved in the app" in capsys.readouterr().out
    assert main(["run", "missing.toml"]) == 2  # a .toml path is a file, even when missing
    assert "saved in the app" not in capsys.readouterr().err

"""examples/notebook.ipynb runs top to bottom in a real kernel: a test send, then the run, arrive."""

from __future__ import annotations

import shutil
from itertools import accumulate
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from amp_sync.demo import build_demo_warehouse
from amp_sync.sandbox import Sandbox
from amp_sync.state import history

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TEST_USERS = {"u_000010", "u_000011"}  # the notebook's test send


def test_the_notebook_previews_test_sends_and_runs_into_the_sandbox(tmp_path, monkeypatch, sandbox: Sandbox):
    folder = tmp_path / "examples"
    folder.mkdir()
    for name in ("notebook.ipynb", "demo.toml"):
        shutil.copy(EXAMPLES / name, folder / name)
    build_demo_warehouse(tmp_path / "demo" / "warehouse.duckdb", users=300)  # a few hundred rows: quick
    home = tmp_path / "home"
    monkeypatch.setenv("AMP_SYNC_HOME", str(home))
    monkeypatch.setenv("AMP_SYNC_SANDBOX_URL", sandbox.url)

    notebook = nbformat.read(folder / "notebook.ipynb", as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error

    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    run, test = history(home, "demo-lifetime-value")
    assert (test.kind, test.counts["sent"], run.kind) == ("test", len(TEST_USERS), "run")
    sizes = [r["items"] for r in sandbox.store.requests() if r["path"] == "/identify" and r["status"] == 200]
    assert len(TEST_USERS) in accumulate(sizes)  # the test's requests came first, carrying only its rows
    received = {p["user_id"] for p in sandbox.store.profiles()}
    assert received >= TEST_USERS and len(received) == len(TEST_USERS) + run.counts["sent"] > 250
    assert sum(sizes) == len(received)  # the run did not send the test's users again

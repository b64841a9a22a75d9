"""The notebook API as a notebook uses it: every change as a DataFrame, a test send, then a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Warehouse, sync_file_text

import amp_sync
from amp_sync.errors import ConfigError
from amp_sync.plan import SAMPLE_LIMIT
from amp_sync.sandbox import Sandbox
from amp_sync.state import history
from amp_sync.workspace import Workspace

USERS = 3_000  # two properties each: more changes than the preview's sample keeps
SYNC = "ltv-to-amplitude"


def user(n: int) -> str:
    return f"user_{n:05d}"


@pytest.fixture
def sync_file(sqlite_warehouse: Warehouse, sb: Sandbox, tmp_path: Path) -> Path:
    rows = [{"user_id": user(n), "plan": "pro" if n % 2 else "free", "ltv": n} for n in range(USERS)]
    rows += [{"user_id": "abc", "plan": "free", "ltv": 1}]  # too short to be a user id
    rows += [{"user_id": user(7), "plan": "pro", "ltv": 2}]  # a key the model returns twice
    sqlite_warehouse.execute(
        "create table users (user_id text, plan text, ltv integer)",
        "insert into users values (:user_id, :plan, :ltv)",
        rows=rows,
    )
    path = tmp_path / "sync.toml"
    path.write_text(sync_file_text(sqlite_warehouse.url, sb.url, name=SYNC))
    return path


def profile_keys(sb: Sandbox) -> set[str]:
    return {p["user_id"] for p in sb.store.profiles()}


def test_preview_gives_every_change_past_the_sample_and_sends_nothing(sync_file, home, sb):
    plan = amp_sync.preview(sync_file, home=home)

    assert list(plan.changes.columns) == ["key", "property", "op", "before", "after"]
    assert len(plan.changes) == 2 * (USERS - 1) > SAMPLE_LIMIT
    assert plan.changes["key"].nunique() == USERS - 1 and user(7) not in set(plan.changes["key"])
    row = plan.changes[(plan.changes.key == user(3)) & (plan.changes.property == "lifetime_value")]
    assert row[["op", "before", "after"]].values.tolist() == [["$set", None, 3]]
    assert (plan.new, plan.changed, plan.unchanged) == (USERS - 1, 0, 0)
    assert plan.counts["new"] == plan.new and plan.counts["sent"] == 0
    assert sb.store.requests() == [] and history(home, SYNC) == []


def test_preview_rejections_are_a_frame_of_keys_and_reasons(sync_file, home):
    plan = amp_sync.preview(sync_file, home=home)

    assert list(plan.rejections.columns) == ["key", "reason"]
    assert plan.rejected == len(plan.rejections) == 3
    reasons = dict(zip(plan.rejections.key, plan.rejections.reason, strict=False))
    assert "shorter than 5" in reasons["abc"] and "appears 2 times" in reasons[user(7)]


def test_run_sends_every_change_and_says_its_run_id(sync_file, home, sb):
    done = amp_sync.run(sync_file, home=home, progress=False)

    assert (done.kind, done.status, done.ok) == ("run", "ok", True)
    assert done.sent == USERS - 1 == len(profile_keys(sb)) and done.failed == 0
    assert done.run_id == history(home, SYNC)[0].id and len(done.changes) == 2 * (USERS - 1)
    again = amp_sync.run(sync_file, home=home, progress=False)
    assert (again.sent, again.unchanged, len(again.changes)) == (0, USERS - 1, 0)
    assert again.run_id == done.run_id + 1


def test_a_test_send_delivers_only_its_keys_and_the_run_after_it_sends_the_rest(sync_file, home, sb):
    chosen = [user(10), user(11)]
    test = amp_sync.send_test(sync_file, keys=chosen, home=home, progress=False)

    assert (test.kind, test.sent, test.new, test.not_found) == ("test", 2, 2, ())
    assert profile_keys(sb) == set(chosen)
    assert sb.store.profile(user_id=user(10))["user_properties"]["lifetime_value"] == 10
    assert [(r.id, r.kind, r.status) for r in history(home, SYNC)] == [(test.run_id, "test", "ok")]

    done = amp_sync.run(sync_file, home=home, progress=False)
    assert done.sent == USERS - 3 and done.unchanged == 2
    assert not set(chosen) & set(done.changes["key"])
    assert len(profile_keys(sb)) == USERS - 1
    assert [r.kind for r in history(home, SYNC)] == ["run", "test"]


def test_a_test_send_names_keys_the_model_does_not_return(sync_file, home, sb):
    test = amp_sync.send_test(sync_file, keys=[user(1), "user_99999"], home=home, progress=False)

    assert (test.sent, test.not_found) == (1, ("user_99999",))
    assert "keys not in the model: user_99999" in repr(test)
    assert history(home, SYNC)[0].message == "keys not in the model: user_99999"
    with pytest.raises(ConfigError, match="at least one key"):
        amp_sync.send_test(sync_file, keys=[], home=home)


def test_a_saved_sync_runs_by_name_and_an_unknown_name_lists_the_saved_ones(sync_file, home, sb):
    Workspace(home).import_sync(sync_file.read_text())

    plan = amp_sync.preview(SYNC, home=home)
    assert plan.new == USERS - 1
    with pytest.raises(amp_sync.UnknownSyncError, match=f"the saved syncs are: {SYNC}"):
        amp_sync.preview("no-such-sync", home=home)


def test_endpoint_overrides_the_sync_files(sync_file, home, sb):
    with Sandbox() as other:
        done = amp_sync.send_test(sync_file, keys=[user(1)], home=home, endpoint=other.url, progress=False)
        assert done.sent == 1 and len(other.store.profiles()) == 1
    assert sb.store.profiles() == []


def test_results_show_their_counts_in_a_notebook(sync_file, home):
    plan = amp_sync.preview(sync_file, home=home)

    assert repr(plan).startswith(f"<PreviewResult preview of {SYNC}: new {USERS - 1:,}")
    page = plan._repr_html_()
    assert "<table" in page and f"{USERS - 1:,}" in page and "shorter than 5" in page

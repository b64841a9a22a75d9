"""Validation, field-level diff, payloads and batching, as pure functions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import too_deep

from amp_sync.amplitude import encode_body, encoded_size
from amp_sync.config import parse_config
from amp_sync.events import EventPlanner
from amp_sync.outbox import Outbox, Pending, Scope
from amp_sync.plan import USER_LINK, Planner, canonical, field_changes, identification, partition_of
from amp_sync.secret import Secret
from amp_sync.sender import batches
from amp_sync.snapshot import SnapshotIndex, digest, key_hash
from amp_sync.state import DestinationRef, StateStore

SYNC = """
[source]
url = "sqlite://"
[destination]
name = "t"
api_key = "key-for-tests"
region = "us"
[model]
name = "m"
sql = "select 1"
[sync]
name = "s"
object = "{object}"
behavior = "update_or_create"
key = "id"
{user_key}
[[sync.mappings]]
column = "plan"
property = "plan"
[[sync.mappings]]
column = "ltv"
property = "ltv"
op = "{ltv_op}"
"""


def config(object_: str = "user", ltv_op: str = "$set", user_key: str = ""):
    return parse_config(SYNC.format(object=object_, ltv_op=ltv_op, user_key=user_key))


def plan_rows(rows, index=None, docs=None, object_="user", user_key=""):
    cfg = config(object_, user_key=user_key)
    cols = ["id", "plan", "ltv"] + (["uid"] if user_key else [])
    planner = Planner(
        cfg, cols, index or SnapshotIndex.build([]), lambda keys: {k: docs[k] for k in keys}, None
    )
    planner.add(rows)
    return planner.finish()


def doc_of(plan_value, ltv, op="$set"):
    return {"plan": ["$set", plan_value], "ltv": [op, ltv]}


def index_of(docs):
    return SnapshotIndex.build((key_hash(k), None, digest(k, canonical(d))) for k, d in docs.items())


def test_new_rows_send_every_non_null_property() -> None:
    changes = field_changes("alice", None, doc_of("pro", None))
    assert [(c.property, c.after) for c in changes] == [("plan", "pro")]
    item = identification(config().sync.object, "alice", doc_of("pro", None), changes)
    assert item == {"user_id": "alice", "user_properties": {"$set": {"plan": "pro"}}}


def test_changed_rows_send_only_changed_properties_and_null_unsets() -> None:
    old, new = doc_of("pro", 10), doc_of("pro", None)
    changes = field_changes("alice", old, new)
    assert [(c.property, c.before, c.after) for c in changes] == [("ltv", 10, None)]
    item = identification(config().sync.object, "alice", new, changes)
    assert item["user_properties"] == {"$unset": {"ltv": "-"}}


def test_a_changed_operation_resends_the_property() -> None:
    changes = field_changes("alice", doc_of("pro", 10), doc_of("pro", 10, op="$setOnce"))
    assert [c.property for c in changes] == ["ltv"]


def test_add_sends_the_increment_since_the_last_acknowledged_total() -> None:
    old, new = doc_of("pro", 10, "$add"), doc_of("pro", 25, "$add")
    item = identification(config().sync.object, "alice", new, field_changes("alice", old, new))
    assert item["user_properties"] == {"$add": {"ltv": 15}}


def test_bool_and_number_are_different_values() -> None:
    assert field_changes("alice", doc_of(True, 1), doc_of(1, 1.0)) != []


def test_device_rows_carry_their_user() -> None:
    new = {"plan": ["$set", "pro"], USER_LINK: ["$user", "user-123"]}
    item = identification(config("device").sync.object, "device-1", new, field_changes("d", None, new))
    assert item == {
        "device_id": "device-1",
        "user_id": "user-123",
        "user_properties": {"$set": {"plan": "pro"}},
    }


json_values = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
docs = st.dictionaries(
    st.text("abc", min_size=1, max_size=3),
    st.tuples(st.sampled_from(["$set", "$add"]), json_values).map(list),
)


@given(docs)
def test_diff_of_a_snapshot_with_itself_is_empty(doc) -> None:
    assert field_changes("k", json.loads(canonical(doc)), doc) == []


def test_planner_counts_and_rejects() -> None:
    known = {"alice": doc_of("pro", 10), "carol": doc_of("free", 0), "gone1": doc_of("x", 1)}
    rows = [
        ("alice", "pro", 10),       # unchanged
        ("carol", "pro", 0),        # changed: plan only
        ("bobby", "free", None),    # new
        ("dupe1", "a", 1), ("dupe1", "b", 2),  # duplicate: both rejected
        ("abc", "x", 1),            # short id
        ("null", "x", 1),           # junk id
        (None, "x", 1),             # missing id
        ("long1", "y" * 2000, 1),   # over-long string
    ]  # fmt: skip
    plan = plan_rows(rows, index_of(known), known)
    assert (plan.new, plan.changed, plan.unchanged, plan.removed) == (1, 1, 1, 1)
    reasons = {(r.key, r.reason.split(" ")[-1]) for r in plan.rejections}
    assert len(plan.rejections) == 6
    assert ("dupe1", "sent") in reasons
    assert {r.key for r in plan.rejections} == {"dupe1", "abc", "null", "", "long1"}
    assert plan.property_counts == {"plan": 2}
    assert {(c.key, c.property) for c in plan.sample} == {("carol", "plan"), ("bobby", "plan")}


def test_a_duplicate_in_later_chunks_rejects_the_earlier_row_too() -> None:
    cfg = config()
    planner = Planner(cfg, ["id", "plan", "ltv"], SnapshotIndex.build([]), lambda keys: {}, None)
    planner.add([("alice", "pro", 1), ("bobby", "pro", 1)])
    planner.add([("alice", "free", 2)])
    plan = planner.finish()
    assert plan.new == 1 and [r.key for r in plan.rejections] == ["alice", "alice"]
    assert plan.property_counts == {"plan": 1, "ltv": 1}


def _pending(n: int, size: int = 10) -> list[Pending]:
    return [
        Pending(i, f"user{i:05d}", b'{"user_id":"%05d","p":"%s"}' % (i, b"x" * size), "{}", b"", 1, 1)
        for i in range(n)
    ]


@given(st.integers(0, 3000), st.integers(1, 400), st.integers(1, 1200))
def test_every_row_lands_in_exactly_one_batch_within_limits(n, size, max_items) -> None:
    rows = _pending(n, size)
    overhead = len(encode_body(Secret("k" * 32), []))
    max_bytes = 60_000
    got = list(batches(iter(rows), overhead, max_items, max_bytes))
    assert [r for b in got for r in b] == rows
    for batch in got:
        assert 1 <= len(batch) <= max_items
        assert len(encode_body(Secret("k" * 32), [r.item for r in batch])) <= max_bytes or len(batch) == 1
        assert overhead + sum(encoded_size(r.item) for r in batch) - 3 <= max_bytes or len(batch) == 1


@given(st.text(min_size=1), st.integers(1, 16))
def test_partition_is_stable_and_in_range(identity, partitions) -> None:
    assert partition_of(identity, partitions) == partition_of(identity, partitions)
    assert 0 <= partition_of(identity, partitions) < partitions


def test_one_users_devices_share_a_partition(tmp_path) -> None:
    cfg = config("device", user_key='user_key = "uid"')
    store = StateStore.open(tmp_path, "s", DestinationRef.of(cfg.destination))
    run_id = store.start_run("run")
    outbox = Outbox(store, run_id, lanes=4)
    planner = Planner(cfg, ["id", "plan", "ltv", "uid"], SnapshotIndex.build([]), lambda keys: {}, outbox)
    rows = [(f"device-{u}-{d}", "pro", 1, f"user-{u:04d}") for u in range(50) for d in range(3)]
    planner.add(rows)
    planner.finish()
    assert outbox.seal() == 150
    owner: dict[str, int] = {}
    for part in range(4):
        for pending in outbox.partition(part, 4, "identify", Scope(run_id=run_id)):
            user = json.loads(pending.item)["user_id"]
            assert owner.setdefault(user, part) == part  # never two senders for one user
    assert len(owner) == 50 and len(set(owner.values())) == 4
    store.close()


@given(docs, st.sampled_from(["user", "device"]))
def test_the_short_way_for_new_keys_matches_the_field_diff(doc, object_) -> None:
    from amp_sync.plan import new_item

    obj = config(object_).sync.object
    item, changed = new_item(obj, "key-00001", doc)
    changes = field_changes("key-00001", None, doc)
    assert item == identification(obj, "key-00001", doc, changes)
    assert changed == tuple(c.property for c in changes)


@given(st.lists(st.integers(-50, 50)), st.lists(st.integers(-50, 50)))
def test_removed_counts_the_indexed_keys_a_run_did_not_see(indexed, seen) -> None:
    import numpy as np

    index = SnapshotIndex.build((h, None, b"d" * 16) for h in indexed)
    expected = sum(1 for h in indexed if h not in set(seen))
    assert index.missing_from(np.unique(np.array(seen, dtype=np.int64))) == expected


def deep(levels: int) -> object:
    value: object = "deepest"
    for _ in range(levels):
        value = [value]
    return value


DEEP_REASONS = [
    (
        "alice",
        "ltv: " + too_deep(400),
    ),
    (
        "carol",
        "ltv: " + too_deep(5_000),
    ),
    ("erin1", "ltv: an object in the value has 2,000 keys; Amplitude keeps at most 1,024"),
]


@pytest.mark.parametrize("object_", ["user", "device", "group"])
def test_a_value_too_deep_or_too_wide_rejects_its_row_and_the_others_go_on(object_: str) -> None:
    # 5,000 levels is past what repr() and json.dumps can go: the row still becomes a rejection.
    group = 'group_type = "company"' if object_ == "group" else ""
    cfg = parse_config(SYNC.format(object=object_, ltv_op="$set", user_key=group))
    known = {"alice": doc_of("pro", 10), "carol": doc_of("pro", 10)}
    planner = Planner(
        cfg, ["id", "plan", "ltv"], index_of(known), lambda keys: {k: known[k] for k in keys}, None
    )
    planner.add([
        ("alice", "pro", deep(400)), ("bobby", "free", deep(39)), ("carol", "pro", deep(5000)),
        ("erin1", "pro", {str(i): i for i in range(2000)}), ("frank", "pro", {"a": {"b": [1]}}),
    ])  # fmt: skip
    plan = planner.finish()
    assert sorted((r.key, r.reason) for r in plan.rejections) == DEEP_REASONS
    assert (plan.new, plan.changed, plan.unchanged) == (2, 0, 0)
    assert sorted(plan.payloads) == ["bobby", "frank"]


# The event sync: SYNC's tables, with an event object's [sync] keys.
EVENT_SYNC = (
    SYNC.split("[sync]")[0]
    + """[sync]
name = "e"
object = "event"
key = "id"
event_type = "Viewed"
time_column = "at"
[[sync.mappings]]
column = "plan"
property = "plan"
[[sync.mappings]]
column = "ltv"
property = "ltv"
"""
)


def test_an_event_property_too_deep_or_too_wide_rejects_its_row_and_the_others_go_on() -> None:
    cfg = parse_config(EVENT_SYNC)
    planner = EventPlanner(cfg, ["id", "at", "plan", "ltv"], SnapshotIndex.build([]), lambda keys: {}, None)
    at = 1_738_402_200_000
    planner.add([
        ("alice", at, "pro", deep(400)), ("bobby", at, "free", deep(39)), ("carol", at, "pro", deep(5000)),
        ("erin1", at, "pro", {str(i): i for i in range(2000)}), ("frank", at, "pro", {"a": {"b": [1]}}),
    ])  # fmt: skip
    plan = planner.finish()
    assert sorted((r.key, r.reason) for r in plan.rejections) == DEEP_REASONS
    assert plan.new == 2
    assert sorted(e["user_id"] for e in plan.payloads.values()) == ["bobby", "frank"]

"""The field mapper's rules: mappable columns, auto-map, table rows, validation, the saved sync."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amp_sync.config import (
    Destination,
    Mapping_,
    Model,
    Operation,
    Region,
    Source,
    Sync,
    SyncConfig,
    SyncObject,
    parse_config,
)
from amp_sync.errors import ConfigError
from amp_sync.mapping import (
    Draft,
    auto_map,
    build_sync,
    field_rows,
    guess_key,
    mappable_columns,
    mappings_from_rows,
    problems,
)
from amp_sync.secret import Secret
from amp_sync.workspace import SavedSync, export_sync

COLUMNS = ["user_id", "device_id", "plan", "ltv"]
SET, ADD = Operation.SET, Operation.ADD


def draft(**changes: object) -> Draft:
    base: dict[str, object] = {
        "name": "ltv sync",
        "model": "ltv",
        "destination": "Amplitude sandbox",
        "object": SyncObject.USER,
        "key": "user_id",
        "mappings": (Mapping_("plan", "plan", SET), Mapping_("ltv", "lifetime_value", ADD)),
        "user_key": None,
    }
    return Draft(**{**base, **changes})  # type: ignore[arg-type]


def test_key_and_user_field_are_not_offered_as_properties() -> None:
    assert mappable_columns(COLUMNS, "device_id", "user_id") == ["plan", "ltv"]
    assert mappable_columns(COLUMNS, None) == COLUMNS


@pytest.mark.parametrize(
    ("columns", "object_", "expected"),
    [
        (COLUMNS, SyncObject.USER, "user_id"),
        (COLUMNS, SyncObject.DEVICE, "device_id"),
        (["ID", "plan"], SyncObject.USER, "ID"),
        (["email", "plan"], SyncObject.USER, None),
    ],
)
def test_the_key_is_guessed_only_when_obvious(columns, object_, expected) -> None:
    assert guess_key(columns, object_) == expected


def test_auto_map_keeps_mapped_columns_first_and_adds_every_other_non_key_column() -> None:
    assert auto_map(COLUMNS, "user_id", None, ["ltv"]) == ["ltv", "device_id", "plan"]
    assert auto_map(COLUMNS, "device_id", "user_id", []) == ["plan", "ltv"]


def test_table_rows_keep_edits_and_default_new_columns_to_their_name_and_set() -> None:
    known = {"ltv": Mapping_("ltv", "lifetime_value", ADD)}
    assert field_rows(["plan", "ltv"], known) == [
        {"column": "plan", "property": "plan", "operation": "$set"},
        {"column": "ltv", "property": "lifetime_value", "operation": "$add"},
    ]


def test_rows_back_to_mappings_with_emptied_cells() -> None:
    rows = [
        {"column": "plan", "property": "plan", "operation": "$setOnce"},
        {"column": "ltv", "property": None, "operation": None},
        {"column": "arr", "property": float("nan"), "operation": float("nan")},
    ]
    assert mappings_from_rows(rows) == (
        Mapping_("plan", "plan", Operation.SET_ONCE),
        Mapping_("ltv", "", SET),
        Mapping_("arr", "", SET),
    )
    with pytest.raises(ConfigError, match="'\\$multiply' is not an operation"):
        mappings_from_rows([{"column": "ltv", "property": "ltv", "operation": "$multiply"}])


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": " "}, "give the sync a name"),
        ({"name": "ltv/sync"}, "may hold only letters, digits"),
        ({"model": None}, "choose a model"),
        ({"destination": None}, "choose a destination"),
        ({"key": None}, "choose the key column: the one holding the Amplitude User ID"),
        ({"key": None, "object": SyncObject.DEVICE}, "the Amplitude Device ID"),
        ({"mappings": ()}, "map at least one column to an Amplitude property"),
        (
            {"mappings": (Mapping_("plan", "tier"), Mapping_("ltv", "tier"))},
            "the columns 'plan' and 'ltv' both write the property 'tier': give each its own property",
        ),
        ({"mappings": (Mapping_("plan", "$plan"),)}, "starts with '$', which Amplitude reserves"),
        ({"mappings": (Mapping_("plan", ""),)}, "give the column 'plan' a property name"),
        ({"mappings": (Mapping_("plan", "plan "),)}, "starts or ends with a space"),
        ({"mappings": (Mapping_("plan", "p" * 1025),)}, "longer than 1,024 characters"),
        ({"mappings": (Mapping_("plan", "a"), Mapping_("plan", "b"))}, "the column 'plan' is mapped twice"),
        (
            {"object": SyncObject.DEVICE, "key": "device_id", "user_key": "device_id"},
            "the user field 'device_id' is also the key column",
        ),
    ],
)
def test_each_problem_is_named_in_words(changes, expected) -> None:
    found = problems(draft(**changes), COLUMNS)
    assert any(expected in p for p in found), found


def test_columns_the_model_does_not_return_are_listed_once_known() -> None:
    d = draft(key="uid", mappings=(Mapping_("arr", "arr"),))
    assert problems(d) == []
    assert problems(d, COLUMNS) == [
        "the model does not return the column 'uid'",
        "the model does not return the column 'arr'",
    ]


def test_a_ready_draft_becomes_the_saved_sync() -> None:
    d = draft(name=" ltv sync ", object=SyncObject.DEVICE, key="device_id", user_key="user_id")
    assert problems(d, COLUMNS) == []
    assert build_sync(d, COLUMNS) == SavedSync(
        "ltv sync", "ltv", "Amplitude sandbox", SyncObject.DEVICE, "device_id", d.mappings, "user_id"
    )


def test_a_user_sync_drops_a_leftover_user_field() -> None:
    assert build_sync(draft(user_key="device_id")).user_key is None


def test_an_unready_draft_is_refused_with_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        build_sync(draft(name="", key=None))
    assert caught.value.problems == [
        "give the sync a name",
        "choose the key column: the one holding the Amplitude User ID",
    ]


_words = st.text(alphabet="ab $_-./", max_size=6)


@given(
    name=_words,
    key=st.sampled_from(["user_id", "device_id", ""]),
    object_=st.sampled_from(list(SyncObject)),
    user_key=st.sampled_from([None, "user_id", "device_id"]),
    mappings=st.lists(
        st.builds(Mapping_, st.sampled_from(["plan", "ltv"]), _words, st.sampled_from(list(Operation))),
        max_size=3,
    ),
)
def test_whatever_the_mapper_accepts_the_sync_file_accepts(name, key, object_, user_key, mappings) -> None:
    d = Draft(name, "ltv", "Sandbox", object_, key or None, tuple(mappings), user_key)
    if problems(d, COLUMNS):
        return
    saved = build_sync(d, COLUMNS)
    config = SyncConfig(
        Source(Secret("sqlite://")),
        Destination("Sandbox", Secret("k" * 32), None, Region.US, None),
        Model("ltv", "select 1"),
        Sync(saved.name, saved.object, "update_or_create", saved.key, saved.mappings, saved.user_key),
    )
    assert parse_config(export_sync(config, with_secrets=True)).sync == config.sync

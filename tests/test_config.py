"""The sync file: exactly the documented keys, ${VAR} from the environment, every problem listed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from amp_sync.config import (
    SYNC_NAME,
    Operation,
    Region,
    SyncObject,
    absolute_file_url,
    escape,
    fill_in,
    load_config,
    parse_config,
    placeholder_problems,
    references,
    resolve,
)
from amp_sync.errors import ConfigError

GOOD = """
[source]
url = "sqlite:///warehouse.db"

[destination]
name = "Amplitude (prod)"
api_key = "${AMPLITUDE_API_KEY}"
secret_key = "${AMPLITUDE_SECRET_KEY}"
region = "eu"
endpoint = "http://127.0.0.1:8766/"

[model]
name = "user_ltv"
sql = "select user_id, plan, ltv, uid from users"

[sync]
name = "ltv-to-amplitude"
object = "device"
behavior = "update_or_create"
key = "user_id"
user_key = "uid"

[[sync.mappings]]
column = "ltv"
property = "lifetime_value"
op = "$add"

[[sync.mappings]]
column = "plan"
property = "plan"
"""
ENV = {"AMPLITUDE_API_KEY": "k" * 32, "AMPLITUDE_SECRET_KEY": "s" * 32}


def test_a_complete_file_parses() -> None:
    config = parse_config(GOOD, ENV)
    assert config.destination.region is Region.EU
    assert config.destination.api_key.reveal() == "k" * 32
    assert config.destination.ingest_url == "http://127.0.0.1:8766"
    assert config.destination.rest_url == "http://127.0.0.1:8766"
    assert config.sync.object is SyncObject.DEVICE and config.sync.user_key == "uid"
    assert [m.op for m in config.sync.mappings] == [Operation.ADD, Operation.SET]
    assert config.required_columns() == ("user_id", "uid", "ltv", "plan")


def test_secrets_never_show_in_repr() -> None:
    config = parse_config(GOOD, ENV)
    assert "k" * 32 not in repr(config) and "s" * 32 not in repr(config)
    assert "k" * 32 not in str(config.destination.api_key)


def test_region_hosts_without_endpoint() -> None:
    text = GOOD.replace('endpoint = "http://127.0.0.1:8766/"\n', "")
    eu = parse_config(text, ENV).destination
    us = parse_config(text.replace('region = "eu"', 'region = "us"'), ENV).destination
    assert (eu.ingest_url, eu.rest_url) == (
        "https://api.eu.amplitude.com",
        "https://analytics.eu.amplitude.com",
    )
    assert (us.ingest_url, us.rest_url) == ("https://api2.amplitude.com", "https://amplitude.com")


def test_every_problem_is_listed_at_once() -> None:
    bad = (
        GOOD.replace('region = "eu"', 'region = "asia"')
        .replace('behavior = "update_or_create"', 'behavior = "mirror"\nschedule = "daily"')
        .replace('property = "plan"', 'property = "lifetime_value"')
        .replace('op = "$add"', 'op = "$increment"')
    )
    with pytest.raises(ConfigError) as err:
        parse_config(bad, {})
    text = "\n".join(err.value.problems)
    for words in (
        "environment variable AMPLITUDE_API_KEY is not set (used in destination.api_key)",
        "environment variable AMPLITUDE_SECRET_KEY is not set",
        "[destination].region must be one of us, eu, not 'asia'",
        "[sync].behavior must be one of update_or_create",
        "unknown key 'schedule' in [sync]",
        "mappings #1 and #2 both write the property 'lifetime_value'",
        "op must be one of",
    ):
        assert words in text
    assert len(err.value.problems) == 7


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda t: t.replace('[model]\nname = "user_ltv"\n', "[model]\n"),
            "missing key 'name' in [model]",
        ),
        (lambda t: t + "\n[extra]\nx = 1\n", "unknown table [extra]"),
        (
            lambda t: t.replace('object = "device"', 'object = "account"'),
            "[sync].object must be one of",
        ),
        (
            lambda t: t.replace('object = "device"', 'object = "user"'),
            "user_key is only for device syncs",
        ),
        (
            lambda t: t.replace('name = "ltv-to-amplitude"', 'name = "../etc"'),
            "may hold only letters",
        ),
        (lambda t: t.replace('property = "plan"', 'property = "$plan"'), "reserved by Amplitude"),
        (
            lambda t: t.replace('endpoint = "http://127.0.0.1:8766/"', 'endpoint = "ftp://x"'),
            "endpoint must be",
        ),
        (lambda t: t.replace('key = "user_id"', "key = 7"), "[sync].key must be a string"),
        (lambda t: t.split("[[sync.mappings]]")[0], "map at least one column"),
        (lambda t: t.replace("[source]", "[source\n"), "not valid TOML"),
        (lambda t: t.replace('sql = "select', 'sql = "   "\nx = "select'), "must not be empty"),
    ],
)
def test_each_problem_has_a_clear_message(edit, words) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(edit(GOOD), ENV)
    assert any(words in p for p in err.value.problems), err.value.problems


def test_missing_columns_are_named_with_what_the_model_returns() -> None:
    config = parse_config(GOOD, ENV)
    problems = config.missing_columns(["user_id", "plan"])
    assert problems == [
        "the model does not return the column 'uid' (it returns: user_id, plan)",
        "the model does not return the column 'ltv' (it returns: user_id, plan)",
    ]


def test_load_config_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="sync file not found"):
        load_config(tmp_path / "nope.toml")


EVENTS = """
[source]
url = "sqlite:///warehouse.db"

[destination]
name = "Amplitude"
api_key = "k"
region = "us"

[model]
name = "events"
sql = "select user_id, name, at, event_id, amount from events"

[sync]
name = "events"
object = "event"
key = "user_id"
event_type_column = "name"
time_column = "at"
insert_id_column = "event_id"

[[sync.mappings]]
column = "amount"
property = "amount"
"""


def test_an_event_sync_file_parses_with_its_defaults() -> None:
    sync = parse_config(EVENTS, {}).sync
    assert sync.object is SyncObject.EVENT and sync.behavior == "insert" and not sync.is_profile
    o = sync.options
    assert (o.id_type, o.event_type, o.event_type_column, o.time_column) == ("user", None, "name", "at")
    assert o.insert_id_column == "event_id" and o.skip_user_properties_sync is True
    assert parse_config(EVENTS, {}).required_columns() == ("user_id", "name", "at", "event_id", "amount")
    without_mappings = parse_config(EVENTS.split("[[sync.mappings]]")[0], {}).sync
    assert without_mappings.mappings == ()


def test_a_group_sync_file_parses() -> None:
    text = GOOD.replace('object = "device"', 'object = "group"\ngroup_type = "company"')
    text = text.replace('user_key = "uid"\n', "")
    sync = parse_config(text, ENV).sync
    assert sync.object is SyncObject.GROUP and sync.options.group_type == "company"
    assert sync.key_label == "group value"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (EVENTS.replace('time_column = "at"\n', ""), "event syncs need [sync].time_column"),
        (EVENTS.replace('event_type_column = "name"\n', ""), "exactly one of [sync].event_type"),
        (
            EVENTS.replace('event_type_column = "name"', 'event_type_column = "name"\nevent_type = "Paid"'),
            "exactly one of [sync].event_type",
        ),
        (EVENTS.replace('event_type_column = "name"', 'event_type = "$identify"'), "reserved by Amplitude"),
        (
            EVENTS.replace('key = "user_id"', 'key = "user_id"\nid_type = "account"'),
            "[sync].id_type must be one of",
        ),
        (
            EVENTS.replace('key = "user_id"', 'key = "user_id"\nuser_key = "uid"'),
            "only for events keyed on device ids",
        ),
        (
            EVENTS.replace('key = "user_id"', 'key = "user_id"\nbehavior = "update_or_create"'),
            "[sync].behavior of 'event' syncs is \"insert\"",
        ),
        (
            EVENTS.replace('property = "amount"', 'property = "amount"\nop = "$add"'),
            "event properties are sent as they are",
        ),
        (
            EVENTS.replace('time_column = "at"', 'time_column = "at"\nskip_user_properties_sync = "yes"'),
            "skip_user_properties_sync must be true or false",
        ),
        (
            EVENTS.replace('time_column = "at"', 'time_column = "at"\nsynthetic_event = "Updated"'),
            '[sync].synthetic_event is only for "user" or "device" syncs',
        ),
        (
            GOOD.replace('object = "device"', 'object = "group"').replace('user_key = "uid"\n', ""),
            "group syncs need [sync].group_type",
        ),
        (
            GOOD.replace('op = "$add"', 'op = "$remove"')
            .replace('object = "device"', 'object = "group"\ngroup_type = "co"')
            .replace('user_key = "uid"\n', ""),
            "group properties take $set, $setOnce, $add, $append, $prepend, not '$remove'",
        ),
        (
            GOOD.replace('object = "device"', 'object = "user"\ngroup_type = "co"').replace(
                'user_key = "uid"\n', ""
            ),
            "[sync].group_type is only for \"group\" syncs, not 'user' ones",
        ),
        (
            GOOD.replace('object = "device"', 'object = "device"\nsynthetic_event = "[Amplitude] Updated"'),
            "reserved by Amplitude",
        ),
    ],
)
def test_each_object_says_what_it_needs(text, words) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, ENV)
    assert any(words in p for p in err.value.problems), err.value.problems


# --- relative warehouse paths: read from the sync file's folder ------------------------------

BASE = Path("/srv/syncs")


@pytest.mark.parametrize(
    ("url", "absolute"),
    [
        ("sqlite:///warehouse.db", "sqlite:////srv/syncs/warehouse.db"),
        ("sqlite+pysqlite:///data/w.db?timeout=5", "sqlite+pysqlite:////srv/syncs/data/w.db?timeout=5"),
        ("duckdb:///../demo/warehouse.duckdb", "duckdb:////srv/demo/warehouse.duckdb"),
        ("duckdb:///./w.duckdb?access_mode=read_only", "duckdb:////srv/syncs/w.duckdb?access_mode=read_only"),
        ("sqlite:///my%20data.db", "sqlite:////srv/syncs/my data.db"),
        ("sqlite:///100%25.db", "sqlite:////srv/syncs/100%25.db"),  # a literal % stays encoded
        ("sqlite:////abs/w.db", "sqlite:////abs/w.db"),
        ("duckdb:////abs/w.duckdb", "duckdb:////abs/w.duckdb"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///", "sqlite:///"),
        ("duckdb:///:memory:", "duckdb:///:memory:"),
        ("duckdb:///md:analytics", "duckdb:///md:analytics"),
        ("sqlite:///file:w.db?mode=ro&uri=true", "sqlite:///file:w.db?mode=ro&uri=true"),
        ("postgresql+psycopg://u:p@host:5432/db", "postgresql+psycopg://u:p@host:5432/db"),
        ("not a url", "not a url"),
    ],
)
def test_only_relative_sqlite_and_duckdb_file_paths_become_absolute(url: str, absolute: str) -> None:
    assert absolute_file_url(url, BASE) == absolute


def test_a_sync_files_relative_warehouse_path_is_read_from_its_folder(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "sync.toml").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    for path in (folder / "sync.toml", "syncs/sync.toml"):
        assert load_config(path, ENV).source.url.reveal() == f"sqlite:///{folder / 'warehouse.db'}"
    assert parse_config(GOOD, ENV).source.url.reveal() == "sqlite:///warehouse.db"  # text alone: as written


def test_variables_are_substituted_before_the_path_is_judged(tmp_path) -> None:
    text = GOOD.replace("sqlite:///warehouse.db", "sqlite:///${DATA}/w.db?timeout=${WAIT}")
    env = {**ENV, "WAIT": "5"}
    assert parse_config(text, {**env, "DATA": "/data"}, base=tmp_path).source.url.reveal() == (
        "sqlite:////data/w.db?timeout=5"
    )
    assert parse_config(text, {**env, "DATA": "data"}, base=tmp_path).source.url.reveal() == (
        f"sqlite:///{tmp_path / 'data' / 'w.db'}?timeout=5"
    )


def test_the_examples_find_the_demo_warehouse_from_any_folder(tmp_path, monkeypatch) -> None:
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    for example in sorted((root / "examples").glob("*.toml")):
        url = load_config(example).source.url.reveal()
        assert url == f"duckdb:///{root / 'demo' / 'warehouse.duckdb'}", example.name


# --- placeholders: ${NAME} reads a variable, $${ writes ${, anything else is refused ---------

HOW = "write ${NAME} with letters, digits and _"
PLACES = {
    "[destination].api_key": ('api_key = "${AMPLITUDE_API_KEY}"', 'api_key = "{text}"'),
    "[model].sql": (
        'sql = "select user_id, plan, ltv, uid from users"',
        "sql = \"select '{text}' as user_id\"",
    ),
    "[sync].mappings[1].column": ('column = "plan"', 'column = "{text}"'),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("${ X }", "${ X }"),
        ("${a-b}", "${a-b}"),
        ("${}", "${}"),
        ("${X", "${X"),
        ("pre${ X }post", "${ X }"),
    ],
)
def test_a_malformed_placeholder_is_refused_with_its_place(place, text, shown) -> None:
    old, new = PLACES[place]
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace(old, new.format(text=text)), ENV)
    assert f"{place}: malformed placeholder {shown!r}: {HOW}" in err.value.problems


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("$${HOME}", "${HOME}"),
        ("a $${HOME} and ${HOME}", "a ${HOME} and /home/ada"),
        ("$$${HOME}", "$${HOME}"),
        ("cost: $5, $HOME, ${HOME}", "cost: $5, $HOME, /home/ada"),
        ("$${ X }", "${ X }"),
    ],
)
def test_a_doubled_dollar_writes_a_literal_placeholder(written, read) -> None:
    config = parse_config(
        GOOD.replace('name = "user_ltv"', f'name = "{written}"'), {**ENV, "HOME": "/home/ada"}
    )
    assert config.model.name == read


def test_every_malformed_placeholder_is_listed_with_the_unset_variables() -> None:
    text = GOOD.replace("${AMPLITUDE_SECRET_KEY}", "${ SECRET }").replace('key = "user_id"', 'key = "${id"')
    with pytest.raises(ConfigError) as err:
        parse_config(text, {})
    assert err.value.problems[:3] == [
        "environment variable AMPLITUDE_API_KEY is not set (used in destination.api_key)",
        f"[destination].secret_key: malformed placeholder '${{ SECRET }}': {HOW}",
        f"[sync].key: malformed placeholder '${{id': {HOW}",
    ]


def test_kept_places_keep_their_references_unread_but_checked() -> None:
    keep = ("destination.api_key", "destination.secret_key")
    config = parse_config(GOOD, {}, keep=keep)  # neither key is set: the references are kept
    assert config.destination.api_key.reveal() == "${AMPLITUDE_API_KEY}"
    assert config.destination.secret_key.reveal() == "${AMPLITUDE_SECRET_KEY}"
    with pytest.raises(ConfigError, match=r"\[destination\].api_key: malformed placeholder '\$\{ K \}'"):
        parse_config(GOOD.replace("${AMPLITUDE_API_KEY}", "${ K }"), {}, keep=keep)


@given(hs.text(max_size=40))
def test_an_escaped_text_reads_back_as_itself(text: str) -> None:
    assert resolve(escape(text), {}, "a test") == text
    assert references(escape(text)) == [] and placeholder_problems(escape(text), "a test") == []


def test_typed_values_fill_in_their_variables_and_leave_the_others() -> None:
    template = "postgresql://${USER}:${WAREHOUSE_PASSWORD}@db/prod"
    assert fill_in(template, {"WAREHOUSE_PASSWORD": "p${w"}) == "postgresql://${USER}:p$${w@db/prod"
    assert resolve(fill_in(template, {"WAREHOUSE_PASSWORD": "p${w"}), {"USER": "ada"}, "x") == (
        "postgresql://ada:p${w@db/prod"
    )
    assert references(template) == ["USER", "WAREHOUSE_PASSWORD"]


# --- names: matched in full, one line of text --------------------------------------------


@pytest.mark.parametrize("name", ["ltv\\n", "ltv\\r\\nx", "ltv\\u0000", "ltv\\t"])
def test_a_sync_name_with_a_line_break_or_control_character_is_refused(name) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace('name = "ltv-to-amplitude"', f'name = "{name}"'), ENV)
    assert any(p.startswith("[sync].name") and "may hold only letters" in p for p in err.value.problems)


def test_the_sync_name_pattern_matches_whole_names_only() -> None:
    assert SYNC_NAME.match("ltv-to-amplitude") and SYNC_NAME.fullmatch("ltv to amplitude.v2")
    assert SYNC_NAME.match("ltv\n") is None and SYNC_NAME.match("a" * 101) is None


@pytest.mark.parametrize("name", ["user\\nltv", "user_ltv\\n", "tab\\there"])
def test_a_model_name_with_a_line_break_is_refused(name) -> None:
    with pytest.raises(ConfigError, match=r"\[model\].name .* must not hold line breaks"):
        parse_config(GOOD.replace('name = "user_ltv"', f'name = "{name}"'), ENV)

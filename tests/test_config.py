"""The sync file: exactly the documented keys, ${VAR} from the environment, every problem listed."""

from __future__ import annotations

import pytest

from amp_sync.config import Operation, Region, SyncObject, load_config, parse_config
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

"""Option resolution from descriptors: precedence, parsing, errors, secrets."""

from __future__ import annotations

import itertools
import json

import pytest

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.options import (
    DESCRIPTORS,
    OptionError,
    find_spec,
    format_duration,
    parse_duration,
    resolve_options,
)
from support.paths import DOCS


@pytest.mark.parametrize(
    ("flag", "env", "yaml", "expected", "source"),
    [
        (flag, env, yaml, value, source)
        for flag, env, yaml in itertools.product([None, "11"], [None, "22"], [None, 33])
        for value, source in [
            next(
                ((int(v), s) for v, s in ((flag, "flag"), (env, "env"), (yaml, "yaml")) if v),
                (256, "default"),
            )
        ]
    ],
)
def test_precedence_flag_env_yaml_default(flag, env, yaml, expected, source):
    resolved = resolve_options(
        flags={"llm.queue_size": flag} if flag else {},
        env={"LLM_QUEUE_SIZE": env} if env else {},
        yaml_doc={"plugin_options": {"llm": {"queue_size": yaml}}} if yaml else {},
    )
    arg = resolved.args["llm"]["queue_size"]
    assert (arg.value, arg.source) == (expected, source)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("2", 2), ("1.5s", 1.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5 minutes", "-3", "5m3", "m5"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.25, 5, 90, 300, 5400, 86400])
def test_format_duration_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLM_QUEUE_SIZE": "abc"}, "LLM_QUEUE_SIZE=abc: expected an integer"),
        ({"LLM_MODEL_FAMILY_MATCHING": "maybe"}, "expected true or false"),
        ({"WORKERS_HEARTBEAT_EXPIRY": "soon"}, "expected a duration"),
        ({"SERVER_STATE_STREAM_RATE": "fast"}, "expected a number"),
    ],
)
def test_bad_values_name_source_and_expectation(env, message):
    with pytest.raises(OptionError, match=message):
        resolve_options(env=env)


def test_bad_secret_value_is_not_echoed():
    # Secrets are strings, so they cannot be malformed; but a bad flag must not echo one.
    resolved = resolve_options(env={"SERVER_WORKER_KEY": "hunter2"})
    described = {p.id: p for p in resolved.describe()}
    worker_key = next(a for a in described["server"].args if a.id == "worker_key")
    assert worker_key.value is None and worker_key.is_set and worker_key.source == "env"
    assert "hunter2" not in repr(resolved.describe())


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"server": {"host": ["0.0.0.0"]}},
            "plugin_options.server.host: expected a string, not a list",
        ),
        (
            {"llm": {"scheduler": {"name": "x"}}},
            "plugin_options.llm.scheduler: expected a string, not a mapping",
        ),
        (
            {"server": {"viewer_tokens": {"a": 1}}},
            "plugin_options.server.viewer_tokens: expected a string (or a list of them), "
            "not a mapping",
        ),
        (
            {"server": {"operator_tokens": ["t1", ["t2"]]}},
            "plugin_options.server.operator_tokens: item 2: expected a string, not list",
        ),
        (
            {"server": {"api_keys": ["a,b"]}},
            "plugin_options.server.api_keys: item 1: must be non-empty and hold no comma",
        ),
        ({"llm": {"queue_size": [1, 2]}}, "plugin_options.llm.queue_size: expected an integer"),
    ],
)
def test_yaml_lists_and_mappings_elsewhere_are_refused_by_path(section, message):
    with pytest.raises(OptionError) as info:
        resolve_options(yaml_doc={"plugin_options": section})
    assert message in str(info.value)
    assert "sk-" not in str(info.value)


def test_unknown_yaml_keys_suggest_the_right_one():
    with pytest.raises(OptionError) as info:
        resolve_options(yaml_doc={"plugin_options": {"llm": {"queue_sise": 3}, "wrokers": {}}})
    text = str(info.value)
    assert "plugin_options.llm.queue_sise: unknown option (did you mean 'queue_size'?)" in text
    assert "plugin_options.wrokers: unknown plugin (did you mean 'workers'?)" in text


def test_unknown_top_level_keys_are_reported_with_a_suggestion():
    with pytest.raises(OptionError) as info:
        resolve_options(yaml_doc={"plugin_option": {"llm": {"queue_size": 3}}, "servr": 1})
    text = str(info.value)
    assert "plugin_option: unknown top-level key (did you mean 'plugin_options'?)" in text
    assert "servr: unknown top-level key" in text
    from gatewaytui.gateway.options import config_json_schema

    assert config_json_schema()["additionalProperties"] is False


def test_names_derive_from_plugin_and_id():
    spec = find_spec("llm", "queue_size")
    assert (spec.flag, spec.env, spec.yaml) == (
        "--llm-queue-size",
        "LLM_QUEUE_SIZE",
        "plugin_options.llm.queue_size",
    )
    every = [(d.id, a.id) for d in DESCRIPTORS for a in d.args]
    assert len(every) == len(set(every))


def test_every_default_parses_and_builds_a_config():
    config = GatewayConfig.from_options(resolve_options())
    assert config.host == "127.0.0.1"
    assert config.heartbeat_expiry == 20.0
    assert config.scheduler == "least-busy"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"env": {"LLM_SCHEDULER": "random"}},
            "LLM_SCHEDULER=random: expected one of least-busy, round-robin, fill-first",
        ),
        (
            {"flags": {"llm.queue_size": "-1"}},
            "--llm-queue-size -1: expected a non-negative integer",
        ),
        (
            {"yaml_doc": {"plugin_options": {"server": {"state_stream_rate": 10}}}},
            "plugin_options.server.state_stream_rate=10: expected a number in (0, 4]",
        ),
        ({"env": {"SERVER_PORT": "70000"}}, "SERVER_PORT=70000: expected an integer in [0, 65535]"),
        ({"env": {"MCP_CLIENT_CONCURRENCY": "0"}}, "MCP_CLIENT_CONCURRENCY=0: expected a positive"),
        ({"env": {"LLM_MAX_QUEUE": "-5"}}, "LLM_MAX_QUEUE=-5: expected a non-negative integer"),
    ],
)
def test_range_and_choice_errors_name_their_source(given, message):
    with pytest.raises(OptionError) as info:
        resolve_options(**given)
    assert message in str(info.value)


def test_range_errors_come_from_building_the_config_too():
    with pytest.raises(OptionError, match=r"--llm-scheduler random: expected one of"):
        GatewayConfig.build(llm__scheduler="random")


def test_the_config_defaults_are_the_descriptors():
    import dataclasses

    built = GatewayConfig.from_options(resolve_options())
    bare = GatewayConfig()
    for item in dataclasses.fields(GatewayConfig):
        if item.name != "options":
            assert getattr(bare, item.name) == getattr(built, item.name), item.name


def test_scheduler_choices_reach_the_schema_and_the_reference():
    from gatewaytui.gateway.options import config_json_schema, options_markdown

    llm = config_json_schema()["properties"]["plugin_options"]["properties"]["llm"]
    assert llm["properties"]["scheduler"]["enum"] == ["least-busy", "round-robin", "fill-first"]
    assert llm["properties"]["queue_size"]["minimum"] == 0
    line = next(x for x in options_markdown().splitlines() if x.startswith("| `scheduler`"))
    assert "Allowed: one of least-busy, round-robin, fill-first." in line


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"LLM_MODEL_FAMILY_MATCHING": "yes"}, "model_family_matching", True),
        ({"LLM_MODEL_FAMILY_MATCHING": "on"}, "model_family_matching", True),
        ({"LLM_MODEL_FAMILY_MATCHING": "false"}, "model_family_matching", False),
        ({"METRICS_PER_WORKER": "0"}, "metrics_per_worker", False),
        ({"METRICS_ENABLED": "OFF"}, "metrics_enabled", False),
        ({"SERVER_STATE_STREAM_RATE": "2.5"}, "state_stream_rate", 2.5),
        ({"LLM_QUEUE_SIZE": " 12 "}, "queue_size", 12),
        ({"LLM_QUEUE_TIMEOUT": "1m30s"}, "queue_timeout", 90.0),
    ],
)
def test_good_bool_and_number_values_parse(env, field, value):
    config = GatewayConfig.from_options(resolve_options(env=env))
    assert getattr(config, field) == value


def test_yaml_scalars_of_every_type_parse():
    doc = {
        "plugin_options": {
            "llm": {"model_family_matching": False, "queue_size": 7},
            "server": {"state_stream_rate": 2.5, "drain_timeout": 90},
        }
    }
    config = GatewayConfig.from_options(resolve_options(yaml_doc=doc))
    assert (config.model_family_matching, config.queue_size) == (False, 7)
    assert (config.state_stream_rate, config.drain_timeout) == (2.5, 90.0)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"llm": {"queue_size": "lots"}},
            "plugin_options.llm.queue_size=lots: expected an integer",
        ),
        ({"llm": {"queue_size": 2.5}}, "plugin_options.llm.queue_size=2.5: expected an integer"),
        ({"metrics": {"enabled": "maybe"}}, "plugin_options.metrics.enabled=maybe: expected true"),
        ({"workers": {"gone_retention": "soon"}}, "plugin_options.workers.gone_retention=soon"),
    ],
)
def test_bad_yaml_value_names_its_yaml_path(section, message):
    with pytest.raises(OptionError) as info:
        resolve_options(yaml_doc={"plugin_options": section})
    assert message in str(info.value)


def test_defaults_are_written_as_they_are_shown():
    """A view that highlights values differing from the default compares strings."""
    for plugin in resolve_options().describe():
        for arg in plugin.args:
            if not arg.secret:
                assert (arg.value or "") == arg.default, f"{plugin.id}.{arg.id}"
                assert arg.source == "default"


def test_deprecated_option_feeds_its_replacement_and_warns():
    resolved = resolve_options(env={"LLM_MAX_QUEUE": "77"})
    queue = resolved.args["llm"]["queue_size"]
    assert (queue.value, queue.source) == (77, "env")
    assert any("LLM_MAX_QUEUE is deprecated" in w for w in resolved.warnings)
    assert any("sets llm.queue_size" in w for w in resolved.warnings)
    expiry = resolve_options(
        yaml_doc={"plugin_options": {"workers": {"heartbeat_timeout": "45s"}}}
    ).args["workers"]["heartbeat_expiry"]
    assert (expiry.value, expiry.source) == (45.0, "yaml")


def test_replacement_given_as_strongly_wins_over_the_deprecated_one():
    resolved = resolve_options(flags={"llm.queue_size": "5"}, env={"LLM_MAX_QUEUE": "77"})
    assert resolved.args["llm"]["queue_size"].value == 5
    both_env = resolve_options(env={"LLM_MAX_QUEUE": "77", "LLM_QUEUE_SIZE": "9"})
    assert both_env.args["llm"]["queue_size"].value == 9


def test_bad_deprecated_value_names_its_source():
    with pytest.raises(OptionError, match="LLM_MAX_QUEUE=x: expected an integer"):
        resolve_options(env={"LLM_MAX_QUEUE": "x"})


def test_gateway_config_schema_is_generated_from_the_descriptors():

    from gatewaytui.gateway.options import config_json_schema

    schema = config_json_schema()
    plugins = schema["properties"]["plugin_options"]["properties"]
    for descriptor in DESCRIPTORS:
        assert set(plugins[descriptor.id]["properties"]) == {a.id for a in descriptor.args}
    assert plugins["llm"]["properties"]["max_queue"]["deprecated"] is True
    assert "default" not in plugins["server"]["properties"]["api_keys"]
    published = DOCS / "gateway-config.schema.json"
    assert json.loads(published.read_text()) == schema, "run `gatewaytui schema --write docs`"


def test_options_reference_is_current():

    from gatewaytui.gateway.options import options_markdown

    published = DOCS / "options.md"
    assert published.read_text() == options_markdown(), "run `gatewaytui schema --write docs`"

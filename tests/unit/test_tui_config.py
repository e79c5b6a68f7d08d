"""The TUI config file: loading, errors with file:line, tokens, contexts, the JSON Schema."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gatewaytui.tui.config import (
    ConfigError,
    ContextConfig,
    TuiConfig,
    check_keymap,
    config_json_schema,
    config_json_schema_text,
    default_config_path,
    effective_read_only,
    effective_theme,
    load_config,
    pick_context,
    resolve_token,
)
from support.paths import REPO

SECRET = "s3cr3t-t0ken-value-do-not-print"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


# ---- locations and defaults --------------------------------------------------------------


def test_default_config_path_follows_xdg(xdg: Path) -> None:
    assert default_config_path() == xdg / "gatewaytui" / "config.yaml"


def test_default_config_path_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_config_path() == tmp_path / ".config" / "gatewaytui" / "config.yaml"


def test_no_default_file_means_defaults(xdg: Path) -> None:
    config = load_config(None)
    assert config == TuiConfig()
    assert [c.name for c in config.contexts] == ["local"]
    assert config.contexts[0].url == "http://127.0.0.1:8080"
    assert config.refresh_rate == 4.0
    assert config.theme == "gatewaytui-dark"
    assert config.keymap == {}
    assert pick_context(config).name == "local"


def test_default_file_is_read(xdg: Path) -> None:
    path = xdg / "gatewaytui" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("refresh_rate: 2\n")
    assert load_config(None).refresh_rate == 2.0


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing yet\n")) == TuiConfig()


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(missing)
    assert str(missing) in str(info.value)


def test_explicit_path_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="folder"):
        load_config(tmp_path)


def test_full_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(
        tmp_path,
        """
default_context: prod
contexts:
  - name: local
    url: http://127.0.0.1:8080/
  - name: prod
    label: PRODUCTION
    url: https://gw.example.com:8443/gateway
    token_file: ~/prod.token
    read_only: true
    color: red
    theme: gatewaytui-high-contrast
  - name: staging
    url: http://staging:9000
    token_file: tokens/staging
refresh_rate: 0.5
theme: gatewaytui-light
snapshot_dir: snaps
keymap:
  app.quit: "ctrl+q , f10"
  app.drain: d
""",
    )
    config = load_config(path)
    local, prod, staging = config.contexts
    assert local.url == "http://127.0.0.1:8080"  # trailing slash dropped
    assert prod.url == "https://gw.example.com:8443/gateway"
    assert prod.token_file == tmp_path / "prod.token"  # ~ expanded
    assert staging.token_file == tmp_path / "tokens" / "staging"  # relative to the file
    assert config.snapshot_dir == tmp_path / "snaps"
    assert config.snapshot_path == tmp_path / "snaps"
    assert prod.read_only and prod.color == "red" and prod.display_name == "PRODUCTION"
    assert local.display_name == "local"
    assert config.refresh_rate == 0.5
    assert config.keymap == {"app.quit": "ctrl+q,f10", "app.drain": "d"}
    assert pick_context(config).name == "prod"
    assert pick_context(config, "staging") is staging


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    text = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n# ~/.config/gatewaytui/config.yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, block))
    assert pick_context(config).name == "local"
    assert config.get_context("prod") is not None
    assert config.get_context("prod").read_only


# ---- YAML errors -------------------------------------------------------------------------


def test_broken_yaml_reports_file_line_col_and_leaves_the_file_alone(tmp_path: Path) -> None:
    text = "contexts:\n  - name: local\n    url: [http://x:1\nrefresh_rate: 2\n"
    path = write(tmp_path, text)
    before = path.stat().st_mtime_ns
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    line, col = message[len(str(path)) + 1 :].split(":")[:2]
    assert line.isdigit() and col.isdigit()
    assert "invalid YAML" in message
    assert path.read_text(encoding="utf-8") == text
    assert path.stat().st_mtime_ns == before


def test_tab_indentation_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "theme: x\nkeymap:\n\tapp.quit: q\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3:1: invalid YAML"):
        load_config(path)


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    error = load_error(tmp_path, "theme: a\nrefresh_rate: 1\ntheme: b\n")
    assert ":3:1:" in str(error)
    assert "duplicate key 'theme'" in str(error)
    assert "line 1" in str(error)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    error = load_error(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in str(error)


# ---- validation errors -------------------------------------------------------------------


def test_unknown_key_did_you_mean_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "theme: gatewaytui-dark\nrefresh_rat: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}:2:1: refresh_rat: unknown key; did you mean 'refresh_rate'?"
    ]


def test_unknown_key_in_a_context(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        "contexts:\n  - name: prod\n    url: http://h:1\n    tokenenv: X\n",
    )
    assert error.problems == [
        f"{tmp_path / 'config.yaml'}:4:5: contexts[0](prod).tokenenv: unknown key; "
        "did you mean 'token_env'?"
    ]


def test_inline_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, f"contexts:\n  - name: prod\n    url: http://h:1\n    token: {SECRET}\n"
    )
    assert "token_env" in str(error) and "token_file" in str(error)
    assert SECRET not in str(error)
    assert SECRET not in repr(error)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://h:21", "http:// or https://"),
        ("127.0.0.1:8080", "http:// or https://"),
        ("http://", "host is missing"),
        ("http://h:99999", "port"),
        ("http://h:abc", "port"),
        ("http://h:0", "port"),
        ("http://h:1/x?y=1", "query"),
        (f"https://admin:{SECRET}@h:1", "credentials are not allowed"),
    ],
)
def test_bad_url(tmp_path: Path, url: str, expected: str) -> None:
    error = load_error(tmp_path, f"contexts:\n  - name: a\n    url: '{url}'\n")
    assert len(error.problems) == 1
    assert ":3:10: contexts[0](a).url: " in error.problems[0]
    assert expected in error.problems[0]
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "https://gw.example.com", "http://[::1]:9"]
)
def test_good_url(url: str) -> None:
    assert ContextConfig(name="x", url=url).url == url


def test_duplicate_context_names(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        "contexts:\n  - {name: a, url: 'http://h:1'}\n  - {name: a, url: 'http://h:2'}\n",
    )
    assert len(error.problems) == 1
    assert "contexts: duplicate context name 'a' (contexts[0] and contexts[1])" in str(error)
    assert ":2:3:" in error.problems[0]


def test_bad_context_name(tmp_path: Path) -> None:
    error = load_error(tmp_path, "contexts:\n  - {name: 'my prod', url: 'http://h:1'}\n")
    assert "contexts[0](my prod).name: expected letters" in str(error)


def test_no_contexts_at_all(tmp_path: Path) -> None:
    error = load_error(tmp_path, "contexts: []\n")
    assert "contexts: " in str(error) and "at least 1" in str(error)


def test_default_context_must_exist(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        "default_context: prd\ncontexts:\n  - {name: prod, url: 'http://h:1'}\n",
    )
    assert "default_context: 'prd' is not a context; did you mean 'prod'?" in str(error)
    assert "(known contexts: prod)" in str(error)


@pytest.mark.parametrize("rate", [0, -1, 4.5, 100])
def test_refresh_rate_out_of_range(tmp_path: Path, rate: float) -> None:
    error = load_error(tmp_path, f"refresh_rate: {rate}\n")
    assert len(error.problems) == 1
    assert f"{tmp_path / 'config.yaml'}:1:15: refresh_rate: " in error.problems[0]


@pytest.mark.parametrize("rate", [0.1, 1, 4])
def test_refresh_rate_in_range(tmp_path: Path, rate: float) -> None:
    assert load_config(write(tmp_path, f"refresh_rate: {rate}\n")).refresh_rate == rate


def test_refresh_rate_not_a_number(tmp_path: Path) -> None:
    error = load_error(tmp_path, "refresh_rate: fast\n")
    assert "refresh_rate: Input should be a valid number" in str(error)


@pytest.mark.parametrize(
    ("keymap", "expected"),
    [
        ("app.quit: ''", "expected comma-separated keys"),
        ("app.quit: 'ctrl+q,,f10'", "expected comma-separated keys"),
        ("app.quit: 'ctrl + q'", "contains a space"),
        ("app.quit: [q, f10]", "valid string"),
        ("app.quit: 3", "valid string"),
        ("'app quit': q", "no spaces or commas"),
    ],
)
def test_bad_keymap_values(tmp_path: Path, keymap: str, expected: str) -> None:
    error = load_error(tmp_path, f"keymap:\n  {keymap}\n")
    assert "keymap" in str(error)
    assert expected in str(error)


def test_keymap_values_are_normalized_for_set_keymap(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "keymap:\n  app.help: 'question_mark , f1'\n"))
    assert config.keymap == {"app.help": "question_mark,f1"}


def test_check_keymap_warns_about_unknown_ids() -> None:
    warnings = check_keymap({"app.quit": "q", "app.drian": "d"}, ["app.quit", "app.drain"])
    assert warnings == ["keymap: no binding has the id 'app.drian'; did you mean 'app.drain'?"]


def test_bad_colour_and_token_env(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        "contexts:\n  - name: a\n    url: http://h:1\n    color: rde\n    token_env: 'my token'\n",
    )
    text = str(error)
    assert "contexts[0](a).color: failed to parse 'rde' as a color; did you mean 'red'?" in text
    assert "contexts[0](a).token_env: expected the *name* of an environment variable" in text
    assert "my token" not in text  # an env var "name" that looks like a token is not echoed


def test_every_problem_is_listed(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, "refresh_rate: 9\ntheme: ''\ncontexts:\n  - {name: a, url: 'ftp://x'}\n"
    )
    assert len(error.problems) == 3
    assert "3 problems" in str(error).splitlines()[0]


# ---- tokens --------------------------------------------------------------------------------


def test_token_from_env_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "tok"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("GW_TOKEN", f"  {SECRET}\n")
    context = ContextConfig(name="a", url="http://h:1", token_env="GW_TOKEN", token_file=token_file)
    assert resolve_token(context) == SECRET


def test_token_falls_back_to_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "tok"
    token_file.write_text(f"{SECRET}\n")
    monkeypatch.delenv("GW_TOKEN", raising=False)
    context = ContextConfig(name="a", url="http://h:1", token_env="GW_TOKEN", token_file=token_file)
    assert resolve_token(context) == SECRET
    monkeypatch.setenv("GW_TOKEN", "")  # empty counts as unset
    assert resolve_token(context) == SECRET


def test_no_token_configured_or_env_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TOKEN", raising=False)
    assert resolve_token(ContextConfig(name="a", url="http://h:1")) is None
    assert resolve_token(ContextConfig(name="a", url="http://h:1", token_env="GW_TOKEN")) is None


def test_missing_token_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.token"
    context = ContextConfig(name="prod", url="http://h:1", token_file=missing)
    with pytest.raises(ConfigError, match="token file not found") as info:
        resolve_token(context)
    assert str(missing) in str(info.value) and "'prod'" in str(info.value)


def test_empty_token_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="token file is empty"):
        resolve_token(ContextConfig(name="a", url="http://h:1", token_file=empty))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_token_file_never_shows_the_token(tmp_path: Path) -> None:
    locked = tmp_path / "locked.token"
    locked.write_text(SECRET)
    locked.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            resolve_token(ContextConfig(name="a", url="http://h:1", token_file=locked))
    finally:
        locked.chmod(0o600)
    assert str(locked) in str(info.value)
    assert SECRET not in str(info.value)


def test_unreadable_token_file_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.token"
    locked.write_text(SECRET)
    real_read_text = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(ConfigError) as info:
        resolve_token(ContextConfig(name="a", url="http://h:1", token_file=locked))
    assert str(info.value) == (f"context 'a': cannot read token file {locked}: Permission denied")


def test_token_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_token(ContextConfig(name="a", url="http://h:1", token_file=tmp_path))
    assert str(tmp_path) in str(info.value)


def test_binary_token_file(tmp_path: Path) -> None:
    binary = tmp_path / "bin.token"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        resolve_token(ContextConfig(name="a", url="http://h:1", token_file=binary))
    assert SECRET not in str(info.value)


def test_token_never_in_reprs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "tok"
    token_file.write_text(SECRET)
    monkeypatch.setenv("GW_TOKEN", SECRET)
    path = write(
        tmp_path,
        f"contexts:\n  - name: a\n    url: http://h:1\n    token_env: GW_TOKEN\n"
        f"    token_file: {token_file}\n",
    )
    config = load_config(path)
    assert resolve_token(config.contexts[0]) == SECRET
    for text in (repr(config), str(config), config.model_dump_json(), repr(config.contexts[0])):
        assert SECRET not in text


# ---- contexts, theme and read-only precedence ----------------------------------------------


def two_contexts() -> TuiConfig:
    return TuiConfig(
        contexts=[
            ContextConfig(name="local", url="http://127.0.0.1:8080"),
            ContextConfig(name="prod", url="https://gw:443", theme="gatewaytui-high-contrast"),
        ],
        theme="gatewaytui-light",
    )


def test_pick_context() -> None:
    config = two_contexts()
    assert pick_context(config).name == "local"
    assert pick_context(config, "prod").name == "prod"
    config = config.model_copy(update={"default_context": "prod"})
    assert pick_context(config).name == "prod"
    assert pick_context(config, "local").name == "local"


def test_pick_unknown_context_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        pick_context(two_contexts(), "prd")
    assert str(info.value) == (
        "unknown context 'prd'; did you mean 'prod'? (known contexts: local, prod)"
    )


def test_effective_theme_precedence() -> None:
    config = two_contexts()
    local, prod = config.contexts
    assert effective_theme(config) == "gatewaytui-light"
    assert effective_theme(config, local) == "gatewaytui-light"
    assert effective_theme(config, prod) == "gatewaytui-high-contrast"
    assert effective_theme(config, prod, "gatewaytui-ansi") == "gatewaytui-ansi"


def test_effective_read_only() -> None:
    open_context = ContextConfig(name="a", url="http://h:1")
    locked = ContextConfig(name="b", url="http://h:1", read_only=True)
    assert not effective_read_only(open_context)
    assert not effective_read_only(open_context, role="operator")
    assert effective_read_only(open_context, cli_read_only=True)
    assert effective_read_only(open_context, role="viewer")
    assert effective_read_only(locked, role="operator")


def test_config_is_immutable() -> None:
    config = TuiConfig()
    with pytest.raises(ValueError):
        config.theme = "x"  # type: ignore[misc]


# ---- JSON Schema ---------------------------------------------------------------------------


def test_json_schema_file_is_in_sync() -> None:
    published = (REPO / "docs" / "config.schema.json").read_text(encoding="utf-8")
    assert published == config_json_schema_text(), (
        "docs/config.schema.json is stale: "
        "python -m gatewaytui.tui.config > docs/config.schema.json"
    )
    assert published.endswith("}\n") and '\n  "' in published  # indent 2, trailing newline


def test_json_schema_describes_the_file() -> None:
    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(TuiConfig.model_fields)
    assert schema["properties"]["refresh_rate"]["exclusiveMinimum"] == 0
    assert schema["properties"]["refresh_rate"]["maximum"] == 4
    context = schema["$defs"]["ContextConfig"]
    assert context["additionalProperties"] is False
    assert context["required"] == ["name", "url"]
    assert set(context["properties"]) == set(ContextConfig.model_fields)
    for model in (schema, context):
        for name, prop in model["properties"].items():
            assert prop.get("description"), f"{name} has no description"
    json.dumps(schema)  # serialisable

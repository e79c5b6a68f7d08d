"""The TUI's one config file: gateway contexts, default context, refresh rate, keymap, theme.

The file is YAML, validated with pydantic; its JSON Schema is published as
`docs/config.schema.json` (regenerate with `python -m gatewaytui.tui.config`). Everything here
is plain data: the app applies it (``App.set_keymap(config.keymap)``, ``App.theme = ...``).

Tokens are never stored in the config itself, only where to find them (an environment
variable or a file), and they never appear in a repr or in an error message.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gatewaytui.shared.text import did_you_mean
from gatewaytui.shared.yaml_marks import StrictLoader, node_mark, where

__all__ = [
    "DEFAULT_THEME",
    "ConfigError",
    "ContextConfig",
    "TuiConfig",
    "check_keymap",
    "config_json_schema",
    "config_json_schema_text",
    "default_config_path",
    "effective_read_only",
    "effective_theme",
    "load_config",
    "parse_config",
    "pick_context",
    "resolve_token",
    "token_source",
]

DEFAULT_THEME = "gatewaytui-dark"
SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BINDING_ID_RE = re.compile(r"^[^\s,]+$")
_KEY_RE = re.compile(r"^[^\s,]+$")
_COLOR_CHARS_RE = re.compile(r"^[#A-Za-z0-9_(),.%\s-]+$")


class ConfigError(Exception):
    """A user-facing config problem: print it as is, no traceback.

    `problems` holds one line per problem (already prefixed with the file, line and field
    when known); `str(error)` joins them under a one-line summary.
    """

    def __init__(self, message: str, problems: Iterable[str] = (), path: Path | None = None):
        self.problems = list(problems)
        self.path = path
        text = message if not self.problems else "\n".join([message, *self.problems])
        super().__init__(text)


# ---- models -----------------------------------------------------------------------------


def _expand_path(value: Path | str | None, info: ValidationInfo) -> Path | None:
    """`~` is expanded; a relative path is taken relative to the config file's folder."""
    if value is None:
        return None
    path = Path(os.path.expanduser(str(value)))
    base = (info.context or {}).get("base_dir") if info.context else None
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


class NotifyConfig(BaseModel):
    """Terminal notices when something needs the operator (off unless asked for)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bell: bool = Field(default=False, description="Ring the terminal bell (BEL).")
    desktop: Literal["off", "osc9", "osc777"] = Field(
        default="off",
        description=(
            "A desktop notification through the terminal: `osc9` (iTerm2, kitty, WezTerm, "
            "Windows Terminal) or `osc777` (urxvt, foot, GNOME/VTE terminals); `off`."
        ),
    )
    min_interval_s: Annotated[float, Field(ge=1, le=3600)] = Field(
        default=30.0,
        description=(
            "At most one notice per this many seconds; what happens meanwhile is counted "
            "in the next one."
        ),
    )

    @property
    def enabled(self) -> bool:
        return self.bell or self.desktop != "off"


class ContextConfig(BaseModel):
    """One gateway the TUI can connect to (k9s calls these contexts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description=(
            "Unique name, used by `--context NAME` and the command palette. Letters, digits, "
            "`_`, `.` and `-`, starting with a letter or digit; at most 64 characters."
        ),
        examples=["local", "prod-eu"],
        json_schema_extra={"pattern": _NAME_RE.pattern},
    )
    url: str = Field(
        description=(
            "Base URL of the gateway: `http(s)://host:port`, optionally with a path prefix "
            "when it sits behind a reverse proxy. No credentials in the URL."
        ),
        examples=["http://127.0.0.1:8080", "https://gateway.example.com:8443"],
        json_schema_extra={"pattern": "^https?://[^/@?#]+(/[^?#]*)?$"},
    )
    token_env: str | None = Field(
        default=None,
        description=(
            "Name of an environment variable holding the operator (or viewer) token. "
            "Checked before `token_file`."
        ),
        examples=["GATEWAYTUI_PROD_TOKEN"],
        json_schema_extra={
            "anyOf": [{"type": "string", "pattern": _ENV_RE.pattern}, {"type": "null"}]
        },
    )
    token_file: Path | None = Field(
        default=None,
        description=(
            "File whose content (surrounding whitespace stripped) is the token. `~` is "
            "expanded; a relative path is relative to the config file's folder."
        ),
        examples=["~/.config/gatewaytui/prod.token"],
    )
    theme: str | None = Field(
        default=None,
        description=(
            "Theme for this context, overriding the top-level `theme` (so production can "
            "look different). `--theme` still wins."
        ),
        examples=["gatewaytui-high-contrast"],
    )
    read_only: bool = Field(
        default=False,
        description=(
            "Hide and refuse every action that changes the gateway (drain, cancel, edit "
            "backends). `--read-only` or a viewer token also make the session read-only."
        ),
    )
    color: str | None = Field(
        default=None,
        description=(
            "Accent colour of this context in the header, e.g. `red` for production. Any "
            "Textual colour: a name (`red`, `ansi_bright_red`), `#rrggbb`, `rgb(...)`, "
            "`hsl(...)`."
        ),
        examples=["red", "#d7005f", "ansi_red"],
    )
    label: str | None = Field(
        default=None,
        max_length=40,
        description="Short display name for the header and palette (default: `name`).",
        examples=["PRODUCTION"],
    )
    description: str | None = Field(
        default=None,
        max_length=200,
        description="Free text shown next to the context in the command palette.",
    )
    notify: NotifyConfig = Field(
        default_factory=NotifyConfig,
        description=(
            "Bell / desktop notice when a worker goes gone, a model loses its last ready "
            "worker, or the server starts draining. Off by default."
        ),
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                "expected letters, digits, '_', '.' or '-', starting with a letter or digit "
                "(at most 64 characters)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _normalize_url(value)

    @field_validator("token_env")
    @classmethod
    def _check_token_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_RE.match(value):
            raise ValueError(
                "expected the *name* of an environment variable (letters, digits and '_'), "
                "not a token"
            )
        return value

    @field_validator("token_file", mode="after")
    @classmethod
    def _check_token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _expand_path(value, info)

    @field_validator("theme")
    @classmethod
    def _check_theme(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("theme name must not be empty")
        return value.strip() if value is not None else None

    @field_validator("color")
    @classmethod
    def _check_color(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_color_text(value)

    @property
    def display_name(self) -> str:
        """What the header and the palette show."""
        return self.label or self.name

    @property
    def has_token_source(self) -> bool:
        return self.token_env is not None or self.token_file is not None


def _default_contexts() -> list[ContextConfig]:
    return [ContextConfig(name="local", url="http://127.0.0.1:8080")]


class AlertsConfig(BaseModel):
    """When the Overview's alerts fire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failing_share: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.2,
        description="A worker is 'failing' when at least this share of its recent jobs failed.",
    )
    failing_window: Annotated[float, Field(ge=10, le=3600)] = Field(
        default=300.0, description="Recent means within this many seconds."
    )
    failing_min_jobs: Annotated[int, Field(ge=1)] = Field(
        default=5, description="...and at least this many jobs ended in the window."
    )


class TuiConfig(BaseModel):
    """The whole config file."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="gatewaytui TUI configuration",
        json_schema_extra={
            "description": (
                "Config file of the gatewaytui terminal UI "
                "($XDG_CONFIG_HOME/gatewaytui/config.yaml, or `--config PATH`). "
                "See docs/config.md."
            )
        },
    )

    contexts: list[ContextConfig] = Field(
        default_factory=_default_contexts,
        min_length=1,
        description=(
            "The gateways this TUI knows. Names must be unique. Default: one context `local` "
            "at http://127.0.0.1:8080."
        ),
    )
    default_context: str | None = Field(
        default=None,
        description="Context used when `--context` is not given (default: the first one).",
        examples=["local"],
    )
    refresh_rate: Annotated[float, Field(gt=0, le=4)] = Field(
        default=4.0,
        description=(
            "How many times per second (Hz) the TUI applies the coalesced live updates; "
            "0 < rate <= 4 (the gateway itself sends at most a few deltas a second)."
        ),
    )
    keymap: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Binding id -> comma-separated keys, applied with Textual's `App.set_keymap`. "
            "The help screen (`?`) shows each binding's id."
        ),
        examples=[{"app.quit": "ctrl+q,f10", "app.drain": "ctrl+d"}],
    )
    theme: str = Field(
        default=DEFAULT_THEME,
        description=(
            "Theme name: a shipped theme (gatewaytui-dark, gatewaytui-light, gatewaytui-ansi, "
            "gatewaytui-high-contrast), a Textual built-in one, or one from the user themes "
            "folder (`themes/` next to this file)."
        ),
    )
    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig,
        description="Alert thresholds of the Overview (e.g. when a worker counts as failing).",
    )
    snapshot_dir: Path | None = Field(
        default=None,
        description=(
            "Folder where saved state snapshots (`S`) go. `~` is expanded; a relative path is "
            "relative to the config file's folder. Default: the current working directory."
        ),
    )

    @field_validator("keymap")
    @classmethod
    def _check_keymap(cls, value: dict[str, str]) -> dict[str, str]:
        normalized: dict[str, str] = {}
        for binding_id, keys in value.items():
            if not _BINDING_ID_RE.match(binding_id):
                raise ValueError(f"binding id {binding_id!r}: no spaces or commas allowed")
            parts = [part.strip() for part in keys.split(",")]
            if not keys.strip() or any(not part for part in parts):
                raise ValueError(
                    f"{binding_id}: expected comma-separated keys such as 'ctrl+q,f10', "
                    f"got {keys!r}"
                )
            bad = [part for part in parts if not _KEY_RE.match(part)]
            if bad:
                raise ValueError(
                    f"{binding_id}: key {bad[0]!r} contains a space; write keys as "
                    "'ctrl+shift+up', 'space', 'slash'"
                )
            normalized[binding_id] = ",".join(parts)
        return normalized

    @field_validator("theme")
    @classmethod
    def _check_theme(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("theme name must not be empty")
        return value.strip()

    @field_validator("snapshot_dir", mode="after")
    @classmethod
    def _check_snapshot_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _expand_path(value, info)

    @field_validator("contexts")
    @classmethod
    def _check_contexts(cls, value: list[ContextConfig]) -> list[ContextConfig]:
        seen: dict[str, int] = {}
        for index, context in enumerate(value):
            if context.name in seen:
                raise ValueError(
                    f"duplicate context name {context.name!r} (contexts[{seen[context.name]}] "
                    f"and contexts[{index}]); names must be unique"
                )
            seen[context.name] = index
        return value

    @field_validator("default_context")
    @classmethod
    def _check_default_context(cls, value: str | None, info: ValidationInfo) -> str | None:
        contexts = info.data.get("contexts")
        if value is None or contexts is None:  # None: contexts had their own errors
            return value
        names = [context.name for context in contexts]
        if value not in names:
            raise ValueError(
                f"{value!r} is not a context{_did_you_mean(value, names)} "
                f"(known contexts: {', '.join(names)})"
            )
        return value

    def context_names(self) -> list[str]:
        return [context.name for context in self.contexts]

    def get_context(self, name: str) -> ContextConfig | None:
        return next((context for context in self.contexts if context.name == name), None)

    @property
    def snapshot_path(self) -> Path:
        """`snapshot_dir`, or the current working directory."""
        return self.snapshot_dir or Path.cwd()


# ---- validation helpers -----------------------------------------------------------------


def _normalize_url(value: str) -> str:
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError("expected http(s)://host:port with a port in 1..65535") from None
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ValueError(f"expected an http:// or https:// URL (got {shown})")
    if parts.username is not None or parts.password is not None:
        # Never echo the URL: it holds a credential.
        raise ValueError(
            "credentials are not allowed in the URL; use token_env or token_file instead"
        )
    if not parts.hostname:
        raise ValueError("expected http(s)://host:port (the host is missing)")
    if port == 0:
        raise ValueError("expected a port in 1..65535")
    if parts.query or parts.fragment:
        raise ValueError("expected http(s)://host:port[/prefix] without ?query or #fragment")
    return text.rstrip("/")


def _check_color_text(value: str) -> str:
    text = value.strip()
    if not text or not _COLOR_CHARS_RE.match(text):
        raise ValueError(f"not a colour: {value!r}")
    try:
        # Lazy: the config stays importable (and its schema buildable) without Textual.
        from textual.color import Color, ColorParseError
    except ImportError:  # pragma: no cover - textual is a hard dependency of the TUI
        return text
    try:
        Color.parse(text)
    except ColorParseError as exc:
        raise ValueError(str(exc)) from None
    return text


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """The config file's form of the one `shared.text.did_you_mean`."""
    return did_you_mean(word, candidates, "; did you mean {!r}?")


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated to reach a model or container type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose fields live at `loc` (a pydantic error location)."""
    current: Any = TuiConfig
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (list, tuple):
            current = typing.get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    """`contexts[1](prod).url` style, with the context's name when the file has one."""
    text = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                text += f"({node['name']})"
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "(top level)"


def _error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error as a message that never includes the offending input value."""
    kind = error.get("type", "")
    loc = tuple(error.get("loc", ()))
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        key = str(loc[-1]) if loc else ""
        if key in ("token", "password", "api_key", "secret"):
            return (
                "unknown key; tokens are never stored in the config: set token_env (an "
                "environment variable name) or token_file (a file holding the token)"
            )
        known = list(model.model_fields) if model is not None else []
        hint = _did_you_mean(key, known)
        known_text = f" (known keys: {', '.join(known)})" if known and not hint else ""
        return f"unknown key{hint}{known_text}"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


# ---- YAML with line numbers -------------------------------------------------------------


_StrictLoader = StrictLoader
_node_mark = node_mark
_where = where


# ---- public API -------------------------------------------------------------------------


def default_config_path() -> Path:
    """`$XDG_CONFIG_HOME/gatewaytui/config.yaml`, or `~/.config/gatewaytui/config.yaml`."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "gatewaytui" / "config.yaml"


def load_config(path: Path | None = None) -> TuiConfig:
    """Read and validate the config file; never writes to it.

    `path=None` reads `default_config_path()`, and a missing default file means the
    defaults. An explicit path that does not exist is an error. Problems are raised as
    `ConfigError` with `file:line:col` and the field path of each.
    """
    explicit = path is not None
    target = Path(os.path.expanduser(str(path))) if path is not None else default_config_path()
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not explicit:
            return TuiConfig()
        raise ConfigError(f"config file not found: {target}", path=target) from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a folder, not a file: {target}", path=target) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{target}: not UTF-8 text ({exc.reason})", path=target) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {target}: {exc.strerror or exc}", path=target
        ) from None
    return parse_config(text, target)


def parse_config(text: str, path: Path) -> TuiConfig:
    """Validate config `text`; `path` names it in messages and anchors relative paths."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{_where(path, mark)}: invalid YAML: {problem}", path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}", path=path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1:1: expected a mapping (key: value lines) at the top level, "
            f"got {type(data).__name__}",
            path=path,
        )
    try:
        return TuiConfig.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:  # pragma: no cover - it parsed a moment ago
            root = None
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            loc = tuple(error["loc"])
            mark = _node_mark(root, loc, at_key=error["type"] == "extra_forbidden")
            where = _where(path, mark)
            problems.append(f"{where}: {_format_loc(loc, data)}: {_error_message(error)}")
        count = len(problems)
        raise ConfigError(
            f"{path}: {count} problem{'s' if count != 1 else ''} in the config file:",
            problems,
            path=path,
        ) from None


def resolve_token(context: ContextConfig) -> str | None:
    """The context's token: its environment variable first, then its file.

    Returns None when neither is configured, or the variable is unset/empty and there is no
    file. An unreadable or empty file is a `ConfigError` that names the file (never the
    token).
    """
    if context.token_env:
        value = os.environ.get(context.token_env, "").strip()
        if value:
            return value
    if context.token_file is None:
        return None
    path = context.token_file
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"context {context.name!r}: token file not found: {path}", path=path
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"context {context.name!r}: token file is not UTF-8 text: {path}", path=path
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"context {context.name!r}: cannot read token file {path}: "
            f"{exc.strerror or type(exc).__name__}",
            path=path,
        ) from None
    if not value:
        raise ConfigError(f"context {context.name!r}: token file is empty: {path}", path=path)
    return value


def token_source(context: ContextConfig) -> tuple[str, str, bool] | None:
    """Where the context's token comes from, as `resolve_token` reads it: `("token_env", NAME,
    set)` or `("token_file", PATH, True)`; None when the context names no source at all.

    `set` is False for a `token_env` variable that is unset or empty (and no file to fall
    back on), so a message can say "export it" rather than "check it".
    """
    if context.token_env and os.environ.get(context.token_env, "").strip():
        return ("token_env", context.token_env, True)
    if context.token_file is not None:
        return ("token_file", str(context.token_file), True)
    if context.token_env:
        return ("token_env", context.token_env, False)
    return None


def pick_context(config: TuiConfig, name: str | None = None) -> ContextConfig:
    """The context called `name`, else `default_context`, else the first one."""
    wanted = name if name is not None else config.default_context
    if wanted is None:
        return config.contexts[0]
    found = config.get_context(wanted)
    if found is None:
        names = config.context_names()
        raise ConfigError(
            f"unknown context {wanted!r}{_did_you_mean(wanted, names)} "
            f"(known contexts: {', '.join(names)})"
        )
    return found


def effective_theme(
    config: TuiConfig, context: ContextConfig | None = None, cli_theme: str | None = None
) -> str:
    """Which theme to start with: `--theme`, then the context's, then the config's."""
    if cli_theme:
        return cli_theme
    if context is not None and context.theme:
        return context.theme
    return config.theme


def effective_read_only(
    context: ContextConfig, *, cli_read_only: bool = False, role: str | None = None
) -> bool:
    """Read-only if `--read-only`, the context says so, or the token's role is `viewer`."""
    return cli_read_only or context.read_only or role == "viewer"


def check_keymap(keymap: Mapping[str, str], known_ids: Iterable[str]) -> list[str]:
    """Warnings for keymap entries that match no binding id (Textual ignores them silently)."""
    known = sorted(set(known_ids))
    return [
        f"keymap: no binding has the id {binding_id!r}{_did_you_mean(binding_id, known)}"
        for binding_id in keymap
        if binding_id not in known
    ]


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (published as docs/config.schema.json)."""
    schema = TuiConfig.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DRAFT, **schema}


def config_json_schema_text() -> str:
    """`config_json_schema()` as the exact text of docs/config.schema.json."""
    return json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m gatewaytui.tui.config > docs/config.schema.json
    sys.stdout.write(config_json_schema_text())

"""Themes are YAML files turned into `textual.theme.Theme` objects.

Shipped themes live in the repository's `themes/` folder, installed as the package data
`gatewaytui/themes/*.yaml`; users add or override themes with YAML files in
`~/.config/gatewaytui/themes/` (see `user_themes_dir`). A theme file has the fields of
`textual.theme.Theme`; its `variables` become CSS variables (`status-idle` -> `$status-idle`).

Worker and server statuses have theme variables of their own (`STATUS_VARIABLES`). Themes
that do not set them (Textual's built-ins, a user's partial theme) get values derived from
their own palette: call `status_variable_defaults(app.current_theme)` from
`App.get_theme_variable_defaults` so `$status-*` always resolves.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from textual.color import Color, ColorParseError
from textual.theme import Theme

from gatewaytui.tui.config import (
    _did_you_mean,
    _format_loc,
    _node_mark,
    _StrictLoader,
    _where,
    default_config_path,
)
from gatewaytui.tui.formatting import STATUS_STYLES

__all__ = [
    "DEFAULT_THEME",
    "SHIPPED_THEMES",
    "STATUSES",
    "STATUS_VARIABLES",
    "LoadedThemes",
    "ThemeError",
    "load_theme_file",
    "load_themes",
    "parse_theme",
    "shipped_themes_dir",
    "status_variable",
    "status_variable_defaults",
    "user_themes_dir",
]

DEFAULT_THEME = "gatewaytui-dark"
SHIPPED_THEMES = (
    "gatewaytui-dark",
    "gatewaytui-light",
    "gatewaytui-ansi",
    "gatewaytui-high-contrast",
)

STATUSES = (
    # workers (schema WorkerStatus)
    "connected",
    "idle",
    "working",
    "draining",
    "not_ready",
    "unresponsive",
    "gone",
    # server readiness and backend health
    "ready",
    "healthy",
    "unhealthy",
    "unknown",
)

THEME_SUFFIXES = (".yaml", ".yml")
MAX_THEME_FILE_BYTES = 256 * 1024

_THEME_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_-][A-Za-z0-9_-]*$")
_COLOR_FIELDS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "warning",
    "error",
    "success",
)


def status_variable(status: str) -> str:
    """The theme variable of a status: `not_ready` -> `status-not-ready` (`$status-not-ready`)."""
    return "status-" + status.replace("_", "-")


STATUS_VARIABLES = tuple(status_variable(status) for status in STATUSES)


class ThemeError(ValueError):
    """A theme file that cannot be used; the message starts with `file:line:col:`."""


class LoadedThemes(dict[str, Theme]):
    """Theme name -> Theme, plus what went wrong on the way.

    `problems` holds one line per file that was skipped or overridden (show them as
    warnings); `origins` says where each theme came from (a file path).
    """

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.origins: dict[str, str] = {}


class _ThemeFile(BaseModel):
    """The schema of a theme file: `textual.theme.Theme`'s fields."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    primary: str
    secondary: str | None = None
    accent: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    boost: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    dark: bool = True
    ansi: bool = False
    luminosity_spread: float = Field(default=0.15, ge=0, le=1)
    text_alpha: float = Field(default=0.95, gt=0, le=1)
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _THEME_NAME_RE.match(value):
            raise ValueError("a theme name is letters, digits, '_' and '-' (at most 64 characters)")
        return value

    @field_validator(*_COLOR_FIELDS)
    @classmethod
    def _check_color(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_color(value, allow_alpha=False)
        return value

    @field_validator("variables")
    @classmethod
    def _check_variables(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _VARIABLE_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a CSS variable name (letters, digits, _, -)")
            if not text.strip():
                raise ValueError(f"{name}: empty value")
            if name.startswith("status-"):
                try:
                    _parse_color(text)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return value


def _parse_color(text: str, *, allow_alpha: bool = True) -> Color:
    """A colour, optionally (in variables) with an alpha percentage: `#4f9dde 35%`."""
    words = text.split()
    if allow_alpha and len(words) == 2 and words[1].endswith("%"):
        words = words[:1]
    try:
        if len(words) != 1:
            raise ColorParseError(f"failed to parse {text!r} as a color", None)
        return Color.parse(words[0])
    except ColorParseError as exc:
        raise ValueError(str(exc)) from None


def status_variable_defaults(theme: Theme) -> dict[str, str]:
    """`status-*` values derived from a theme's own colours (for themes that lack them)."""
    if theme.ansi:
        good, busy, warn, bad = (
            "ansi_green",
            "ansi_bright_magenta",
            "ansi_yellow",
            "ansi_bright_red",
        )
        link, muted, stuck = "ansi_cyan", "ansi_bright_black", "ansi_bright_yellow"
    else:
        good = theme.success or "#4ebf71"
        busy = theme.primary
        warn = theme.warning or "#ffa62b"
        bad = theme.error or "#ba3c5b"
        link = theme.secondary or theme.primary
        muted = "#8b949e" if theme.dark else "#59636e"
        stuck = "#d08cf0" if theme.dark else "#8a3ab9"
    values = {
        "connected": link,
        "idle": good,
        "working": busy,
        "draining": warn,
        "not_ready": bad,
        "unresponsive": stuck,
        "gone": muted,
        "ready": good,
        "healthy": good,
        "unhealthy": bad,
        "unknown": muted,
    }
    return {status_variable(status): values[status] for status in STATUSES}


def parse_theme(text: str, source: str = "<theme>", default_name: str | None = None) -> Theme:
    """Build a Theme from YAML text. `source` names it in errors; a missing `name` is
    `default_name` (the file's stem). Missing `status-*` variables are filled in."""
    origin = Path(source)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ThemeError(
            f"{_where(origin, mark)}: invalid YAML: {exc.problem or exc.context}"
        ) from None
    except yaml.YAMLError as exc:
        raise ThemeError(f"{source}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ThemeError(f"{source}:1:1: expected a mapping of theme fields")
    try:
        spec = _ThemeFile.model_validate(data)
    except ValidationError as exc:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            loc = tuple(error["loc"])
            mark = _node_mark(root, loc, at_key=error["type"] == "extra_forbidden")
            lines.append(
                f"{_where(origin, mark)}: {_format_loc(loc, data)}: {_theme_error_message(error)}"
            )
        raise ThemeError("\n".join(lines)) from None
    name = spec.name or default_name
    if name is None or not _THEME_NAME_RE.match(name):
        raise ThemeError(f"{source}: the theme needs a `name` (letters, digits, '_', '-')")
    fields = spec.model_dump(exclude={"name", "variables"})
    theme = Theme(name=name, variables={}, **fields)
    theme.variables = {**status_variable_defaults(theme), **spec.variables}
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # any colour Textual itself rejects
        raise ThemeError(f"{source}: Textual cannot use this theme: {exc}") from None
    return theme


def _theme_error_message(error: ErrorDetails) -> str:
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "extra_forbidden" and len(loc) == 1:
        return f"unknown key{_did_you_mean(str(loc[0]), _ThemeFile.model_fields)}"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def load_theme_file(path: Path | Traversable) -> Theme:
    """One theme file; `ThemeError` if it cannot be used."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ThemeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_THEME_FILE_BYTES:
        raise ThemeError(f"{path}: too large for a theme file ({len(raw)} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ThemeError(f"{path}: not UTF-8 text") from None
    stem = path.name.rsplit(".", 1)[0]
    return parse_theme(text, str(path), default_name=stem)


def shipped_themes_dir() -> Traversable | None:
    """Where the shipped theme files are.

    An installed wheel has them as package data (`gatewaytui/themes/`); an editable
    install or a source checkout has them in the repository's `themes/` folder.
    """
    packaged = resources.files("gatewaytui") / "themes"
    if packaged.is_dir():
        return packaged
    here = Path(__file__).resolve()  # <repo>/src/gatewaytui/tui/themes.py
    if here.parents[2].name == "src":
        checkout = here.parents[3] / "themes"
        if checkout.is_dir():
            return checkout
    return None


def user_themes_dir(config_path: Path | None = None) -> Path:
    """The user's theme folder: `themes/` next to the config file."""
    return (config_path or default_config_path()).expanduser().parent / "themes"


def _theme_files(folder: Path | Traversable) -> list[Path | Traversable]:
    entries = [
        entry
        for entry in folder.iterdir()
        if entry.name.endswith(THEME_SUFFIXES) and not entry.name.startswith(".")
    ]
    return sorted((entry for entry in entries if entry.is_file()), key=lambda e: e.name)


def _load_folder(
    folder: Path | Traversable, themes: LoadedThemes, *, user: bool, overridable: Iterable[str]
) -> None:
    loaded_here: dict[str, str] = {}
    for entry in _theme_files(folder):
        try:
            theme = load_theme_file(entry)
        except ThemeError as exc:
            themes.problems.append(f"theme skipped: {exc}")
            continue
        origin = str(entry)
        if theme.name in loaded_here:
            themes.problems.append(
                f"{origin}: theme {theme.name!r} is also defined in {loaded_here[theme.name]}; "
                f"using {origin}"
            )
        elif user and theme.name in themes and theme.name not in overridable:
            themes.problems.append(
                f"{origin}: theme {theme.name!r} overrides {themes.origins[theme.name]}"
            )
        loaded_here[theme.name] = origin
        themes[theme.name] = theme
        themes.origins[theme.name] = origin


def load_themes(extra_dirs: Sequence[Path] = ()) -> LoadedThemes:
    """The shipped themes plus those in `extra_dirs` (later folders win by name).

    A user theme may replace a shipped one of the same name (silently: that is what the
    folder is for). A broken file is skipped and reported in `.problems`, never raised. A
    folder that does not exist is skipped silently (the user has no themes yet).
    """
    themes = LoadedThemes()
    shipped = shipped_themes_dir()
    if shipped is None:
        themes.problems.append("the shipped theme files were not found (broken install?)")
    else:
        _load_folder(shipped, themes, user=False, overridable=())
        missing = [name for name in SHIPPED_THEMES if name not in themes]
        if missing:
            themes.problems.append(f"shipped themes missing: {', '.join(missing)}")
    shipped_names = set(themes)
    for folder in extra_dirs:
        folder = Path(folder).expanduser()
        if not folder.exists():
            continue
        if not folder.is_dir():
            themes.problems.append(f"{folder}: not a folder; no user themes loaded from it")
            continue
        try:
            _load_folder(folder, themes, user=True, overridable=shipped_names)
        except OSError as exc:
            themes.problems.append(f"{folder}: cannot list: {exc.strerror or exc}")
    return themes


def status_styles(variables: Mapping[str, str]) -> dict[str, str]:
    """Status word -> Rich style, from a theme's `$status-*` variables (fallbacks where a
    variable is missing or unreadable)."""
    styles = dict(STATUS_STYLES)
    for status in STATUS_STYLES:
        value = variables.get(status_variable(status))
        if value:
            with contextlib.suppress(Exception):
                styles[status] = f"bold {Color.parse(value).rich_color.name}"
    return styles

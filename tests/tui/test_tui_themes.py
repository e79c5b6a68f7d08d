"""Theme files: the shipped four, user themes, broken files, and use in a real Textual app."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.filter import ANSIToTruecolor
from textual.theme import BUILTIN_THEMES, Theme
from textual.widgets import Static

from gatewaytui.tui.themes import (
    SHIPPED_THEMES,
    STATUS_VARIABLES,
    LoadedThemes,
    ThemeError,
    load_themes,
    parse_theme,
    shipped_themes_dir,
    status_variable,
    status_variable_defaults,
    user_themes_dir,
)
from support.paths import REPO


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two opaque colours."""

    def luminance(text: str) -> float:
        color = Color.parse(text)

        def channel(value: int) -> float:
            v = value / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(color.r) + 0.7152 * channel(color.g) + 0.0722 * channel(color.b)

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def shipped() -> LoadedThemes:
    return load_themes()


# ---- the shipped themes ------------------------------------------------------------------


def test_the_four_shipped_themes_load(shipped: LoadedThemes) -> None:
    assert shipped.problems == []
    assert set(SHIPPED_THEMES) <= set(shipped)
    for name in SHIPPED_THEMES:
        theme = shipped[name]
        assert isinstance(theme, Theme)
        assert theme.name == name
        assert set(STATUS_VARIABLES) <= set(theme.variables), name
        theme.to_color_system().generate()  # Textual accepts every colour


def test_shipped_theme_files_are_the_repository_folder() -> None:
    folder = shipped_themes_dir()
    assert folder is not None
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    assert names == sorted(f"{name}.yaml" for name in SHIPPED_THEMES)
    repo_files = sorted(path.name for path in (REPO / "themes").glob("*.yaml"))
    assert repo_files == names


def test_status_variables_follow_the_worker_statuses() -> None:
    from gatewaytui.schema.state import WorkerStatus

    for status in WorkerStatus:
        assert status_variable(status.value) in STATUS_VARIABLES
    assert status_variable("not_ready") == "status-not-ready"


def test_ansi_theme_uses_only_the_terminal_palette(shipped: LoadedThemes) -> None:
    theme = shipped["gatewaytui-ansi"]
    assert theme.ansi is True
    for field in ("primary", "secondary", "accent", "warning", "error", "success"):
        value = getattr(theme, field)
        assert value.startswith("ansi_") and Color.parse(value).ansi is not None, field
    for field in ("foreground", "background", "surface", "panel"):
        assert getattr(theme, field) == "ansi_default"
    for name in STATUS_VARIABLES:
        assert theme.variables[name].startswith("ansi_"), name
    # Every generated colour is an ANSI one (or transparent): no RGB sneaks in.
    for name, value in theme.to_color_system().generate().items():
        first = value.split()[0]
        if first.startswith("#"):
            pytest.fail(f"{name} = {value} is RGB in the ANSI theme")


@pytest.mark.parametrize(
    ("name", "minimum"),
    [
        ("gatewaytui-dark", 4.5),
        ("gatewaytui-light", 4.5),
        ("gatewaytui-high-contrast", 7.0),  # WCAG AAA
    ],
)
def test_text_and_status_contrast(shipped: LoadedThemes, name: str, minimum: float) -> None:
    theme = shipped[name]
    colours = {
        "foreground": theme.foreground,
        "warning": theme.warning,
        "error": theme.error,
        "success": theme.success,
        **{var: theme.variables[var] for var in STATUS_VARIABLES},
    }
    for ground in ("background", "surface", "panel"):
        back = getattr(theme, ground)
        for label, colour in colours.items():
            assert colour is not None
            ratio = contrast(colour, back)
            assert ratio >= minimum, f"{name}: {label} {colour} on {ground} {back}: {ratio:.2f}"


def test_high_contrast_is_black_and_white(shipped: LoadedThemes) -> None:
    theme = shipped["gatewaytui-high-contrast"]
    assert theme.background == theme.surface == theme.panel == "#000000"
    assert theme.foreground == "#ffffff"
    assert theme.text_alpha == 1.0
    for var in ("text-muted", "text-disabled"):  # "auto N%" = white at N% on black
        alpha = int(theme.variables[var].split()[1].rstrip("%")) / 100
        grey = round(255 * alpha)
        assert contrast(f"rgb({grey},{grey},{grey})", "#000000") >= 7.0, var


# ---- user themes ---------------------------------------------------------------------------

MINIMAL = "name: {name}\nprimary: '#123456'\n"


def test_user_themes_add_and_override(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(MINIMAL.format(name="mine"))
    (tmp_path / "dark.yml").write_text(
        "name: gatewaytui-dark\nprimary: '#ff00ff'\nvariables:\n  status-idle: '#00ff00'\n"
    )
    (tmp_path / "notes.txt").write_text("not a theme")
    themes = load_themes([tmp_path])
    assert themes.problems == []
    assert themes["mine"].primary == "#123456"
    assert themes["gatewaytui-dark"].primary == "#ff00ff"
    assert themes["gatewaytui-dark"].variables["status-idle"] == "#00ff00"
    assert themes.origins["gatewaytui-dark"] == str(tmp_path / "dark.yml")
    assert set(SHIPPED_THEMES) <= set(themes)


def test_a_partial_user_theme_gets_status_variables(tmp_path: Path) -> None:
    (tmp_path / "bare.yaml").write_text(
        "primary: '#0000ff'\nsuccess: '#00aa00'\nerror: '#aa0000'\ndark: false\n"
    )
    theme = load_themes([tmp_path])["bare"]  # the name defaults to the file's stem
    assert theme.dark is False
    assert theme.variables["status-idle"] == "#00aa00"
    assert theme.variables["status-not-ready"] == "#aa0000"
    assert theme.variables["status-working"] == "#0000ff"
    assert set(STATUS_VARIABLES) <= set(theme.variables)


def test_later_folders_win(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "x.yaml").write_text("name: x\nprimary: '#111111'\n")
    (second / "x.yaml").write_text("name: x\nprimary: '#222222'\n")
    themes = load_themes([first, second])
    assert themes["x"].primary == "#222222"
    assert themes.problems == [f"{second / 'x.yaml'}: theme 'x' overrides {first / 'x.yaml'}"]


def test_same_name_twice_in_one_folder(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: x\nprimary: '#111111'\n")
    (tmp_path / "b.yaml").write_text("name: x\nprimary: '#222222'\n")
    themes = load_themes([tmp_path])
    assert themes["x"].primary == "#222222"
    assert len(themes.problems) == 1 and "also defined in" in themes.problems[0]


def test_missing_user_folder_is_fine(tmp_path: Path) -> None:
    themes = load_themes([tmp_path / "does-not-exist"])
    assert themes.problems == []
    assert set(themes) == set(SHIPPED_THEMES)


def test_user_folder_that_is_a_file(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "themes"
    not_a_folder.write_text("")
    themes = load_themes([not_a_folder])
    assert themes.problems == [f"{not_a_folder}: not a folder; no user themes loaded from it"]


def test_user_themes_dir_is_next_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert user_themes_dir() == tmp_path / "gatewaytui" / "themes"
    assert user_themes_dir(tmp_path / "elsewhere" / "tui.yaml") == tmp_path / "elsewhere" / "themes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: b\nprimary: [unclosed\n", "b.yaml:3:1: invalid YAML"),
        ("name: b\nprimary: '#123456'\nprimray: '#000000'\n", "did you mean 'primary'?"),
        ("name: b\nprimary: '#12345g'\n", "b.yaml:2:10: primary: failed to parse"),
        ("name: b\nprimary: bleu\n", "did you mean 'blue'?"),
        ("name: b\nsecondary: '#123456'\n", "primary: Field required"),
        ("name: 'my theme'\nprimary: red\n", "name: a theme name is"),
        ("name: b\nprimary: red\nvariables:\n  status-idle: not-a-colour\n", "status-idle"),
        ("name: b\nprimary: red\nvariables:\n  'bad name': red\n", "not a CSS variable name"),
        ("name: b\nprimary: red\ntext_alpha: 2\n", "text_alpha"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: b\nname: c\nprimary: red\n", "duplicate key 'name'"),
    ],
)
def test_broken_theme_is_reported_not_raised(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "a-good.yaml").write_text(MINIMAL.format(name="good"))
    (tmp_path / "b.yaml").write_text(text)
    themes = load_themes([tmp_path])  # no exception
    assert "good" in themes  # the good file next to it still loads
    assert "b" not in themes and "c" not in themes
    assert len(themes.problems) == 1, themes.problems
    problem = themes.problems[0]
    assert problem.startswith(f"theme skipped: {tmp_path / 'b.yaml'}")
    assert expected in problem, problem


def test_binary_theme_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    themes = load_themes([tmp_path])
    assert len(themes.problems) == 1 and "not UTF-8" in themes.problems[0]


def test_parse_theme_raises_theme_error() -> None:
    with pytest.raises(ThemeError, match="primary: Field required"):
        parse_theme("name: x\n", "x.yaml")
    with pytest.raises(ThemeError, match="needs a `name`"):
        parse_theme("primary: red\n", "<text>")


def test_status_defaults_for_textual_builtin_themes() -> None:
    dark = status_variable_defaults(BUILTIN_THEMES["textual-dark"])
    assert set(dark) == set(STATUS_VARIABLES)
    assert dark["status-idle"] == BUILTIN_THEMES["textual-dark"].success
    ansi = status_variable_defaults(BUILTIN_THEMES["ansi-dark"])
    assert all(value.startswith("ansi_") for value in ansi.values())
    for theme in BUILTIN_THEMES.values():
        for value in status_variable_defaults(theme).values():
            Color.parse(value)


# ---- in a real Textual app -----------------------------------------------------------------


class ThemedApp(App[None]):
    CSS = """
    #idle { color: $status-idle; }
    #gone { color: $status-gone; background: $status-not-ready 20%; }
    """

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return status_variable_defaults(self.current_theme)

    def compose(self) -> ComposeResult:
        yield Static("idle", id="idle")
        yield Static("gone", id="gone")


async def test_register_and_switch_every_theme(shipped: LoadedThemes) -> None:
    app = ThemedApp()
    async with app.run_test() as pilot:
        for theme in shipped.values():
            app.register_theme(theme)
        for name in [*SHIPPED_THEMES, "textual-light", "nord"]:
            app.theme = name
            await pilot.pause()
            assert app.current_theme.name == name
            expected = app.get_css_variables()["status-idle"]
            assert app.query_one("#idle").styles.color == Color.parse(expected)
            truecolor = next(f for f in app._filters if isinstance(f, ANSIToTruecolor))
            if name == "gatewaytui-ansi":
                # The terminal's own palette: ANSI colours go out as ANSI codes.
                assert app.native_ansi_color is True
                assert truecolor.enabled is False
                assert app.query_one("#idle").styles.color.ansi is not None
            else:
                assert app.native_ansi_color is False
                assert truecolor.enabled is True


# ---- packaging: the explicit package list in pyproject.toml --------------------------------


def test_pyproject_lists_every_package() -> None:
    """pyproject.toml lists packages explicitly (to map themes/ into gatewaytui.themes);
    a new folder under src/gatewaytui must be added there or the wheel will lack it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    root = REPO / "src"
    on_disk = {
        ".".join(folder.relative_to(root).parts)
        for folder in (root / "gatewaytui").rglob("*")
        if folder.is_dir()
        and folder.name != "__pycache__"
        and not folder.name.endswith(".egg-info")
        and any(child.is_file() and child.suffix != ".pyc" for child in folder.iterdir())
    } | {"gatewaytui"}
    expected = on_disk | {"gatewaytui.themes"}
    assert expected == listed, (
        "pyproject.toml [tool.setuptools] packages must list every package folder: "
        f"missing {sorted(expected - listed)}, stale {sorted(listed - expected)}"
    )
    assert setuptools["package-dir"]["gatewaytui.themes"] == "themes"
    assert "*.yaml" in setuptools["package-data"]["gatewaytui.themes"]

"""Plugins: every option of the gateway — type, default, what is in effect and why — with an
export of the effective configuration (YAML, env lines, flags) that never includes secrets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.screens.export import ExportScreen
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView
from gatewaytui.tui.widgets.virtual_table import Column, VirtualTable

ALL = "*"


def effective(arg: Mapping[str, Any]) -> Text:
    """The value in effect; secrets only as set/unset; a change from the default stands out
    (bold and marked with `*`, so it does not rely on colour)."""
    if arg.get("secret"):
        return Text("set" if arg.get("is_set") else "unset", "italic")
    value = arg.get("value") or ""
    if arg.get("source", "default") != "default" and value != arg.get("default", ""):
        return Text(f"{value} *", "bold yellow")
    return Text(str(value))


def _deprecation(arg: Mapping[str, Any]) -> Text:
    if not arg.get("deprecated"):
        return Text("")
    return Text(f"→ {arg.get('replacement') or 'none'}", "yellow")


def describe_arg(plugin_id: str, arg: Mapping[str, Any]) -> Text:
    """The detail pane: description, example, where it can be set, deprecation, secrecy."""
    text = Text.assemble(
        (f"{plugin_id}.{arg['id']}", "bold"),
        f"  ({arg.get('type', '')})  ",
        Text(str(arg.get("description", ""))),
    )
    text.append("\n")
    if arg.get("choices"):
        text.append("one of ", "dim")
        text.append(", ".join(map(str, arg["choices"])))
        text.append("   ")
    if arg.get("example"):
        text.append("example ", "dim")
        text.append(str(arg["example"]))
        text.append("   ")
    text.append("default ", "dim")
    text.append("(secret)" if arg.get("secret") else str(arg.get("default") or '""'))
    text.append("   source ", "dim")
    text.append(str(arg.get("source", "default")))
    text.append("\n")
    text.append("flag ", "dim")
    text.append(str(arg.get("flag", "")))
    text.append("   env ", "dim")
    text.append(str(arg.get("env", "")))
    text.append("   yaml ", "dim")
    text.append(str(arg.get("yaml", "")))
    if arg.get("deprecated"):
        text.append("\n")
        text.append(f"deprecated: {arg.get('replacement') or 'no replacement'}", "bold yellow")
    if arg.get("secret"):
        text.append("\n")
        text.append(
            "secret: never shown or exported; the gateway says only whether it is set", "italic"
        )
    return text


@register_view("7")
class PluginsView(TableView):
    view_id = "plugins"
    title = "Plugins"
    collection = "plugins"
    default_sort = (None, False)  # type: ignore[assignment]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "e",
            "export",
            "Export",
            id="plugins.export",
            tooltip="plugins: export the effective configuration (YAML, env, flags)",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected_plugin = ALL
        self._plugins: dict[str, dict[str, Any]] = {}
        self._list_shown: tuple[str, ...] = ()

    def columns(self) -> Sequence[Column]:
        return [
            Column("plugin", "PLUGIN", lambda a: a["plugin"], width=9),
            Column("arg", "OPTION", lambda a: a["arg"]["id"], width=24, min_width=14),
            Column("type", "TYPE", lambda a: a["arg"].get("type", ""), width=8, priority=2),
            Column(
                "default",
                "DEFAULT",
                lambda a: (
                    "(secret)" if a["arg"].get("secret") else str(a["arg"].get("default") or "")
                ),
                width=12,
                priority=1,
            ),
            Column("value", "VALUE", lambda a: effective(a["arg"]), width=14),
            Column("source", "SOURCE", lambda a: a["arg"].get("source", ""), width=7),
            Column("flag", "FLAG", lambda a: a["arg"].get("flag", ""), width=30, priority=4),
            Column("env", "ENV", lambda a: a["arg"].get("env", ""), width=28, priority=3),
            Column("yaml", "YAML", lambda a: a["arg"].get("yaml", ""), width=36, priority=5),
            Column(
                "deprecated",
                "DEPRECATED",
                lambda a: _deprecation(a["arg"]),
                width=20,
                flex=True,
                priority=2,
            ),
        ]

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(id="plugin-list")
            with Vertical(id="plugin-main"):
                yield from super().compose()
                yield Static(id="arg-detail")

    def _rows(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for plugin_id, plugin in self._plugins.items():
            if self.selected_plugin not in (ALL, plugin_id):
                continue
            for arg in plugin.get("args", ()):
                rows[f"{plugin_id}.{arg['id']}"] = {
                    "id": f"{plugin_id}.{arg['id']}",
                    "plugin": plugin_id,
                    "arg": arg,
                }
        return rows

    def show_state(self, store: StateStore, change: Change | None) -> None:
        if change is not None and not change.snapshot and not change.touched("plugins"):
            return
        self._plugins = dict(store.items["plugins"])
        self._show_list()
        self.table.set_rows(self._rows())
        self._show_detail()

    def _show_list(self) -> None:
        names = (ALL, *self._plugins)
        if names == self._list_shown:
            return
        self._list_shown = names
        option_list = self.query_one("#plugin-list", OptionList)
        option_list.clear_options()
        option_list.add_option(Option(Text("all plugins", "bold"), id=ALL))
        for plugin_id, plugin in self._plugins.items():
            label = Text.assemble((plugin_id, "bold"), "  ", Text(str(plugin.get("name", ""))))
            option_list.add_option(Option(label, id=plugin_id))
        option_list.highlighted = 0

    @on(OptionList.OptionHighlighted, "#plugin-list")
    def _plugin_chosen(self, event: OptionList.OptionHighlighted) -> None:
        self.selected_plugin = event.option.id or ALL
        self.table.set_rows(self._rows())
        self._show_detail()

    @on(VirtualTable.CursorMoved)
    def _cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.table.get_row(self.table.cursor_id) if self.table.cursor_id else None
        detail = self.query_one("#arg-detail", Static)
        if row is None:
            summary = self._plugins.get(self.selected_plugin, {}).get("summary", "")
            detail.update(Text(str(summary or "no options"), "dim"))
            return
        detail.update(describe_arg(row["plugin"], row["arg"]))

    def action_export(self) -> None:
        plugins = [
            plugin
            for plugin_id, plugin in self._plugins.items()
            if self.selected_plugin in (ALL, plugin_id)
        ]
        self.app.push_screen(ExportScreen(plugins))

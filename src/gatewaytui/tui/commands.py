"""The command palette: server drain/undrain, views, contexts, themes, snapshot, pause."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Literal, Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from gatewaytui.client.session import Session
from gatewaytui.tui.config import TuiConfig
from gatewaytui.tui.screens.label_select import open_label_select
from gatewaytui.tui.views.base import VIEWS


class ServerActions(Protocol):
    def request_server_action(self, kind: Literal["drain", "undrain"]) -> None: ...


class CommandHost(Protocol):
    """The app as the palette uses it."""

    config: TuiConfig

    @property
    def can_act(self) -> bool: ...
    @property
    def session(self) -> Session: ...
    @property
    def actions(self) -> ServerActions: ...
    @property
    def gateway_themes(self) -> Iterable[str]: ...
    def action_save_snapshot(self) -> None: ...
    def action_pause(self) -> None: ...
    def action_show_view(self, view_id: str) -> None: ...
    def switch_context(self, name: str) -> object: ...
    def set_theme(self, name: str) -> bool: ...


class GatewayCommands(Provider):
    """Command palette: server drain/undrain, contexts, themes, snapshot, pause."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app = cast(CommandHost, self.app)
        commands: list[tuple[str, Callable[[], Any], str]] = []
        if app.can_act:
            commands += [
                (
                    "Server: drain",
                    partial(app.actions.request_server_action, "drain"),
                    "stop taking requests, finish jobs",
                ),
                (
                    "Server: undrain",
                    partial(app.actions.request_server_action, "undrain"),
                    "cancel an unfinished drain",
                ),
            ]
        if app.can_act:
            commands += [
                (
                    "Workers: drain by label…",
                    partial(open_label_select, self.app, "drain"),
                    "gpu=H100, zone in (a,b): shows the matches before the confirmation",
                ),
                (
                    "Workers: re-add by label…",
                    partial(open_label_select, self.app, "undrain"),
                    "re-add the draining workers a label selector matches",
                ),
            ]
        show = app.action_show_view
        commands += [(f"View: {v.title}", partial(show, v.view_id), f"key {v.key}") for v in VIEWS]
        commands.append(("Save snapshot", app.action_save_snapshot, "write the state to a file"))
        commands.append(("Pause / resume live updates", app.action_pause, "freeze the screen"))
        for context in app.config.contexts:
            if context.name != app.session.name:
                commands.append(
                    (
                        f"Context: {context.name}",
                        partial(app.switch_context, context.name),
                        context.url,
                    )
                )
        for theme in sorted(app.gateway_themes):
            commands.append((f"Theme: {theme}", partial(app.set_theme, theme), "colours"))
        return commands

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)

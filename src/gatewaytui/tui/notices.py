"""Terminal notices for the moments that need a person: a bell and/or a desktop notification.

Off unless a context asks (`notify:` in the config, `config.NotifyConfig`). Three things
ring: a worker goes `gone`, a model loses its last ready worker (and has no ready backend),
the server starts draining. The first state seen is the baseline (opening the panel on a
broken gateway rings nothing); at most one notice per `min_interval_s`, and what happened
meanwhile is counted in the next one.

The escapes go out through Textual's driver, as Textual itself writes the bell and OSC 52:
`driver.write(...)` between frames, whole sequences only. OSC 9 is `ESC ] 9 ; text BEL`;
OSC 777 is `ESC ] 777 ; notify ; title ; body BEL`. Names from the gateway are stripped of
control characters first, so a worker id can never end the sequence and inject another.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.client.store import StateStore
from gatewaytui.tui.config import NotifyConfig

__all__ = ["Baseline", "TerminalNotices", "changes_worth_a_notice", "escape_sequences"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_TEXT = 200


def clean(text: str) -> str:
    """Printable text for inside an OSC sequence (no ESC, BEL, ST, newlines)."""
    return _CONTROL.sub(" ", text)[:MAX_TEXT]


@dataclass
class Baseline:
    """What was true at the last look: which workers were gone, which models had something
    ready (a model whose last worker left may vanish from the list), whether the server was
    draining."""

    gone: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    served: set[str] = field(default_factory=set)
    draining: bool = False

    @classmethod
    def of(cls, store: StateStore) -> Baseline:
        workers: Mapping[str, Mapping[str, Any]] = store.workers
        models: Mapping[str, Mapping[str, Any]] = store.models
        return cls(
            gone={w for w, row in workers.items() if row.get("status") == "gone"},
            present=set(workers),
            served={
                m
                for m, row in models.items()
                if row.get("ready_workers") or row.get("ready_backends")
            },
            draining=bool(store.server.get("draining")) or store.server.get("status") == "draining",
        )


def changes_worth_a_notice(before: Baseline, now: Baseline) -> list[str]:
    """What got worse between two looks, one short line each."""
    lines = [f"worker {w} gone" for w in sorted(now.gone - before.gone) if w in before.present]
    lines += [f"model {m} has no ready worker" for m in sorted(before.served - now.served)]
    if now.draining and not before.draining:
        lines.append("the server is draining")
    return lines


def escape_sequences(config: NotifyConfig, title: str, body: str, tmux: bool = False) -> str:
    """The bytes to write for one notice (empty when the config asks for none). Inside tmux
    the OSC goes in tmux's passthrough wrapper (`ESC P tmux; … ESC \\`, its ESCs doubled),
    which reaches the outer terminal when tmux has `allow-passthrough on`; the bell needs none."""
    title, body = clean(title).replace(";", ","), clean(body)
    out = "\a" if config.bell else ""
    osc = ""
    if config.desktop == "osc9":
        osc = f"\x1b]9;{title}: {body}\a"
    elif config.desktop == "osc777":
        osc = f"\x1b]777;notify;{title};{body}\a"
    if osc and tmux:
        osc = "\x1bPtmux;" + osc.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return out + osc


class TerminalNotices:
    """Watches the store after each draw; `write` puts text on the terminal (or None)."""

    def __init__(
        self,
        write: Callable[[], Callable[[str], None] | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._clock = clock
        self._store: StateStore | None = None
        self._baseline: Baseline | None = None
        self._pending: list[str] = []
        self._last_sent: float | None = None
        self.sent: list[str] = []  # the notices' texts, newest last (the panel's own record)

    def observe(self, store: StateStore, config: NotifyConfig | None, context: str) -> None:
        if config is None or not config.enabled or not store.has_state:
            self._baseline = None
            return
        if store is not self._store or self._baseline is None:  # a new session: a new baseline
            self._store, self._baseline, self._pending = store, Baseline.of(store), []
            return
        now = Baseline.of(store)
        self._pending += changes_worth_a_notice(self._baseline, now)
        self._baseline = now
        self._flush(config, context)

    def _flush(self, config: NotifyConfig, context: str) -> None:
        if not self._pending:
            return
        t = self._clock()
        if self._last_sent is not None and t - self._last_sent < config.min_interval_s:
            return  # rate-limited: counted in the next notice
        first, more = self._pending[0], len(self._pending) - 1
        body = first + (f" (+{more} more)" if more else "")
        writer = self._write()
        if writer is not None:
            tmux = bool(os.environ.get("TMUX"))
            writer(escape_sequences(config, f"gatewaytui {context}", body, tmux=tmux))
        self.sent.append(body)
        self._pending, self._last_sent = [], t

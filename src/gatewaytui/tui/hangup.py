"""Leave promptly, and for sure, when the terminal goes away.

A tty hangup (an SSH drop, a closed tmux pane) sends the panel SIGHUP *and* SIGCONT. Textual's
Linux driver answers every SIGCONT by re-entering application mode, suspended or not: a new
writer thread on the dead tty, which dies at its first write (EIO) and leaves the shutdown
that follows blocked on that thread's full queue for ever. Under `tmux kill-server` that
happened one run in five. So SIGCONT resumes the driver only after a SIGTSTP suspended it,
and a hangup starts a watchdog that ends the process if the clean exit stalls anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from textual.app import App

log = logging.getLogger(__name__)

HANGUP_GRACE_S = 2.0
"""How long a clean exit may take after a hangup before the process is ended outright."""

HANGUP_EXIT_CODE = 128 + signal.SIGHUP

Handler = Callable[[int, FrameType | None], Any]


def resume_only_after_suspend() -> None:
    """Wrap the SIGTSTP/SIGCONT handlers in place so a bare SIGCONT resumes nothing.

    Call after the driver has installed its own handlers (from `on_mount`).
    """
    on_stop = signal.getsignal(signal.SIGTSTP)
    on_continue = signal.getsignal(signal.SIGCONT)
    if not callable(on_stop) or not callable(on_continue):
        return  # no driver handlers (headless, Windows): nothing to guard
    suspended = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        suspended.set()
        on_stop(signum, frame)

    def resume(signum: int, frame: FrameType | None) -> None:
        if suspended.is_set():
            suspended.clear()
            on_continue(signum, frame)

    signal.signal(signal.SIGTSTP, stop)
    signal.signal(signal.SIGCONT, resume)


def start_exit_watchdog(grace_s: float = HANGUP_GRACE_S) -> threading.Thread:
    """End the process `grace_s` from now unless it has exited by then."""

    def end() -> None:
        time.sleep(grace_s)
        log.warning("terminal hung up and the clean exit stalled; ending the process")
        logging.shutdown()
        os._exit(HANGUP_EXIT_CODE)

    watchdog = threading.Thread(target=end, name="hangup-watchdog", daemon=True)
    watchdog.start()
    return watchdog


def exit_on_hangup(app: App[Any]) -> None:
    """SIGHUP: nobody is watching; exit, and make sure of it. Call from the app's `on_mount`
    (after the driver installed its handlers)."""
    resume_only_after_suspend()

    def terminal_gone() -> None:
        log.info("terminal hung up; exiting")
        start_exit_watchdog()
        app.exit(return_code=HANGUP_EXIT_CODE)

    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, terminal_gone)

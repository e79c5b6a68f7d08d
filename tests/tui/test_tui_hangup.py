"""The hangup guard: a bare SIGCONT (sent with SIGHUP when a tty hangs up) resumes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from gatewaytui.tui.hangup import HANGUP_EXIT_CODE, resume_only_after_suspend


@pytest.fixture
def driver_handlers() -> Iterator[list[str]]:
    """Stand-ins for the driver's SIGTSTP/SIGCONT handlers that record what ran."""
    calls: list[str] = []
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTSTP, signal.SIGCONT)}
    signal.signal(signal.SIGTSTP, lambda *_: calls.append("suspend"))
    signal.signal(signal.SIGCONT, lambda *_: calls.append("resume"))
    yield calls
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def deliver(sig: signal.Signals) -> None:
    """Send `sig` to this process and let its Python handler run."""
    os.kill(os.getpid(), sig)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # a syscall: pending handlers run after it


def test_a_bare_sigcont_does_not_resume(driver_handlers):
    resume_only_after_suspend()
    deliver(signal.SIGCONT)
    assert driver_handlers == []


def test_sigcont_after_a_suspend_resumes_once(driver_handlers):
    resume_only_after_suspend()
    deliver(signal.SIGTSTP)
    deliver(signal.SIGCONT)
    deliver(signal.SIGCONT)
    assert driver_handlers == ["suspend", "resume"]


def test_without_driver_handlers_nothing_is_wrapped():
    saved = signal.getsignal(signal.SIGCONT)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)
    try:
        resume_only_after_suspend()
        assert signal.getsignal(signal.SIGCONT) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGCONT, saved)


def test_the_watchdog_ends_a_process_whose_exit_stalls():
    stalled = textwrap.dedent(
        """
        import threading
        from gatewaytui.tui.hangup import start_exit_watchdog
        start_exit_watchdog(0.2)
        threading.Event().wait()  # a shutdown that never finishes
        """
    )
    result = subprocess.run([sys.executable, "-c", stalled], timeout=30, capture_output=True)
    assert result.returncode == HANGUP_EXIT_CODE, result.stderr

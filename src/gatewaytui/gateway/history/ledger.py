"""The usage ledger: records handed over on the event loop, written by one thread.

The hot path only builds a tuple and appends it to a bounded deque (a C call, no lock, no
wake-up: a quarter of what `queue.Queue.put_nowait` cost). The writer thread wakes every
`flush_interval`, or at once when a full batch is waiting, and writes everything pending in
batches. When the deque is full, or the database cannot be written (corrupt, read-only,
locked, disk full), records are dropped and counted and an event says so (at most one per
`REPORT_EVERY_S`): the gateway keeps serving and never waits for disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatewaytui.gateway.history import store
from gatewaytui.shared.text import plural

log = logging.getLogger("gatewaytui.gateway.history")

REPORT_EVERY_S = 10.0
REOPEN_EVERY_S = 30.0
RETENTION_EVERY_S = 60.0
_STOP = object()

# (kind, message, level): posted to the gateway's event log on its loop.
Report = Callable[[str, str, str], None]


@dataclass(frozen=True)
class LedgerSettings:
    path: str
    queue_size: int = 10_000
    batch_size: int = 1_000
    flush_interval: float = 0.5
    max_age_s: float = 7 * 86400.0
    max_bytes: int = 1024 * 1024 * 1024


class HistoryUnavailableError(Exception):
    """The ledger cannot be read (disabled, broken file): the routes answer 503 with this."""


class Ledger:
    """One per gateway. `add` is the only call on the hot path."""

    def __init__(self, settings: LedgerSettings, report: Report | None = None) -> None:
        self.settings = settings
        self._pending: deque[tuple[Any, ...]] = deque()
        self._controls: deque[Any] = deque()  # flush markers and the stop sentinel
        self._wake = threading.Event()
        self._limit = max(settings.queue_size, 1)
        self._batch = max(settings.batch_size, 1)
        self._report = report or (lambda kind, message, level: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.written = 0
        self.writer_cpu_s = 0.0  # the writer thread's own CPU time (what the ledger costs)
        self.dropped_full = 0  # the queue was full
        self.dropped_failed = 0  # the database refused the batch
        self.error: str | None = None  # why the database cannot be written, if it cannot
        self._reported_drops = 0
        self._last_report = 0.0
        self._next_open = 0.0
        self._next_retention = 0.0

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (called on the gateway's loop)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then close the file."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        await asyncio.to_thread(self._stop_thread, thread, timeout)

    def _stop_thread(self, thread: threading.Thread, timeout: float) -> None:
        self._controls.append(_STOP)
        self._wake.set()
        thread.join(max(timeout, 0.1))

    # ---- hot path -------------------------------------------------------------------------

    def add(self, record: tuple[Any, ...]) -> bool:
        """Hand a record to the writer; never blocks. False if it was dropped."""
        pending = self._pending
        if len(pending) >= self._limit:
            self.dropped_full += 1
            return False
        pending.append(record)
        if len(pending) == self._batch:  # a full batch: no reason to wait for the interval
            self._wake.set()
        return True

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_failed

    def status(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "path": self.settings.path,
            "writable": self.error is None,
            "error": self.error,
            "written": self.written,
            "dropped": self.dropped,
            "dropped_queue_full": self.dropped_full,
            "dropped_write_failed": self.dropped_failed,
            "queued": len(self._pending),
            "writer_cpu_s": round(self.writer_cpu_s, 6),
        }

    # ---- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        self._ensure_open()
        stop = False
        while not stop:
            self._wake.wait(self.settings.flush_interval)
            self._wake.clear()
            markers, stop = self._take_controls()
            cpu0 = time.thread_time()
            while self._pending:  # everything pending now, a batch per transaction
                batch = self._take()
                try:
                    self._write(batch)
                except Exception:  # never let the writer die: count and go on
                    log.exception("history writer failed")
                    self.dropped_failed += len(batch)
            try:
                self._maybe_retain()
            except Exception:
                log.exception("history retention failed")
            self._maybe_report_drops()
            self.writer_cpu_s += time.thread_time() - cpu0
            for marker in markers:
                marker.set()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _take_controls(self) -> tuple[list[threading.Event], bool]:
        """Flush markers to set once what is pending now is written, and whether to stop.
        (A marker taken before the records are: everything added before `flush()` is in.)"""
        markers: list[threading.Event] = []
        stop = False
        while self._controls:
            item = self._controls.popleft()
            if item is _STOP:
                stop = True
            else:
                markers.append(item)
        return markers, stop

    def _take(self) -> list[tuple[Any, ...]]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(self._batch, len(pending)))]

    def _ensure_open(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        now = time.monotonic()
        if now < self._next_open:
            return None
        try:
            self._conn = store.open_writer(self.settings.path)
        except (sqlite3.Error, OSError) as exc:
            self._next_open = now + REOPEN_EVERY_S
            self._fail(f"{type(exc).__name__}: {exc}")
            return None
        if self.error is not None:
            self._post("history_recovered", f"history file {self.settings.path} is writable again")
        self.error = None
        return self._conn

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        conn = self._ensure_open()
        if not batch:
            return
        if conn is None:
            self.dropped_failed += len(batch)
            return
        try:
            store.write_batch(conn, batch)
        except sqlite3.Error as exc:
            self.dropped_failed += len(batch)
            text = str(exc).lower()
            if "locked" in text or "busy" in text:  # transient: keep the connection
                if self.error is None:
                    self._fail(f"database is locked ({exc}); records are dropped meanwhile")
                return
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._conn = None
            self._next_open = time.monotonic() + REOPEN_EVERY_S
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        self.written += len(batch)
        if self.error is not None and self.error.startswith("database is locked"):
            self.error = None
            self._post("history_recovered", f"history file {self.settings.path} is writable again")

    def _maybe_retain(self) -> None:
        conn = self._conn
        now = time.monotonic()
        if conn is None or now < self._next_retention:
            return
        self._next_retention = now + RETENTION_EVERY_S
        try:
            deleted = store.apply_retention(
                conn, max_age_s=self.settings.max_age_s, max_bytes=self.settings.max_bytes
            )
        except sqlite3.Error as exc:
            log.warning("history retention failed: %s", exc)
            return
        if deleted:
            log.info("history retention deleted %s", plural(deleted, "record"))

    def retain_now(self) -> int:
        """Apply retention at once (tests, and the writer thread's periodic pass)."""
        conn = store.connect(self.settings.path)
        try:
            return store.apply_retention(
                conn, max_age_s=self.settings.max_age_s, max_bytes=self.settings.max_bytes
            )
        finally:
            conn.close()

    def _fail(self, reason: str) -> None:
        first = self.error is None
        self.error = reason
        if first:
            self._post(
                "history_error",
                f"history file {self.settings.path} cannot be written ({reason}); the gateway "
                "keeps serving, finished requests are not recorded until it can",
                "error",
            )

    def _maybe_report_drops(self) -> None:
        now = time.monotonic()
        new = self.dropped - self._reported_drops
        if new <= 0 or now - self._last_report < REPORT_EVERY_S:
            return
        self._last_report = now
        self._reported_drops = self.dropped
        why = "the queue was full" if self.dropped_full else "the file cannot be written"
        self._post(
            "history_dropped",
            f"{plural(new, 'history record')} dropped ({why}; {self.dropped} in all)",
            "warning",
        )

    def _post(self, kind: str, message: str, level: str = "info") -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._report, kind, message, level)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block (a test's or bench's thread, never the loop) until everything queued before
        this call is written (or dropped). False on timeout."""
        marker = threading.Event()
        self._controls.append(marker)
        self._wake.set()
        return marker.wait(timeout)

    # ---- reads (worker threads, short-lived connections) -----------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a query on a fresh read-only connection in a worker thread."""
        return await asyncio.to_thread(self._read_sync, fn)

    def _read_sync(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            conn = store.connect(self.settings.path, readonly=True)
        except sqlite3.Error as exc:
            raise HistoryUnavailableError(f"history file cannot be opened: {exc}") from None
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise HistoryUnavailableError(f"history cannot be read: {exc}") from None
        finally:
            conn.close()

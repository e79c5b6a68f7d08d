"""The usage ledger: records handed over on the event loop, written by one thread.

The hot path only builds a tuple and `put_nowait`s it on a bounded queue. When the queue is
full, or the database cannot be written (corrupt, read-only, locked, disk full), records are
dropped and counted and an event says so (at most one per `REPORT_EVERY_S`): the gateway
keeps serving and never waits for disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
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
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(settings.queue_size, 1))
        self._report = report or (lambda kind, message, level: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.written = 0
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
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                continue
        thread.join(max(deadline - time.monotonic(), 0.1))

    # ---- hot path -------------------------------------------------------------------------

    def add(self, record: tuple[Any, ...]) -> bool:
        """Hand a record to the writer; never blocks. False if it was dropped."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped_full += 1
            return False
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
            "queued": self._queue.qsize(),
        }

    # ---- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        self._ensure_open()
        while True:
            batch, markers, stop = self._collect()
            try:
                self._write(batch)
                self._maybe_retain()
            except Exception:  # never let the writer die: count and go on
                log.exception("history writer failed")
                self.dropped_failed += len(batch)
            self._maybe_report_drops()
            for marker in markers:
                marker.set()
            if stop:
                break
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _collect(self) -> tuple[list[tuple[Any, ...]], list[threading.Event], bool]:
        """The next batch: what arrives within `flush_interval` of its first record, up to
        `batch_size` records, cut short by a flush marker or the stop sentinel.

        After the first record the thread sleeps instead of waiting on the queue: a wait
        would wake it (and take the GIL from the event loop) for every record, and write
        batches of one; a sleep lets records gather, so each commit carries many."""
        try:
            item: Any = self._queue.get(timeout=self.settings.flush_interval)
        except queue.Empty:
            item = None
        gathering = item is not None and not isinstance(item, threading.Event)
        if gathering and item is not _STOP and self._queue.qsize() < self.settings.batch_size:
            time.sleep(self.settings.flush_interval)
        batch: list[tuple[Any, ...]] = []
        markers: list[threading.Event] = []
        stop = False
        while True:
            if item is _STOP:
                stop = True
            elif isinstance(item, threading.Event):
                markers.append(item)
            elif item is not None:
                batch.append(item)
            if stop or markers or len(batch) >= self.settings.batch_size:
                return batch, markers, stop
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, markers, stop

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
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
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

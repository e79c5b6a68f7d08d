"""A worker's own recent log lines, kept in memory and sent to the gateway only when asked.

`LogRing` is a `logging.Handler` holding the last N lines of the process (bounded, so a
chatty worker costs a fixed amount of memory). Secrets never enter it: the worker key, the
upstream API key and anything that looks like a bearer token or `api_key=` is masked before
the line is stored. `LogStreams` answers the gateway's `logs_request` frames for one worker
connection: the snapshot first, then (with follow) new lines until `logs_stop` or the
connection ends. Nothing is sent unless the gateway asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gatewaytui.schema.protocol import (
    LOG_FRAME_MAX_LINES,
    LOG_LINE_MAX_CHARS,
    LogLine,
    LogsFrame,
    LogsRequestFrame,
)

DEFAULT_CAPACITY = 2000
MAX_FOLLOWERS = 8  # per worker connection; one per open panel logs view
FOLLOW_QUEUE = 1000  # lines buffered for a follower before the oldest are dropped
_MASK = "***"

# Shapes of secrets that may reach a log message from an exception or a URL.
_SECRET_KEYS = r"(?:api[_-]?key|token|secret|password|authorization)"
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"(?i)(" + _SECRET_KEYS + r"[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]{2,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(://[^/@\s:]*:)[^/@\s]+(@)"),  # user:password@host
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and anything shaped like a credential masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    for pattern in _PATTERNS:
        if pattern.groups == 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{_MASK}{m.group(2)}", text)
        elif pattern.groups == 1:
            text = pattern.sub(lambda m: f"{m.group(1)}{_MASK}", text)
        else:
            text = pattern.sub(_MASK, text)
    return text


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stored line; `worker` is the worker id it is about, when it names one."""

    line: LogLine
    worker: str | None


Subscriber = Callable[[LogEntry], None]


class LogRing(logging.Handler):
    """The last `capacity` log lines of this process, secrets masked, for `logs_request`."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.capacity = capacity
        self._lines: deque[LogEntry] = deque(maxlen=capacity)
        self._secrets: set[str] = set()
        self._subscribers: list[Subscriber] = []
        self._guard = threading.Lock()

    def add_secret(self, secret: str | None) -> None:
        """Mask `secret` wherever it appears in a later line (keys shorter than 4 chars are
        not worth masking and would garble ordinary words)."""
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message = f"{message} [{type(exc).__name__}: {exc}]"
            message = redact(message, self._secrets)
            if len(message) > LOG_LINE_MAX_CHARS:
                message = message[: LOG_LINE_MAX_CHARS - 1] + "…"
            entry = LogEntry(
                LogLine(
                    ts=record.created,
                    level=record.levelname[:16],
                    logger=record.name[:256],
                    message=message,
                ),
                _worker_of(record),
            )
            with self._guard:
                self._lines.append(entry)
                subscribers = list(self._subscribers)
            for notify in subscribers:
                notify(entry)
        except Exception:  # a log handler must never break the code that logs
            self.handleError(record)

    def tail(self, count: int, worker_id: str | None = None) -> list[LogLine]:
        """The last `count` lines, those about another worker of this process left out."""
        with self._guard:
            entries = list(self._lines)
        lines = [e.line for e in entries if _for(e, worker_id)]
        return lines[-count:] if count > 0 else []

    def subscribe(self, notify: Subscriber) -> Callable[[], None]:
        """Call `notify` for every new line (from the logging thread); returns unsubscribe."""
        with self._guard:
            self._subscribers.append(notify)

        def unsubscribe() -> None:
            with self._guard, contextlib.suppress(ValueError):
                self._subscribers.remove(notify)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


def _for(entry: LogEntry, worker_id: str | None) -> bool:
    return worker_id is None or entry.worker is None or entry.worker == worker_id


def _worker_of(record: logging.LogRecord) -> str | None:
    """The worker id a record is about: an explicit `worker_id` extra, else the first
    argument of the "worker %s: ..." / "%s: ..." (label "worker <id>") messages."""
    explicit = getattr(record, "worker_id", None)
    if explicit is not None:
        return str(explicit)
    args = record.args
    if not isinstance(args, tuple) or not args or not isinstance(record.msg, str):
        return None
    if record.msg.startswith("worker %s"):
        return str(args[0])
    if record.msg.startswith("%s:"):
        label = str(args[0])
        if label.startswith("worker "):
            return label[len("worker ") :]
    return None


_PROCESS_RING: LogRing | None = None
_RING_LOGGER = "gatewaytui.workers"


def process_ring(secrets: Iterable[str | None] = ()) -> LogRing:
    """The ring of this process, installed on the workers' logger on first use. It holds
    what that logger lets through (`gatewaytui worker` logs at INFO by default)."""
    global _PROCESS_RING
    if _PROCESS_RING is None:
        _PROCESS_RING = LogRing()
        logging.getLogger(_RING_LOGGER).addHandler(_PROCESS_RING)
    for secret in secrets:
        _PROCESS_RING.add_secret(secret)
    return _PROCESS_RING


class _Forward(logging.Handler):
    """Passes records at or above the console's old threshold on to the root handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


def keep_info_lines() -> None:
    """Let the ring keep INFO lines even when the console shows only warnings (the demo):
    the workers' logger goes to INFO and stops propagating, and a forwarder passes what the
    console showed before on to the root handlers."""
    logger = logging.getLogger(_RING_LOGGER)
    threshold = logger.getEffectiveLevel()
    if threshold <= logging.INFO or not logger.propagate:
        return
    process_ring()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(_Forward(threshold))


Send = Callable[[LogsFrame], Awaitable[bool]]


class LogStreams:
    """The log requests of one worker connection: answers, follows, stops."""

    def __init__(self, ring: LogRing, worker_id: str, send: Send) -> None:
        self.ring = ring
        self.worker_id = worker_id
        self._send = send
        self._follows: dict[str, asyncio.Task[None]] = {}

    @property
    def following(self) -> int:
        return len(self._follows)

    async def request(self, frame: LogsRequestFrame) -> None:
        """Send the snapshot; with follow, start forwarding new lines in the background."""
        if frame.follow and (
            len(self._follows) >= MAX_FOLLOWERS or frame.request_id in self._follows
        ):
            await self._send(
                LogsFrame(
                    request_id=frame.request_id,
                    snapshot_done=True,
                    ended=True,
                    error=f"worker is already streaming logs to {MAX_FOLLOWERS} viewers",
                )
            )
            return
        follower: _Follower | None = None
        if frame.follow:  # subscribe before the snapshot so no line falls in between
            follower = self._subscribe()
        lines = self.ring.tail(frame.tail, self.worker_id)
        chunks = [
            lines[i : i + LOG_FRAME_MAX_LINES] for i in range(0, len(lines), LOG_FRAME_MAX_LINES)
        ]
        chunks = chunks or [[]]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            done = LogsFrame(
                request_id=frame.request_id,
                lines=chunk,
                snapshot_done=last,
                ended=last and not frame.follow,
            )
            if not await self._send(done):
                if follower is not None:
                    follower.unsubscribe()
                return
        if follower is not None:
            task = asyncio.create_task(
                self._follow(frame.request_id, follower),
                name=f"logs:{self.worker_id}:{frame.request_id}",
            )
            self._follows[frame.request_id] = task
            task.add_done_callback(lambda _t: self._follows.pop(frame.request_id, None))

    def stop(self, request_id: str) -> None:
        task = self._follows.get(request_id)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """The connection ended: stop every follower."""
        tasks = list(self._follows.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _subscribe(self) -> _Follower:
        loop = asyncio.get_running_loop()
        follower = _Follower(asyncio.Queue(maxsize=FOLLOW_QUEUE))
        owner = threading.get_ident()

        def put(entry: LogEntry) -> None:
            if not _for(entry, self.worker_id):
                return
            try:
                follower.queue.put_nowait(entry)
            except asyncio.QueueFull:
                follower.dropped += 1

        def notify(entry: LogEntry) -> None:
            if threading.get_ident() == owner:
                put(entry)
            else:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(put, entry)

        follower.unsubscribe = self.ring.subscribe(notify)
        return follower

    async def _follow(self, request_id: str, follower: _Follower) -> None:
        queue = follower.queue
        try:
            while True:
                batch = [(await queue.get()).line]
                while not queue.empty() and len(batch) < LOG_FRAME_MAX_LINES:
                    batch.append(queue.get_nowait().line)
                lost, follower.dropped = follower.dropped, 0
                frame = LogsFrame(
                    request_id=request_id, lines=batch, snapshot_done=True, dropped=lost
                )
                if not await self._send(frame):
                    return
        finally:
            follower.unsubscribe()


@dataclass(slots=True)
class _Follower:
    queue: asyncio.Queue[LogEntry]
    dropped: int = 0
    unsubscribe: Callable[[], None] = lambda: None

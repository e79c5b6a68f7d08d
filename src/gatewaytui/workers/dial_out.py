"""Dialling out to the gateway: the connection half that a worker and an MCP relay share.

Both connect to a gateway WebSocket with the worker key, send a register frame and wait for
the answer, then serve frames until the connection closes, with heartbeats and status frames
on a timer; both reconnect with capped exponential backoff and full jitter, track the tasks
they run for the gateway, and stop (or drain) on request. `DialOutClient` is that loop; a
subclass says which frames to send and what the frames that arrive mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from gatewaytui import __version__
from gatewaytui.shared.backoff import Backoff
from gatewaytui.shared.lifecycle import Started
from gatewaytui.workers.settings import BackoffSettings, redact_url

EXIT_OK, EXIT_GAVE_UP, EXIT_CONFIG, EXIT_FORCED = 0, 1, 2, 130
_DEFAULT_HEARTBEAT_S = 5.0
_MIN_HEARTBEAT_S = 0.01
_FORCED_CLOSE_TIMEOUT_S = 1.0


class _RedactAuthorization(logging.Filter):
    """websockets logs handshake headers at DEBUG: mask the worker key there."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "<redacted>")
        return True


def wire_logger(name: str) -> logging.Logger:
    """A logger for the websockets library that never shows the Authorization header."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RedactAuthorization) for f in logger.filters):
        logger.addFilter(_RedactAuthorization())
    return logger


class GatewayProtocolError(Exception):
    """The gateway said something the protocol does not allow (e.g. no `registered`)."""


@dataclass(slots=True)
class SessionEnd:
    """How one connection attempt ended, for logs, backoff and tests."""

    registered: bool
    duration_s: float
    code: int | None = None
    reason: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DialOutSettings:
    """How to reach the gateway; the worker and the relay fill it from their own settings."""

    url: str
    key: str | None
    backoff: BackoffSettings
    user_agent: str
    open_timeout_s: float
    register_timeout_s: float
    max_frame_bytes: int | None
    compression: bool = False
    max_connect_failures: int | None = None


RegisteredT = TypeVar("RegisteredT", bound=BaseModel)


class DialOutClient(Started, Generic[RegisteredT]):
    """Connect, register, serve and reconnect until stopped; subclasses speak the frames.

    Observable for tests and the CLI: `connected` (set while registered), `registered` (the
    gateway's answer), `idle` (set when nothing runs for the gateway), `stopped`, `sessions`.
    """

    kind = "client"
    """First words of every log line ("worker", "mcp relay")."""
    close_hints: dict[int, str] = {}
    """What a close code from the gateway means, in words an operator can act on."""

    def __init__(
        self,
        client_id: str,
        dial: DialOutSettings,
        *,
        answers: TypeAdapter[Any],
        registered_type: type[RegisteredT],
        logger: logging.Logger,
        wire_log: logging.Logger,
        rng: random.Random | None = None,
    ) -> None:
        self.id = client_id
        self.dial = dial
        self.url = dial.url
        self._answers = answers
        self._registered_type = registered_type
        self._log = logger
        self._wire_log = wire_log
        self._rng = rng or random.Random()
        self.backoff = Backoff(dial.backoff.base_s, dial.backoff.cap_s, self._rng)

        self.connected = asyncio.Event()
        self.stopped = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.registered: RegisteredT | None = None
        self.sessions: deque[SessionEnd] = deque(maxlen=64)
        self.connect_attempts = 0
        self.last_delay_s: float | None = None
        self.exit_code = EXIT_OK

        self._ws: ClientConnection | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._draining = False
        self._stopping = False
        self._wakeup = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._task: asyncio.Task[int] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, url={redact_url(self.url)!r})"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.id}"

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    # ---- what a subclass says --------------------------------------------------------------

    def _subscribe(self, changed: Callable[[], None]) -> Callable[[], None]:
        """Call `changed` whenever readiness changes; returns the unsubscribe."""
        raise NotImplementedError

    def _register_frame(self) -> BaseModel:
        raise NotImplementedError

    def _status_frame(self) -> BaseModel:
        raise NotImplementedError

    def _heartbeat_frame(self) -> BaseModel:
        raise NotImplementedError

    def _on_registered(self, answer: RegisteredT) -> None:
        """Log the registration; the answer is already in `self.registered`."""

    async def _greet(self, ws: ClientConnection) -> None:
        """Anything to send right after registering, before frames are served."""

    async def _dispatch(
        self, ws: ClientConnection, raw: str | bytes, registered: RegisteredT
    ) -> None:
        raise NotImplementedError

    # ---- control ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connect/reconnect loop in the background and return at once."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"{self.kind}:{self.id}")

    async def wait(self) -> int:
        """Wait until the loop has stopped; returns its exit code."""
        if self._task is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        return await asyncio.shield(self._task)

    async def drain(self, timeout: float | None = None) -> None:
        """Finish what runs for the gateway (up to `timeout`), refusing new work, then stop."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop now: cancel what runs for the gateway (it retries or fails those) and close
        with 1001."""
        self._stopping = True
        await self._cancel_tasks(list(self._tasks.values()))
        await self._shutdown(1001, f"{self.kind} stopping", timeout=_FORCED_CLOSE_TIMEOUT_S)

    async def close(self) -> None:
        """`stop`: `async with client:` stops it on the way out."""
        await self.stop()

    async def _shutdown(self, code: int, reason: str, timeout: float | None = None) -> None:
        self._stopping = True
        self._wakeup.set()
        ws = self._ws
        if ws is not None:
            try:
                async with asyncio.timeout(timeout):
                    await ws.close(code, reason)
            except TimeoutError:
                self._log.warning("%s: close handshake timed out", self.label)
        await self._wait_task()

    async def _wait_task(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.shield(self._task)

    async def _announce_status(self) -> None:
        """Send a status frame now, if registered (a drain tells the gateway at once)."""
        ws = self._ws
        if ws is not None and self.connected.is_set():
            await self._send(ws, self._status_frame())

    # ---- tasks run for the gateway ---------------------------------------------------------

    def _track(self, task_id: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"{self.kind}:{task_id}")
        self._tasks[task_id] = task
        self.idle.clear()
        task.add_done_callback(lambda _t: self._untrack(task_id))

    def _untrack(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)
        if not self._tasks:
            self.idle.set()

    async def _cancel_tasks(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        running = [t for t in tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def _send(self, ws: ClientConnection, frame: BaseModel) -> bool:
        try:
            await ws.send(frame.model_dump_json())
        except ConnectionClosed:
            return False
        return True

    # ---- connect / reconnect ---------------------------------------------------------------

    async def run(self) -> int:
        """Connect, serve, and reconnect with backoff until stopped; returns an exit code."""
        unsubscribe = self._subscribe(self._status_dirty.set)
        failures = 0
        try:
            while not self._stopping:
                self.connect_attempts += 1
                try:
                    end = await self._session()
                except InvalidURI as exc:
                    self._log.error("%s: bad gateway url: %s", self.label, exc)
                    self.exit_code = EXIT_CONFIG
                    break
                except Exception as exc:  # a bug must not end a long-running client
                    self._log.exception("%s: unexpected error in the connection", self.label)
                    end = SessionEnd(registered=False, duration_s=0.0, error=repr(exc))
                self.sessions.append(end)
                if self._stopping or self._draining:
                    self._log_end(end, None)
                    break
                if end.registered:
                    failures = 0
                    if end.duration_s >= self.dial.backoff.stable_after_s:
                        self.backoff.reset()
                else:
                    failures += 1
                    limit = self.dial.max_connect_failures
                    if limit is not None and failures >= limit:
                        self._log_end(end, None)
                        self._log.error(
                            "%s: giving up after %d failed connection attempts",
                            self.label,
                            failures,
                        )
                        self.exit_code = EXIT_GAVE_UP
                        break
                delay = self.backoff.next_delay()
                self.last_delay_s = delay
                self._log_end(end, delay)
                self._wakeup.clear()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()
        finally:
            unsubscribe()
            self.connected.clear()
            self.stopped.set()
        self._log.info("%s: stopped", self.label)
        return self.exit_code

    def _log_end(self, end: SessionEnd, delay: float | None) -> None:
        if self._stopping and end.error is None and end.code in (1000, 1001):
            return
        retry = f"; reconnecting in {delay:.2f}s" if delay is not None else ""
        if end.error is not None:
            self._log.warning(
                "%s: cannot connect to %s: %s%s",
                self.label,
                redact_url(self.url),
                end.error,
                retry,
            )
            return
        hint = self.close_hints.get(end.code or 0)
        self._log.warning(
            "%s: gateway closed the connection%s: code %s, reason %r%s%s",
            self.label,
            "" if end.registered else " during registration",
            end.code if end.code is not None else "none (connection lost)",
            end.reason,
            f" ({hint})" if hint else "",
            retry,
        )

    async def _session(self) -> SessionEnd:
        """One connection: register, then serve until it closes. Never raises for I/O."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        registered_at: float | None = None
        key = self.dial.key
        try:
            async with connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {key}"} if key else None,
                user_agent_header=f"{self.dial.user_agent}/{__version__}",
                open_timeout=self.dial.open_timeout_s,
                max_size=self.dial.max_frame_bytes,
                logger=self._wire_log,
                compression="deflate" if self.dial.compression else None,
            ) as ws:
                self._ws = ws
                try:
                    if self._stopping:  # stop() or drain() raced with the handshake
                        await ws.close(1000, f"{self.kind} stopping")
                    registered = await self._register(ws)
                    registered_at = loop.time()
                    await self._serve(ws, registered)
                except ConnectionClosed:
                    pass
                finally:
                    self._ws = None
                    self.connected.clear()
                    await self._cancel_tasks(list(self._tasks.values()))
            duration = loop.time() - (registered_at if registered_at is not None else started)
            return SessionEnd(
                registered=registered_at is not None,
                duration_s=duration,
                code=ws.close_code,
                reason=ws.close_reason or "",
            )
        except InvalidURI:
            raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = {401: " (bad or missing worker key)", 403: " (forbidden)"}.get(status, "")
            error = f"gateway refused the connection: HTTP {status}{hint}"
        except GatewayProtocolError as exc:
            error = f"protocol error: {exc}"
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration = loop.time() - (registered_at if registered_at is not None else started)
        return SessionEnd(registered=registered_at is not None, duration_s=duration, error=error)

    async def _register(self, ws: ClientConnection) -> RegisteredT:
        self._status_dirty.clear()
        await ws.send(self._register_frame().model_dump_json())
        try:
            async with asyncio.timeout(self.dial.register_timeout_s):
                raw = await ws.recv()
        except TimeoutError:
            await ws.close(1002, "no registered frame")
            raise GatewayProtocolError("the gateway did not answer register in time") from None
        try:
            answer = self._answers.validate_json(raw)
        except ValidationError as exc:
            await ws.close(1002, "expected a registered frame")
            raise GatewayProtocolError(f"bad answer to register: {invalid_frame(exc)}") from exc
        if not isinstance(answer, self._registered_type):
            await ws.close(1002, "expected a registered frame")
            raise GatewayProtocolError(f"expected registered, got {answer.type}")
        self.registered = answer
        self._on_registered(answer)
        return answer

    async def _serve(self, ws: ClientConnection, registered: RegisteredT) -> None:
        await self._greet(ws)
        self.connected.set()
        ticker = asyncio.create_task(self._ticker(ws, registered), name=f"ticker:{self.id}")
        try:
            async for raw in ws:
                await self._dispatch(ws, raw, registered)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await ticker

    async def _ticker(self, ws: ClientConnection, registered: RegisteredT) -> None:
        """Heartbeats on a timer, and a status frame whenever readiness changes."""
        loop = asyncio.get_running_loop()
        interval = getattr(registered, "heartbeat_interval_s", 0.0)
        if interval <= 0:
            interval = _DEFAULT_HEARTBEAT_S
        interval = max(interval, _MIN_HEARTBEAT_S)
        # A random first beat spreads a fleet that connected at once over the interval.
        next_beat = loop.time() + self._rng.uniform(0, interval)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                        await self._status_dirty.wait()
                if self._status_dirty.is_set():
                    self._status_dirty.clear()
                    await ws.send(self._status_frame().model_dump_json())
                now = loop.time()
                if now >= next_beat:
                    await ws.send(self._heartbeat_frame().model_dump_json())
                    next_beat = max(next_beat + interval, now + interval / 2)
        except (asyncio.CancelledError, ConnectionClosed):
            raise
        except Exception:
            # Without heartbeats the gateway would drop us anyway; reconnect cleanly instead.
            self._log.exception("%s: heartbeat loop failed; reconnecting", self.label)
            await ws.close(1011, f"{self.kind} heartbeat loop failed")


@contextlib.contextmanager
def drain_on_signals(
    stop: asyncio.Event, force: asyncio.Event, what: str, *, enabled: bool = True
) -> Iterator[None]:
    """While inside: the first SIGTERM/SIGINT sets `stop` (drain), a second sets `force`."""
    log = logging.getLogger("gatewaytui.workers")
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            log.warning(
                "received %s: draining %s (send it again to exit at once)", signum.name, what
            )
            stop.set()
        else:
            log.warning("received %s again: stopping now", signum.name)
            force.set()

    if enabled:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def run_until_stopped(
    clients: Sequence[DialOutClient[Any]], stop: asyncio.Event, force: asyncio.Event
) -> int:
    """Start `clients` and run them until they all end or `stop` is set; then drain them, or
    stop them at once when `force` is set meanwhile. Returns EXIT_FORCED after a forced stop,
    else the worst exit code of the clients."""
    forced = False
    for client in clients:
        await client.start()
    all_done = asyncio.ensure_future(asyncio.gather(*(c.wait() for c in clients)))
    stop_wait = asyncio.ensure_future(stop.wait())
    try:
        first: set[asyncio.Future[Any]] = {all_done, stop_wait}
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not all_done.done():
            draining = asyncio.ensure_future(asyncio.gather(*(c.drain() for c in clients)))
            force_wait = asyncio.ensure_future(force.wait())
            second: set[asyncio.Future[Any]] = {draining, force_wait}
            await asyncio.wait(second, return_when=asyncio.FIRST_COMPLETED)
            if not draining.done():
                forced = True
                await asyncio.gather(*(c.stop() for c in clients))
            force_wait.cancel()
            await asyncio.gather(draining, return_exceptions=True)
        await all_done
    finally:
        stop_wait.cancel()
        if not all_done.done():
            await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
    if forced:
        return EXIT_FORCED
    return max((c.exit_code for c in clients), default=EXIT_OK)


def invalid_frame(exc: ValidationError) -> str:
    """What is wrong with a frame, in one line, without echoing it (a frame may carry a token
    or a user's prompt)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "frame"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first.get('msg')}{more}"

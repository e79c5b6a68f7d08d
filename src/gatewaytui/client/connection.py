"""`GatewayConnection`: keeps a `StateStore` in step with `WS /api/state/stream`, for good.

It connects with the operator token, applies the snapshot and the deltas, and tells
listeners what changed. When the stream breaks it retries with capped exponential backoff
and full jitter (base 0.5 s, cap 10 s, the first `early_attempts` held to 1 s; the attempt
counter resets once a connection has stayed up for `stable_after` seconds), so a fleet of
TUIs does not hammer a gateway that is coming back. While it waits it probes the gateway
cheaply (`probe.answers`: `GET /healthz`, 1.5 s timeout, every `probe_interval`): when an
unreachable gateway answers again, the wait ends at once, so the panel is live again within
a fraction of a second of the gateway's return rather than after the rest of the backoff.

A gateway that accepts the connection and then says nothing (a SIGSTOPped process, a wedged
host, a silent TCP listener) is found quickly: a connect and handshake not done within
`report_after` (2 s) is reported (`last_error`) while it goes on (given up after
`open_timeout`, 10 s: a loaded gateway is slow, not dead), and a stream quiet for
`ping_interval` is pinged and must answer within `ping_timeout`; it is presumed dead
otherwise. A sequence gap or a malformed delta means the
store is wrong: it reconnects at once for a fresh snapshot (with backoff if that keeps
happening). A stream that answers pings but sends nothing for `dead_after_keepalives`
keep-alive intervals (the longer of `keepalive` and the gateway's own
`server.state_keepalive`, read from the snapshot) is presumed dead too. HTTP 401/403 stop
the loop in `unauthorized`: retrying cannot fix a token.

What a UI reads:

- `state`: a frozen `ConnectionState` (status, since, attempt, next retry, last error).
  `connecting` until the first snapshot arrives (with `next_retry_at`/`last_error` set while
  it waits between failed attempts), `live` while current, `reconnecting` after a live
  stream broke, `unauthorized`, `stopped`; `offline` is what a `Session` opened from a file
  reports.
- `on_change(change)` / `on_state(state)` callbacks, called on the event loop for every
  applied message and every state transition; or
- `updates()`: an async iterator of `Update`s that coalesces whatever happened while the
  consumer was busy into one (merged `Change`, latest state), so a UI redraws at its own
  pace and never for nothing: a keep-alive or a no-op delta produces no update.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

import gatewaytui
from gatewaytui.client.errors import (
    describe_exception,
    error_message_from_body,
)
from gatewaytui.client.http import auth_headers, normalise_url, websocket_url
from gatewaytui.client.probe import answers
from gatewaytui.client.store import (
    Change,
    ResyncNeeded,
    SnapshotError,
    StateStore,
    iter_validate_state,
)
from gatewaytui.schema.durations import parse_duration
from gatewaytui.shared.backoff import Backoff
from gatewaytui.shared.text import http_error_text

log = logging.getLogger("gatewaytui.client")

STREAM_PATH = "/api/state/stream"
KEEPALIVE_ARG = "state_keepalive"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a 10,000-worker snapshot is ~15 MB


class ConnectionStatus(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    UNAUTHORIZED = "unauthorized"
    OFFLINE = "offline"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """Where the connection stands; times are wall-clock epoch seconds (`time.time()`).

    `since` is when this status was entered (a run of failed retries keeps one `since`);
    `attempt` counts consecutive failed attempts; `next_retry_at` is set while waiting to
    retry (None while an attempt is under way); `last_error` is short human text;
    `http_status` is 401 or 403 when `unauthorized`; `data_at` is when the last frame of the
    stream arrived or a ping on it was answered (None before any), so a UI can say how old
    the state it shows is.
    """

    status: ConnectionStatus
    since: float
    attempt: int = 0
    next_retry_at: float | None = None
    last_error: str | None = None
    http_status: int | None = None
    data_at: float | None = None

    @property
    def live(self) -> bool:
        return self.status is ConnectionStatus.LIVE

    def data_age(self, now: float | None = None) -> float | None:
        """Seconds since the last frame arrived (None before any)."""
        if self.data_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.data_at)

    def retry_in(self, now: float | None = None) -> float | None:
        """Seconds until the next attempt (0 when due), or None when none is scheduled."""
        if self.next_retry_at is None:
            return None
        return max(0.0, self.next_retry_at - (time.time() if now is None else now))


@dataclass(frozen=True, slots=True)
class Update:
    """One wake-up of `updates()`: the latest state and everything that changed since."""

    state: ConnectionState
    change: Change | None
    state_changed: bool


ChangeListener = Callable[[Change], None]
StateListener = Callable[[ConnectionState], None]


class _StreamEnded(Exception):
    """Why a stream ended; `dead`: the gateway stopped answering (probe before retrying)."""

    def __init__(self, reason: str, *, resync: bool = False, dead: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resync = resync
        self.dead = dead


class GatewayConnection:
    """The live state stream of one gateway, mirrored into `store` until `stop()`."""

    # Over 60 lines: one keyword and one attribute per tunable of the reconnect policy (a
    # policy dataclass would shorten it; the tests pass them one by one today).
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        store: StateStore | None = None,
        on_change: ChangeListener | None = None,
        on_state: StateListener | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        early_attempts: int = 8,
        early_cap: float = 1.0,
        stable_after: float = 5.0,
        keepalive: float = 5.0,
        dead_after_keepalives: float = 3.0,
        open_timeout: float = 10.0,
        report_after: float = 2.0,
        ping_interval: float = 0.75,
        ping_timeout: float = 1.25,
        probe_interval: float = 0.2,
        probe_timeout: float = 1.5,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = normalise_url(url)
        self.ws_url = websocket_url(self.base_url, STREAM_PATH)
        self._token = token
        self.store = store if store is not None else StateStore()
        self._on_change = on_change
        self._on_state = on_state
        self.backoff = Backoff(
            backoff_base,
            backoff_cap,
            rng,
            early_cap_s=min(early_cap, backoff_cap),
            early_attempts=early_attempts,
        )
        self.stable_after = stable_after
        self._keepalive = keepalive
        self._dead_after_keepalives = dead_after_keepalives
        self.dead_after = keepalive * dead_after_keepalives
        self.open_timeout = open_timeout
        self.report_after = report_after
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.probe_wakes = 0  # waits the probe cut short (the gateway answered), for tests
        self.state = ConnectionState(ConnectionStatus.STOPPED, time.time())
        self.last_message_at: float | None = None  # wall clock of the last frame received
        # When the store was last known current: a frame, or a pong on a quiet stream (an idle
        # gateway's state is as true after its pong as after its last keep-alive).
        self.current_at: float | None = None
        self.connections = 0  # successful WebSocket handshakes, for diagnostics and tests
        self.resyncs = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._state_signal = asyncio.Event()
        self._update_signal = asyncio.Event()
        self._pending: Change | None = None
        self._state_dirty = True
        self._consuming = False
        self._ws: ClientConnection | None = None
        self._live_started: float | None = None
        self._closed = False
        self._blind_wake = False  # the last wait ended on a probe that never saw it down

    def __repr__(self) -> str:
        return f"<GatewayConnection {self.base_url} {self.state.status.value}>"

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the connect/apply/retry loop on the running event loop (idempotent)."""
        if self.running:
            return
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"gatewaytui-stream {self.base_url}"
        )

    async def stop(self) -> None:
        """Close the stream and end the loop; the store keeps the last state."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.state.status is not ConnectionStatus.STOPPED:
            self._set_state(ConnectionState(ConnectionStatus.STOPPED, time.time()))
        self._state_dirty = True
        self._update_signal.set()  # let an `updates()` consumer see the end

    def retry_now(self) -> None:
        """Skip the current backoff wait (a UI's "retry now"); restarts a stopped loop too."""
        if self.running:
            self._wake.set()
        else:
            self.start()

    async def __aenter__(self) -> GatewayConnection:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- waiting ----------------------------------------------------------------------------

    async def wait_status(
        self, *statuses: ConnectionStatus, timeout: float | None = None
    ) -> ConnectionState:
        """Wait until the status is one of `statuses`; return that state."""

        async def wait() -> ConnectionState:
            while self.state.status not in statuses:
                await self._state_signal.wait()
            return self.state

        return await asyncio.wait_for(wait(), timeout)

    async def wait_done(self, timeout: float | None = None) -> ConnectionState:
        """Wait until the loop has ended on its own (`unauthorized`) or been stopped."""
        task = self._task
        if task is not None and not task.done():
            _, pending = await asyncio.wait({task}, timeout=timeout)
            if pending:
                raise TimeoutError(f"the connection to {self.base_url} is still running")
        return self.state

    async def updates(self) -> AsyncIterator[Update]:
        """Coalesced updates for one consumer, until `stop()` (the last one says `stopped`).

        The first update comes at once with `state_changed=True` and, if the store already
        holds a state, a `snapshot` change naming every row (so a view that subscribes late
        misses nothing); later ones name only what changed since the previous one.
        """
        self._consuming = True
        self._state_dirty = True
        self._pending = self.store.full_change()
        self._update_signal.set()
        try:
            while True:
                await self._update_signal.wait()
                self._update_signal.clear()
                update = self.take_update()
                if update is None:
                    continue
                yield update
                if self._closed and update.state.status is ConnectionStatus.STOPPED:
                    return
        finally:
            self._consuming = False
            self._pending = None

    def take_update(self) -> Update | None:
        """What `updates()` would yield next, now (None if nothing happened): a consumer
        that is about to draw from the store between two updates catches up with it first,
        so nothing it draws is newer than the rows it shows."""
        change, self._pending = self._pending, None
        state_changed, self._state_dirty = self._state_dirty, False
        if change is None and not state_changed:
            return None
        return Update(self.state, change, state_changed)

    # -- notification -----------------------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        if previous.status is not state.status:
            log.info(
                "gateway %s: %s%s",
                self.base_url,
                state.status.value,
                f" ({state.last_error})" if state.last_error else "",
            )
        self._state_signal.set()
        self._state_signal = asyncio.Event()
        self._state_dirty = True
        self._update_signal.set()
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.exception("connection state listener failed")

    def _changed(self, change: Change) -> None:
        if change.empty:
            return
        if self._consuming:
            pending = change if self._pending is None else self._pending.merge(change)
            limit = self.store.events.maxlen
            if limit is not None and len(pending.events) > limit:
                pending = replace(pending, events=pending.events[-limit:])
            self._pending = pending
            self._update_signal.set()
        if self._on_change is not None:
            try:
                self._on_change(change)
            except Exception:
                log.exception("state change listener failed")

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        ever_live = False
        failing_since: float | None = None
        self._set_state(ConnectionState(ConnectionStatus.CONNECTING, time.time()))
        try:
            while not self._closed:
                live_started: float | None = None
                resync = unreachable = False
                try:
                    ws = await self._open()
                except InvalidStatus as exc:
                    if self._unauthorized(exc, attempt):
                        return
                    reason = describe_exception(exc)
                except TimeoutError:
                    reason = f"no answer within {self.open_timeout:g} s"
                    unreachable = True
                except (OSError, WebSocketException) as exc:
                    reason = describe_exception(exc)
                    unreachable = isinstance(exc, OSError)
                except Exception as exc:  # never let the loop die: report and retry
                    log.exception("connecting to %s failed", self.ws_url)
                    reason = f"internal error: {describe_exception(exc)}"
                else:
                    reason, resync, unreachable, live_started = await self._stream_from(ws)
                    if live_started is not None:
                        ever_live = True
                        failing_since = None
                        if time.monotonic() - live_started >= self.stable_after:
                            attempt = 0

                self.resyncs += resync
                # A resync right after a stable stream goes at once; anything else backs off.
                delay = 0.0 if resync and attempt == 0 else self.backoff.delay(attempt)
                attempt += 1
                now = time.time()
                if failing_since is None:
                    failing_since = now
                waiting = ConnectionState(
                    ConnectionStatus.RECONNECTING if ever_live else ConnectionStatus.CONNECTING,
                    failing_since if ever_live else self.state.since,
                    attempt=attempt,
                    next_retry_at=now + delay,
                    last_error=reason,
                    data_at=self.current_at,
                )
                self._set_state(waiting)
                await self._sleep(delay, probe=unreachable)
                self._set_state(replace(waiting, next_retry_at=None))
        finally:
            self._live_started = None

    async def _open(self) -> ClientConnection:
        """Connect and handshake, within `open_timeout`. A gateway that has not answered
        after `report_after` is reported at once (`last_error`, the banner shows it) while
        the attempt goes on: a slow but alive gateway (a loaded host) still gets through."""
        opening = asyncio.ensure_future(
            connect(
                self.ws_url,
                additional_headers=auth_headers(self._token),
                user_agent_header=f"gatewaytui/{gatewaytui.__version__}",
                open_timeout=self.open_timeout,
                ping_interval=None,  # our own pings, only while the stream is quiet
                close_timeout=1.0,
                max_size=MAX_MESSAGE_BYTES,
                max_queue=64,
            )
        )
        try:
            done, _ = await asyncio.wait({opening}, timeout=self.report_after)
            if not done:
                error = f"no answer within {self.report_after:g} s"
                self._set_state(replace(self.state, last_error=error, next_retry_at=None))
            return await opening
        finally:
            if not opening.done():
                opening.cancel()

    async def _stream_from(self, ws: ClientConnection) -> tuple[str, bool, bool, float | None]:
        """Mirror one connection until it ends: why it ended, whether a resync was asked,
        whether the gateway stopped answering, and when it went live (None if it never did)."""
        self.connections += 1
        self._ws = ws
        resync = dead = False
        try:
            await self._consume(ws)
            reason = "stream ended"  # not reached: _consume ends by raising _StreamEnded
        except _StreamEnded as end:
            reason, resync, dead = end.reason, end.resync, end.dead
        except Exception as exc:
            log.exception("state stream from %s failed", self.ws_url)
            reason = f"internal error: {describe_exception(exc)}"
        finally:
            self._ws = None
            live_started = self._live_started
            self._live_started = None
            if dead:  # no close handshake with a peer that does not answer: say so at once
                ws.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await ws.close()
        return reason, resync, dead, live_started

    def _unauthorized(self, exc: InvalidStatus, attempt: int) -> bool:
        """A 401/403 on connect: the state says why and the loop stops (retrying cannot help)."""
        http_status = exc.response.status_code
        if http_status not in (401, 403):
            return False
        message = error_message_from_body(http_status, bytes(exc.response.body or b""))
        self._set_state(
            ConnectionState(
                ConnectionStatus.UNAUTHORIZED,
                time.time(),
                attempt=attempt,
                last_error=http_error_text(http_status, message),
                http_status=http_status,
            )
        )
        return True

    async def _sleep(self, delay: float, *, probe: bool = False) -> None:
        """Wait out a backoff delay, or less: `retry_now()`, or (`probe`: the gateway was
        unreachable) the moment it answers a probe again."""
        self._wake.clear()
        if delay <= 0:
            return
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if probe and self.probe_interval > 0:
            waits.append(asyncio.ensure_future(self._probe_until_back()))
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _probe_until_back(self) -> None:
        """Return once the gateway answers after having been seen down. An answer to the
        very first probe ends the wait too (it may have come back between the failed attempt
        and the probe), but not twice in a row: a gateway whose health answers while its
        stream cannot be reached must not turn the backoff into a busy loop."""
        loop = asyncio.get_running_loop()
        trust_first, seen_down, first = not self._blind_wake, False, True
        while True:
            started = loop.time()
            if await answers(self.base_url, self.probe_timeout):
                if seen_down or (first and trust_first):
                    self._blind_wake = not seen_down
                    self.probe_wakes += 1
                    return
            else:
                seen_down = True
            first = False
            await asyncio.sleep(max(0.0, self.probe_interval - (loop.time() - started)))

    async def _consume(self, ws: ClientConnection) -> None:
        """Apply messages until the stream ends; raises `_StreamEnded` with the reason."""
        got_snapshot = False
        while True:
            raw = await self._receive(ws)
            self.last_message_at = self.current_at = time.time()
            try:
                message = await self._decode(raw)
            except (ValueError, SnapshotError) as exc:
                text = exc.message if isinstance(exc, SnapshotError) else "invalid JSON"
                raise _StreamEnded(f"bad message from gateway: {text}") from None
            if not got_snapshot and message.get("type") != "snapshot":
                raise _StreamEnded("stream did not start with a snapshot", resync=True)
            try:
                if message.get("type") == "snapshot":
                    change: Change | None = self.store.apply_snapshot(message, validate=False)
                    self._adopt_keepalive()
                    if not got_snapshot:
                        got_snapshot = True
                        self._blind_wake = False
                        self._live_started = time.monotonic()
                        self._set_state(ConnectionState(ConnectionStatus.LIVE, time.time()))
                else:
                    change = self.store.apply(message)
            except ResyncNeeded as exc:
                log.info("gateway %s: resync: %s", self.base_url, exc.message)
                raise _StreamEnded(f"resync: {exc.message}", resync=True) from None
            except SnapshotError as exc:
                raise _StreamEnded(f"bad snapshot from gateway: {exc.message}") from None
            if change is not None:
                self._changed(change)

    async def _receive(self, ws: ClientConnection) -> str | bytes:
        """The next frame. A stream quiet for `ping_interval` is pinged: no pong within
        `ping_timeout` means the gateway stopped answering (SIGSTOP, a wedged host), found in
        seconds rather than after `dead_after` of keep-alives missed."""
        quiet_since = time.monotonic()
        while True:
            left = self.dead_after - (time.monotonic() - quiet_since)
            if left <= 0:
                raise _StreamEnded(f"no message for {self.dead_after:g} s (keep-alives missed)")
            try:
                async with asyncio.timeout(min(self.ping_interval, left)):
                    return await ws.recv()  # cancelling recv() loses nothing
            except TimeoutError:
                pass
            except ConnectionClosed as exc:
                raise _StreamEnded(describe_exception(exc), dead=True) from None
            if time.monotonic() - quiet_since >= self.dead_after:
                continue
            try:
                pong = await ws.ping()
                async with asyncio.timeout(self.ping_timeout):
                    await pong
                if self._live_started is not None:  # pongs before the snapshot prove nothing
                    self.current_at = time.time()
            except TimeoutError:
                raise _StreamEnded(
                    f"no answer to a ping within {self.ping_timeout:g} s", dead=True
                ) from None
            except ConnectionClosed as exc:
                raise _StreamEnded(describe_exception(exc), dead=True) from None

    def _adopt_keepalive(self) -> None:
        """Judge silence by the gateway's own keep-alive interval when it is the longer one
        (`server.state_keepalive`, as its plugin options in the snapshot say)."""
        server = self.store.items["plugins"].get("server") or {}
        args = server.get("args")
        value = None
        for arg in args if isinstance(args, list) else ():
            if isinstance(arg, dict) and arg.get("id") == KEEPALIVE_ARG:
                value = arg.get("value")
        try:
            interval = parse_duration(value) if isinstance(value, str) else self._keepalive
        except ValueError:
            interval = self._keepalive
        self.dead_after = max(self._keepalive, interval) * self._dead_after_keepalives

    @staticmethod
    async def _decode(raw: str | bytes) -> dict[str, Any]:
        """Parse one frame; a snapshot is validated here, in steps that let the loop breathe."""
        message = json.loads(raw)
        if not isinstance(message, dict):
            raise ValueError("stream message is not an object")
        if message.get("type") == "snapshot":
            for _ in iter_validate_state(message.get("state")):
                await asyncio.sleep(0)
        return message

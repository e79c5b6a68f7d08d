"""The MCP server a relay bridges to: a command speaking MCP over stdio, or a Streamable HTTP URL.

Both turn one `call` frame from the gateway into a reply, or into events then an end when the
server streams, and keep the relay told whether the server can be reached (and what it
reported about itself at initialization).

**stdio**: one server process, shared by every MCP client that reaches the relay. The relay
initializes it once and answers clients' `initialize` from that result (when they ask for
the same protocol version; otherwise the request is forwarded). Request ids and progress
tokens are rewritten so clients that pick the same ids never see each other's answers, and
`notifications/progress` for a call stream back on that call. The server's own requests to a
client (sampling, elicitation, roots) cannot be routed back on a shared pipe: they are
answered with a JSON-RPC error. The process is restarted with backoff when it exits.

**http**: a transparent hop. The JSON-RPC message, the client's `mcp-*` headers (session id,
protocol version) and the answer (JSON or SSE) pass through unchanged, so sessions, server
requests on a stream and session ends work as they would directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel

from gatewaytui import __version__
from gatewaytui.schema.mcp_protocol import (
    MCPServerInfo,
    RelayCallFrame,
    RelayEndFrame,
    RelayEventFrame,
    RelayReplyFrame,
    server_info_from_initialize,
)
from gatewaytui.shared.backoff import Backoff
from gatewaytui.shared.lifecycle import Listeners, Started
from gatewaytui.shared.sse import EventTooLarge, sse_data
from gatewaytui.workers.settings import redact_url

log = logging.getLogger("gatewaytui.workers.mcp_upstream")
server_log = logging.getLogger("gatewaytui.workers.mcp_server")

Emit = Callable[[BaseModel], Awaitable[None]]
"""Sends one frame (reply, event, end) for the call to the gateway."""

DEFAULT_PROTOCOL_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "gatewaytui-mcp-relay", "version": __version__}
METHOD_NOT_FOUND = -32601
_READ_CHUNK = 64 * 1024
_RELAY_ID = re.compile(rb'"id"\s*:\s*"(gw-\d+)"')


class UpstreamError(Exception):
    """A call failed at the relay; the gateway hears about it as an `error` frame."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status if 400 <= status <= 599 else 502
        self.message = message[:4096]
        self.code = code


class UpstreamConfigError(Exception):
    """The upstream cannot work as configured (e.g. the command does not exist)."""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Upstream(Started, ABC):
    """Where calls go. Reports readiness and server info to listeners (the relay client)."""

    transport: ClassVar[str] = ""

    def __init__(self) -> None:
        self.ready = False
        self.reason: str | None = "starting"
        self.server: MCPServerInfo | None = None
        self.settled = asyncio.Event()  # set at the first ready / not ready verdict
        self._listeners = Listeners("the MCP upstream's state")

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` whenever readiness or server info change; returns an unsubscribe."""
        return self._listeners.subscribe(listener)

    def _update(self, ready: bool, reason: str | None, server: MCPServerInfo | None = None) -> None:
        changed = (ready, reason) != (self.ready, self.reason) or (
            server is not None and server != self.server
        )
        self.ready, self.reason = ready, None if ready else reason
        if server is not None:
            self.server = server
        self.settled.set()
        if changed:
            if ready:
                log.info("mcp server ready: %s", self.describe())
            else:
                log.warning("mcp server not ready: %s", reason)
            self._listeners.notify()

    def describe(self) -> str:
        s = self.server
        if s is None or not s.name:
            return "(server info unknown)"
        caps = ", ".join(s.capabilities) or "no capabilities"
        return f"{s.name} {s.version or ''} ({caps}; protocol {s.protocol_version})".strip()

    @abstractmethod
    async def start(self) -> None:
        """Begin (and keep) reaching the server; raises UpstreamConfigError if it never can."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def handle(self, call: RelayCallFrame, emit: Emit) -> None:
        """Answer one call through `emit`; raises UpstreamError when it cannot."""


# ---- stdio --------------------------------------------------------------------------------


@dataclass(eq=False)
class _Pending:
    """A client request forwarded to the server process, waiting for its answer."""

    original_id: Any
    progress: tuple[str, Any] | None = None  # (our token, the client's token)
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


class StdioUpstream(Upstream):
    """An MCP server process speaking newline-delimited JSON-RPC on stdin/stdout."""

    transport = "stdio"

    def __init__(
        self,
        command: list[str],
        *,
        protocol_version: str = DEFAULT_PROTOCOL_VERSION,
        init_timeout_s: float = 30.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        restart_base_s: float = 0.5,
        restart_cap_s: float = 30.0,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if not command:
            raise UpstreamConfigError("the MCP server command is empty")
        self.command = list(command)
        self.protocol_version = protocol_version
        self.init_timeout_s = init_timeout_s
        self.max_message_bytes = max_message_bytes
        self.cwd = cwd
        self.env = env
        self.backoff = Backoff(restart_base_s, restart_cap_s)
        self.process: asyncio.subprocess.Process | None = None
        self.init_result: dict[str, Any] | None = None
        self.starts = 0
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._progress: dict[str, _Pending] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.command[0]

    async def start(self) -> None:
        """Spawn the server once here, so a command that cannot run fails at start-up."""
        if self._supervisor is not None:
            return
        try:
            process = await self._spawn()
        except OSError as exc:
            raise UpstreamConfigError(
                f"cannot run the MCP server command {self.name!r}: {exc.strerror or exc}"
            ) from None
        self._supervisor = asyncio.create_task(self._supervise(process), name="mcp-stdio")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._stop_process()

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.starts += 1
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # the server's own log goes where the relay's stderr goes
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,  # a Ctrl+C at the relay's terminal is the relay's to handle
        )
        self.process = process
        log.info("started MCP server %s (pid %d)", self.name, process.pid)
        return process

    async def _supervise(self, process: asyncio.subprocess.Process | None) -> None:
        """Run the server; when it exits, fail its calls and start it again with backoff."""
        while True:
            if process is None:
                try:
                    process = await self._spawn()
                except OSError as exc:
                    self._update(False, f"cannot run {self.name!r}: {exc.strerror or exc}")
                    await asyncio.sleep(self.backoff.next_delay())
                    continue
            reader = asyncio.create_task(self._read_loop(process), name="mcp-stdio-reader")
            try:
                await self._initialize(process)
            except (UpstreamError, OSError, TimeoutError) as exc:
                await self._stop_process()
                if isinstance(exc, TimeoutError):
                    why = f"no answer to initialize within {self.init_timeout_s:g}s"
                elif isinstance(exc, UpstreamError) and exc.code == "upstream_exited":
                    why = f"it exited with code {process.returncode} before initializing"
                else:
                    why = exc.message if isinstance(exc, UpstreamError) else _describe(exc)
                self._update(False, f"MCP server {self.name!r} did not start: {why}")
            code = await process.wait()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._fail_pending(f"the MCP server exited (code {code}) during the call")
            if self.ready:  # it was serving (a failed start already said why)
                self._update(False, f"MCP server {self.name!r} exited with code {code}")
            process = None
            self.process = None
            delay = self.backoff.next_delay()
            log.warning("restarting the MCP server in %.1fs", delay)
            await asyncio.sleep(delay)

    async def _initialize(self, process: asyncio.subprocess.Process) -> None:
        request_id = f"gw-{next(self._ids)}"
        pending = _Pending(original_id=request_id)
        self._pending[request_id] = pending
        try:
            await self._write(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": self.protocol_version,
                        "capabilities": {},
                        "clientInfo": CLIENT_INFO,
                    },
                }
            )
            async with asyncio.timeout(self.init_timeout_s):
                while True:
                    answer = await pending.queue.get()
                    if isinstance(answer, UpstreamError):
                        raise answer
                    if "method" not in answer:
                        break
        finally:
            self._pending.pop(request_id, None)
        result = answer.get("result")
        if not isinstance(result, dict):
            error = answer.get("error")
            detail = error.get("message") if isinstance(error, dict) else "no result"
            raise UpstreamError(502, f"initialize failed: {detail}", "upstream_init_failed")
        await self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.init_result = result
        self.backoff.reset()
        self._update(True, None, server_info_from_initialize(result))

    async def _stop_process(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()  # MCP servers exit at end of input
        for step in (process.terminate, process.kill):
            try:
                async with asyncio.timeout(2.0):
                    await process.wait()
                return
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    step()
        await process.wait()

    async def _write(self, message: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            raise UpstreamError(503, "the MCP server is not running", "upstream_not_ready")
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        async with self._write_lock:
            try:
                process.stdin.write(data)
                await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise UpstreamError(
                    502, f"the MCP server closed its input: {_describe(exc)}", "upstream_exited"
                ) from None

    def _fail_pending(self, message: str) -> None:
        for pending in list(self._pending.values()):
            pending.queue.put_nowait(UpstreamError(502, message, "upstream_exited"))

    # -- reading the server's output

    async def _read_loop(self, process: asyncio.subprocess.Process) -> None:
        """Split stdout into lines with a size limit (a huge line fails only its own call)."""
        stdout = process.stdout
        assert stdout is not None
        limit = self.max_message_bytes
        buffer = bytearray()
        discarding: bytes | None = None  # the head of an oversized line being skipped
        while True:
            chunk = await stdout.read(_READ_CHUNK)
            if not chunk:  # the server is exiting: fail its calls now, not at a timeout
                code: int | str = "unknown"
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        code = await process.wait()
                self._fail_pending(f"the MCP server exited (code {code}) during the call")
                return
            start = 0
            while True:
                newline = chunk.find(b"\n", start)
                piece = chunk[start:] if newline < 0 else chunk[start:newline]
                if discarding is None:
                    buffer += piece
                    if len(buffer) > limit:
                        discarding = bytes(buffer[:512])
                        buffer.clear()
                if newline < 0:
                    break
                start = newline + 1
                if discarding is not None:
                    self._oversized(discarding)
                    discarding = None
                    continue
                line = bytes(buffer)
                buffer.clear()
                if line.strip():
                    self._on_line(line)

    def _oversized(self, head: bytes) -> None:
        match = _RELAY_ID.search(head)
        pending = self._pending.get(match.group(1).decode()) if match else None
        limit = self.max_message_bytes
        log.warning("the MCP server wrote a message over %d bytes; dropped", limit)
        if pending is not None:
            pending.queue.put_nowait(
                UpstreamError(
                    502, f"the MCP server's answer exceeds {limit} bytes", "response_too_large"
                )
            )

    def _on_line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("the MCP server wrote a line that is not JSON: %.200r", line)
            return
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict):
                self._on_message(item)

    def _on_message(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message and message["id"] is not None:
                asyncio.get_running_loop().create_task(self._answer_server_request(message))
            else:
                self._on_notification(method, message)
            return
        pending = self._pending.get(str(message.get("id")))
        if pending is None:
            log.debug("answer for an unknown request id %r dropped", message.get("id"))
            return
        pending.queue.put_nowait(message)

    def _on_notification(self, method: str, message: dict[str, Any]) -> None:
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if method == "notifications/progress":
            token = params.get("progressToken")
            pending = self._progress.get(token) if isinstance(token, str) else None
            if pending is not None and pending.progress is not None:
                restored = {**message, "params": {**params, "progressToken": pending.progress[1]}}
                pending.queue.put_nowait(restored)
            return
        if method == "notifications/message":
            server_log.info("%s: %.500s", params.get("level", "info"), params.get("data"))
            return
        log.debug("server notification %s not forwarded (no client stream)", method)

    async def _answer_server_request(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "ping":
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"], "result": {}}
        else:
            answer = {
                "jsonrpc": "2.0",
                "id": message["id"],
                "error": {
                    "code": METHOD_NOT_FOUND,
                    "message": f"{method}: the gateway relay cannot pass server requests to "
                    "clients of a shared stdio server",
                },
            }
        with contextlib.suppress(UpstreamError):
            await self._write(answer)

    # -- calls

    async def handle(self, call: RelayCallFrame, emit: Emit) -> None:
        if call.http_method == "DELETE":  # no HTTP sessions on a stdio server: nothing to end
            await emit(RelayReplyFrame(call_id=call.call_id, status=405))
            return
        message = call.message or {}
        method = message.get("method")
        request_id = message.get("id")
        if not isinstance(method, str):  # a client's answer to a server request: never asked
            await emit(RelayReplyFrame(call_id=call.call_id, status=202))
            return
        if request_id is None:
            if method not in ("notifications/initialized", "notifications/cancelled"):
                await self._write(message)  # the relay initialized the server itself
            await emit(RelayReplyFrame(call_id=call.call_id, status=202))
            return
        if not self.ready:
            raise UpstreamError(
                503, f"the MCP server is not ready: {self.reason}", "upstream_not_ready"
            )
        found = message.get("params")
        params: dict[str, Any] = found if isinstance(found, dict) else {}
        cached = self.init_result
        if (
            method == "initialize"
            and cached is not None
            and params.get("protocolVersion") == cached.get("protocolVersion")
        ):
            reply = {"jsonrpc": "2.0", "id": request_id, "result": cached}
            await emit(RelayReplyFrame(call_id=call.call_id, message=reply))
            return
        await self._forward(call.call_id, message, params, emit)

    async def _forward(
        self, call_id: str, message: dict[str, Any], params: dict[str, Any], emit: Emit
    ) -> None:
        our_id = f"gw-{next(self._ids)}"
        pending = _Pending(original_id=message["id"])
        outgoing = {**message, "id": our_id}
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            token = f"gwp-{next(self._ids)}"
            pending.progress = (token, meta["progressToken"])
            outgoing["params"] = {**params, "_meta": {**meta, "progressToken": token}}
            self._progress[token] = pending
        self._pending[our_id] = pending
        answered = False
        streamed = False
        try:
            await self._write(outgoing)
            while True:
                item = await pending.queue.get()
                if isinstance(item, UpstreamError):
                    answered = True
                    raise item
                if "method" in item:  # progress for this call: stream it
                    streamed = True
                    await emit(RelayEventFrame(call_id=call_id, message=item))
                    continue
                answered = True
                answer = {**item, "id": pending.original_id}
                if streamed:
                    await emit(RelayEventFrame(call_id=call_id, message=answer))
                    await emit(RelayEndFrame(call_id=call_id))
                else:
                    await emit(RelayReplyFrame(call_id=call_id, message=answer))
                return
        finally:
            self._pending.pop(our_id, None)
            if pending.progress is not None:
                self._progress.pop(pending.progress[0], None)
            if not answered:  # cancelled by the gateway: tell the server to stop
                cancel = {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": our_id, "reason": "cancelled by the client"},
                }
                with contextlib.suppress(UpstreamError):
                    await asyncio.shield(self._write(cancel))


# ---- Streamable HTTP ----------------------------------------------------------------------


class HttpUpstream(Upstream):
    """An MCP server's Streamable HTTP endpoint (e.g. http://10.0.0.5:8000/mcp)."""

    transport = "http"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        protocol_version: str = DEFAULT_PROTOCOL_VERSION,
        connect_timeout_s: float = 5.0,
        timeout_s: float = 300.0,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 30.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.safe_url = redact_url(url)  # for messages: no user:password from the URL
        self.headers = dict(headers or {})
        self.protocol_version = protocol_version
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self.backoff = Backoff(retry_base_s, retry_cap_s)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._recheck = asyncio.Event()
        self.probes = 0

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            headers={"User-Agent": f"gatewaytui-mcp-relay/{__version__}", **self.headers},
            timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
            transport=self._transport,
            follow_redirects=False,
            trust_env=False,  # the operator named this server; proxies from env would surprise
        )
        self._supervisor = asyncio.create_task(self._supervise(), name="mcp-http-probe")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("HttpUpstream.start() was not called")
        return self._client

    async def _supervise(self) -> None:
        """Probe until the server answers `initialize`; probe again when a call cannot reach it."""
        while True:
            try:
                info = await self.probe()
            except (httpx.HTTPError, UpstreamError) as exc:
                why = exc.message if isinstance(exc, UpstreamError) else _describe(exc)
                self._update(False, f"MCP server at {self.safe_url} unreachable: {why}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.backoff.next_delay()):
                        await self._recheck.wait()
                self._recheck.clear()
                continue
            self.backoff.reset()
            self._update(True, None, info)
            await self._recheck.wait()
            self._recheck.clear()

    async def probe(self) -> MCPServerInfo | None:
        """Initialize a session of our own to learn who the server is, then end it."""
        self.probes += 1
        request = {
            "jsonrpc": "2.0",
            "id": "gw-probe",
            "method": "initialize",
            "params": {
                "protocolVersion": self.protocol_version,
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            },
        }
        headers = {"accept": "application/json, text/event-stream"}
        async with self.client.stream(
            "POST", self.url, json=request, headers=headers, timeout=self.connect_timeout_s * 2
        ) as response:
            if response.status_code >= 400:
                raise UpstreamError(
                    502,
                    f"initialize answered HTTP {response.status_code}",
                    "upstream_init_failed",
                )
            answer: Any = None
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                async for data in _sse_data(response):
                    candidate = json.loads(data)
                    if isinstance(candidate, dict) and "method" not in candidate:
                        answer = candidate
                        break
            else:
                answer = json.loads(await response.aread())
            session = response.headers.get("mcp-session-id")
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, dict):
            raise UpstreamError(502, "initialize returned no result", "upstream_init_failed")
        if session:
            ends = {
                "mcp-session-id": session,
                "mcp-protocol-version": str(result.get("protocolVersion")),
            }
            with contextlib.suppress(httpx.HTTPError):
                await self.client.delete(self.url, headers=ends, timeout=self.connect_timeout_s)
        return server_info_from_initialize(result)

    def _unreachable(self, exc: httpx.HTTPError) -> UpstreamError:
        self._recheck.set()
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(
                504, f"the MCP server timed out: {_describe(exc)}", "upstream_timeout"
            )
        self._update(False, f"MCP server at {self.safe_url} unreachable: {_describe(exc)}")
        return UpstreamError(
            502,
            f"cannot reach the MCP server at {self.safe_url}: {_describe(exc)}",
            "upstream_unreachable",
        )

    async def handle(self, call: RelayCallFrame, emit: Emit) -> None:
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            **call.headers,
        }
        try:
            if call.http_method == "DELETE":
                response = await self.client.delete(self.url, headers=headers)
                status = response.status_code if 200 <= response.status_code <= 599 else 502
                await emit(
                    RelayReplyFrame(call_id=call.call_id, status=status, headers=_mcp(response))
                )
                return
            body = json.dumps(call.message or {}, separators=(",", ":"), ensure_ascii=False)
            async with self.client.stream("POST", self.url, content=body, headers=headers) as resp:
                await self._answer(call.call_id, resp, emit)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    async def _answer(self, call_id: str, response: httpx.Response, emit: Emit) -> None:
        status = response.status_code
        headers = _mcp(response)
        content_type = response.headers.get("content-type", "").lower()
        if 300 <= status < 400 or status < 200:
            where = response.headers.get("location", "?")
            raise UpstreamError(
                502, f"the MCP server answered HTTP {status} ({where})", "bad_upstream"
            )
        if status < 400 and content_type.startswith("text/event-stream"):
            sent = False
            async for data in _sse_data(response, self.max_message_bytes):
                try:
                    event = json.loads(data)
                except ValueError:
                    raise UpstreamError(
                        502, "the MCP server sent an event that is not JSON", "bad_upstream"
                    ) from None
                if isinstance(event, dict):
                    await emit(
                        RelayEventFrame(
                            call_id=call_id, headers={} if sent else headers, message=event
                        )
                    )
                    sent = True
            if not sent:
                raise UpstreamError(
                    502, "the MCP server ended its event stream without a message", "bad_upstream"
                )
            await emit(RelayEndFrame(call_id=call_id))
            return
        raw = await _read_limited(response, self.max_message_bytes)
        message: Any = None
        if raw.strip() and "json" in content_type:
            with contextlib.suppress(ValueError):
                message = json.loads(raw)
        if isinstance(message, dict):
            await emit(
                RelayReplyFrame(call_id=call_id, status=status, headers=headers, message=message)
            )
            return
        if status >= 400:
            snippet = raw[:300].decode("utf-8", "replace").strip()
            raise UpstreamError(
                status, f"the MCP server answered HTTP {status}: {snippet}", "upstream_http_error"
            )
        if not raw.strip():
            await emit(RelayReplyFrame(call_id=call_id, status=status, headers=headers))
            return
        raise UpstreamError(
            502,
            f"unexpected answer from the MCP server ({content_type or 'no content type'})",
            "bad_upstream",
        )


def _mcp(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("mcp-")}


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise UpstreamError(
                502, f"the MCP server's answer exceeds {limit} bytes", "response_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _sse_data(response: httpx.Response, limit: int = 16 * 1024 * 1024) -> AsyncIterator[str]:
    """The `data` of each Server-Sent Event; an oversized one fails the call (502)."""
    try:
        async for data in sse_data(response.aiter_lines(), limit):
            yield data
    except EventTooLarge:
        raise UpstreamError(
            502, f"the MCP server's answer exceeds {limit} bytes", "response_too_large"
        ) from None

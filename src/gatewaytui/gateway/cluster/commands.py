"""Operator actions forwarded to the replica that owns their target, over Redis pub/sub.

The asking replica publishes `{id, from, action, args}` on the owner's command channel and
waits for the owner's answer on its own reply channel: the owner's result, or its error with
the owner's status (404, 409, ...). No subscriber on the channel or no answer in time is a
504; Redis itself unreachable is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gatewaytui.gateway.cluster import keys
from gatewaytui.gateway.cluster.link import RedisDownError
from gatewaytui.gateway.cluster.mirror import encode
from gatewaytui.gateway.jobs import GatewayError

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import FleetNode

log = logging.getLogger("gatewaytui.gateway.cluster")

Handler = Callable[..., Awaitable[dict[str, Any]]]


class OwnerTimeoutError(GatewayError):
    status, type, code = 504, "server_error", "owner_timeout"


class ClusterUnavailableError(GatewayError):
    status, type, code = 503, "server_error", "cluster_degraded"


class RemoteError(GatewayError):
    """An error the owner answered with: its status and body, passed on unchanged."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        error = body.get("error")
        if not isinstance(error, dict):
            error = {}
        super().__init__(str(error.get("message") or "the owner replica failed"), status=status)
        self._body = body

    def body(self) -> dict[str, Any]:
        return self._body


class CommandBus:
    def __init__(self, node: FleetNode, handlers: dict[str, Handler]) -> None:
        self.node = node
        self.handlers = handlers
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def request(self, replica: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run `action` on `replica` and return its result (or raise its error)."""
        command_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        message = encode({"id": command_id, "from": self.node.id, "action": action, "args": args})
        timeout = self.node.config.cluster_command_timeout
        try:
            try:
                receivers = await self.node.link.call(
                    lambda c: c.publish(keys.commands(replica), message)
                )
            except RedisDownError:
                raise ClusterUnavailableError(
                    f"Redis is unreachable, so the action cannot reach replica {replica!r} "
                    "(this replica is degraded; act on that replica directly)"
                ) from None
            if not receivers:
                raise OwnerTimeoutError(f"replica {replica!r} is not listening for actions")
            try:
                async with asyncio.timeout(timeout):
                    reply = await future
            except TimeoutError:
                raise OwnerTimeoutError(
                    f"replica {replica!r} did not answer within {timeout:g}s"
                ) from None
        finally:
            self._pending.pop(command_id, None)
        if reply.get("ok"):
            result = reply.get("result")
            return result if isinstance(result, dict) else {}
        raise RemoteError(int(reply.get("status") or 502), reply.get("body") or {})

    def on_reply(self, message: dict[str, Any]) -> None:
        future = self._pending.get(str(message.get("id")))
        if future is not None and not future.done():
            future.set_result(message)

    def on_command(self, message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, message: dict[str, Any]) -> None:
        reply_to, command_id = message.get("from"), message.get("id")
        if not isinstance(reply_to, str) or not command_id:
            return
        handler = self.handlers.get(str(message.get("action")))
        args = message.get("args")
        if not isinstance(args, dict):
            args = {}
        reply: dict[str, Any] = {"id": command_id}
        try:
            if handler is None:
                raise GatewayError(f"unknown action {message.get('action')!r}", status=400)
            reply.update(ok=True, result=await handler(**args))
        except GatewayError as exc:
            reply.update(ok=False, status=exc.status, body=exc.body())
        except Exception as exc:  # a bug must answer too, or the asker waits for its timeout
            log.exception("forwarded action %s failed", message.get("action"))
            reply.update(ok=False, status=500, body=GatewayError(str(exc)).body())
        self.node.mirror.publish_now()  # the asker's panel sees the change without waiting
        try:
            await self.node.link.call(lambda c: c.publish(keys.replies(reply_to), encode(reply)))
        except RedisDownError:
            log.warning("could not answer forwarded action %s: redis is down", command_id)

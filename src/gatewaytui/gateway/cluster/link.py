"""The replica's connection to Redis, and whether Redis is usable right now.

Every call is bounded by `cluster.redis_timeout`; a failure marks the link down (the replica
is `degraded` and serves its own workers), and only the heartbeat marks it up again, which
starts a catch-up. Nothing on a request's path ever waits for Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("gatewaytui.gateway.cluster")
T = TypeVar("T")

# What a Redis outage looks like from redis.asyncio: its own errors, sockets, timeouts.
LINK_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class RedisDownError(Exception):
    """Redis is unreachable or too slow: the caller falls back to this replica alone."""


def redacted(url: str) -> str:
    """The Redis URL without credentials, for logs and events (the URL is a secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    except ValueError:
        return "<redis url>"


class RedisLink:
    """Two clients on one URL: bounded calls, and a second pool for blocking reads
    (pub/sub and XREAD), which must not hold the bounded pool's connections."""

    def __init__(
        self,
        url: str,
        timeout: float,
        on_change: Callable[[bool, str], None],
    ) -> None:
        self.timeout = timeout
        self.where = redacted(url)
        no_retry = Retry(NoBackoff(), 0)  # a retry would hide an outage behind its backoff
        self.client: aioredis.Redis = aioredis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=no_retry,
        )
        self.blocking: aioredis.Redis = aioredis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self.up = False
        self.ever_up = False
        self.up_event = asyncio.Event()
        self._on_change = on_change

    async def call(self, run: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run one Redis call (or pipeline) within the timeout; RedisDownError if it fails."""
        try:
            async with asyncio.timeout(self.timeout):
                return await run(self.client)
        except LINK_ERRORS as exc:
            self.set_down(exc)
            raise RedisDownError(str(exc) or type(exc).__name__) from None

    def set_down(self, exc: BaseException | str) -> None:
        if not self.up:
            return
        self.up = False
        self.up_event.clear()
        reason = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
        log.warning("redis at %s unreachable: %s", self.where, reason)
        self._on_change(False, reason)

    def set_up(self) -> None:
        if self.up:
            return
        self.up = True
        self.ever_up = True
        self.up_event.set()
        self._on_change(True, "")

    async def close(self) -> None:
        for client in (self.client, self.blocking):
            try:
                await client.aclose()
            except Exception:  # closing a dead connection may fail in many ways
                log.debug("closing redis client failed", exc_info=True)


def loads(raw: Any) -> Any:
    """JSON from Redis, or None for a missing or broken value (never raises)."""
    import json

    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        log.warning("ignored a value in redis that is not JSON")
        return None

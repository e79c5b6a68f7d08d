"""The sockets the gateway serves on turn Nagle off on every accepted connection: with it on,
each small answer on a keep-alive connection waited for the client's delayed ACK (~40 ms a
request: 640 req/s instead of ~3,000 in bench/cluster.py's SO_REUSEPORT harness)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gatewaytui.gateway.server import bind_socket
from support.ports import reserve_port


async def _nodelay_of_accepted(sock: socket.socket) -> int:
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = writer.get_extra_info("socket")
        seen.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    port = sock.getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(seen, 10)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("make", [lambda: bind_socket("127.0.0.1", 0), reserve_port])
def test_accepted_connections_have_nagle_off(make):
    assert asyncio.run(_nodelay_of_accepted(make())) != 0

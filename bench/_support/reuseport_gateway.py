"""One gateway replica serving a port shared with other processes (SO_REUSEPORT, the kernel
spreads connections across them) and a private port of its own (for its workers).

    python bench/_support/reuseport_gateway.py SHARED_PORT PRIVATE_PORT [REDIS_URL REPLICA_ID]
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from pathlib import Path

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.server import bind_socket, make_server


def shared_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see bind_socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.set_inheritable(True)
    return sock


async def main() -> None:
    shared, private = int(sys.argv[1]), int(sys.argv[2])
    files = Path(tempfile.mkdtemp(prefix="bench-reuseport-"))  # not the working directory
    overrides: dict[str, str] = {
        "server__port": str(private),
        "server__open": "true",
        "backends__store_path": str(files / "backends.yaml"),
        "history__path": str(files / "history.sqlite3"),
    }
    if len(sys.argv) > 4:
        overrides.update(cluster__redis_url=sys.argv[3], cluster__replica_id=sys.argv[4])
        overrides["cluster__advertise_url"] = f"http://127.0.0.1:{private}"
    gateway = Gateway(GatewayConfig.build(**overrides))
    gateway.listen = f"127.0.0.1:{private}"
    server = make_server(gateway, handle_signals=True)
    await server.serve(sockets=[shared_socket(shared), bind_socket("127.0.0.1", private)])


if __name__ == "__main__":
    asyncio.run(main())

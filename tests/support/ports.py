"""Loopback ports for servers the tests start (always the kernel's choice: never a fixed port,
so tests can run in parallel with pytest-xdist)."""

from __future__ import annotations

import socket


def reserve_port() -> socket.socket:
    """A bound, not listening socket: connections to it are refused until a server uses it
    (proto TCP so asyncio turns Nagle off on what it accepts: see gateway.server.bind_socket)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A port that was free a moment ago, for a child process that must bind it itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

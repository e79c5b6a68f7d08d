"""Slow connections end (issue 11, item 8): a header deadline, a connection cap, and log
lines that a client hanging up mid-body cannot multiply. Real server, raw sockets."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import time

import httpx

from gatewaytui.gateway.log_limits import RateLimitFilter


def _connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def test_idle_and_dribbling_connections_are_closed(make_gateway):
    gw = make_gateway(server__header_timeout="300ms")
    # The reads wait at most 4 s: the 300 ms header timeout closes both long before, and
    # nothing else would within that bound (uvicorn's own keep-alive is 5 s).
    idle = _connect(gw.port, timeout=4)
    dribble = _connect(gw.port, timeout=4)
    dribble.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes
    assert idle.recv(100) == b"" and dribble.recv(100) == b""  # closed by the gateway
    idle.close()
    dribble.close()
    assert httpx.get(gw.url + "/healthz").status_code == 200


def _wait_open(gw, n: int) -> None:
    gw.wait_for(lambda _: len(gw.server.server_state.connections) == n)


def _busy(port: int) -> socket.socket:
    """A connection in the middle of a request: headers done, body still owed."""
    sock = _connect(port)
    sock.sendall(
        b"POST /api/backends HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    return sock


def _healthz_on(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_over_the_cap_the_longest_idle_connection_makes_room(make_gateway):
    """Idle connections cannot keep /healthz out: the one that waited longest for headers
    is closed for the newcomer, which is served."""
    gw = make_gateway(server__max_connections="3", server__header_timeout="20s")
    oldest, idle = _connect(gw.port, timeout=5), _connect(gw.port, timeout=5)
    busy = _busy(gw.port)
    _wait_open(gw, 3)  # the three are accepted before the newcomer
    newcomer = _connect(gw.port, timeout=5)
    assert _healthz_on(newcomer).startswith(b"HTTP/1.1 200")
    assert oldest.recv(100) == b""  # closed to make room
    idle.settimeout(0.3)
    with contextlib.suppress(TimeoutError):
        assert idle.recv(100) != b""  # still open (a timeout): only one had to go
    for sock in (oldest, idle, busy, newcomer):
        sock.close()


def test_connections_over_the_cap_are_closed_on_accept_when_all_are_busy(make_gateway):
    gw = make_gateway(server__max_connections="3", server__header_timeout="20s")
    held = [_busy(gw.port) for _ in range(3)]
    _wait_open(gw, 3)
    extra = _connect(gw.port)
    extra.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        assert extra.recv(100) == b""
    extra.close()
    for sock in held:
        sock.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert httpx.get(gw.url + "/healthz", timeout=2).status_code == 200
            break
        except (httpx.TransportError, AssertionError):
            assert time.monotonic() < deadline


def test_a_client_hanging_up_mid_body_is_one_line(make_gateway, caplog):
    gw = make_gateway()
    caplog.set_level(logging.INFO)
    for _ in range(3):
        sock = _connect(gw.port)
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":'
        )
        sock.close()
    gw.wait_for(lambda g: not g.jobs)
    time.sleep(0)  # nothing to wait for: the hang-ups were handled in the requests
    deadline = time.monotonic() + 5
    while not any("hung up" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)
    assert not any("Exception in ASGI application" in r.getMessage() for r in caplog.records)


def test_rate_limit_filter_keeps_a_few_lines_per_window():
    limit = RateLimitFilter(burst=2, window=60)
    record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "accept failed", (), None)
    passed = [limit.filter(record) for _ in range(100)]
    assert passed.count(True) == 2 and limit.dropped == 98


def test_accept_errors_never_carry_a_traceback():
    """asyncio's EMFILE at accept (it retries by itself): one line, even the first time."""
    limit = RateLimitFilter(burst=2, window=60)
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        record = logging.LogRecord(
            "asyncio",
            logging.ERROR,
            __file__,
            1,
            "socket.accept() out of system resource",
            (),
            sys.exc_info(),
        )
    assert limit.filter(record) and record.exc_info is None


def test_the_cap_leaves_room_for_an_accept_burst(monkeypatch):
    """At a 1,024 descriptor limit the cap stays below it by the reserve and three accept
    batches (asyncio accepts a batch before any is counted)."""
    from gatewaytui.gateway import http_limits

    monkeypatch.setattr(http_limits.resource, "getrlimit", lambda _: (1024, 1024))
    assert http_limits.connection_cap(1000) == 1024 - 64 - 3 * http_limits.ACCEPT_BACKLOG
    monkeypatch.setattr(http_limits.resource, "getrlimit", lambda _: (65536, 65536))
    assert http_limits.connection_cap(1000) == 1000

"""Does the gateway answer at all? A cheap HTTP probe (`GET /healthz`, short timeout) that a
reconnect loop runs while it waits out its backoff, so a gateway that comes back is followed
within a fraction of a second instead of after the rest of a multi-second wait.

Any HTTP status line counts as an answer (a 503 while draining is a gateway that answers); a
refused connection, a reset or silence past the timeout do not. A socket that the kernel
accepts but nobody reads (a SIGSTOPped gateway, a silent TCP server) is not an answer: the
probe needs the status line back. The probe sends no token and reads nothing but that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

PROBE_PATH = "/healthz"


def _probe_context() -> ssl.SSLContext:
    """TLS for a liveness probe only: it sends no secret and trusts nothing it reads (the
    status line), so it does not verify; the real connection verifies as it always does."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def answers(base_url: str, timeout: float) -> bool:
    """True when something at `base_url` answers an HTTP request within `timeout` seconds."""
    parts = urlsplit(base_url)
    secure = parts.scheme in ("https", "wss")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=_probe_context() if secure else None
            )
            host_header = f"[{host}]" if ":" in host else host
            writer.write(
                f"GET {PROBE_PATH} HTTP/1.1\r\nHost: {host_header}:{port}\r\n"
                "User-Agent: gatewaytui-probe\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            await writer.drain()
            line = await reader.readline()
    except (OSError, TimeoutError, ssl.SSLError, ValueError, UnicodeError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.2):
                    await writer.wait_closed()
    return line.startswith(b"HTTP/")

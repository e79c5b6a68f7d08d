"""Reading Server-Sent Events: the `data` of each event, as OpenAI and MCP servers send it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

# The read buffer of the package's aiohttp sessions: a stream line longer than twice this
# fails the call (aiohttp raises LineTooLong) rather than growing without bound.
READ_BUFFER_BYTES = 4 * 1024 * 1024


class EventTooLarge(ValueError):
    """One event's data grew past the caller's limit."""


async def sse_data(lines: AsyncIterator[str], limit: int | None = None) -> AsyncIterator[str]:
    """The `data` payload of each event (multi-line data joined with newlines).

    Comments and other fields are skipped, as are events without data (primers). With
    `limit`, an event whose data exceeds that many characters raises EventTooLarge.
    """
    buffer: list[str] = []
    size = 0
    async for line in lines:
        if not line:
            if buffer:
                yield "\n".join(buffer)
            buffer, size = [], 0
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field != "data":
            continue
        value = value[1:] if value.startswith(" ") else value
        size += len(value)
        if limit is not None and size > limit:
            raise EventTooLarge(f"an event exceeds {limit} bytes")
        buffer.append(value)
    if buffer:
        yield "\n".join(buffer)


async def body_lines(body: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """A response body's lines (aiohttp's `StreamReader` yields them) without line ends.

    aiohttp splits at LF only; a line with a CR in it is split there too (SSE allows a lone
    CR as a line end, and a JSON chunk cannot contain one). A stream of lone CRs only
    arrives whole.
    """
    async for raw in body:
        line = raw.decode("utf-8", "replace")
        if line.endswith("\n"):
            line = line[:-1]
        if "\r" not in line:
            yield line
            continue
        if line.endswith("\r"):
            line = line[:-1]
        for part in line.split("\r"):
            yield part


class SseSplitter:
    """Bytes in, the `data` payload of each complete event out — as bytes, never decoded, so
    a chunk the reader does not need to understand can be passed on exactly as it came.

    Feed it whatever the socket had (`feed`), then `close` for an event left without its
    blank line. Lines may end in LF, CRLF or CR. `overflow` turns true once the unfinished
    rest exceeds `limit` bytes (the caller fails the stream after passing on what was
    complete); the events before it are still returned.
    """

    __slots__ = ("_rest", "limit", "overflow")

    def __init__(self, limit: int) -> None:
        self._rest = b""
        self.limit = limit
        self.overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._rest + data if self._rest else data
        if b"\r" in buffer:
            held = buffer.endswith(b"\r")  # its LF may come with the next read
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buffer += b"\r"
        parts = buffer.split(b"\n\n")
        self._rest = parts.pop()
        limit = self.limit
        if len(self._rest) > limit:
            self.overflow = True
            self._rest = b""
        out: list[bytes] = []
        for event in parts:
            if len(event) > limit:  # complete, but too long: what came before it still counts
                self.overflow = True
                self._rest = b""
                break
            payload = _payload(event)
            if payload is not None:
                out.append(payload)
        return out

    def close(self) -> list[bytes]:
        rest, self._rest = self._rest.rstrip(b"\r\n"), b""
        payload = _payload(rest) if rest else None
        return [payload] if payload is not None else []


def _payload(event: bytes) -> bytes | None:
    """The data of one event (multi-line data joined with LF); None without data."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # the usual shape: one `data: {...}` line
    lines: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None

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

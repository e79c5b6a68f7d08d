"""Reading Server-Sent Events: the `data` of each event, as OpenAI and MCP servers send it."""

from __future__ import annotations

from collections.abc import AsyncIterator


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

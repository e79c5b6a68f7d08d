"""JSON for the hot path: orjson where its wheel is installed, the standard library otherwise.

Measured in one run (bench/backend_overhead.py, docs/benchmarks.md): orjson parses a stream
chunk or a frame several times faster than `json`, and encodes a response body faster still.
Both produce compact UTF-8 (no spaces, non-ASCII kept); orjson writes NaN/Infinity as null
where `json` writes the non-standard tokens, which no OpenAI-style body carries.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the pure fallback, exercised where no wheel exists
    orjson = None  # type: ignore[assignment]

BACKEND = "orjson" if orjson is not None else "json"


def _std_dumps(value: Any) -> bytes:
    """Never fails on a string that cannot be UTF-8 encoded (a lone surrogate, which orjson
    refuses): that document falls back to ASCII escapes, so one bad string cannot make the
    state, the stream or a response fail to serialise."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


if orjson is not None:
    loads = orjson.loads
    JSONDecodeError: type[ValueError] = orjson.JSONDecodeError

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON bytes (the standard library for what orjson refuses, e.g.
        integers over 64 bits or non-string keys)."""
        try:
            return orjson.dumps(value)
        except TypeError:
            return _std_dumps(value)

else:  # pragma: no cover
    loads = json.loads
    JSONDecodeError = json.JSONDecodeError
    dumps = _std_dumps


def dumps_text(value: Any) -> str:
    """`dumps` as str (WebSocket text frames)."""
    return dumps(value).decode()

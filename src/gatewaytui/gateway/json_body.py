"""One JSON body parser for every HTTP route, and one JSON encoder that never fails.

Request bodies: strict UTF-8 and no lone surrogates (`"\\ud800"` escapes that pair with
nothing). Python's `json` accepts those escapes and yields strings that cannot be encoded
back to UTF-8, so one such string used to poison every later serialisation (the state,
the stream, /metrics). They are refused here with a 400, as the worker protocol (pydantic)
already refuses them in frames. The size limit is enforced while reading, by the ASGI
guard (`http_guard.py`), before a body reaches this parser.

Encoding: `dumps` is the gateway's one JSON encoder (state, stream, SSE, frames). Should a
string that cannot be UTF-8 encoded reach it anyway (a backend's answer, a future bug), it
falls back to ASCII escapes instead of failing the whole document.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.shared import codec

# A `\uD800`-`\uDFFF` escape anywhere in the raw body: only then can a lone surrogate exist
# (raw UTF-8 cannot carry one: the strict decoder refuses it), so the common body skips
# the walk entirely.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidBodyError(GatewayError):
    status, type, code = 400, "invalid_request_error", "invalid_json"


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            for key, child in item.items():
                if _LONE_SURROGATE.search(key):
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(raw: bytes) -> Any:
    """The parsed body, or `InvalidBodyError` (400) for bad UTF-8, bad JSON, lone surrogates
    and non-finite numbers (`NaN`, `Infinity`: not JSON, and not re-encodable as JSON)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBodyError(
            f"request body is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    if codec.BACKEND == "orjson":  # strict already: no lone surrogates, no NaN
        try:
            return codec.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidBodyError(f"request body is not valid JSON: {exc}"[:300]) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidBodyError(f"request body is not valid JSON: {exc}"[:300]) from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise InvalidBodyError(
            "request body contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff); "
            "strings must be valid Unicode"
        )
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json_object(raw: bytes, *, what: str = "a JSON object") -> dict[str, Any]:
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise InvalidBodyError(f"request body must be {what}", code="invalid_request")
    return value


def dumps(message: Any) -> str:
    """Compact JSON that can always be UTF-8 encoded (`shared.codec`: orjson, and ASCII
    escapes as the fallback for what it refuses)."""
    return codec.dumps_text(message)


def safe_text(value: str) -> str:
    """`value` with anything that cannot be UTF-8 encoded replaced (for labels, headers)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value

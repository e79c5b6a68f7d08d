"""What /openapi.json must say that FastAPI cannot infer: the path parameters of the action
routes (their handlers read `request.path_params`), the request bodies of the admin routes
(their handlers parse the body themselves, through the one JSON parser), and the two hot
OpenAI routes, which are plain Starlette routes (no per-request dependency solving) and so
invisible to FastAPI. Fuzzers (schemathesis) generate bodies only from what is described."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from gatewaytui.schema.api import ServerDrainRequest, ServerUndrainRequest
from gatewaytui.schema.backends import BackendSpec
from gatewaytui.schema.ids import WORKER_ID_MAX_LENGTH

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type"],
        }
    },
    "required": ["error"],
}

_MESSAGE = {
    "type": "object",
    "properties": {"role": {"type": "string"}, "content": {}},
    "required": ["role"],
}

_CHAT_REQUEST = {
    "type": "object",
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {"type": "array", "items": _MESSAGE, "minItems": 1},
        "stream": {"type": "boolean"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number"},
        "stream_options": {"type": "object"},
    },
    "required": ["model", "messages"],
}

_EMBEDDINGS_REQUEST = {
    "type": "object",
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            ]
        },
    },
    "required": ["model", "input"],
}


def path_parameters(path: str) -> dict[str, Any]:
    """`openapi_extra` naming every `{param}` of `path` as a required string parameter."""
    params = []
    for name in _PARAM.findall(path):
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if name == "worker_id":
            schema["maxLength"] = WORKER_ID_MAX_LENGTH
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return {"parameters": params} if params else {}


def _operation(summary: str, request: dict[str, Any], streams: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    errors = {
        str(status): {
            "description": why,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}
            },
        }
        for status, why in (
            (400, "bad request body"),
            (401, "missing or wrong API key"),
            (404, "unknown model"),
            (413, "body too large (or its job frame would be)"),
            (415, "not JSON"),
            (502, "worker failed"),
            (503, "draining, queue full or queue timeout"),
            (504, "request timeout"),
        )
    }
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {
            "200": {
                "description": "the answer; header X-Job-Id names the job",
                "content": ok,
                "headers": {"X-Job-Id": {"schema": {"type": "string"}}},
            },
            **errors,
        },
    }


_REF = "#/components/schemas/{model}"

# (method, path) -> (model, required, partial): bodies the admin handlers parse themselves.
_ADMIN_BODIES: dict[tuple[str, str], tuple[type[BaseModel], bool, bool]] = {
    ("post", "/api/backends"): (BackendSpec, True, False),
    ("put", "/api/backends/{backend_id}"): (BackendSpec, True, False),
    ("patch", "/api/backends/{backend_id}"): (BackendSpec, True, True),
    ("post", "/api/backends/{backend_id}/probe"): (BackendSpec, False, True),
    ("post", "/api/server/drain"): (ServerDrainRequest, False, False),
    ("post", "/api/server/undrain"): (ServerUndrainRequest, False, False),
}


def _describe_admin_bodies(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for (method, path), (model, required, partial) in _ADMIN_BODIES.items():
        operation = schema.get("paths", {}).get(path, {}).get(method)
        if operation is None or "requestBody" in operation:
            continue
        body = model.model_json_schema(ref_template=_REF)
        components.update(body.pop("$defs", {}))
        if partial:  # any subset of the fields (PATCH, a dry-run probe's overrides)
            body = {**body, "title": f"{body.get('title', model.__name__)} (partial)"}
            body.pop("required", None)
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": body}},
        }


def describe_plain_routes(app: FastAPI) -> None:
    """Add the OpenAI routes to the app's OpenAPI document (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        paths = schema.setdefault("paths", {})
        paths["/v1/chat/completions"] = {
            "post": _operation("OpenAI chat completion (SSE when stream)", _CHAT_REQUEST, True)
        }
        paths["/v1/embeddings"] = {
            "post": _operation("OpenAI embeddings, partitioned", _EMBEDDINGS_REQUEST, False)
        }
        schema.setdefault("components", {}).setdefault("schemas", {})["OpenAIError"] = _ERROR
        _describe_admin_bodies(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

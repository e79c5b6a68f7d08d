"""The backends API's errors (each an HTTP status and an OpenAI-style body)."""

from __future__ import annotations

from typing import Any

from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.schema.backends import (
    describe_field_errors,
)

# ---- errors ---------------------------------------------------------------------------------


class BackendNotFoundError(GatewayError):
    status, type, code = 404, "invalid_request_error", "not_found"


class BackendExistsError(GatewayError):
    status, type, code = 409, "invalid_request_error", "backend_exists"


class BackendInvalidError(GatewayError):
    """422 with one message per field (`fields`), for forms to show next to each input."""

    status, type, code = 422, "invalid_request_error", "invalid_backend"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(f"invalid backend: {describe_field_errors(fields)}")
        self.fields = fields

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["param"] = next(iter(self.fields), None)
        body["error"]["fields"] = self.fields
        return body


class RevisionConflictError(GatewayError):
    """409: the edit named a revision that is no longer current; `current` is the backend now."""

    status, type, code = 409, "invalid_request_error", "revision_conflict"

    def __init__(self, message: str, current: dict[str, Any]) -> None:
        super().__init__(message)
        self.current = current

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["current"] = self.current
        return body


class StoreWriteError(GatewayError):
    status, type, code = 500, "server_error", "store_error"

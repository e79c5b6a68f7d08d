"""Three audiences, three secrets: API clients, workers/relays, and operators (with roles).

Tokens are compared in constant time against every configured token. An audience with no
configured secret is open, which is only sensible on loopback (the default bind).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from gatewaytui.gateway.api_keys import key_name, parse_api_keys
from gatewaytui.shared.operator_token import load_or_create, token_path

Role = Literal["viewer", "operator"]


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer …` header (or `x-api-key`), if any."""
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    api_key = headers.get("x-api-key")
    return api_key.strip() if api_key else None


def _matches(token: str | None, secrets: Iterable[str]) -> bool:
    if token is None:
        return False
    candidate = token.encode()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(candidate, secret.encode())
    return found


class Auth:
    def __init__(
        self,
        api_keys: Iterable[str] = (),
        worker_key: str = "",
        operator_tokens: Iterable[str] = (),
        viewer_tokens: Iterable[str] = (),
    ) -> None:
        self.key_names = parse_api_keys(api_keys)  # key -> name (`name=key` entries)
        self.api_keys = tuple(self.key_names)
        self.worker_keys = (worker_key,) if worker_key else ()
        self.operator_tokens = tuple(operator_tokens)
        self.viewer_tokens = tuple(viewer_tokens)

    @property
    def operators_open(self) -> bool:
        return not (self.operator_tokens or self.viewer_tokens)

    def api_ok(self, token: str | None) -> bool:
        return not self.api_keys or _matches(token, self.api_keys)

    def api_key_name(self, token: str | None) -> str | None:
        """The name of the API key a request used (None when API auth is open or no match)."""
        return key_name(token, self.key_names) if self.key_names else None

    def worker_ok(self, token: str | None) -> bool:
        return not self.worker_keys or _matches(token, self.worker_keys)

    def operator_role(self, token: str | None) -> Role | None:
        """The role a token grants, or None for a stranger."""
        if self.operators_open:
            return "operator"
        if _matches(token, self.operator_tokens):
            return "operator"
        if _matches(token, self.viewer_tokens):
            return "viewer"
        return None

    @classmethod
    def from_config(cls, config: Any) -> Auth:
        """The secrets of a gateway's config. Secure by default: with no operator or viewer
        token and without `server.open`, the operator API is not open; it takes the token of
        `server.token_file` (generated there at first start, mode 0600)."""
        operators = tuple(config.operator_tokens)
        if not operators and not config.viewer_tokens and not config.open:
            operators = (load_or_create(token_path(config.token_file)),)
        return cls(config.api_keys, config.worker_key, operators, config.viewer_tokens)

    def open_audiences(self) -> list[str]:
        names = []
        if not self.api_keys:
            names.append("API clients")
        if not self.worker_keys:
            names.append("workers")
        if self.operators_open:
            names.append("operators")
        return names

"""Named API keys: usage and the panel speak of `team-search`, never of the secret.

`server.api_keys` entries are `name=key` or a bare key; a bare key is named by a stable
short fingerprint (`key-1a2b3c4d`, the first 8 hex digits of its SHA-256), which says
nothing useful about the key itself. Only names ever leave this module.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from gatewaytui.gateway.options import OptionError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")


class ApiKeyError(OptionError):
    """A malformed `server.api_keys` entry (the message never includes the key)."""


def fingerprint(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def parse_api_keys(entries: Iterable[str]) -> dict[str, str]:
    """`name=key` / bare-key entries -> {key: name}. A key that contains `=` must be named
    (the first `=` splits). Duplicate names or keys are refused."""
    by_key: dict[str, str] = {}
    names: set[str] = set()
    for number, entry in enumerate(entries, 1):
        name, sep, key = entry.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not key:
            name, key = fingerprint(entry.strip()), entry.strip()
        elif not NAME_RE.match(name):
            raise ApiKeyError(
                f"server.api_keys entry {number}: the name before '=' must be letters, digits "
                "or _.:@- (at most 64)"
            )
        if not key:
            raise ApiKeyError(f"server.api_keys entry {number}: empty key")
        if key in by_key:
            raise ApiKeyError(f"server.api_keys entry {number}: the same key is listed twice")
        if name in names:
            raise ApiKeyError(f"server.api_keys entry {number}: the name {name!r} is used twice")
        by_key[key] = name
        names.add(name)
    return by_key


def key_name(token: str | None, by_key: dict[str, str]) -> str | None:
    """The name of the key `token` matches (compared in constant time with every key)."""
    if token is None:
        return None
    candidate = token.encode()
    found: str | None = None
    for key, name in by_key.items():
        if hmac.compare_digest(candidate, key.encode()):
            found = name
    return found

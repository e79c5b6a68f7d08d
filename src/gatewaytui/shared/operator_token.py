"""The operator token a gateway generates at first start, and where local tools find it.

Secure by default (issue 11): with no operator or viewer token configured and without
`server.open`, the gateway does not run its operator API open; it reads (or creates) one
token in a 0600 file, like Jupyter's. The panel, `demo` and `open` read the same file when
they talk to a gateway on this machine (a loopback URL) and were given no token.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from gatewaytui.shared.files import atomic_write

TOKEN_FILE_NAME = "operator-token"


def default_token_path() -> Path:
    """`$XDG_STATE_HOME/gatewaytui/operator-token` (`~/.local/state/gatewaytui/…`)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "gatewaytui" / TOKEN_FILE_NAME


def token_path(configured: str = "") -> Path:
    return Path(configured).expanduser() if configured else default_token_path()


def read_token(path: Path) -> str | None:
    """The token in `path`, or None when the file is absent, empty or unreadable."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def load_or_create(path: Path) -> str:
    """The token of `path`, created (random, mode 0600, written atomically) if missing."""
    existing = read_token(path)
    if existing is not None:
        return existing
    token = "gwt_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    atomic_write(draft, (token + "\n").encode())  # atomic_write's temp file is 0600
    try:
        os.link(draft, path)  # exclusive: gateways starting together agree on one token
    except FileExistsError:
        pass
    finally:
        os.unlink(draft)
    return read_token(path) or token


def is_local_url(url: str) -> bool:
    """A gateway URL on this machine (loopback), where the local token file applies."""
    host = (urlsplit(url if "://" in url else f"http://{url}").hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_token(url: str, configured_path: str = "") -> str | None:
    """The generated token for a gateway at a loopback `url` (None elsewhere or if none)."""
    if not is_local_url(url):
        return None
    return read_token(token_path(configured_path or os.environ.get("SERVER_TOKEN_FILE", "")))

"""The backends file: a YAML document the gateway loads at start and rewrites on every edit.

Every write is atomic (a temp file in the same directory, fsync, rename, fsync of the
directory), so a crash or a kill at any moment leaves either the old file or the new one,
never a torn one; an edit is acknowledged only after its write is durable. A file that is
broken at start is reported with its line and left untouched, and a file changed by someone
else while the gateway runs is never overwritten (the edit is refused instead).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gatewaytui.gateway.clock import iso
from gatewaytui.schema.backends import BackendSpec, describe_field_errors, field_errors
from gatewaytui.shared.files import atomic_write

STORE_VERSION = 1
HEADER = (
    "# Backends of a gatewaytui gateway (docs/backends.md). The gateway rewrites this file on\n"
    "# every edit made through its API or panel; edit it by hand only while it is stopped.\n"
)


class BackendStoreError(Exception):
    """The file cannot be used: the message names the file, the line and the problem."""


class StoreChangedError(BackendStoreError):
    """The file changed on disk since the gateway read or wrote it; it will not overwrite it."""


@dataclass
class StoredBackend:
    """One entry: the spec plus its revision (bumped on every accepted edit)."""

    spec: BackendSpec
    revision: int = 1
    updated_at: float = field(default_factory=time.time)

    def to_doc(self) -> dict[str, Any]:
        spec = self.spec
        data: dict[str, Any] = {
            "id": spec.id,
            "revision": self.revision,
            "updated_at": iso(self.updated_at),
            "type": spec.type,
            "url": spec.url,
            "enabled": spec.enabled,
        }
        if spec.api_key is not None:
            data["api_key"] = spec.api_key.get_secret_value()
        rest = spec.model_dump(
            mode="json",
            exclude_defaults=True,
            exclude={"id", "type", "url", "enabled", "api_key"},
        )
        data.update(rest)
        return data


def _fingerprint(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class BackendStore:
    """Reads and atomically writes the backends file at `path`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._seen: str | None = None  # fingerprint of the bytes last read or written

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendStoreError(f"{self.path}: cannot read: {exc.strerror or exc}") from None

    def load(self) -> list[StoredBackend]:
        """The stored backends; none if the file does not exist yet."""
        data = self._read_bytes()
        self._seen = _fingerprint(data)
        self._remove_leftovers()
        if data is None:
            return []
        return parse_store(data, str(self.path))

    def _remove_leftovers(self) -> None:
        """Temp files of writes that a crash interrupted (the real file is intact)."""
        with contextlib.suppress(OSError):
            for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def save(self, backends: Sequence[StoredBackend]) -> None:
        """Replace the file with `backends` (blocking: call it from a thread)."""
        current = _fingerprint(self._read_bytes())
        if current != self._seen:
            raise StoreChangedError(
                f"{self.path} was changed outside the gateway since it was loaded; "
                "the edit was not saved (restart the gateway to load the file, or undo the "
                "outside change)"
            )
        text = render_store(backends).encode("utf-8")
        atomic_write(self.path, text)  # mode 0600: the file may hold keys
        self._seen = _fingerprint(text)

    def save_copy(self, backends: Sequence[StoredBackend]) -> None:
        """A fleet replica's copy of the fleet's backends (Redis holds the truth; the copy is
        what the replica serves if it restarts while Redis is down). Written without the
        changed-outside check: replicas sharing one file all write the same backends."""
        text = render_store(backends).encode("utf-8")
        atomic_write(self.path, text)
        self._seen = _fingerprint(text)


def render_store(backends: Sequence[StoredBackend]) -> str:
    doc = {"version": STORE_VERSION, "backends": [b.to_doc() for b in backends]}
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return HEADER + body


def parse_store(data: bytes, name: str) -> list[StoredBackend]:
    """Parse and validate a backends file; errors say `file:line: what`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackendStoreError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise BackendStoreError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise BackendStoreError(f"{name}: invalid YAML: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise BackendStoreError(f"{name}:1: expected a mapping with a 'backends' list")
    unknown = set(doc) - {"version", "backends"}
    if unknown:
        raise BackendStoreError(f"{name}: unknown top-level key(s): {', '.join(sorted(unknown))}")
    if doc.get("version", STORE_VERSION) != STORE_VERSION:
        raise BackendStoreError(
            f"{name}: version {doc.get('version')!r} is not supported (expected {STORE_VERSION})"
        )
    items = doc.get("backends") or []
    if not isinstance(items, list):
        raise BackendStoreError(f"{name}: 'backends' must be a list")
    item_nodes = _item_nodes(root)
    backends: list[StoredBackend] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        line = item_nodes[index].start_mark.line + 1 if index < len(item_nodes) else 0
        where = f"{name}:{line}" if line else name
        backends.append(_parse_item(item, index, where))
        spec_id = backends[-1].spec.id
        if spec_id in seen:
            raise BackendStoreError(
                f"{where}: backend id {spec_id!r} is already used by backend {seen[spec_id] + 1}"
            )
        seen[spec_id] = index
    return backends


def stored_from_doc(item: Any, where: str) -> StoredBackend:
    """One backend from its document (as `StoredBackend.to_doc` writes it), validated like
    an entry of the file; BackendStoreError says what is wrong."""
    return _parse_item(item, 0, where)


def _item_nodes(root: yaml.Node | None) -> list[yaml.Node]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "backends" and isinstance(value, yaml.SequenceNode):
            return list(value.value)
    return []


def _parse_item(item: Any, index: int, where: str) -> StoredBackend:
    label = f"backend {index + 1}"
    if not isinstance(item, dict):
        raise BackendStoreError(f"{where}: {label} must be a mapping")
    item = dict(item)
    if isinstance(item.get("id"), str):
        label += f" ({item['id']!r})"
    revision = item.pop("revision", 1)
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise BackendStoreError(f"{where}: {label}: revision must be a positive integer")
    updated = item.pop("updated_at", None)
    updated_at = time.time()
    if updated is not None:
        try:
            stamp = updated if isinstance(updated, datetime) else datetime.fromisoformat(updated)
            updated_at = stamp.timestamp()
        except (TypeError, ValueError):
            raise BackendStoreError(
                f"{where}: {label}: updated_at is not an ISO-8601 time"
            ) from None
    try:
        spec = BackendSpec.model_validate(item)
    except ValidationError as exc:
        raise BackendStoreError(
            f"{where}: {label}: {describe_field_errors(field_errors(exc))}"
        ) from None
    return StoredBackend(spec, revision, updated_at)

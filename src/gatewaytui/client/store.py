"""The local mirror of one gateway's state, fed by the stream or loaded from a saved file.

Items are kept as the plain dicts that came off the wire, keyed by id per collection
(`STREAM_COLLECTIONS`: workers, jobs, models, backends, plugins, mcp_clients, mcp_sessions),
so a delta is applied with a dict merge and a UI reads fields directly. Snapshots and saved
files are validated with pydantic (rare, and the place a bad gateway or file must be caught);
deltas are not, since the hot path must take a 1,000-item patch in a few milliseconds. Their
*shape* is checked before anything is touched, so a malformed delta leaves the store as it was
and raises `MalformedDelta`, which, like `SequenceGap`, tells the connection to resync.

Every apply returns a `Change` naming exactly which ids were added, changed or removed, so a
UI redraws only those rows, and nothing at all for a keep-alive or a no-op patch.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from gatewaytui.client.errors import ClientError
from gatewaytui.client.rows import BackendRow, JobRow, MCPClientRow, MCPSessionRow, WorkerRow
from gatewaytui.schema.history import SnapshotHistory
from gatewaytui.schema.state import (
    SCHEMA_VERSION,
    BackendSnapshot,
    GatewayState,
    JobSnapshot,
    MCPClientSnapshot,
    MCPSessionSnapshot,
    ModelSummary,
    PluginState,
    ReplicaSnapshot,
    WorkerSnapshot,
)
from gatewaytui.schema.stream import STREAM_COLLECTIONS
from gatewaytui.shared.files import atomic_write

Item = dict[str, Any]
COLLECTIONS: tuple[str, ...] = tuple(STREAM_COLLECTIONS)
DEFAULT_EVENT_LIMIT = 1000

_ITEM_MODELS: dict[str, type[BaseModel]] = {
    "workers": WorkerSnapshot,
    "jobs": JobSnapshot,
    "models": ModelSummary,
    "backends": BackendSnapshot,
    "plugins": PluginState,
    "mcp_clients": MCPClientSnapshot,
    "mcp_sessions": MCPSessionSnapshot,
    "replicas": ReplicaSnapshot,
}
# Fields a *new* item in a delta must carry (patches of known items carry any subset). A new
# id arriving with less means we missed its full version: our state is wrong, so resync.
_REQUIRED: dict[str, frozenset[str]] = {
    name: frozenset(k for k, f in model.model_fields.items() if f.is_required())
    for name, model in _ITEM_MODELS.items()
}
_MISSING = object()
_EMPTY: frozenset[str] = frozenset()


class ResyncNeeded(ClientError):
    """The store cannot follow the stream any more; reconnect for a fresh snapshot."""


class SequenceGap(ResyncNeeded):
    """A delta (or keep-alive) showed that at least one delta was missed."""

    def __init__(self, expected: int | None, got: int) -> None:
        where = "before any snapshot" if expected is None else f"expected seq {expected}"
        super().__init__(f"missed deltas ({where}, got {got})")
        self.expected = expected
        self.got = got


class MalformedDelta(ResyncNeeded):
    """A delta whose shape is wrong; it was not applied."""


class SnapshotError(ClientError):
    """A snapshot or saved state file that is not a valid GatewayState."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one apply (or several, merged) changed; read-only by convention.

    `added`/`changed`/`removed` map a collection name to ids, with empty collections left
    out. An id in `changed` had at least one field with a new value. `snapshot` says the
    whole state was replaced (the id sets are still exact, diffed against the old state).
    `events` are new events in order; `events_reset` says the event log was replaced, so a
    UI should re-read `store.events` rather than append.
    """

    seq: int | None = None
    added: Mapping[str, frozenset[str]] = field(default_factory=dict)
    changed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    removed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    server: bool = False
    events: tuple[Item, ...] = ()
    events_reset: bool = False
    snapshot: bool = False

    @property
    def empty(self) -> bool:
        """Nothing to redraw."""
        return not (
            self.added
            or self.changed
            or self.removed
            or self.server
            or self.events
            or self.events_reset
        )

    def touched(self, collection: str) -> bool:
        """Whether any row of `collection` was added, changed or removed."""
        return collection in self.added or collection in self.changed or collection in self.removed

    def collections(self) -> set[str]:
        """Names of the collections with any added, changed or removed row."""
        return set(self.added) | set(self.changed) | set(self.removed)

    def merge(self, later: Change) -> Change:
        """This change followed by `later`, as one: how a slow UI catches up in one redraw.

        An id added then removed disappears; removed then added counts as changed (the UI
        still has its row); added then changed stays added.
        """
        if self.empty and not self.snapshot:
            return later
        names = self.collections() | later.collections()
        added: dict[str, frozenset[str]] = {}
        changed: dict[str, frozenset[str]] = {}
        removed: dict[str, frozenset[str]] = {}
        for name in names:
            a0, c0, r0 = (
                self.added.get(name, _EMPTY),
                self.changed.get(name, _EMPTY),
                self.removed.get(name, _EMPTY),
            )
            a1, c1, r1 = (
                later.added.get(name, _EMPTY),
                later.changed.get(name, _EMPTY),
                later.removed.get(name, _EMPTY),
            )
            a = (a0 - r1) | (a1 - r0)
            c = ((c0 - r1) | (c1 - a0) | (a1 & r0)) - a
            r = (r0 - a1) | (r1 - a0)
            if a:
                added[name] = frozenset(a)
            if c:
                changed[name] = frozenset(c)
            if r:
                removed[name] = frozenset(r)
        if later.events_reset:
            events, reset = later.events, True
        else:
            events, reset = self.events + later.events, self.events_reset
        return Change(
            seq=later.seq if later.seq is not None else self.seq,
            added=added,
            changed=changed,
            removed=removed,
            server=self.server or later.server,
            events=events,
            events_reset=reset,
            snapshot=self.snapshot or later.snapshot,
        )


class StateStore:
    """The latest known state of one gateway, as plain dicts.

    `items[collection][id]` is the item dict, in arrival order; `server` the server dict;
    `events` a bounded deque (oldest first); `seq` the last sequence number applied (None
    before the first snapshot); `as_of` the wire timestamp the state corresponds to. The
    store owns the dicts it is given (a snapshot's or delta's items are kept, not copied);
    callers read them and must not mutate them. A patch updates its item dict in place, so a
    row's dict keeps its identity while it lives; the `Change` says which ones moved.
    """

    def __init__(self, *, event_limit: int = DEFAULT_EVENT_LIMIT) -> None:
        self.items: dict[str, dict[str, Item]] = {name: {} for name in COLLECTIONS}
        self.server: Item = {}
        self.events: deque[Item] = deque(maxlen=max(event_limit, 1))
        self.seq: int | None = None
        self.as_of: str | None = None
        self.schema_version: int = SCHEMA_VERSION
        self.extra: Item = {}  # unknown top-level fields, kept for save()
        # The recent history an opened snapshot file carries (validated as it was opened).
        self.saved_history: SnapshotHistory | None = None
        self._mcp_extra: Item = {}

    # -- reading ----------------------------------------------------------------------------

    # The collections as their row types (`client.rows`): the same dicts, typed for readers.

    @property
    def workers(self) -> dict[str, WorkerRow]:
        return cast("dict[str, WorkerRow]", self.items["workers"])

    @property
    def jobs(self) -> dict[str, JobRow]:
        return cast("dict[str, JobRow]", self.items["jobs"])

    @property
    def backends(self) -> dict[str, BackendRow]:
        return cast("dict[str, BackendRow]", self.items["backends"])

    @property
    def mcp_clients(self) -> dict[str, MCPClientRow]:
        return cast("dict[str, MCPClientRow]", self.items["mcp_clients"])

    @property
    def mcp_sessions(self) -> dict[str, MCPSessionRow]:
        return cast("dict[str, MCPSessionRow]", self.items["mcp_sessions"])

    @property
    def models(self) -> dict[str, Item]:
        return self.items["models"]

    @property
    def has_state(self) -> bool:
        """True once a snapshot (live or from a file) has been applied."""
        return self.seq is not None

    def full_change(self) -> Change | None:
        """Everything in the store as one snapshot-like Change (None before any state): what a
        view that starts late needs to draw from scratch."""
        if not self.has_state:
            return None
        return Change(
            seq=self.seq,
            added={n: frozenset(items) for n, items in self.items.items() if items},
            server=True,
            events=tuple(self.events),
            events_reset=True,
            snapshot=True,
        )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={len(v)}" for n, v in self.items.items() if v)
        return f"<StateStore seq={self.seq} {sizes}>"

    # -- applying stream messages -----------------------------------------------------------

    def apply(self, message: Mapping[str, Any]) -> Change | None:
        """Apply any stream message; None for a keep-alive or an unknown type (ignored).

        Raises `ResyncNeeded` (`SequenceGap`, `MalformedDelta`) or `SnapshotError`.
        """
        kind = message.get("type") if isinstance(message, Mapping) else None
        if kind == "delta":
            return self.apply_delta(message)
        if kind == "snapshot":
            return self.apply_snapshot(message)
        if kind == "keepalive":
            seq = message.get("seq")
            if type(seq) is not int:
                raise MalformedDelta("keep-alive without an integer seq")
            if self.seq is None or seq > self.seq:
                raise SequenceGap(None if self.seq is None else self.seq + 1, seq)
            return None
        if not isinstance(kind, str):
            raise MalformedDelta("stream message without a type")
        return None  # a message type from a newer gateway: ignore what we do not know

    def apply_snapshot(self, message: Mapping[str, Any], *, validate: bool = True) -> Change:
        """Replace everything with a `snapshot` message's state; diff against the old one."""
        state = message.get("state")
        if not isinstance(state, dict):
            raise SnapshotError("snapshot message without a state object")
        seq = message.get("seq", state.get("seq"))
        if type(seq) is not int:
            raise SnapshotError("snapshot message without an integer seq")
        if validate:
            validate_state(state)
        return self._replace(state, seq)

    def apply_delta(self, message: Mapping[str, Any]) -> Change:
        """Merge one `delta` message; raise `SequenceGap`/`MalformedDelta` to ask for a resync.

        A delta at or below the current seq was already applied and returns an empty Change.
        """
        seq = message.get("seq")
        if type(seq) is not int:
            raise MalformedDelta("delta without an integer seq")
        if self.seq is None:
            raise SequenceGap(None, seq)
        if seq <= self.seq:
            return Change(seq=self.seq)
        if seq != self.seq + 1:
            raise SequenceGap(self.seq + 1, seq)
        server_patch, upsert, remove, events = self._checked_delta(message)
        added, changed = self._upsert(upsert)
        removed = self._remove(remove, added, changed)
        server_changed = self._patch_server(server_patch) if server_patch else False
        if events:
            self.events.extend(events)
        self.seq = seq
        ts = message.get("ts")
        if isinstance(ts, str):
            self.as_of = ts
        return Change(
            seq=seq,
            added=added,
            changed=changed,
            removed=removed,
            server=server_changed,
            events=tuple(events),
        )

    def _upsert(
        self, upsert: dict[str, list[Item]]
    ) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
        """Insert new items and merge patches; the ids added and the ids really changed."""
        added: dict[str, frozenset[str]] = {}
        changed: dict[str, frozenset[str]] = {}
        for name, patches in upsert.items():
            items = self.items[name]
            new_ids: set[str] = set()
            changed_ids: set[str] = set()
            for patch in patches:
                item_id = patch["id"]
                current = items.get(item_id)
                if current is None:
                    items[item_id] = patch
                    new_ids.add(item_id)
                elif _differs(current, patch):
                    current.update(patch)
                    changed_ids.add(item_id)
            if new_ids:
                added[name] = frozenset(new_ids)
            if changed_ids:
                changed[name] = frozenset(changed_ids)
        return added, changed

    def _remove(
        self,
        remove: dict[str, list[str]],
        added: dict[str, frozenset[str]],
        changed: dict[str, frozenset[str]],
    ) -> dict[str, frozenset[str]]:
        """Drop removed items (and them from `added`/`changed`); the ids really removed."""
        removed: dict[str, frozenset[str]] = {}
        for name, ids in remove.items():
            items = self.items[name]
            gone = {item_id for item_id in ids if items.pop(item_id, None) is not None}
            if not gone:
                continue
            removed[name] = frozenset(gone)
            for sets in (added, changed):
                if name in sets:
                    sets[name] = sets[name] - gone
                    if not sets[name]:
                        del sets[name]
        return removed

    def _patch_server(self, patch: Item) -> bool:
        if _differs(self.server, patch):
            self.server.update(patch)
            return True
        return False

    def _checked_delta(
        self, message: Mapping[str, Any]
    ) -> tuple[Item | None, dict[str, list[Item]], dict[str, list[str]], list[Item]]:
        """The parts of a delta, after checking their shapes without changing anything."""
        server = message.get("server")
        if server is not None and not isinstance(server, dict):
            raise MalformedDelta("delta.server is not an object")
        upsert = _or_default(message.get("upsert"), {})
        remove = _or_default(message.get("remove"), {})
        events = _or_default(message.get("events"), [])
        if not isinstance(upsert, dict):
            raise MalformedDelta("delta.upsert is not an object")
        if not isinstance(remove, dict):
            raise MalformedDelta("delta.remove is not an object")
        if not isinstance(events, list):
            raise MalformedDelta("delta.events is not a list")
        known_upsert = self._checked_upsert(upsert)
        known_remove = self._checked_remove(remove)
        for event in events:
            if type(event) is not dict:
                raise MalformedDelta("delta.events has an entry that is not an object")
        return server, known_upsert, known_remove, events

    def _checked_upsert(self, upsert: dict[str, Any]) -> dict[str, list[Item]]:
        known: dict[str, list[Item]] = {}
        for name, patches in upsert.items():
            items = self.items.get(name)
            if items is None:
                continue  # a collection from a newer gateway: ignore what we do not know
            if not isinstance(patches, list):
                raise MalformedDelta(f"delta.upsert.{name} is not a list")
            required = _REQUIRED[name]
            for patch in patches:
                if type(patch) is not dict or type(patch.get("id")) is not str:
                    raise MalformedDelta(f"delta.upsert.{name} has an item without a string id")
                if patch["id"] not in items and not required <= patch.keys():
                    missing = ", ".join(sorted(required - patch.keys()))
                    raise MalformedDelta(
                        f"delta.upsert.{name}: new item {patch['id']!r} lacks {missing}"
                    )
            known[name] = patches
        return known

    def _checked_remove(self, remove: dict[str, Any]) -> dict[str, list[str]]:
        known: dict[str, list[str]] = {}
        for name, ids in remove.items():
            if name not in self.items:
                continue
            if not isinstance(ids, list) or not all(type(i) is str for i in ids):
                raise MalformedDelta(f"delta.remove.{name} is not a list of ids")
            known[name] = ids
        return known

    def _replace_items(
        self, state: dict[str, Any]
    ) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]], dict[str, frozenset[str]]]:
        """Swap in every collection of a whole state; the ids added, changed and removed."""
        added: dict[str, frozenset[str]] = {}
        changed: dict[str, frozenset[str]] = {}
        removed: dict[str, frozenset[str]] = {}
        for name, path in STREAM_COLLECTIONS.items():
            raw = _get_path(state, path)
            incoming: dict[str, Item] = {}
            if isinstance(raw, list):
                for item in raw:
                    if isinstance(item, dict) and isinstance(item.get("id"), str):
                        incoming[item["id"]] = item
            old = self.items[name]
            new_ids = incoming.keys() - old.keys()
            gone_ids = old.keys() - incoming.keys()
            diff_ids = {i for i, item in incoming.items() if i in old and old[i] != item}
            if new_ids:
                added[name] = frozenset(new_ids)
            if gone_ids:
                removed[name] = frozenset(gone_ids)
            if diff_ids:
                changed[name] = frozenset(diff_ids)
            self.items[name] = incoming
        return added, changed, removed

    def _replace(self, state: dict[str, Any], seq: int) -> Change:
        """Swap in a whole state (already validated) and report the difference."""
        added, changed, removed = self._replace_items(state)
        server = state.get("server")
        server = server if isinstance(server, dict) else {}
        server_changed = server != self.server
        self.server = server
        raw_events = state.get("events")
        new_events = (
            [e for e in raw_events if isinstance(e, dict)] if isinstance(raw_events, list) else []
        )
        maxlen = self.events.maxlen
        if maxlen is not None:
            new_events = new_events[-maxlen:]
        events_reset = new_events != list(self.events)
        if events_reset:
            self.events.clear()
            self.events.extend(new_events)
        self.seq = seq
        generated_at = state.get("generated_at")
        self.as_of = generated_at if isinstance(generated_at, str) else None
        version = state.get("schema_version")
        self.schema_version = version if type(version) is int else SCHEMA_VERSION
        known = {"schema_version", "generated_at", "seq", "server", "mcp", "events"}
        known.update(path[0] for path in STREAM_COLLECTIONS.values())
        self.extra = {k: v for k, v in state.items() if k not in known}
        self.saved_history = None  # a file's, set by load_file after this
        mcp = state.get("mcp")
        self._mcp_extra = (
            {k: v for k, v in mcp.items() if k not in ("clients", "sessions")}
            if isinstance(mcp, dict)
            else {}
        )
        return Change(
            seq=seq,
            added=added,
            changed=changed,
            removed=removed,
            server=server_changed,
            events=tuple(self.events) if events_reset else (),
            events_reset=events_reset,
            snapshot=True,
        )

    # -- saved snapshots --------------------------------------------------------------------

    def to_state_dict(self) -> dict[str, Any]:
        """The store as one GatewayState JSON object (same shape as `GET /api/state`)."""
        state: dict[str, Any] = {
            "schema_version": self.schema_version,
            "generated_at": self.as_of or _iso_now(),
            "seq": self.seq or 0,
            "server": self.server,
            "workers": [],
            "jobs": [],
            "models": [],
            "mcp": {**self._mcp_extra, "clients": [], "sessions": []},
            "backends": [],
            "plugins": [],
            "events": list(self.events),
            **self.extra,
        }
        for name, path in STREAM_COLLECTIONS.items():
            target = state
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = list(self.items[name].values())
        return state

    def save(
        self, path: str | os.PathLike[str], *, history: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the state as a GatewayState JSON file, atomically (temp file, fsync, rename),
        with the recent `history` (a `SnapshotHistory`) when given.

        Validated first, so a file that was written can always be opened again.
        """
        if not self.has_state:
            raise SnapshotError("nothing to save: no state received yet")
        state = self.to_state_dict()
        if history is not None:
            state["history"] = dict(history)
        validate_state(state)
        text = json.dumps(state, indent=2, ensure_ascii=False) + "\n"
        return atomic_write(Path(path).expanduser(), text.encode("utf-8"))

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, event_limit: int = DEFAULT_EVENT_LIMIT
    ) -> StateStore:
        """A store holding a saved GatewayState file (e.g. sample_state.json)."""
        store = cls(event_limit=event_limit)
        store.load_file(path)
        return store

    def load_file(self, path: str | os.PathLike[str]) -> Change:
        """Replace the state with a saved GatewayState file; `SnapshotError` says what is wrong.

        Items missing optional fields get the schema's defaults, so a UI can rely on every
        field being present whether the state came from a gateway or a hand-edited file.
        """
        source = Path(path).expanduser()
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SnapshotError(f"{source}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SnapshotError(f"{source}: cannot read: {exc}") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        if not isinstance(raw, dict):
            raise SnapshotError(f"{source}: not a gateway state (expected a JSON object)")
        try:
            model = validate_state(raw)
        except SnapshotError as exc:
            raise SnapshotError(f"{source}: {exc.message}") from None
        _fill_defaults(raw, model)
        seq = raw.get("seq")
        change = self._replace(raw, seq if type(seq) is int else 0)
        self.saved_history = model.history
        return change


def load_snapshot_file(
    path: str | os.PathLike[str], *, event_limit: int = DEFAULT_EVENT_LIMIT
) -> StateStore:
    """Open a saved state file (offline mode); raises `SnapshotError` with a clear reason."""
    return StateStore.load(path, event_limit=event_limit)


def validate_state(state: Any) -> GatewayState:
    """Validate a GatewayState dict; `SnapshotError` names the first few bad fields."""
    if isinstance(state, dict):
        version = state.get("schema_version", SCHEMA_VERSION)
        if type(version) is int and version > SCHEMA_VERSION:
            raise SnapshotError(
                f"written by a newer gateway (schema_version {version}; "
                f"this build reads {SCHEMA_VERSION})"
            )
    try:
        return GatewayState.model_validate(state)
    except ValidationError as exc:
        raise SnapshotError("not a valid gateway state: " + _describe(exc)) from None


def iter_validate_state(state: Any, chunk_size: int = 500) -> Iterator[None]:
    """`validate_state` in steps: yields after each `chunk_size` items, raises `SnapshotError`.

    The same models check the same data, but a caller on an event loop can let other work
    run between steps (a 10,000-worker snapshot takes ~0.3 s to validate in one go).
    """
    if not isinstance(state, dict):
        validate_state(state)  # raises with pydantic's own wording
        return
    # Validate everything but the item lists first (lists that are not lists stay in, so the
    # skeleton check rejects them), then the items chunk by chunk with their own models.
    skeleton = dict(state)
    for name in ("workers", "jobs", "models", "backends", "plugins", "replicas"):
        if isinstance(skeleton.get(name), list):
            skeleton[name] = []
    mcp = state.get("mcp")
    if isinstance(mcp, dict):
        skeleton["mcp"] = {
            k: [] if k in ("clients", "sessions") and isinstance(v, list) else v
            for k, v in mcp.items()
        }
    validate_state(skeleton)
    for name, path in STREAM_COLLECTIONS.items():
        items = _get_path(state, path)
        if not isinstance(items, list):
            continue  # absent: the default empty list
        model = _ITEM_MODELS[name]
        where = ".".join(path)
        for start in range(0, len(items), chunk_size):
            for index in range(start, min(start + chunk_size, len(items))):
                try:
                    model.model_validate(items[index])
                except ValidationError as exc:
                    raise SnapshotError(
                        "not a valid gateway state: " + _describe(exc, f"{where}.{index}")
                    ) from None
            yield


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        problems.append(f"{loc or '(top)'}: {err['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _fill_defaults(raw: dict[str, Any], model: GatewayState) -> None:
    """Add the schema defaults a saved file left out, keeping the file's own values."""
    dumped = model.model_dump(mode="json")
    for key, value in dumped.items():
        raw.setdefault(key, value)
    if isinstance(raw.get("server"), dict):
        _setdefaults(raw["server"], dumped["server"])
    if not isinstance(raw.get("mcp"), dict):
        raw["mcp"] = dumped["mcp"]
    for path in STREAM_COLLECTIONS.values():
        items, full = _get_path(raw, path), _get_path(dumped, path)
        if not isinstance(items, list) or len(items) != len(full):
            _set_path(raw, path, full)
            continue
        for item, defaults in zip(items, full, strict=True):
            _setdefaults(item, defaults)
    if isinstance(raw.get("events"), list):
        for event, defaults in zip(raw["events"], dumped["events"], strict=False):
            _setdefaults(event, defaults)


def _differs(current: Item, patch: Item) -> bool:
    """Whether a patch changes anything (stops at the first differing key)."""
    return any(current.get(key, _MISSING) != value for key, value in patch.items())


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _setdefaults(target: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    for key, value in defaults.items():
        target.setdefault(key, value)


def _get_path(state: Mapping[str, Any], path: Iterable[str]) -> Any:
    value: Any = state
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _set_path(state: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = state
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

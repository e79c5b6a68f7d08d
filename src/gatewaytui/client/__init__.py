"""Client layer: follows a gateway over HTTP and WebSocket, with no UI in it.

The TUI learns about a gateway only through this package, exactly as it would from another
host, and the package is testable on its own (it imports only `gatewaytui.schema`, httpx,
websockets and pydantic).

- `StateStore` (store.py): the local mirror — plain dicts keyed by id per collection, the
  server dict, a bounded event deque, `seq`. `apply()` takes stream messages and returns a
  `Change` naming the ids added/changed/removed, so a UI redraws only those. `SequenceGap`
  and `MalformedDelta` (both `ResyncNeeded`) ask for a resync; `StateStore.load()` /
  `save()` read and atomically write saved snapshots (`SnapshotError` on a bad file).
- `GatewayConnection` (connection.py): keeps a store in step with `WS /api/state/stream`,
  reconnecting with capped, jittered exponential backoff; exposes `ConnectionState`
  (`connecting`, `live`, `reconnecting`, `unauthorized`, `offline`, `stopped`) and
  coalesced `updates()`.
- `GatewayClient` (http.py): `GET /api/state`, `/api/plugins`, health, and the operator
  actions, returning `ActionResult` or raising `ActionError` (HTTP status + the gateway's
  message) / `GatewayUnreachable`.
- `Session` (session.py): what the TUI holds per context — store + connection + client, or
  an offline snapshot — with `status_line()` for a status bar.
"""

from gatewaytui.client.connection import (
    ConnectionState,
    ConnectionStatus,
    GatewayConnection,
    Update,
)
from gatewaytui.client.errors import ActionError, ClientError, GatewayUnreachable
from gatewaytui.client.http import GatewayClient, Health, normalise_url
from gatewaytui.client.session import OfflineError, Session
from gatewaytui.client.store import (
    COLLECTIONS,
    Change,
    MalformedDelta,
    ResyncNeeded,
    SequenceGap,
    SnapshotError,
    StateStore,
    load_snapshot_file,
)
from gatewaytui.shared.backoff import Backoff

__all__ = [
    "COLLECTIONS",
    "ActionError",
    "Backoff",
    "Change",
    "ClientError",
    "ConnectionState",
    "ConnectionStatus",
    "GatewayClient",
    "GatewayConnection",
    "GatewayUnreachable",
    "Health",
    "MalformedDelta",
    "OfflineError",
    "ResyncNeeded",
    "SequenceGap",
    "Session",
    "SnapshotError",
    "StateStore",
    "Update",
    "load_snapshot_file",
    "normalise_url",
]

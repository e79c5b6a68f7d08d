"""Operator-defined backends: the live records, their health, and how they join routing.

A backend takes part in scheduling as a `BackendWorker`: a worker record whose "connection"
makes HTTP calls to the backend instead of sending frames over a WebSocket. It sits in the
same per-model heaps as the connected workers, so a pick stays O(log n) and workers and
backends serving the same model share the load under the configured strategy (least-busy by
default, with `max_concurrency` as the backend's slots). Everything the gateway does for a
job — the wait queue, one retry elsewhere, cancel on client disconnect, timeouts, usage and
metrics — applies to backend calls unchanged.

Health: each enabled backend is probed every `backends.probe_interval` (and at once after an
edit, or when a call could not reach it). After `backends.failure_threshold` consecutive failed
probes it leaves routing and is retried every `backends.cooldown` until a probe passes.

Modules: `manager` (BackendManager: CRUD with revisions and durable writes, the routing hooks;
BackendHost: all it needs from the gateway), `health` (probes, in and out of routing),
`records` (BackendRecord, BackendWorker: a backend as the scheduler sees it), `calls`
(BackendConnection: job frames become HTTP calls), `http` (the aiohttp client and probe),
`store` (the YAML store file), `errors`.
"""

"""Workers shipped with gatewaytui: a simulated one and a relay to a real OpenAI server.

A worker dials out to the gateway (`WS /api/workers/connect`), registers, heartbeats and runs
the jobs it is sent; an MCP relay dials out the same way (`dial_out`) to bridge an MCP server.
`openai_sim` puts the simulator behind the OpenAI HTTP API (the demo's backend). This layer
imports only `gatewaytui.schema` and `gatewaytui.shared` of the project.
"""

from gatewaytui.shared.backoff import Backoff
from gatewaytui.workers.gateway_link import SessionEnd, WorkerClient, WorkerProtocolError
from gatewaytui.workers.hostinfo import host_info
from gatewaytui.workers.job_handler import ChunkSink, JobError, JobHandler
from gatewaytui.workers.openai_relay import RelayHandler, upstream_base_url
from gatewaytui.workers.runner import build_clients, build_handler, run_workers
from gatewaytui.workers.settings import (
    DEFAULT_GATEWAY_URL,
    BackoffSettings,
    SimulateSettings,
    UpstreamSettings,
    WorkerSettings,
    gateway_ws_url,
)
from gatewaytui.workers.simulated import SimulatedHandler, completion_words, embed_text

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "Backoff",
    "BackoffSettings",
    "ChunkSink",
    "JobError",
    "JobHandler",
    "RelayHandler",
    "SessionEnd",
    "SimulateSettings",
    "SimulatedHandler",
    "UpstreamSettings",
    "WorkerClient",
    "WorkerProtocolError",
    "WorkerSettings",
    "build_clients",
    "build_handler",
    "completion_words",
    "embed_text",
    "gateway_ws_url",
    "host_info",
    "run_workers",
    "upstream_base_url",
]

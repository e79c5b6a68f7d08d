"""Builds sample_state.json: `python tests/support/sample_state_builder.py [OUT]`.

Builds real WorkerRecord / Job objects and a real Gateway so every item has exactly the shape
the live gateway produces (to_dict, _server_item, _refresh_derived), at a fixed time base.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.jobs import Job, Waiter
from gatewaytui.gateway.options import resolve_options
from gatewaytui.gateway.registry import ModelCounter
from gatewaytui.schema import GatewayState
from gatewaytui.schema.protocol import RegisterFrame

DAY = "2026-11-21"


def t(clock: str, day: str = DAY) -> float:
    return datetime.fromisoformat(f"{day}T{clock}+00:00").astimezone(UTC).timestamp()


NOW = t("09:30:00.000")

L70 = "llama3.1:70b-instruct-q4_K_M"
L8 = "llama3.1:8b-instruct-q4_K_M"
QC = "qwen2.5-coder:32b"
EMB = "nomic-embed-text"

# ---- configuration as an operator would have it --------------------------------------------

YAML = {
    "plugin_options": {
        "server": {"host": "0.0.0.0"},
        "llm": {"queue_size": 200, "max_parallel_embeddings": 8},
        "workers": {"gone_retention": "15m"},
        # (does not exist where the sample is built: the backends below are made in code)
        "backends": {"store_path": "/var/lib/gatewaytui/backends.yaml", "probe_interval": "15s"},
    }
}
ENV = {
    # Secrets: set, but describe() only ever reports is_set, never the value.
    "SERVER_API_KEYS": "placeholder-1,placeholder-2",
    "SERVER_WORKER_KEY": "placeholder-3",
    "SERVER_OPERATOR_TOKENS": "placeholder-4",
    "SERVER_VIEWER_TOKENS": "placeholder-5",
    "WORKERS_HEARTBEAT_EXPIRY": "30s",
}
options = resolve_options(env=ENV, yaml_doc=YAML)
config = GatewayConfig.from_options(options)
gw = Gateway(config)
gw.started_at = t("06:12:44.318", "2026-11-19")
gw.listen = f"{config.host}:{config.port}"

PY = "3.11.9"


def host(name, gpu, cpus, mem, os_="Linux", arch="x86_64", python=PY):
    h = {"hostname": name, "os": os_, "arch": arch, "cpu_count": cpus, "mem_total_mb": mem}
    if gpu:
        h["gpu"] = gpu
    if python:
        h["python"] = python
    return h


def register(wid, models, conc, batch, hostinfo, labels, remote, *, name=None, version="0.1.0"):
    frame = RegisterFrame(
        id=wid,
        name=name or wid,
        models=models,
        max_concurrency=conc,
        preferred_batch_size=batch,
        version=version,
        host=hostinfo,
        labels=labels,
    )
    worker, _ = gw.registry.register(frame, None, remote)
    return worker


def counters(worker, per_model, seconds, *, reconnects=0, last_error=None, last_error_at=None):
    """per_model: model -> (requests, failures, tokens_in, tokens_out, embeddings)."""
    c = worker.counters
    for model, (req, fail, tin, tout, emb) in per_model.items():
        c.per_model[model] = ModelCounter(req, fail, tin, tout, emb)
    c.failures = sum(m.failures for m in c.per_model.values())
    c.processed = sum(m.requests for m in c.per_model.values()) - c.failures
    c.tokens_in = sum(m.tokens_in for m in c.per_model.values())
    c.tokens_out = sum(m.tokens_out for m in c.per_model.values())
    c.embeddings = sum(m.embeddings for m in c.per_model.values())
    c.processing_seconds = seconds
    c.reconnects = reconnects
    c.last_error = last_error
    c.last_error_at = last_error_at


def live(worker, connected, heartbeat, cpu, mem, inflight=0):
    worker.connected_at = connected
    worker.last_heartbeat = heartbeat
    worker.heard_from = True
    worker.cpu_percent = cpu
    worker.mem_percent = mem
    worker.inflight = inflight


def gpus(worker, name, total_mb, power_limit, *cards):
    """NVML figures per card: (util %, memory used MB, temperature °C, power W)."""
    worker.gpus = [
        {"index": i, "name": name, "util_percent": util, "mem_used_mb": used,
         "mem_total_mb": total_mb, "temperature_c": temp, "power_w": power,
         "power_limit_w": power_limit}
        for i, (util, used, temp, power) in enumerate(cards)
    ]  # fmt: skip


A100 = "NVIDIA A100 80GB PCIe"
H100 = "NVIDIA H100 80GB HBM3"
L40S = "NVIDIA L40S"
L4 = "NVIDIA L4"
START = t("06:13:02.551", "2026-11-19")

# 1-3: the 70b pool (A100s), eu-west-1a
w = register(
    "gpu-a100-01", [L70], 4, 16, host("gpu-a100-01", A100, 64, 515_843),
    {"zone": "eu-west-1a", "gpu": "a100", "pool": "chat-large"}, "10.0.1.11:53412",
)  # fmt: skip
live(w, START, t("09:29:57.204"), 38.5, 61.2, inflight=3)
gpus(w, A100, 81_920, 300.0, (91.0, 74_112, 68.0, 271.4))
counters(
    w,
    {L70: (3412, 9, 4_118_204, 1_203_877, 0)},
    3403 * 14.8213,
    last_error="request timeout",
    last_error_at=t("08:47:19.662"),
)

w = register(
    "gpu-a100-02", [L70], 4, 16, host("gpu-a100-02", A100, 64, 515_843),
    {"zone": "eu-west-1a", "gpu": "a100", "pool": "chat-large"}, "10.0.1.12:39920",
)  # fmt: skip
live(w, START + 0.884, t("09:29:58.730"), 17.9, 58.4, inflight=1)
counters(w, {L70: (3019, 4, 3_652_771, 1_061_305, 0)}, 3015 * 15.1042)

w = register(
    "gpu-a100-03", [L70], 4, 16, host("gpu-a100-03", A100, 64, 515_843),
    {"zone": "eu-west-1b", "gpu": "a100", "pool": "chat-large"}, "10.0.1.13:60218",
)  # fmt: skip
live(w, t("22:41:09.077", "2026-11-20"), t("09:29:56.118"), 24.3, 60.7, inflight=2)
counters(w, {L70: (1187, 2, 1_401_530, 418_992, 0)}, 1185 * 14.6377, reconnects=1)
w.counters.draining = True
w.counters.drain_started_at = t("09:28:12.030")

# 4-5: L40S boxes, 8b chat + embeddings
w = register(
    "gpu-l40s-01", [L8, EMB], 8, 64, host("gpu-l40s-01", L40S, 48, 385_572),
    {"zone": "eu-west-1a", "gpu": "l40s", "pool": "general"}, "10.0.2.21:44102",
)  # fmt: skip
live(w, START + 1.402, t("09:29:59.311"), 55.1, 47.9, inflight=3)
counters(
    w,
    {L8: (18_233, 31, 14_903_112, 5_811_640, 0), EMB: (3_871, 2, 11_904_255, 0, 247_616)},
    18_202 * 4.1188 + 3_869 * 0.1843,
)

w = register(
    "gpu-l40s-02", [L8, EMB], 8, 64, host("gpu-l40s-02", L40S, 48, 385_572),
    {"zone": "eu-west-1b", "gpu": "l40s", "pool": "general"}, "10.0.2.22:50877",
)  # fmt: skip
live(w, START + 1.97, t("09:29:55.846"), 41.7, 45.2, inflight=2)
counters(
    w,
    {L8: (17_506, 22, 14_287_903, 5_580_214, 0), EMB: (3_702, 0, 11_377_818, 0, 236_928)},
    17_484 * 4.0371 + 3_702 * 0.1902,
)

# 6-7: L4 embedding boxes
w = register(
    "gpu-l4-01", [EMB], 16, 128, host("gpu-l4-01", L4, 16, 128_796),
    {"zone": "eu-west-1a", "gpu": "l4", "pool": "embeddings"}, "10.0.2.31:41876",
)  # fmt: skip
live(w, START + 2.3, t("09:29:58.002"), 33.8, 39.5, inflight=1)
counters(w, {EMB: (9_804, 3, 60_174_910, 0, 1_254_528)}, 9_801 * 0.2118)

w = register(
    "gpu-l4-02", [EMB], 16, 128, host("gpu-l4-02", L4, 16, 128_796),
    {"zone": "eu-west-1b", "gpu": "l4", "pool": "embeddings"}, "10.0.2.32:56034",
)  # fmt: skip
live(w, START + 2.9, t("09:29:57.590"), 6.4, 37.1, inflight=0)
counters(w, {EMB: (9_611, 1, 58_992_047, 0, 1_230_080)}, 9_610 * 0.2094)

# 8-10: the coder pool (H100s)
w = register(
    "gpu-h100-01", [QC], 6, 16, host("gpu-h100-01", H100, 96, 1_031_681),
    {"zone": "eu-west-1a", "gpu": "h100", "pool": "code"}, "10.0.3.5:35510",
)  # fmt: skip
live(w, START + 3.1, t("09:29:59.020"), 71.6, 66.0, inflight=6)
gpus(w, H100, 81_559, 700.0, (97.0, 77_903, 79.0, 655.2), (95.0, 77_211, 77.0, 640.8))
counters(w, {QC: (8_440, 12, 21_907_338, 3_310_587, 0)}, 8_428 * 9.3306)

w = register(
    "gpu-h100-02", [QC], 6, 16, host("gpu-h100-02", H100, 96, 1_031_681),
    {"zone": "eu-west-1b", "gpu": "h100", "pool": "code"}, "10.0.3.7:49822",
)  # fmt: skip
live(w, START + 3.5, t("09:29:56.671"), 2.1, 12.8, inflight=0)
gpus(w, H100, 81_559, 700.0, (0.0, 512, 36.0, 71.9), (0.0, 512, 35.0, 70.2))
counters(
    w,
    {QC: (7_115, 26, 18_455_020, 2_790_433, 0)},
    7_089 * 9.5112,
    last_error="upstream http://10.0.3.7:8000 unreachable: connection refused",
    last_error_at=t("09:21:14.903"),
)
w.reported_ready = False
w.status_reason = "upstream http://10.0.3.7:8000 unreachable: connection refused"

w = register(
    "gpu-h100-03", [QC], 6, 16, host("gpu-h100-03", H100, 96, 1_031_681),
    {"zone": "eu-west-1c", "gpu": "h100", "pool": "code"}, "10.0.3.9:58140",
)  # fmt: skip
live(w, START + 3.8, t("09:29:57.935"), 22.4, 64.8, inflight=1)
counters(w, {QC: (8_012, 9, 20_811_646, 3_140_008, 0)}, 8_003 * 9.2874)
w.reported_ready = False
w.self_draining = True
w.status_reason = "worker draining"

# 11: a desktop box running a third-party worker; reconnected 2 s ago, no heartbeat yet
w = register(
    "gpu-rtx4090-01", [L8], 2, 8,
    host("ws-rtx4090-01", "NVIDIA GeForce RTX 4090", 32, 64_217, python=None),
    {"zone": "office-ber", "gpu": "rtx4090", "pool": "general"}, "192.168.7.23:40418",
    name="rtx4090 (llama.cpp)", version="llamacpp-bridge/0.4.2",
)  # fmt: skip
w.connected_at = w.last_heartbeat = t("09:29:58.412")
counters(w, {L8: (2_087, 14, 1_702_331, 688_115, 0)}, 2_073 * 6.9042, reconnects=3)

# 12: an Ollama relay on a Mac Studio, out of routing: unresponsive
w = register(
    "mac-studio-01", [L8], 2, 8,
    host("mac-studio-01", "Apple M2 Ultra", 24, 196_608, os_="Darwin", arch="arm64"),
    {"zone": "office-ber", "gpu": "m2-ultra", "pool": "general"}, "192.168.7.41:61002",
    name="mac-studio-01 (ollama)",
)  # fmt: skip
live(w, t("09:02:10.540"), t("09:29:59.466"), 9.3, 52.4, inflight=0)
counters(
    w,
    {L8: (612, 5, 497_225, 199_840, 0)},
    607 * 8.2315,
    reconnects=1,
    last_error="worker mac-studio-01 sent nothing within 60s (workers.first_frame_timeout)",
    last_error_at=t("09:25:44.310"),
)
# it still heartbeats, but its ollama hangs: two jobs in a row went unanswered
w.counters.missed_first_frames = 2
w.unresponsive = "unresponsive: no answer to 2 jobs in a row"

# 13: evicted after going silent (kernel hang); kept visible as gone for gone_retention
w = register(
    "gpu-a10-01", [L8, EMB], 4, 64, host("gpu-a10-01", "NVIDIA A10", 32, 257_530),
    {"zone": "eu-west-1c", "gpu": "a10", "pool": "general"}, "10.0.2.41:33718",
)  # fmt: skip
live(w, START + 4.2, t("09:28:41.203"), 97.8, 88.9, inflight=0)
counters(
    w,
    {L8: (9_871, 18, 8_061_009, 3_140_226, 0), EMB: (1_503, 1, 4_621_774, 0, 96_128)},
    9_853 * 5.7763 + 1_502 * 0.2409,
    last_error="worker lost: no heartbeat for 31s (expiry 30s)",
    last_error_at=t("09:29:12.381"),
)
gw.registry.mark_gone(w)
w.gone_at = t("09:29:12.377")

for worker in gw.registry:
    if worker.gone_at is None:
        gw.scheduler.add(worker)

# ---- jobs ------------------------------------------------------------------------------------

PREFIX = "7c41e2"
jobs: list[Job] = []


def job(kind, model, started, *, stream=False, client=None, worker=None, workers=None, **kw):
    j = Job(
        id="",
        kind=kind,
        model=model,
        stream=stream,
        client=client,
        started_at=started,
        state="running" if (worker or kw.get("backend")) else "queued",
        worker=worker,
        workers=list(workers if workers is not None else ([worker] if worker else [])),
        **kw,
    )
    jobs.append(j)
    return j


# 70b pool
job("chat", L70, t("09:28:31.882"), stream=True, client="10.0.9.14:51840",
    worker="gpu-a100-01", tokens_out=1_843).state = "cancelling"  # fmt: skip
job("chat", L70, t("09:29:41.305"), stream=True, client="10.0.9.22:60114",
    worker="gpu-a100-01", tokens_out=402)  # fmt: skip
job("chat", L70, t("09:29:55.970"), client="10.0.9.31:48702", worker="gpu-a100-01")
job("chat", L70, t("09:29:50.148"), stream=True, client="10.0.9.14:51902",
    worker="gpu-a100-02", tokens_out=211)  # fmt: skip
job("chat", L70, t("09:27:58.440"), stream=True, client="10.0.9.40:39018",
    worker="gpu-a100-03", tokens_out=2_615)  # fmt: skip
job("chat", L70, t("09:28:06.731"), client="10.0.9.31:48210", worker="gpu-a100-03")
# coder pool: h100-01 full, h100-03 finishing its last job while it drains itself
for started, client, toks in [
    ("09:29:21.004", "10.0.9.51:52004", 931),
    ("09:29:33.517", "10.0.9.52:40870", 688),
    ("09:29:40.092", "10.0.9.51:52090", 512),
    ("09:29:47.863", "10.0.9.53:36112", 0),
    ("09:29:52.410", "10.0.9.54:44391", 147),
    ("09:29:57.128", "10.0.9.52:40996", 38),
]:
    job("chat", QC, t(started), stream=toks > 0, client=client, worker="gpu-h100-01",
        tokens_out=toks)  # fmt: skip
job("chat", QC, t("09:27:36.918"), stream=True, client="10.0.9.55:58820",
    worker="gpu-h100-03", tokens_out=3_377)  # fmt: skip
job("chat", QC, t("09:29:58.774"), stream=True, client="10.0.9.51:52118")  # queued
job("chat", QC, t("09:29:59.602"), client="10.0.9.56:47214")  # queued
# 8b: one retried after its first worker was evicted
job("chat", L8, t("09:29:03.517"), client="10.0.9.61:55302", worker="gpu-l40s-01",
    workers=["gpu-a10-01", "gpu-l40s-01"], attempt=2)  # fmt: skip
job("chat", L8, t("09:29:54.229"), stream=True, client="10.0.9.62:41180",
    worker="gpu-l40s-01", tokens_out=173)  # fmt: skip
job("chat", L8, t("09:29:58.950"), stream=True, client="10.0.9.63:50236",
    worker="gpu-l40s-02", tokens_out=22)  # fmt: skip
# the partitioned embeddings job: 4096 inputs; 3 chunks in flight, the rest done
job(
    "embeddings", EMB, t("09:28:55.120"), client="10.0.9.14:52210", worker="gpu-l40s-02",
    workers=["gpu-l4-01", "gpu-l4-02", "gpu-l40s-01", "gpu-a10-01", "gpu-l40s-02"],
    tokens_in=184_907,
    partition={"total_items": 4096, "done_items": 3840, "chunks_done": 40,
               "chunks_inflight": 3, "chunks_failed": 1},
)  # fmt: skip
# an operator-defined backend serving a request directly (no worker)
job("chat", "meta-llama/Llama-3.1-70B-Instruct", t("09:29:49.377"), stream=True,
    client="10.0.9.70:33410", backend="vllm-prod", tokens_out=264)  # fmt: skip

# ids in creation order, as new_job_id hands them out (one counter for all kinds)
seq = 18_205
for j in sorted(jobs, key=lambda j: j.started_at):
    seq += 1 + (int(j.started_at * 7) % 3)
    j.id = f"{ {'chat': 'chat', 'embeddings': 'emb'}[j.kind] }-{seq:06d}-{PREFIX}"
jobs.sort(key=lambda j: j.started_at)
for j in jobs:
    gw.jobs[j.id] = j

# ---- backends: real records through the manager, health from real probe outcomes ------------
from gatewaytui.gateway.backends.http import ProbeOutcome  # noqa: E402
from gatewaytui.gateway.backends.store import StoredBackend  # noqa: E402
from gatewaytui.gateway.jobs import Assignment  # noqa: E402
from gatewaytui.schema.backends import BackendSpec  # noqa: E402

LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"


def backend(spec, revision, updated, probes=(), counters=None):
    stored = StoredBackend(BackendSpec.model_validate(spec), revision, updated)
    record = gw.backends._install(stored)
    for probed_at, ok, latency, models, error in probes:
        gw.backends.health._apply_probe(
            record, ProbeOutcome(ok, latency, list(models), error, probed_at=t(probed_at))
        )
    if counters:
        c = record.worker.counters
        c.processed, c.failures, c.tokens_in, c.tokens_out, c.embeddings = counters
    return record


vllm = backend(
    {"id": "vllm-prod", "type": "vllm", "url": "http://10.0.4.10:8000/v1",
     "api_key": "env:VLLM_PROD_KEY", "max_concurrency": 16, "labels": {"zone": "eu-west-1a"},
     "declared_models": [{"name": LLAMA_70B, "context_length": 131072,
                          "max_output_tokens": 8192}]},
    3, t("08:02:17.540"),
    [("09:29:45.002", True, 42.7, [LLAMA_70B], None)],
    counters=(1_204, 3, 1_480_112, 402_995, 0),
)  # fmt: skip
served = next(j for j in jobs if j.backend == "vllm-prod")
vllm.worker.inflight = 1
gw.table.assignments[served.id] = Assignment(served.id, served, vllm.worker)
TIMEOUT = "GET /api/tags: connect timeout"
backend(
    {"id": "ollama-lab", "type": "ollama", "url": "http://192.168.7.50:11434",
     "labels": {"site": "lab"}, "timeout_s": "2m"},
    1, t("14:20:03.118", "2026-11-20"),
    [("09:25:46.007", True, 8.4, [L8, "mistral-nemo:12b"], None),
     ("09:26:01.112", False, None, (), TIMEOUT),
     ("09:26:16.115", False, None, (), TIMEOUT),
     ("09:26:31.118", False, None, (), TIMEOUT),  # the third: out of routing for 1m
     ("09:27:31.120", False, None, (), TIMEOUT),
     ("09:28:31.121", False, None, (), TIMEOUT),
     ("09:29:31.118", False, None, (), TIMEOUT)],
    counters=(212, 9, 61_840, 30_211, 0),
)  # fmt: skip
backend(
    {"id": "tei-embed", "type": "openai", "url": "http://10.0.4.21:8080/v1",
     "max_concurrency": 4, "batch_size": 128,
     "declared_models": [{"name": "bge-m3", "capabilities": ["embed"],
                          "embedding_dimension": 1024}]},
    2, t("07:41:55.903"),
    [("09:29:52.610", True, 3.1, ["bge-m3"], None)],
    counters=(5_530, 0, 2_811_406, 0, 707_840),
)  # fmt: skip
backend(
    {"id": "openai-fallback", "type": "openai", "url": "https://api.openai.com/v1",
     "api_key": "env:OPENAI_API_KEY", "enabled": False, "include_models": ["^gpt-4o-mini$"],
     "declared_models": [{"name": "gpt-4o-mini", "context_length": 128000,
                          "max_output_tokens": 16384}]},
    2, t("16:05:40.222", "2026-11-19"),
)  # fmt: skip

# queued chats wait in the FIFO queue
loop = asyncio.new_event_loop()
for j in jobs:
    if j.state == "queued":
        gw.queue.waiters.append(Waiter(j.model, frozenset(), loop.create_future()))

retry_job = next(j for j in jobs if j.attempt == 2)
cancel_job = next(j for j in jobs if j.state == "cancelling")
embed_job = next(j for j in jobs if j.kind == "embeddings")

gw.totals.requests = 97_416
gw.totals.tokens_in = 247_113_845
gw.totals.tokens_out = 27_903_552
gw.totals.embeddings = 3_061_504

# ---- MCP: real relay records and calls through the gateway's MCP registry --------------------
from gatewaytui.gateway.mcp.relays import MCPCall  # noqa: E402
from gatewaytui.schema.mcp_protocol import MCPServerInfo, RelayRegisterFrame  # noqa: E402


def mcp_relay(rid, transport, server, remote, connected, heartbeat, *, ready=True, reason=None,
              token=False):  # fmt: skip
    frame = RelayRegisterFrame(
        id=rid, name=rid, transport=transport, version="0.1.0", token_required=token,
        ready=ready, reason=reason, server=MCPServerInfo(**server),
    )  # fmt: skip
    record, _ = gw.mcp.register(frame, None, remote)
    record.connected_at, record.last_heartbeat = connected, heartbeat
    return record


def mcp_counts(record, functions, errors=None, *, last_error=None, at=None, rejected=0,
               reconnects=0):  # fmt: skip
    c = record.counters
    c.functions, c.errors_by_method = dict(functions), dict(errors or {})
    c.calls, c.errors = sum(functions.values()), sum((errors or {}).values())
    c.last_error, c.last_error_at = last_error, at
    c.rejected, c.reconnects = rejected, reconnects


def mcp_call(record, seq, method, target, started, client, *, stream=False):
    call = MCPCall(record, method, target=target, client=client, started_at=started,
                   call_id=f"mcps-{seq:06d}-{PREFIX}")  # fmt: skip
    call.stream = stream
    record.calls[call.id] = gw.mcp.calls[call.id] = call


r = mcp_relay(
    "jira-tools", "stdio",
    {"name": "mcp-atlassian", "title": "Atlassian", "version": "0.11.9",
     "protocol_version": "2025-06-18", "capabilities": ["prompts", "tools"]},
    "10.0.6.21:51022", t("07:58:03.914"), t("09:29:57.318"), token=True,
)  # fmt: skip
mcp_counts(
    r,
    {"initialize": 3, "notifications/initialized": 3, "tools/list": 8, "tools/call": 120,
     "prompts/list": 2},
    {"tools/call": 4},
    last_error="tools/call jira_search: HTTP 502: upstream answered 429 Too Many Requests",
    at=t("09:12:40.226"),
    rejected=1,
)  # fmt: skip
mcp_call(r, 871, "tools/call", "jira_search", t("09:29:58.310"), "10.0.9.80:40210")
mcp_call(r, 874, "tools/list", None, t("09:29:59.902"), "10.0.9.81:52233")

r = mcp_relay(
    "k8s-readonly", "http",
    {"name": "mcp-server-kubernetes", "version": "2.4.0", "protocol_version": "2025-11-25",
     "capabilities": ["logging", "resources", "tools"]},
    "10.0.7.5:38814", t("06:14:20.007", "2026-11-19"), t("09:29:55.902"),
)  # fmt: skip
mcp_counts(
    r,
    {"initialize": 5, "notifications/initialized": 5, "tools/list": 15, "tools/call": 342,
     "resources/list": 6, "resources/read": 41},
    reconnects=1,
)  # fmt: skip
mcp_call(r, 869, "tools/call", "pods_log", t("09:29:51.118"), "10.0.9.80:40188", stream=True)
mcp_call(r, 873, "resources/read", "k8s://default/pods", t("09:29:59.541"), "10.0.9.82:33017")

r = mcp_relay(
    "notion-notes", "stdio",
    {"name": "notion-mcp", "version": "1.8.1", "protocol_version": "2025-11-25",
     "capabilities": ["resources", "tools"]},
    "192.168.7.41:61120", t("08:40:12.775"), t("09:29:58.001"),
    ready=False, reason="MCP server 'npx' exited with code 1",
)  # fmt: skip
mcp_counts(
    r,
    {"initialize": 1, "notifications/initialized": 1, "tools/list": 2, "tools/call": 9},
    {"tools/call": 2},
    last_error="tools/call search: the MCP server exited (code 1) during the call",
    at=t("09:27:02.513"),
)  # fmt: skip

r = mcp_relay(
    "docs-search", "http",
    {"name": "docs-search", "title": "Docs search", "version": "0.3.0",
     "protocol_version": "2025-06-18", "capabilities": ["completions", "prompts", "tools"]},
    "10.0.7.9:44120", t("09:02:44.150"), t("09:29:59.077"),
)  # fmt: skip
mcp_counts(r, {"initialize": 2, "notifications/initialized": 2, "tools/call": 17})

mcp = {
    "clients": [r.to_dict(config.mcp_client_concurrency) for r in gw.mcp.relays.values()],
    "sessions": [c.to_dict(NOW) for c in gw.mcp.calls.values()],
}

# ---- events ---------------------------------------------------------------------------------

raw_events = [
    ("09:05:10.412", "drain", "info",
     "worker gpu-a100-02 draining by operator, 2 jobs left", "gpu-a100-02", None),
    ("09:06:33.908", "drained", "info", "worker gpu-a100-02 drained", "gpu-a100-02", None),
    ("09:11:47.260", "status", "info", "worker mac-studio-01 is idle", "mac-studio-01", None),
    ("09:19:02.775", "undrain", "info",
     "worker gpu-a100-02 re-added by operator", "gpu-a100-02", None),
    ("09:21:15.004", "status", "warning",
     "worker gpu-h100-02 is not_ready: upstream http://10.0.3.7:8000 unreachable: "
     "connection refused", "gpu-h100-02", None),
    ("09:24:30.611", "protocol_error", "error",
     "worker 10.0.5.31:60212 closed: the first frame must be 'register'", None, None),
    ("09:25:44.312", "status", "warning",
     "worker mac-studio-01 is unresponsive (2 jobs unanswered); no jobs until it answers or "
     "reconnects", "mac-studio-01", None),
    ("09:26:02.118", "refuse", "warning",
     "worker id 'gpu-l4-02' is already connected from 10.0.2.32:56034", "gpu-l4-02", None),
    ("09:27:40.530", "self_drain", "info",
     "worker gpu-h100-03 is draining: worker draining", "gpu-h100-03", None),
    ("09:28:12.031", "drain", "info",
     "worker gpu-a100-03 draining by operator, 3 jobs left", "gpu-a100-03", None),
    ("09:29:12.377", "evict", "warning",
     "worker gpu-a10-01 evicted: no heartbeat for 31s (expiry 30s)", "gpu-a10-01", None),
    ("09:29:12.381", "retry", "info",
     f"job {retry_job.id} retried after worker gpu-a10-01 was lost", None, retry_job.id),
    ("09:29:12.383", "retry", "warning",
     f"job {embed_job.id} chunk 1024+64 failed on gpu-a10-01, retrying elsewhere",
     None, embed_job.id),
    ("09:29:51.004", "disconnect", "warning",
     "worker gpu-rtx4090-01 disconnected: connection closed by worker (code 1001)",
     "gpu-rtx4090-01", None),
    ("09:29:58.412", "connect", "info",
     f"worker gpu-rtx4090-01 reconnected from 192.168.7.23:40418 ({L8}, x2)",
     "gpu-rtx4090-01", None),
    ("09:29:59.870", "cancel", "info",
     f"job {cancel_job.id} cancelled by operator", None, cancel_job.id),
]  # fmt: skip
events = [
    {
        "id": 4_807 + i,
        "ts": iso(t(ts)),
        "kind": kind,
        "level": level,
        "message": message,
        "worker_id": worker_id,
        "job_id": job_id,
    }
    for i, (ts, kind, level, message, worker_id, job_id) in enumerate(raw_events)
]

# ---- assemble -------------------------------------------------------------------------------

gw.live.mark_dirty()
# assignments: what the gateway counts model in-flight from (one per chat, one per chunk)
from gatewaytui.gateway.jobs import Assignment  # noqa: E402

chat_load: dict[str, int] = {}
for j in jobs:
    if j.state != "queued" and j.worker and j.kind == "chat":
        a = Assignment(j.id, j, gw.registry.get(j.worker))
        gw.table.assignments[a.id] = a
        chat_load[j.worker] = chat_load.get(j.worker, 0) + 1
for j in jobs:
    if j.partition:
        left = j.partition["chunks_inflight"]
        for wid in j.workers:
            w = gw.registry.get(wid)
            spare = w.inflight - chat_load.get(wid, 0) if w and w.gone_at is None else 0
            for n in range(max(min(spare, left), 0)):
                a = Assignment(f"{j.id}.c{wid}{n}", j, w)
                gw.table.assignments[a.id] = a
                left -= 1
gw.live.refresh_derived()
state = {
    "schema_version": 1,
    "generated_at": iso(NOW),
    "seq": 48_213,
    "server": gw.live.server_item(),
    "workers": [w.to_dict() for w in gw.registry],
    "jobs": [j.to_dict() for j in jobs],
    "models": list(gw.live.models.values()),
    "mcp": mcp,
    "backends": gw.backends.items(),
    "plugins": [p.model_dump(mode="json") for p in options.describe()],
    "events": events,
}
loop.close()
# A single node: no replicas, and the `replica` of every item is null (as the panel stores it).
for item in [*state["workers"], *state["jobs"], *mcp["clients"], *events]:
    item["replica"] = None
state["replicas"] = []


# ---- recent history, as a snapshot saved from the panel carries it ---------------------------


def history_records() -> list[tuple]:
    """An hour of ended jobs (a fixed pattern: mostly ok, a few failures and cancels)."""
    models = [(L8, "gpu-a100-01"), (L70, "gpu-h100-01"), (QC, "gpu-l40s-01"), (EMB, "gpu-l4-01")]
    keys = ["web-app", "batch-eval", "notebook", None]
    outcomes = {7: ("upstream_error", 502, "worker gpu-h100-01 disconnected mid-stream"),
                13: ("cancelled", None, "cancelled by the operator"),
                19: ("timeout", 504, "no first token within 30s"),
                29: ("no_capacity", 503, "queue full (768 waiting)")}  # fmt: skip
    records = []
    for i in range(36):
        model, worker = models[i % 4]
        ended = NOW - 3540 + i * 97.5
        duration = 420.0 + (i * 173) % 2600
        outcome, status, error = outcomes.get(i, ("ok", 200, None))
        embed = model == EMB
        records.append(
            (f"job-h{i:03d}", "embeddings" if embed else "chat", model, keys[i % 3 + (i % 7 == 6)],
             f"10.0.4.{20 + i % 5}", worker, None, None, ended - duration / 1000 - 0.05,
             ended - duration / 1000, ended, 50.0 + (i * 37) % 400,
             None if embed else 90.0 + (i * 53) % 700, duration,
             120 + (i * 31) % 900, 0 if embed else 80 + (i * 47) % 1200, 16 if embed else 0,
             outcome, status, error, int(not embed and i % 2 == 0), 1)
        )  # fmt: skip
    return records


async def sample_history(path: Path) -> dict:
    """The history part of the sample, read back through the gateway's own queries from a
    real ledger holding `history_records()` (so it has exactly the live answers' shape)."""
    from gatewaytui.gateway.history import queries
    from gatewaytui.gateway.history import store as history_store
    from gatewaytui.gateway.history.ledger import Ledger, LedgerSettings
    from gatewaytui.schema.history import SnapshotHistory

    history_store.recording_since = lambda conn: NOW - 86400  # a day-old ledger, not "now"
    ledger = Ledger(LedgerSettings(path=str(path), max_age_s=0))
    ledger.start()
    for record in history_records():
        ledger.add(record)
    await asyncio.to_thread(ledger.flush)
    page = await queries.jobs_page(ledger, limit=500)
    usage = [
        await queries.usage_report(ledger, group, "1h", end=NOW)
        for group in ("model", "key", "worker", "backend")
    ]
    series = await queries.usage_series(ledger, "1h", end=NOW)
    await ledger.stop()
    saved = SnapshotHistory(saved_at=NOW, jobs=page.jobs, usage=usage, series=series)
    return saved.model_dump(mode="json")


with tempfile.TemporaryDirectory() as scratch:
    state["history"] = asyncio.run(sample_history(Path(scratch) / "history.sqlite3"))

GatewayState.model_validate(state)
text = json.dumps(state, indent=2, ensure_ascii=False) + "\n"
out = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parents[2] / "sample_state.json")
with open(out, "w", encoding="utf-8") as fh:
    fh.write(text)
print(f"wrote {out}: {len(state['workers'])} workers, {len(state['jobs'])} jobs")

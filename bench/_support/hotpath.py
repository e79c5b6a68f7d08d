"""The hot-path figures of issue 15, shared by bench/overhead.py (relay worker path) and
bench/backend_overhead.py (backend path).

For each workload the same closed loop runs against the upstream directly and then through the
gateway, back to back, so every figure is a ratio (or a difference) within one run:

  chat       non-stream chat, c=64              gateway CPU µs per request      (≤ 200 µs)
  stream20   20-chunk stream, c=64              streams/s vs direct (≥ 0.9×), CPU per stream (≤ 400)
  stream200  200-chunk stream, c=64             CPU per chunk = (200 − 20) difference / 180 (≤ 10)
  embed16    embeddings, 16 inputs × 256 dims   CPU µs per request              (≤ 250 µs)
  ttfb       time to first byte of a 20-chunk stream, sampled by one probe connection while
             63 wrk connections stream beside it: p50 (≤ direct + 5 ms) and p99
  c1         non-stream chat at concurrency 1: added p50 (≤ 0.3 ms backend, ≤ 0.6 ms relay)

CPU is process CPU time (utime + stime from /proc/PID/stat) over the window divided by the
requests served, so it survives other sessions on the machine better than any wall figure.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from common import percentile, verdict

MODEL = "bench-model"
MESSAGES = [{"role": "user", "content": "Say hello."}]


def stream_body(chunks: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": chunks,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


WORKLOADS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": 16}),
    "stream20": ("/v1/chat/completions", stream_body(20)),
    "stream200": ("/v1/chat/completions", stream_body(200)),
    "embed16": (
        "/v1/embeddings",
        {"model": MODEL, "input": [f"sentence number {i}" for i in range(16)]},
    ),
}


class TtfbProbe:
    """One keep-alive connection streaming 20-chunk requests one after another (blocking
    socket in a thread): the time from sending a request to the first body byte."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.addr = (parts.hostname or "127.0.0.1", parts.port or 80)
        body = _json(stream_body(20))
        self.request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.samples: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        sock: socket.socket | None = None
        while not self._stop.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(self.addr, timeout=30)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.samples.append(self._one(sock))
            except OSError:
                self.errors += 1
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def _one(self, sock: socket.socket) -> float:
        started = time.perf_counter()
        sock.sendall(self.request)
        buffer = b""
        first: float | None = None
        while True:
            data = sock.recv(65536)
            if not data:
                raise OSError("connection closed")
            buffer += data
            if first is None:
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if sep and rest:
                    first = time.perf_counter() - started
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise OSError(head[:60].decode("latin-1"))
            if first is not None and buffer.endswith(b"0\r\n\r\n") and b"[DONE]" in buffer:
                return first


def _json(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()


def run_workloads(
    gen: Any,
    base_url: str,
    watch: list[Any],
    duration: float,
    warmup: float,
) -> dict[str, dict[str, Any]]:
    """Every workload once against `base_url`; figures keyed by workload name."""
    out: dict[str, dict[str, Any]] = {}
    for name, (path, body) in WORKLOADS.items():
        out[name] = gen.with_body(body, name, 64).run(base_url + path, duration, warmup, watch)
    probe = TtfbProbe(base_url + "/v1/chat/completions")
    probe.start()
    try:
        load = gen.with_body(stream_body(20), "ttfb", 63)
        out["ttfb"] = load.run(base_url + "/v1/chat/completions", duration, 0, watch)
    finally:
        probe.stop()
    samples = sorted(probe.samples)
    out["ttfb"].update(
        ttfb_n=len(samples),
        ttfb_errors=probe.errors,
        ttfb_p50_ms=percentile(samples, 50) * 1000,
        ttfb_p99_ms=percentile(samples, 99) * 1000,
    )
    c1 = gen.with_body(WORKLOADS["chat"][1], "c1", 1)
    out["c1"] = c1.run(base_url + "/v1/chat/completions", duration, warmup, watch)
    return out


def interleaved(
    gen: Any,
    direct_url: str,
    via_url: str,
    watch_direct: list[Any],
    watch_via: list[Any],
    duration: float,
    warmup: float,
    rounds: int = 1,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """`rounds` × (direct, via); with more than one round, the median of each figure."""
    directs, vias = [], []
    for _ in range(rounds):
        directs.append(run_workloads(gen, direct_url, watch_direct, duration, warmup))
        vias.append(run_workloads(gen, via_url, watch_via, duration, warmup))
    return _median(directs), _median(vias)


def _median(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    if len(runs) == 1:
        return runs[0]
    merged: dict[str, dict[str, Any]] = {}
    for name in runs[0]:
        figures = dict(runs[0][name])
        for key, value in runs[0][name].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures[key] = statistics.median(r[name][key] for r in runs)
        cpu = {
            proc: statistics.median(r[name]["cpu"].get(proc, 0.0) for r in runs)
            for proc in runs[0][name]["cpu"]
        }
        figures["cpu"] = cpu
        merged[name] = figures
    return merged


def us_per(r: dict[str, Any], proc: str) -> float:
    """CPU µs of `proc` per request (or stream) in one window."""
    return r["cpu"].get(proc, 0.0) / max(r["requests"], 1) * 1e6


def report(
    label: str,
    direct: dict[str, dict[str, Any]],
    via: dict[str, dict[str, Any]],
    procs: list[str],
    c1_target_ms: float,
    line: Callable[[str, dict[str, Any]], None],
) -> dict[str, bool]:
    """Print every window and the verdicts; returns {figure: passed}."""
    for name in via:
        line(f"direct {name}", direct[name])
        line(f"{label} {name}", via[name])
    print(f"\n   hot path [{label}] (each figure compares the two windows above, same run)")
    results: dict[str, bool] = {}
    extra = [p for p in procs if p != "gateway"]

    def others(name: str) -> str:
        if not extra:
            return ""
        return " (" + ", ".join(f"{p} {us_per(via[name], p):.0f} µs" for p in extra) + ")"

    for name, target in (("chat", 200.0), ("stream20", 400.0), ("embed16", 250.0)):
        value = us_per(via[name], "gateway")
        what = {"chat": "per chat", "stream20": "per 20-chunk stream", "embed16": "per embeddings"}
        results[f"cpu {name}"] = verdict(
            f"gateway CPU {what[name]}{others(name)}", value, target, "µs", higher_is_better=False
        )
    per_chunk = {p: (us_per(via["stream200"], p) - us_per(via["stream20"], p)) / 180 for p in procs}
    note = ", ".join(f"{p} {v:.1f} µs" for p, v in per_chunk.items() if p != "gateway")
    results["cpu per chunk"] = verdict(
        "gateway CPU per streamed chunk" + (f" ({note})" if note else ""),
        per_chunk["gateway"],
        10.0,
        "µs",
        higher_is_better=False,
    )
    d, v = direct["stream20"], via["stream20"]
    ratio = v["rps"] / d["rps"] if d["rps"] else 0.0
    results["streams/s"] = verdict(
        f"streams/s at c=64, 20 chunks: {v['rps']:.0f} vs direct {d['rps']:.0f}",
        ratio,
        0.9,
        "x direct",
        higher_is_better=True,
    )
    s200 = via["stream200"]["rps"] / max(direct["stream200"]["rps"], 1e-9)
    print(f"   (200-chunk streams: {s200:.2f}x direct, no target)")
    dt, vt = direct["ttfb"], via["ttfb"]
    added = vt["ttfb_p50_ms"] - dt["ttfb_p50_ms"]
    results["ttfb p50"] = verdict(
        f"TTFB p50 {vt['ttfb_p50_ms']:.2f} ms vs direct {dt['ttfb_p50_ms']:.2f} ms "
        f"(p99 {vt['ttfb_p99_ms']:.2f} vs {dt['ttfb_p99_ms']:.2f} ms; n={vt['ttfb_n']}/"
        f"{dt['ttfb_n']}), added",
        added,
        5.0,
        "ms",
        higher_is_better=False,
    )
    c1 = via["c1"]["p50_ms"] - direct["c1"]["p50_ms"]
    results["c1 added"] = verdict(
        f"added p50 at c=1 ({via['c1']['p50_ms']:.2f} vs {direct['c1']['p50_ms']:.2f} ms)",
        c1,
        c1_target_ms,
        "ms",
        higher_is_better=False,
    )
    return results

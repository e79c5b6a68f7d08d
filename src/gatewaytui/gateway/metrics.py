"""Prometheus metrics: what the SPI's Metrics interface records, plus live gauges.

Counters and histograms are updated where jobs end; gauges (in-flight, queue, workers by
status) are read from live state at scrape time by a custom collector, so nothing is
updated on every tick.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

import gatewaytui
from gatewaytui.gateway.json_body import safe_text
from gatewaytui.schema import WorkerStatus

disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series only add noise for operators

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_PREFIX = "gatewaytui"


class _LiveCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]):
        self._read = read

    def collect(self) -> Iterator[Any]:
        live = self._read()
        info = InfoMetricFamily(f"{_PREFIX}_build", "Build information of the gateway.")
        info.add_metric([], {"version": gatewaytui.__version__})
        yield info
        inflight = GaugeMetricFamily(f"{_PREFIX}_inflight_jobs", "Jobs in flight.")
        inflight.add_metric([], live["inflight"])
        yield inflight
        queue = GaugeMetricFamily(f"{_PREFIX}_queue_length", "Requests waiting for capacity.")
        queue.add_metric([], live["queue_length"])
        yield queue
        workers = GaugeMetricFamily(f"{_PREFIX}_workers", "Workers by status.", labels=["status"])
        for status in WorkerStatus:
            workers.add_metric([status.value], live["workers_by_status"].get(status.value, 0))
        yield workers
        draining = GaugeMetricFamily(f"{_PREFIX}_server_draining", "1 while the server drains.")
        draining.add_metric([], 1 if live["draining"] else 0)
        yield draining
        subscribers = GaugeMetricFamily(
            f"{_PREFIX}_state_stream_subscribers", "Connected state stream clients."
        )
        subscribers.add_metric([], live["subscribers"])
        yield subscribers
        resyncs = CounterMetricFamily(
            f"{_PREFIX}_state_stream_resyncs", "Slow state stream clients resynced."
        )
        resyncs.add_metric([], live["resyncs"])
        yield resyncs


class GatewayMetrics:
    """One registry per gateway instance (tests run many gateways in one process)."""

    # Over 60 lines on purpose: one declaration per metric, read top to bottom like the
    # /metrics page; splitting it would only scatter the list.
    def __init__(self, read_live: Callable[[], dict[str, Any]], per_worker: bool = True):
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.per_worker = per_worker
        r = self.registry
        self.model_requests = Counter(
            f"{_PREFIX}_model_requests",
            "Requests per model by outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_tokens = Counter(
            f"{_PREFIX}_model_tokens",
            "Tokens per model (kind: in or out).",
            ["model", "kind"],
            registry=r,
        )
        self.model_embeddings = Counter(
            f"{_PREFIX}_model_embeddings", "Embeddings produced per model.", ["model"], registry=r
        )
        self.request_duration = Histogram(
            f"{_PREFIX}_request_duration_seconds",
            "End-to-end request duration per model.",
            ["model", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{_PREFIX}_queue_wait_seconds",
            "Time requests waited for a worker.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_jobs = Counter(
            f"{_PREFIX}_worker_jobs",
            "Jobs per worker by outcome.",
            ["worker", "outcome"],
            registry=r,
        )
        self.worker_tokens = Counter(
            f"{_PREFIX}_worker_tokens",
            "Tokens per worker (kind: in or out).",
            ["worker", "kind"],
            registry=r,
        )
        self.worker_embeddings = Counter(
            f"{_PREFIX}_worker_embeddings", "Embeddings per worker.", ["worker"], registry=r
        )
        self.worker_processing = Histogram(
            f"{_PREFIX}_worker_processing_seconds",
            "Processing time per worker and kind.",
            ["worker", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_events = Counter(
            f"{_PREFIX}_worker_events",
            "Worker connects, disconnects, evictions, refusals.",
            ["event"],
            registry=r,
        )
        r.register(_LiveCollector(read_live))
        # Metrics whose first label is the worker id: a removed worker's series go with it.
        self._per_worker_metrics: dict[int, Any] = {
            id(m): m
            for m in (
                self.worker_jobs,
                self.worker_tokens,
                self.worker_embeddings,
                self.worker_processing,
            )
        }

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(...)`, cached: label lookup showed up in per-request profiles.

        Label values are made UTF-8 safe here, so no value can make /metrics fail to render.
        """
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*(safe_text(v) for v in labels))
        return child

    def forget_worker(self, worker: str) -> None:
        """Remove a removed worker's labelled series (and their cached children), so that
        /metrics does not list every worker that ever connected."""
        per_worker = self._per_worker_metrics
        for key in [k for k in self._children if k[0] in per_worker and k[1][0] == worker]:
            del self._children[key]
            with contextlib.suppress(KeyError):
                per_worker[key[0]].remove(*key[1])

    def job_finished(
        self,
        model: str,
        kind: str,
        seconds: float,
        ok: bool,
        tokens_in: int = 0,
        tokens_out: int = 0,
        embeddings: int = 0,
    ) -> None:
        child = self._child
        child(self.model_requests, model, "success" if ok else "failure").inc()
        child(self.request_duration, model, kind).observe(seconds)
        if tokens_in:
            child(self.model_tokens, model, "in").inc(tokens_in)
        if tokens_out:
            child(self.model_tokens, model, "out").inc(tokens_out)
        if embeddings:
            child(self.model_embeddings, model).inc(embeddings)

    def worker_finished(
        self,
        worker: str,
        kind: str,
        seconds: float,
        ok: bool,
        tokens_in: int = 0,
        tokens_out: int = 0,
        embeddings: int = 0,
    ) -> None:
        if not self.per_worker:
            return
        child = self._child
        child(self.worker_jobs, worker, "success" if ok else "failure").inc()
        child(self.worker_processing, worker, kind).observe(seconds)
        if tokens_in:
            child(self.worker_tokens, worker, "in").inc(tokens_in)
        if tokens_out:
            child(self.worker_tokens, worker, "out").inc(tokens_out)
        if embeddings:
            child(self.worker_embeddings, worker).inc(embeddings)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""The usage ledger against a real gateway on a real port, driven by the official `openai` SDK,
with a real SQLite file: outcomes, restart, broken files, retention, named keys, the API."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time

import httpx
import openai
import pytest

from gatewaytui.client.errors import ActionError
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.history import store
from gatewaytui.gateway.history.failures import FailureEvents
from gatewaytui.gateway.history.ledger import Ledger, LedgerSettings
from gatewaytui.gateway.history.merge import FleetCursor, merge_jobs, merge_series, merge_usage
from gatewaytui.gateway.history.record import COLUMNS
from gatewaytui.schema.history import (
    HistoryJob,
    HistoryJobsPage,
    SeriesPoint,
    UsageReport,
    UsageRow,
    UsageSeries,
)
from support.gateway_harness import RunningGateway, SimFleet

MESSAGES = [{"role": "user", "content": "hello there"}]


def sdk(gw: RunningGateway, key: str = "none", timeout: float = 20) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=timeout)


def flush(gw: RunningGateway) -> None:
    ledger = gw.gateway.history.ledger
    assert ledger is not None
    assert ledger.flush(10)


def history(gw: RunningGateway, path: str = "/api/history/jobs", **params: object) -> dict:
    reply = httpx.get(gw.url + path, params=params, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def by_id(gw: RunningGateway) -> dict[str, dict]:
    return {j["id"]: j for j in history(gw, limit=500)["jobs"]}


def events(gw: RunningGateway) -> list[dict]:
    return httpx.get(gw.url + "/api/state", timeout=10).json()["events"]


def test_every_outcome_lands_in_the_ledger(make_gateway, sim_workers, tmp_path):
    db = tmp_path / "history.sqlite3"
    gw = make_gateway(history__path=str(db), llm__queue_timeout="300ms", llm__request_timeout="3s")
    sim_workers(gw, id="fast", simulate={"models": ["m-fast", "e5"], "max_tokens": 5})
    sim_workers(gw, id="bad", simulate={"models": ["m-bad"], "failure_rate": 1.0})
    sim_workers(gw, id="slow", concurrency=1, simulate={"models": ["m-slow"], "latency_s": 5.0})
    client = sdk(gw)
    ok = client.chat.completions.with_raw_response.create(model="m-fast", messages=MESSAGES)
    ok_id = ok.headers.get("x-job-id")
    assert int(ok.headers["x-gateway-overhead-us"]) >= 0
    assert int(ok.headers["x-gateway-queue-us"]) == 0
    pieces = list(client.chat.completions.create(model="m-fast", messages=MESSAGES, stream=True))
    assert pieces
    emb = client.embeddings.with_raw_response.create(model="e5", input=["a", "b", "c"])
    assert int(emb.headers["x-gateway-overhead-us"]) >= 0
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="m-bad", messages=MESSAGES)

    # m-slow: one slot taken for 5 s -> the next waits 300 ms in the queue and gives up;
    # the one in the slot hits the request timeout (3 s).
    def slow_request() -> None:
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="m-slow", messages=MESSAGES)

    slow = threading.Thread(target=slow_request)
    slow.start()
    gw.wait_for(lambda g: any(j.model == "m-slow" and j.worker for j in g.jobs.values()))
    with pytest.raises(openai.APIStatusError) as queued:
        client.chat.completions.create(model="m-slow", messages=MESSAGES)
    assert queued.value.status_code == 503
    slow.join(10)
    # a client that leaves: its own short timeout on a slow worker
    with pytest.raises(openai.APITimeoutError):
        sdk(gw, timeout=0.5).chat.completions.create(model="m-slow", messages=MESSAGES)
    gw.wait_for(lambda g: not g.jobs)
    flush(gw)
    jobs = history(gw, limit=100)["jobs"]
    outcomes = [(j["kind"], j["model"], j["outcome"], j["stream"]) for j in jobs]
    assert ("chat", "m-fast", "ok", False) in outcomes
    assert ("chat", "m-fast", "ok", True) in outcomes
    assert ("embeddings", "e5", "ok", False) in outcomes
    assert ("chat", "m-bad", "upstream_error", False) in outcomes
    assert ("chat", "m-slow", "queue_timeout", False) in outcomes
    assert ("chat", "m-slow", "timeout", False) in outcomes
    assert ("chat", "m-slow", "client_gone", False) in outcomes
    # newest first
    assert [j["ended_at"] for j in jobs] == sorted((j["ended_at"] for j in jobs), reverse=True)
    first = next(j for j in jobs if j["model"] == "m-fast" and not j["stream"])
    assert first["worker"] == "fast" and first["tokens_out"] == 5 and first["tokens_in"] > 0
    assert first["status"] == 200 and first["error"] is None and first["client"]
    assert first["requested_at"] <= first["started_at"] <= first["ended_at"]
    assert first["duration_ms"] > 0 and first["queue_ms"] == 0
    streamed = next(j for j in jobs if j["stream"])
    assert streamed["ttft_ms"] is not None and streamed["ttft_ms"] <= streamed["duration_ms"]
    embedded = next(j for j in jobs if j["kind"] == "embeddings")
    assert embedded["embeddings"] == 3
    failed = next(j for j in jobs if j["outcome"] == "upstream_error")
    assert failed["error"] and failed["status"] >= 500
    timed_out = next(j for j in jobs if j["outcome"] == "queue_timeout")
    assert timed_out["status"] == 503 and "no worker" in timed_out["error"]
    assert timed_out["queue_ms"] >= 250
    if ok_id:
        assert history(gw, f"/api/history/jobs/{ok_id}")["outcome"] == "ok"
    one = history(gw, f"/api/history/jobs/{failed['id']}")
    assert one["outcome"] == "upstream_error"
    assert httpx.get(gw.url + "/api/history/jobs/nope").status_code == 404
    # filters, text search, pagination
    assert {j["outcome"] for j in history(gw, outcome="ok")["jobs"]} == {"ok"}
    assert {j["model"] for j in history(gw, model="m-slow")["jobs"]} == {"m-slow"}
    assert {j["worker"] for j in history(gw, worker="bad")["jobs"]} == {"bad"}
    found = history(gw, q="no worker")["jobs"]
    assert found and all("no worker" in (j["error"] or "") for j in found)
    page1 = history(gw, limit=3)
    page2 = history(gw, limit=3, cursor=page1["next_cursor"])
    assert not {j["id"] for j in page1["jobs"]} & {j["id"] for j in page2["jobs"]}
    assert page1["jobs"][-1]["ended_at"] >= page2["jobs"][0]["ended_at"]
    assert httpx.get(gw.url + "/api/history/jobs", params={"cursor": "zz"}).status_code == 400
    # failure events: one line per kind, not one per request
    kinds = {e["kind"] for e in events(gw)}
    assert {"queue_timeout", "request_failed", "request_timeout"} <= kinds
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'gatewaytui_gateway_overhead_seconds_count{kind="chat"}' in metrics


def test_usage_and_series_from_rollups(make_gateway, sim_workers, tmp_path):
    gw = make_gateway(history__path=str(tmp_path / "h.sqlite3"))
    sim_workers(gw, id="w1", simulate={"models": ["a", "b"], "max_tokens": 4})
    client = sdk(gw)
    for model in ["a"] * 5 + ["b"] * 3:
        client.chat.completions.create(model=model, messages=MESSAGES)
    flush(gw)
    usage = history(gw, "/api/history/usage", group_by="model", window="15m")
    rows = {r["group"]: r for r in usage["rows"]}
    assert rows["a"]["requests"] == 5 and rows["b"]["requests"] == 3
    assert rows["a"]["tokens_out"] == 20 and rows["a"]["errors"] == 0
    assert rows["a"]["latency_p50_ms"] is not None and rows["a"]["latency_p95_ms"] >= 0
    assert sum(rows["a"]["latency_buckets"]) == 5
    assert usage["rows"][0]["group"] == "a"  # busiest first
    by_worker = history(gw, "/api/history/usage", group_by="worker", window="1h")
    assert by_worker["rows"][0]["group"] == "w1" and by_worker["rows"][0]["requests"] == 8
    series = history(gw, "/api/history/series", window="15m", model="a")
    assert sum(p["requests"] for p in series["points"]) == 5
    assert all(p["t"] % 60 == 0 for p in series["points"])
    bad = httpx.get(gw.url + "/api/history/usage", params={"group_by": "colour"})
    assert bad.status_code == 400 and "group_by" in bad.json()["error"]["message"]
    bad = httpx.get(gw.url + "/api/history/series", params={"window": "forever"})
    assert bad.status_code == 400
    spec = httpx.get(gw.url + "/openapi.json").json()
    for path in ("/api/history/jobs", "/api/history/jobs/{job_id}", "/api/history/usage",
                 "/api/history/series"):  # fmt: skip
        assert path in spec["paths"]
    assert "UsageReport" in spec["components"]["schemas"]


def test_rates_of_a_young_ledger_are_over_its_age_not_the_window(
    make_gateway, sim_workers, tmp_path
):
    gw = make_gateway(history__path=str(tmp_path / "h.sqlite3"))
    sim_workers(gw, id="w1", simulate={"models": ["a"], "max_tokens": 2})
    client = sdk(gw)
    for _ in range(10):
        client.chat.completions.create(model="a", messages=MESSAGES)
    flush(gw)
    usage = history(gw, "/api/history/usage", group_by="model", window="24h")
    covered = usage["covered_s"]
    assert 0 < covered < 120 and usage["since"] > time.time() - 120
    row = usage["rows"][0]
    assert row["requests"] == 10
    # 10 requests over a ledger under 2 minutes old: at least 10/120 per second (over the
    # 24 h window it would read 0.0001/s, printed 0.00).
    assert row["request_rate"] == round(10 / covered, 6) and row["request_rate"] > 10 / 120
    series = history(gw, "/api/history/series", window="15m")
    assert series["since"] == usage["since"]
    # Before the ledger existed there is nothing to cover: a window that ends then has no rate.
    old = history(gw, "/api/history/usage", window="1h", end=usage["since"] - 7200)
    assert old["covered_s"] == 0 and old["rows"] == []


def test_since_is_kept_across_opens_and_taken_from_old_data_in_an_older_file(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    conn = store.open_writer(path)
    first = store.recording_since(conn)
    conn.close()
    conn = store.open_writer(path)
    assert store.recording_since(conn) == first
    # A file written before `meta` existed: its oldest record says since when it records.
    conn.execute("DROP TABLE meta")
    row = [None] * len(COLUMNS)
    row[COLUMNS.index("id")], row[COLUMNS.index("outcome")] = "j1", "ok"
    row[COLUMNS.index("requested_at")] = row[COLUMNS.index("ended_at")] = 1020.0
    store.write_batch(conn, [tuple(row)])
    conn.close()
    conn = store.open_writer(path)
    assert store.recording_since(conn) == 1020.0
    conn.close()


def test_history_survives_a_restart(tmp_path):
    from gatewaytui.workers.settings import SimulateSettings, WorkerSettings

    db = str(tmp_path / "h.sqlite3")
    first = RunningGateway(GatewayConfig.build(history__path=db))
    try:
        settings = WorkerSettings(
            gateway_url=first.ws_url,
            simulate=SimulateSettings(models=["m"], latency_s=0.01, tokens_per_second=0),
            drain_timeout_s=5,
        )
        fleet = SimFleet(first, settings)
        sdk(first).chat.completions.create(model="m", messages=MESSAGES)
        flush(first)
        before = history(first)["jobs"]
        fleet.stop()
    finally:
        first.stop()
    second = RunningGateway(GatewayConfig.build(history__path=db))
    try:
        after = history(second)["jobs"]
        assert [j["id"] for j in after] == [j["id"] for j in before] and len(after) == 1
        usage = history(second, "/api/history/usage", window="1h")
        assert usage["rows"][0]["requests"] == 1
    finally:
        second.stop()


def test_corrupt_file_keeps_the_gateway_serving(make_gateway, sim_workers, tmp_path):
    db = tmp_path / "h.sqlite3"
    db.write_bytes(b"this is not a database, just garbage " * 200)
    gw = make_gateway(history__path=str(db))
    sim_workers(gw, id="w", simulate={"models": ["m"]})
    gw.wait_for(lambda g: any(e["kind"] == "history_error" for e in g.events.all()))
    reply = sdk(gw).chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content
    flush(gw)
    event = next(e for e in events(gw) if e["kind"] == "history_error")
    assert event["level"] == "error" and str(db) in event["message"]
    assert "keeps serving" in event["message"]
    ledger = gw.gateway.history.ledger
    assert ledger is not None and ledger.dropped_failed >= 1 and ledger.written == 0
    answer = httpx.get(gw.url + "/api/history/jobs")
    assert answer.status_code == 503 and "history" in answer.json()["error"]["message"]


def test_unopenable_path_keeps_the_gateway_serving(make_gateway, sim_workers, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    gw = make_gateway(history__path=str(blocker / "h.sqlite3"))
    sim_workers(gw, id="w", simulate={"models": ["m"]})
    assert sdk(gw).chat.completions.create(model="m", messages=MESSAGES).choices
    gw.wait_for(lambda g: any(e["kind"] == "history_error" for e in g.events.all()))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_read_only_file_keeps_the_gateway_serving(make_gateway, sim_workers, tmp_path):
    db = tmp_path / "h.sqlite3"
    store.open_writer(str(db)).close()
    db.chmod(0o444)
    gw = make_gateway(history__path=str(db))
    sim_workers(gw, id="w", simulate={"models": ["m"]})
    assert sdk(gw).chat.completions.create(model="m", messages=MESSAGES).choices
    gw.wait_for(lambda g: any(e["kind"] == "history_error" for e in g.events.all()))


def test_locked_file_drops_and_counts_without_blocking(make_gateway, sim_workers, tmp_path):
    db = tmp_path / "h.sqlite3"
    gw = make_gateway(history__path=str(db), history__flush_interval="50ms")
    sim_workers(gw, id="w", simulate={"models": ["m"]})
    flush(gw)
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        started = time.monotonic()
        for _ in range(3):
            sdk(gw).chat.completions.create(model="m", messages=MESSAGES)
        assert time.monotonic() - started < 5
        flush(gw)
        ledger = gw.gateway.history.ledger
        assert ledger is not None and ledger.dropped_failed >= 1
        gw.wait_for(lambda g: any(e["kind"] == "history_error" for e in g.events.all()))
        assert "locked" in next(e for e in events(gw) if e["kind"] == "history_error")["message"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sdk(gw).chat.completions.create(model="m", messages=MESSAGES)
    flush(gw)
    gw.wait_for(lambda g: any(e["kind"] == "history_recovered" for e in g.events.all()))
    assert history(gw)["jobs"]


def test_full_queue_drops_and_counts(tmp_path):
    ledger = Ledger(LedgerSettings(path=str(tmp_path / "h.sqlite3"), queue_size=2))
    row = _record("x", time.time())
    assert ledger.add(row) and ledger.add(row)  # the writer is not running: nothing drains
    assert not ledger.add(row) and not ledger.add(row)
    assert ledger.dropped_full == 2 and ledger.status()["dropped"] == 2


def _record(job_id: str, ended: float, **changes: object) -> tuple:
    base = dict.fromkeys(COLUMNS)
    base.update(
        id=job_id, kind="chat", model="m", key="k", worker="w", requested_at=ended - 1,
        started_at=ended - 0.9, ended_at=ended, queue_ms=0.0, ttft_ms=50.0, duration_ms=120.0,
        tokens_in=3, tokens_out=7, embeddings=0, outcome="ok", status=200, stream=0, attempts=1,
    )  # fmt: skip
    base.update(changes)
    return tuple(base[c] for c in COLUMNS)


def test_retention_by_age_and_size(tmp_path):
    db = str(tmp_path / "h.sqlite3")
    conn = store.open_writer(db)
    now = time.time()
    old = [_record(f"old-{i}", now - 10 * 86400 + i) for i in range(100)]
    new = [_record(f"new-{i}", now - 60 + i * 0.001, error="x" * 500) for i in range(20_000)]
    store.write_batch(conn, old)
    for batch in store.iter_batches(new, 2000):
        store.write_batch(conn, batch)
    deleted = store.apply_retention(conn, max_age_s=7 * 86400, max_bytes=0, now=now)
    assert deleted == 100
    assert conn.execute("SELECT count(*) FROM jobs WHERE id LIKE 'old-%'").fetchone()[0] == 0
    cutoff = int((now - 7 * 86400) // 60)
    assert (
        conn.execute("SELECT count(*) FROM rollup WHERE minute < ?", (cutoff,)).fetchone()[0] == 0
    )
    size_before = store.used_bytes(conn)
    limit = size_before // 2
    deleted = store.apply_retention(conn, max_age_s=7 * 86400, max_bytes=limit, now=now)
    assert deleted > 0 and store.used_bytes(conn) <= limit
    left = [r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY seq")]
    assert left and left[-1] == "new-19999"  # the newest stay, the oldest went
    assert int(left[0].split("-")[1]) > 0
    conn.close()


def test_named_api_keys_and_no_key_anywhere(make_gateway, sim_workers, tmp_path):
    named, bare = "sk-search-0123456789abcdef", "sk-bare-fedcba9876543210"
    db = tmp_path / "h.sqlite3"
    gw = make_gateway(
        history__path=str(db),
        server__api_keys=f"team-search={named},{bare}",
        server__viewer_tokens="viewer-tok",
    )
    sim_workers(gw, id="w", simulate={"models": ["m"]})
    sdk(gw, key=named).chat.completions.create(model="m", messages=MESSAGES)
    sdk(gw, key=bare).chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, key="wrong").chat.completions.create(model="m", messages=MESSAGES)
    flush(gw)
    auth = {"Authorization": "Bearer viewer-tok"}
    assert httpx.get(gw.url + "/api/history/jobs").status_code == 401
    seen = []
    for path in ("/api/history/jobs", "/api/history/usage?group_by=key", "/api/history/series",
                 "/api/state", "/api/plugins", "/metrics", "/openapi.json"):  # fmt: skip
        reply = httpx.get(gw.url + path, headers=auth)
        assert reply.status_code == 200, path
        seen.append(reply.text)
    usage = httpx.get(gw.url + "/api/history/usage?group_by=key", headers=auth).json()
    keys = {r["group"] for r in usage["rows"]}
    from gatewaytui.gateway.api_keys import fingerprint

    assert keys == {"team-search", fingerprint(bare)}
    flush(gw)  # committed: in the file or its write-ahead log, both read below
    blobs = [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
    for secret in (named, bare):
        assert all(secret not in text for text in seen)
        assert all(secret.encode() not in blob for blob in blobs)
    assert any(b"team-search" in blob for blob in blobs)


def test_api_keys_from_a_yaml_mapping():
    from gatewaytui.gateway.options import OptionError, resolve_options

    options = resolve_options(
        yaml_doc={"plugin_options": {"server": {"api_keys": {"team-a": "sk-a", "team-b": "sk-b"}}}}
    )
    config = GatewayConfig.from_options(options)
    assert config.api_keys == ("team-a=sk-a", "team-b=sk-b")
    with pytest.raises(OptionError):
        GatewayConfig.from_options(resolve_options(flags={"server.api_keys": "a=k1,a=k2"}))
    with pytest.raises(OptionError):
        GatewayConfig.from_options(resolve_options(flags={"server.api_keys": "bad name=k1"}))


def test_history_off_by_option(make_gateway):
    gw = make_gateway(history__enabled="false")
    reply = httpx.get(gw.url + "/api/history/jobs")
    assert reply.status_code == 404 and "history.enabled=false" in reply.json()["error"]["message"]


def test_a_storm_of_failures_is_a_few_lines():
    lines: list[tuple[str, str, str]] = []
    failures = FailureEvents(lambda *event: lines.append(event), window_s=10)
    for i in range(1000):
        failures.failed("llama3:70b", 503, "no_capacity", "queue full", now=100 + i * 0.005)
    failures.failed("llama3:70b", 499, "client_gone", None, now=101)  # not a failure
    failures.flush(now=105)
    assert len(lines) == 1
    failures.flush(now=111)
    assert len(lines) == 2
    assert lines[1][1].startswith("999 more requests for llama3:70b got 503 no_capacity")
    assert "in the last 11 s" in lines[1][1]


def test_merging_several_ledgers():
    def job(i: str, t: float) -> HistoryJob:
        return HistoryJob(id=i, kind="chat", requested_at=t, ended_at=t, outcome="ok")

    a3, a1, b2 = job("a3", 30), job("a1", 10), job("b2", 20)
    a3.seq, a1.seq, b2.seq = 7, 6, 1
    merged = merge_jobs(
        {
            "a": HistoryJobsPage(jobs=[a3, a1], next_cursor="s6"),
            "b": HistoryJobsPage(jobs=[b2]),
        },
        limit=2,
    )
    assert [j.id for j in merged.jobs] == ["a3", "b2"]
    # The next page: a goes on below a3 (seq 7), b has nothing older, a replica not asked
    # before (it did not answer, or joined since) goes on from the last job shown.
    after = FleetCursor.parse(merged.next_cursor)
    assert after.for_replica("a") == "s7" and after.for_replica("b") is None
    assert after.for_replica("c") == "t20.0"
    last = merge_jobs({"a": HistoryJobsPage(jobs=[a1])}, limit=2, cursor=after)
    assert [j.id for j in last.jobs] == ["a1"] and last.next_cursor is None
    with pytest.raises(ValueError, match="cursor"):
        FleetCursor.parse("fnot-base64!")
    row = UsageRow(group="m", requests=2, errors=1, latency_buckets=[0, 2], ttft_buckets=[])
    report = UsageReport(group_by="model", window="1h", start=0, end=3600, rows=[row])
    young = report.model_copy(deep=True, update={"since": 3000.0})
    both = merge_usage([report, young])
    assert both.rows[0].requests == 4 and both.rows[0].latency_buckets == [0, 4]
    assert both.rows[0].error_rate == 0.5
    assert both.since == 3000.0 and both.covered_s == 600  # the older ledger is 10 min old
    assert both.rows[0].request_rate == round(4 / 600, 6)
    series = UsageSeries(window="1h", start=0, end=3600, points=[
        SeriesPoint(t=60, requests=1, latency_sum_ms=10)])  # fmt: skip
    total = merge_series([series, series.model_copy(deep=True)])
    assert total.points[0].requests == 2 and total.points[0].latency_avg_ms == 10


def test_tests_and_demo_write_no_ledger_unless_asked(tmp_path):
    assert GatewayConfig.build().history_enabled is False
    assert GatewayConfig.build(history__path=str(tmp_path / "x")).history_enabled is True
    from gatewaytui.gateway.options import resolve_options

    assert GatewayConfig.from_options(resolve_options()).history_enabled is True  # serve: on


async def test_mcp_calls_land_in_the_ledger(make_gateway, tmp_path):
    from support.mcp_peers import InProcessRelay, mcp_client, relay_settings

    gw = make_gateway(
        history__path=str(tmp_path / "h.sqlite3"),
        server__api_keys="team-tools=sk-tools",
        server__worker_key="wk",
    )
    relay = InProcessRelay(gw, relay_settings(gw, key="wk", name="Demo tools"))
    try:
        async with mcp_client(gw, headers={"Authorization": "Bearer sk-tools"}) as session:
            await session.initialize()
            result = await session.call_tool("add", {"a": 2, "b": 40})
            assert result.structured_content == {"result": 42}
    finally:
        assert relay.stop() == 0
    await asyncio.to_thread(flush, gw)
    page = await asyncio.to_thread(history, gw, outcome="ok")
    calls = [j for j in page["jobs"] if j["kind"] == "mcp"]
    assert any(j["model"] == "tools/call add" and j["worker"] == "demo" for j in calls)
    assert any(j["model"] == "initialize" for j in calls)
    assert all(j["status"] == 200 and j["duration_ms"] >= 0 for j in calls)
    assert {j["key"] for j in calls} == {"team-tools"}


async def test_the_client_reads_the_history(make_gateway, sim_workers, tmp_path):
    from gatewaytui.client import GatewayClient

    gw = make_gateway(history__path=str(tmp_path / "h.sqlite3"), server__viewer_tokens="v")
    await asyncio.to_thread(sim_workers, gw, id="w", simulate={"models": ["m"]})
    for _ in range(3):
        await asyncio.to_thread(sdk(gw).chat.completions.create, model="m", messages=MESSAGES)
    await asyncio.to_thread(flush, gw)
    async with GatewayClient(gw.url, "v") as client:
        page = await client.history.jobs(limit=2, model="m")
        assert len(page.jobs) == 2 and page.next_cursor
        older = await client.history.jobs(limit=2, cursor=page.next_cursor)
        assert len(older.jobs) == 1
        job = await client.history.job(page.jobs[0].id)
        assert job.outcome == "ok" and job.worker == "w"
        usage = await client.history.usage("worker", "15m")
        assert usage.rows[0].group == "w" and usage.rows[0].requests == 3
        series = await client.history.series("1h", model="m")
        assert sum(p.requests for p in series.points) == 3
        with pytest.raises(ActionError) as missing:
            await client.history.job("nope")
        assert missing.value.status == 404


def test_usage_over_hours_and_ragged_edges_matches_the_raw_records(tmp_path):
    conn = store.open_writer(str(tmp_path / "h.sqlite3"))
    base = 1_700_000_000.0 // 3600 * 3600
    rows = [
        _record(f"r{i}", base + i * 37.0, model="a" if i % 3 else "b", duration_ms=10.0 + i % 90)
        for i in range(800)  # a little over 8 hours, one record every 37 s
    ]
    store.write_batch(conn, rows)
    for start, end in [(base + 1234, base + 5 * 3600 + 77), (base, base + 8 * 3600 - 1),
                       (base + 600, base + 1500)]:  # fmt: skip
        got = {r["group"]: r["requests"] for r in store.usage(conn, "model", start, end)}
        first, last = int(start // 60), int(end // 60) + 1  # whole minutes, as documented
        want: dict[str, int] = {}
        for r in rows:
            if first <= r[COLUMNS.index("ended_at")] // 60 < last:
                model = r[COLUMNS.index("model")]
                want[model] = want.get(model, 0) + 1
        assert got == want
        total = sum(sum(r["latency_buckets"]) for r in store.usage(conn, "model", start, end))
        assert total == sum(want.values())
    points = store.series(conn, base, base + 8 * 3600, hourly=True)
    assert [p["minute"] % 60 for p in points] == [0] * len(points)
    assert sum(p["requests"] for p in points) == 800  # the hour holding the end counts
    conn.close()


def test_cancelled_no_capacity_rejected_and_bad_request_land_in_the_ledger(
    make_gateway, sim_workers, tmp_path
):
    """The outcomes the test above does not reach, with the official SDK as the client."""
    gw = make_gateway(
        history__path=str(tmp_path / "h.sqlite3"), llm__queue_size=1, llm__queue_timeout="20s"
    )
    sim_workers(gw, id="slow", concurrency=1, simulate={"models": ["m"], "latency_s": 30.0})
    client = sdk(gw, timeout=30)
    errors: list[int] = []

    def call() -> None:
        try:
            client.chat.completions.create(model="m", messages=MESSAGES)
        except openai.APIStatusError as exc:
            errors.append(exc.status_code)

    running = threading.Thread(target=call)
    running.start()  # takes the only slot
    gw.wait_for(lambda g: any(j.worker for j in g.jobs.values()))
    queued = threading.Thread(target=call)
    queued.start()  # waits in the queue (size 1)
    gw.wait_for(lambda g: len(g.jobs) == 2)
    with pytest.raises(openai.APIStatusError) as full:  # the queue is full: 503 no capacity
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert full.value.status_code == 503
    with pytest.raises(openai.NotFoundError):  # an unknown model
        client.chat.completions.create(model="nowhere", messages=MESSAGES)
    for job_id in list(gw.gateway.jobs):  # the operator cancels both
        assert httpx.post(f"{gw.url}/api/jobs/{job_id}/cancel", timeout=10).status_code == 200
    running.join(15)
    queued.join(15)
    assert httpx.post(f"{gw.url}/api/server/drain", json={}, timeout=10).status_code == 200
    with pytest.raises(openai.APIStatusError) as draining:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert draining.value.status_code == 503
    flush(gw)
    jobs = history(gw, limit=100)["jobs"]
    outcomes = sorted(j["outcome"] for j in jobs)
    assert errors == [503, 503]  # the cancelled requests' clients were answered
    assert outcomes == ["bad_request", "cancelled", "cancelled", "no_capacity", "rejected"]
    # Refused before they became jobs (unknown model, draining): recorded all the same.
    unknown = next(j for j in jobs if j["outcome"] == "bad_request")
    assert unknown["model"] == "nowhere" and unknown["status"] == 404 and unknown["worker"] is None
    refused = next(j for j in jobs if j["outcome"] == "rejected")
    assert refused["status"] == 503 and "drain" in refused["error"] and refused["client"]
    cancelled = next(j for j in jobs if j["outcome"] == "cancelled")
    assert cancelled["worker"] == "slow" and cancelled["error"]


def test_a_new_ledger_file_is_owner_only(tmp_path):
    """Usage by key and client is the operator's alone: a new ledger (and its WAL) is 0600;
    an existing file keeps the mode it was given."""
    path = tmp_path / "h.sqlite3"
    conn = store.open_writer(str(path))
    store.write_batch(conn, [])
    assert path.stat().st_mode & 0o777 == 0o600
    wal = tmp_path / "h.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_mode & 0o777 == 0o600
    conn.close()
    shared = tmp_path / "shared.sqlite3"
    shared.touch(mode=0o640)
    shared.chmod(0o640)
    store.open_writer(str(shared)).close()
    assert shared.stat().st_mode & 0o777 == 0o640

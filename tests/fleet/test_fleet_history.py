"""Fleet-wide history: three replica processes, each with its own SQLite ledger, sharing a
real redis-server. Jobs served on r1 and r2 are listed, paged, counted and looked up through
r3; a replica that does not answer makes the answer partial instead of failing it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import openai

from support.fleet import RedisServer, Replica, Worker, wait_until
from support.panel import header_text, live_app, screen_lines, table
from support.waiting import until

LOCAL_ONLY = {"X-Gatewaytui-Forwarded-By": "test"}  # what another replica sends: no fan-out


def _get(replica: Replica, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    reply = httpx.get(replica.url + path, params=params, headers=headers, timeout=15)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _sees(replica: Replica, model: str) -> bool:
    return any(m["id"] == model and m["ready_workers"] for m in replica.state()["models"])


def _start(redis: RedisServer, procs: list[Any], tmp_path: Path) -> list[Replica]:
    # A long TTL keeps a stopped replica registered, so the others keep asking it (and
    # time out after the short command timeout) rather than forgetting it.
    extra = ("--cluster-replica-ttl", "60s", "--cluster-command-timeout", "1s")
    extra += ("--history-enabled", "true")  # tests/conftest.py turns it off by default
    replicas = [Replica(f"r{i}", redis.url, tmp_path, *extra) for i in (1, 2, 3)]
    procs.extend(replicas)
    return replicas


def _serve_some(replicas: list[Replica], procs: list[Any], tmp_path: Path) -> None:
    r1, r2, _ = replicas
    for worker_id, replica, model in (("w1", r1, "m-one"), ("w2", r2, "m-two")):
        procs.append(Worker(worker_id, replica, tmp_path, "--models", f"{model},e5"))
        wait_until(lambda r=replica, m=model: _sees(r, m), 20, f"{replica.id} to serve {model}")
    one = openai.OpenAI(base_url=r1.url + "/v1", api_key="unused", max_retries=0)
    two = openai.OpenAI(base_url=r2.url + "/v1", api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hello"}]
    for _ in range(3):
        one.chat.completions.create(model="m-one", messages=messages)
    for _ in range(2):
        two.chat.completions.create(model="m-two", messages=messages)
    two.embeddings.create(model="e5", input=["a", "b"])


async def _panel_header(replica: Replica, text: str, jobs: int) -> None:
    """The History view (8) of a panel connected to `replica` lists `jobs` ended jobs and
    its header reads `text`."""
    app = live_app(replica.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        await until(
            pilot,
            lambda: text in header_text(app) and table(app).total_count == jobs,
            timeout=20,
            what=f"History on {replica.id}: {text!r} and {jobs} jobs",
        )
        assert "from the fleet's ledgers" in header_text(app)
        if jobs == 6:  # a fleet: the REPLICA column says whose ledger holds each job
            await until(pilot, lambda: "REPLICA" in "\n".join(screen_lines(table(app))))
            shown = "\n".join(screen_lines(table(app)))
            assert " r1 " in shown and " r2 " in shown


def test_history_on_any_replica_covers_the_fleet(
    redis: RedisServer, procs: list[Any], tmp_path: Path
) -> None:
    replicas = _start(redis, procs, tmp_path)
    r1, r2, r3 = replicas
    _serve_some(replicas, procs, tmp_path)
    wait_until(
        lambda: len(_get(r3, "/api/history/jobs", limit=50)["jobs"]) == 6,
        20,
        "r3 to list the six jobs served on r1 and r2",
    )

    page = _get(r3, "/api/history/jobs", limit=50)
    assert page["replicas"] == ["r1", "r2", "r3"] and page["partial"] is False
    on_r1 = _get(r1, "/api/history/jobs", LOCAL_ONLY, limit=50)["jobs"]
    on_r2 = _get(r2, "/api/history/jobs", LOCAL_ONLY, limit=50)["jobs"]
    assert _get(r3, "/api/history/jobs", LOCAL_ONLY, limit=50)["jobs"] == []  # r3 served none
    assert len(on_r1) == 3 and len(on_r2) == 3
    assert {j["id"] for j in page["jobs"]} == {j["id"] for j in on_r1 + on_r2}
    assert {j["replica"] for j in on_r1} == {"r1"} and {j["replica"] for j in on_r2} == {"r2"}
    ended = [j["ended_at"] for j in page["jobs"]]
    assert ended == sorted(ended, reverse=True)

    # Pages of two through r3: every job once, newest first, then no cursor.
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        part = _get(r3, "/api/history/jobs", **params)
        seen += part["jobs"]
        cursor = part["next_cursor"]
        if cursor is None:
            break
    assert [j["id"] for j in seen] == [j["id"] for j in page["jobs"]]

    # Filters go to every replica; one job by id from whichever replica has it.
    assert len(_get(r3, "/api/history/jobs", model="m-two")["jobs"]) == 2
    remote = _get(r3, f"/api/history/jobs/{on_r1[0]['id']}")
    assert remote["id"] == on_r1[0]["id"] and remote["replica"] == "r1"
    assert httpx.get(r3.url + "/api/history/jobs/nope", timeout=15).status_code == 404

    # Usage and series add up across the ledgers.
    usage = _get(r3, "/api/history/usage", group_by="model", window="1h")
    counts = {row["group"]: row["requests"] for row in usage["rows"]}
    assert counts == {"m-one": 3, "m-two": 2, "e5": 1}
    by_worker = _get(r3, "/api/history/usage", group_by="worker", window="15m")
    assert {row["group"]: row["requests"] for row in by_worker["rows"]} == {"w1": 3, "w2": 3}
    assert usage["covered_s"] <= 3600 and usage["rows"][0]["request_rate"] > 0
    series = _get(r3, "/api/history/series", window="15m")
    assert sum(p["requests"] for p in series["points"]) == 6 and series["partial"] is False

    # The panel on r3 shows the fleet's jobs and says so.
    asyncio.run(_panel_header(r3, "replicas ·", 6))

    # r2 stops answering (SIGSTOP: it stays registered): r3 answers without it, partial.
    r2.signal(signal.SIGSTOP)
    try:
        asyncio.run(_panel_header(r3, "partial: no answer from replica r2", 3))
        page = _get(r3, "/api/history/jobs", limit=50)
        assert page["partial"] is True and page["missing_replicas"] == ["r2"]
        assert "no answer within 1s" in page["missing_reasons"]["r2"]
        assert {j["id"] for j in page["jobs"]} == {j["id"] for j in on_r1}
        usage = _get(r3, "/api/history/usage", group_by="model", window="1h")
        assert usage["partial"] is True and usage["missing_replicas"] == ["r2"]
        assert {row["group"]: row["requests"] for row in usage["rows"]} == {"m-one": 3}
    finally:
        r2.signal(signal.SIGCONT)
    # Killed: refused at once, still reported.
    r1.proc.kill()
    r1.proc.wait(5)
    series = _get(r3, "/api/history/series", window="15m")
    assert series["partial"] is True and series["missing_replicas"] == ["r1"]
    assert sum(p["requests"] for p in series["points"]) == 3


def test_a_replica_with_history_off_still_finds_a_job_in_another_replicas_ledger(
    redis: RedisServer, procs: list[Any], tmp_path: Path
) -> None:
    """`/api/history/jobs/{id}` on a replica whose own history is off asks the others (it
    does not stop at its own 404), and says so when no ledger has the job."""
    extra = ("--cluster-replica-ttl", "60s", "--cluster-command-timeout", "3s")
    r1 = Replica("r1", redis.url, tmp_path, *extra, "--history-enabled", "true")
    r2 = Replica("r2", redis.url, tmp_path, *extra)  # history off (tests/conftest.py)
    procs.extend([r1, r2])
    procs.append(Worker("w1", r1, tmp_path, "--models", "m-one"))
    wait_until(lambda: _sees(r1, "m-one"), 20, "r1 to serve m-one")
    client = openai.OpenAI(base_url=r1.url + "/v1", api_key="unused", max_retries=0)
    client.chat.completions.create(model="m-one", messages=[{"role": "user", "content": "hi"}])
    ended = wait_until(
        lambda: _get(r1, "/api/history/jobs", headers=LOCAL_ONLY)["jobs"], 15, "r1's ledger"
    )
    assert (
        httpx.get(r2.url + "/api/history/jobs", headers=LOCAL_ONLY, timeout=15).status_code == 404
    )
    found = _get(r2, f"/api/history/jobs/{ended[0]['id']}")
    assert found["id"] == ended[0]["id"] and found["replica"] == "r1"
    nowhere = httpx.get(r2.url + "/api/history/jobs/nope", timeout=15)
    assert nowhere.status_code == 404
    assert "r2: history is disabled" in nowhere.json()["error"]["message"]

"""A fleet of three gateway replicas in separate processes sharing a real redis-server:
one state from any replica, actions through a non-owner, replicas dying, Redis restarting."""

from __future__ import annotations

import signal
from typing import Any

import httpx

from support.fleet import RedisServer, Replica, Traffic, wait_until, workers_by_id
from support.waiting import ThreadPoller


def _converged(replicas: list[Replica], worker_owner: dict[str, str]) -> bool:
    for replica in replicas:
        state = replica.state()
        workers = workers_by_id(state)
        for worker_id, owner in worker_owner.items():
            w = workers.get(worker_id)
            if w is None or w["replica"] != owner or w["status"] == "gone":
                return False
        if {r["id"] for r in state["replicas"]} != {r.id for r in replicas}:
            return False
    return True


def test_every_replica_serves_the_fleet_state(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, r3 = replicas
    for worker_id, replica in (("w1", r1), ("w2", r2), ("w3", r3)):
        worker(worker_id, replica)
    owners = {"w1": "r1", "w2": "r2", "w3": "r3"}
    wait_until(lambda: _converged(replicas, owners), 15, "every replica to see every worker")

    def counts_published() -> bool:  # replicas refresh their registration every beat
        return all(r["workers"] == 1 for r in r2.state()["replicas"])

    wait_until(counts_published, 5, "every replica's worker count")
    state = r2.state()
    assert state["server"]["cluster"] == "ok"
    assert state["server"]["replica"] == "r2"
    by_id = {r["id"]: r for r in state["replicas"]}
    assert by_id["r2"]["local"] is True and by_id["r1"]["local"] is False
    assert by_id["r1"]["advertise_url"] == r1.url
    model = next(m for m in state["models"] if m["id"] == "m-fleet")
    assert model["workers"] == 3 and model["ready_workers"] == 3
    assert sorted(model["owned_by"]) == ["w1", "w2", "w3"]
    # Events are fleet-wide: r2's log holds r1's connect event, tagged with its replica.
    connects = [e for e in state["events"] if e["kind"] == "connect" and e["worker_id"] == "w1"]
    assert connects and connects[0]["replica"] == "r1"


def test_actions_through_a_non_owner_replica(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, r3 = replicas
    worker("w1", r1)
    wait_until(lambda: _converged(replicas, {"w1": "r1"}), 15, "w1 to be seen everywhere")

    answer = r2.post("/api/workers/w1/drain")
    assert answer.status_code == 200, answer.text
    assert answer.json()["details"]["replica"] == "r1"
    wait_until(lambda: workers_by_id(r3.state())["w1"]["draining"], 5, "r3 to see w1 draining")
    assert workers_by_id(r1.state())["w1"]["status"] == "draining"

    answer = r3.post("/api/workers/w1/undrain")
    assert answer.status_code == 200, answer.text
    wait_until(lambda: not workers_by_id(r2.state())["w1"]["draining"], 5, "w1 undrained")

    missing = r2.post("/api/workers/nobody/drain")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert r2.post("/api/jobs/no-such-job/cancel").status_code == 404

    # Server drain: one other replica, then the whole fleet.
    answer = r2.post("/api/server/drain", json={"replica": "r1", "timeout_s": 30})
    assert answer.status_code == 200, answer.text
    wait_until(lambda: r1.state()["server"]["draining"], 5, "r1 to drain")
    assert not r2.state()["server"]["draining"]
    answer = r3.post("/api/server/undrain", json={"replica": "r1"})
    assert answer.status_code == 200, answer.text
    assert not r1.state()["server"]["draining"]
    answer = r3.post("/api/server/drain", json={"scope": "fleet", "timeout_s": 30})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["details"]["replicas"]) == {"r1", "r2", "r3"}
    assert all(r.state()["server"]["draining"] for r in replicas)
    assert r1.post("/api/server/undrain", json={"scope": "fleet"}).status_code == 200
    assert not any(r.state()["server"]["draining"] for r in replicas)
    assert r1.post("/api/server/drain", json={"replica": "r9"}).status_code == 404


def test_cancel_a_job_through_a_non_owner(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, _ = replicas
    worker("w1", r1, "--latency", "30")
    wait_until(lambda: _converged(replicas, {"w1": "r1"}), 15, "w1 to be seen everywhere")
    with httpx.Client(timeout=30) as client:
        body = {"model": "m-fleet", "messages": [{"role": "user", "content": "hi"}]}
        import threading

        result: dict[str, Any] = {}

        def call() -> None:
            result["response"] = client.post(r1.url + "/v1/chat/completions", json=body)

        thread = threading.Thread(target=call)
        thread.start()
        job = wait_until(lambda: r2.state()["jobs"], 10, "r2 to see the job")[0]
        assert job["replica"] == "r1"
        answer = r2.post(f"/api/jobs/{job['id']}/cancel")
        assert answer.status_code == 200, answer.text
        thread.join(15)
    assert result["response"].status_code >= 400
    wait_until(lambda: not r2.state()["jobs"], 5, "the cancelled job to leave r2's state")


def test_drain_flag_follows_the_worker_to_another_replica(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, r3 = replicas
    w1 = worker("w1", r1)
    wait_until(lambda: _converged(replicas, {"w1": "r1"}), 15, "w1 to be seen everywhere")
    assert r3.post("/api/workers/w1/drain").status_code == 200
    wait_until(lambda: workers_by_id(r2.state())["w1"]["draining"], 5, "w1 draining on r2")
    w1.signal(signal.SIGKILL)
    w1.proc.wait(5)
    worker("w1", r2)  # it comes back through the load balancer on another replica

    def drained_on_r2() -> bool:
        w = workers_by_id(r2.state())["w1"]
        return w["replica"] == "r2" and w["status"] == "draining" and w["draining"]

    wait_until(drained_on_r2, 15, "w1 to reconnect to r2, still drained")
    wait_until(lambda: workers_by_id(r3.state())["w1"]["replica"] == "r2", 5, "r3 to see it")


def test_a_killed_replica_leaves_the_fleet_and_its_workers_show_gone(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, r3 = replicas
    worker("w3", r3)
    worker("w1", r1)
    wait_until(lambda: _converged(replicas, {"w1": "r1", "w3": "r3"}), 15, "convergence")
    load = Traffic(r1.url, "m-fleet", stream=True)  # r1's own worker serves it throughout
    wait_until(lambda: load.ok >= 5, 10, "traffic before the kill")
    r3.signal(signal.SIGKILL)

    def r3_gone() -> bool:
        state = r1.state()
        w3 = workers_by_id(state)["w3"]
        return {r["id"] for r in state["replicas"]} == {"r1", "r2"} and w3["status"] == "gone"

    wait_until(r3_gone, 10, "r3 to leave r1's view (TTL 2s) with w3 gone")
    served = load.ok
    wait_until(lambda: load.ok >= served + 5, 10, "traffic after the kill")
    assert not load.stop().failed, load.failed[:3]
    # The survivors still serve: r2 (no worker of its own) forwards to r1's worker (the
    # window right after a death is test_fleet_requests' no-404 test).
    wait_until(
        lambda: any(m["id"] == "m-fleet" and m["ready_workers"] > 0 for m in r2.state()["models"]),
        10,
        "r2 to see r1's worker serving m-fleet",
    )
    chat = httpx.post(
        r2.url + "/v1/chat/completions",
        json={"model": "m-fleet", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert chat.status_code == 200, chat.text


class _ViewWatch(ThreadPoller):
    """Samples one replica's state from a thread: when a worker was missing or gone."""

    interval = 0.03

    def __init__(self, replica: Replica, worker_id: str) -> None:
        self.replica, self.worker_id = replica, worker_id
        self.missing: list[str] = []
        super().__init__()

    def poll(self) -> bool:
        try:
            worker = workers_by_id(self.replica.state()).get(self.worker_id)
        except httpx.HTTPError:
            return False
        if worker is None or worker["status"] == "gone":
            self.missing.append(repr(worker))
        return False

    def stop(self) -> list[str]:  # type: ignore[override]
        super().stop()
        return self.missing[:3]


def test_redis_down_degrades_and_recovers(fleet: Any, redis: RedisServer) -> None:
    replicas, worker = fleet
    r1, r2, _ = replicas
    worker("w1", r1)
    worker("w2", r2)
    wait_until(lambda: _converged(replicas, {"w1": "r1", "w2": "r2"}), 15, "convergence")
    load = Traffic(r1.url, "m-fleet")
    wait_until(lambda: load.ok >= 5, 10, "traffic before the outage")
    redis.stop()
    wait_until(lambda: r1.state()["server"]["cluster"] == "degraded", 10, "r1 degraded")
    state = r1.state()
    assert any(e["kind"] == "cluster_degraded" for e in state["events"])
    body = {"model": "m-fleet", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(5):  # traffic continues on the replica's own workers
        response = httpx.post(r1.url + "/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 200, response.text
    # A local action still works; a remote one answers 503, not a hang.
    assert r1.post("/api/workers/w1/drain").status_code == 200
    assert r1.post("/api/workers/w2/drain").status_code == 503

    watch = _ViewWatch(r1, "w2")  # r1 forwards m-fleet to w2 (its own w1 is drained)
    redis.start()  # same port, empty: the replicas write the fleet back
    wait_until(
        lambda: all(r.state()["server"]["cluster"] == "ok" for r in replicas), 15, "recovery"
    )
    wait_until(lambda: _converged(replicas, {"w1": "r1", "w2": "r2"}), 15, "re-convergence")
    # Redis came back empty: until r2 wrote its items back, r1 must keep its view of w2
    # (dropping it queued r1's requests for m-fleet behind its drained w1: a 30 s stall).
    assert watch.stop() == [], "r1 lost w2 from its view around Redis' return"
    served = load.ok
    wait_until(lambda: load.ok >= served + 5, 10, "traffic after the restart")
    assert not load.stop().failed, load.failed[:3]  # no request failed because of Redis
    wait_until(lambda: _converged(replicas, {"w1": "r1", "w2": "r2"}), 15, "re-convergence")
    # The drain flag set while Redis was down reached the fleet.
    wait_until(lambda: workers_by_id(r2.state())["w1"]["draining"], 5, "w1 draining on r2")


def test_a_worker_id_with_a_slash_is_drained_through_another_replica(fleet: Any) -> None:
    """One id rule everywhere (issue 11, item 5): ids may hold `/`, and a fleet's forwarded
    worker actions take them as a single node's routes do."""
    replicas, worker = fleet
    r1, r2, _ = replicas
    worker("rack-a/w1", r1)
    wait_until(lambda: _converged(replicas, {"rack-a/w1": "r1"}), 15, "rack-a/w1 everywhere")
    answer = r2.post("/api/workers/rack-a/w1/drain")
    assert answer.status_code == 200, answer.text
    assert answer.json()["details"]["replica"] == "r1"
    wait_until(lambda: workers_by_id(r1.state())["rack-a/w1"]["draining"], 5, "drained on r1")
    assert r2.post("/api/workers/rack-a/w1/undrain").status_code == 200

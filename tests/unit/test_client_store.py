"""StateStore: snapshot/delta application, Change summaries, resync triggers, saved files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gatewaytui.client import (
    Change,
    MalformedDelta,
    SequenceGap,
    SnapshotError,
    StateStore,
    load_snapshot_file,
)
from gatewaytui.schema import GatewayState
from support.paths import SAMPLE


def worker(worker_id: str, **fields: object) -> dict:
    return {
        "id": worker_id,
        "name": worker_id,
        "status": "idle",
        "models": ["m"],
        "max_concurrency": 2,
        "inflight": 0,
        "host": {"hostname": worker_id},
        **fields,
    }


def job(job_id: str, **fields: object) -> dict:
    return {
        "id": job_id,
        "kind": "chat",
        "model": "m",
        "state": "running",
        "started_at": "2026-11-21T09:30:00.000Z",
        **fields,
    }


def snapshot(seq: int = 10, workers: list[dict] | None = None, jobs: list[dict] | None = None):
    return {
        "type": "snapshot",
        "seq": seq,
        "state": {
            "schema_version": 1,
            "generated_at": "2026-11-21T09:30:00.000Z",
            "seq": seq,
            "server": {
                "version": "0.1.0",
                "status": "ready",
                "started_at": "2026-11-21T09:00:00.000Z",
                "queue": {"length": 0, "capacity": 10},
            },
            "workers": workers if workers is not None else [worker("a"), worker("b")],
            "jobs": jobs if jobs is not None else [job("j1", worker="a")],
            "models": [{"id": "m", "workers": 2}],
            "mcp": {"clients": [], "sessions": []},
            "backends": [],
            "plugins": [],
            "events": [
                {"id": 1, "ts": "2026-11-21T09:00:00.000Z", "kind": "server_start", "message": "up"}
            ],
        },
    }


def delta(seq: int, **parts: object) -> dict:
    return {"type": "delta", "seq": seq, "ts": "2026-11-21T09:30:01.000Z", **parts}


@pytest.fixture
def store() -> StateStore:
    s = StateStore()
    s.apply(snapshot())
    return s


def test_snapshot_fills_the_store_and_reports_everything_added():
    s = StateStore()
    change = s.apply(snapshot())
    assert change is not None and change.snapshot and change.events_reset
    assert change.added["workers"] == {"a", "b"} and change.added["jobs"] == {"j1"}
    assert s.seq == 10 and list(s.workers) == ["a", "b"] and s.server["status"] == "ready"
    assert [e["id"] for e in s.events] == [1]


def test_delta_merges_field_patches_into_existing_items(store: StateStore):
    host_before = store.workers["a"]["host"]
    change = store.apply_delta(
        delta(
            11,
            server={"queue": {"length": 3, "capacity": 10}},
            upsert={"workers": [{"id": "a", "status": "working", "inflight": 1}]},
        )
    )
    a = store.workers["a"]
    assert a["status"] == "working" and a["inflight"] == 1
    assert a["name"] == "a" and a["host"] is host_before  # untouched fields stay
    assert store.server["queue"] == {"length": 3, "capacity": 10}
    assert store.server["version"] == "0.1.0"
    assert change.changed == {"workers": {"a"}} and not change.added and change.server
    assert store.seq == 11 and store.as_of == "2026-11-21T09:30:01.000Z"


def test_new_items_removals_and_events(store: StateStore):
    change = store.apply_delta(
        delta(
            11,
            upsert={"jobs": [job("j2", worker="b")]},
            remove={"jobs": ["j1"], "workers": ["nope"]},
            events=[{"id": 2, "ts": "2026-11-21T09:30:01.000Z", "kind": "cancel", "message": "x"}],
        )
    )
    assert list(store.jobs) == ["j2"]
    assert change.added == {"jobs": {"j2"}} and change.removed == {"jobs": {"j1"}}
    assert "workers" not in change.removed  # removing an unknown id is not a change
    assert [e["id"] for e in change.events] == [2] and [e["id"] for e in store.events] == [1, 2]


def test_a_patch_with_the_same_values_is_not_a_change(store: StateStore):
    change = store.apply_delta(
        delta(11, upsert={"workers": [{"id": "a", "status": "idle"}]}, server={"status": "ready"})
    )
    assert change.empty and store.seq == 11


def test_old_deltas_are_ignored_and_gaps_raise(store: StateStore):
    assert store.apply_delta(delta(10, upsert={"workers": [{"id": "a", "inflight": 9}]})).empty
    assert store.workers["a"]["inflight"] == 0
    with pytest.raises(SequenceGap) as info:
        store.apply_delta(delta(12))
    assert info.value.expected == 11 and info.value.got == 12
    assert store.seq == 10
    with pytest.raises(SequenceGap):  # a keep-alive ahead of us means we missed deltas
        store.apply({"type": "keepalive", "seq": 11, "ts": "2026-11-21T09:30:05.000Z"})
    assert store.apply({"type": "keepalive", "seq": 10, "ts": "2026-11-21T09:30:05.000Z"}) is None
    with pytest.raises(SequenceGap):
        StateStore().apply_delta(delta(1))


@pytest.mark.parametrize(
    "parts",
    [
        {"upsert": {"workers": [{"status": "idle"}]}},  # no id
        {"upsert": {"workers": [["a"]]}},
        {"upsert": {"workers": {"id": "a"}}},
        {"upsert": {"workers": [{"id": "new", "status": "idle"}]}},  # new but partial
        {"upsert": []},
        {"remove": {"jobs": "j1"}},
        {"remove": {"jobs": [1]}},
        {"server": ["ready"]},
        {"events": [1]},
        {"seq": "11"},
    ],
)
def test_malformed_deltas_change_nothing(store: StateStore, parts: dict):
    before = copy.deepcopy(store.to_state_dict())
    message = {
        **delta(11, upsert={"workers": [{"id": "a", "status": "working"}]}, remove={}),
        **parts,
    }
    with pytest.raises(MalformedDelta):
        store.apply(message)
    assert store.to_state_dict() == before and store.seq == 10


def test_unknown_collections_and_message_types_are_ignored(store: StateStore):
    change = store.apply(
        delta(11, upsert={"gpus": [{"id": "g"}]}, remove={"gpus": ["x"]}, future=True)
    )
    assert change is not None and change.empty and store.seq == 11
    assert store.apply({"type": "hello-from-the-future", "seq": 99}) is None
    with pytest.raises(MalformedDelta):
        store.apply({"seq": 12})


def test_snapshot_replaces_state_and_diffs_against_it(store: StateStore):
    change = store.apply_snapshot(
        snapshot(seq=3, workers=[worker("a"), worker("c"), worker("b", status="working")], jobs=[])
    )
    assert store.seq == 3  # a snapshot may move seq anywhere (e.g. a restarted gateway)
    assert change.added == {"workers": {"c"}}
    assert change.changed == {"workers": {"b"}}
    assert change.removed == {"jobs": {"j1"}}
    assert not change.server and change.snapshot and not change.events_reset
    again = store.apply_snapshot(
        copy.deepcopy(snapshot(seq=3, workers=list(store.workers.values()), jobs=[]))
    )
    assert again.empty and again.snapshot  # a resync to the same state redraws nothing


def test_changes_merge_like_one(store: StateStore):
    c1 = store.apply_delta(
        delta(11, upsert={"workers": [worker("c"), {"id": "a", "inflight": 1}]}, remove={})
    )
    c2 = store.apply_delta(
        delta(12, upsert={"workers": [{"id": "c", "inflight": 1}]}, remove={"workers": ["b"]})
    )
    c3 = store.apply_delta(delta(13, upsert={"workers": [worker("b")]}, remove={"jobs": ["j1"]}))
    c4 = store.apply_delta(delta(14, remove={"workers": ["c"]}))
    merged = c1.merge(c2).merge(c3).merge(c4)
    assert merged.seq == 14
    assert merged.added == {}  # c came and went
    assert merged.changed == {"workers": {"a", "b"}}  # b was removed and re-added
    assert merged.removed == {"jobs": {"j1"}}
    assert Change().merge(c1) is c1


def test_event_log_is_bounded():
    s = StateStore(event_limit=3)
    s.apply(snapshot())
    for seq in range(11, 16):
        event = {"id": seq, "ts": "2026-11-21T09:30:01.000Z", "kind": "status", "message": "m"}
        s.apply_delta(delta(seq, events=[event]))
    assert [e["id"] for e in s.events] == [13, 14, 15]


def test_scale_delta_patches_a_thousand_of_ten_thousand_workers():
    s = StateStore()
    s.apply_snapshot(snapshot(seq=1, workers=[worker(f"w{i:05d}") for i in range(10_000)]))
    patches = [
        {"id": f"w{i:05d}", "inflight": 1, "status": "working"} for i in range(0, 10_000, 10)
    ]
    change = s.apply_delta(delta(2, upsert={"workers": patches}))
    assert len(change.changed["workers"]) == 1_000
    assert s.workers["w00010"]["status"] == "working" and s.workers["w00011"]["status"] == "idle"


# -- saved snapshots ----------------------------------------------------------------------


def test_sample_state_loads_offline():
    s = load_snapshot_file(SAMPLE)
    raw = json.loads(SAMPLE.read_text())
    assert s.seq == raw["seq"] and s.as_of == raw["generated_at"]
    assert list(s.workers) == [w["id"] for w in raw["workers"]]
    assert len(s.items["mcp_sessions"]) == len(raw["mcp"]["sessions"])
    assert s.to_state_dict() == raw  # a complete file round-trips exactly


def test_save_round_trips_atomically(tmp_path: Path):
    store = StateStore.load(SAMPLE)
    first = next(iter(store.workers))
    store.apply_delta(
        delta(store.seq + 1, upsert={"workers": [{"id": first, "status": "draining"}]})
    )
    target = store.save(tmp_path / "saved.json")
    assert [p.name for p in tmp_path.iterdir()] == ["saved.json"]  # no temp file left behind
    GatewayState.model_validate_json(target.read_text())
    again = StateStore.load(target)
    assert again.workers[first]["status"] == "draining" and again.seq == store.seq
    assert again.as_of == "2026-11-21T09:30:01.000Z"
    assert again.to_state_dict() == store.to_state_dict()
    store.save(target)  # overwriting an existing file works the same way
    assert [p.name for p in tmp_path.iterdir()] == ["saved.json"]
    with pytest.raises(SnapshotError, match="nothing to save"):
        StateStore().save(tmp_path / "empty.json")


def test_a_file_missing_optional_fields_gets_defaults(tmp_path: Path):
    state = snapshot()["state"]
    path = tmp_path / "minimal.json"
    path.write_text(json.dumps(state))
    s = StateStore.load(path)
    assert s.workers["a"]["draining"] is False and s.workers["a"]["per_model"] == {}
    assert s.jobs["j1"]["attempt"] == 1 and s.server["scheduler"] == "least-busy"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", r"not valid JSON \(line 1, column 2"),
        ("[1, 2]", "expected a JSON object"),
        ('{"generated_at": "2026-11-21T09:30:00Z"}', "server: Field required"),
        (
            json.dumps({**snapshot()["state"], "workers": [{"id": "a", "status": "asleep"}]}),
            r"workers\.0\.name: Field required; workers\.0\.status: Input should be",
        ),
        (json.dumps({**snapshot()["state"], "schema_version": 7}), "newer gateway"),
    ],
)
def test_a_broken_file_gives_a_clear_error(tmp_path: Path, content: str, expected: str):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(SnapshotError, match=expected) as info:
        StateStore.load(path)
    assert str(path) in info.value.message
    with pytest.raises(SnapshotError, match="no such file"):
        StateStore.load(tmp_path / "missing.json")


def test_stepwise_validation_agrees_with_whole_validation():
    from gatewaytui.client.store import iter_validate_state

    good = snapshot(workers=[worker(f"w{i}") for i in range(1200)])["state"]
    assert sum(1 for _ in iter_validate_state(good)) == 3 + 1 + 1  # chunks of 500
    bad = copy.deepcopy(good)
    bad["workers"][700]["max_concurrency"] = "lots"
    with pytest.raises(SnapshotError, match=r"workers\.700\.max_concurrency"):
        list(iter_validate_state(bad))
    bad = {**good, "jobs": "none"}
    with pytest.raises(SnapshotError, match="jobs: Input should be a valid list"):
        list(iter_validate_state(bad))


def test_a_fleet_state_with_replicas_validates_stepwise_and_loads():
    """The panel on a fleet replica got 'internal error: replicas' (no item model for them)."""
    from gatewaytui.client.store import iter_validate_state

    state = snapshot(workers=[worker("w1")])["state"]
    state["replicas"] = [
        {"id": "r1", "advertise_url": "http://127.0.0.1:1", "workers": 1, "local": True},
        {"id": "r2", "advertise_url": "http://127.0.0.1:2", "status": "gone"},
    ]
    list(iter_validate_state(state))
    store = StateStore()
    store.apply_snapshot({"type": "snapshot", "seq": 1, "state": state})
    assert set(store.items["replicas"]) == {"r1", "r2"}
    bad = copy.deepcopy(state)
    bad["replicas"][1]["workers"] = "many"
    with pytest.raises(SnapshotError, match=r"replicas\.1\.workers"):
        list(iter_validate_state(bad))

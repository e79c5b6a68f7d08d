"""The state hub does no work while nobody watches, and is current the moment someone does."""

from __future__ import annotations

import asyncio
import json

from gatewaytui.gateway.hub import Collection, StateHub


def _hub(items: dict[str, dict], calls: list[str]) -> StateHub:
    def server() -> dict:
        calls.append("server")
        return {"version": "t", "status": "ready", "n": len(items)}

    return StateHub(
        {"workers": Collection(items.get, lambda: list(items.values()))},
        server,
        rate=50,
        keepalive=0.01,
        before_flush=lambda: calls.append("derived"),
    )


async def test_idle_hub_tracks_encodes_and_ticks_nothing() -> None:
    items: dict[str, dict] = {}
    calls: list[str] = []
    hub = _hub(items, calls)
    runner = asyncio.create_task(hub.run())
    try:
        for n in range(100):
            items[f"w{n}"] = {"id": f"w{n}", "n": n}
            hub.touch("workers", f"w{n}")
            hub.add_event({"id": n, "kind": "connect"})
        hub.touch_server()
        hub.tick()
        await asyncio.sleep(0.1)  # five ticks' worth at 50 Hz: the runner must not tick
        assert not hub.watching
        assert calls == []  # no derived refresh, no server item, no diff
        assert hub.seq == 0 and hub.deltas_sent == 0
        assert not hub._dirty["workers"] and not hub._pending_events  # nothing piles up

        received: list[dict] = []
        got_delta = asyncio.Event()

        async def send(text: str) -> None:
            message = json.loads(text)
            received.append(message)
            if message["type"] == "delta":
                got_delta.set()

        subscriber = asyncio.create_task(hub.serve(send))
        await asyncio.sleep(0)
        assert hub.watching and calls == ["derived", "server"]
        snapshot = received[0]
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == 1
        assert len(snapshot["state"]["workers"]) == 100
        assert len(snapshot["state"]["events"]) == 100  # events kept while idle
        assert snapshot["state"]["server"]["n"] == 100

        items["w0"] = {"id": "w0", "n": -1}
        hub.touch("workers", "w0")
        await asyncio.wait_for(got_delta.wait(), 5)
        delta = next(m for m in received if m["type"] == "delta")
        assert delta["seq"] == 2 and delta["upsert"]["workers"] == [{"id": "w0", "n": -1}]

        subscriber.cancel()
        await asyncio.gather(subscriber, return_exceptions=True)
        assert not hub.watching
        calls.clear()
        hub.touch("workers", "w1")
        await asyncio.sleep(0.1)
        assert calls == [] and not hub._dirty["workers"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_second_subscriber_gets_the_current_snapshot_without_a_rebuild() -> None:
    items = {"a": {"id": "a", "n": 0}}
    calls: list[str] = []
    hub = _hub(items, calls)
    first: list[dict] = []
    second: list[dict] = []

    async def into(box: list[dict]):
        async def send(text: str) -> None:
            box.append(json.loads(text))

        return send

    one = asyncio.create_task(hub.serve(await into(first)))
    await asyncio.sleep(0)
    items["a"] = {"id": "a", "n": 1}
    hub.touch("workers", "a")
    hub.tick()
    calls.clear()
    two = asyncio.create_task(hub.serve(await into(second)))
    await asyncio.sleep(0)
    assert calls == []  # already watching: no rebuild
    assert second[0]["seq"] == hub.seq and second[0]["state"]["workers"] == [{"id": "a", "n": 1}]
    for task in (one, two):
        task.cancel()
    await asyncio.gather(one, two, return_exceptions=True)
    assert not hub.watching


def test_touch_observers_see_own_changes_even_while_idle_but_not_view_changes() -> None:
    """The fleet's seam: every `touch` reaches the observers (watched or not); a change in a
    view the process only shows (`touch_view`) reaches subscribers but not the observers."""
    items = {"a": {"id": "a", "n": 0}}
    hub = _hub(items, [])
    seen: list[tuple[str, str]] = []
    hub.observe_touches(lambda collection, item_id: seen.append((collection, item_id)))
    hub.touch("workers", "a")
    hub.touch_view("workers", "b")
    assert seen == [("workers", "a")]
    assert not hub._dirty["workers"]  # idle: nothing marked for the stream either
    hub._wake()
    hub.touch_view("workers", "a")
    assert list(hub._dirty["workers"]) == ["a"] and seen == [("workers", "a")]

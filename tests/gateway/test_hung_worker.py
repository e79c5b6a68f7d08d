"""A hung worker (issue 11, item 7): one that is connected but never answers. The gateway
notices (no first frame of a stream or embeddings slice within workers.first_frame_timeout),
retries the job elsewhere, and after consecutive misses shows the worker unresponsive
(not_ready, with the reason) and routes nothing more to it."""

from __future__ import annotations

import threading

import httpx

from support.raw_worker import RawWorker

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_a_hung_worker_is_noticed_skipped_and_shown(make_gateway):
    gw = make_gateway(workers__first_frame_timeout="400ms", workers__unresponsive_after="2")
    hung = RawWorker(gw.ws_url, "hung", ["m"], max_concurrency=4)
    url = gw.url + "/v1/chat/completions"
    first = httpx.post(url, json={**BODY, "stream": True}, timeout=30)
    assert first.elapsed.total_seconds() < 10  # not the 10-minute request timeout
    assert "first_frame_timeout" in first.text  # the stream ends with the error event
    row = next(w for w in httpx.get(gw.url + "/api/state").json()["workers"] if w["id"] == "hung")
    assert row["status"] == "not_ready" and row["status_reason"].startswith("unresponsive")
    sent_to_hung = hung.frames.qsize()
    good = RawWorker(gw.ws_url, "good", ["m"], max_concurrency=4)
    results: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=lambda s=s: results.append(
                httpx.post(url, json={**BODY, "stream": s}, timeout=30)
            )
        )
        for s in (False, True)
    ]
    for t in threads:
        t.start()
    for _ in threads:
        good.reply_chat(good.next_job())
    for t in threads:
        t.join(10)
    assert sorted(r.status_code for r in results) == [200, 200]
    assert hung.frames.qsize() == sent_to_hung  # nothing more went to the hung worker
    events = httpx.get(gw.url + "/api/state").json()["events"]
    assert any("unresponsive" in e["message"] for e in events)

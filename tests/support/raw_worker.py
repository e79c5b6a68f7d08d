"""A hand-driven worker for gateway tests: a real WebSocket client whose replies the test
chooses, so a job can be held in flight exactly as long as a test needs."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from support.waiting import WAIT_S


class RawWorker:
    def __init__(
        self,
        ws_url: str,
        worker_id: str,
        models: list[str],
        *,
        max_concurrency: int = 1,
        batch_size: int = 32,
        key: str | None = None,
        register: bool = True,
        **extra: Any,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else None
        self.ws: ClientConnection = connect(
            ws_url + "/api/workers/connect", additional_headers=headers, max_size=None, legacy=True
        )
        self.id = worker_id
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        self.cancels: queue.Queue[dict[str, Any]] = queue.Queue()
        self.others: queue.Queue[dict[str, Any]] = queue.Queue()
        self.closed = threading.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.registered: dict[str, Any] | None = None
        if register:
            self.send(
                {
                    "type": "register",
                    "id": worker_id,
                    "name": extra.pop("name", worker_id),
                    "models": models,
                    "max_concurrency": max_concurrency,
                    "preferred_batch_size": batch_size,
                    "version": "test",
                    **extra,
                }
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if register:
            first = self.others.get(timeout=WAIT_S)
            if first.get("type") != "registered":
                raise AssertionError(f"expected registered, got {first}")
            self.registered = first

    def _read(self) -> None:
        try:
            for raw in self.ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "job":
                    self.frames.put(frame)
                elif kind == "cancel":
                    self.cancels.put(frame)
                else:
                    self.others.put(frame)
        except ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = self.ws.close_code, self.ws.close_reason or ""
            self.closed.set()

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def send_raw(self, data: str | bytes) -> None:
        self.ws.send(data)

    def next_job(self, timeout: float = WAIT_S) -> dict[str, Any]:
        return self.frames.get(timeout=timeout)

    def heartbeat(self) -> None:
        self.send({"type": "heartbeat", "cpu_percent": 12.5, "mem_percent": 40.0})

    def status(self, ready: bool = True, **fields: Any) -> None:
        self.send({"type": "status", "ready": ready, **fields})

    def reply_chat(self, job: dict[str, Any], content: str = "hello", tokens: int = 2) -> None:
        self.send(
            {
                "type": "result",
                "job_id": job["job_id"],
                "data": {
                    "id": "chatcmpl-" + job["job_id"],
                    "object": "chat.completion",
                    "created": 1,
                    "model": job["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 5,
                        "completion_tokens": tokens,
                        "total_tokens": 5 + tokens,
                    },
                },
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": tokens,
                    "total_tokens": 5 + tokens,
                },
            }
        )

    def chunk(self, job: dict[str, Any], text: str) -> None:
        self.send(
            {
                "type": "chunk",
                "job_id": job["job_id"],
                "tokens": 1,
                "data": {
                    "id": "chatcmpl-" + job["job_id"],
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": job["model"],
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                },
            }
        )

    def finish_stream(self, job: dict[str, Any], completion_tokens: int) -> None:
        self.send(
            {
                "type": "result",
                "job_id": job["job_id"],
                "usage": {"prompt_tokens": 5, "completion_tokens": completion_tokens},
            }
        )

    def reply_embeddings(self, job: dict[str, Any]) -> None:
        inputs = job["body"]["input"]
        self.send(
            {
                "type": "result",
                "job_id": job["job_id"],
                "data": {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": i, "embedding": vector_for(text)}
                        for i, text in enumerate(inputs)
                    ],
                },
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        )

    def error(self, job: dict[str, Any], message: str = "boom", status: int = 500) -> None:
        self.send({"type": "error", "job_id": job["job_id"], "message": message, "status": status})

    def close(self) -> None:
        self.ws.close()
        self.closed.wait(5)


def vector_for(text: str) -> list[float]:
    """A deterministic vector that identifies its input, to check reassembly order."""
    return [float(len(text)), float(sum(map(ord, text)) % 997)]

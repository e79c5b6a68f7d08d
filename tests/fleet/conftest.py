"""Fixtures of the fleet tests: a real redis-server, replicas and workers in processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fleet import REDIS_SERVER, RedisServer, Replica, Worker


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (Debian: apt install redis-server)")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def fleet(
    redis: RedisServer, procs: list[Any], tmp_path: Path
) -> tuple[list[Replica], Callable[..., Worker]]:
    replicas = [Replica(f"r{i}", redis.url, tmp_path) for i in (1, 2, 3)]
    procs.extend(replicas)

    def worker(worker_id: str, replica: Replica, *extra: str) -> Worker:
        started = Worker(worker_id, replica, tmp_path, "--models", "m-fleet", *extra)
        procs.append(started)
        return started

    return replicas, worker

"""The whole panel under load: GatewayApp following a real gateway with 10,000 workers.

The gateway core runs in a separate process (this script with `--role gateway`): `Gateway` +
`make_server` on loopback, 10,000 workers admitted through `gateway.worker_registered` with a
stub connection (bench/state_stream.py's fleet), ~5,000 in-flight streaming chat jobs placed
by the real scheduler. Its state hub is ticked by the driver at 4 Hz, right after each load
step, so every delta carries one step:
  churn  1,000 workers change per tick (10 %): the jobs that end (`_account` + `_end_job`:
         tokens and in-flight change) and start (`scheduler.pick` + `_assign`), then heartbeats
         with new cpu/mem (with an occasional ready <-> not-ready status frame) for the rest;
         10 % of the jobs stream tokens each tick and 2 % end and are replaced.
  idle   nothing changes; the hub still ticks, so keep-alives go out every 5 s.
  quiet  (a second, small gateway) 100 workers, each heartbeating every 5 s.
The panel is the real GatewayApp with a live context on that gateway (`Session.live` through
the client layer: WebSocket state stream, store, coalesced updates), started on the Workers
view (10,000 rows sorted by id).

Figures, each against the issue's target:
  initial render   first snapshot received (the WebSocket message complete) until the first
                   composed frame showing the Workers view with its rows            <= 500 ms
  churn tick       `LiveFeed.apply_pending` (every view's show_state, header, drains)
                   + the frame it causes, p50/p95                                   <= 25 ms
  key to frame     "down" on the Workers table until the frame that shows it, under churn,
                   p95                                                              <= 50 ms
  CPU              the panel process, % of one core, from its CPU time over the window
  terminal bytes   per second, idle (target 0) and under churn; and idle with the quiet fleet
  reconnect        the quiet fleet's gateway SIGKILLed and restarted on its port: its first
                   /healthz answer until the first frame that says live, worst of N    <= 1 s;
                   SIGSTOP until the panel reads the status unknown                    <= 3 s

Two ways of running the panel:
  headless  `app.run_test(size=(120, 40))` in this process, timed as bench/tui_table.py does:
            the screen's compositor `render_update` (and `_refresh_layout`, outermost only)
            are wrapped, and each update is turned into the escape sequences a terminal would
            get (`render_segments`, truecolor), whose length is the byte estimate. Textual's
            `App._display` never calls `driver.write` when the driver is headless, so hooking
            the headless driver's `write` would count nothing.
  real pty  the same app as a child process (`--role panel`) under `pty.fork()` with a
            120x40 window and the real Linux driver; this process reads the pty master and
            counts every byte the panel writes, and reads the child's CPU from /proc.
Bytes and CPU are reported from the pty (the real thing) and from headless (for comparison).

    python bench/tui_app.py            # about 90 s
    python bench/tui_app.py --quick    # about 40 s, CI smoke
    python bench/tui_app.py --reconnect-only   # the reconnect figures alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import pty
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import PYTHON, REPO, GcPauses, cpu_seconds, header, ms, percentile, verdict

SCRIPT = Path(__file__).resolve()
SIZE = (120, 40)
TICK = 0.25  # the gateway's state stream rate (4 Hz) and the panel's refresh_rate


def pcts(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "n/a"
    return (
        f"p50 {percentile(values, 50):.2f} p95 {percentile(values, 95):.2f} max {values[-1]:.2f} ms"
    )


# =============================================================================================
# The gateway (child process): a real Gateway + server, driven by a load loop.
# =============================================================================================


class Load:
    """Mutates the gateway the way workers and clients would, one 250 ms step at a time."""

    def __init__(self, gateway: Any, workers: list[Any], seed: int, churn: float) -> None:
        self.g = gateway
        self.workers = workers
        self.rng = random.Random(seed)
        self.per_tick = max(1, round(len(workers) * churn))
        self.models = sorted({m for w in workers for m in w.models})
        self.stats: Counter[str] = Counter()

    def start_job(self, age: float = 0.0) -> bool:
        from gatewaytui.gateway.jobs import Job

        g, rng = self.g, self.rng
        model = rng.choice(self.models)
        worker = g.scheduler.pick(model)
        if worker is None:
            return False
        g.live.touch_worker(worker)
        client = f"10.1.{rng.randrange(256)}.{rng.randrange(256)}:{rng.randrange(1024, 65536)}"
        job: Job = g.dispatch.new_job("chat", model, rng.random() < 0.8, client)
        job.started_at -= age
        job.tokens_in = rng.randrange(20, 4000)
        job.tokens_out = int(age * rng.uniform(5, 40))
        g.dispatch.assign(job, worker, job.id)
        self.stats["job_start"] += 1
        return True

    def end_job(self, job: Any) -> None:
        """As `ChatPath._finish` does: the worker's counters, then the job ends (slot freed)."""
        for assignment in list(job.assignments.values()):
            self.g.dispatch.account(
                assignment, True, tokens_in=job.tokens_in, tokens_out=job.tokens_out
            )
        self.g.dispatch.end_job(job, True)
        self.stats["job_end"] += 1

    def churn_tick(self) -> None:
        from gatewaytui.schema.protocol import HeartbeatFrame, StatusFrame

        g, rng = self.g, self.rng
        jobs = list(g.jobs.values())
        for job in rng.sample(jobs, len(jobs) // 10):  # streaming: tokens arrive
            job.tokens_out += rng.randrange(1, 60)
            g.live.touch_job(job)
            self.stats["job_tokens"] += 1
        ending = rng.sample(jobs, max(1, len(jobs) // 50)) if jobs else []
        for job in ending:
            self.end_job(job)
        for _ in ending:
            self.start_job()
        touched = set(g.hub._dirty["workers"])
        for worker in rng.sample(self.workers, min(len(self.workers), 2 * self.per_tick)):
            if len(touched) >= self.per_tick:
                break
            if worker.id in touched:
                continue
            touched.add(worker.id)
            if rng.random() < 0.01:
                g.worker_frame(
                    worker,
                    StatusFrame(ready=True)
                    if not worker.reported_ready
                    else StatusFrame(ready=False, reason="bench: model reloading"),
                )
                self.stats["status"] += 1
            else:
                beat = HeartbeatFrame(
                    cpu_percent=round(rng.uniform(0, 100), 1),
                    mem_percent=round(rng.uniform(5, 95), 1),
                )
                g.worker_frame(worker, beat)
                self.stats["heartbeat"] += 1
        self.stats["workers_touched"] += len(touched)

    def quiet_tick(self, n: int) -> None:
        """Every worker heartbeats every 5 s (20 ticks), each at its own phase."""
        from gatewaytui.schema.protocol import HeartbeatFrame

        for i, worker in enumerate(self.workers):
            if i % 20 == n % 20:
                cpu = max(0.0, min(100.0, (worker.cpu_percent or 20.0) + self.rng.uniform(-3, 3)))
                beat = HeartbeatFrame(cpu_percent=round(cpu, 1), mem_percent=worker.mem_percent)
                self.g.worker_frame(worker, beat)
                self.stats["heartbeat"] += 1


class TimedFlush:
    """The hub's flush, timed: each tick's milliseconds and each delta's bytes, reported
    (and reset) by `stats_json` with the load's counters and the CPU time since."""

    def __init__(self, flush: Callable[[], str | None]) -> None:
        self._flush = flush
        self.flush_ms: list[float] = []
        self.delta_bytes: list[int] = []
        self.cpu0 = time.process_time()

    def __call__(self) -> str | None:
        start = time.perf_counter()
        text = self._flush()
        self.flush_ms.append(ms(time.perf_counter() - start))
        if text is not None:
            self.delta_bytes.append(len(text.encode()))
        return text

    def clear(self) -> None:
        self.flush_ms.clear()
        self.delta_bytes.clear()
        self.cpu0 = time.process_time()

    def stats_json(self, load: Load) -> str:
        text = json.dumps(
            {
                "stats": dict(load.stats),
                "ticks": len(self.flush_ms),
                "flush_ms": sorted(self.flush_ms),
                "delta_bytes": sum(self.delta_bytes),
                "deltas": len(self.delta_bytes),
                "cpu_s": time.process_time() - self.cpu0,
            }
        )
        load.stats.clear()
        self.clear()
        return text


async def gateway_main(args: argparse.Namespace) -> None:
    import logging

    from gatewaytui.gateway.config import GatewayConfig
    from gatewaytui.gateway.core import Gateway
    from gatewaytui.gateway.server import bind_socket, make_server, serve_started
    from state_stream import register_fleet  # sibling bench script: the same fleet

    logging.getLogger("gatewaytui").setLevel(logging.ERROR)
    # The churn heartbeats only some workers per tick and idle none: a long expiry keeps the
    # sweep from evicting the others (the quiet fleet heartbeats every 5 s: default expiry).
    overrides = {} if args.mode == "quiet" else {"workers__heartbeat_expiry": "1h"}
    gateway = Gateway(GatewayConfig.build(**overrides))
    hub = gateway.hub
    never = asyncio.Event()

    async def hub_run() -> None:  # the hub is ticked by the load loop below instead
        await never.wait()

    hub.run = hub_run  # type: ignore[method-assign]
    timed = hub.flush = TimedFlush(hub.flush)  # type: ignore[method-assign]

    sock = bind_socket("127.0.0.1", args.port)
    server = make_server(gateway, handle_signals=False)
    serving = await serve_started(server, sock)
    assert serving is not None, "the gateway did not start"
    rng = random.Random(args.seed)
    started = time.perf_counter()
    workers = register_fleet(gateway, args.workers, rng)
    load = Load(gateway, workers, args.seed, args.churn)
    for _ in range(args.jobs):
        load.start_job(age=rng.uniform(0, 300))
    hub.tick()  # the registration delta goes out before anyone subscribes
    timed.clear()
    setup_s = time.perf_counter() - started

    mode = args.mode
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    port = sock.getsockname()[1]
    print(f"ready {port} {setup_s:.2f} {len(gateway.jobs)}", flush=True)

    n = 0
    timed.cpu0 = time.process_time()
    next_at = loop.time()
    while True:
        while not commands.empty():
            command = commands.get_nowait()
            if command == "quit":
                server.should_exit = True
                await serving
                return
            if command == "stats":
                print(timed.stats_json(load), flush=True)
            elif command in ("churn", "idle", "quiet"):
                mode = command
        if mode == "churn":
            load.churn_tick()
        elif mode == "quiet":
            load.quiet_tick(n)
        hub.tick()
        n += 1
        next_at += TICK
        await asyncio.sleep(max(0.0, next_at - loop.time()))


class GatewayProc:
    """The gateway driver as a child process, commanded line by line on its stdin."""

    def __init__(self, workers: int, jobs: int, mode: str, seed: int, port: int = 0) -> None:
        self.log_path = Path(f"/tmp/bench-tui_app-gateway-{os.getpid()}-{workers}.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        argv = [PYTHON, str(SCRIPT), "--role", "gateway", "--workers", str(workers)]
        argv += ["--jobs", str(jobs), "--mode", mode, "--seed", str(seed), "--port", str(port)]
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            text=True,
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline().split()
        if not line or line[0] != "ready":
            self.stop()
            raise RuntimeError(f"gateway driver failed; see {self.log_path}")
        self.port = int(line[1])
        self.setup_s = float(line[2])
        self.jobs = int(line[3])
        self.url = f"http://127.0.0.1:{self.port}"

    def send(self, command: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(command + "\n")
        self.popen.stdin.flush()

    def stats(self) -> dict[str, Any]:
        """What the driver did since the last call (blocking: call between windows)."""
        self.send("stats")
        assert self.popen.stdout is not None
        return json.loads(self.popen.stdout.readline())

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.popen.pid)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no goodbye to the panel."""
        self.popen.kill()
        self.popen.wait(10)
        self.stop()

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


# =============================================================================================
# The panel: how it is built, and the measuring hooks.
# =============================================================================================


def make_panel(url: str) -> Any:
    """GatewayApp on a live context, as `gatewaytui` builds it, opening on the Workers view."""
    from gatewaytui.tui.app import GatewayApp
    from gatewaytui.tui.config import ContextConfig, TuiConfig

    context = ContextConfig(name="bench", url=url)
    app = GatewayApp(TuiConfig(contexts=[context], default_context="bench"), context=context)
    app._deck._initial = "view-workers"  # as if "2" had been pressed before data came
    return app


def workers_table(app: Any) -> Any:
    from gatewaytui.tui.views.workers import WorkersView

    return next(view for view in app._deck.views if isinstance(view, WorkersView)).table


@dataclass
class Frame:
    start: float
    end: float
    wall: float
    cpu: float
    bytes: int


@dataclass
class Tick:
    """One `LiveFeed.apply_pending` that had something to apply, and the frame it caused."""

    start: float
    end: float
    wall: float
    cpu: float
    workers: int
    jobs: int
    frame_wall: float = 0.0
    frame_cpu: float = 0.0
    framed: bool = False


class Frames:
    """Times every frame the panel composes and counts the bytes a terminal would get.

    As bench/tui_table.py's FrameClock: wraps the screen compositor's `render_update` and the
    screen's `_refresh_layout` (timed outermost only: a layout refresh composes its frame
    inside), and renders each update to escape sequences as the real driver path would.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.frames: list[Frame] = []
        self.waiters: list[tuple[Callable[[], bool], asyncio.Future[float]]] = []
        self.claims: list[Tick] = []
        self._depth = 0
        self._bytes = 0
        screen = app.screen
        compositor = screen._compositor
        render_update = compositor.render_update
        refresh_layout = screen._refresh_layout
        # The headless console is 16-colour; a real terminal here is truecolor, whose escape
        # codes are longer. Only `_color_system` of the console is read by `Strip.render`.
        console = Console(color_system="truecolor", force_terminal=True, file=io.StringIO())

        def outermost(fn: Callable[..., Any], render: bool) -> Callable[..., Any]:
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                self._depth += 1
                start, cpu = time.perf_counter(), time.thread_time()
                try:
                    result = fn(*args, **kwargs)
                    if render and result is not None:
                        text = result.render_segments(console)  # what a terminal would get
                        self._bytes += len(text.encode("utf-8", "replace"))
                    return result
                finally:
                    self._depth -= 1
                    if self._depth == 0 and self._bytes:
                        end = time.perf_counter()
                        frame = Frame(
                            start, end, end - start, time.thread_time() - cpu, self._bytes
                        )
                        self._bytes = 0
                        self.frames.append(frame)
                        self._settle(frame)

            return wrapped

        compositor.render_update = outermost(render_update, True)
        screen._refresh_layout = outermost(refresh_layout, False)

    def _settle(self, frame: Frame) -> None:
        for tick in self.claims:  # the first frame composed soon after an apply is its frame
            if frame.start - tick.end <= 0.05:
                tick.frame_wall, tick.frame_cpu, tick.framed = frame.wall, frame.cpu, True
        self.claims = []
        pending = []
        for predicate, future in self.waiters:
            if future.done():
                continue
            if predicate():
                future.set_result(frame.end)
            else:
                pending.append((predicate, future))
        self.waiters = pending

    async def frame(self, predicate: Callable[[], bool], timeout: float) -> float | None:
        """End time of the first frame after now for which `predicate()` holds (None: none)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.append((predicate, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None

    def between(self, t0: float, t1: float) -> list[Frame]:
        return [f for f in self.frames if t0 <= f.end < t1]


class Probe:
    """Hooks on the panel's update path: stream messages, store applies, `apply_pending`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        connection = app.session.connection
        self.snapshot_at: float | None = None  # the first snapshot's message is complete
        self.decoded_at: float | None = None  # ... parsed and validated
        self.snapshot_store_ms = 0.0
        self.snapshot_apply: Tick | None = None
        self.ticks: list[Tick] = []
        self.client_ms: list[float] = []  # per delta, CPU time: json decode + store apply
        self.recording = False
        self.frames: Frames | None = None
        self._decode_s = 0.0
        self._hook_client(connection)
        self._hook_feed(app.feed)

    def _hook_client(self, connection: Any) -> None:
        """Time the stream's decode and the store's applies (the first snapshot's too)."""
        decode, store = connection._decode, connection.store
        apply, apply_snapshot = store.apply, store.apply_snapshot

        async def timed_decode(raw: str | bytes) -> dict[str, Any]:
            start, cpu = time.perf_counter(), time.thread_time()
            head = raw[:40]
            snapshot = self.snapshot_at is None and (
                b"snapshot" in head if isinstance(head, bytes) else "snapshot" in head
            )
            if snapshot:
                self.snapshot_at = start
            message = await decode(raw)
            if snapshot:
                self.decoded_at = time.perf_counter()
            elif self.recording:
                self._decode_s = time.thread_time() - cpu
            return message

        def timed_apply(message: Any) -> Any:
            cpu = time.thread_time()
            change = apply(message)
            if self.recording and message.get("type") == "delta":
                self.client_ms.append(ms(time.thread_time() - cpu + self._decode_s))
            return change

        def timed_apply_snapshot(message: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            change = apply_snapshot(message, **kwargs)
            self.snapshot_store_ms = ms(time.perf_counter() - start)
            return change

        connection._decode = timed_decode
        store.apply = timed_apply
        store.apply_snapshot = timed_apply_snapshot

    def _hook_feed(self, feed: Any) -> None:
        """Time each `apply_pending` that drew a change: one `Tick`."""
        original = feed.apply_pending

        def timed_apply_pending() -> None:
            change = feed._pending
            start, cpu = time.perf_counter(), time.thread_time()
            original()
            end = time.perf_counter()
            if change is None or (change.empty and not change.snapshot):
                return
            tick = Tick(
                start,
                end,
                end - start,
                time.thread_time() - cpu,
                len(change.changed.get("workers", ())) + len(change.added.get("workers", ())),
                sum(len(ids.get("jobs", ())) for ids in (change.added, change.changed)),
            )
            if change.snapshot and self.snapshot_apply is None:
                self.snapshot_apply = tick
            elif self.recording:
                self.ticks.append(tick)
            if self.frames is not None:
                self.frames.claims.append(tick)

        feed.apply_pending = timed_apply_pending


class Refreshes:
    """Who asks for repaints while installed: widget class -> (calls, regions)."""

    def __init__(self) -> None:
        from textual.widget import Widget

        self.counts: Counter[str] = Counter()
        self.regions: Counter[str] = Counter()
        self._widget = Widget
        self._original = Widget.refresh
        original = self._original
        counts, regions = self.counts, self.regions

        def refresh(widget: Any, *args: Any, **kwargs: Any) -> Any:
            name = type(widget).__name__
            if widget.id:
                name += f"#{widget.id}"
            counts[name] += 1
            regions[name] += len(args) or 1
            return original(widget, *args, **kwargs)

        Widget.refresh = refresh  # type: ignore[method-assign]

    def remove(self) -> None:
        self._widget.refresh = self._original  # type: ignore[method-assign]


class Reticks:
    """Which ticking columns of a VirtualTable changed text when the clock ticked."""

    def __init__(self, table: Any) -> None:
        self.changed: Counter[str] = Counter()
        self.rows = 0
        self.table = table
        original = table._retick
        columns = table.columns

        def retick(row: Any) -> bool:
            before = list(row.cells) if row.cells is not None else None
            changed = original(row)
            if changed and before is not None:
                self.rows += 1
                for index, (a, b) in enumerate(zip(before, row.cells, strict=True)):
                    if a is not b:
                        self.changed[columns[index].key] += 1
            return changed

        table._retick = retick
        self._original = original

    def remove(self) -> None:
        self.table._retick = self._original


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


# =============================================================================================
# Headless: initial render, churn ticks, key to frame, idle repaints.
# =============================================================================================


@dataclass
class Figures:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(
        self, label: str, value: float, target: float | None, unit: str, fmt: str = ".3g"
    ) -> None:
        if target is None:
            self.rows.append((label, f"{value:{fmt}} {unit}", "-", "info"))
            return
        ok = value <= target
        self.rows.append(
            (label, f"{value:{fmt}} {unit}", f"<= {target:g} {unit}", "PASS" if ok else "MISS")
        )
        verdict(label, value, target, unit, higher_is_better=False)


async def headless(args: argparse.Namespace, gw: GatewayProc, figures: Figures) -> None:
    from textual import events

    app = make_panel(gw.url)
    probe = Probe(app)
    start_session = app.session.start
    app.session.start = lambda: None  # connect only once the frame clock is in place
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        frames = probe.frames = Frames(app)
        table = workers_table(app)
        pauses = GcPauses()
        start_session()
        n_workers = args.workers

        # 1. initial render ----------------------------------------------------------------
        shown = await frames.frame(
            lambda: app.current_view.view_id == "workers" and table.total_count >= n_workers,
            timeout=60,
        )
        assert shown is not None and probe.snapshot_at is not None, "no first frame"
        assert probe.decoded_at is not None and probe.snapshot_apply is not None
        snap = probe.snapshot_apply
        print(f"\n-- initial render: {n_workers:,} workers, {gw.jobs:,} jobs")
        print(
            f"   snapshot message complete -> parsed + validated"
            f" {ms(probe.decoded_at - probe.snapshot_at):.0f} ms"
            f" -> store {probe.snapshot_store_ms:.0f} ms -> waited"
            f" {ms(snap.start - probe.decoded_at) - probe.snapshot_store_ms:.0f} ms"
            f" -> apply_pending (all views) {ms(snap.wall):.0f} ms"
            f" -> frame {ms(shown - snap.end):.0f} ms"
        )
        print(f"   GC pauses from connect to first frame: {pauses.summary()}")
        figures.add("initial render", ms(shown - probe.snapshot_at), 500, "ms", ".0f")

        # 2. churn ticks ---------------------------------------------------------------------
        await asyncio.sleep(1.0)
        gw.stats()
        gw.send("churn")
        await asyncio.sleep(args.warmup)
        pauses = GcPauses()
        probe.recording = True
        t0, cpu0 = time.perf_counter(), process_cpu()
        await asyncio.sleep(args.window)
        t1, cpu1 = time.perf_counter(), process_cpu()
        probe.recording = False
        gc_summary = pauses.summary()
        driver = gw.stats()
        ticks = [t for t in probe.ticks if t0 <= t.start < t1]
        window_frames = frames.between(t0, t1)
        total = [ms(t.wall + t.frame_wall) for t in ticks]
        total_cpu = [ms(t.cpu + t.frame_cpu) for t in ticks]
        print(
            f"\n-- churn at 4 Hz over {t1 - t0:.1f} s: {len(ticks)} updates applied, "
            f"{sum(t.workers for t in ticks) / max(len(ticks), 1):.0f} workers and "
            f"{sum(t.jobs for t in ticks) / max(len(ticks), 1):.0f} jobs changed per update"
        )
        print(
            f"   gateway side: {driver['ticks']} hub ticks, {driver['deltas']} deltas, "
            f"{driver['delta_bytes'] / max(driver['deltas'], 1) / 1e3:.0f} KB per delta, "
            f"{driver['stats'].get('workers_touched', 0) / max(driver['ticks'], 1):.0f} workers "
            f"touched per tick; hub flush {pcts(driver['flush_ms'])}"
        )
        print(f"   apply_pending    {pcts([ms(t.wall) for t in ticks])}")
        print(
            f"   its frame        {pcts([ms(t.frame_wall) for t in ticks])} "
            f"({sum(t.framed for t in ticks)} of {len(ticks)} updates repainted something)"
        )
        print(
            f"   apply + frame in CPU time (what other processes cannot inflate): {pcts(total_cpu)}"
        )
        print(f"   client side per delta, CPU (json decode + store apply): {pcts(probe.client_ms)}")
        print(f"   GC pauses: {gc_summary}")
        span = t1 - t0
        cpu_headless = (cpu1 - cpu0) / span * 100
        client_s = sum(probe.client_ms) / 1000
        apply_s = sum(t.cpu for t in ticks)
        frame_s = sum(f.cpu for f in window_frames)
        rest_s = cpu1 - cpu0 - client_s - apply_s - frame_s
        print(
            f"   process CPU {cpu_headless:.0f} % of one core = client {client_s / span * 100:.0f}"
            f" + apply_pending {apply_s / span * 100:.0f} + frames {frame_s / span * 100:.0f}"
            f" ({len(window_frames)} frames) + the rest (event loop, websockets, timers, GC)"
            f" {rest_s / span * 100:.0f}"
        )
        print(
            f"   ~{sum(f.bytes for f in window_frames) / span / 1e3:.1f} KB/s of escape codes"
            " (headless estimate, truecolor)"
        )
        figures.add("churn tick p50", percentile(sorted(total), 50), 25, "ms", ".1f")
        figures.add("churn tick p95", percentile(sorted(total), 95), 25, "ms", ".1f")
        figures.add(
            "churn tick p50, CPU time", percentile(sorted(total_cpu), 50), None, "ms", ".1f"
        )
        figures.add(
            "churn tick p95, CPU time", percentile(sorted(total_cpu), 95), None, "ms", ".1f"
        )
        figures.add("CPU under churn, headless", cpu_headless, None, "% of a core", ".0f")

        # 3. key to frame under churn -------------------------------------------------------
        moves = 0
        original_down = table.action_cursor_down

        def counted_down() -> None:
            nonlocal moves
            moves += 1
            original_down()

        table.action_cursor_down = counted_down
        key_rng = random.Random(3)
        latencies: list[float] = []
        driver_ = app._driver
        assert driver_ is not None
        pauses = GcPauses()
        for n in range(1, args.presses + 1):
            await asyncio.sleep(key_rng.uniform(0.02, 0.15))
            key = events.Key("down", None)
            key.set_sender(app)
            start = time.perf_counter()
            driver_.send_message(key)
            done = await frames.frame(lambda n=n: moves >= n, timeout=2)
            latencies.append(2000.0 if done is None else ms(done - start))
        gc_summary = pauses.summary()
        latencies.sort()
        print(f"\n-- 'down' to frame, {args.presses} presses while the churn goes on")
        print(f"   {pcts(latencies)} (includes the 60 fps screen update timer); GC: {gc_summary}")
        figures.add("key to frame p95", percentile(latencies, 95), 50, "ms", ".1f")

        # 4. idle: what still repaints ------------------------------------------------------
        gw.send("idle")
        await asyncio.sleep(1.5)
        refreshes = Refreshes()
        reticks = Reticks(table)
        t0, cpu0 = time.perf_counter(), process_cpu()
        await asyncio.sleep(args.idle)
        t1, cpu1 = time.perf_counter(), process_cpu()
        refreshes.remove()
        reticks.remove()
        idle_frames = frames.between(t0, t1)
        idle_ticks = [t for t in probe.ticks if t0 <= t.start < t1]
        span = t1 - t0
        print(f"\n-- idle (gateway unchanged, keep-alives only) for {span:.1f} s, headless")
        print(
            f"   {len(idle_frames)} frames, {sum(f.bytes for f in idle_frames) / span:.0f} B/s of "
            f"escape codes; {len(idle_ticks)} updates applied; CPU "
            f"{(cpu1 - cpu0) / span * 100:.1f} % of one core"
        )
        if refreshes.counts:
            who = ", ".join(
                f"{name} {n / span:.1f}/s ({refreshes.regions[name] / span:.0f} regions/s)"
                for name, n in refreshes.counts.most_common(6)
            )
            print(f"   repaint requests: {who}")
        if reticks.changed:
            cols = ", ".join(f"{k} {v / span:.1f}/s" for k, v in reticks.changed.most_common())
            print(
                f"   Workers table clock ticks changed {reticks.rows / span:.1f} on-screen "
                f"rows/s; cells by column: {cols}"
            )
        probe.frames = None


# =============================================================================================
# The real terminal: the panel as a child process on a pty.
# =============================================================================================


def panel_main(args: argparse.Namespace) -> int:
    """Child side: size the terminal, run the panel, say when the Workers table is full."""
    import fcntl
    import struct
    import termios

    fcntl.ioctl(
        sys.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0)
    )
    app = make_panel(args.url)
    fd = args.ready_fd
    original = app.feed.apply_pending
    told = False

    def apply_pending() -> None:
        nonlocal told
        original()
        if not told and workers_table(app).total_count >= args.workers:
            told = True
            os.write(fd, b"ready\n")

    app.feed.apply_pending = apply_pending
    app.run()
    return 0


class PtyPanel:
    """The panel on a pseudo-terminal; every byte it writes is read and counted here."""

    def __init__(self, url: str, workers: int) -> None:
        ready_r, ready_w = os.pipe()
        argv = [PYTHON, str(SCRIPT), "--role", "panel", "--url", url]
        argv += ["--workers", str(workers), "--ready-fd", str(ready_w)]
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor")
        env.pop("TEXTUAL", None)
        pid, master = pty.fork()
        if pid == 0:  # the child: become the panel
            try:
                os.close(ready_r)
                os.set_inheritable(ready_w, True)
                os.chdir(REPO)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        os.close(ready_w)
        self.pid, self.master, self.ready_fd = pid, master, ready_r
        self.chunks: list[tuple[float, int]] = []
        self.capture: bytearray | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append((time.monotonic(), len(data)))
            if self.capture is not None and len(self.capture) < 8_000_000:
                self.capture += data

    def wait_ready(self, timeout: float) -> bool:
        readable, _, _ = select.select([self.ready_fd], [], [], timeout)
        return bool(readable)

    def bytes_between(self, t0: float, t1: float) -> int:
        return sum(n for t, n in list(self.chunks) if t0 <= t < t1)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, b"q")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self._reader.join(2)
        os.close(self.master)
        os.close(self.ready_fd)


def window(panel: PtyPanel, seconds: float, capture: bool = False) -> tuple[float, float, bytes]:
    """(bytes/s, CPU % of one core) of the panel over `seconds`; the bytes if captured."""
    if capture:
        panel.capture = bytearray()
    t0, cpu0 = time.monotonic(), panel.cpu_seconds()
    time.sleep(seconds)
    t1, cpu1 = time.monotonic(), panel.cpu_seconds()
    data = bytes(panel.capture or b"")
    panel.capture = None
    span = t1 - t0
    return panel.bytes_between(t0, t1) / span, (cpu1 - cpu0) / span * 100, data


_CSI_MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")


def describe_writes(data: bytes, seconds: float) -> str:
    """Where on the screen the captured bytes went, from the cursor moves that precede them."""
    moves = _CSI_MOVE.findall(data)
    if not moves:
        return "no cursor-addressed writes"
    rows = sorted({int(r) for r, _ in moves})
    cols = Counter(int(c) for _, c in moves)
    line_starts = cols.get(1, 0)
    per_line = (
        f", ~{len(data) / line_starts:.0f} B per line written from column 1" if line_starts else ""
    )
    top_cols = ", ".join(f"col {c} {n / seconds:.1f}/s" for c, n in cols.most_common(3))
    return (
        f"{len(moves) / seconds:.0f} cursor moves/s into {len(rows)} screen rows "
        f"({rows[0]}..{rows[-1]}); {top_cols}{per_line}"
    )


def real_terminal(args: argparse.Namespace, gw: GatewayProc, figures: Figures) -> None:
    print(f"\n-- real pty {SIZE[0]}x{SIZE[1]}: the panel as its own process, every byte counted")
    panel = PtyPanel(gw.url, args.workers)
    try:
        if not panel.wait_ready(90):
            raise RuntimeError("the panel on the pty never showed the workers")
        time.sleep(args.settle)  # the first frames, the role lookup, the footer
        idle_bps, idle_cpu, data = window(panel, args.idle, capture=True)
        print(f"   idle ({args.idle:g} s): {idle_bps:.0f} B/s, CPU {idle_cpu:.1f} % of one core")
        if data:
            print(f"   where idle bytes go: {describe_writes(data, args.idle)}")
            sample = data[:120].decode("utf-8", "replace")
            print(f"   first idle bytes: {sample!r}")
        fleet = f"{args.workers // 1000}k" if args.workers >= 1000 else str(args.workers)
        figures.add(f"idle bytes, {fleet} workers (pty)", idle_bps, 0, "B/s", ".0f")
        figures.add(f"idle CPU, {fleet} workers (pty)", idle_cpu, None, "% of a core", ".1f")
        gw.stats()
        gw.send("churn")
        time.sleep(args.warmup)
        churn_bps, churn_cpu, _ = window(panel, args.window)
        gw.send("idle")
        print(f"   churn ({args.window:g} s): {churn_bps / 1e3:.1f} KB/s, CPU {churn_cpu:.0f} %")
        figures.add("bytes under churn (pty)", churn_bps / 1e3, None, "KB/s", ".1f")
        figures.add("CPU under churn (pty)", churn_cpu, None, "% of a core", ".0f")
    finally:
        panel.stop()


def quiet_terminal(args: argparse.Namespace, figures: Figures) -> None:
    print(f"\n-- real pty, quiet fleet: {args.quiet_workers} workers heartbeating every 5 s")
    gw = GatewayProc(args.quiet_workers, 0, "quiet", args.seed)
    try:
        panel = PtyPanel(gw.url, args.quiet_workers)
        try:
            if not panel.wait_ready(60):
                raise RuntimeError("the panel on the pty never showed the quiet fleet")
            time.sleep(args.settle)
            bps, cpu, data = window(panel, args.idle, capture=True)
            print(f"   {bps:.0f} B/s, CPU {cpu:.1f} % of one core")
            if data:
                print(f"   where the bytes go: {describe_writes(data, args.idle)}")
            # The Workers view's BEAT column ticks each second (heartbeat ages, as the panel
            # must show them); the Overview has no clock on screen and should write nothing.
            figures.add(
                f"idle bytes, Workers view, {args.quiet_workers} workers heartbeating (pty)",
                bps,
                None,
                "B/s",
                ".0f",
            )
            os.write(panel.master, b"1")
            time.sleep(args.settle)
            bps, cpu, data = window(panel, args.idle, capture=True)
            print(f"   Overview: {bps:.0f} B/s, CPU {cpu:.1f} % of one core")
            if data:
                print(f"   where the bytes go: {describe_writes(data, args.idle)}")
            figures.add(
                f"idle bytes, Overview, {args.quiet_workers} workers heartbeating (pty)",
                bps,
                0,
                "B/s",
                ".0f",
            )
        finally:
            panel.stop()
    finally:
        gw.stop()


# =============================================================================================
# Reconnect: the gateway killed and restarted (or stopped) under the panel.
# =============================================================================================


class AnswerWatch:
    """When the restarted gateway first answers `GET /healthz` (a thread polling every 10 ms),
    the moment from which "the panel is live again" is timed."""

    def __init__(self, url: str) -> None:
        import httpx

        self.answered_at: float | None = None
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                        self.answered_at = time.perf_counter()
                        return
                self._stop.wait(0.01)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class HeaderFrames:
    """The header's text in every composed frame (`App._display`), with its time."""

    def __init__(self, app: Any) -> None:
        self.frames: list[tuple[float, str]] = []
        display = app._display

        def recorded(screen: Any, renderable: Any) -> None:
            if renderable is not None and not app._batch_count:
                header = getattr(app.chrome.header, "_plain", "")
                self.frames.append((time.perf_counter(), header))
            display(screen, renderable)

        app._display = recorded

    def first(self, text: str, since: float) -> float | None:
        return next((t for t, h in self.frames if t >= since and text in h), None)


async def frame_with(
    pilot: Any, frames: HeaderFrames, text: str, since: float, timeout: float
) -> float:
    deadline = time.perf_counter() + timeout
    while (at := frames.first(text, since)) is None:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no frame showing {text!r} within {timeout:g} s")
        await pilot.pause(0.01)
    return at


async def reconnect(args: argparse.Namespace, figures: Figures) -> None:
    """The panel (product defaults) on the quiet fleet's gateway: SIGKILL it, keep it down for
    `--outage` s (the old backoff had grown to seconds by then), restart it on the same port,
    time "first answer to /healthz" to "first frame that says live"; then SIGSTOP it, time
    until the panel says the status is unknown, SIGCONT, time until live again."""
    n = args.quiet_workers
    print(f"\n-- reconnect: {n} workers, SIGKILL + restart x{args.reconnects}, SIGSTOP")
    gw = GatewayProc(n, 0, "quiet", args.seed)
    app = make_panel(gw.url)
    try:
        async with app.run_test(size=SIZE) as pilot:
            frames = HeaderFrames(app)
            await frame_with(pilot, frames, f"workers {n}/{n}", 0, 60)
            backs: list[float] = []
            for _ in range(args.reconnects):
                gw.kill()
                await frame_with(pilot, frames, "? unknown", time.perf_counter(), 10)
                await asyncio.sleep(args.outage)  # the outage itself, not a synchronisation
                watch = AnswerWatch(gw.url)
                restart = time.perf_counter()
                try:
                    gw = await asyncio.to_thread(GatewayProc, n, 0, "quiet", args.seed, gw.port)
                    live = await frame_with(pilot, frames, "● live", restart, 30)
                finally:
                    watch.stop()
                if watch.answered_at is None:
                    raise RuntimeError("the restarted gateway never answered /healthz")
                backs.append(live - watch.answered_at)
                await frame_with(pilot, frames, f"workers {n}/{n}", restart, 30)
            each = ", ".join(f"{ms(b):.0f} ms" for b in backs)
            print(f"   gateway answers -> panel live: {each}")
            figures.add("reconnect: gateway back -> panel live, worst", max(backs), 1.0, "s")
            gw.popen.send_signal(signal.SIGSTOP)
            stopped = time.perf_counter()
            try:
                unknown = await frame_with(pilot, frames, "? unknown", stopped, 15) - stopped
            finally:
                gw.popen.send_signal(signal.SIGCONT)
            resumed = time.perf_counter()
            back = await frame_with(pilot, frames, "● live", resumed, 15) - resumed
            print(f"   SIGSTOP -> unknown {unknown:.2f} s, SIGCONT -> live {back:.2f} s")
            figures.add("silent gateway (SIGSTOP) -> panel says unknown", unknown, 3.0, "s")
            figures.add("SIGCONT -> panel live", back, 1.0, "s")
    finally:
        gw.stop()


# =============================================================================================


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run for CI smoke")
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--churn", type=float, default=0.10, help="share of workers per tick")
    parser.add_argument("--window", type=float, default=12.0, help="churn window, seconds")
    parser.add_argument("--idle", type=float, default=10.0, help="idle windows, seconds")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--settle", type=float, default=2.0, help="after the pty panel is up")
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--quiet-workers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-pty", action="store_true", help="headless figures only")
    parser.add_argument("--role", choices=["bench", "gateway", "panel"], default="bench")
    parser.add_argument("--mode", default="idle", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--reconnects", type=int, default=5, help="gateway restarts timed")
    parser.add_argument("--outage", type=float, default=6.0, help="seconds a gateway stays down")
    parser.add_argument("--reconnect-only", action="store_true", help="the reconnect figures")
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "gateway":
        asyncio.run(gateway_main(args))
        return 0
    if args.role == "panel":
        return panel_main(args)
    if args.quick:
        args.workers, args.jobs, args.window, args.idle = 1_000, 500, 2.0, 2.0
        args.warmup, args.presses, args.quiet_workers, args.settle = 0.5, 10, 20, 1.0
        args.reconnects, args.outage = 2, 2.0

    header(
        f"tui_app: the panel on a live gateway, {args.workers:,} workers, {args.jobs:,} jobs, "
        f"{args.churn:.0%} churn per 250 ms, {SIZE[0]}x{SIZE[1]}"
    )
    figures = Figures()
    if args.reconnect_only:
        asyncio.run(reconnect(args, figures))
        return report(figures)
    gw = GatewayProc(args.workers, args.jobs, "idle", args.seed)
    try:
        print(
            f"   gateway driver: {args.workers:,} workers + {gw.jobs:,} jobs set up in "
            f"{gw.setup_s:.1f} s at {gw.url}"
        )
        asyncio.run(headless(args, gw, figures))
        if not args.no_pty:
            real_terminal(args, gw, figures)
    finally:
        gw.stop()
    if not args.no_pty:
        quiet_terminal(args, figures)
    if args.reconnects:
        asyncio.run(reconnect(args, figures))
    return report(figures)


def report(figures: Figures) -> int:
    print("\n== figures")
    width = max(len(row[0]) for row in figures.rows)
    for label, value, target, result in figures.rows:
        print(f"   {label:<{width}}  {value:>16}  {target:>14}  {result}")
    missed = [row[0] for row in figures.rows if row[3] == "MISS"]
    print(f"\n{'all targets met' if not missed else 'missed: ' + ', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

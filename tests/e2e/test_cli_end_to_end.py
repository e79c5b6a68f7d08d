"""The shipped commands as an operator runs them: real processes, real ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from gatewaytui.shared.operator_token import local_token
from support.paths import SAMPLE
from support.ports import reserve_port
from support.waiting import uvicorn_started_blocking, wait_until
from support.worker_peers import UpstreamState, upstream_app

CLI = [sys.executable, "-m", "gatewaytui.cli.main"]
HTTP_S = 30  # one request to a gateway process (a busy machine can starve it for seconds)


def workers_of(url: str) -> dict[str, dict]:
    token = local_token(url)  # `serve` is secure by default: its generated token is local
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    state = httpx.get(url + "/api/state", timeout=HTTP_S, headers=headers).json()
    return {w["id"]: w for w in state["workers"]}


@contextmanager
def process(*args: str, env: dict | None = None) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()


@pytest.fixture
def served() -> Iterator[str]:
    sock = reserve_port()
    port = sock.getsockname()[1]
    sock.close()
    with process("serve", "--server-port", str(port), "--server-worker-key", "wk") as proc:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            try:
                return httpx.get(url + "/healthz", timeout=HTTP_S).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, what="gateway start")
        yield url


@pytest.fixture
def upstream() -> Iterator[tuple[str, UpstreamState]]:
    """A small OpenAI-compatible server on a real port, in a thread of this process."""
    state = UpstreamState()
    sock = reserve_port()
    server = uvicorn.Server(uvicorn.Config(upstream_app(state), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    uvicorn_started_blocking(server)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    server.should_exit = True
    thread.join(10)


def test_relay_worker_serves_sdk_requests_from_a_real_upstream(served, upstream):
    upstream_url, _ = upstream
    with process(
        "worker", "--upstream", upstream_url + "/v1", "--id", "relay-1", "--gateway", served,
        env={"GATEWAYTUI_WORKER_KEY": "wk"},
    ):  # fmt: skip
        wait_until(
            lambda: workers_of(served).get("relay-1", {}).get("status") in ("idle", "connected"),
            what="relay registration",
        )
        relay = workers_of(served)["relay-1"]
        client = openai.OpenAI(base_url=served + "/v1", api_key="x", max_retries=0)
        model = relay["models"][0]
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello relay"}]
        )
        assert reply.choices[0].message.content
        streamed = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "stream it"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        vectors = client.embeddings.create(model=model, input=["a", "b", "c"])
        assert [d.index for d in vectors.data] == [0, 1, 2]
        assert workers_of(served)["relay-1"]["processed"] == 3


def test_simulated_worker_drains_itself_on_sigterm(served):
    # The job takes 5 s: it must still run when "draining" is polled, on a busy machine too.
    with process(
        "worker", "--simulate", "--models", "sim", "--id", "sim-1", "--gateway", served,
        "--latency", "5", "--tokens-per-second", "0", "--key", "wk",
    ) as proc:  # fmt: skip
        wait_until(lambda: workers_of(served).get("sim-1", {}).get("status") == "idle")
        result: list = []
        call = threading.Thread(
            target=lambda: result.append(
                httpx.post(
                    served + "/v1/chat/completions",
                    json={"model": "sim", "messages": [{"role": "user", "content": "x"}]},
                    timeout=20,
                )
            )
        )
        call.start()
        wait_until(lambda: workers_of(served)["sim-1"]["inflight"] == 1)
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: workers_of(served)["sim-1"]["status"] == "draining")
        call.join(20)
        assert result[0].status_code == 200  # the in-flight job finished during the drain
        assert proc.wait(20) == 0
        wait_until(lambda: workers_of(served)["sim-1"]["status"] == "gone")


def test_bad_worker_key_is_reported_without_the_key(served):
    with process(
        "worker", "--simulate", "--id", "x", "--gateway", served, "--key", "not-the-key",
    ) as proc:  # fmt: skip
        seen = ""
        deadline = time.monotonic() + 15
        while "401" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "401" in seen
        assert "not-the-key" not in seen


def test_metrics_follow_prometheus_conventions(served):
    with process(
        "worker", "--simulate", "--models", "m", "--id", "sim-m", "--gateway", served,
        "--latency", "0", "--tokens-per-second", "0", "--max-tokens", "5", "--key", "wk",
    ):  # fmt: skip
        wait_until(lambda: workers_of(served).get("sim-m", {}).get("status") == "idle")
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        chat = httpx.post(served + "/v1/chat/completions", json=body, timeout=HTTP_S)
        assert chat.status_code == 200
        embed = {"model": "m", "input": ["a", "b"]}
        assert httpx.post(served + "/v1/embeddings", json=embed, timeout=HTTP_S)
        text = httpx.get(served + "/metrics", timeout=HTTP_S).text
    for line in (
        'gatewaytui_model_requests_total{model="m",outcome="success"} 2.0',
        'gatewaytui_model_tokens_total{kind="out",model="m"} 5.0',
        'gatewaytui_model_embeddings_total{model="m"} 2.0',
        'gatewaytui_worker_jobs_total{outcome="success",worker="sim-m"} 2.0',
        'gatewaytui_worker_tokens_total{kind="out",worker="sim-m"} 5.0',
        'gatewaytui_workers{status="idle"} 1.0',
        "gatewaytui_inflight_jobs 0.0",
        "gatewaytui_queue_length 0.0",
        'gatewaytui_build_info{version="0.1.0"} 1.0',
    ):
        assert line in text, line
    assert 'gatewaytui_request_duration_seconds_bucket{kind="chat",le="0.01",model="m"}' in text
    assert "gatewaytui_worker_processing_seconds_count" in text
    assert "_created" not in text


def test_options_command_masks_secrets(tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text("plugin_options:\n  llm:\n    queue_size: 99\n", encoding="utf-8")
    out = subprocess.run(
        [*CLI, "options", "--config", str(config), "--server-port", "9999"],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVER_API_KEYS": "sk-very-secret", "LLM_QUEUE_TIMEOUT": "5s"},
        check=True,
    ).stdout
    assert "sk-very-secret" not in out
    assert "api_keys" in out and "<set> " in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "99" in lines["queue_size"]
    assert lines["queue_size"].endswith("(yaml plugin_options.llm.queue_size)")
    assert "5s" in lines["queue_timeout"] and lines["queue_timeout"].endswith(
        "(env LLM_QUEUE_TIMEOUT)"
    )
    assert "9999" in lines["port"] and lines["port"].endswith("(flag --server-port)")
    assert lines["scheduler"].endswith("(default)")


def test_serve_reports_every_config_problem_with_file_line_and_key(tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text(
        "plugin_options:\n"
        "  llm:\n"
        "    queue_size: -3\n"
        "    schedulr: random\n"
        "  server:\n"
        "    port: lots\n"
        "bogus: 1\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [*CLI, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "LLM_QUEUE_TIMEOUT": "soon"},
        timeout=60,
    )
    assert result.returncode == 2
    err = result.stderr
    assert "invalid options (5 problems):" in err
    assert (
        f"{config}:3:17: plugin_options.llm.queue_size=-3: expected a non-negative integer" in err
    )
    assert (
        f"{config}:4:5: plugin_options.llm.schedulr: unknown option (did you mean 'scheduler'?)"
        in err
    )
    assert f"{config}:6:11: plugin_options.server.port=lots: expected an integer" in err
    assert f"{config}:7:1: bogus: unknown top-level key" in err
    assert "env LLM_QUEUE_TIMEOUT=soon:" in err
    assert err.index(":3:17:") < err.index(":4:5:") < err.index(":6:11:")  # in reading order


def test_a_duplicate_key_in_the_gateway_config_is_an_error(tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text("plugin_options:\n  llm: {}\nplugin_options: {}\n", encoding="utf-8")
    result = subprocess.run(
        [*CLI, "options", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        f"{config}:3:1: invalid YAML: duplicate key 'plugin_options' (first defined on line 1)"
        in (result.stderr)
    )


def test_broken_yaml_is_reported_with_file_and_line(tmp_path):
    config = tmp_path / "broken.yaml"
    original = "plugin_options:\n  llm:\n    queue_size: [1, 2\n"
    config.write_text(original, encoding="utf-8")
    result = subprocess.run(
        [*CLI, "serve", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"{config}:" in result.stderr and "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr
    assert config.read_text(encoding="utf-8") == original


def test_bad_option_value_names_the_source():
    result = subprocess.run(
        [*CLI, "serve"], capture_output=True, text=True, env={**os.environ, "LLM_QUEUE_SIZE": "abc"}
    )
    assert result.returncode == 2
    assert "LLM_QUEUE_SIZE=abc: expected an integer" in result.stderr


@pytest.mark.parametrize("command", ["serve", "options"])
def test_options_and_serve_refuse_the_same_values_naming_the_source(command):
    env = {**os.environ, "LLM_SCHEDULER": "random"}
    result = subprocess.run(
        [*CLI, command, "--llm-queue-size", "-1", "--server-port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert "LLM_SCHEDULER=random: expected one of least-busy, round-robin, fill-first" in (
        result.stderr
    )
    assert "--llm-queue-size -1: expected a non-negative integer" in result.stderr


def test_help_plugins_lists_every_option_and_marks_secrets():
    from gatewaytui.gateway.options import DESCRIPTORS

    out = subprocess.run(
        [*CLI, "serve", "--help-plugins"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    blocks = {}  # flag -> its lines
    for line in out.splitlines():
        if line.startswith("  --"):
            flag = line.split()[0]
            blocks[flag] = [line]
        elif line.startswith("      ") and blocks:
            blocks[flag].append(line)
    every = [a for d in DESCRIPTORS for a in d.args]
    assert set(blocks) == {a.flag for a in every}
    for arg in every:
        text = "\n".join(blocks[arg.flag])
        assert f"env {arg.env}, yaml {arg.yaml}" in text and arg.description in text
        assert ("default (secret)" in text) == arg.secret, arg.flag
        if arg.deprecated:
            assert "DEPRECATED" in text
    assert "allowed: one of least-busy, round-robin, fill-first" in "\n".join(
        blocks["--llm-scheduler"]
    )
    assert "default (secret)" in blocks["--server-api-keys"][0]


def test_demo_runs_headless_for_a_while():
    result = subprocess.run(
        [*CLI, "demo", "--headless", "--duration", "4", "--workers", "6", "--rate", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "gatewaytui demo: gateway on http://127.0.0.1:" in result.stdout
    status_lines = [line for line in result.stdout.splitlines() if line.startswith("workers:")]
    assert status_lines and "requests" in status_lines[-1]
    assert int(status_lines[-1].split("requests ")[1].split()[0]) > 0


@pytest.mark.parametrize("hangup", [signal.SIGHUP, signal.SIGTERM])
def test_a_hung_up_demo_stops_and_removes_its_scratch_directory(tmp_path, hangup):
    """A closed terminal (SIGHUP) or a stop (SIGTERM): the headless demo exits cleanly and
    leaves no directory with its backends file and ledger behind."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    args = [*CLI, "demo", "--headless", "--workers", "2", "--rate", "2"]
    errors = tmp_path / "stderr.txt"
    with (
        errors.open("w") as err,
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, env=env) as proc,
    ):
        try:
            assert proc.stdout is not None and "gateway on" in proc.stdout.readline()
            (scratch,) = tmp_path.glob("gatewaytui-demo-*")
            wait_until(lambda: (scratch / "history.sqlite3").exists(), what="the demo's ledger")
            proc.send_signal(hangup)
            assert proc.wait(60) == 0, errors.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not scratch.exists()


@pytest.mark.timeout(300)  # the demo's ramp-up is slow on a busy machine; its waits are bounded
def test_demo_shows_backends_and_an_mcp_relay():
    sock = reserve_port()
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    args = ("demo", "--headless", "--port", str(port), "--workers", "3", "--rate", "8")
    with process(*args) as proc:
        assert "gateway on" in proc.stdout.readline()

        def state() -> dict:
            """The demo's state; {} while its busy process is slow to answer (a poll, not
            a failure: the waits below bound it)."""
            token = local_token(url)  # the demo is secure by default; its token is local
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                return httpx.get(url + "/api/state", timeout=HTTP_S, headers=headers).json()
            except httpx.TimeoutException:
                return {"backends": [], "mcp": {"clients": []}}

        def backends_busy() -> bool:
            backends = {b["id"]: b for b in state()["backends"]}
            sim, down = backends.get("vllm-sim"), backends.get("ollama-lab")
            return bool(sim and down and sim["status"] == "healthy" and sim["requests"] > 0
                        and down["status"] == "unhealthy")  # fmt: skip

        wait_until(backends_busy, timeout=120, what="a busy healthy backend and a down one")

        def relay_called() -> bool:
            clients = {c["id"]: c for c in state()["mcp"]["clients"]}
            relay = clients.get("ops-toolbox")
            return bool(relay and relay["server_name"] == "ops-toolbox"
                        and relay["functions"].get("tools/call", 0) > 0)  # fmt: skip

        wait_until(relay_called, timeout=120, what="MCP calls through the demo relay")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "the MCP server runs as the demo's child"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not left, f"the demo left processes behind: {left}"


def test_options_export_for_pasting():
    env = {**os.environ, "LLM_QUEUE_SIZE": "42", "SERVER_WORKER_KEY": "wk-secret"}
    out = subprocess.run(
        [*CLI, "options", "--export", "env"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "LLM_QUEUE_SIZE=42" in out
    assert "wk-secret" not in out and "server.worker_key" in out
    flags = subprocess.run(
        [*CLI, "options", "--export", "flags", "--workers-gone-retention", "15m"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    assert "--workers-gone-retention 15m" in flags and "--llm-queue-size 42" in flags


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize("token", [None, ""], ids=["missing", "empty"])
def test_a_context_token_file_problem_is_one_line_not_a_traceback(tmp_path, token):
    token_file = tmp_path / "prod.token"
    if token is not None:
        token_file.write_text(token, encoding="utf-8")
    config = tmp_path / "panel.yaml"
    config.write_text(
        "contexts:\n"
        "  - name: local\n    url: http://127.0.0.1:9\n"
        f"  - name: prod\n    url: http://127.0.0.1:9\n    token_file: {token_file}\n",
        encoding="utf-8",
    )
    for args in (("--config", str(config), "--context", "prod"),
                 ("--context", "prod", "--config", str(config))):  # fmt: skip
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gatewaytui: context 'prod': token file")
        assert str(token_file) in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("open", "sample_state.json", "--theme", "nord", "--config", "{missing}"),
        ("--theme", "nord", "open", "sample_state.json", "--config", "{missing}"),
        ("--config", "{missing}", "open", "sample_state.json", "--read-only"),
        ("demo", "--theme", "nord", "--read-only", "--config", "{missing}"),
        ("--read-only", "demo", "--config", "{missing}", "--theme", "nord"),
    ],
)
def test_panel_options_are_accepted_after_open_and_demo_and_load_the_config(tmp_path, args):
    """The panel config given after the command is the one loaded (here: a missing file,
    so the command stops at once, before any panel or demo gateway starts)."""
    missing = tmp_path / "nope.yaml"
    args = tuple(str(missing) if a == "{missing}" else a for a in args)
    result = run_cli(*args)
    assert "unrecognized arguments" not in result.stderr
    assert result.returncode == 2
    assert result.stderr.strip() == f"gatewaytui: config file not found: {missing}"


def test_demo_panel_keeps_the_users_keymap_refresh_rate_and_themes(tmp_path):
    from gatewaytui.cli.demo import demo_panel_config
    from gatewaytui.tui.config import ContextConfig, load_config

    config_file = tmp_path / "panel.yaml"
    config_file.write_text(
        "refresh_rate: 2\nkeymap:\n  app.quit: ctrl+q\n"
        "contexts:\n  - name: prod\n    url: https://gw.example:8443\n",
        encoding="utf-8",
    )
    user = load_config(config_file)
    demo = ContextConfig(name="demo", url="http://127.0.0.1:1234", color="green")
    panel = demo_panel_config(user, demo)
    assert panel.refresh_rate == 2 and panel.keymap == user.keymap
    assert [c.name for c in panel.contexts] == ["demo"] and panel.default_context == "demo"


@pytest.mark.parametrize(("extra", "forced"), [((), False), (("--read-only",), True)])
def test_open_is_read_only_by_its_snapshot_not_for_a_context_switched_to_later(
    monkeypatch, extra, forced
):
    """`open` shows a snapshot (read-only by itself); switching to a live context from the
    palette must not stay READ-ONLY unless --read-only was given."""
    from gatewaytui.cli import main as cli
    from gatewaytui.tui.app import GatewayApp

    built: list[GatewayApp] = []
    monkeypatch.setattr(GatewayApp, "run", lambda self, **_: built.append(self))
    sample = SAMPLE
    cli.cmd_open(cli.build_parser().parse_args(["open", str(sample), *extra]))
    (app,) = built
    assert app.read_only  # the snapshot
    assert app.forced_read_only is forced

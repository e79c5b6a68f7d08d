"""The one entry point, `gatewaytui`: serve, worker, demo, options, schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import gatewaytui
from gatewaytui.cli.errors import CliError
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.options import (
    DESCRIPTORS,
    OptionError,
    ResolvedOptions,
    allowed_values,
    resolve_options,
)
from gatewaytui.schema import ArgType
from gatewaytui.shared.yaml_marks import StrictLoader, compose, node_mark, where

log = logging.getLogger("gatewaytui.cli")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if level.lower() != "debug":  # httpx logs every request at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)


def setup_logging_to_file(level: str) -> None:
    """While the panel owns the terminal, log lines would corrupt it: send them to a file."""
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    log_dir = state_home / "gatewaytui"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_dir / "gatewaytui.log")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))
    logging.getLogger("httpx").setLevel(logging.WARNING)


# ---- config file ------------------------------------------------------------------------


def load_yaml_file(path: Path) -> dict[str, Any]:
    """Parse a YAML config; a broken file is reported with its line and left untouched."""
    return _read_yaml(path)[0]


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        doc = yaml.load(text, Loader=StrictLoader)  # a SafeLoader that refuses duplicate keys
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise CliError(f"{where(path, mark)}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: invalid YAML: {exc}") from None
    if doc is None:
        return {}, text
    if not isinstance(doc, dict):
        raise CliError(f"{path}:1:1: expected a mapping at the top level")
    return doc, text


def option_problems(exc: OptionError, path: Path | None, text: str) -> str:
    """Every problem on its own line; those from the config file start with file:line:col
    (as the panel's config errors do)."""
    root = compose(text) if path is not None else None
    located: list[tuple[int, int, str]] = []
    lines = []
    for problem in exc.problems:
        if path is not None and problem.yaml_loc is not None:
            mark = node_mark(root, problem.yaml_loc, at_key=problem.at_key)
            line, col = (mark.line, mark.column) if mark is not None else (0, 0)
            located.append((line, col, f"  {where(path, mark)}: {problem.message}"))
        else:
            lines.append(f"  {problem.message}")
    lines = [text for _, _, text in sorted(located)] + lines  # the file's in reading order
    count = len(lines)
    return "\n".join([f"invalid options ({count} problem{'s' if count != 1 else ''}):", *lines])


# ---- option flags generated from the descriptors ----------------------------------------


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ArgSpec, e.g. `--llm-queue-size 200` (dest `llm.queue_size`)."""
    for descriptor in DESCRIPTORS:
        group = parser.add_argument_group(f"{descriptor.name} options ({descriptor.id})")
        for spec in descriptor.args:
            default = "set" if spec.secret and spec.default else spec.default or '""'
            help_text = f"{spec.description} [env {spec.env}; default {default}]"
            if spec.deprecated:
                help_text += f" DEPRECATED{': ' + spec.replacement if spec.replacement else ''}"
            kwargs: dict[str, Any] = {
                "dest": f"{descriptor.id}.{spec.id}",
                "default": None,
                "help": help_text,
                "metavar": spec.type.value.upper(),
            }
            if spec.type == ArgType.BOOL:
                kwargs.update(nargs="?", const="true")
            group.add_argument(spec.flag, **kwargs)


def resolve_from_args(args: argparse.Namespace) -> ResolvedOptions:
    flags = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    path = Path(args.config) if args.config else None
    yaml_doc, text = _read_yaml(path) if path is not None else ({}, "")
    try:
        resolved = resolve_options(flags=flags, env=os.environ, yaml_doc=yaml_doc)
    except OptionError as exc:
        raise CliError(option_problems(exc, path, text)) from None
    for warning in resolved.warnings:
        log.warning("%s", warning)
    return resolved


def build_config(args: argparse.Namespace) -> GatewayConfig:
    try:
        return GatewayConfig.from_options(resolve_from_args(args))
    except ValueError as exc:
        raise CliError(f"invalid options: {exc}") from None


# ---- commands ---------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from gatewaytui.gateway.core import Gateway
    from gatewaytui.gateway.server import make_server, run

    if args.help_plugins:
        print_plugin_specs()
        return 0
    config = build_config(args)
    from gatewaytui.gateway.auth import Auth
    from gatewaytui.shared.operator_token import token_path

    open_to = Auth.from_config(config).open_audiences()
    if open_to and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s with no secret for: %s", config.host, ", ".join(open_to))
    if not (config.open or config.operator_tokens or config.viewer_tokens):
        log.warning(
            "operator token in %s (mode 0600; the panel on this machine reads it)",
            token_path(config.token_file),
        )
    from gatewaytui.gateway.backends.store import BackendStoreError

    try:
        gateway = Gateway(config)
    except BackendStoreError as exc:  # a broken backends file: named with its line, untouched
        raise CliError(f"cannot load backends: {exc}") from None
    server = make_server(gateway, log_level=args.log_level)
    log.info(
        "gatewaytui %s serving on http://%s:%d", gatewaytui.__version__, config.host, config.port
    )
    run(server)  # uvloop where installed
    return 0


def print_plugin_specs() -> None:
    """Every ArgSpec: flag, type, default, env, YAML path, description, example, status."""
    for descriptor in DESCRIPTORS:
        print(f"{descriptor.id}: {descriptor.name} — {descriptor.summary}")
        for spec in descriptor.args:
            default = "(secret)" if spec.secret else (spec.default or '""')
            print(f"  {spec.flag:<36} {spec.type.value:<9} default {default}")
            print(f"      env {spec.env}, yaml {spec.yaml}")
            print(f"      {spec.description}")
            if (allowed := allowed_values(descriptor.id, spec)) is not None:
                print(f"      allowed: {allowed}")
            if spec.example:
                print(f"      example: {spec.example}")
            if spec.deprecated:
                print(f"      DEPRECATED: {spec.replacement or 'no replacement'}")
        print()


def cmd_options(args: argparse.Namespace) -> int:
    resolved = build_config(args).options  # the very checks `serve` makes
    if args.export:
        from gatewaytui.schema.options_export import export_config

        plugins = [p.model_dump(mode="json") for p in resolved.describe()]
        print(export_config(plugins, args.export, changed_only=not args.all), end="")
        return 0
    for plugin in resolved.describe():
        print(f"[{plugin.id}] {plugin.name}")
        for arg in plugin.args:
            if arg.secret:
                value = "<set>" if arg.is_set else "<unset>"
            else:
                value = arg.value if arg.value not in (None, "") else '""'
            print(f"  {arg.id:<26} {value!s:<24} ({_source_label(resolved, plugin.id, arg.id)})")
    return 0


def _source_label(resolved: ResolvedOptions, plugin: str, arg_id: str) -> str:
    """`env LLM_QUEUE_SIZE`, `flag --llm-queue-size`, `yaml plugin_options.llm.queue_size`,
    or `default`: where the value came from, by name."""
    arg = resolved.args[plugin][arg_id]
    return f"{arg.source} {arg.label}" if arg.label and arg.source != "default" else arg.source


def cmd_schema(args: argparse.Namespace) -> int:
    from gatewaytui.gateway.options import config_json_schema
    from gatewaytui.schema.mcp_protocol import mcp_protocol_json_schema
    from gatewaytui.schema.protocol import protocol_json_schema
    from gatewaytui.schema.state import state_json_schema

    documents = {
        "state.schema.json": state_json_schema(),
        "protocol.schema.json": protocol_json_schema(),
        "mcp_protocol.schema.json": mcp_protocol_json_schema(),
        "gateway-config.schema.json": config_json_schema(),
    }
    if args.write is None:
        print(json.dumps(documents["state.schema.json"], indent=2))
        return 0
    target = Path(args.write)
    target.mkdir(parents=True, exist_ok=True)
    for name, doc in documents.items():
        (target / name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {target / name}")
    from gatewaytui.gateway.options import options_markdown

    (target / "options.md").write_text(options_markdown(), encoding="utf-8")
    print(f"wrote {target / 'options.md'}")
    return 0


def worker_settings_from_args(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from gatewaytui.workers.settings import SimulateSettings, UpstreamSettings, WorkerSettings

    key = args.key or os.environ.get("GATEWAYTUI_WORKER_KEY")
    if args.key_file:
        key = Path(args.key_file).read_text(encoding="utf-8").strip()
    labels = {}
    for item in args.label or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--label {item!r}: expected key=value")
        labels[name] = value
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()] or None
    try:
        backend: dict[str, Any] = {}
        if args.upstream:
            upstream_key = os.environ.get(args.upstream_key_env) if args.upstream_key_env else None
            backend["upstream"] = UpstreamSettings(
                url=args.upstream, api_key=upstream_key, models=models
            )
        else:
            simulate: dict[str, Any] = {
                "latency_s": args.latency,
                "latency_jitter_s": args.latency_jitter,
                "tokens_per_second": args.tokens_per_second,
                "max_tokens": args.max_tokens,
                "failure_rate": args.failure_rate,
                "embedding_dim": args.embedding_dim,
                "seed": args.seed,
                "not_ready": args.not_ready,
                "gpus": [args.fake_gpu_name] * args.fake_gpus,
            }
            if models:
                simulate["models"] = models
            backend["simulate"] = SimulateSettings(**simulate)
        return WorkerSettings(
            gateway_url=args.gateway,
            key=key,
            id=args.id,
            name=args.name,
            labels=labels,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            count=args.count,
            drain_timeout_s=args.drain_timeout,
            **backend,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"invalid worker settings: {problems}") from None


def cmd_worker(args: argparse.Namespace) -> int:
    from gatewaytui.workers.runner import run_workers

    if not args.simulate and not args.upstream:
        raise CliError("choose a backend: --simulate or --upstream URL")
    if args.simulate and args.upstream:
        raise CliError("--simulate and --upstream are exclusive")
    settings = worker_settings_from_args(args)
    return asyncio.run(run_workers(settings, install_signal_handlers=True))


def cmd_demo(args: argparse.Namespace) -> int:
    from gatewaytui.cli.demo import run_demo, run_demo_with_tui

    if args.replicas > 1:
        from gatewaytui.cli.demo_fleet import run_fleet_demo

        config = None if args.headless else load_tui_config(args)
        return run_fleet_demo(args, config)
    if args.headless:
        fleet = (args.fleet_redis_url, args.fleet_replica_id) if args.fleet_redis_url else None
        return asyncio.run(
            run_demo(
                port=args.port,
                workers=args.workers,
                rate=args.rate,
                duration=args.duration,
                fleet=fleet,
            )
        )
    config = load_tui_config(args)  # the user's keymap, refresh rate and themes (before start)
    return run_demo_with_tui(
        port=args.port,
        workers=args.workers,
        rate=args.rate,
        theme=args.theme,
        read_only=args.read_only,
        config=config,
        config_path=Path(args.config) if args.config else None,
    )


def load_tui_config(args: argparse.Namespace) -> Any:
    from gatewaytui.tui.config import ConfigError, load_config

    try:
        return load_config(Path(args.config) if args.config else None)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def run_panel(args: argparse.Namespace, snapshot: Path | None = None) -> int:
    """Build the panel with the command line's panel options, on the chosen context or on a
    saved snapshot, and run it. A bad token file or snapshot is a one-line error, exit 2."""
    from gatewaytui.client.errors import ClientError
    from gatewaytui.tui.app import GatewayApp
    from gatewaytui.tui.config import ConfigError, pick_context

    config = load_tui_config(args)
    try:
        app = GatewayApp(
            config,
            context=None if snapshot else pick_context(config, args.context),
            snapshot=snapshot,
            # Read-only when asked (--read-only, the context's read_only, a viewer token); a
            # snapshot is read-only by itself, and a context switched to from it is not.
            read_only=args.read_only,
            theme=args.theme,
            config_path=Path(args.config) if args.config else None,
        )
    except ClientError as exc:
        raise CliError(f"cannot open {snapshot}: {exc}") from None
    except ConfigError as exc:  # e.g. the context's token file is missing or empty
        raise CliError(str(exc)) from None
    app.run()
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """`gatewaytui` with no command: the panel on the configured (or default) context."""
    return run_panel(args)


def cmd_open(args: argparse.Namespace) -> int:
    """`gatewaytui open FILE`: a saved snapshot, read-only, with no gateway at all."""
    return run_panel(args, Path(args.snapshot))


def add_panel_flags(parser: argparse.ArgumentParser, *, top: bool, context: bool = True) -> None:
    """The panel's options. They are accepted before the command and after `open`/`demo`
    (there they default to "not given", so a value before the command is kept)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("panel options") if not top else parser
    group.add_argument(
        "--config", default=default(None), help="panel config file (default: XDG config dir)"
    )
    if context:
        group.add_argument(
            "--context",
            default=default(None),
            help="gateway context to open (default: the config's)",
        )
    group.add_argument(
        "--read-only",
        action="store_true",
        default=default(False),
        help="hide and refuse actions",
    )
    group.add_argument("--theme", default=default(None), help="theme name (see themes/)")


# ---- parser -----------------------------------------------------------------------------


# Over 60 lines on purpose: the whole command line declared in one place, in help order.
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewaytui",
        description="Terminal control panel and lightweight core for an LLM gateway.",
    )
    parser.add_argument(
        "--version", action="version", version=f"gatewaytui {gatewaytui.__version__}"
    )
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="default: info (demo: warning)",
    )
    add_panel_flags(parser, top=True)
    parser.set_defaults(func=cmd_tui)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    open_cmd = sub.add_parser("open", help="open a saved snapshot read-only (no gateway)")
    open_cmd.add_argument("snapshot", help="a saved state file, e.g. sample_state.json")
    add_panel_flags(open_cmd, top=False, context=False)
    open_cmd.set_defaults(func=cmd_open)

    serve = sub.add_parser("serve", help="run the gateway core")
    serve.add_argument("--config", help="YAML file with a plugin_options section")
    serve.add_argument("--help-plugins", action="store_true", help="print every option spec")
    add_option_flags(serve)
    serve.set_defaults(func=cmd_serve)

    options = sub.add_parser("options", help="print effective option values and their source")
    options.add_argument("--config", help="YAML file with a plugin_options section")
    options.add_argument(
        "--export",
        choices=["yaml", "env", "flags"],
        help="print the effective configuration as a YAML snippet, env lines or flags",
    )
    options.add_argument(
        "--all", action="store_true", help="with --export: defaults too, not just changes"
    )
    add_option_flags(options)
    options.set_defaults(func=cmd_options)

    worker = sub.add_parser("worker", help="run a simulated or relay worker")
    worker.add_argument(
        "--gateway",
        default=os.environ.get("GATEWAYTUI_GATEWAY", "ws://127.0.0.1:8080"),
        help="gateway address (env GATEWAYTUI_GATEWAY)",
    )
    worker.add_argument("--key", help="worker key (prefer env GATEWAYTUI_WORKER_KEY or --key-file)")
    worker.add_argument("--key-file", help="file holding the worker key")
    worker.add_argument("--id", help="worker id (default: derived from the host name)")
    worker.add_argument("--name", help="display name")
    worker.add_argument("--label", action="append", help="key=value label (repeatable)")
    worker.add_argument("--concurrency", type=int, default=4, help="max concurrent jobs")
    worker.add_argument("--batch-size", type=int, default=32, help="preferred embeddings batch")
    worker.add_argument("--count", type=int, default=1, help="workers in this process")
    worker.add_argument("--drain-timeout", type=float, default=60.0, help="seconds")
    worker.add_argument("--models", help="comma-separated models to advertise")
    sim = worker.add_argument_group("simulated worker")
    sim.add_argument("--simulate", action="store_true", help="answer jobs with a simulator")
    sim.add_argument("--latency", type=float, default=0.2, help="time to first token, seconds")
    sim.add_argument("--latency-jitter", type=float, default=0.0, help="± seconds")
    sim.add_argument("--tokens-per-second", type=float, default=50.0)
    sim.add_argument("--max-tokens", type=int, default=64, help="when a request sets none")
    sim.add_argument("--failure-rate", type=float, default=0.0, help="0..1")
    sim.add_argument("--embedding-dim", type=int, default=384)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--not-ready", action="store_true", help="report not_ready")
    sim.add_argument(
        "--fake-gpus", type=int, default=0, metavar="N", help="pretend to have N GPUs (demo)"
    )
    sim.add_argument("--fake-gpu-name", default="NVIDIA H100 80GB HBM3", help="their name")
    relay = worker.add_argument_group("relay worker")
    relay.add_argument("--upstream", help="OpenAI-compatible base URL to relay jobs to")
    relay.add_argument("--upstream-key-env", help="env var holding the upstream API key")
    worker.set_defaults(func=cmd_worker)

    from gatewaytui.cli.mcp_relay import add_parser as add_mcp_relay_parser

    add_mcp_relay_parser(sub)

    demo = sub.add_parser("demo", help="run the core, simulated workers and steady traffic")
    demo.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    demo.add_argument("--workers", type=int, default=10, help="simulated workers")
    demo.add_argument("--rate", type=float, default=3.0, help="requests per second")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument("--headless", action="store_true", help="no panel: print status lines")
    demo.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="a fleet: start a local redis-server and N replicas (workers spread across them)",
    )
    demo.add_argument("--fleet-redis-url", help=argparse.SUPPRESS)  # one replica of a fleet
    demo.add_argument("--fleet-replica-id", default="r1", help=argparse.SUPPRESS)
    add_panel_flags(demo, top=False, context=False)
    demo.set_defaults(func=cmd_demo)

    schema = sub.add_parser("schema", help="print (or --write) the published JSON Schemas")
    schema.add_argument(
        "--write",
        nargs="?",
        const="docs",
        default=None,
        metavar="DIR",
        help="write state, protocol and mcp_protocol .schema.json files to DIR (docs)",
    )
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level is None:
        args.log_level = "warning" if args.command in (None, "demo", "open") else "info"
    if args.command in (None, "open") or (args.command == "demo" and not args.headless):
        setup_logging_to_file(args.log_level)  # the terminal belongs to the panel
    else:
        setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"gatewaytui: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

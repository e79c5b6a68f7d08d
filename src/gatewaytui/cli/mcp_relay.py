"""`gatewaytui mcp-relay`: make an MCP server behind NAT reachable through the gateway."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from gatewaytui.cli.errors import CliError

DESCRIPTION = """\
Connect out to the gateway (WS /api/mcp/connect) and bridge MCP calls to a local MCP server,
given as a command that speaks MCP over stdio (after --) or as a Streamable HTTP URL (--url).
MCP clients then call it at POST <gateway>/mcp/<id> with the gateway's API key. The relay
reconnects with backoff; the first SIGTERM/Ctrl+C drains (in-flight calls finish), a second
one exits at once."""

EPILOG = """\
examples:
  gatewaytui mcp-relay --id files -- npx -y @modelcontextprotocol/server-filesystem /srv/docs
  gatewaytui mcp-relay --id k8s --gateway wss://gw.example.com --url http://127.0.0.1:8000/mcp
  GATEWAYTUI_MCP_RELAY_TOKEN=s3cret gatewaytui mcp-relay --id jira -- python jira_server.py

secrets (never on the command line):
  worker key   env GATEWAYTUI_WORKER_KEY or --key-file
  relay token  env GATEWAYTUI_MCP_RELAY_TOKEN or --token-file; when set, MCP clients must
               send it in the X-Relay-Token header (the gateway passes it on)
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `mcp-relay` command to the CLI's subparsers."""
    parser = sub.add_parser(
        "mcp-relay",
        help="make a local MCP server reachable through the gateway",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--gateway",
        default=os.environ.get("GATEWAYTUI_GATEWAY", "ws://127.0.0.1:8080"),
        help="gateway address, ws(s):// or http(s):// (env GATEWAYTUI_GATEWAY; "
        "default ws://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--id",
        required=True,
        help="client id: MCP clients call POST /mcp/<id> (letters, digits, . _ : @ -)",
    )
    parser.add_argument("--name", help="display name (default: the id)")
    parser.add_argument("--key-file", help="file holding the worker key")
    parser.add_argument("--token-file", help="file holding the token MCP clients must send")
    parser.add_argument("--url", help="the MCP server's Streamable HTTP endpoint, e.g. .../mcp")
    parser.add_argument(
        "--upstream-token-env",
        metavar="VAR",
        help="env var whose value is sent to the --url server as Authorization: Bearer",
    )
    parser.add_argument(
        "--protocol-version",
        default=None,
        help="MCP protocol version the relay initializes the server with (default 2025-11-25)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds in-flight calls get on stop"
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARG ...]",
        help="the MCP server to start, speaking MCP over stdio",
    )
    parser.set_defaults(func=cmd_mcp_relay)
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def _read_secret(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not value:
        raise CliError(f"the {what} file {path} is empty")
    return value


def settings_from_args(args: argparse.Namespace) -> Any:
    """Build MCPRelaySettings from the parsed flags and the environment."""
    from pydantic import ValidationError

    from gatewaytui.workers.mcp_relay import MCPRelaySettings, relay_settings_error

    command = list(args.command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    if command and args.url:
        raise CliError("give either a command (after --) or --url, not both")
    if not command and not args.url:
        raise CliError("give the MCP server: a command after -- (stdio) or --url (Streamable HTTP)")
    if command and args.upstream_token_env:
        raise CliError("--upstream-token-env applies to --url servers only")
    key = os.environ.get("GATEWAYTUI_WORKER_KEY") or None
    if args.key_file:
        key = _read_secret(args.key_file, "worker key")
    token = os.environ.get("GATEWAYTUI_MCP_RELAY_TOKEN") or None
    if args.token_file:
        token = _read_secret(args.token_file, "relay token")
    headers: dict[str, str] = {}
    if args.upstream_token_env:
        value = os.environ.get(args.upstream_token_env)
        if not value:
            raise CliError(f"--upstream-token-env: ${args.upstream_token_env} is not set")
        headers["Authorization"] = f"Bearer {value}"
    extra: dict[str, Any] = {}
    if args.protocol_version:
        extra["protocol_version"] = args.protocol_version
    try:
        return MCPRelaySettings(
            gateway_url=args.gateway,
            key=key,
            id=args.id,
            name=args.name,
            command=command or None,
            url=args.url,
            upstream_headers=headers,
            token=token,
            drain_timeout_s=args.drain_timeout,
            **extra,
        )
    except ValidationError as exc:
        raise CliError(f"invalid relay settings: {relay_settings_error(exc)}") from None


def cmd_mcp_relay(args: argparse.Namespace) -> int:
    from gatewaytui.workers.mcp_relay import run_mcp_relay

    settings = settings_from_args(args)
    return asyncio.run(run_mcp_relay(settings, install_signal_handlers=True))

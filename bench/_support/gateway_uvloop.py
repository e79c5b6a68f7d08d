"""`gatewaytui serve`, but on uvloop: the same parser, config, Gateway and server as
`gatewaytui.cli.main.cmd_serve`, only the event loop differs (cmd_serve calls
`asyncio.run(server.serve())`, which gives uvicorn the stock asyncio loop even though uvloop is
installed). Used by bench/overhead.py to measure the proposed change without editing src/.

    python bench/_support/gateway_uvloop.py --server-port 8080 [any other `gatewaytui serve` flag]
"""

from __future__ import annotations

import logging
import sys

import uvloop

from gatewaytui.cli.main import build_config, build_parser, setup_logging
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.server import make_server


def main() -> None:
    args = build_parser().parse_args(["--log-level", "warning", "serve", *sys.argv[1:]])
    setup_logging(args.log_level)
    gateway = Gateway(build_config(args))
    server = make_server(gateway, log_level=args.log_level)
    logging.getLogger("bench").info("gateway on uvloop")
    uvloop.run(server.serve())


if __name__ == "__main__":
    main()

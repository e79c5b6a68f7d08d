"""An asyncio loop in a background thread (servers the tests drive with blocking clients)."""

from __future__ import annotations

import asyncio
import contextlib


def run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """A thread's target: run `loop` until stopped, then cancel what is left and close it.

    A loop that is never closed leaks its self-pipe sockets; with `filterwarnings = error`
    their ResourceWarning fails whichever later test the garbage collector happens to run in.
    """
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=5))
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

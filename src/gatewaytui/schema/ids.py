"""The one rule for worker ids: at registration (RegisterFrame), in a worker's settings, and
in the operator routes (`/api/workers/{worker_id}/drain`), so an id that registers can
always be named in a URL (a `/` in it travels percent-encoded; the route takes the rest of
the path up to the action)."""

from __future__ import annotations

import re

WORKER_ID_PATTERN = r"^[A-Za-z0-9._:@/-]+$"
WORKER_ID_MAX_LENGTH = 128
WORKER_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._:@/-]+")
_WORKER_ID = re.compile(WORKER_ID_PATTERN)


def is_worker_id(value: str) -> bool:
    return 0 < len(value) <= WORKER_ID_MAX_LENGTH and bool(_WORKER_ID.match(value))

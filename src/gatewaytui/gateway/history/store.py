"""The ledger's SQLite file: raw records, per-minute rollups, retention and the queries.

Only stdlib `sqlite3`. One writer connection (the ledger thread) and short-lived reader
connections (WAL lets them read while it writes). Rollups are keyed by minute x model x key
x worker x backend x outcome and carry fixed latency / TTFT histogram buckets, so usage over
any window is a sum over at most a few rows per minute, never a scan of raw records.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gatewaytui.gateway.history.record import BUCKETS_MS, COL, COLUMNS, N_BUCKETS, bucket_of

SCHEMA_VERSION = 1
LAT = [f"l{i}" for i in range(N_BUCKETS)]
TTFT = [f"t{i}" for i in range(N_BUCKETS)]
_ROLLUP_KEY = ("minute", "model", "key", "worker", "backend", "outcome")
_ROLLUP_SUMS = (
    "requests", "errors", "tokens_in", "tokens_out", "embeddings", "dur_sum", "ttft_sum", "ttft_n",
)  # fmt: skip
_ROLLUP_VALUES = (*_ROLLUP_SUMS, *LAT, *TTFT)
_TEXT_SCAN_ROWS = 50_000  # a text search looks at most this many records per page
GROUPS = {"model": "model", "key": "key", "worker": "worker", "backend": "backend"}
_FILTERS = ("outcome", "model", "key", "worker")

_DDL = [
    f"""CREATE TABLE IF NOT EXISTS jobs (
        seq INTEGER PRIMARY KEY,
        {
        ", ".join(
            f"{c} {_t}"
            for c, _t in zip(
                COLUMNS,
                (
                    "TEXT NOT NULL",
                    "TEXT",
                    "TEXT",
                    "TEXT",
                    "TEXT",
                    "TEXT",
                    "TEXT",
                    "TEXT",
                    "REAL",
                    "REAL",
                    "REAL NOT NULL",
                    "REAL",
                    "REAL",
                    "REAL",
                    "INTEGER",
                    "INTEGER",
                    "INTEGER",
                    "TEXT",
                    "INTEGER",
                    "TEXT",
                    "INTEGER",
                    "INTEGER",
                ),
                strict=True,
            )
        )
    })""",
    "CREATE INDEX IF NOT EXISTS jobs_id ON jobs(id)",
    *(f"CREATE INDEX IF NOT EXISTS jobs_{c} ON jobs({c}, seq)" for c in _FILTERS),
    f"""CREATE TABLE IF NOT EXISTS rollup (
        minute INTEGER NOT NULL, model TEXT NOT NULL, key TEXT NOT NULL,
        worker TEXT NOT NULL, backend TEXT NOT NULL, outcome TEXT NOT NULL,
        {", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _ROLLUP_VALUES)},
        PRIMARY KEY (minute, model, key, worker, backend, outcome)
    ) WITHOUT ROWID""",
]
_DDL.append(_DDL[-1].replace("rollup (", "rollup_hour (", 1))  # the same, per hour
_DDL.append("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID")
_INSERT_JOB = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
_UPSERT_ROLLUP = (  # .format(table=rollup | rollup_hour)
    f"INSERT INTO {{table}} ({', '.join((*_ROLLUP_KEY, *_ROLLUP_VALUES))}) "
    f"VALUES ({', '.join('?' for _ in (*_ROLLUP_KEY, *_ROLLUP_VALUES))}) "
    f"ON CONFLICT ({', '.join(_ROLLUP_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in _ROLLUP_VALUES)
)


def connect(path: str, *, readonly: bool = False, timeout: float = 0.25) -> sqlite3.Connection:
    """A connection with the ledger's settings (WAL, relaxed fsync: losing the last second
    of history in a power cut is acceptable, a slow hot path is not)."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=timeout, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def _create_private(path: str) -> None:
    """Create the ledger file empty, owner-only, if it does not exist (SQLite takes an empty
    file as a new database); an existing file keeps the mode its operator gave it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_writer(path: str) -> sqlite3.Connection:
    """Open (creating if needed) the ledger file for writing; raises sqlite3.Error if the
    file is corrupt, read-only, locked or of a newer schema. A new file is created 0600
    (its -wal/-shm take the same mode): usage by key and client is the operator's alone."""
    _create_private(path)
    conn = connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch the journal to WAL (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this gateway's ({SCHEMA_VERSION})"
            )
        conn.execute("BEGIN IMMEDIATE")
        for statement in _DDL:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        _note_creation(conn)
        conn.execute("COMMIT")
        conn.execute("PRAGMA quick_check(1)").fetchone()
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        raise
    return conn


def _note_creation(conn: sqlite3.Connection) -> None:
    """Remember since when this file records (rates over a young ledger divide by its age,
    not by the whole window). A file from before `meta` existed: its oldest data."""
    oldest = [time.time()]
    first_job = conn.execute("SELECT requested_at FROM jobs ORDER BY seq LIMIT 1").fetchone()
    if first_job is not None and first_job[0] is not None:
        oldest.append(float(first_job[0]))
    first_minute = conn.execute("SELECT min(minute) FROM rollup").fetchone()[0]
    if first_minute is not None:
        oldest.append(float(first_minute) * 60)
    conn.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('created_at', ?)", (min(oldest),)
    )


def recording_since(conn: sqlite3.Connection) -> float | None:
    """Since when the file records (None: a file no writer of this version opened yet)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'created_at'").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else float(row[0])


def _rollup_rows(records: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Fold a batch into one row per rollup key (most batches touch a handful of keys)."""
    acc: dict[tuple[Any, ...], list[float]] = {}
    ended, dur, ttft = COL["ended_at"], COL["duration_ms"], COL["ttft_ms"]
    model, key, worker, backend, outcome = (
        COL["model"], COL["key"], COL["worker"], COL["backend"], COL["outcome"],
    )  # fmt: skip
    t_in, t_out, emb = COL["tokens_in"], COL["tokens_out"], COL["embeddings"]
    width = len(_ROLLUP_VALUES)
    for r in records:
        k = (
            int(r[ended] // 60),
            r[model] or "",
            r[key] or "",
            r[worker] or "",
            r[backend] or "",
            r[outcome],
        )
        row = acc.get(k)
        if row is None:
            row = acc[k] = [0] * width
        row[0] += 1
        row[1] += r[outcome] != "ok"
        row[2] += r[t_in] or 0
        row[3] += r[t_out] or 0
        row[4] += r[emb] or 0
        row[5] += r[dur] or 0
        row[8 + bucket_of(r[dur] or 0)] += 1
        if r[ttft] is not None:
            row[6] += r[ttft]
            row[7] += 1
            row[8 + N_BUCKETS + bucket_of(r[ttft])] += 1
    return [(*k, *(int(v) for v in row)) for k, row in acc.items()]


def _hour_rows(minutes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Minute rollup rows folded into hour rows (keyed by the hour's first minute)."""
    acc: dict[tuple[Any, ...], list[int]] = {}
    for row in minutes:
        key = (row[0] - row[0] % 60, *row[1:6])
        into = acc.get(key)
        if into is None:
            acc[key] = list(row[6:])
        else:
            for i, value in enumerate(row[6:]):
                into[i] += value
    return [(*k, *v) for k, v in acc.items()]


def write_batch(conn: sqlite3.Connection, records: Sequence[tuple[Any, ...]]) -> None:
    """Raw records and their rollups in one transaction (all or nothing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT_JOB, records)
        minutes = _rollup_rows(records)
        conn.executemany(_UPSERT_ROLLUP.format(table="rollup"), minutes)
        conn.executemany(_UPSERT_ROLLUP.format(table="rollup_hour"), _hour_rows(minutes))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes the live data takes (pages in use; freed pages are reused, not returned)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def apply_retention(
    conn: sqlite3.Connection, *, max_age_s: float, max_bytes: int, now: float | None = None
) -> int:
    """Delete records older than `max_age_s`, then the oldest records until the data fits in
    `max_bytes` (0: no limit). Rollups follow the age limit only (they are small). Returns
    the number of raw records deleted."""
    now = time.time() if now is None else now
    deleted = 0
    if max_age_s > 0:
        cutoff = now - max_age_s
        # Records are in end order, so the oldest have the lowest seq: find the first to keep
        # from the start (a short scan: older ones went on earlier passes; no index needed).
        keep = conn.execute(
            "SELECT seq FROM jobs WHERE ended_at >= ? ORDER BY seq LIMIT 1", (cutoff,)
        ).fetchone()
        if keep is None:
            deleted += conn.execute("DELETE FROM jobs").rowcount
        else:
            deleted += conn.execute("DELETE FROM jobs WHERE seq < ?", (keep[0],)).rowcount
        conn.execute("DELETE FROM rollup WHERE minute < ?", (int(cutoff // 60),))
        conn.execute("DELETE FROM rollup_hour WHERE minute < ?", (int(cutoff // 3600) * 60,))
    if max_bytes > 0:
        while used_bytes(conn) > max_bytes:
            low, high = conn.execute("SELECT min(seq), max(seq) FROM jobs").fetchone()
            if low is None:
                break
            step = max((high - low + 1) // 10, 1)  # the oldest tenth at a time
            deleted += conn.execute("DELETE FROM jobs WHERE seq < ?", (low + step,)).rowcount
    return deleted


# ---- queries (reader connections) ---------------------------------------------------------


def _job_dict(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(("seq", *COLUMNS), row, strict=True))
    out["stream"] = bool(out["stream"])
    return out


def list_jobs(
    conn: sqlite3.Connection,
    *,
    limit: int = 50,
    before: int | None = None,
    until: float | None = None,
    since: float | None = None,
    text: str | None = None,
    outcome: str | None = None,
    model: str | None = None,
    key: str | None = None,
    worker: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Ended jobs newest first, and the cursor of the next page (None at the end).

    Exact filters use their (column, seq) index. A text search scans at most
    `_TEXT_SCAN_ROWS` records per page, so it stays fast at millions of rows; the cursor
    then continues below what was scanned even if the page is short.
    """
    where: list[str] = []
    args: list[Any] = []
    filters = {"outcome": outcome, "model": model, "key": key, "worker": worker}
    for name in _FILTERS:
        value = filters[name]
        if value:
            where.append(f"{name} = ?")
            args.append(value)
    if before is not None:
        where.append("seq < ?")
        args.append(before)
    if until is not None:
        where.append("ended_at < ?")
        args.append(until)
    if since is not None:
        where.append("ended_at >= ?")
        args.append(since)
    floor: int | None = None
    if text:
        top = before
        if top is None:
            top = (conn.execute("SELECT max(seq) FROM jobs").fetchone()[0] or 0) + 1
        floor = max(top - _TEXT_SCAN_ROWS, 0)
        where.append("seq >= ?")
        args.append(floor)
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        fields = ("id", "model", "key", "worker", "backend", "client", "error")
        where.append("(" + " OR ".join(f"{f} LIKE ? ESCAPE '\\'" for f in fields) + ")")
        args.extend([like] * len(fields))
    sql = f"SELECT seq, {', '.join(COLUMNS)} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC LIMIT ?"
    args.append(limit + 1)
    rows = [_job_dict(r) for r in conn.execute(sql, args)]
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1]["seq"]
    if floor is not None and floor > 0:
        return rows, floor  # more records below the scanned window
    return rows, None


def get_job(conn: sqlite3.Connection, job_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT seq, {', '.join(COLUMNS)} FROM jobs WHERE id = ? ORDER BY seq DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    return None if row is None else _job_dict(row)


@dataclass
class UsageFilter:
    model: str | None = None
    key: str | None = None
    worker: str | None = None
    backend: str | None = None

    def sql(self) -> tuple[str, list[Any]]:
        parts, args = [], []
        for name in ("model", "key", "worker", "backend"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name} = ?")
                args.append(value)
        return "".join(f" AND {p}" for p in parts), args

    def params(self) -> dict[str, str]:
        """The filters as query parameters (for asking another replica the same)."""
        return {
            name: value
            for name in ("model", "key", "worker", "backend")
            if (value := getattr(self, name))
        }


def _tiers(start: float, end: float) -> list[tuple[str, int, int]]:
    """(table, first minute, minute after the last) covering [start, end): whole hours from
    the hour rollups, the ragged edges from the minute rollups."""
    m0, m1 = int(start // 60), _minute_end(end)
    h0, h1 = -(-m0 // 60) * 60, m1 // 60 * 60  # first and last whole-hour boundaries inside
    if h1 - h0 < 60:
        return [("rollup", m0, m1)]
    parts = [("rollup_hour", h0, h1)]
    if m0 < h0:
        parts.append(("rollup", m0, h0))
    if h1 < m1:
        parts.append(("rollup", h1, m1))
    return parts


def usage(
    conn: sqlite3.Connection,
    group: str,
    start: float,
    end: float,
    where: UsageFilter | None = None,
) -> list[dict[str, Any]]:
    """Per-group sums over [start, end) from the rollups, with histogram buckets."""
    column = GROUPS[group]
    extra, args = (where or UsageFilter()).sql()
    cols = ", ".join(_ROLLUP_VALUES)
    sums = ", ".join(f"sum({c})" for c in _ROLLUP_VALUES)
    parts, params = [], []
    for table, lo, hi in _tiers(start, end):
        parts.append(
            f"SELECT {column} AS g, {cols} FROM {table} WHERE minute >= ? AND minute < ?{extra}"
        )
        params += [lo, hi, *args]
    sql = f"SELECT g, {sums} FROM ({' UNION ALL '.join(parts)}) GROUP BY g"
    out = []
    for row in conn.execute(sql, params):
        values = dict(zip(_ROLLUP_VALUES, row[1:], strict=True))
        out.append(
            {
                "group": row[0],
                **{k: values[k] for k in _ROLLUP_SUMS},
                "latency_buckets": [values[c] for c in LAT],
                "ttft_buckets": [values[c] for c in TTFT],
            }
        )
    return out


def series(
    conn: sqlite3.Connection,
    start: float,
    end: float,
    where: UsageFilter | None = None,
    *,
    hourly: bool = False,
) -> list[dict[str, Any]]:
    """Per-minute (or, `hourly`, per-hour) sums over [start, end); quiet ones are absent."""
    extra, args = (where or UsageFilter()).sql()
    table = "rollup_hour" if hourly else "rollup"
    sql = (
        "SELECT minute, sum(requests), sum(errors), sum(tokens_in), sum(tokens_out), "
        f"sum(embeddings), sum(dur_sum), sum(ttft_sum), sum(ttft_n) FROM {table} "
        f"WHERE minute >= ? AND minute < ?{extra} GROUP BY minute ORDER BY minute"
    )
    if hourly:
        start = start // 3600 * 3600
    names = ("minute", "requests", "errors", "tokens_in", "tokens_out", "embeddings",
             "dur_sum", "ttft_sum", "ttft_n")  # fmt: skip
    return [
        dict(zip(names, row, strict=True))
        for row in conn.execute(sql, [int(start // 60), _minute_end(end), *args])
    ]


def _minute_end(end: float) -> int:
    """The first minute not in the window (the minute `end` falls in is included)."""
    return int(end // 60) + 1


def percentile(buckets: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) in ms from histogram counts, interpolated inside its bucket."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = BUCKETS_MS[i - 1] if i > 0 else 0.0
            high = BUCKETS_MS[i] if i < len(BUCKETS_MS) else BUCKETS_MS[-1] * 2
            return round(low + (high - low) * max(rank - seen, 0) / count, 3)
        seen += count
    return float(BUCKETS_MS[-1] * 2)


def iter_batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

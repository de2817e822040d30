"""Live state the service's replicas share: each user's history, the event ids already accepted, and the items added
while serving. SQLite (WAL, one file under data/) for one machine; Redis for several replicas.

Histories keep each item once, at the time it was first seen, as `training_splits` and the ranker do; users are
their pseudonyms. Writes are idempotent (a replayed event or item changes nothing), so a retried request or a
re-seed after a restart never counts an event twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (user TEXT NOT NULL, item TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (user, item)) WITHOUT ROWID;
-- A user's latest items straight from the index, without sorting all of a long history (a top user: 240 -> 1xx us).
CREATE INDEX IF NOT EXISTS history_by_time ON history (user, ts, item);
CREATE TABLE IF NOT EXISTS accepted (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, row TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class HistoryStore(Protocol):
    def history(self, user: str, limit: int) -> list[str]: ...
    def new_event_ids(self, event_ids: list[str]) -> set[str]: ...
    def add(self, events: Iterable[tuple[str, str, str, float]]) -> None: ...
    def seed(self, key: str, rows: Iterable[tuple[str, str, float]]) -> bool: ...
    def put_items(self, items: list[tuple[str, dict, np.ndarray]]) -> None: ...
    def items_since(self, seq: int) -> tuple[int, list[tuple[str, dict, np.ndarray]]]: ...
    def describe(self) -> str: ...


class SqliteStore:
    """One SQLite file in WAL mode; every write is one transaction, committed with synchronous=FULL before it returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def history(self, user: str, limit: int) -> list[str]:
        rows = self._connection().execute(
            "SELECT item FROM (SELECT item, ts FROM history WHERE user = ? ORDER BY ts DESC, item DESC LIMIT ?) ORDER BY ts, item",
            (user, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def new_event_ids(self, event_ids: list[str]) -> set[str]:
        db = self._connection()
        known = set()
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(r[0] for r in db.execute(f"SELECT event_id FROM accepted WHERE event_id IN ({marks})", chunk))
        return set(event_ids) - known

    def add(self, events: Iterable[tuple[str, str, str, float]]) -> None:
        """(event_id, user, item, ts) rows; item "" for an event that is no interaction (kept only as accepted)."""
        events = list(events)
        db = self._connection()
        with _transaction(db):
            db.executemany("INSERT OR IGNORE INTO accepted VALUES (?)", [(e[0],) for e in events])
            db.executemany("INSERT OR IGNORE INTO history VALUES (?, ?, ?)", [(e[1], e[2], e[3]) for e in events if e[2]])

    def seed(self, key: str, rows: Iterable[tuple[str, str, float]]) -> bool:
        """Load the trained histories once per `key` (the interactions file's hash); False if already loaded."""
        db = self._connection()
        with _transaction(db):
            if db.execute("SELECT 1 FROM meta WHERE key = ?", (f"seeded:{key}",)).fetchone():
                return False
            db.executemany("INSERT OR IGNORE INTO history VALUES (?, ?, ?)", rows)
            db.execute("INSERT INTO meta VALUES (?, ?)", (f"seeded:{key}", str(time.time())))
        return True

    def put_items(self, items: list[tuple[str, dict, np.ndarray]]) -> None:
        db = self._connection()
        with _transaction(db):
            db.executemany("INSERT INTO items (item_id, row, vector) VALUES (?, ?, ?)",
                           [(i, json.dumps(row), np.asarray(v, np.float32).tobytes()) for i, row, v in items])

    def items_since(self, seq: int) -> tuple[int, list[tuple[str, dict, np.ndarray]]]:
        rows = self._connection().execute("SELECT seq, item_id, row, vector FROM items WHERE seq > ? ORDER BY seq", (seq,)).fetchall()
        if not rows:
            return seq, []
        return rows[-1][0], [(i, json.loads(row), np.frombuffer(v, np.float32)) for _, i, row, v in rows]


class _transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, error, trace):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


class RedisStore:
    """Histories as sorted sets (member item, score first-seen time; ZADD NX keeps the first time), accepted event ids
    as a set, and added items as a stream-like list with a sequence counter, all under `prefix`."""

    def __init__(self, url: str, prefix: str = "rec:"):
        import redis

        self.url, self.prefix = url, prefix
        self.client = redis.Redis.from_url(url)
        self.client.ping()

    def describe(self) -> str:
        return f"redis:{self.url}"

    def history(self, user: str, limit: int) -> list[str]:
        return [m.decode() for m in self.client.zrange(self.prefix + "h:" + user, -limit, -1)]

    def new_event_ids(self, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        flags = self.client.smismember(self.prefix + "accepted", event_ids)
        return {e for e, known in zip(event_ids, flags) if not known}

    def add(self, events: Iterable[tuple[str, str, str, float]]) -> None:
        events = list(events)
        if not events:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self.prefix + "accepted", *[e[0] for e in events])
        for _, user, item, ts in events:
            if item:
                pipe.zadd(self.prefix + "h:" + user, {item: ts}, nx=True)
        pipe.execute()

    def seed(self, key: str, rows: Iterable[tuple[str, str, float]]) -> bool:
        if not self.client.set(self.prefix + "seeded:" + key, str(time.time()), nx=True):
            return False
        pipe = self.client.pipeline(transaction=False)
        for count, (user, item, ts) in enumerate(rows, start=1):
            pipe.zadd(self.prefix + "h:" + user, {item: ts}, nx=True)
            if count % 5000 == 0:
                pipe.execute()
        pipe.execute()
        return True

    def put_items(self, items: list[tuple[str, dict, np.ndarray]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for item_id, row, vector in items:
            pipe.rpush(self.prefix + "items", json.dumps({"item_id": item_id, "row": row, "vector": np.asarray(vector, np.float32).tolist()}))
        pipe.execute()

    def items_since(self, seq: int) -> tuple[int, list[tuple[str, dict, np.ndarray]]]:
        raw = self.client.lrange(self.prefix + "items", seq, -1)  # the list only grows: its length is the sequence
        parsed = [json.loads(r) for r in raw]
        return seq + len(raw), [(p["item_id"], p["row"], np.array(p["vector"], np.float32)) for p in parsed]


def open_store(url: str, data_dir: Path) -> HistoryStore:
    """`sqlite` (data/serving/live.sqlite), `sqlite:///PATH`, or `redis://HOST:PORT/DB`."""
    if url in ("", "sqlite"):
        return SqliteStore(Path(data_dir) / "serving" / "live.sqlite")
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url[len("sqlite:///") :]))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(f"store {url!r}: expected sqlite, sqlite:///PATH or redis://HOST:PORT/DB")

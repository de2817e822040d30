"""Accepted events and items into the raw logs: daily JSON Lines files under data/raw/events/ and data/raw/catalog/,
in the canonical schema, where the `new_raw_data` sensor sees a new data version and retrains.

A record is durable before the service acknowledges it: a batch is one `write` to a file opened with O_APPEND,
then `fsync` (and the folder's fsync when the file is new). Each process writes its own files
(`live-<day>-<replica>.jsonl`), so replicas and workers never interleave lines, and a restarted process starts a new
file instead of appending after a line a kill may have cut short. Such a line (never acknowledged) is read back by
the canonical reader as a malformed row and quarantined with its file and line number, not lost silently.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from pathlib import Path

import pandas as pd



class RawLog:
    """Daily files of `columns` records, the day taken from each record's `time_field`."""

    def __init__(self, folder: str | Path, columns: tuple[str, ...], time_field: str, prefix: str = "live"):
        self.folder = Path(folder)
        self.columns, self.time_field = columns, time_field
        self.folder.mkdir(parents=True, exist_ok=True)
        # Unique per process start: hostname (the pod), pid, and a random part for pid reuse after a restart.
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.prefix = prefix
        self._lock = threading.Lock()
        self._files: dict[str, int] = {}

    def path_for(self, day: str) -> Path:
        return self.folder / f"{self.prefix}-{day}-{self.replica}.jsonl"

    def append(self, records: list[dict]) -> None:
        """Write `records` (JSON-ready) to the file of the day each happened, durably."""
        by_day: dict[str, list[str]] = {}
        for record in records:
            day = pd.Timestamp(record[self.time_field]).strftime("%Y-%m-%d")
            by_day.setdefault(day, []).append(json.dumps({c: record.get(c) for c in self.columns}, ensure_ascii=False))
        with self._lock:
            for day, lines in by_day.items():
                fd = self._fd(day)
                data = ("\n".join(lines) + "\n").encode("utf-8")
                written = os.write(fd, data)
                if written != len(data):  # a full disk: say so rather than acknowledge half a batch
                    raise OSError(f"{self.path_for(day)}: wrote {written} of {len(data)} bytes")
                os.fsync(fd)

    def _fd(self, day: str) -> int:
        if day not in self._files:
            path = self.path_for(day)
            self._files[day] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            folder = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder)  # the new file's name is durable too
            finally:
                os.close(folder)
        return self._files[day]

    def close(self) -> None:
        with self._lock:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()

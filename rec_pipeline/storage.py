"""Files written so that a crash never leaves a half-written artifact: write beside, then rename."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in the target's folder; it replaces `path` only if the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; the artifact gets the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A fresh folder beside `path` to fill; it replaces `path` only if the block completes. A crash leaves the old
    folder (or, in the instant between two renames, none): never a mix of old and new files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.partial-*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
            os.replace(path, retired / path.name)
            os.replace(tmp, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path, memo: Path | None = None) -> str:
    """sha256 of a file, remembered in the JSON file `memo` by (path, size, mtime) so a large file is hashed once; of a
    table folder (its parts, rec_pipeline/engines/layout.py), the sha256 over each part's name and sha256."""
    path = Path(path)
    if path.is_dir():
        parts = sorted(p for p in path.rglob("*") if p.is_file() and not any(q.startswith(".") for q in p.relative_to(path).parts))
        return hashlib.sha256("".join(f"{p.relative_to(path).as_posix()}\t{file_sha256(p, memo)}\n" for p in parts).encode()).hexdigest()
    stat = path.stat()
    key = str(path.resolve())
    known = json.loads(memo.read_text()) if memo is not None and memo.exists() else {}
    entry = known.get(key, {})
    if (entry.get("size"), entry.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
        return entry["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if memo is not None:
        known[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
        with atomic_path(memo) as tmp:
            tmp.write_text(json.dumps(known, indent=1))
    return digest.hexdigest()


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def read_table(path: str | Path | Sequence[str | Path], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A table folder (or a Parquet file, or several folders: days of a partitioned table) as one frame, in path order,
    timestamps back in nanoseconds as the rest of the library has them."""
    import pyarrow.parquet as pq

    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    files = [f for p in paths for f in (sorted(q for q in p.rglob("*.parquet") if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts))
                                        if p.is_dir() else [p])]
    if not files and all(p.is_dir() for p in paths):
        raise FileNotFoundError(f"no Parquet part in {', '.join(map(str, paths))}")
    frame = pq.read_table(files, columns=list(columns) if columns is not None else None).to_pandas()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.as_unit("ns")
    return frame


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Where the data stages read and write, the same for both engines.

Raw event files fall into day partitions: a file belongs to the day its name carries (`events-2025-09-01.jsonl`,
`2025/09/01/...` does not count: the first `YYYY-MM-DD` in its path), or, with no date in its path, to a partition of
its own named after it. Within a partition, files are taken in path order; across partitions, in key order. That is the
order of the logs wherever it matters (which of two repeated event ids is the first, which of two events at one instant
came first).

Every table a data stage writes is a folder named like a Parquet file (`data/validated/events.parquet/`), holding one
part per raw file (`<day>/part-00000.parquet` for the partitioned events, `part-00000.parquet` for the catalog), so a
new day adds files and rewrites none. pandas (`pd.read_parquet`), pyarrow and Spark read such a folder as one table, in
path order. Parts are written by whichever process ran the stage's function, with one schema per table, timestamps in
microseconds (Spark reads no nanoseconds).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rec_pipeline.sources.files import data_files

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
UNPARTITIONED = ""  # the partition of a table that has none (the catalog)


def partition_of(name: str) -> str:
    """The day partition of a raw file named `name` (its path below the raw folder)."""
    for match in _DATE.finditer(name):
        try:
            return date(*map(int, match.groups())).isoformat()
        except ValueError:  # 2025-13-45: not a date
            continue
    return name.replace("/", "_")


@dataclass(frozen=True)
class RawFile:
    """One raw file as the stages see it: where it is, the name provenance gives it, its partition and its position
    within the partition (which names its parts)."""

    path: str
    name: str
    partition: str
    part: int

    @property
    def order(self) -> tuple[str, int]:
        return self.partition, self.part


def raw_files(path: str | Path, partitioned: bool = True) -> list[RawFile]:
    """The raw files at `path` (a file or a folder), in the logs' order, each with its partition and part number."""
    files = data_files(path)
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    named = sorted(((partition_of(str(f.relative_to(root))) if partitioned else UNPARTITIONED, str(f.relative_to(root)), f) for f in files))
    out, counts = [], {}
    for partition, name, file in named:
        part = counts.get(partition, 0)
        counts[partition] = part + 1
        out.append(RawFile(str(file), name, partition, part))
    return out


def partitions(files: Iterable[RawFile]) -> list[str]:
    return sorted({f.partition for f in files})


@dataclass(frozen=True)
class TableFolders:
    """A validated table's folders: valid rows, quarantined rows, and for the partitioned events the key index that
    lets a new day find repeats of its ids in earlier days without reading them: each file's keys with their place
    (`keys`, Parquet, what the Spark engine joins on), and each file's key hashes sorted (`hashes`, one .npy array a
    file, what the local engine searches: a new day binary-searches its hashes in each earlier day's array, memory-
    mapped, and reads the rows of a day only where one matched)."""

    valid: Path
    quarantine: Path
    keys: Path | None = None
    hashes: Path | None = None

    @classmethod
    def under(cls, folder: str | Path, table: str, key_index: bool) -> TableFolders:
        folder = Path(folder)
        index = (folder / f"{table}_keys.parquet", folder / f"{table}_key_hashes") if key_index else (None, None)
        return cls(folder / f"{table}.parquet", folder / f"{table}_quarantine.parquet", *index)

    def all(self) -> list[Path]:
        return [p for p in (self.valid, self.quarantine, self.keys, self.hashes) if p is not None]


def part_path(folder: Path, file: RawFile) -> Path:
    """The part of `folder` that holds what came of `file`."""
    name = f"part-{file.part:05d}.parquet"
    return folder / file.partition / name if file.partition else folder / name


def write_part(frame: pd.DataFrame, path: Path, schema: pa.Schema) -> Path:
    """`frame` as one part, in `schema` (timestamps cut to microseconds), written beside and renamed into place."""
    return write_arrow(arrow_table(frame, schema), path)


def arrow_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """`frame` in `schema` (timestamps cut to microseconds; columns it lacks are nulls)."""
    columns = {}
    for field in schema:
        values = frame[field.name] if field.name in frame.columns else pd.Series(None, index=frame.index, dtype=object)
        if frame.empty and pa.types.is_list(field.type):  # an empty frame's column may be float64: no list comes of it
            values = pd.Series([], index=frame.index, dtype=object)
        if pa.types.is_timestamp(field.type):
            values = pd.to_datetime(values, utc=True)
            values = values.dt.floor("us") if field.type.unit == "us" else values
        columns[field.name] = values
    return pa.Table.from_pandas(pd.DataFrame(columns, index=frame.index), schema=schema, preserve_index=False, safe=False)


def write_arrow(table: pa.Table, path: Path) -> Path:
    """`table` as one part, written beside and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        pq.write_table(table, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_hashes(hashes: np.ndarray, path: Path) -> Path:
    """A file's key hashes, sorted, as a .npy array (no pickle: `np.load(..., allow_pickle=False)` reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as handle:
            np.save(handle, np.sort(np.asarray(hashes, dtype=np.int64)), allow_pickle=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_table(frame: pd.DataFrame, folder: Path, schema: pa.Schema) -> Path:
    """`frame` as a table folder of one part, replacing the folder whole (the local engine's writes)."""
    staging = staging_dir(folder.parent)
    write_part(frame, staging / folder.name / "part-00000.parquet", schema)
    publish(staging, [folder], [UNPARTITIONED])
    return folder


def existing_partitions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def staging_dir(parent: Path) -> Path:
    """A fresh folder beside the tables for one run's parts; nothing reads it until `publish` moves them in."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))


def publish(staging: Path, targets: Sequence[Path], written: Sequence[str], keep: Sequence[str] | None = None) -> None:
    """Move a run's parts from `staging` into each target folder: for a partitioned table, each partition in
    `written` replaces its folder whole (and partitions not in `keep`, days whose raw files are gone, are removed);
    for an unpartitioned one (`written == [UNPARTITIONED]`), the folder is replaced whole. Each move is a rename, so
    readers see a partition's old parts or its new ones, never a mix."""
    for target in targets:
        staged = staging / target.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if list(written) == [UNPARTITIONED]:
            staged.mkdir(parents=True, exist_ok=True)
            _replace(staged, target)
            continue
        if target.exists() and not target.is_dir():  # a single file from before tables were folders
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        for partition in written:
            source = staged / partition
            source.mkdir(parents=True, exist_ok=True)  # a partition whose files wrote nothing to this table
            _replace(source, target / partition)
        if keep is not None:
            for gone in set(existing_partitions(target)) - set(keep):
                shutil.rmtree(target / gone)
    shutil.rmtree(staging, ignore_errors=True)


def _replace(source: Path, target: Path) -> None:
    if target.exists():
        retired = target.with_name(f".{target.name}.retired-{uuid.uuid4().hex}")
        target.replace(retired)
        source.replace(target)
        if retired.is_dir():
            shutil.rmtree(retired)
        else:
            retired.unlink()
    else:
        source.replace(target)


def key_hash(keys: pd.Series) -> np.ndarray:
    """A stable signed 64-bit hash of each key (blake2b; signed, as Spark has no unsigned integers), what the key
    index is searched by."""
    import hashlib

    return np.array([int.from_bytes(hashlib.blake2b(k.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True) for k in keys], dtype=np.int64)

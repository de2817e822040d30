"""Where a data source's bytes come from: the readable files at a path, their (gzip) decompression, CSV as strings.

Anything that makes a file unreadable as a whole (missing, an unsupported type, a damaged or truncated compressed
stream, broken CSV structure) is one `DataFormatError` naming the file.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pandas as pd

from rec_pipeline.schema import DataFormatError

SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")


def format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix.lstrip(".").replace("ndjson", "jsonl")
    return None


def data_files(path: str | Path) -> list[Path]:
    """The readable files at `path` (a file, or a folder read in name order; hidden files are skipped)."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(str(path), "no such file or folder")
    if path.is_file():
        if format_of(path) is None:
            raise DataFormatError(str(path), f"unsupported file type; expected one of {', '.join(SUFFIXES)} (optionally .gz)")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and format_of(p))
    if not files:
        raise DataFormatError(str(path), f"folder holds no {', '.join(SUFFIXES)} files")
    return files


def file_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it ends in .gz; a damaged or truncated stream is an error naming the file."""
    data = path.read_bytes()
    if not path.name.lower().endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; a truncated stream an EOFError
        raise DataFormatError(str(path), f"cannot be decompressed (damaged or truncated gzip): {err}") from None


def read_csv_strings(path: Path) -> pd.DataFrame:
    """Every field as a string ("" where empty), or a `DataFormatError` naming the file and what is wrong."""
    data = file_bytes(path)
    try:
        return pd.read_csv(
            io.BytesIO(data),
            dtype=str,
            keep_default_na=False,
            # utf-8-sig: a spreadsheet export may start with a byte-order mark, which would rename the first column.
            encoding="utf-8-sig",
            # Undecodable bytes survive as surrogates, so the invalid_utf8 rule can name the field holding them.
            encoding_errors="surrogateescape",
        )
    except pd.errors.EmptyDataError:
        raise DataFormatError(str(path), "file is empty (no header row)") from None
    except pd.errors.ParserError as err:
        raise DataFormatError(str(path), f"broken CSV structure: {err}") from None

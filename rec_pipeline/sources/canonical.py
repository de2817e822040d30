"""Readers for the canonical format: JSON Lines, CSV and Parquet files (optionally gzipped), or folders of them.

Values come back as read; validation coerces them. Problems that make a whole file unreadable (missing, empty,
missing columns, broken CSV structure) raise `DataFormatError` naming the file, row and field. A JSON line that
cannot be parsed does not stop the read: it becomes a row flagged by the `malformed_record` rule, so it is
quarantined with its line number and the parser's message instead of being lost.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from rec_pipeline.schema import (
    CATALOG_COLUMNS,
    EVENT_COLUMNS,
    REQUIRED_CATALOG_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    DataFormatError,
)
from rec_pipeline.sources.files import data_files, file_bytes, format_of, read_csv_strings
from rec_pipeline.sources.table import SourceTable
from rec_pipeline.validation import Rule, failing

MALFORMED = "malformed"  # column holding why a record could not be parsed (None when it could)


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict] = []
    for number, line in enumerate(file_bytes(path).split(b"\n"), start=1):
        if not line.strip():
            continue
        # Undecodable bytes survive as surrogates, so the invalid_utf8 rule can name the field that holds them.
        text = line.decode("utf-8", errors="surrogateescape")
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            records.append({"source_row": number, MALFORMED: f"line is not valid JSON: {err.msg} at column {err.colno}"})
            continue
        except (ValueError, RecursionError) as err:  # an integer of over 4,300 digits; nesting deeper than the parser goes
            records.append({"source_row": number, MALFORMED: f"line cannot be parsed: {str(err)[:120]}"})
            continue
        if not isinstance(record, dict):
            records.append({"source_row": number, MALFORMED: f"line is a JSON {type(record).__name__}, not an object"})
            continue
        record.pop(MALFORMED, None)
        record["source_row"] = number
        records.append(record)
    return pd.DataFrame.from_records(records)


def _read_csv(path: Path) -> pd.DataFrame:
    frame = read_csv_strings(path).astype(object)
    frame = frame.where(frame != "", None)
    frame["source_row"] = range(1, len(frame) + 1)
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    data = file_bytes(path)
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise DataFormatError(str(path), f"not a readable Parquet file: {err}") from None
    frame["source_row"] = range(1, len(frame) + 1)
    return frame


_READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}


def malformed_rule() -> Rule:
    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        return failing(raw[MALFORMED].notna(), raw[MALFORMED].astype(object))

    return Rule("malformed_record", "every record can be parsed", find)


def read_file(file: Path, name: str, columns: Sequence[str], required: Sequence[str]) -> pd.DataFrame:
    """One file's rows as read, with provenance (`source_file` is `name`, `source_row` the record's line or row), the
    canonical `columns` (absent ones all null, every value as read) and `MALFORMED`; an unreadable file is a
    `DataFormatError` naming it. The engines call this once per raw file."""
    if file.stat().st_size == 0:
        raise DataFormatError(name, "file is empty (0 bytes)")
    frame = _READERS[format_of(file)](file)
    if frame.empty:
        raise DataFormatError(name, "file has no data rows")
    parsed = frame[MALFORMED].isna() if MALFORMED in frame.columns else pd.Series(True, index=frame.index)
    present = [c for c in frame.columns if frame.loc[parsed, c].notna().any()] if format_of(file) == "jsonl" else list(frame.columns)
    missing = [c for c in required if c not in present]
    if missing:
        where = "no record has" if format_of(file) == "jsonl" else "missing column(s)"
        raise DataFormatError(
            name,
            f"{where} {', '.join(repr(c) for c in missing)}; found: {', '.join(c for c in frame.columns if c != 'source_row') or 'nothing'}",
            row=1 if format_of(file) != "jsonl" else None,
            field=missing[0],
        )
    frame["source_file"] = name
    # As object columns: a column that is empty in one file must not decide the type of a table of several.
    frame = frame.astype(object).astype({"source_row": "int64"})
    for col in (*columns, MALFORMED):
        if col not in frame.columns:
            frame[col] = None
    return frame[[*columns, "source_file", "source_row", MALFORMED]]


def source_table(frames: Sequence[pd.DataFrame], files: Sequence[str]) -> SourceTable:
    """The rows of several `read_file` frames as one `SourceTable`, with the canonical format's own rule."""
    table = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0].reset_index(drop=True)
    return SourceTable(
        frame=table,
        files=list(files),
        rules=[malformed_rule()],
        stats={"files": len(files), "rows_read": len(table), "malformed_records": int(table[MALFORMED].notna().sum())},
    )


def _read_files(path: str | Path, columns: Sequence[str], required: Sequence[str]) -> SourceTable:
    files = data_files(path)
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    names = [str(f.relative_to(root)) for f in files]
    return source_table([read_file(f, name, columns, required) for f, name in zip(files, names)], names)


def read_events(path: str | Path) -> SourceTable:
    """Canonical events from a file or a folder of files."""
    return _read_files(path, EVENT_COLUMNS, REQUIRED_EVENT_COLUMNS)


def read_catalog(path: str | Path) -> SourceTable:
    """The canonical item catalog from a file or a folder of files."""
    return _read_files(path, CATALOG_COLUMNS, REQUIRED_CATALOG_COLUMNS)

"""The data formats a source can be in, and the one entry point that reads a table of any of them."""

from __future__ import annotations

from pathlib import Path

from rec_pipeline.schema import FORMATS
from rec_pipeline.sources.canonical import malformed_rule, read_catalog, read_events
from rec_pipeline.sources.online_retail import CATALOG_RULES, EVENT_RULES, load_online_retail
from rec_pipeline.sources.table import SourceTable
from rec_pipeline.validation import Rule

TABLES = ("events", "catalog")


def read_source(table: str, path: str | Path, format: str = "canonical", cache_dir: str | Path | None = None) -> SourceTable:
    """`table` ("events" or "catalog") of a data source in one of `FORMATS`.

    The Online Retail file holds both tables; with `cache_dir`, its parse is kept there (by the file's sha256), so a
    run's four readers of it parse it once.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown data format {format!r}; expected one of {', '.join(FORMATS)}")
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected 'events' or 'catalog'")
    if format == "online_retail":
        events, catalog = load_online_retail(path, cache_dir)
        return events if table == "events" else catalog
    return read_events(path) if table == "events" else read_catalog(path)


def source_rules(format: str, table: str) -> list[Rule]:
    """The rules a source of `format` adds to `table`'s, the ones its readers attach to what they read."""
    if format == "online_retail":
        return list(EVENT_RULES if table == "events" else CATALOG_RULES)
    return [malformed_rule()]

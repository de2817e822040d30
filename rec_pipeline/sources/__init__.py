"""Data sources: the canonical format (JSON Lines, CSV, Parquet) and the UCI Online Retail adapter, each handing
validation a `SourceTable` of rows as read; `read_source` reads a table of either."""

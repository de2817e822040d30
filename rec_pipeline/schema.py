"""The canonical schema every data source is mapped to, and the error raised for unreadable input."""

from __future__ import annotations

# The formats a data source can be in (rec_pipeline.sources reads each).
FORMATS = ("canonical", "online_retail")

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "search")

EVENT_COLUMNS = (
    "event_id",
    "ts",
    "user_id",
    "session_id",
    "event_type",
    "item_id",
    "query",
    "price",
    "quantity",
)
CATALOG_COLUMNS = ("item_id", "title", "description", "category", "brand", "price", "first_seen")

# Where each row came from, so a quarantined or suspicious row can be traced back to its file.
PROVENANCE_COLUMNS = ("source_file", "source_row")

# Columns a file must have; the others may be absent and are then all null.
REQUIRED_EVENT_COLUMNS = ("event_id", "ts", "user_id", "session_id", "event_type")
REQUIRED_CATALOG_COLUMNS = ("item_id", "title")


class DataFormatError(ValueError):
    """Input that cannot be read at all. Names the file, and the row and field where known."""

    def __init__(self, file: str, message: str, row: int | None = None, field: str | None = None):
        self.file = str(file)
        self.row = row
        self.field = field
        self.detail = message
        where = [self.file]
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}")

"""The UCI "Online Retail" invoice lines as purchase events and a product catalog.

The file (`InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country`, one line per
invoice line, see the data's SOURCE.md) mixes real purchases with cancellations, stock adjustments, warehouse
notes, postage and fee lines. Every line becomes one canonical purchase event; the source's own rules flag the
lines that are not plain purchases, so validation quarantines them with a reason instead of the loader dropping
them. The catalog holds one item per upper-cased StockCode, built from the lines that name it.

InvoiceDate is UK wall-clock time (the retailer is UK based) and is converted to UTC. The original fields are
kept in `src_*` columns so the rules, and anyone reading the quarantine, see the values as written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS, PROVENANCE_COLUMNS, DataFormatError
from rec_pipeline.sources.files import read_csv_strings
from rec_pipeline.sources.table import SourceTable
from rec_pipeline.storage import atomic_path, file_sha256, write_parquet
from rec_pipeline.validation import Rule, failing, per_distinct

# The file's columns and the names they keep beside the canonical ones.
SOURCE_COLUMNS = {
    "InvoiceNo": "src_invoice_no",
    "StockCode": "src_stock_code",
    "Description": "src_description",
    "Quantity": "src_quantity",
    "InvoiceDate": "src_invoice_date",
    "UnitPrice": "src_unit_price",
    "CustomerID": "src_customer_id",
    "Country": "src_country",
}

LOCAL_TIMEZONE = "Europe/London"
INVOICE_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Product codes are five digits, optionally followed by letters (85123A); POST, DOT, M, BANK CHARGES and
# gift_0001_20 are postage, fees and vouchers.
PRODUCT_CODE = r"^\d{5}"


# ---------------------------------------------------------------------------------------------------------------
# Loading


def shared_copy(project_root: str | Path) -> Path:
    """Where the project's machines keep the file: `../shared/data/online_retail/` beside the checkout."""
    return Path(project_root).resolve().parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"


def load_online_retail(path: str | Path, cache_dir: str | Path | None = None) -> tuple[SourceTable, SourceTable]:
    """Events (one per invoice line) and catalog (one per upper-cased StockCode) from a `.csv` or `.csv.gz` file.

    With `cache_dir`, the two tables are kept there as Parquet under the file's sha256, so the run's readers (the raw
    assets and both validations) parse the 540k lines once: 4 parses of 3.7-4.0 s became 1 parse and 3 reads of 0.9-1.0 s
    (file hash included), and the four assets of a run on it took 30.5 s instead of 34.2 s.
    """
    path = Path(path)
    if cache_dir is None:
        return _parse(path)
    if not path.is_file():
        raise DataFormatError(str(path), "no such file")
    stem = Path(cache_dir) / f"online_retail-{file_sha256(path)[:16]}"
    files = {"events": stem.with_name(stem.name + "-events.parquet"), "catalog": stem.with_name(stem.name + "-catalog.parquet")}
    stats_file = stem.with_name(stem.name + "-stats.json")
    if all(f.exists() for f in files.values()) and stats_file.exists():
        stats = json.loads(stats_file.read_text())
        events, catalog = (pd.read_parquet(files[t]).astype({"source_row": "int64"}) for t in ("events", "catalog"))
        return (
            SourceTable(events, [str(path)], EVENT_RULES, stats["events"]),
            SourceTable(catalog, [str(path)], CATALOG_RULES, stats["catalog"]),
        )
    events, catalog = _parse(path)
    write_parquet(events.frame, files["events"])
    write_parquet(catalog.frame, files["catalog"])
    with atomic_path(stats_file) as tmp:
        tmp.write_text(json.dumps({"events": events.stats, "catalog": catalog.stats}))
    return events, catalog


def _parse(path: Path) -> tuple[SourceTable, SourceTable]:
    lines = _read_lines(path)
    utc_times = _local_to_utc(lines["InvoiceDate"])
    events = SourceTable(
        frame=_events_frame(lines, utc_times, path.name),
        files=[str(path)],
        rules=EVENT_RULES,
        stats=_event_stats(lines),
    )
    catalog_frame = _catalog_frame(lines, utc_times, path.name)
    catalog = SourceTable(
        frame=catalog_frame,
        files=[str(path)],
        rules=CATALOG_RULES,
        stats={
            "stock_codes": len(catalog_frame),
            "codes_without_usable_title": int((catalog_frame["title"] == "").sum()),
        },
    )
    return events, catalog


def _read_lines(path: Path) -> pd.DataFrame:
    """The file's lines as strings ("" where empty), with their 1-based data row number in `source_row`."""
    if not path.is_file():
        raise DataFormatError(str(path), "no such file")
    if path.stat().st_size == 0:
        raise DataFormatError(str(path), "file is empty (0 bytes)")
    lines = read_csv_strings(path)

    missing = [name for name in SOURCE_COLUMNS if name not in lines.columns]
    if missing:
        raise DataFormatError(
            str(path),
            f"missing column(s) {', '.join(repr(name) for name in missing)}; found: {', '.join(lines.columns)}",
            row=1,
            field=missing[0],
        )
    if lines.empty:
        raise DataFormatError(str(path), "file has no data rows")
    # A line with too few fields is padded with NaN; treat those fields as empty, like the file's own blanks.
    lines = lines[list(SOURCE_COLUMNS)].fillna("")
    lines["source_row"] = np.arange(1, len(lines) + 1)
    return lines


def _local_to_utc(invoice_dates: pd.Series) -> pd.Series:
    """InvoiceDate (UK wall-clock time) as UTC timestamps; NaT where not in the file's date format.

    On the night the clocks go back, a time between 01:00 and 02:00 occurs twice: it is read as the first (BST)
    one. On the night they go forward, a time between 01:00 and 02:00 does not exist: it is read as GMT, which is
    what a clock not yet changed shows.
    """
    codes, distinct = pd.factorize(invoice_dates, use_na_sentinel=False)
    local = pd.DatetimeIndex(pd.to_datetime(pd.Series(distinct), format=INVOICE_DATE_FORMAT, errors="coerce"))
    utc = local.tz_localize(
        LOCAL_TIMEZONE, ambiguous=np.ones(len(local), dtype=bool), nonexistent=pd.Timedelta(hours=1)
    ).tz_convert("UTC")
    return pd.Series(utc.take(codes), index=invoice_dates.index)


def _as_utc_text(utc_times: pd.Series, unread: pd.Series | None = None) -> pd.Series:
    """ISO 8601 UTC text; where there is no time, the value from `unread` (or None)."""
    formatted = per_distinct(utc_times, lambda times: times.dt.strftime(UTC_FORMAT).astype(object))
    return formatted.where(utc_times.notna(), unread)


def _events_frame(lines: pd.DataFrame, utc_times: pd.Series, file_name: str) -> pd.DataFrame:
    events = pd.DataFrame(
        {
            "event_id": lines["InvoiceNo"] + ":" + lines["source_row"].astype(str),
            # A date that could not be read is passed on as written, so the canonical ts rules report it.
            "ts": _as_utc_text(utc_times, unread=lines["InvoiceDate"]),
            "user_id": per_distinct(lines["CustomerID"], _customer_ids),
            "session_id": lines["InvoiceNo"],
            "event_type": "purchase",
            "item_id": _item_ids(lines["StockCode"]),
            "query": None,
            "price": lines["UnitPrice"],
            "quantity": lines["Quantity"],
            "source_file": file_name,
            "source_row": lines["source_row"],
        }
    )
    for name, kept_as in SOURCE_COLUMNS.items():
        events[kept_as] = lines[name]
    return events[[*EVENT_COLUMNS, *PROVENANCE_COLUMNS, *SOURCE_COLUMNS.values()]]


def _customer_ids(customer_ids: pd.Series) -> pd.Series:
    """CustomerID as an identifier: the file writes them as floats ("17850.0" -> "17850"); empty -> None."""
    cleaned = customer_ids.str.strip().str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    return cleaned.where(cleaned != "", None)


def _item_ids(stock_codes: pd.Series) -> pd.Series:
    """Upper-cased StockCode: `85123a` and `85123A` are the same product."""
    return per_distinct(stock_codes, lambda codes: codes.str.strip().str.upper())


def _numbers(values: pd.Series) -> pd.Series:
    return per_distinct(values, lambda distinct: pd.to_numeric(distinct, errors="coerce").astype("float64"))


def _catalog_frame(lines: pd.DataFrame, utc_times: pd.Series, file_name: str) -> pd.DataFrame:
    item_id = _item_ids(lines["StockCode"])
    named = item_id != ""
    quantity = _numbers(lines["Quantity"])
    price = _numbers(lines["UnitPrice"])
    per_line = pd.DataFrame(
        {
            "item_id": item_id,
            "ts": utc_times,
            "source_row": lines["source_row"],
            # Only lines that were really sold say what the item costs.
            "sale_price": price.where((price > 0) & (quantity > 0)),
        }
    )[named]
    items = per_line.groupby("item_id", sort=False).agg(
        source_row=("source_row", "min"), first_seen=("ts", "min"), price=("sale_price", "median")
    )
    items = items.join(_titles(lines[named], item_id[named], utc_times[named])).sort_values("source_row")
    items["title"] = items["title"].fillna("")
    items["category"] = _head_nouns(items["title"])
    items["first_seen"] = _as_utc_text(items["first_seen"])
    items["description"] = ""
    items["brand"] = None
    items["source_file"] = file_name
    return items.reset_index()[[*CATALOG_COLUMNS, *PROVENANCE_COLUMNS]]


def catalog_as_of(events: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """The catalog as it was known before `cut`, from the raw event rows of `load_online_retail` (one per line).

    The file has no listing dates: an item exists from its first line. Titles, prices and categories of the items
    sold before the cut come from the lines before it only; an item first seen at or after the cut (cold there) takes
    its first line's, as a shop knows a new item from its listing. The catalog `load_online_retail` returns is the
    catalog as of the file's end.
    """
    utc = pd.to_datetime(events["ts"], format=UTC_FORMAT, utc=True, errors="coerce")
    lines = events[[*SOURCE_COLUMNS.values(), "source_row"]].rename(columns={v: k for k, v in SOURCE_COLUMNS.items()})
    known = utc.notna()
    before = known & (utc < cut)
    item_id = _item_ids(lines["StockCode"])
    later = known & ~before & ~item_id.isin(set(item_id[before]))
    first_lines = pd.DataFrame({"item_id": item_id, "ts": utc, "row": lines["source_row"]})[later]
    first = first_lines.sort_values(["ts", "row"], kind="stable").drop_duplicates("item_id").index
    chosen = before | lines.index.isin(first)
    return _catalog_frame(lines[chosen], utc[chosen], str(events["source_file"].iloc[0]) if len(events) else "")


def _titles(lines: pd.DataFrame, item_id: pd.Series, utc_times: pd.Series) -> pd.Series:
    """Per item, its most frequent product-name description (ties: the one used most recently).

    Warehouse notes ("damaged", all lowercase) and "?" notes ("?", "POSSIBLE DAMAGES OR LOST?") are not names.
    Descriptions differing only in spacing count as one.
    """
    description = per_distinct(
        lines["Description"], lambda text: text.str.strip().str.replace(r"\s+", " ", regex=True)
    )
    usable = per_distinct(
        description, lambda text: text.str.contains(r"[A-Z]") & ~text.str.contains("?", regex=False)
    )
    candidates = pd.DataFrame(
        {"item_id": item_id, "title": description, "ts": utc_times, "source_row": lines["source_row"]}
    )[usable]
    counted = candidates.groupby(["item_id", "title"], sort=False).agg(
        uses=("source_row", "size"), last_ts=("ts", "max"), last_row=("source_row", "max")
    )
    best = counted.sort_values(["uses", "last_ts", "last_row"], ascending=False, na_position="last").reset_index()
    return best.drop_duplicates("item_id").set_index("item_id")["title"]


def _head_nouns(titles: pd.Series) -> pd.Series:
    """A crude category: the title's last word ("WHITE HANGING HEART T-LIGHT HOLDER" -> "HOLDER"), or None."""
    last_word = titles.str.extract(r"([A-Za-z][A-Za-z'\-]*)[^A-Za-z]*$", expand=False).str.upper()
    return last_word.astype(object).where(last_word.notna(), None)


def _event_stats(lines: pd.DataFrame) -> dict[str, int]:
    """How often the normalisations apply, measured on the values as written (the definitions SOURCE.md uses)."""
    stock_code = lines["StockCode"]
    description = lines["Description"]
    lowercase_code = per_distinct(stock_code, lambda codes: codes.str.contains(r"[a-z]"))
    padded = per_distinct(description, lambda text: text != text.str.strip())
    double_space = per_distinct(description, lambda text: text.str.contains("  ", regex=False))
    described = lines.loc[description != "", ["StockCode", "Description"]].drop_duplicates()
    return {
        "rows_read": len(lines),
        "lowercase_stock_code_rows": int(lowercase_code.sum()),
        "lowercase_stock_codes": int(stock_code[lowercase_code].nunique()),
        "trimmed_whitespace_rows": int(padded.sum()),
        "double_space_rows": int(double_space.sum()),
        "codes_with_several_descriptions": int((described["StockCode"].value_counts() > 1).sum()),
        "descriptions_with_several_codes": int((described["Description"].value_counts() > 1).sum()),
    }


# ---------------------------------------------------------------------------------------------------------------
# The source's rules. They read the `src_*` columns (values as written) and, where the canonical reading is
# what matters (customer, item, time), the typed columns.


def _quoted(values: pd.Series) -> pd.Series:
    return "'" + values.astype(str) + "'"


def _quantity(raw: pd.DataFrame) -> pd.Series:
    return _numbers(raw["src_quantity"])


def _is_cancellation(raw: pd.DataFrame) -> pd.Series:
    return per_distinct(raw["src_invoice_no"], lambda invoices: invoices.str.strip().str.startswith("C"))


def _exact_duplicate(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    original = list(SOURCE_COLUMNS.values())
    group = raw.groupby(original, sort=False, dropna=False).ngroup()
    repeat = group.duplicated()
    first_row = raw["source_row"].groupby(group).transform("first")[repeat]
    reason = "repeats row " + first_row.astype(str) + f" exactly (all {len(original)} fields equal)"
    return failing(repeat, reason.reindex(raw.index))


def _cancellation(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    def judge(invoices: pd.Series) -> pd.Series:
        cancellation = invoices.str.strip().str.startswith("C")
        return failing(cancellation, "InvoiceNo " + _quoted(invoices) + " is a cancellation")

    return per_distinct(raw["src_invoice_no"], judge)


def _stock_adjustment(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    adjustment = (_quantity(raw) < 0) & ~_is_cancellation(raw)
    flagged = raw.loc[adjustment]
    reason = (
        "Quantity " + flagged["src_quantity"] + " on invoice " + _quoted(flagged["src_invoice_no"])
        + " (not a cancellation) is a stock adjustment"
    )
    return failing(adjustment, reason.reindex(raw.index))


def _missing_description(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    def judge(descriptions: pd.Series) -> pd.Series:
        return failing(descriptions.str.strip() == "", "Description is empty")

    return per_distinct(raw["src_description"], judge)


def _warehouse_note(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    def judge(descriptions: pd.Series) -> pd.Series:
        note = descriptions.str.contains(r"[a-z]") & ~descriptions.str.contains(r"[A-Z]")
        reason = "Description " + _quoted(descriptions) + " is a lowercase warehouse note, not a product name"
        return failing(note, reason)

    return per_distinct(raw["src_description"], judge)


def _non_product_code(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    return per_distinct(raw["src_stock_code"], _not_a_product)


def _not_a_product(stock_codes: pd.Series) -> pd.Series:
    reason = "StockCode " + _quoted(stock_codes) + " is not a product (product codes start with 5 digits)"
    return failing(~stock_codes.str.strip().str.contains(PRODUCT_CODE), reason)


def _zero_price(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    def judge(prices: pd.Series) -> pd.Series:
        return failing(pd.to_numeric(prices, errors="coerce") == 0, "UnitPrice " + _quoted(prices) + " is zero")

    return per_distinct(raw["src_unit_price"], judge)


def _reversed_by_cancellation(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    """Purchases the same customer cancelled later, same item, exact quantity (e.g. 80,995 on 581483 by C581484)."""
    quantity = _quantity(raw)
    cancelled = _is_cancellation(raw)
    lines = pd.DataFrame(
        {
            "user_id": typed["user_id"],
            "item_id": typed["item_id"],
            "quantity": quantity.abs(),
            "ts": typed["ts"],
            "invoice": raw["src_invoice_no"],
            "source_row": raw["source_row"],
        }
    )
    # Lines without a customer cannot be matched: two anonymous lines need not be the same buyer.
    known = lines["user_id"].notna() & lines["item_id"].notna() & lines["ts"].notna()
    purchases = lines[known & ~cancelled & (quantity > 0)]
    cancellations = lines[known & cancelled & (quantity < 0)]
    pairs = purchases.rename_axis("line").reset_index().merge(
        cancellations, on=["user_id", "item_id", "quantity"], suffixes=("", "_cancel")
    )
    # One cancellation line reverses one purchase line: in file (time) order, each cancellation takes the most
    # recent earlier purchase that no earlier cancellation took.
    pairs = pairs[pairs["ts_cancel"] > pairs["ts"]].sort_values(["source_row_cancel", "ts", "source_row"], ascending=[True, False, False])
    taken_lines, used_cancellations, matched = set(), set(), []
    for position, (line, cancellation) in enumerate(zip(pairs["line"], pairs["source_row_cancel"])):
        if line not in taken_lines and cancellation not in used_cancellations:
            taken_lines.add(line)
            used_cancellations.add(cancellation)
            matched.append(position)
    pairs = pairs.iloc[matched]
    reason = pd.Series(
        (
            "Quantity " + raw.loc[pairs["line"], "src_quantity"].to_numpy()
            + " was cancelled later by the same customer on invoice " + _quoted(pairs["invoice_cancel"]).to_numpy()
            + " (row " + pairs["source_row_cancel"].astype(str).to_numpy() + ")"
        ),
        index=pairs["line"].to_numpy(),
        dtype=object,
    ).reindex(raw.index)
    return failing(reason.notna(), reason)


def _catalog_non_product_code(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
    return _not_a_product(raw["item_id"].fillna(""))


# Each description says what a row that passes looks like, as the canonical rules' descriptions do.
NOT_A_PRODUCT = "(not postage, fees, discounts or vouchers)"
EVENT_RULES = [
    Rule("exact_duplicate", "the line repeats no earlier line in all 8 fields (the first is kept)", _exact_duplicate),
    Rule("cancellation", "InvoiceNo does not start with 'C' (a cancellation is not a purchase)", _cancellation),
    Rule("stock_adjustment", "Quantity is negative only on a cancellation (else: stock adjustment)", _stock_adjustment),
    Rule("missing_description", "Description names the product", _missing_description),
    Rule("warehouse_note", "Description is not an all-lowercase warehouse note ('damaged', 'check')", _warehouse_note),
    Rule("non_product_code", f"StockCode starts with 5 digits {NOT_A_PRODUCT}", _non_product_code),
    Rule("zero_price", "UnitPrice is not zero", _zero_price),
    Rule(
        "reversed_by_cancellation",
        "the same customer did not cancel this item in this exact quantity later",
        _reversed_by_cancellation,
    ),
]

CATALOG_RULES = [
    Rule("non_product_code", f"item_id starts with 5 digits {NOT_A_PRODUCT}", _catalog_non_product_code),
]

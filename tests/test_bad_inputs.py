"""The bad-input corpus: each file gets a clear error naming file, row and field, or a quarantine with the reason."""

import json
from pathlib import Path

import pandas as pd
import pytest

from rec_pipeline.sources.canonical import read_catalog, read_events
from rec_pipeline.schema import DataFormatError
from rec_pipeline.validation import ValidationResult, ValidationSettings, validate_catalog, validate_events

from tests import bad_input_cases as cases
from tests.bad_input_cases import CATALOG_IDS, CORPUS, write_jsonl

SETTINGS = ValidationSettings(now=pd.Timestamp("2026-01-01", tz="UTC"))


def validate_file(path: Path) -> ValidationResult:
    rows = read_events(path)
    result = validate_events(rows.frame, CATALOG_IDS, SETTINGS, rows.rules)
    assert result.rows_in == result.rows_valid + result.rows_quarantined == len(rows.frame)
    return result


def quarantined(result: ValidationResult) -> list[tuple[int, str, str]]:
    return [(row.source_row, row.rule, row.reason) for row in result.quarantine.itertuples()]


def test_malformed_json_lines_are_quarantined_with_line_and_parser_message():
    result = validate_file(CORPUS / "events_malformed.jsonl")
    assert list(result.valid["event_id"]) == ["e1", "e4"]
    rows = quarantined(result)
    assert [(r[0], r[1]) for r in rows] == [(2, "malformed_record"), (3, "malformed_record")]
    assert "not valid JSON" in rows[0][2] and "column" in rows[0][2]
    assert "JSON list, not an object" in rows[1][2]
    assert set(result.quarantine["source_file"]) == {"events_malformed.jsonl"}


def test_wrong_types_are_quarantined_naming_the_field_and_value():
    result = validate_file(CORPUS / "events_wrong_types.csv")
    assert list(result.valid["event_id"]) == ["e1"]
    assert quarantined(result) == [
        (2, "invalid_price", "price 'abc' is not a number"),
        (3, "invalid_ts", "ts 'yesterday' is not an ISO 8601 timestamp in years 1678-2261"),
        (4, "invalid_quantity", "quantity 'two' is not a whole number within the 64-bit integer range"),
    ]


def test_missing_column_is_an_error_naming_file_header_row_and_field():
    with pytest.raises(DataFormatError) as err:
        read_events(CORPUS / "events_missing_column.csv")
    assert (err.value.file, err.value.row, err.value.field) == ("events_missing_column.csv", 1, "event_type")
    assert str(err.value).startswith("events_missing_column.csv, row 1, field 'event_type': missing column(s) 'event_type'")


def test_empty_file_is_an_error_naming_the_file():
    with pytest.raises(DataFormatError, match=r"^empty\.jsonl: file is empty \(0 bytes\)$"):
        read_events(CORPUS / "empty.jsonl")


def test_header_only_csv_is_an_error(tmp_path):
    cases.header_only_csv(tmp_path / "events.csv")
    with pytest.raises(DataFormatError, match="events.csv: file has no data rows"):
        read_events(tmp_path / "events.csv")


def test_broken_csv_structure_is_an_error_naming_the_line():
    with pytest.raises(DataFormatError, match=r"events_broken_csv\.csv: broken CSV structure: .*line 3"):
        read_events(CORPUS / "events_broken_csv.csv")


def test_missing_file_and_unsupported_type_are_errors(tmp_path):
    with pytest.raises(DataFormatError, match="no such file or folder"):
        read_events(tmp_path / "nope.jsonl")
    (tmp_path / "events.xlsx").write_bytes(b"PK")
    with pytest.raises(DataFormatError, match="unsupported file type"):
        read_events(tmp_path / "events.xlsx")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DataFormatError, match="folder holds no"):
        read_events(tmp_path / "empty_folder")


def test_unknown_event_type_is_quarantined():
    result = validate_file(CORPUS / "events_unknown_type.jsonl")
    assert quarantined(result) == [
        (2, "unknown_event_type", "event_type 'wishlist' is not one of view, click, add_to_cart, purchase, search")
    ]


def test_negative_price_is_quarantined():
    result = validate_file(CORPUS / "events_negative_price.jsonl")
    assert quarantined(result) == [(2, "negative_price", "price -3.5 is negative")]


def test_duplicate_event_ids_keep_the_first_and_name_it():
    result = validate_file(CORPUS / "events_duplicate_ids.jsonl")
    assert list(result.valid["event_id"]) == ["e1", "e2"]
    assert quarantined(result) == [
        (3, "duplicate_event_id", "event_id 'e1' repeats: first seen at events_duplicate_ids.jsonl row 1")
    ]


def test_future_timestamps_are_quarantined():
    result = validate_file(CORPUS / "events_future_ts.jsonl")
    assert quarantined(result) == [
        (2, "ts_out_of_window", "ts 2099-01-01T00:00:00Z is in the future (now is 2026-01-01T00:00:00Z)")
    ]


def test_non_utf8_bytes_are_quarantined_naming_the_field():
    result = validate_file(CORPUS / "events_non_utf8.csv")
    assert quarantined(result) == [(2, "invalid_utf8", "field 'user_id' holds bytes that are not valid UTF-8")]
    assert result.quarantine.loc[0, "user_id"] == "b\ufffdb"  # shown, not dropped, and safe to store


def test_events_for_items_missing_from_the_catalog_are_quarantined():
    result = validate_file(CORPUS / "events_unknown_item.jsonl")
    assert quarantined(result) == [(2, "unknown_item", "item_id 'i404' is not in the catalog")]


def test_a_10_mb_title_is_quarantined_not_truncated(tmp_path):
    path = cases.catalog_10_mb_title(tmp_path / "catalog.jsonl")
    rows = read_catalog(path)
    result = validate_catalog(rows.frame, SETTINGS, rows.rules)
    assert list(result.valid["item_id"]) == ["i1", "i3"]
    assert quarantined(result) == [(2, "title_too_long", "title has 10,485,760 characters; the limit is 1,000")]
    assert len(result.quarantine.loc[0, "title"]) == 10 * 1024 * 1024


def test_parquet_with_wrong_types_is_coerced_or_quarantined(tmp_path):
    cases.parquet_with_wrong_types(tmp_path / "events.parquet")
    result = validate_file(tmp_path / "events.parquet")
    assert result.valid.loc[0, "user_id"] == "1"
    assert result.valid.loc[0, "price"] == 12.5
    assert str(result.valid.loc[0, "ts"]) == "2025-09-01 10:00:00+00:00"
    assert quarantined(result) == [(2, "invalid_price", "price 'free' is not a number")]


def test_a_catalog_with_missing_fields_and_duplicates_is_quarantined(tmp_path):
    path = cases.catalog_missing_fields_and_duplicates(tmp_path / "catalog.csv")
    rows = read_catalog(path)
    result = validate_catalog(rows.frame, SETTINGS, rows.rules)
    assert list(result.valid["item_id"]) == ["i1"]
    assert [(row, rule) for row, rule, _ in quarantined(result)] == [
        (2, "missing_item_id"),
        (3, "empty_title"),
        (4, "duplicate_item_id"),
        (5, "negative_price"),
        (6, "first_seen_in_future"),
        (7, "invalid_first_seen"),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Each class of bad input, not one example of it: every row ends valid or quarantined with file, row and field named,
# and what is written (valid and quarantine tables) can be stored as Parquet.

def stored(result: ValidationResult, tmp_path: Path) -> None:
    """Both tables survive a Parquet round trip (the assets write them so)."""
    result.valid.to_parquet(tmp_path / "valid.parquet")
    result.quarantine.to_parquet(tmp_path / "quarantine.parquet")


def test_numbers_out_of_range_for_their_column_are_quarantined(tmp_path):
    path = cases.numbers_out_of_range(tmp_path / "events.jsonl")
    result = validate_file(path)
    stored(result, tmp_path)
    assert list(result.valid["event_id"]) == ["e1"]
    assert [(r[0], r[1]) for r in quarantined(result)] == [
        (2, "invalid_quantity"), (3, "invalid_quantity"), (4, "invalid_price"), (5, "invalid_quantity"), (6, "malformed_record"),
    ]
    reasons = quarantined(result)
    assert reasons[0][2] == "quantity '1e+308' is not a whole number within the 64-bit integer range"
    assert reasons[2][2] == "price 'inf' is not a number"
    assert "cannot be parsed" in reasons[4][2]


def test_values_that_are_not_text_are_quarantined_naming_the_field(tmp_path):
    path = cases.values_not_text(tmp_path / "events.jsonl")
    result = validate_file(path)
    stored(result, tmp_path)
    assert list(result.valid["event_id"]) == ["e1", "e6"]
    assert result.valid.loc[1, "user_id"] == "12345"
    assert quarantined(result) == [
        (2, "not_text", "field 'user_id' holds a JSON array (['alice', 'bob']), not text"),
        (3, "not_text", "field 'session_id' holds a JSON object ({'id': 's1'}), not text"),
        (4, "not_text", "field 'event_type' holds a boolean (True), not text"),
        (5, "not_text", "field 'item_id' holds a fractional number (1.5), not text"),
        (7, "not_text", "field 'query' holds a JSON array (['mug']), not text"),
    ]


def test_catalog_fields_that_are_not_text_are_quarantined(tmp_path):
    source = read_catalog(cases.catalog_not_text(tmp_path / "catalog.jsonl"))
    result = validate_catalog(source.frame, SETTINGS, source.rules)
    stored(result, tmp_path)
    assert list(result.valid["item_id"]) == ["i1"]
    assert [(r[0], r[1], r[2].split(" (")[0]) for r in quarantined(result)] == [
        (2, "not_text", "field 'title' holds a JSON array"), (3, "not_text", "field 'brand' holds a boolean"),
    ]


def test_parquet_columns_of_the_wrong_kind_are_quarantined(tmp_path):
    cases.parquet_columns_of_the_wrong_kind(tmp_path / "events.parquet")
    result = validate_file(tmp_path / "events.parquet")
    stored(result, tmp_path)
    assert result.valid.empty
    assert [(r[0], r[1]) for r in quarantined(result)] == [(1, "not_text"), (2, "invalid_utf8")]


def test_control_characters_in_ids_are_quarantined(tmp_path):
    result = validate_file(cases.control_characters(tmp_path / "events.jsonl"))
    stored(result, tmp_path)
    assert list(result.valid["event_id"]) == ["e1"]
    assert quarantined(result) == [
        (2, "control_characters", "field 'user_id' holds the control character U+0000"),
        (3, "control_characters", "field 'session_id' holds the control character U+000A"),
        (4, "control_characters", "field 'item_id' holds the control character U+0009"),
    ]


@pytest.mark.parametrize("name", ["events.jsonl.gz", "events.csv.gz", "events.parquet.gz"])
def test_a_truncated_or_corrupt_compressed_file_is_one_error_naming_it(tmp_path, name):
    (tmp_path / "truncated").mkdir()
    cases.truncated_gzip(tmp_path / "truncated" / name)
    with pytest.raises(DataFormatError, match=rf"{name}: cannot be decompressed \(damaged or truncated gzip\)"):
        read_events(tmp_path / "truncated")
    (tmp_path / "corrupt").mkdir()
    cases.corrupt_gzip(tmp_path / "corrupt" / name)
    with pytest.raises(DataFormatError, match=rf"{name}: cannot be decompressed"):
        read_events(tmp_path / "corrupt")


def test_a_damaged_parquet_file_is_one_error_naming_it(tmp_path):
    cases.damaged_parquet(tmp_path / "events.parquet")
    with pytest.raises(DataFormatError, match=r"events.parquet: not a readable Parquet file"):
        read_events(tmp_path / "events.parquet")


def test_a_truncated_online_retail_file_is_one_error_naming_it(tmp_path):
    import gzip

    from rec_pipeline.sources.online_retail import load_online_retail

    lines = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n" + "536365,85123A,MUG,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n" * 2000
    whole = gzip.compress(lines.encode())
    (tmp_path / "online_retail.csv.gz").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(DataFormatError, match=r"online_retail.csv.gz: cannot be decompressed"):
        load_online_retail(tmp_path / "online_retail.csv.gz")


def test_the_validate_command_never_shows_a_traceback(tmp_path, capsys):
    """`rec-pipeline validate` on each class: quarantines with reasons (exit 0) or one error naming the file (exit 2)."""
    from rec_pipeline.cli import main

    catalog = CORPUS / "catalog.jsonl"
    events = write_jsonl(tmp_path / "events.jsonl", [{"quantity": 1e308}, {"user_id": ["a"]}, {"user_id": "a\u0000"}])
    assert main(["validate", "--events", str(events), "--catalog", str(catalog)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"]["quarantined_by_rule"] == {"invalid_quantity": 1, "not_text": 1, "control_characters": 1}
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "events.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    assert main(["validate", "--events", str(tmp_path / "gz"), "--catalog", str(catalog)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "events.jsonl.gz: cannot be decompressed" in err and "Traceback" not in err

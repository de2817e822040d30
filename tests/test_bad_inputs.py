"""The bad-input corpus: each file gets a clear error naming file, row and field, or a quarantine with the reason."""

import json
from pathlib import Path

import pandas as pd
import pytest

from rec_pipeline.readers import read_catalog, read_events
from rec_pipeline.schema import DataFormatError
from rec_pipeline.validation import ValidationResult, ValidationSettings, validate_catalog, validate_events

CORPUS = Path(__file__).parent / "bad_inputs"
SETTINGS = ValidationSettings(now=pd.Timestamp("2026-01-01", tz="UTC"))
CATALOG_IDS = ["i1", "i2", "i3"]


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
        (4, "invalid_quantity", "quantity 'two' is not a whole number"),
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
    (tmp_path / "events.csv").write_text("event_id,ts,user_id,session_id,event_type\n")
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
    catalog = [json.loads(line) for line in (CORPUS / "catalog.jsonl").read_text().splitlines()]
    catalog[1]["title"] = "A" * (10 * 1024 * 1024)
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in catalog) + "\n")
    rows = read_catalog(path)
    result = validate_catalog(rows.frame, SETTINGS, rows.rules)
    assert list(result.valid["item_id"]) == ["i1", "i3"]
    assert quarantined(result) == [(2, "title_too_long", "title has 10,485,760 characters; the limit is 1,000")]
    assert len(result.quarantine.loc[0, "title"]) == 10 * 1024 * 1024


def test_parquet_with_wrong_types_is_coerced_or_quarantined(tmp_path):
    frame = pd.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "ts": pd.to_datetime(["2025-09-01 10:00", "2025-09-01 11:00"]),  # naive: taken as UTC
            "user_id": [1, 2],  # numbers where text is expected: read as their text
            "session_id": ["s1", "s1"],
            "event_type": ["purchase", "purchase"],
            "item_id": ["i1", "i2"],
            "price": ["12.50", "free"],
            "quantity": [1, 2],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    result = validate_file(tmp_path / "events.parquet")
    assert result.valid.loc[0, "user_id"] == "1"
    assert result.valid.loc[0, "price"] == 12.5
    assert str(result.valid.loc[0, "ts"]) == "2025-09-01 10:00:00+00:00"
    assert quarantined(result) == [(2, "invalid_price", "price 'free' is not a number")]


def test_a_catalog_with_missing_fields_and_duplicates_is_quarantined(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(
        "item_id,title,description,category,brand,price,first_seen\n"
        "i1,Candle,,candles,,12.5,2025-08-01T00:00:00Z\n"
        ",Orphan,,candles,,1,2025-08-01T00:00:00Z\n"
        "i2,,,candles,,1,2025-08-01T00:00:00Z\n"
        "i1,Candle again,,candles,,12.5,2025-08-01T00:00:00Z\n"
        "i3,Mug,,kitchen,,-1,2025-08-01T00:00:00Z\n"
        "i4,Cup,,kitchen,,1,2099-01-01T00:00:00Z\n"
            "i5,Bowl,,kitchen,,1,3000-01-01T00:00:00Z\n"
    )
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

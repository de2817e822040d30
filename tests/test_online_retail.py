"""The Online Retail source: field mapping, its own rules, the catalog it derives, and the counts on the real file."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.sources.online_retail import catalog_as_of, load_online_retail
from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS, DataFormatError
from rec_pipeline.sources.table import SourceTable
from rec_pipeline.validation import ValidationResult, ValidationSettings, coerce_events, validate_catalog, validate_events

SETTINGS = ValidationSettings(now=pd.Timestamp("2026-01-01", tz="UTC"))
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"

# One line per quirk (data rows 1-17); SOURCE_RULE_ROWS below says which source rule flags which row.
LINES = """\
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536366,85123a,WHITE HANGING HEART T-LIGHT HOLDER,6,2011-06-01 08:28:00,2.95,17850.0,United Kingdom
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
C536379,22139,RETROSPOT TEA SET CERAMIC 11 PC,-1,2010-12-01 09:41:00,4.25,14527.0,United Kingdom
536589,21777,RECIPE BOX WITH METAL HEART,-10,2010-12-01 16:50:00,1.00,13047.0,United Kingdom
536414,22139,,56,2010-12-01 11:52:00,0.50,13047.0,United Kingdom
536600,21134,damaged,5,2010-12-02 10:00:00,1.00,13047.0,United Kingdom
536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.00,12583.0,France
536601,22841,ROUND CAKE TIN VINTAGE GREEN ,1,2010-12-02 10:05:00,0.0,13047.0,United Kingdom
581483,23843,"PAPER CRAFT , LITTLE BIRDIE",80995,2011-12-09 09:15:00,2.08,16446.0,United Kingdom
C581484,23843,"PAPER CRAFT , LITTLE BIRDIE",-80995,2011-12-09 09:27:00,2.08,16446.0,United Kingdom
581485,23843,"PAPER CRAFT ,  LITTLE BIRDIE",80995,2011-12-09 10:00:00,2.08,16446.0,United Kingdom
581486,23843,"PAPER CRAFT , LITTLE BIRDIE",80995,2011-12-09 09:00:00,2.08,12346.0,United Kingdom
536544,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:32:00,2.51,,United Kingdom
A563186,B,Adjust bad debt,1,2011-08-12 14:51:00,-11062.06,,United Kingdom
536700,22423,REGENCY CAKESTAND 3 TIER,2,2010-12-03 10:00:00,12.75,,United Kingdom
C536701,22423,REGENCY CAKESTAND 3 TIER,-2,2010-12-03 11:00:00,12.75,,United Kingdom
"""

# Row -> the source rule that must flag it, and only it (rows not listed pass every source rule):
# 2 lowercase code in BST, 12 bought again after the cancellation, 13 another customer, 16 anonymous buyer whose
# line 17 cancels it (anonymous lines are never matched).
SOURCE_RULE_ROWS = {
    "exact_duplicate": ([3], "repeats row 1 exactly (all 8 fields equal)"),
    "cancellation": ([4, 11, 17], "InvoiceNo 'C536379' is a cancellation"),
    "stock_adjustment": ([5], "Quantity -10 on invoice '536589' (not a cancellation) is a stock adjustment"),
    "missing_description": ([6], "Description is empty"),
    "warehouse_note": ([7], "Description 'damaged' is a lowercase warehouse note, not a product name"),
    "non_product_code": ([8, 15], "StockCode 'POST' is not a product (product codes start with 5 digits)"),
    "zero_price": ([9], "UnitPrice '0.0' is zero"),
    "reversed_by_cancellation": (
        [10],
        "Quantity 80995 was cancelled later by the same customer on invoice 'C581484' (row 11)",
    ),
}


def write_csv(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def validate(events: SourceTable, catalog: SourceTable) -> tuple[ValidationResult, ValidationResult]:
    catalog_result = validate_catalog(catalog.frame, SETTINGS, catalog.rules)
    event_result = validate_events(events.frame, catalog_result.valid["item_id"], SETTINGS, events.rules)
    return event_result, catalog_result


@pytest.fixture(params=["retail.csv", "retail.csv.gz"])
def sample(request, tmp_path) -> tuple[SourceTable, SourceTable]:
    return load_online_retail(write_csv(tmp_path, request.param, HEADER + "\n" + LINES))


def by_row(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("source_row")


# ---------------------------------------------------------------------------------------------------------------
# Rules


def test_source_rules_come_in_the_documented_order(sample):
    events, catalog = sample
    assert [rule.name for rule in events.rules] == list(SOURCE_RULE_ROWS)
    assert [rule.name for rule in catalog.rules] == ["non_product_code"]


@pytest.mark.parametrize("rule_name", list(SOURCE_RULE_ROWS))
def test_each_source_rule_fires_on_its_rows_only_with_a_specific_reason(sample, rule_name):
    events, _ = sample
    frame = events.frame
    rule = next(rule for rule in events.rules if rule.name == rule_name)
    reasons = rule.find(frame, coerce_events(frame))
    expected_rows, first_reason = SOURCE_RULE_ROWS[rule_name]
    flagged = frame.loc[reasons.notna(), "source_row"].tolist()
    assert flagged == expected_rows
    assert reasons[frame["source_row"] == expected_rows[0]].item() == first_reason


def test_validation_quarantines_every_flagged_row_under_all_the_rules_it_fails(sample):
    events, catalog = sample
    result, _ = validate(events, catalog)
    assert result.rows_in == result.rows_valid + result.rows_quarantined == 17
    assert sorted(result.valid["source_row"]) == [1, 2, 12, 13]
    failed = dict(zip(result.quarantine["source_row"], result.quarantine["failed_rules"]))
    assert failed == {
        3: "exact_duplicate",
        4: "cancellation;non_positive_quantity",
        5: "stock_adjustment;non_positive_quantity",
        6: "missing_description",
        7: "warehouse_note;unknown_item",  # 21134 has no usable title, so the catalog quarantines it
        8: "non_product_code;unknown_item",
        9: "zero_price",
        10: "reversed_by_cancellation",
        11: "cancellation;non_positive_quantity",
        14: "missing_user_id",
        15: "non_product_code;missing_user_id;negative_price;unknown_item",
        16: "missing_user_id",
        17: "cancellation;missing_user_id;non_positive_quantity",
    }
    first_rule = dict(zip(result.quarantine["source_row"], result.quarantine["rule"]))
    assert first_rule[4] == "cancellation" and first_rule[15] == "non_product_code"


# ---------------------------------------------------------------------------------------------------------------
# Field mapping


def test_lines_map_to_canonical_purchase_events_with_provenance(sample):
    events, _ = sample
    frame = by_row(events.frame)
    assert list(events.frame.columns[: len(EVENT_COLUMNS)]) == list(EVENT_COLUMNS)
    first = frame.loc[1]
    assert first["event_id"] == "536365:1"
    assert first["session_id"] == "536365"
    assert first["event_type"] == "purchase"
    assert first["query"] is None
    assert (first["price"], first["quantity"]) == ("2.55", "6")
    assert first["source_file"] in ("retail.csv", "retail.csv.gz")
    assert (first["src_customer_id"], first["src_description"]) == ("17850.0", "WHITE HANGING HEART T-LIGHT HOLDER")
    assert events.frame["event_id"].is_unique


def test_customer_ids_lose_the_float_suffix_and_blanks_become_none(sample):
    frame = by_row(sample[0].frame)
    assert frame.loc[1, "user_id"] == "17850"
    assert frame.loc[14, "user_id"] is None


def test_stock_codes_are_upper_cased(sample):
    frame = by_row(sample[0].frame)
    assert (frame.loc[2, "src_stock_code"], frame.loc[2, "item_id"]) == ("85123a", "85123A")


def test_invoice_dates_are_uk_time_converted_to_utc(sample):
    frame = by_row(sample[0].frame)
    assert frame.loc[1, "ts"] == "2010-12-01T08:26:00Z"  # GMT = UTC in winter
    assert frame.loc[2, "ts"] == "2011-06-01T07:28:00Z"  # BST = UTC+1 in summer


def test_clock_change_nights_are_read_deterministically_and_bad_dates_are_reported(tmp_path):
    dates = {
        "2011-03-27 00:59:00": "2011-03-27T00:59:00Z",
        "2011-03-27 01:30:00": "2011-03-27T01:30:00Z",  # does not exist (clocks skip to 02:00): read as GMT
        "2011-03-27 02:00:00": "2011-03-27T01:00:00Z",
        "2011-10-30 01:30:00": "2011-10-30T00:30:00Z",  # occurs twice: read as the first (BST)
        "2011-10-30 02:00:00": "2011-10-30T02:00:00Z",
        "yesterday": "yesterday",
    }
    lines = [f"5400{i},22423,REGENCY CAKESTAND 3 TIER,1,{date},12.75,13047.0,United Kingdom" for i, date in enumerate(dates)]
    events, catalog = load_online_retail(write_csv(tmp_path, "dst.csv", "\n".join([HEADER, *lines]) + "\n"))
    assert events.frame["ts"].tolist() == list(dates.values())
    assert catalog.frame.loc[0, "first_seen"] == "2011-03-27T00:59:00Z"
    result, _ = validate(events, catalog)
    assert result.quarantine[["source_row", "rule"]].values.tolist() == [[6, "invalid_ts"]]
    assert "'yesterday'" in result.quarantine.loc[0, "reason"]


def test_plain_and_gzipped_files_give_the_same_tables(tmp_path):
    plain_events, plain_catalog = load_online_retail(write_csv(tmp_path, "retail.csv", HEADER + "\n" + LINES))
    gz_events, gz_catalog = load_online_retail(write_csv(tmp_path, "retail.csv.gz", HEADER + "\n" + LINES))
    without_file = lambda frame: frame.drop(columns="source_file")  # noqa: E731
    pd.testing.assert_frame_equal(without_file(plain_events.frame), without_file(gz_events.frame))
    pd.testing.assert_frame_equal(without_file(plain_catalog.frame), without_file(gz_catalog.frame))
    assert plain_events.stats == gz_events.stats


def test_stats_count_the_normalisations(sample):
    events, catalog = sample
    assert events.stats == {
        "rows_read": 17,
        "lowercase_stock_code_rows": 1,
        "lowercase_stock_codes": 1,
        "trimmed_whitespace_rows": 1,  # "ROUND CAKE TIN VINTAGE GREEN "
        "double_space_rows": 1,  # "PAPER CRAFT ,  LITTLE BIRDIE"
        "codes_with_several_descriptions": 1,  # 23843, with and without the double space
        "descriptions_with_several_codes": 1,  # the heart holder under 85123A and 85123a
    }
    assert catalog.stats == {"stock_codes": 10, "codes_without_usable_title": 1}


# ---------------------------------------------------------------------------------------------------------------
# Catalog


def test_catalog_has_one_item_per_upper_cased_code_in_order_of_first_appearance(sample):
    _, catalog = sample
    frame = catalog.frame
    assert list(frame.columns) == [*CATALOG_COLUMNS, "source_file", "source_row"]
    assert frame["item_id"].tolist() == ["85123A", "22139", "21777", "21134", "POST", "22841", "23843", "21773", "B", "22423"]
    heart = frame.set_index("item_id").loc["85123A"]
    assert heart["title"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert heart["category"] == "HOLDER"
    assert (heart["description"], heart["brand"]) == ("", None)
    assert heart["price"] == pytest.approx(2.55)  # median of 2.55, 2.95, 2.55
    assert heart["first_seen"] == "2010-12-01T08:26:00Z"
    assert heart["source_row"] == 1


def test_catalog_price_uses_only_sold_lines(sample):
    items = sample[1].frame.set_index("item_id")
    assert items.loc["22139", "price"] == pytest.approx(0.50)  # the cancellation's 4.25 does not count
    assert np.isnan(items.loc["22841", "price"])  # only a free line


def test_catalog_quarantines_non_products_and_items_without_a_usable_title(sample):
    _, catalog_result = validate(*sample)
    rules = dict(zip(catalog_result.quarantine["item_id"], catalog_result.quarantine["rule"]))
    assert rules == {"21134": "empty_title", "POST": "non_product_code", "B": "non_product_code"}
    reasons = dict(zip(catalog_result.quarantine["item_id"], catalog_result.quarantine["reason"]))
    assert reasons["POST"] == "StockCode 'POST' is not a product (product codes start with 5 digits)"


def test_title_is_the_most_frequent_product_name_ignoring_notes_and_spacing(tmp_path):
    rows = [
        ("22386", "JUMBO BAG PINK POLKADOT", "2010-12-01"),
        ("22386", "JUMBO BAG PINK  POLKADOT ", "2010-12-02"),  # the same name once spacing is cleaned
        ("22386", "JUMBO BAG PINK WHITE SPOTS", "2010-12-03"),
        *[("22386", "?", "2010-12-04")] * 3,  # notes are never titles, however frequent
        *[("22386", "check", "2010-12-05")] * 3,
        # A tie goes to the name used most recently, wherever it sits in the file.
        ("84997", "RED 3 PIECE SPOTTY CUTLERY SET", "2011-01-01"),
        ("84997", "RED 3 PIECE RETROSPOT CUTLERY SET", "2010-12-01"),
        *[("47566", "POSSIBLE DAMAGES OR LOST?", "2010-12-01")] * 3,
        ("47566", "PARTY BUNTING", "2010-12-02"),
        ("M", "Manual", "2010-12-01"),
        ("21134", "damaged", "2010-12-01"),
    ]
    lines = [f"5370{i},{code},{text},1,{day} 10:00:00,1.0,13047.0,United Kingdom" for i, (code, text, day) in enumerate(rows)]
    _, catalog = load_online_retail(write_csv(tmp_path, "titles.csv", "\n".join([HEADER, *lines]) + "\n"))
    items = catalog.frame.set_index("item_id")
    assert items["title"].to_dict() == {
        "22386": "JUMBO BAG PINK POLKADOT",
        "84997": "RED 3 PIECE SPOTTY CUTLERY SET",
        "47566": "PARTY BUNTING",
        "M": "Manual",
        "21134": "",
    }
    assert items["category"].to_dict() == {"22386": "POLKADOT", "84997": "SET", "47566": "BUNTING", "M": "MANUAL", "21134": None}


def test_the_catalog_at_a_cut_knows_only_what_was_known_before_it(tmp_path):
    rows = [
        ("22386", "JUMBO BAG PINK POLKADOT", "2", "2010-12-01"),
        ("22386", "JUMBO BAG PINK POLKADOT", "2", "2010-12-02"),
        *[("22386", "JUMBO BAG RED SPOTS", "9", "2011-02-01")] * 3,  # renamed and repriced after the cut
        ("84997", "RED CUTLERY SET", "4", "2011-01-10"),  # first sold after the cut: cold there
        ("84997", "RED 3 PIECE CUTLERY SET", "5", "2011-01-11"),
        ("84997", "RED 3 PIECE CUTLERY SET", "5", "2011-01-12"),
    ]
    lines = [f"5370{i},{code},{text},1,{day} 10:00:00,{price},13047.0,United Kingdom" for i, (code, text, price, day) in enumerate(rows)]
    events, whole = load_online_retail(write_csv(tmp_path, "cut.csv", "\n".join([HEADER, *lines]) + "\n"))
    items = whole.frame.set_index("item_id")
    assert items.loc["22386", "title"] == "JUMBO BAG RED SPOTS" and items.loc["22386", "price"] == 9  # the whole file
    at = catalog_as_of(events.frame, pd.Timestamp("2011-01-01", tz="UTC")).set_index("item_id")
    assert at.loc["22386", ["title", "price", "category"]].tolist() == ["JUMBO BAG PINK POLKADOT", 2, "POLKADOT"]
    # A new item is known from its first line, and from nothing later.
    assert at.loc["84997", ["title", "price", "category"]].tolist() == ["RED CUTLERY SET", 4, "SET"]
    assert at.loc["84997", "first_seen"] == items.loc["84997", "first_seen"] == "2011-01-10T10:00:00Z"
    assert set(at.columns) | {"item_id"} == set(whole.frame.columns) and list(at.index) == list(items.index)
    # At a cut after the last line, it is the whole file's catalog.
    late = catalog_as_of(events.frame, pd.Timestamp("2012-01-01", tz="UTC"))
    pd.testing.assert_frame_equal(late.reset_index(drop=True), whole.frame.reset_index(drop=True))


# ---------------------------------------------------------------------------------------------------------------
# Unreadable files


@pytest.mark.parametrize("name", ["retail.csv", "retail.csv.gz"])
def test_missing_column_is_an_error_naming_file_header_row_and_field(tmp_path, name):
    header = HEADER.replace(",CustomerID", "")
    path = write_csv(tmp_path, name, header + "\n536365,85123A,HOLDER,6,2010-12-01 08:26:00,2.55,United Kingdom\n")
    with pytest.raises(DataFormatError) as err:
        load_online_retail(path)
    assert (Path(err.value.file).name, err.value.row, err.value.field) == (name, 1, "CustomerID")
    assert "missing column(s) 'CustomerID'" in str(err.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "", "file is empty"),
        ("empty.csv.gz", "", "file is empty"),
        ("header_only.csv", HEADER + "\n", "no data rows"),
    ],
)
def test_empty_file_is_an_error_naming_the_file(tmp_path, name, text, message):
    path = write_csv(tmp_path, name, text)
    with pytest.raises(DataFormatError, match=message) as err:
        load_online_retail(path)
    assert Path(err.value.file).name == name


def test_missing_file_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such file") as err:
        load_online_retail(tmp_path / "absent.csv.gz")
    assert Path(err.value.file).name == "absent.csv.gz"


# ---------------------------------------------------------------------------------------------------------------
# The real file: the counts its SOURCE.md documents


@pytest.fixture(scope="module")
def real(online_retail_path) -> tuple[SourceTable, SourceTable, ValidationResult, ValidationResult]:
    events, catalog = load_online_retail(online_retail_path)
    return events, catalog, *validate(events, catalog)


def test_real_file_every_line_is_valid_or_quarantined(real):
    events, _, result, _ = real
    assert result.rows_in == len(events.frame) == 541_909
    assert result.rows_in == result.rows_valid + result.rows_quarantined


def test_real_file_rule_counts_match_source_md(real):
    failures = real[2].failures_by_rule
    expected = {
        "exact_duplicate": 5_268,
        "cancellation": 9_288,
        "stock_adjustment": 1_336,
        "missing_description": 1_454,
        "warehouse_note": 493,
        "non_product_code": 2_995,
        "zero_price": 2_515,
        "missing_user_id": 135_080,
        "negative_price": 2,
        "non_positive_quantity": 10_624,
    }
    assert {name: failures[name] for name in expected} == expected


def test_real_file_normalisation_counts_match_source_md(real):
    events, catalog, _, _ = real
    assert events.stats == {
        "rows_read": 541_909,
        "lowercase_stock_code_rows": 1_977,
        "lowercase_stock_codes": 117,
        "trimmed_whitespace_rows": 113_452,
        "double_space_rows": 22_290,
        "codes_with_several_descriptions": 650,
        "descriptions_with_several_codes": 172,
    }
    assert catalog.stats["stock_codes"] == 3_958


def test_real_file_outliers_bought_then_cancelled_are_caught(real):
    _, _, result, _ = real
    quarantine = result.quarantine.set_index("session_id")
    for invoice, cancelled_by in (("581483", "C581484"), ("541431", "C541433")):
        assert quarantine.loc[invoice, "rule"] == "reversed_by_cancellation"
        assert f"invoice '{cancelled_by}'" in quarantine.loc[invoice, "reason"]


def test_one_cancellation_reverses_one_purchase_the_most_recent_before_it(tmp_path):
    lines = """\
540001,22333,RETROSPOT MUG,3,2011-01-05 10:00:00,1.25,17000.0,United Kingdom
540002,22333,RETROSPOT MUG,3,2011-01-06 10:00:00,1.25,17000.0,United Kingdom
C540003,22333,RETROSPOT MUG,-3,2011-01-07 10:00:00,1.25,17000.0,United Kingdom
540004,22333,RETROSPOT MUG,3,2011-01-08 10:00:00,1.25,17000.0,United Kingdom
C540005,22333,RETROSPOT MUG,-3,2011-01-09 10:00:00,1.25,17000.0,United Kingdom
C540006,22333,RETROSPOT MUG,-3,2011-01-10 10:00:00,1.25,17000.0,United Kingdom
"""
    events, _ = load_online_retail(write_csv(tmp_path, "retail.csv", HEADER + "\n" + lines))
    rule = next(rule for rule in events.rules if rule.name == "reversed_by_cancellation")
    reasons = rule.find(events.frame, coerce_events(events.frame))
    flagged = dict(zip(events.frame.loc[reasons.notna(), "source_row"], reasons.dropna()))
    # C540003 takes 540002 (the latest before it), C540005 takes 540004, C540006 takes what is left: 540001.
    assert sorted(flagged) == [1, 2, 4]
    assert "'C540003' (row 3)" in flagged[2] and "'C540005' (row 5)" in flagged[4] and "'C540006' (row 6)" in flagged[1]

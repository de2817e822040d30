"""The Great Expectations suites catch what the row rules should have caught, if a bug ever let it through."""

import pandas as pd

from rec_pipeline.expectations import catalog_suite, events_suite, run_suite
from rec_pipeline.privacy import pseudonymise
from rec_pipeline.validation import ValidationSettings, validate_catalog, validate_events

SETTINGS = ValidationSettings(now=pd.Timestamp("2025-10-01", tz="UTC"))


def valid_tables():
    catalog = pd.DataFrame(
        {"item_id": ["i1", "i2"], "title": ["Candle", "Cable"], "price": ["3", "4"], "first_seen": "2025-08-01T00:00:00Z", "source_file": "c", "source_row": [1, 2]}
    )
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "ts": "2025-09-01T00:00:00Z",
            "user_id": ["alice", "bob", "alice"],
            "session_id": "s1",
            "event_type": ["view", "purchase", "search"],
            "item_id": ["i1", "i2", None],
            "query": [None, None, "candle"],
            "price": [3.0, 4.0, None],
            "quantity": [None, 1, None],
            "source_file": "e",
            "source_row": [1, 2, 3],
        }
    )
    catalog = validate_catalog(catalog, SETTINGS).valid
    events = validate_events(events, catalog["item_id"], SETTINGS).valid
    events["user_id"] = pseudonymise(events["user_id"], "salt")
    return events, catalog


def failed(outcome) -> set[tuple[str, str | None]]:
    return {(o.expectation, o.column) for o in outcome.failed}


def events_outcome(events, catalog):
    return run_suite(events, "validated_events", events_suite(catalog["item_id"], SETTINGS.earliest, SETTINGS.now))


def test_valid_tables_meet_every_expectation():
    events, catalog = valid_tables()
    assert events_outcome(events, catalog).success
    assert run_suite(catalog, "validated_catalog", catalog_suite(1000)).success


def test_each_broken_contract_is_named():
    events, catalog = valid_tables()
    events.loc[0, "price"] = -1.0
    events.loc[1, "quantity"] = 0
    events.loc[2, "event_id"] = "e1"
    events.loc[0, "item_id"] = "i404"
    events.loc[1, "user_id"] = "alice"  # a raw id slipped through
    events.loc[2, "ts"] = pd.Timestamp("2030-01-01", tz="UTC")
    outcome = events_outcome(events, catalog)
    assert not outcome.success
    assert failed(outcome) == {
        ("expect_column_values_to_be_between", "price"),
        ("expect_column_values_to_be_between", "quantity"),
        ("expect_column_values_to_be_unique", "event_id"),
        ("expect_column_values_to_be_in_set", "item_id"),
        ("expect_column_values_to_match_regex", "user_id"),
        ("expect_column_values_to_be_between", "ts"),
    }


def test_schema_and_type_drift_is_caught():
    events, catalog = valid_tables()
    drifted = events.drop(columns=["session_id"]).assign(price=events["price"].astype(str))
    assert ("expect_table_columns_to_match_set", None) in failed(events_outcome(drifted, catalog))
    assert ("expect_column_values_to_be_of_type", "price") in failed(events_outcome(drifted, catalog))
    catalog.loc[1, "title"] = None
    catalog.loc[0, "item_id"] = "i2"
    assert failed(run_suite(catalog, "validated_catalog", catalog_suite(1000))) == {
        ("expect_column_values_to_not_be_null", "title"),
        ("expect_column_values_to_be_unique", "item_id"),
    }

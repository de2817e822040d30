"""Training splits: a global temporal split with no leak from the future, cold items and new users marked right."""

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.generate import GeneratorConfig, generate
from rec_pipeline.sources.canonical import read_catalog, read_events
from rec_pipeline.splits import SplitConfig, make_splits
from rec_pipeline.validation import ValidationSettings, validate_catalog, validate_events


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    generate(folder, GeneratorConfig.small())
    settings = ValidationSettings(now=pd.Timestamp("2026-01-01", tz="UTC"))
    catalog_rows = read_catalog(folder / "catalog")
    catalog = validate_catalog(catalog_rows.frame, settings, catalog_rows.rules).valid
    event_rows = read_events(folder / "events")
    events = validate_events(event_rows.frame, catalog["item_id"], settings, event_rows.rules).valid
    return events, catalog


def test_no_train_example_is_later_than_the_cut_and_cold_items_have_no_train_interaction(validated):
    events, catalog = validated
    splits = make_splits(events, catalog, SplitConfig(validation_days=3, test_days=3))
    inter = splits.interactions
    train, validation, test = (inter[inter["split"] == name] for name in ("train", "validation", "test"))
    assert train["ts"].max() < splits.train_cut <= validation["ts"].min()
    assert validation["ts"].max() < splits.validation_cut <= test["ts"].min()
    assert splits.validation_cut - splits.train_cut == pd.Timedelta(days=3)
    assert splits.validation_cut == events["ts"].max().normalize() - pd.Timedelta(days=2)

    # Reference, one item and one user at a time.
    trained_items = set(train["item_id"])
    expected_cold = {item for item in catalog["item_id"] if item not in trained_items}
    assert set(splits.items.loc[splits.items["cold"], "item_id"]) == expected_cold
    assert expected_cold and len(expected_cold) < len(catalog)
    trained_users = set(train["user_id"])
    expected_new = {user for user in inter["user_id"] if user not in trained_users}
    assert set(splits.users.loc[splits.users["new"], "user_id"]) == expected_new and expected_new

    summary = splits.summary()
    assert summary["train_interactions"] + summary["validation_interactions"] + summary["test_interactions"] == len(inter)
    assert summary["cold_items"] == len(expected_cold) and summary["new_users"] == len(expected_new)


def test_interactions_are_item_events_weighted_by_type(validated):
    events, catalog = validated
    splits = make_splits(events, catalog)
    inter = splits.interactions
    assert len(inter) == int((events["event_type"] != "search").sum())
    weights = inter.groupby("event_type")["weight"].unique().map(lambda w: w.tolist()).to_dict()
    assert weights == {"add_to_cart": [2.0], "click": [1.0], "purchase": [4.0], "view": [0.5]}

    only_buys = make_splits(events, catalog, SplitConfig(event_weights={"purchase": 1.0}))
    assert set(only_buys.interactions["event_type"]) == {"purchase"}
    with pytest.raises(ValueError, match="not item event types"):
        make_splits(events, catalog, SplitConfig(event_weights={"search": 1.0}))


def test_cuts_can_be_given_as_dates(validated):
    events, catalog = validated
    splits = make_splits(events, catalog, SplitConfig(train_cut="2025-09-10", validation_cut="2025-09-15"))
    assert str(splits.train_cut) == "2025-09-10 00:00:00+00:00" and str(splits.validation_cut) == "2025-09-15 00:00:00+00:00"
    assert (splits.interactions.loc[splits.interactions["ts"] < splits.train_cut, "split"] == "train").all()
    with pytest.raises(ValueError, match="both train_cut and validation_cut"):
        make_splits(events, catalog, SplitConfig(train_cut="2025-09-10"))
    with pytest.raises(ValueError, match="must come before"):
        make_splits(events, catalog, SplitConfig(train_cut="2025-09-15", validation_cut="2025-09-10"))


def test_events_at_the_same_instant_keep_the_order_of_the_logs():
    # One invoice: three lines at one timestamp, in the order they were keyed, not in item-id order.
    ts = pd.to_datetime(["2025-01-02 10:00", "2025-01-01 09:00", "2025-01-02 10:00", "2025-01-02 10:00"], utc=True)
    events = pd.DataFrame({"user_id": ["u1", "u2", "u1", "u1"], "item_id": ["c", "a", "a", "b"], "ts": ts, "event_type": "purchase"})
    catalog = pd.DataFrame({"item_id": ["a", "b", "c"]})
    splits = make_splits(events, catalog, SplitConfig(train_cut="2025-01-03", validation_cut="2025-01-04"))
    assert splits.interactions[["user_id", "item_id"]].values.tolist() == [["u2", "a"], ["u1", "c"], ["u1", "a"], ["u1", "b"]]

"""Training splits: a global temporal split with no leak from the future, cold items and new users marked right."""

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


def test_no_train_example_is_later_than_the_boundary_and_cold_items_have_no_train_interaction(validated):
    events, catalog = validated
    splits = make_splits(events, catalog, SplitConfig(validation_share=0.2, test_share=0.15))
    inter = splits.interactions
    train, validation, test = (inter[inter["split"] == name] for name in ("train", "validation", "test"))
    assert train["ts"].max() < splits.validation_start <= validation["ts"].min()
    assert validation["ts"].max() < splits.test_start <= test["ts"].min()
    # The default follows the data: the shares asked for, to within the day the boundaries are moved back to.
    days = (events["ts"].max() - events["ts"].min()).days + 1
    assert splits.validation_start == splits.validation_start.floor("D") and splits.test_start == splits.test_start.floor("D")
    assert abs(len(test) / len(inter) - 0.15) < 2.5 / days and abs(len(validation) / len(inter) - 0.2) < 2.5 / days

    # Reference, one item and one user at a time.
    trained_items = set(train["item_id"])
    expected_cold = {item for item in catalog["item_id"] if item not in trained_items}
    never = {item for item in expected_cold if item not in set(inter["item_id"])}
    assert expected_cold and len(expected_cold) < len(catalog)
    trained_users = set(train["user_id"])
    expected_new = {user for user in inter["user_id"] if user not in trained_users}
    assert set(splits.users.loc[splits.users["new"], "user_id"]) == expected_new and expected_new

    summary = splits.summary()
    assert summary["train_interactions"] + summary["validation_interactions"] + summary["test_interactions"] == len(inter)
    assert summary["cold_items"] == len(expected_cold) and summary["new_users"] == len(expected_new)
    assert summary["cold_items_never_interacted"] == len(never)


def test_interactions_are_the_positive_events_only(validated):
    events, catalog = validated
    splits = make_splits(events, catalog)
    inter = splits.interactions
    positive = events["event_type"].isin(["purchase", "add_to_cart", "click"])
    assert len(inter) == int(positive.sum()) and set(inter["event_type"]) == {"purchase", "add_to_cart", "click"}
    assert splits.summary()["positive_events"] == ["purchase", "add_to_cart", "click"]

    only_buys = make_splits(events, catalog, SplitConfig(positive_events=("purchase",)))
    assert set(only_buys.interactions["event_type"]) == {"purchase"}
    with pytest.raises(ValueError, match="must name item event types"):
        make_splits(events, catalog, SplitConfig(positive_events=("search",)))


def test_boundaries_can_be_given_as_dates(validated):
    events, catalog = validated
    splits = make_splits(events, catalog, SplitConfig(validation_start="2025-09-10", test_start="2025-09-15"))
    assert str(splits.validation_start) == "2025-09-10 00:00:00+00:00" and str(splits.test_start) == "2025-09-15 00:00:00+00:00"
    assert (splits.interactions.loc[splits.interactions["ts"] < splits.validation_start, "split"] == "train").all()
    with pytest.raises(ValueError, match="both validation_start and test_start"):
        make_splits(events, catalog, SplitConfig(validation_start="2025-09-10"))
    with pytest.raises(ValueError, match="must come before"):
        make_splits(events, catalog, SplitConfig(validation_start="2025-09-15", test_start="2025-09-10"))
    with pytest.raises(ValueError, match="validation_share and test_share"):
        make_splits(events, catalog, SplitConfig(validation_share=0.6, test_share=0.5))


def test_a_short_data_set_is_cut_at_the_exact_share_not_at_whole_days():
    ts = pd.date_range("2025-01-01 08:00", periods=100, freq="5min", tz="UTC")  # 8 hours of one day
    events = pd.DataFrame({"user_id": [f"u{i % 7}" for i in range(100)], "item_id": "a", "ts": ts, "event_type": "purchase"})
    splits = make_splits(events, pd.DataFrame({"item_id": ["a"]}))
    assert splits.summary()["test_interactions"] == 10 and splits.summary()["validation_interactions"] == 10


def test_events_at_the_same_instant_keep_the_order_of_the_logs():
    # One invoice: three lines at one timestamp, in the order they were keyed, not in item-id order.
    ts = pd.to_datetime(["2025-01-02 10:00", "2025-01-01 09:00", "2025-01-02 10:00", "2025-01-02 10:00"], utc=True)
    events = pd.DataFrame({"user_id": ["u1", "u2", "u1", "u1"], "item_id": ["c", "a", "a", "b"], "ts": ts, "event_type": "purchase"})
    catalog = pd.DataFrame({"item_id": ["a", "b", "c"]})
    splits = make_splits(events, catalog, SplitConfig(validation_start="2025-01-03", test_start="2025-01-04"))
    assert splits.interactions[["user_id", "item_id"]].values.tolist() == [["u2", "a"], ["u1", "c"], ["u1", "a"], ["u1", "b"]]

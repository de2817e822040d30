"""Training splits: one global temporal split of the validated events into train, validation and test.

Every interaction (an event that names an item) is weighted by its type, purchase > add_to_cart > click > view,
and falls in the split its timestamp says: train before the train cut, validation until the validation cut, test
after. Cut-offs are absolute dates or the last days of the data. Never per-user leave-one-out: that trains on the
future of other users.

Cold-start items are catalog items with no train interaction (first interacted with after the train cut, or never);
new users are users whose first interaction is after the train cut. The ranker has to serve both from text and
short histories alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DEFAULT_EVENT_WEIGHTS = {"purchase": 4.0, "add_to_cart": 2.0, "click": 1.0, "view": 0.5}
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    validation_days: int = 7  # used when the cuts are not given as dates
    test_days: int = 7
    train_cut: str | None = None  # ISO date: train is everything before it
    validation_cut: str | None = None  # ISO date: validation runs from the train cut to it, test after
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))


@dataclass
class TrainingSplits:
    interactions: pd.DataFrame  # user_id, item_id, ts, event_type, weight, split
    items: pd.DataFrame  # item_id, first_interaction, cold
    users: pd.DataFrame  # user_id, first_interaction, new
    train_cut: pd.Timestamp
    validation_cut: pd.Timestamp

    def summary(self) -> dict:
        by_split = self.interactions.groupby("split", observed=False)
        return {
            "train_cut": self.train_cut.isoformat(),
            "validation_cut": self.validation_cut.isoformat(),
            **{f"{name}_interactions": int(by_split.size().get(name, 0)) for name in SPLITS},
            **{f"{name}_users": int(by_split["user_id"].nunique().get(name, 0)) for name in SPLITS},
            "items": len(self.items),
            "cold_items": int(self.items["cold"].sum()),
            "cold_items_never_interacted": int((self.items["cold"] & self.items["first_interaction"].isna()).sum()),
            "users": len(self.users),
            "new_users": int(self.users["new"].sum()),
        }


def _utc(value: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def cut_offs(events: pd.DataFrame, config: SplitConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The train and validation cuts: as configured, else whole days counted back from the day after the last event."""
    if config.train_cut or config.validation_cut:
        if not (config.train_cut and config.validation_cut):
            raise ValueError("give both train_cut and validation_cut, or neither")
        train_cut, validation_cut = _utc(config.train_cut), _utc(config.validation_cut)
    else:
        end = events["ts"].max().normalize() + pd.Timedelta(days=1)
        validation_cut = end - pd.Timedelta(days=config.test_days)
        train_cut = validation_cut - pd.Timedelta(days=config.validation_days)
    if not train_cut < validation_cut:
        raise ValueError(f"the train cut {train_cut} must come before the validation cut {validation_cut}")
    return train_cut, validation_cut


def make_splits(events: pd.DataFrame, catalog: pd.DataFrame, config: SplitConfig = SplitConfig()) -> TrainingSplits:
    """`events` are validated events (user_id, item_id, ts, event_type); `catalog` the validated catalog (item_id)."""
    unknown = set(config.event_weights) - {"view", "click", "add_to_cart", "purchase"}
    if unknown:
        raise ValueError(f"event_weights names {sorted(unknown)}, which are not item event types")
    train_cut, validation_cut = cut_offs(events, config)
    weighted = events[events["item_id"].notna() & events["event_type"].isin(list(config.event_weights))]
    interactions = weighted[["user_id", "item_id", "ts", "event_type"]].reset_index(drop=True)
    interactions["weight"] = interactions["event_type"].map(config.event_weights).astype("float32")
    split = np.where(interactions["ts"] < train_cut, "train", np.where(interactions["ts"] < validation_cut, "validation", "test"))
    interactions["split"] = pd.Categorical(split, categories=SPLITS)
    # Events at the same instant keep the order of the logs: an Online Retail invoice shares one timestamp, and its
    # line order matters to the ranker, which learns from the items before each one (sorting an invoice's lines by
    # item id instead cut validation NDCG@20 from 0.122 to 0.096).
    interactions = interactions.sort_values("ts", kind="stable").reset_index(drop=True)

    first_item = interactions.groupby("item_id")["ts"].min()
    items = pd.DataFrame({"item_id": catalog["item_id"].to_numpy()})
    items["first_interaction"] = items["item_id"].map(first_item)
    items["cold"] = ~(items["first_interaction"] < train_cut)  # NaT (never) compares False: cold
    first_user = interactions.groupby("user_id")["ts"].min()
    users = pd.DataFrame({"user_id": first_user.index, "first_interaction": first_user.to_numpy()})
    users["new"] = users["first_interaction"] >= train_cut
    return TrainingSplits(interactions, items, users.reset_index(drop=True), train_cut, validation_cut)

"""Search sessions: each search with what its session clicked, carted or bought after it and before the next search."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Graded relevance for NDCG and the learning-to-rank labels: a purchase says more than a cart, a cart more than a click.
GRADES = {"click": 1, "add_to_cart": 2, "purchase": 3}
COLUMNS = ["search_id", "session_id", "user_id", "ts", "query", "split", "items", "grades"]
# What it reads of the validated events: the events, and their place in the logs for events at one instant.
SESSION_COLUMNS = ["event_id", "ts", "user_id", "session_id", "event_type", "item_id", "query", "source_file", "source_row"]


def search_sessions(events: pd.DataFrame, validation_start: pd.Timestamp, test_start: pd.Timestamp) -> pd.DataFrame:
    """One row per search event, cut by the recommender's global temporal split (by the search's time): its
    `items` (what followed it in the session, before the session's next search) and their `grades` (the best event
    each item got). Searches nothing followed are kept with empty lists; evaluation and training skip them.

    It needs every event of a session and nothing else: the Spark engine runs it per session
    (`groupBy("session_id").applyInPandas`), the local engine on the whole table; the rows come out in (session, time,
    search id) order either way."""
    frame = events[[c for c in SESSION_COLUMNS if c in events.columns]].copy()
    order = ["session_id", "ts"] + [c for c in ("source_file", "source_row") if c in frame.columns]
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    is_search = (frame["event_type"] == "search").to_numpy()
    session = frame["session_id"].astype(str).to_numpy()
    # Each event belongs to the latest search before it in its session (-1: none, a browsing stretch).
    search_number = np.cumsum(is_search) - 1
    starts = np.r_[True, session[1:] != session[:-1]]
    first_search_in_session = pd.Series(np.where(is_search, search_number, np.iinfo(np.int64).max)).groupby(np.cumsum(starts)).transform("min").to_numpy()
    owner = np.where(search_number >= first_search_in_session, search_number, -1)

    searches = frame[is_search].reset_index(drop=True)
    graded = frame.assign(owner=owner, grade=frame["event_type"].map(GRADES))
    graded = graded[(graded["owner"] >= 0) & graded["grade"].notna() & graded["item_id"].notna()]
    best = graded.groupby(["owner", "item_id"], sort=False)["grade"].max().reset_index()
    best = best.sort_values(["owner", "grade", "item_id"], ascending=[True, False, True], kind="stable")
    lists = best.groupby("owner").agg(items=("item_id", list), grades=("grade", lambda g: [int(x) for x in g]))
    ts = pd.to_datetime(searches["ts"], utc=True)
    out = pd.DataFrame({
        "search_id": searches["event_id"].astype(str),
        "session_id": searches["session_id"].astype(str),
        "user_id": searches["user_id"].astype(str),
        "ts": ts,
        "query": searches["query"].fillna("").astype(str),
        "split": np.where(ts >= test_start, "test", np.where(ts >= validation_start, "validation", "train")),
    })
    out["items"] = [lists["items"].get(n, []) for n in range(len(out))]
    out["grades"] = [lists["grades"].get(n, []) for n in range(len(out))]
    return out[COLUMNS].sort_values(["session_id", "ts", "search_id"], kind="stable").reset_index(drop=True)

"""`rec-pipeline recommend`: a known user's history, and recommendations with their titles (the model comes from
`rec_pipeline.registry`)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from rec_pipeline.privacy import SALT_ENV_VAR, load_salt, pseudonymise


def user_history(events_path: Path, user_id: str, salt: str, positive_events: list[str]) -> list[str]:
    """The items a known user interacted with (positive events only), in the order first seen; by their raw id,
    pseudonymised with the project's salt as the validated events are."""
    if not Path(events_path).exists():
        raise FileNotFoundError(f"{events_path}: no validated events (run the README's first command first)")
    events = pd.read_parquet(events_path, columns=["user_id", "item_id", "ts", "event_type"])
    pseudonym = pseudonymise(pd.Series([user_id]), salt).iloc[0]
    mine = events[(events["user_id"] == pseudonym) & events["event_type"].isin(positive_events)]
    if mine.empty:
        raise KeyError(f"unknown user {user_id!r}: no {'/'.join(positive_events)} events in {events_path}")
    return mine.sort_values("ts", kind="stable").drop_duplicates("item_id")["item_id"].astype(str).tolist()


def with_titles(recommendations: pd.DataFrame, catalog_path: Path) -> pd.DataFrame:
    columns = ["item_id", "title"] + (["category"] if "category" in pd.read_parquet(catalog_path).columns else [])
    catalog = pd.read_parquet(catalog_path, columns=columns).drop_duplicates("item_id")
    return recommendations.merge(catalog, on="item_id", how="left")


def salt_for(data_dir: Path) -> str:
    """The salt the validated events were pseudonymised with; never a new one, which would match nobody."""
    path = Path(data_dir) / ".user_id_salt"
    if not os.environ.get(SALT_ENV_VAR) and not path.exists():
        raise FileNotFoundError(f"{path}: no user-id salt, so no user can be matched (set {SALT_ENV_VAR} or run the pipeline)")
    return load_salt(path)

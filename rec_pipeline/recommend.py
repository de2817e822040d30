"""`rec-pipeline recommend`: a known user's history, and recommendations with their titles (the model comes from
`rec_pipeline.registry`)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from rec_pipeline.privacy import SALT_ENV_VAR, SALT_FILE, load_salt, pseudonymise


def user_history(interactions_path: Path, user_id: str, salt: str) -> list[str]:
    """The items a known user interacted with (the positive events `training_splits` keeps, as the model was trained
    on), in the order first seen; by their raw id, pseudonymised with the project's salt as the validated events are."""
    if not Path(interactions_path).exists():
        raise FileNotFoundError(f"{interactions_path}: no training splits (run the README's first command first)")
    events = pd.read_parquet(interactions_path, columns=["user_id", "item_id", "ts"])
    pseudonym = pseudonymise(pd.Series([user_id]), salt).iloc[0]
    mine = events[events["user_id"] == pseudonym]
    if mine.empty:
        raise KeyError(f"unknown user {user_id!r}: no interaction in {interactions_path}")
    return mine.sort_values("ts", kind="stable").drop_duplicates("item_id")["item_id"].astype(str).tolist()


def with_titles(recommendations: pd.DataFrame, catalog_path: Path) -> pd.DataFrame:
    columns = ["item_id", "title"] + (["category"] if "category" in pd.read_parquet(catalog_path).columns else [])
    catalog = pd.read_parquet(catalog_path, columns=columns).drop_duplicates("item_id")
    return recommendations.merge(catalog, on="item_id", how="left")


def salt_for(data_dir: Path) -> str:
    """The salt the validated events were pseudonymised with; never a new one, which would match nobody."""
    path = Path(data_dir) / SALT_FILE
    if not os.environ.get(SALT_ENV_VAR) and not path.exists():
        raise FileNotFoundError(f"{path}: no user-id salt, so no user can be matched (set {SALT_ENV_VAR} or run the pipeline)")
    return load_salt(path)

"""Pseudonymisation of user ids: a keyed hash, so ids stay joinable across runs but cannot be reversed without the salt."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

SALT_ENV_VAR = "REC_PIPELINE_SALT"
SALT_FILE = ".user_id_salt"  # in the project's data folder, git-ignored with it


def load_salt(salt_file: str | Path, env_var: str = SALT_ENV_VAR) -> str:
    """The salt from the environment if set, else from `salt_file`, created with a random salt on first use."""
    from_env = os.environ.get(env_var, "")
    if from_env:
        return from_env
    salt_file = Path(salt_file)
    if salt_file.exists():
        salt = salt_file.read_text().strip()
        if salt:
            return salt
    salt_file.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32)
    salt_file.write_text(salt + "\n")
    salt_file.chmod(0o600)
    return salt


def pseudonymise(user_ids: pd.Series, salt: str) -> pd.Series:
    """HMAC-SHA256 of each id under `salt`, shortened to 16 hex digits (collisions are negligible at catalogue scale)."""
    if not salt:
        raise ValueError("an empty salt would make pseudonyms reversible by anyone; set a salt")
    key = salt.encode("utf-8")
    unique = pd.unique(user_ids.dropna())
    mapping = {uid: "u_" + hmac.new(key, str(uid).encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:16] for uid in unique}
    return user_ids.map(mapping).astype(object).where(user_ids.notna(), None)

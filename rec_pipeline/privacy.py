"""Pseudonymisation of user ids (a keyed hash, so ids stay joinable across runs but cannot be reversed without the
salt) and desensitised search queries (what identifies a person is masked before anything stores a query)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
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


# What pseudonymise makes. The service pseudonymises at its edge and writes the pseudonym to the raw logs; the
# pipeline keeps such ids as they are, so a live user's events join the history they already have.
PSEUDONYM = re.compile(r"u_[0-9a-f]{16}")


def pseudonym_of(user_id, key: bytes) -> str:
    """One id's pseudonym under the salt's bytes `key` (the service's per-request path: no pandas)."""
    text = str(user_id)
    if PSEUDONYM.fullmatch(text):
        return text
    return "u_" + hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:16]


def pseudonymise(user_ids: pd.Series, salt: str) -> pd.Series:
    """HMAC-SHA256 of each id under `salt`, shortened to 16 hex digits (collisions are negligible at catalogue scale);
    an id that already is a pseudonym (`PSEUDONYM`) is kept."""
    if not salt:
        raise ValueError("an empty salt would make pseudonyms reversible by anyone; set a salt")
    key = salt.encode("utf-8")
    mapping = {uid: pseudonym_of(uid, key) for uid in pd.unique(user_ids.dropna())}
    return user_ids.map(mapping).astype(object).where(user_ids.notna(), None)


# Masked in queries: e-mail addresses, and runs of 6+ digits (phone, card, order and account numbers), spaces and
# dashes inside them included.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_DIGITS = re.compile(r"\+?\d(?:[\s-]?\d){5,}")


def desensitise_query(query: str) -> str:
    """A query with e-mail addresses replaced by <email> and runs of 6+ digits (phone, card, order numbers) by <number>."""
    return _DIGITS.sub("<number>", _EMAIL.sub("<email>", query))


def desensitise_queries(queries: pd.Series) -> pd.Series:
    """desensitise_query on each; None stays None."""
    return queries.map(lambda q: desensitise_query(q) if isinstance(q, str) else q)

"""Validation rules against a row-by-row reference, row accounting, and pseudonymisation."""

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.privacy import load_salt, pseudonymise
from rec_pipeline.schema import EVENT_TYPES
from rec_pipeline.validation import ValidationSettings, validate_events

NOW = pd.Timestamp("2025-10-01", tz="UTC")
SETTINGS = ValidationSettings(now=NOW)
CATALOG = ["i1", "i2", "i3"]


def reference_failures(rows: list[dict]) -> list[list[str]]:
    """Which rules each row fails, decided one row at a time with plain Python."""
    seen = set()
    failures = []
    for row in rows:
        failed = []
        for field in ("event_id", "ts", "user_id", "session_id", "event_type"):
            if row[field] in (None, ""):
                failed.append(f"missing_{field}")
        event_type = (row["event_type"] or "").lower()
        if event_type and event_type not in EVENT_TYPES:
            failed.append("unknown_event_type")
        ts = None
        if row["ts"] not in (None, ""):
            try:
                ts = pd.Timestamp(row["ts"])
                ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            except ValueError:
                failed.append("invalid_ts")
        if ts is not None and (ts < SETTINGS.earliest or ts > SETTINGS.latest):
            failed.append("ts_out_of_window")
        if event_type != "search" and row["item_id"] in (None, ""):
            failed.append("missing_item_id")
        if event_type == "search" and row["query"] in (None, ""):
            failed.append("missing_query")
        price = row["price"]
        if price is not None:
            try:
                if float(price) < 0:
                    failed.append("negative_price")
            except ValueError:
                failed.append("invalid_price")
        quantity = row["quantity"]
        if quantity is None and event_type == "purchase":
            failed.append("missing_quantity")
        if quantity is not None and event_type == "purchase" and quantity <= 0:
            failed.append("non_positive_quantity")
        if row["event_id"] not in (None, ""):
            if row["event_id"] in seen:
                failed.append("duplicate_event_id")
            seen.add(row["event_id"])
        if row["item_id"] not in (None, "") and row["item_id"] not in CATALOG:
            failed.append("unknown_item")
        failures.append(failed)
    return failures


def random_rows(rng: np.random.Generator, n: int) -> list[dict]:
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    rows = []
    for _ in range(n):
        rows.append(
            {
                "event_id": pick([f"e{rng.integers(n)}", f"e{rng.integers(n)}", None]),
                "ts": pick(["2025-09-01T10:00:00Z", "2025-09-30T23:00:00+02:00", "2025-09-02 08:00:00", "2031-01-01T00:00:00Z", "1990-01-01T00:00:00Z", "soon", None]),
                "user_id": pick(["u1", "u2", None]),
                "session_id": pick(["s1", "s2", None]),
                "event_type": pick([*EVENT_TYPES, "PURCHASE", "wishlist", None]),
                "item_id": pick(["i1", "i2", "i3", "i404", None]),
                "query": pick(["blue mug", None]),
                "price": pick(["1.5", "0", "-2", "abc", None]),
                "quantity": pick([1, 3, 0, -1, None]),
                "source_file": "random.jsonl",
            }
        )
    for i, row in enumerate(rows, start=1):
        row["source_row"] = i
    return rows


def test_rules_match_a_row_by_row_reference():
    rng = np.random.default_rng(7)
    rows = random_rows(rng, 600)
    result = validate_events(pd.DataFrame(rows), CATALOG, SETTINGS)
    expected = reference_failures(rows)

    assert result.rows_in == result.rows_valid + result.rows_quarantined == len(rows)
    expected_bad = [i + 1 for i, failed in enumerate(expected) if failed]
    assert list(result.quarantine["source_row"]) == expected_bad
    assert list(result.valid["source_row"]) == [i + 1 for i, failed in enumerate(expected) if not failed]
    got = dict(zip(result.quarantine["source_row"], result.quarantine["failed_rules"]))
    for row_number in expected_bad:
        assert got[row_number].split(";") == expected[row_number - 1], row_number
        # the quarantine's `rule` is the first failed rule in rule order
        assert result.quarantine.set_index("source_row").at[row_number, "rule"] == expected[row_number - 1][0]
    counted = {}
    for failed in expected:
        for rule in failed:
            counted[rule] = counted.get(rule, 0) + 1
    assert {k: v for k, v in result.failures_by_rule.items() if v} == counted
    assert sum(result.quarantined_by_rule.values()) == result.rows_quarantined
    assert 0 < result.rows_valid < len(rows)  # the draw exercises both outcomes


def test_valid_rows_are_typed_and_normalised():
    rows = pd.DataFrame(
        [
            {"event_id": " e1 ", "ts": "2025-09-01T12:00:00+02:00", "user_id": "u1", "session_id": "s1", "event_type": "Purchase", "item_id": "i1", "price": "2.50", "quantity": "2"},
            {"event_id": "e2", "ts": "2025-09-01 12:00:00", "user_id": "u1", "session_id": "s1", "event_type": "search", "item_id": None, "query": " candle ", "price": None, "quantity": None},
        ]
    ).assign(source_file="f", source_row=[1, 2])
    result = validate_events(rows, CATALOG, SETTINGS)
    assert result.rows_quarantined == 0
    valid = result.valid
    assert list(valid["event_id"]) == ["e1", "e2"]
    assert list(valid["event_type"]) == ["purchase", "search"]
    assert list(valid["ts"].astype(str)) == ["2025-09-01 10:00:00+00:00", "2025-09-01 12:00:00+00:00"]
    assert valid["quantity"].dtype == "Int64" and valid.loc[0, "quantity"] == 2
    assert valid.loc[0, "price"] == 2.5 and valid["price"].dtype == "float64"
    assert valid.loc[1, "query"] == "candle"


def test_pseudonyms_are_stable_keyed_and_unlinkable_without_the_salt():
    ids = pd.Series(["17850", "alice", None, "17850"])
    first = pseudonymise(ids, "salt-a")
    assert first[0] == first[3] and first[0] != first[1]
    assert first[2] is None
    assert all(p.startswith("u_") and len(p) == 18 for p in first.dropna())
    assert "17850" not in "".join(first.dropna()) and "alice" not in "".join(first.dropna())
    assert list(pseudonymise(ids, "salt-a")) == list(first)
    assert pseudonymise(ids, "salt-b")[0] != first[0]
    with pytest.raises(ValueError, match="empty salt"):
        pseudonymise(ids, "")


def test_salt_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv("REC_PIPELINE_SALT", raising=False)
    salt_file = tmp_path / "data" / ".salt"
    created = load_salt(salt_file)
    assert len(created) == 64 and salt_file.stat().st_mode & 0o777 == 0o600
    assert load_salt(salt_file) == created
    monkeypatch.setenv("REC_PIPELINE_SALT", "from-env")
    assert load_salt(salt_file) == "from-env"

"""The embedded data generator: determinism, schema, realism of the logs, glitch accounting, overwrite safety."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rec_pipeline.generate import COLD_START_DAYS, GeneratorConfig, generate
from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS, EVENT_TYPES

CONFIG = GeneratorConfig.small()
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CANDLE_NOUNS = ("candle", "diffuser", "tealight", "wax melts", "incense", "snuffer")


def _parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    summary = generate(out, CONFIG)
    catalog = _read_jsonl(out / "catalog" / "catalog.jsonl")
    event_files = sorted((out / "events").glob("*.jsonl"))
    events = [(path.name, event) for path in event_files for event in _read_jsonl(path)]
    return out, summary, catalog, events


@pytest.fixture(scope="module")
def clean_events(generated):
    """Events with the retried duplicates dropped and the delisted items left out."""
    _, _, catalog, events = generated
    known = {item["item_id"] for item in catalog}
    seen, clean = set(), []
    for _, event in events:
        if event["event_id"] not in seen and (event["item_id"] is None or event["item_id"] in known):
            seen.add(event["event_id"])
            clean.append(event)
    return clean


# --- determinism -------------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(generated, tmp_path):
    out, _, _, _ = generated
    generate(tmp_path, CONFIG)
    assert _file_hashes(tmp_path) == _file_hashes(out)


def test_different_seed_gives_different_data(generated, tmp_path):
    out, _, _, _ = generated
    generate(tmp_path, GeneratorConfig.small(seed=1))
    original, other = _file_hashes(out), _file_hashes(tmp_path)
    assert original["catalog/catalog.jsonl"] != other["catalog/catalog.jsonl"]
    shared_days = original.keys() & other.keys() - {"catalog/catalog.jsonl"}
    assert shared_days and all(original[name] != other[name] for name in shared_days)


# --- schema ------------------------------------------------------------------------------------------------


def test_catalog_schema(generated):
    _, summary, catalog, _ = generated
    assert len(catalog) == CONFIG.n_items == summary["items"]
    assert len({item["item_id"] for item in catalog}) == len(catalog)
    for item in catalog:
        assert tuple(item) == CATALOG_COLUMNS
        assert re.fullmatch(r"i\d{6}", item["item_id"])
        assert all(isinstance(item[key], str) and item[key] for key in ("title", "description", "category", "brand"))
        assert isinstance(item["price"], float) and item["price"] > 0 and round(item["price"], 2) == item["price"]
        assert ISO_UTC.match(item["first_seen"])
    assert len({item["category"] for item in catalog}) == 12


def test_event_schema(generated):
    _, _, _, events = generated
    start = datetime.fromisoformat(CONFIG.start).replace(tzinfo=timezone.utc)
    end = start + timedelta(days=CONFIG.days)
    user_of_session = {}
    for file_name, event in events:
        assert tuple(event) == EVENT_COLUMNS
        assert re.fullmatch(r"e\d{7}", event["event_id"])
        assert re.fullmatch(r"u\d{5}", event["user_id"]) and re.fullmatch(r"s\d{6}", event["session_id"])
        assert ISO_UTC.match(event["ts"]) and start <= _parse_ts(event["ts"]) < end
        assert file_name == f"events-{event['ts'][:10]}.jsonl"
        assert event["event_type"] in EVENT_TYPES
        if event["event_type"] == "search":
            assert isinstance(event["query"], str) and event["query"]
            assert event["item_id"] is None and event["price"] is None and event["quantity"] is None
        else:
            assert isinstance(event["item_id"], str) and event["query"] is None
            assert isinstance(event["price"], float) and event["price"] > 0
            if event["event_type"] in ("add_to_cart", "purchase"):
                assert isinstance(event["quantity"], int) and event["quantity"] >= 1
            else:
                assert event["quantity"] is None
        assert user_of_session.setdefault(event["session_id"], event["user_id"]) == event["user_id"]


def test_event_files_are_sorted_and_cover_every_day(generated):
    out, summary, _, events = generated
    by_file = defaultdict(list)
    for file_name, event in events:
        by_file[file_name].append((event["ts"], event["event_id"]))
    assert all(keys == sorted(keys) for keys in by_file.values())
    assert len(by_file) == CONFIG.days
    assert summary["files_written"] == len(list(out.rglob("*.jsonl"))) == CONFIG.days + 1


def test_event_count_near_target_and_matches_summary(generated):
    _, summary, _, events = generated
    assert summary["events"] == len(events)
    assert abs(len(events) - CONFIG.n_events) <= 0.1 * CONFIG.n_events
    per_type = Counter(event["event_type"] for _, event in events)
    assert summary["events_per_type"] == {name: per_type[name] for name in EVENT_TYPES}
    assert summary["sessions"] == len({event["session_id"] for _, event in events})
    assert summary["users"] == len({event["user_id"] for _, event in events})


# --- glitches ----------------------------------------------------------------------------------------------


def test_glitches_are_retries_and_delisted_items_as_counted(generated):
    _, summary, catalog, events = generated
    known = {item["item_id"] for item in catalog}
    unknown = [event for _, event in events if event["item_id"] is not None and event["item_id"] not in known]
    assert len(unknown) == summary["unknown_item_events"] > 0
    assert all(re.fullmatch(r"i9\d{5}", event["item_id"]) for event in unknown)

    lines_by_id = defaultdict(list)
    for _, event in events:
        lines_by_id[event["event_id"]].append(event)
    retried = {event_id: lines for event_id, lines in lines_by_id.items() if len(lines) > 1}
    assert sum(len(lines) - 1 for lines in retried.values()) == summary["duplicate_events"] > 0
    assert all(lines[0] == line for lines in retried.values() for line in lines)
    # Roughly equal numbers of each kind, together close to the configured share of the rows.
    assert abs(summary["duplicate_events"] - summary["unknown_item_events"]) <= 1
    glitches = summary["duplicate_events"] + summary["unknown_item_events"]
    assert glitches == pytest.approx(CONFIG.dirty_fraction * len(events), abs=2)


def test_no_glitches_when_dirty_fraction_is_zero(tmp_path):
    summary = generate(tmp_path, GeneratorConfig.small(dirty_fraction=0.0))
    known = {item["item_id"] for item in _read_jsonl(tmp_path / "catalog" / "catalog.jsonl")}
    events = [event for path in (tmp_path / "events").glob("*.jsonl") for event in _read_jsonl(path)]
    assert summary["duplicate_events"] == summary["unknown_item_events"] == 0
    assert len({event["event_id"] for event in events}) == len(events)
    assert all(event["item_id"] is None or event["item_id"] in known for event in events)


# --- realism -----------------------------------------------------------------------------------------------


def test_items_only_appear_in_events_once_listed(generated, clean_events):
    _, _, catalog, _ = generated
    first_seen = {item["item_id"]: item["first_seen"] for item in catalog}
    assert all(event["ts"] >= first_seen[event["item_id"]] for event in clean_events if event["item_id"])


def test_popularity_is_skewed(generated, clean_events):
    views = Counter(event["item_id"] for event in clean_events if event["event_type"] == "view")
    top_tenth = sum(count for _, count in views.most_common(CONFIG.n_items // 10))
    # Each session sees only a handful of a category's few dozen items here, which flattens the curve;
    # at the default size the top tenth gets well over half of the views.
    assert top_tenth / sum(views.values()) > 0.28
    assert views.most_common(1)[0][1] > 5 * sorted(views.values())[len(views) // 2]


def test_funnel_narrows(generated):
    _, summary, _, _ = generated
    counts = summary["events_per_type"]
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert 0.25 < counts["click"] / counts["view"] < 0.45
    assert 0.2 < counts["add_to_cart"] / counts["click"] < 0.4
    assert 0.35 < counts["purchase"] / counts["add_to_cart"] < 0.65


def test_users_concentrate_on_a_few_categories(generated, clean_events):
    _, _, catalog, _ = generated
    category = {item["item_id"]: item["category"] for item in catalog}
    per_user = defaultdict(Counter)
    for event in clean_events:
        if event["item_id"]:
            per_user[event["user_id"]][category[event["item_id"]]] += 1
    regulars = [counts for counts in per_user.values() if sum(counts.values()) >= 20]
    top_two_share = [sum(n for _, n in counts.most_common(2)) / sum(counts.values()) for counts in regulars]
    assert len(regulars) > 50
    assert sum(top_two_share) / len(top_two_share) > 0.6


def test_searches_lead_to_matching_items(generated, clean_events):
    _, _, catalog, _ = generated
    title = {item["item_id"]: item["title"].lower() for item in catalog}
    last_query, matches, views = {}, 0, 0
    for event in sorted(clean_events, key=lambda e: (e["session_id"], e["ts"], e["event_id"])):
        if event["event_type"] == "search":
            last_query[event["session_id"]] = event["query"]
        elif event["event_type"] == "view" and event["session_id"] in last_query:
            views += 1
            matches += last_query[event["session_id"]].split()[-1] in title[event["item_id"]]
    assert views > 500 and matches / views > 0.4


def test_cold_start_items_and_new_users(generated, clean_events):
    _, summary, catalog, _ = generated
    start = datetime.fromisoformat(CONFIG.start).replace(tzinfo=timezone.utc)
    recent = start + timedelta(days=CONFIG.days - COLD_START_DAYS)
    cold = {item["item_id"] for item in catalog if _parse_ts(item["first_seen"]) >= recent}
    assert len(cold) == summary["cold_start_items"] > 0
    cold_events = [event for event in clean_events if event["item_id"] in cold]
    assert len({event["item_id"] for event in cold_events}) > len(cold) // 2
    assert all(_parse_ts(event["ts"]) >= recent for event in cold_events)
    # Older items are listed before the window and every day brings new ones.
    listed_before = sum(_parse_ts(item["first_seen"]) < start for item in catalog)
    assert 0.5 < listed_before / len(catalog) < 0.7

    first_event = {}
    for event in clean_events:
        first_event[event["user_id"]] = min(first_event.get(event["user_id"], event["ts"]), event["ts"])
    new_users = [user for user, ts in first_event.items() if _parse_ts(ts) >= recent]
    assert len(new_users) == summary["new_users"] > 0


def test_catalog_text_reads_like_a_shop(generated):
    _, summary, catalog, _ = generated
    titles = [item["title"] for item in catalog]
    assert len(set(titles)) / len(titles) > 0.9
    candles = [item for item in catalog if item["category"] == "candles & home fragrance"]
    assert candles and all(any(noun in item["title"].lower() for noun in CANDLE_NOUNS) for item in candles)
    assert all(item["title"].startswith(item["brand"]) for item in catalog)
    assert all(1 <= item["description"].count(". ") + 1 <= 3 for item in catalog)
    per_category = Counter(item["category"] for item in catalog)
    assert len(summary["items_per_category"]) == 12
    assert summary["items_per_category"] == {name: per_category[name] for name in summary["items_per_category"]}


# --- output folder -----------------------------------------------------------------------------------------


def test_refuses_to_overwrite_unless_asked(tmp_path):
    config = GeneratorConfig.small(n_items=50, n_users=30, n_events=500, days=5)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    generate(out, config)
    (out / "events" / "stale.jsonl").write_text("{}\n")
    (out / "notes.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate(out, config)

    generate(out, config, overwrite=True)
    assert not (out / "events" / "stale.jsonl").exists()
    assert (out / "notes.txt").read_text() == "not ours"
    generate(fresh, config)
    assert _file_hashes(out) == _file_hashes(fresh) | {"notes.txt": hashlib.sha256(b"not ours").hexdigest()}


def test_rejects_impossible_configs():
    with pytest.raises(ValueError):
        GeneratorConfig(dirty_fraction=-0.1)
    with pytest.raises(ValueError):
        GeneratorConfig(n_events=0)

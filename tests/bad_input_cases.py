"""Every class of bad input the tests hold, as files: the corpus in tests/bad_inputs/ and the cases written here.
tests/test_bad_inputs.py holds the rules to what each must give; tests/test_engines.py runs each through both engines
and holds them to the same answer."""

import gzip
import json
from pathlib import Path

import pandas as pd

CORPUS = Path(__file__).parent / "bad_inputs"
CATALOG_IDS = ["i1", "i2", "i3"]  # the items the corpus's events may name
GOOD = {"event_id": "e0", "ts": "2025-09-01T10:00:00Z", "user_id": "alice", "session_id": "s1", "event_type": "purchase",
        "item_id": "i1", "price": 9.99, "quantity": 1}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps({**GOOD, "event_id": f"e{n}", **r}) + "\n" for n, r in enumerate(records, start=1)))
    return path


def parquet_with_wrong_types(path: Path) -> Path:
    pd.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "ts": pd.to_datetime(["2025-09-01 10:00", "2025-09-01 11:00"]),  # naive: taken as UTC
            "user_id": [1, 2],  # numbers where text is expected: read as their text
            "session_id": ["s1", "s1"],
            "event_type": ["purchase", "purchase"],
            "item_id": ["i1", "i2"],
            "price": ["12.50", "free"],
            "quantity": [1, 2],
        }
    ).to_parquet(path)
    return path


def numbers_out_of_range(path: Path) -> Path:
    path.write_text(
        json.dumps({**GOOD, "event_id": "e1"}) + "\n"
        + json.dumps({**GOOD, "event_id": "e2", "quantity": 1e308}) + "\n"  # whole, but no int64
        + json.dumps({**GOOD, "event_id": "e3", "quantity": 10**30}) + "\n"
        + json.dumps({**GOOD, "event_id": "e4"}).replace('"price": 9.99', '"price": 1e400') + "\n"  # JSON reads inf
        + json.dumps({**GOOD, "event_id": "e5", "quantity": "-9223372036854775809"}) + "\n"
        + json.dumps({**GOOD, "event_id": "e6"}).replace('"quantity": 1', '"quantity": ' + "9" * 5000) + "\n"  # past Python's int parsing
    )
    return path


def values_not_text(path: Path) -> Path:
    return write_jsonl(path, [
        {},
        {"user_id": ["alice", "bob"]},
        {"session_id": {"id": "s1"}},
        {"event_type": True},
        {"item_id": 1.5},
        {"user_id": 12345},  # a whole number is an id exported as a number: read as its digits
        {"query": ["mug"], "event_type": "search", "item_id": None},
    ])


def parquet_columns_of_the_wrong_kind(path: Path) -> Path:
    frame = pd.DataFrame({**{k: [v, v] for k, v in GOOD.items()}, "event_id": ["e1", "e2"]})
    frame["user_id"] = [True, False]  # a boolean column where ids belong
    frame["session_id"] = [b"s1", b"\xffs"]  # a binary column, one value not UTF-8
    frame.to_parquet(path)
    return path


def control_characters(path: Path) -> Path:
    return write_jsonl(path, [{}, {"user_id": "ali\u0000ce"}, {"session_id": "s\n1"}, {"item_id": "i\t1"}])


def truncated_gzip(path: Path) -> Path:
    whole = gzip.compress(b'{"event_id": "e1"}\n' * 1000)
    path.write_bytes(whole[: len(whole) // 2])
    return path


def corrupt_gzip(path: Path) -> Path:
    path.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    return path


def damaged_parquet(path: Path) -> Path:
    pd.DataFrame({k: [v] for k, v in GOOD.items()}).to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def header_only_csv(path: Path) -> Path:
    path.write_text("event_id,ts,user_id,session_id,event_type\n")
    return path


def repeated_across_days(folder: Path) -> Path:
    """Two days whose files repeat an id from the day before and one of their own: the first occurrence wins, across
    files too."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "events-2025-09-01.jsonl", [{}, {"event_id": "e1"}, {}])
    write_jsonl(folder / "events-2025-09-02.jsonl", [{"event_id": "e3"}, {"event_id": "x1"}, {"event_id": "x1", "price": -1}])
    return folder


def catalog_10_mb_title(path: Path) -> Path:
    catalog = [json.loads(line) for line in (CORPUS / "catalog.jsonl").read_text().splitlines()]
    catalog[1]["title"] = "A" * (10 * 1024 * 1024)
    path.write_text("\n".join(json.dumps(r) for r in catalog) + "\n")
    return path


def catalog_missing_fields_and_duplicates(path: Path) -> Path:
    path.write_text(
        "item_id,title,description,category,brand,price,first_seen\n"
        "i1,Candle,,candles,,12.5,2025-08-01T00:00:00Z\n"
        ",Orphan,,candles,,1,2025-08-01T00:00:00Z\n"
        "i2,,,candles,,1,2025-08-01T00:00:00Z\n"
        "i1,Candle again,,candles,,12.5,2025-08-01T00:00:00Z\n"
        "i3,Mug,,kitchen,,-1,2025-08-01T00:00:00Z\n"
        "i4,Cup,,kitchen,,1,2099-01-01T00:00:00Z\n"
        "i5,Bowl,,kitchen,,1,3000-01-01T00:00:00Z\n"
    )
    return path


def catalog_not_text(path: Path) -> Path:
    rows = [{"item_id": "i1", "title": "Mug"}, {"item_id": "i2", "title": ["Mug"]}, {"item_id": "i3", "title": "Cup", "brand": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def every_case(folder: Path) -> list[tuple[str, str, Path]]:
    """(name, table, path) for every class: the corpus files and each case written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = [(p.name, "catalog" if p.name.startswith("catalog") else "events", p) for p in sorted(CORPUS.iterdir()) if p.is_file()]
    written = {
        "parquet_with_wrong_types": ("events", parquet_with_wrong_types, "events.parquet"),
        "numbers_out_of_range": ("events", numbers_out_of_range, "events.jsonl"),
        "values_not_text": ("events", values_not_text, "events.jsonl"),
        "parquet_columns_of_the_wrong_kind": ("events", parquet_columns_of_the_wrong_kind, "events.parquet"),
        "control_characters": ("events", control_characters, "events.jsonl"),
        **{f"truncated_{n}": ("events", truncated_gzip, n) for n in ("events.jsonl.gz", "events.csv.gz", "events.parquet.gz")},
        "corrupt_gzip": ("events", corrupt_gzip, "events.jsonl.gz"),
        "damaged_parquet": ("events", damaged_parquet, "events.parquet"),
        "header_only_csv": ("events", header_only_csv, "events.csv"),
        "catalog_10_mb_title": ("catalog", catalog_10_mb_title, "catalog.jsonl"),
        "catalog_missing_fields_and_duplicates": ("catalog", catalog_missing_fields_and_duplicates, "catalog.csv"),
        "catalog_not_text": ("catalog", catalog_not_text, "catalog.jsonl"),
    }
    for name, (table, write, file_name) in written.items():
        (folder / name).mkdir(exist_ok=True)
        cases.append((name, table, write(folder / name / file_name)))
    cases.append(("repeated_across_days", "events", repeated_across_days(folder / "repeated_across_days")))
    return cases

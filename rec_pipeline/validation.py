"""Row-level validation rules: every input row ends up either valid or quarantined with its rule and reason.

A `Rule` looks at the rows as read (`raw`, values untouched) and as coerced to the canonical types (`typed`) and
returns, for each failing row, a human-readable reason. `apply_rules` runs the rules in order; a row that fails
any rule is quarantined under the first rule it fails, and every rule it fails is listed, so the counts per rule
can be compared with what a data source is known to contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS, EVENT_TYPES, PROVENANCE_COLUMNS

Finder = Callable[[pd.DataFrame, pd.DataFrame], pd.Series]


@dataclass(frozen=True)
class Rule:
    """`find(raw, typed)` returns a Series aligned with the rows: a reason where the row fails, None where it passes."""

    name: str
    description: str
    find: Finder


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


@dataclass(frozen=True)
class ValidationSettings:
    """The validation policy: the limits every row is held to, and the quarantined share the blocking checks allow.
    Each field is a setting of the project's config file (`resources: policy: config:`), with this default."""

    now: pd.Timestamp = field(default_factory=_now)  # the run's clock: not a setting
    earliest_ts: str = "1990-01-01"  # ISO date: an event before it is quarantined (catches epoch-zero and 1900 stand-ins)
    future_tolerance_minutes: float = 5.0  # an event later than now plus this is quarantined
    max_title_chars: int = 1_000
    max_description_chars: int = 20_000
    max_query_chars: int = 1_000
    max_quarantine_share: float = 0.05  # above it, a table's blocking check fails and nothing downstream runs

    @property
    def earliest(self) -> pd.Timestamp:
        ts = pd.Timestamp(self.earliest_ts)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

    @property
    def latest(self) -> pd.Timestamp:
        return self.now + pd.Timedelta(minutes=self.future_tolerance_minutes)


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    # Each quarantined row counted once, under the first rule it fails: these add up to rows_quarantined.
    quarantined_by_rule: dict[str, int]
    # Rows failing each rule, a row possibly under several: comparable with a source's known quirk counts.
    failures_by_rule: dict[str, int]
    rule_descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    def summary(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_valid": self.rows_valid,
            "rows_quarantined": self.rows_quarantined,
            "quarantined_by_rule": self.quarantined_by_rule,
            "failures_by_rule": self.failures_by_rule,
        }


def failing(mask: pd.Series, reason: str | pd.Series) -> pd.Series:
    """The reason for the rows where `mask` holds, None elsewhere; a Series `reason` may cover only those rows."""
    mask = mask.fillna(False).astype(bool)
    out = pd.Series(None, index=mask.index, dtype=object)
    if mask.any():
        out[mask] = reason.reindex(mask.index)[mask] if isinstance(reason, pd.Series) else reason
    return out


def apply_rules(
    raw: pd.DataFrame, typed: pd.DataFrame, rules: Sequence[Rule], columns: Sequence[str]
) -> ValidationResult:
    """Split rows into valid (typed `columns` + provenance) and quarantined (raw values as text + rule + reason)."""
    if not raw.index.equals(typed.index):
        raise ValueError("raw and typed rows must share one index")
    n = len(raw)
    reasons = {rule.name: rule.find(raw, typed).reindex(raw.index) for rule in rules}
    failed = pd.DataFrame({name: r.notna().to_numpy() for name, r in reasons.items()}, index=raw.index)
    failures_by_rule = {name: int(failed[name].sum()) for name in failed.columns}
    bad = failed.any(axis=1).to_numpy() if len(rules) else np.zeros(n, dtype=bool)

    provenance = [c for c in PROVENANCE_COLUMNS if c in typed.columns]
    valid = typed.loc[~bad, list(columns) + provenance].reset_index(drop=True)

    bad_failed = failed.loc[bad]
    first_rule = bad_failed.idxmax(axis=1) if len(bad_failed) else pd.Series([], dtype=object)
    quarantine = pd.DataFrame(index=bad_failed.index)
    for col in columns:
        quarantine[col] = as_display_text(raw.loc[bad, col]) if col in raw.columns else None
    for col in provenance:
        quarantine[col] = typed.loc[bad, col]
    quarantine["rule"] = first_rule
    reason_frame = pd.DataFrame({name: r.loc[bad] for name, r in reasons.items()})
    quarantine["reason"] = [reason_frame.at[i, rule] for i, rule in first_rule.items()]
    names = np.array(failed.columns)
    quarantine["failed_rules"] = [";".join(names[row]) for row in bad_failed.to_numpy()]
    quarantine = quarantine.reset_index(drop=True)

    quarantined_by_rule = {name: 0 for name in failed.columns}
    for name, count in first_rule.value_counts().items():
        quarantined_by_rule[name] = int(count)
    return ValidationResult(
        valid=valid,
        quarantine=quarantine,
        rows_in=n,
        quarantined_by_rule=quarantined_by_rule,
        failures_by_rule=failures_by_rule,
        rule_descriptions={rule.name: rule.description for rule in rules},
    )


# ---------------------------------------------------------------------------------------------------------------
# Coercion from values as read (strings from CSV, JSON scalars, Parquet types) to the canonical types.

INT64_LIMIT = 2.0**63
_SURROGATE = re.compile("[\udc80-\udcff]")  # what undecodable bytes become when read with errors="surrogateescape"


def per_distinct(values: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`transform` run once on the distinct values (nulls included) and spread back to the rows: logs and invoice
    files repeat a few thousand values over many rows, so string work on the distinct ones is what keeps this fast."""
    try:
        codes, distinct = pd.factorize(values, use_na_sentinel=False)
    except TypeError:  # unhashable values (lists, dicts from JSON): transform every row
        result = transform(values)
        return pd.Series(np.asarray(result), index=values.index, dtype=result.dtype)
    result = transform(pd.Series(distinct, dtype=values.dtype))
    return pd.Series(np.asarray(result)[codes], index=values.index, dtype=result.dtype)


def all_text(values: pd.Series) -> bool:
    """Whether every value given is a string (nulls aside): what JSON Lines and CSV logs hold almost always. Such a
    column takes the vectorised path of the text functions below, which give what their per-value path gives; on the
    default data it saves 1.3 of the 3.4 s the events' rules take, for an id column has as many distinct values as rows."""
    return values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _is_null(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value))


def _each(convert: Callable, missing=None) -> Callable[[pd.Series], pd.Series]:
    """A per-value `convert` as a transform for `per_distinct`; nulls become `missing`."""
    return lambda distinct: distinct.map(lambda v: missing if _is_null(v) else convert(v)).astype(object)


def as_display_text(values: pd.Series) -> pd.Series:
    """Any value as text for the quarantine table (undecodable bytes shown as U+FFFD); None stays None."""
    return per_distinct(values, _each(lambda v: str(v).encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")))


# Values a text column cannot hold: what JSON, Parquet or a spreadsheet export puts there by mistake.
_NOT_TEXT = {list: "a JSON array", tuple: "an array", dict: "a JSON object", bool: "a boolean", np.bool_: "a boolean", np.ndarray: "an array"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ID_COLUMNS = ("event_id", "user_id", "session_id", "item_id")


def not_text(v, identifier: bool = False) -> str | None:
    """Why `v` cannot be read as text ("a JSON array"), or None when it can. Strings and whole numbers (ids exported
    as numbers) are text; an identifier also may not be a fraction, a date or any other typed value."""
    for kind, name in _NOT_TEXT.items():
        if isinstance(v, kind):
            return name
    if isinstance(v, (str, bytes, int, np.integer)):
        return None
    if isinstance(v, (float, np.floating)):
        return None if (not identifier or float(v).is_integer()) else "a fractional number"
    return f"a {type(v).__name__}" if identifier else None


def _text_of(v) -> str | None:
    if not_text(v) is not None:
        return None
    if isinstance(v, bytes):  # a Parquet binary column: undecodable bytes stay visible to the invalid_utf8 rule
        v = v.decode("utf-8", errors="surrogateescape")
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return None
        if float(v).is_integer():
            v = int(v)
    return str(v).strip() or None


def as_text(values: pd.Series) -> pd.Series:
    """Identifiers and text: stripped strings; empty strings, nulls and values that are not text (arrays, objects,
    booleans) become None, and the not_text rule says which field held what."""
    if all_text(values):
        stripped = values.str.strip()
        return stripped.where(stripped.str.len() > 0, None).astype(object)
    return per_distinct(values, _each(_text_of))


def _number_of(v) -> float:
    if isinstance(v, (list, tuple, dict, bool, np.bool_, np.ndarray)):
        return np.nan
    try:
        number = float(v.strip()) if isinstance(v, str) else float(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range (JSON 1e400 is inf)
        return np.nan
    return number if np.isfinite(number) else np.nan


def as_number(values: pd.Series) -> pd.Series:
    """Floats; anything that is not a finite number becomes NaN (see `unparseable`)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out = values.astype("float64")
        return out.where(np.isfinite(out))
    return per_distinct(values, _each(_number_of, np.nan)).astype("float64")


def as_timestamp(values: pd.Series) -> pd.Series:
    """UTC timestamps from ISO 8601 text (naive text is taken as UTC) or datetime values; NaT where unparseable."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    text = as_text(values)
    # Parsed apart: in one call pandas gives naive strings the offset of an earlier row that had one.
    has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    for part in (has_offset, ~has_offset & text.notna()):
        if part.any():
            out[part] = pd.to_datetime(text[part], utc=True, errors="coerce", format="ISO8601")
    return out


def unparseable(raw: pd.Series, typed: pd.Series) -> pd.Series:
    """Rows where something was given but could not be coerced."""
    given = raw.notna()
    if all_text(raw):
        given &= raw.str.strip().ne("")
    elif raw.dtype == object:
        given &= ~per_distinct(raw, _each(lambda v: isinstance(v, str) and not v.strip(), False)).astype(bool)
    return given & typed.isna()


def _undecodable(v) -> bool:
    if isinstance(v, bytes):
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False
    return isinstance(v, str) and _SURROGATE.search(v) is not None


def has_undecodable_bytes(raw: pd.DataFrame, columns: Iterable[str]) -> pd.Series:
    """The first column (in `columns` order) holding bytes that were not valid UTF-8, or None."""
    found = pd.Series(None, index=raw.index, dtype=object)
    for col in columns:
        if col not in raw.columns or raw[col].dtype != object:
            continue
        hit = (raw[col].str.contains(_SURROGATE.pattern, regex=True, na=False).astype(bool) if all_text(raw[col])
               else per_distinct(raw[col], _each(_undecodable, False)).astype(bool))
        found = found.where(found.notna() | ~hit, col)
    return found


# ---------------------------------------------------------------------------------------------------------------
# The canonical rules.


def coerce_events(raw: pd.DataFrame) -> pd.DataFrame:
    col = lambda name: raw[name] if name in raw.columns else pd.Series(None, index=raw.index, dtype=object)  # noqa: E731
    typed = pd.DataFrame(index=raw.index)
    for name in ("event_id", "user_id", "session_id", "item_id", "query"):
        typed[name] = as_text(col(name))
    typed["event_type"] = as_text(col("event_type")).str.lower()
    typed["ts"] = as_timestamp(col("ts"))
    typed["price"] = as_number(col("price"))
    quantity = as_number(col("quantity"))
    # A whole number inside int64's range, or nothing (the invalid_quantity rule names it): 1e308 is whole but no int64.
    whole = (quantity == np.floor(quantity)) & (quantity.abs() < INT64_LIMIT)
    typed["quantity"] = quantity.where(whole).astype("Int64")
    for name in PROVENANCE_COLUMNS:
        if name in raw.columns:
            typed[name] = raw[name]
    return typed[[*EVENT_COLUMNS, *[c for c in PROVENANCE_COLUMNS if c in typed.columns]]]


def _missing_rule(field_name: str, when=None, what: str = "") -> Rule:
    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        mask = typed[field_name].isna() & ~_unparseable_field(raw, typed, field_name)
        if when is not None:
            mask &= when(typed)
        return failing(mask, f"{field_name} is missing{what}")

    return Rule(f"missing_{field_name}", f"{field_name} must be present{what}", find)


def _unparseable_field(raw: pd.DataFrame, typed: pd.DataFrame, name: str) -> pd.Series:
    if name not in raw.columns:
        return pd.Series(False, index=raw.index)
    return unparseable(raw[name], typed[name])


def _invalid_rule(field_name: str, expected: str) -> Rule:
    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        mask = _unparseable_field(raw, typed, field_name)
        text = as_display_text(raw.loc[mask, field_name]) if field_name in raw.columns else pd.Series(dtype=object)
        return failing(mask, f"{field_name} " + text.str.slice(0, 80).map(repr).astype(object) + f" is not {expected}")

    return Rule(f"invalid_{field_name}", f"{field_name} must be {expected}", find)


def _too_long_rule(field_name: str, limit: int) -> Rule:
    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        lengths = typed[field_name].str.len().astype("float64").fillna(0)
        long = lengths > limit
        return failing(long, f"{field_name} has " + lengths[long].astype(int).map("{:,}".format).astype(object) + f" characters; the limit is {limit:,}")

    return Rule(f"{field_name}_too_long", f"{field_name} has at most {limit:,} characters", find)


def _undecodable_rule(columns: Sequence[str]) -> Rule:
    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        column = has_undecodable_bytes(raw, columns)
        return failing(column.notna(), "field '" + column.fillna("") + "' holds bytes that are not valid UTF-8")

    return Rule("invalid_utf8", "text must be valid UTF-8", find)


def _not_text_rule(columns: Sequence[str]) -> Rule:
    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        found = pd.Series(None, index=raw.index, dtype=object)
        for col in columns:
            if col not in raw.columns or all_text(raw[col]):  # strings are text
                continue
            identifier = col in ID_COLUMNS
            kind = per_distinct(raw[col], _each(lambda v: not_text(v, identifier)))
            value = as_display_text(raw[col].where(kind.notna())).str.slice(0, 60)
            reason = "field '" + col + "' holds " + kind + " (" + value + "), not text"
            found = found.where(found.notna() | kind.isna(), reason)
        return failing(found.notna(), found)

    return Rule("not_text", "text fields hold text (not arrays, objects or booleans; ids not fractions)", find)


def _control_characters_rule(columns: Sequence[str]) -> Rule:
    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        found = pd.Series(None, index=typed.index, dtype=object)
        for col in columns:
            character = typed[col].str.extract(f"({_CONTROL.pattern})", expand=False)  # the first one, or NaN
            hit = pd.Series(None, index=typed.index, dtype=object)
            hit[character.notna()] = character.dropna().map(lambda c: f"U+{ord(c):04X}")
            reason = "field '" + col + "' holds the control character " + hit.astype(object)
            found = found.where(found.notna() | hit.isna(), reason)
        return failing(found.notna(), found)

    return Rule("control_characters", "ids hold no control characters (NUL, tab, newline, ...)", find)


FIRST_SEEN = "first_seen_at"  # cross-row input: where a repeated key was first seen ("file row N"), None for a first


def first_occurrences(rows: pd.DataFrame, key: str, order: Sequence[str]) -> pd.DataFrame:
    """The cross-row half of the duplicate rules, written once for both engines: for every row whose `key` occurred at
    an earlier position (rows sorted by the `order` columns), its `order` columns and where the key was first seen
    (`first_file`, `first_row`). Rows without a key take no part. The local engine calls it on a whole table, the
    Spark engine on the rows of one key at a time (`groupBy(key).applyInPandas`): the answer is the same."""
    rows = rows[rows[key].notna()].sort_values(list(order), kind="stable")
    first = ~rows[key].duplicated(keep="first")
    firsts = rows.loc[first].set_index(key)
    repeats = rows.loc[~first]
    out = repeats[list(order)].reset_index(drop=True)
    out["first_file"] = repeats[key].map(firsts["source_file"]).to_numpy(dtype=object)
    out["first_row"] = repeats[key].map(firsts["source_row"]).to_numpy(dtype="int64")
    return out


def first_seen_at(repeats: pd.DataFrame) -> pd.Series:
    """`first_occurrences`' answer as the text the duplicate rule quotes, indexed like its rows."""
    return "first seen at " + repeats["first_file"].astype(str) + " row " + repeats["first_row"].astype("int64").astype(str)


def _duplicate_rule(key: str) -> Rule:
    """Repeats of `key` after its first occurrence. Where the rows carry the cross-row input `FIRST_SEEN` (an engine
    computed it over every file of the run and the days before it), that decides; otherwise the rows are the whole
    table and it is computed here, with the same function."""

    def find(raw: pd.DataFrame, typed: pd.DataFrame) -> pd.Series:
        ids = typed[key]
        if FIRST_SEEN in raw.columns:
            where = raw[FIRST_SEEN]
        else:
            position = np.arange(len(typed))
            rows = pd.DataFrame({
                key: ids.to_numpy(), "position": position,
                "source_file": typed["source_file"].to_numpy() if "source_file" in typed.columns else "",
                "source_row": typed["source_row"].to_numpy() if "source_row" in typed.columns else position + 1,
            })
            repeats = first_occurrences(rows, key, ["position"])
            where = pd.Series(None, index=typed.index, dtype=object)
            if len(repeats):
                where.iloc[repeats["position"].to_numpy()] = first_seen_at(repeats).to_numpy()
        repeat = ids.notna() & where.notna()
        return failing(repeat, f"{key} " + ids.fillna("").map(repr) + " repeats: " + where.fillna(""))

    return Rule(f"duplicate_{key}", f"{key} is unique (the first occurrence is kept)", find)


def event_rules(settings: ValidationSettings, catalog_item_ids: Iterable[str]) -> list[Rule]:
    known_items = pd.Index(pd.unique(pd.Series(list(catalog_item_ids), dtype=object)))
    latest, earliest = settings.latest, settings.earliest
    is_search = lambda t: t["event_type"] == "search"  # noqa: E731
    is_purchase = lambda t: t["event_type"] == "purchase"  # noqa: E731

    def unknown_event_type(raw, typed):
        mask = typed["event_type"].notna() & ~typed["event_type"].isin(EVENT_TYPES)
        return failing(mask, "event_type " + typed["event_type"].fillna("").map(repr) + f" is not one of {', '.join(EVENT_TYPES)}")

    def ts_out_of_window(raw, typed):
        ts = typed["ts"]
        early, future = ts < earliest, ts > latest
        text = ts[early | future].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
        early = failing(early, "ts " + text + f" is before {earliest:%Y-%m-%d}, the policy's earliest_ts")
        future = failing(future, "ts " + text + f" is in the future (now is {settings.now:%Y-%m-%dT%H:%M:%SZ})")
        return early.where(early.notna(), future)

    def negative_price(raw, typed):
        return failing(typed["price"] < 0, "price " + typed["price"].astype(str) + " is negative")

    def non_positive_quantity(raw, typed):
        q = typed["quantity"]
        return failing(is_purchase(typed) & q.notna() & (q <= 0), "purchase quantity " + q.astype(str) + " is not positive")

    def unknown_item(raw, typed):
        item = typed["item_id"]
        return failing(item.notna() & ~item.isin(known_items), "item_id " + item.fillna("").map(repr) + " is not in the catalog")

    text_columns = [c for c in EVENT_COLUMNS if c not in ("ts", "price", "quantity")]
    return [
        _undecodable_rule(["ts", *text_columns]),
        _not_text_rule(text_columns),
        _control_characters_rule(ID_COLUMNS),
        _missing_rule("event_id"),
        _missing_rule("ts"),
        _missing_rule("user_id"),
        _missing_rule("session_id"),
        _missing_rule("event_type"),
        Rule("unknown_event_type", f"event_type is one of {', '.join(EVENT_TYPES)}", unknown_event_type),
        _invalid_rule("ts", "an ISO 8601 timestamp in years 1678-2261"),
        Rule("ts_out_of_window", "ts lies between the earliest allowed time and now (no future events)", ts_out_of_window),
        _missing_rule("item_id", when=lambda t: ~is_search(t), what=" (every event but search names an item)"),
        _missing_rule("query", when=is_search, what=" (search events carry their query)"),
        _too_long_rule("query", settings.max_query_chars),
        _invalid_rule("price", "a number"),
        Rule("negative_price", "price is not negative", negative_price),
        _invalid_rule("quantity", "a whole number within the 64-bit integer range"),
        _missing_rule("quantity", when=is_purchase, what=" (purchases carry a quantity)"),
        Rule("non_positive_quantity", "purchase quantity is positive", non_positive_quantity),
        _duplicate_rule("event_id"),
        Rule("unknown_item", "every event's item_id is in the validated catalog", unknown_item),
    ]


def coerce_catalog(raw: pd.DataFrame) -> pd.DataFrame:
    col = lambda name: raw[name] if name in raw.columns else pd.Series(None, index=raw.index, dtype=object)  # noqa: E731
    typed = pd.DataFrame(index=raw.index)
    for name in ("item_id", "title", "description", "category", "brand"):
        typed[name] = as_text(col(name))
    typed["price"] = as_number(col("price"))
    typed["first_seen"] = as_timestamp(col("first_seen"))
    for name in PROVENANCE_COLUMNS:
        if name in raw.columns:
            typed[name] = raw[name]
    return typed[[*CATALOG_COLUMNS, *[c for c in PROVENANCE_COLUMNS if c in typed.columns]]]


def catalog_rules(settings: ValidationSettings) -> list[Rule]:
    def negative_price(raw, typed):
        return failing(typed["price"] < 0, "price " + typed["price"].astype(str) + " is negative")

    def first_seen_in_future(raw, typed):
        first_seen = typed["first_seen"]
        late = first_seen > settings.latest
        text = first_seen[late].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
        return failing(late, "first_seen " + text + " is in the future")

    text_columns = [c for c in CATALOG_COLUMNS if c not in ("price", "first_seen")]
    return [
        _undecodable_rule(text_columns),
        _not_text_rule(text_columns),
        _control_characters_rule(["item_id"]),
        _missing_rule("item_id"),
        Rule("empty_title", "every item has a non-empty title", lambda raw, typed: failing(typed["title"].isna(), "title is empty")),
        _too_long_rule("title", settings.max_title_chars),
        _too_long_rule("description", settings.max_description_chars),
        _invalid_rule("price", "a number"),
        Rule("negative_price", "price is not negative", negative_price),
        _invalid_rule("first_seen", "an ISO 8601 timestamp in years 1678-2261"),
        Rule("first_seen_in_future", "first_seen is not in the future", first_seen_in_future),
        _duplicate_rule("item_id"),
    ]


def validate_catalog(raw: pd.DataFrame, settings: ValidationSettings, source_rules: Sequence[Rule] = ()) -> ValidationResult:
    typed = coerce_catalog(raw)
    return apply_rules(raw, typed, [*source_rules, *catalog_rules(settings)], CATALOG_COLUMNS)


def validate_events(
    raw: pd.DataFrame,
    catalog_item_ids: Iterable[str],
    settings: ValidationSettings,
    source_rules: Sequence[Rule] = (),
) -> ValidationResult:
    typed = coerce_events(raw)
    return apply_rules(raw, typed, [*source_rules, *event_rules(settings, catalog_item_ids)], EVENT_COLUMNS)

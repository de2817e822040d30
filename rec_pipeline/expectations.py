"""Great Expectations 1.x suites for the validated tables: the data contract the downstream assets rely on.

Row-level rules (rec_pipeline.validation) decide what is quarantined; these suites then assert, with an
independent implementation, that what was published as valid really holds to the contract.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS, EVENT_TYPES, PROVENANCE_COLUMNS


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    observed: str


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]


@lru_cache(maxsize=1)
def _gx():
    """Great Expectations, imported on first use: the import alone takes about 5 s, and every Dagster process loads
    these checks' definitions, most of them (a DVC stage, a step of another asset) without running one."""
    # GE reports usage statistics unless told not to; runs are offline.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


@lru_cache(maxsize=1)
def _context():
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = _gx().get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


# Column types as each engine's frames name them: GE names a tz-aware pandas datetime column "Timestamp" and a
# nullable Int64 column "int64"; a Spark DataFrame has Spark's own type names.
TYPES = {
    "pandas": {"timestamp": "Timestamp", "float": "float64", "integer": "int64"},
    "spark": {"timestamp": "TimestampType", "float": "DoubleType", "integer": "LongType"},
}


def _condition(equal: bool, column: str, value: str, engine: str) -> dict:
    """A row condition in the syntax of the engine's frames."""
    if engine == "spark":
        return {"row_condition": f"{column} {'=' if equal else '!='} '{value}'", "condition_parser": "spark"}
    return {"row_condition": f'{column}{"==" if equal else "!="}"{value}"', "condition_parser": "pandas"}


def events_suite(catalog_item_ids: pd.Series | None, earliest: pd.Timestamp, latest: pd.Timestamp, engine: str = "pandas") -> list:
    """The valid events' contract. On Spark, catalog membership is not an expectation over a value set (the catalog
    may hold millions of ids) but an anti-join (`catalog_membership`); pass no ids."""
    E, types = _gx().expectations, TYPES[engine]
    membership = [] if engine == "spark" else [E.ExpectColumnValuesToBeInSet(column="item_id", value_set=sorted(set(catalog_item_ids.dropna())))]
    return [
        E.ExpectTableColumnsToMatchSet(column_set=[*EVENT_COLUMNS, *PROVENANCE_COLUMNS], exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=1),
        *[E.ExpectColumnValuesToNotBeNull(column=c) for c in ("event_id", "ts", "user_id", "session_id", "event_type")],
        E.ExpectColumnValuesToBeOfType(column="ts", type_=types["timestamp"]),
        E.ExpectColumnValuesToBeOfType(column="price", type_=types["float"]),
        E.ExpectColumnValuesToBeOfType(column="quantity", type_=types["integer"]),
        E.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        E.ExpectColumnValuesToBeBetween(column="ts", min_value=earliest.to_pydatetime(), max_value=latest.to_pydatetime()),
        E.ExpectColumnValuesToBeBetween(column="price", min_value=0),
        E.ExpectColumnValuesToBeBetween(column="quantity", min_value=1, **_condition(True, "event_type", "purchase", engine)),
        E.ExpectColumnValuesToNotBeNull(column="item_id", **_condition(False, "event_type", "search", engine)),
        E.ExpectColumnValuesToBeUnique(column="event_id"),
        E.ExpectColumnValuesToMatchRegex(column="user_id", regex=r"^u_[0-9a-f]{16}$"),
        *membership,
    ]


def catalog_membership(events, catalog) -> ExpectationOutcome:
    """Every event's item in the catalog, on Spark: the events whose item_id the catalog lacks (a left anti-join),
    counted on the cluster; what ExpectColumnValuesToBeInSet asserts on pandas."""
    unknown = events.filter("item_id IS NOT NULL").join(catalog.select("item_id").distinct(), "item_id", "left_anti")
    count = unknown.count()
    sample = [r["item_id"] for r in unknown.select("item_id").distinct().limit(5).collect()] if count else []
    return ExpectationOutcome("item_id in the validated catalog (anti-join)", "item_id", count == 0, count, str(sample)[:200])


def catalog_suite(max_title_chars: int, engine: str = "pandas") -> list:
    E, types = _gx().expectations, TYPES[engine]
    return [
        E.ExpectTableColumnsToMatchSet(column_set=[*CATALOG_COLUMNS, *PROVENANCE_COLUMNS], exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column="item_id"),
        E.ExpectColumnValuesToBeUnique(column="item_id"),
        E.ExpectColumnValuesToNotBeNull(column="title"),
        E.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1, max_value=max_title_chars),
        E.ExpectColumnValuesToBeOfType(column="price", type_=types["float"]),
        E.ExpectColumnValuesToBeBetween(column="price", min_value=0),
        E.ExpectColumnValuesToBeOfType(column="first_seen", type_=types["timestamp"]),
    ]


def run_suite(frame, name: str, expectations: list, extra: list[ExpectationOutcome] = ()) -> SuiteOutcome:
    """Validate `frame` (a pandas or a Spark DataFrame, through GE's pandas or Spark data source) against
    `expectations` with an in-memory GE context; `extra` outcomes (an anti-join) count as the suite's own."""
    context = _context()
    spark = hasattr(frame, "sparkSession")
    source_name = f"rec_pipeline_{name}_{'spark' if spark else 'pandas'}"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_spark(source_name) if spark else context.data_sources.add_pandas(source_name)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    batch_definition = next((b for b in asset.batch_definitions if b.name == "whole"), None) or asset.add_batch_definition_whole_dataframe("whole")
    suite = _gx().ExpectationSuite(name=f"{name}_{len(expectations)}")
    for expectation in expectations:
        suite.add_expectation(expectation)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcomes = []
    for r in result.results:
        config = r.expectation_config
        details = r.result or {}
        observed = details.get("observed_value", details.get("partial_unexpected_list", ""))
        if r.exception_info and r.exception_info.get("raised_exception"):
            observed = r.exception_info.get("exception_message", "")
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=config.kwargs.get("column"),
                success=bool(r.success),
                unexpected_count=details.get("unexpected_count"),
                observed=str(observed)[:200],
            )
        )
    outcomes.extend(extra)
    return SuiteOutcome(suite=name, success=bool(result.success) and all(o.success for o in extra), outcomes=outcomes)

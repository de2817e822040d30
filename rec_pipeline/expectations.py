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


def events_suite(catalog_item_ids: pd.Series, earliest: pd.Timestamp, latest: pd.Timestamp) -> list:
    E = _gx().expectations
    return [
        E.ExpectTableColumnsToMatchSet(column_set=[*EVENT_COLUMNS, *PROVENANCE_COLUMNS], exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=1),
        *[E.ExpectColumnValuesToNotBeNull(column=c) for c in ("event_id", "ts", "user_id", "session_id", "event_type")],
        # GE names a tz-aware datetime column "Timestamp" and a nullable Int64 column "int64".
        E.ExpectColumnValuesToBeOfType(column="ts", type_="Timestamp"),
        E.ExpectColumnValuesToBeOfType(column="price", type_="float64"),
        E.ExpectColumnValuesToBeOfType(column="quantity", type_="int64"),
        E.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        E.ExpectColumnValuesToBeBetween(column="ts", min_value=earliest.to_pydatetime(), max_value=latest.to_pydatetime()),
        E.ExpectColumnValuesToBeBetween(column="price", min_value=0),
        E.ExpectColumnValuesToBeBetween(
            column="quantity", min_value=1, row_condition='event_type=="purchase"', condition_parser="pandas"
        ),
        E.ExpectColumnValuesToNotBeNull(column="item_id", row_condition='event_type!="search"', condition_parser="pandas"),
        E.ExpectColumnValuesToBeUnique(column="event_id"),
        E.ExpectColumnValuesToMatchRegex(column="user_id", regex=r"^u_[0-9a-f]{16}$"),
        E.ExpectColumnValuesToBeInSet(column="item_id", value_set=sorted(set(catalog_item_ids.dropna()))),
    ]


def catalog_suite(max_title_chars: int) -> list:
    E = _gx().expectations
    return [
        E.ExpectTableColumnsToMatchSet(column_set=[*CATALOG_COLUMNS, *PROVENANCE_COLUMNS], exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column="item_id"),
        E.ExpectColumnValuesToBeUnique(column="item_id"),
        E.ExpectColumnValuesToNotBeNull(column="title"),
        E.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1, max_value=max_title_chars),
        E.ExpectColumnValuesToBeOfType(column="price", type_="float64"),
        E.ExpectColumnValuesToBeBetween(column="price", min_value=0),
        E.ExpectColumnValuesToBeOfType(column="first_seen", type_="Timestamp"),
    ]


def run_suite(frame: pd.DataFrame, name: str, expectations: list) -> SuiteOutcome:
    """Validate `frame` against `expectations` with an in-memory GE context."""
    context = _context()
    source_name = f"rec_pipeline_{name}"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(source_name)
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
    return SuiteOutcome(suite=name, success=bool(result.success), outcomes=outcomes)

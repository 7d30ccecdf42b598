"""Great Expectations, in-process and ephemeral: validate a DataFrame, get failing row ids with reasons.

GX is imported lazily (about 2 s) and its context is built once per process. Rules are written as
value/null/set/regex/between expectations only: GX 1.24 type expectations misbehave on pandas 3
string columns (DAGSTER-GX.md §5.5), so checks that need Python (credit-code check digits, per-line
tax arithmetic) are computed vectorised into boolean columns first and asserted with ``InSet([True])``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass(frozen=True)
class Rule:
    """One expectation: ``kind`` in not_null | true | in_set | regex | between, on ``column``."""

    kind: str
    column: str
    reason: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationOutcome:
    evaluated: int
    failures: dict[Any, list[dict[str, str]]]  # row id -> [{"rule", "column", "reason", "value"}]

    @property
    def failed_ids(self) -> set[Any]:
        return set(self.failures)


@lru_cache(maxsize=1)
def _batch_definition() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("hub")
    return source.add_dataframe_asset("frames").add_batch_definition_whole_dataframe("whole")


def _expectation(rule: Rule) -> Any:
    import great_expectations.expectations as gxe

    if rule.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=rule.column)
    if rule.kind == "true":
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=[True])
    if rule.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.options["values"]))
    if rule.kind == "regex":
        return gxe.ExpectColumnValuesToMatchRegex(column=rule.column, regex=rule.options["regex"])
    if rule.kind == "between":
        return gxe.ExpectColumnValuesToBeBetween(
            column=rule.column, min_value=rule.options.get("min"), max_value=rule.options.get("max")
        )
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def validate_frame(
    frame: pd.DataFrame, rules: list[Rule], *, id_column: str, suite: str
) -> ValidationOutcome:
    """Run ``rules`` over ``frame``; every failing row is reported by its ``id_column`` value."""
    if frame.empty:
        return ValidationOutcome(0, {})
    import great_expectations as gx

    by_column = {r.column: r for r in rules}
    if len(by_column) != len(rules):
        raise ValueError(f"validation suite {suite}: one rule per column, so each failure has one reason")
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})

    def run(chosen: list[Rule], result_format: Any) -> Any:
        result = batch.validate(
            gx.ExpectationSuite(name=suite, expectations=[_expectation(r) for r in chosen]),
            result_format=result_format,
        )
        for item in result.results:
            raised = (item.exception_info or {}).get("raised_exception")
            if raised:  # GX reports an expectation that crashed as a failure, not an exception
                column = item.expectation_config.kwargs.get("column")
                raise RuntimeError(
                    f"validation suite {suite}: rule on {column} failed to run: {item.exception_info}"
                )
        return result

    # Pass/fail first (about half the cost of listing failing rows, P11); only the rules that failed are
    # run again to name their rows. A clean batch, the usual case, pays for the first pass alone.
    verdict = run(rules, "BOOLEAN_ONLY")
    evaluated = int(verdict.statistics["evaluated_expectations"])
    failed = [
        by_column[str(item.expectation_config.kwargs.get("column"))]
        for item in verdict.results
        if not item.success
    ]
    if not failed:
        return ValidationOutcome(evaluated, {})
    result = run(failed, {"result_format": "COMPLETE", "unexpected_index_column_names": [id_column]})
    failures: dict[Any, list[dict[str, str]]] = defaultdict(list)
    for item in result.results:
        if item.success:
            continue
        column = item.expectation_config.kwargs.get("column")
        rule = by_column.get(str(column))
        for hit in item.result.get("unexpected_index_list") or []:
            row_id = hit.get(id_column) if isinstance(hit, dict) else hit
            failures[_plain(row_id)].append(
                {
                    "rule": item.expectation_config.type,
                    "column": str(column),
                    "reason": rule.reason if rule else str(item.expectation_config.type),
                    "value": str(hit.get(column)) if isinstance(hit, dict) else "",
                }
            )
    return ValidationOutcome(evaluated, dict(failures))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values (GX returns np.int64 ids)."""
    return value.item() if hasattr(value, "item") else value

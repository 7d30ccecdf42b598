"""Figures about one promise run, for Dagster metadata and ops alerts."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hub.promises import models as m

AT_RISK_COLUMNS = (
    m.OUT_LINE_ID,
    m.OUT_MATERIAL,
    m.OUT_QUANTITY,
    m.OUT_TIER,
    m.OUT_REQUESTED,
    m.OUT_PROMISED,
    m.OUT_DAYS_LATE,
    m.OUT_REASON,
)


@dataclass(frozen=True)
class PromiseSummary:
    """Counts over a :func:`hub.promises.promise_lines` result, plus the most at-risk lines.

    ``made_to_order`` counts lines whose quantity (or, for split lines, whose rest) waits for
    production; ``lines_late`` counts lines promised after their requested date.
    """

    lines_promised: int
    lines_late: int
    made_to_order: int
    split: int
    at_risk: pd.DataFrame


def summarize(result: pd.DataFrame, top: int = 20) -> PromiseSummary:
    """Summarise a promise result.

    The at-risk table lists late lines, latest first, then by customer tier and priority rank, so
    the most important customer's worst delay leads among equals.
    """
    late = result[result[m.OUT_LATE]]
    at_risk = late.sort_values(
        [m.OUT_DAYS_LATE, m.OUT_TIER, m.OUT_RANK], ascending=[False, True, True], kind="stable"
    ).head(top)
    return PromiseSummary(
        lines_promised=len(result),
        lines_late=len(late),
        made_to_order=int((result[m.OUT_REST_REASON] == m.MADE_TO_ORDER).sum()),
        split=int((result[m.OUT_REASON] == m.SPLIT).sum()),
        at_risk=at_risk.loc[:, list(AT_RISK_COLUMNS)].reset_index(drop=True),
    )

"""Delivery promises (可交期测算) on the factory working calendar.

Public API: :func:`promise_lines` (allocation), :class:`FactoryCalendar` (working-day arithmetic),
:func:`summarize` (figures for run metadata), the configs in :mod:`hub.promises.models`.
"""

from hub.promises.allocate import promise_lines
from hub.promises.calendar import FactoryCalendar
from hub.promises.models import CalendarConfig, DateRange, PromiseConfig, YearOverride
from hub.promises.summary import PromiseSummary, summarize

__all__ = [
    "CalendarConfig",
    "DateRange",
    "FactoryCalendar",
    "PromiseConfig",
    "PromiseSummary",
    "YearOverride",
    "promise_lines",
    "summarize",
]

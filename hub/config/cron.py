"""Validation of five-field cron expressions (the dialect Dagster schedules accept).

Written here rather than imported from Dagster because ``hub.config`` is layer 0 and must not import
the orchestrator. Supported: ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``,
month and weekday names (``JAN``, ``MON``), weekday 7 as Sunday, and the macros ``@hourly``,
``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``.
"""

from __future__ import annotations

import re

MACROS = frozenset({"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"})
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate(_MONTHS)},
    ),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)
_ATOM = re.compile(r"^[0-9A-Za-z]+$")


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a valid cron string, or ``None`` when it is."""
    text = expression.strip()
    if text.lower() in MACROS:
        return None
    parts = text.split()
    if len(parts) != 5:
        return (
            f"cron {expression!r} has {len(parts)} fields; it needs 5 (minute hour day-of-month month "
            'day-of-week), e.g. "0 2 * * *" for 02:00 every day'
        )
    for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        problem = _field_problem(part, low, high, names)
        if problem:
            return f"cron {expression!r}: {name} field {part!r} {problem}"
    return None


def _value(atom: str, low: int, high: int, names: dict[str, int]) -> int | str:
    if not _ATOM.match(atom):
        return f"contains {atom!r}, which is not a number"
    if atom.isdigit():
        number = int(atom)
    elif atom.upper() in names:
        number = names[atom.upper()]
    else:
        return f"contains {atom!r}, which is neither a number nor a known name"
    if not low <= number <= high:
        return f"has {number}, outside {low}-{high}"
    return number


def _field_problem(part: str, low: int, high: int, names: dict[str, int]) -> str | None:
    for item in part.split(","):
        if not item:
            return "has an empty list item"
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"has step {step!r}; a step must be a positive number"
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        first = _value(start, low, high, names)
        if isinstance(first, str):
            return first
        if dash:
            last = _value(end, low, high, names)
            if isinstance(last, str):
                return last
            if last < first:
                return f"has the range {base}, whose end is before its start"
    return None

"""The factory working calendar: statutory holidays, make-up workdays (调休), overrides, shutdowns.

Expected dates are the State Council notices as chinese-calendar records them (checked against the
library's data): National Day 2025 is 1-8 October with make-up workdays on Sunday 28 September and
Saturday 11 October; Spring Festival 2025 is 28 January - 4 February with make-up workdays on Sunday
26 January and Saturday 8 February; Spring Festival 2026 is 15-23 February with make-up workdays on
Saturdays 14 and 28 February. The vectorised arithmetic is also checked against a day-by-day walk
over ``chinese_calendar.is_workday`` itself.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar
import numpy as np
import pandas as pd
import pytest

from hub.errors import ConfigError, DataValidationError
from hub.promises import CalendarConfig, DateRange, FactoryCalendar, YearOverride

D = dt.date


@pytest.fixture
def cal() -> FactoryCalendar:
    return FactoryCalendar()


def test_national_day_2025_rest_days_and_make_up_days(cal: FactoryCalendar) -> None:
    days = pd.date_range("2025-09-27", "2025-10-12")
    working = dict(zip([d.date() for d in days], cal.is_working_day(days), strict=True))
    assert not working[D(2025, 9, 27)]  # Saturday
    assert working[D(2025, 9, 28)]  # Sunday, make-up workday
    assert working[D(2025, 9, 30)]
    assert not any(working[D(2025, 10, d)] for d in range(1, 9))  # 1-8 October
    assert working[D(2025, 10, 9)] and working[D(2025, 10, 10)]
    assert working[D(2025, 10, 11)]  # Saturday, make-up workday
    assert not working[D(2025, 10, 12)]
    assert cal.working_days_in(D(2025, 9, 27), D(2025, 10, 12)) == 6  # 28, 29, 30 Sep; 9, 10, 11 Oct


def test_working_day_counts_across_national_day_2025(cal: FactoryCalendar) -> None:
    add = cal.add_working_days_to
    assert add(D(2025, 9, 26), 1) == D(2025, 9, 28)  # Friday + 1 lands on the make-up Sunday
    assert add(D(2025, 9, 30), 1) == D(2025, 10, 9)  # the whole holiday is skipped
    assert add(D(2025, 9, 28), 5) == D(2025, 10, 11)  # 29, 30 Sep, 9, 10, 11 Oct
    assert add(D(2025, 9, 28), 6) == D(2025, 10, 13)
    assert add(D(2025, 10, 9), 2) == D(2025, 10, 11)  # make-up Saturday counts
    assert add(D(2025, 10, 3), 0) == D(2025, 10, 9)  # 0 rolls a holiday forward
    assert add(D(2025, 10, 3), 1) == D(2025, 10, 10)  # counting starts on the first working day


def test_working_day_counts_across_spring_festival_2025_and_2026(cal: FactoryCalendar) -> None:
    add = cal.add_working_days_to
    # 2025: 26 Jan (Sun) is worked, 28 Jan - 4 Feb off, 8 Feb (Sat) worked.
    assert add(D(2025, 1, 24), 1) == D(2025, 1, 26)
    assert add(D(2025, 1, 27), 1) == D(2025, 2, 5)
    assert add(D(2025, 2, 7), 1) == D(2025, 2, 8)
    assert cal.working_days_in(D(2025, 1, 25), D(2025, 2, 9)) == 1 + 1 + 3 + 1  # 26, 27 Jan; 5-7, 8 Feb
    # 2026: 14 Feb (Sat) worked, 15-23 Feb off, 28 Feb (Sat) worked.
    assert add(D(2026, 2, 13), 1) == D(2026, 2, 14)
    assert add(D(2026, 2, 14), 1) == D(2026, 2, 24)
    assert add(D(2026, 2, 27), 1) == D(2026, 2, 28)
    assert add(D(2026, 2, 12), 10) == D(2026, 3, 4)  # 13, 14, 24, 25, 26, 27, 28 Feb, 2, 3, 4 Mar
    assert cal.working_days_in(D(2026, 2, 13), D(2026, 3, 2)) == 2 + 4 + 1 + 1  # 13, 14; 24-27; 28; 2 Mar


def test_vectorised_matches_a_day_by_day_walk_on_chinese_calendar(cal: FactoryCalendar) -> None:
    rng = np.random.default_rng(7)
    starts = np.datetime64("2024-01-01") + rng.integers(0, 365 * 2 + 200, 400)
    counts = rng.integers(0, 40, 400)
    got = cal.add_working_days(starts, counts)

    def walk(day: dt.date, n: int) -> dt.date:
        while not chinese_calendar.is_workday(day):
            day += dt.timedelta(days=1)
        while n:
            day += dt.timedelta(days=1)
            n -= chinese_calendar.is_workday(day)
        return day

    expected = [walk(s.item(), int(n)) for s, n in zip(starts, counts, strict=True)]
    assert [g.item() for g in got] == expected


def test_series_input_keeps_nat_and_shape(cal: FactoryCalendar) -> None:
    dates = pd.Series(pd.to_datetime(["2025-09-30 18:30", None, "2026-02-13 08:00"]))
    got = cal.add_working_days(dates, [1, 3, 1])
    assert got.dtype == np.dtype("datetime64[D]")
    assert (
        got[0] == np.datetime64("2025-10-09") and np.isnat(got[1]) and got[2] == np.datetime64("2026-02-14")
    )
    with pytest.raises(DataValidationError, match="must be >= 0"):
        cal.add_working_days(dates, -1)


def test_factory_shutdown_is_never_worked_even_on_a_make_up_day() -> None:
    cal = FactoryCalendar(
        CalendarConfig(
            shutdowns=(
                DateRange(D(2025, 7, 28), D(2025, 8, 8), "summer maintenance"),
                DateRange(D(2025, 10, 11), D(2025, 10, 11), "boiler inspection"),
            )
        )
    )
    assert cal.add_working_days_to(D(2025, 7, 25), 1) == D(2025, 8, 11)
    assert cal.working_days_in(D(2025, 7, 28), D(2025, 8, 8)) == 0
    assert cal.add_working_days_to(D(2025, 10, 10), 1) == D(2025, 10, 13)  # the make-up Saturday is off
    plain = FactoryCalendar()
    assert plain.add_working_days_to(D(2025, 7, 25), 1) == D(2025, 7, 28)


def test_shutdown_across_new_year() -> None:
    cal = FactoryCalendar(CalendarConfig(shutdowns=(DateRange(D(2025, 12, 29), D(2026, 1, 9)),)))
    # 2026-01-01..03 is the statutory holiday and 4 Jan (Sun) a make-up day; all inside the shutdown.
    assert cal.add_working_days_to(D(2025, 12, 26), 1) == D(2026, 1, 12)


def test_unknown_year_is_a_config_error_naming_the_year(cal: FactoryCalendar) -> None:
    _, last = min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year
    unknown = last + 1
    with pytest.raises(ConfigError) as err:
        cal.add_working_days_to(D(unknown, 3, 2), 1)
    message = str(err.value)
    assert str(unknown) in message and "year_overrides" in message
    # Crossing into the unknown year from a known one is refused too, not silently weekend-only.
    with pytest.raises(ConfigError, match=str(unknown)):
        cal.add_working_days_to(D(last, 12, 28), 10)


def test_year_override_makes_an_unknown_year_usable() -> None:
    year = max(chinese_calendar.holidays).year + 1
    jan1 = D(year, 1, 1)
    first_saturday = jan1 + dt.timedelta(days=(5 - jan1.weekday()) % 7)
    override = YearOverride(
        year=year,
        holidays=frozenset({D(year, 1, 5), D(year, 1, 6)} - {first_saturday}),
        workdays=frozenset({first_saturday}),
    )
    cal = FactoryCalendar(CalendarConfig(year_overrides=(override,)))
    days = pd.date_range(D(year, 1, 1), D(year, 1, 31))
    working = {d.date() for d, w in zip(days, cal.is_working_day(days), strict=True) if w}
    expected = {
        d.date()
        for d in days
        if (d.weekday() < 5 or d.date() == first_saturday) and d.date() not in override.holidays
    }
    assert working == expected
    # And a count from the last known year into it now works.
    assert cal.add_working_days_to(D(year - 1, 12, 31), 1) > D(year - 1, 12, 31)


def test_override_on_a_known_year_corrects_the_library() -> None:
    fix = YearOverride(year=2025, holidays=frozenset({D(2025, 10, 9)}), workdays=frozenset({D(2025, 10, 4)}))
    cal = FactoryCalendar(CalendarConfig(year_overrides=(fix,)))
    assert cal.add_working_days_to(D(2025, 10, 3), 0) == D(2025, 10, 4)
    assert cal.add_working_days_to(D(2025, 10, 4), 1) == D(2025, 10, 10)


def test_six_day_factory_works_saturdays_but_not_holidays() -> None:
    cal = FactoryCalendar(CalendarConfig(rest_weekdays=(6,)))
    assert cal.add_working_days_to(D(2025, 9, 19), 1) == D(2025, 9, 20)  # Saturday worked
    assert cal.add_working_days_to(D(2025, 9, 30), 1) == D(2025, 10, 9)  # National Day still off


def test_config_mistakes_are_refused_with_a_reason() -> None:
    with pytest.raises(ConfigError, match="before it starts"):
        DateRange(D(2025, 8, 8), D(2025, 7, 28), "summer")
    with pytest.raises(ConfigError, match="another year"):
        YearOverride(year=2027, holidays=frozenset({D(2026, 1, 1)}))
    with pytest.raises(ConfigError, match="two overrides"):
        CalendarConfig(year_overrides=(YearOverride(2027), YearOverride(2027)))
    with pytest.raises(ConfigError, match="holiday and as workday"):
        YearOverride(year=2027, holidays=frozenset({D(2027, 2, 6)}), workdays=frozenset({D(2027, 2, 6)}))

"""The factory working calendar: weekends, Chinese statutory holidays, make-up workdays, shutdowns.

Statutory rest days and make-up workdays (调休) come from chinese-calendar. Each year's data only
exists once the State Council has published it, so a year the library does not know is refused
with a :class:`~hub.errors.ConfigError` unless the config supplies a :class:`YearOverride` for it.
Factory shutdowns (年休, 停产检修) are removed last and win over everything, make-up days included.

Day arithmetic is vectorised: the calendar keeps a sorted array of working days (as day numbers) and
answers "n working days after d" for a whole column with one ``numpy.searchsorted`` call.

Convention (the same as ``numpy.busday_offset(..., roll="forward")``): counting starts on the first
working day on or after ``d``; adding ``n`` moves ``n`` working days on from there. So ``n = 0`` rolls a
rest day forward to the next working day, and adding ``a`` then ``b`` equals adding ``a + b``, which
lets lead time, handling and shipping be added in one step or in several with the same result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

import chinese_calendar
import numpy as np
import numpy.typing as npt

from hub.errors import ConfigError, DataValidationError
from hub.promises.models import CalendarConfig

DayArray = npt.NDArray[np.datetime64]
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _library_version() -> str:
    try:
        return version("chinese-calendar")
    except PackageNotFoundError:  # pragma: no cover - installed from source without metadata
        return "unknown"


def _library_years() -> tuple[int, int]:
    known = chinese_calendar.holidays.keys()
    return min(known).year, max(known).year


def _to_days(dates: object) -> DayArray:
    """Any date-like scalar or array (date, datetime64, pandas Series/Index) as ``datetime64[D]``."""
    to_numpy = getattr(dates, "to_numpy", None)
    if to_numpy is not None:
        dates = to_numpy()
    return np.asarray(dates, dtype="datetime64[D]")


def _year_of(day_numbers: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return day_numbers.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


class FactoryCalendar:
    """Working days of one factory, built year by year on first use and cached.

    Args:
        config: overrides, shutdowns and weekly rest days; the default is a plain Mon-Fri factory
            on the statutory calendar.
    """

    def __init__(self, config: CalendarConfig | None = None) -> None:
        self.config = config or CalendarConfig()
        self._masks: dict[int, npt.NDArray[np.bool_]] = {}
        self._lo = 0
        self._hi = -1
        self._work: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    # --- building -----------------------------------------------------------------------------
    def _year_mask(self, year: int) -> npt.NDArray[np.bool_]:
        """True for each working day of ``year`` (index 0 = 1 January)."""
        first = np.datetime64(f"{year:04d}-01-01", "D")
        days = np.arange(first, np.datetime64(f"{year + 1:04d}-01-01", "D"))
        weekday = (days.astype(np.int64) + _EPOCH_WEEKDAY) % 7
        mask = ~np.isin(weekday, np.asarray(self.config.rest_weekdays, dtype=np.int64))

        def set_days(values: Iterable[dt.date], working: bool) -> None:
            offsets = [(d - dt.date(year, 1, 1)).days for d in values if d.year == year]
            mask[np.asarray(offsets, dtype=np.int64)] = working

        override = self.config.override_for(year)
        lo, hi = _library_years()
        if lo <= year <= hi:
            set_days(chinese_calendar.holidays.keys(), False)
            set_days(chinese_calendar.workdays.keys(), True)
        elif override is None:
            raise ConfigError(
                f"factory calendar: chinese-calendar {_library_version()} has no statutory holidays for "
                f"{year} (it knows {lo}-{hi}). Add year {year} to the calendar's year_overrides with "
                "the holidays and make-up workdays (调休) of the State Council notice, or upgrade "
                "chinese-calendar.",
                context={"year": year, "library_years": (lo, hi)},
            )
        if override is not None:
            set_days(override.holidays, False)
            set_days(override.workdays, True)
        for shutdown in self.config.shutdowns:
            start = max(shutdown.start, dt.date(year, 1, 1))
            end = min(shutdown.end, dt.date(year, 12, 31))
            if start <= end:
                mask[(start - dt.date(year, 1, 1)).days : (end - dt.date(year, 1, 1)).days + 1] = False
        return mask

    def _ensure(self, lo: int, hi: int) -> None:
        """Make the working-day index cover the whole years ``lo``..``hi``."""
        if self._lo <= lo and hi <= self._hi:
            return
        lo, hi = (lo, hi) if self._hi < self._lo else (min(lo, self._lo), max(hi, self._hi))
        parts = []
        for year in range(lo, hi + 1):
            if year not in self._masks:
                self._masks[year] = self._year_mask(year)
            first = np.datetime64(f"{year:04d}-01-01", "D").astype(np.int64)
            parts.append(np.flatnonzero(self._masks[year]).astype(np.int64) + first)
        self._work = np.concatenate(parts)
        self._lo, self._hi = lo, hi

    # --- queries ------------------------------------------------------------------------------
    def add_working_days(self, dates: object, days: int | npt.ArrayLike) -> DayArray:
        """``days`` working days after each of ``dates`` (vectorised; NaT stays NaT).

        Args:
            dates: a date, or an array/Series of dates (any datetime64 unit; the time of day is dropped).
            days: a whole number >= 0, or one per date.

        Returns:
            ``datetime64[D]`` array shaped like ``dates``; every non-NaT result is a working day.

        Raises:
            ConfigError: a year the calendar must cross is unknown to chinese-calendar and has no override.
            DataValidationError: a day count is negative.
        """
        d = _to_days(dates)
        n = np.broadcast_to(np.asarray(days, dtype=np.int64), d.shape)
        if (n < 0).any():
            raise DataValidationError(
                f"working-day offsets must be >= 0, got {int(n.min())}; check lead times and day counts"
            )
        out = np.full(d.shape, np.datetime64("NaT"), dtype="datetime64[D]")
        valid = ~np.isnat(d)
        if not valid.any():
            return out
        di = d[valid].astype(np.int64)
        ni = n[valid]
        lo, hi = int(_year_of(di.min())), int(_year_of(di.max()))
        while True:
            self._ensure(lo, hi)
            idx = np.searchsorted(self._work, di, side="left") + ni
            if idx.size == 0 or int(idx.max()) < self._work.size:
                break
            hi = self._hi + 1  # the offset runs past the index: extend it by one year and retry
        out[valid] = self._work[idx].astype("datetime64[D]")
        return out

    def add_working_days_to(self, day: dt.date, days: int) -> dt.date:
        """Scalar form of :meth:`add_working_days` for one ``datetime.date``."""
        result = self.add_working_days(np.datetime64(day, "D"), days).item()
        if not isinstance(result, dt.date):  # NaT cannot come from a real date; keep mypy honest
            raise TypeError(f"no working day computed for {day!r}")
        return result

    def is_working_day(self, dates: object) -> npt.NDArray[np.bool_]:
        """True where the date is a working day (vectorised; NaT gives False)."""
        d = _to_days(dates)
        out = np.zeros(d.shape, dtype=bool)
        valid = ~np.isnat(d)
        if valid.any():
            di = d[valid].astype(np.int64)
            self._ensure(int(_year_of(di.min())), int(_year_of(di.max())))
            idx = np.searchsorted(self._work, di, side="left")
            hit = idx < self._work.size
            hit[hit] = self._work[idx[hit]] == di[hit]
            out[valid] = hit
        return out

    def working_days_in(self, start: dt.date, end: dt.date) -> int:
        """Number of working days from ``start`` to ``end``, both included (0 if end < start)."""
        if end < start:
            return 0
        self._ensure(start.year, end.year)
        lo = np.searchsorted(self._work, np.datetime64(start, "D").astype(np.int64), side="left")
        hi = np.searchsorted(self._work, np.datetime64(end, "D").astype(np.int64), side="right")
        return int(hi - lo)

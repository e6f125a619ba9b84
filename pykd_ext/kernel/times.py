"""Windows time values as text: FILETIME stamps as ISO-8601 UTC, tick counts as durations.

Why one module: every record carries create/exit times in two forms (`*_raw` FILETIME integer and
ISO text) and WinDbg-shaped text shows thread times as `hh:mm:ss.mmm`; the conversions must agree
everywhere and never raise on garbage (a corrupt stamp becomes None, not a crash).

Format facts: a FILETIME counts 100-nanosecond intervals since 1601-01-01 00:00 UTC (Microsoft,
"FILETIME structure", minwinbase.h).
"""
from typing import Any, NamedTuple, Optional, Tuple

FILETIME_UNITS_PER_SECOND = 10000000
_UNITS_PER_DAY = 86400 * FILETIME_UNITS_PER_SECOND
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible
    Low-Level Date Algorithms", days_from_civil)."""
    if month <= 2:                   # years counted from March: January, February end the year before
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> Tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01 (the inverse, civil_from_days)."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


#: 1601-01-01, the FILETIME epoch, in days since 1970-01-01
_EPOCH_DAYS = _days_from_civil(1601, 1, 1)
#: the last FILETIME shown as a date (9999-12-31 23:59:59, where ISO-8601's four-digit years end)
_MAX_FILETIME = (((_days_from_civil(9999, 12, 31) - _EPOCH_DAYS) * 86400 + 86399)
                 * FILETIME_UNITS_PER_SECOND)


class UtcMoment(NamedTuple):
    """A FILETIME as calendar fields (UTC)."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    microsecond: int
    weekday: int            # Monday = 0


def filetime_moment(value: Any) -> Optional[UtcMoment]:
    """The UTC calendar fields of a FILETIME, or None for 0, negatives, non-ints and values past
    the year 9999.

    Why integer arithmetic and not `datetime`: it is exact over the whole range and importing
    `datetime` was ~2 ms of every command's start-up; tests check it against `datetime`."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value > _MAX_FILETIME:
        return None
    days, rest = divmod(value, _UNITS_PER_DAY)
    seconds, units = divmod(rest, FILETIME_UNITS_PER_SECOND)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    year, month, day = _civil_from_days(days + _EPOCH_DAYS)
    return UtcMoment(year, month, day, hour, minute, second, units // 10, (days + _EPOCH_DAYS + 3) % 7)


def filetime_to_iso(value: Any) -> Optional[str]:
    """`2023-05-01T10:20:30.123456+00:00` (always with microseconds), or None (see above)."""
    m = filetime_moment(value)
    if m is None:
        return None
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (m.year, m.month, m.day, m.hour, m.minute,
                                                      m.second, m.microsecond)


def filetime_to_windbg(value: Any) -> str:
    """WinDbg's `Mon May  1 10:20:30.123 2023 (UTC + 0:00)` style, or `(none)`."""
    m = filetime_moment(value)
    if m is None:
        return "(none)"
    return "%s %s %2d %02d:%02d:%02d.%03d %d (UTC + 0:00)" % (
        _WEEKDAYS[m.weekday], _MONTHS[m.month - 1], m.day, m.hour, m.minute, m.second,
        m.microsecond // 1000, m.year)


def duration_100ns(value: int) -> str:
    """A duration in 100 ns units as WinDbg prints thread times: `00:00:01.250` (hours may grow)."""
    value = max(0, int(value))
    millis = value // 10000
    seconds, millis = divmod(millis, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return "%02d:%02d:%02d.%03d" % (hours, minutes, seconds, millis)


def ticks_text(ticks: Any, time_increment: Optional[int]) -> str:
    """Kernel/user time (clock ticks) as a duration when the tick length is known, else `N ticks`."""
    if not isinstance(ticks, int):
        return str(getattr(ticks, "marker", ticks))
    if time_increment:
        return duration_100ns(ticks * time_increment)
    return "%d ticks" % ticks

"""Windows time values as text: FILETIME stamps as ISO-8601 UTC, tick counts as durations.

Why one module: every record carries create/exit times in two forms (`*_raw` FILETIME integer and
ISO text) and WinDbg-shaped text shows thread times as `hh:mm:ss.mmm`; the conversions must agree
everywhere and never raise on garbage (a corrupt stamp becomes None, not a crash).

Format facts: a FILETIME counts 100-nanosecond intervals since 1601-01-01 00:00 UTC (Microsoft,
"FILETIME structure", minwinbase.h).
"""
import datetime
from typing import Any, Optional

FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)
FILETIME_UNITS_PER_SECOND = 10000000
#: datetime's own upper bound (year 9999) in FILETIME units; larger values are not dates.
_MAX_FILETIME = int((datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)
                     - FILETIME_EPOCH).total_seconds()) * FILETIME_UNITS_PER_SECOND


def filetime_to_datetime(value: Any) -> Optional[datetime.datetime]:
    """The UTC datetime of a FILETIME, or None for 0, negatives, non-ints and out-of-range values."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value > _MAX_FILETIME:
        return None
    return FILETIME_EPOCH + datetime.timedelta(microseconds=value // 10)


def filetime_to_iso(value: Any) -> Optional[str]:
    """`2023-05-01T10:20:30.123456+00:00` (always with microseconds), or None (see above)."""
    moment = filetime_to_datetime(value)
    if moment is None:
        return None
    return moment.isoformat(timespec="microseconds")


def filetime_to_windbg(value: Any) -> str:
    """WinDbg's `Mon May  1 10:20:30.123 2023 (UTC + 0:00)` style, or `(none)`."""
    moment = filetime_to_datetime(value)
    if moment is None:
        return "(none)"
    return "%s %s %2d %s.%03d %d (UTC + 0:00)" % (
        moment.strftime("%a"), moment.strftime("%b"), moment.day, moment.strftime("%H:%M:%S"),
        moment.microsecond // 1000, moment.year)


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

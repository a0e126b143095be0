"""The bureau's calendar: hours and local natural days (自然日), in one place.

Two views of the same days:
- by date, in any IANA zone (the reports' configurable `reports.timezone`): day_start(),
  day_hours() (24 hours, or 23/25 on a DST change), date_of(), hour_offset_s();
- by timestamp, for the stream (alert windows, HJ 212 uplink): hour_start(), day_start_at(),
  day_label(), hour_label(). They default to CST, Beijing time as a fixed UTC+8 offset, which
  is the clock of the national standards (GB 3095, HJ 212) and equals the default zone
  Asia/Shanghai for every timestamp envnet handles (China has kept UTC+8 without DST since
  1991); for a fixed offset the day arithmetic is integer math, cheap on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

HOUR = 3600
DAY = 86400
DEFAULT_TIMEZONE = "Asia/Shanghai"  # the bureau's zone unless reports.timezone says otherwise
CST = timezone(timedelta(hours=8), "CST")


# -- by date, in a zone ---------------------------------------------------------------------
def day_start(d: date, zone: tzinfo) -> int:
    """Start (epoch s) of local day d."""
    return int(datetime.combine(d, time(), zone).timestamp())


def day_hours(d: date, zone: ZoneInfo) -> list[int]:
    """The hour starts (epoch s) of local day d: 24, or 23/25 on a DST change."""
    return list(range(day_start(d, zone), day_start(d + timedelta(days=1), zone), HOUR))


def days(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def hour_offset_s(zone: ZoneInfo, d: date) -> int:
    """Offset of local clock hours from UTC hours (0 for whole-hour zones like UTC+8)."""
    off = datetime.combine(d, time(), zone).utcoffset() or timedelta()
    return int(off.total_seconds()) % HOUR


def date_of(ts: float, zone: tzinfo) -> date:
    return datetime.fromtimestamp(ts, zone).date()


def month_of(d: date) -> str:
    return d.strftime("%Y-%m")


# -- by timestamp ---------------------------------------------------------------------------
def hour_start(ts: float) -> int:
    """Start (epoch s) of the clock hour containing ts (UTC hours are local hours in UTC+8)."""
    return int(ts // HOUR) * HOUR


def day_start_at(ts: float, zone: tzinfo = CST) -> int:
    """Start (epoch s) of the local day containing ts."""
    if isinstance(zone, timezone):  # a fixed offset: integer arithmetic
        off = int(zone.utcoffset(None).total_seconds())
        return int((ts + off) // DAY) * DAY - off
    return day_start(date_of(ts, zone), zone)


def day_label(start: float, zone: tzinfo = CST) -> str:
    """The local date of a day start, ISO: 2026-01-01."""
    return date_of(start, zone).isoformat()


def hour_label(start: float, zone: tzinfo = CST) -> str:
    """An hour start as local time with its offset: 2026-01-01 14:00+08:00."""
    return datetime.fromtimestamp(start, zone).isoformat(sep=" ", timespec="minutes")

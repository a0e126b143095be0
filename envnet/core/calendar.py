"""The bureau's calendar: local natural days in the configured zone, and their clock hours."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOUR = 3600


def day_start(d: date, zone: ZoneInfo) -> int:
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


def date_of(ts: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts, zone).date()


def month_of(d: date) -> str:
    return d.strftime("%Y-%m")

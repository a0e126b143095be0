"""Bounds of the numeric query parameters every router shares, so the schema states them and
a value outside them is a 422 before it reaches SQLite (which stores 64-bit integers and
compares NaN oddly): `GET /stations?offset=261617687822842658816` once answered 500."""

from __future__ import annotations

MAX_OFFSET = 1_000_000_000  # rows a page may skip: far beyond any network's stations
MIN_UNIX_S = 0.0
MAX_UNIX_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z, the reports' last day too

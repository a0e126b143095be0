"""The station registry's meta, as readers see it.

`envnet provision` writes a station's Chinese name as `name` and its English name as
`name_en`; site files (envnet/devkit/sites/) spell the Chinese one `name_zh`. Every reader
(webhook bodies, reports, pages, the terminal views) asks here, so both spellings work and no
reader guesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def names(meta: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(Chinese name, English name) of a station, either possibly None."""
    if not meta:
        return None, None
    return meta.get("name") or meta.get("name_zh"), meta.get("name_en")

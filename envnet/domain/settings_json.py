"""Settings that are tables in TOML arrive as text from an ENVNET_* variable: one parser, one
message, for every settings section that takes such a table."""

from __future__ import annotations

import json
from typing import Any


def json_if_text(v: Any) -> Any:
    """A value given as text parsed as JSON (a clear error when it is not); others as given."""
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError as e:
            raise ValueError(f"not valid JSON: {e}") from None
    return v

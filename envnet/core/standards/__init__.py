"""Chinese national standards as data: HJ 633 AQI, GB 3095 air limits, GB 3838 water classes,
heavy-pollution episode levels. Pure functions, no I/O. See docs/standards.md."""

from envnet.core.standards.editions import (
    DEFAULT_EDITION,
    EDITIONS,
    Edition,
    UnknownEdition,
    get_edition,
)

__all__ = ["DEFAULT_EDITION", "EDITIONS", "Edition", "UnknownEdition", "get_edition"]

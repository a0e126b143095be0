"""Data review (数据审核): invalidations, calibration against reference stations, and
neighbour consistency, as pure functions (docs/review.md)."""

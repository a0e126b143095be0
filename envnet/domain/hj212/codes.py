"""envnet parameter -> HJ 212-2017 pollutant code, and envnet QC flag -> HJ 212 data flag.

The one place these facts live. Codes marked (std) are listed in docs/standards-reference.md; the
others are from the HJ 212-2017 code tables (annex B) and should be checked against the
platform's own code list before going live. Parameters with no code (air voc index, noise,
water orp) are not sent.
"""

from __future__ import annotations

# (kind, envnet parameter) -> HJ 212 code
CODES: dict[tuple[str, str], str] = {
    ("air", "pm25"): "a34004",  # (std) PM2.5
    ("air", "pm10"): "a34002",  # (std) PM10
    ("air", "so2"): "a21026",  # (std) SO2
    ("air", "no2"): "a21004",  # (std) NO2
    ("air", "co"): "a21005",  # (std) CO
    ("air", "o3"): "a05024",  # (std) O3
    ("air", "t"): "a01001",  # air temperature
    ("air", "rh"): "a01002",  # relative humidity
    ("air", "p"): "a01006",  # air pressure
    ("water", "ph"): "w01001",  # (std) pH
    ("water", "do"): "w01009",  # (std) dissolved oxygen
    ("water", "ec"): "w01014",  # (std) conductivity
    ("water", "turb"): "w01003",  # (std) turbidity
    ("water", "nh3n"): "w21003",  # (std) ammonia nitrogen
    ("water", "cod"): "w01018",  # chemical oxygen demand (w01019 is the permanganate index)
    ("water", "t"): "w01010",  # water temperature
}

# HJ 212 system type (ST) per envnet station kind
SYSTEM_TYPES: dict[str, str] = {"air": "22", "water": "21"}

# envnet QC flag -> HJ 212 per-value flag; no flag -> N
FLAGS: dict[str, str] = {
    "warmup": "D",
    "fault": "D",
    "cal": "C",
    "maint": "M",
    "range": "T",  # outside the instrument range: over limit
}
NORMAL = "N"

# A reviewer's invalidation reason (envnet.domain.review.invalidation.REASONS) -> the envnet QC
# flag the invalidated values are sent with (-> FLAGS: M, C, D). HJ 212-2017 has no "reviewed
# out" flag; local interference (a sprayed sensor, a fire next to the inlet) and "other" are
# sent as D: the value is not a measurement of the ambient air, and M or C would assert a
# maintenance or calibration that did not happen. Platforms leave M, C and D out of their
# statistics alike. docs/hj212.md "Corrections".
REVIEW_FLAGS: dict[str, str] = {
    "maintenance": "maint",
    "calibration": "cal",
    "instrument_fault": "fault",
    "local_interference": "fault",
    "other": "fault",
}


def code_for(kind: str, param: str) -> str | None:
    return CODES.get((kind, param))


def hj_flag(envnet_flag: str | None) -> str:
    return FLAGS.get(envnet_flag or "", NORMAL)

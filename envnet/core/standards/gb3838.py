"""GB 3838-2002 Environmental Quality Standards for Surface Water: classes I-V per parameter.

Table 1 (basic items) is data below, keyed by designation. Classes are integers 1..5, and 6
means worse than class V (劣V). A value is in the best class whose limit it meets; dissolved
oxygen's limits are minimums (>=), the others maximums (<=); pH must lie in 6-9 for every
class, so a pH outside 6-9 is worse than V and exceeds any target. A station's class is its
worst parameter's class. Total phosphorus has a stricter column for lakes and reservoirs, and
total nitrogen applies to lakes and reservoirs only.

Complete or provisional: a section is assessed on the basic items of its assessment set (the
national surface-water assessment method of 2011: the basic items except water temperature,
total nitrogen and faecal coliforms; an automatic station has pH, DO, CODMn, NH3-N and TP,
ASSESSMENT_ITEMS). A class from fewer of them rests on part of the set: it is provisional,
says which parameters it rests on (`basis`) and which it lacks (`missing`), and never counts
as meeting or missing a target (meets_target gives None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from envnet.core.standards.editions import DEFAULT_EDITION, designation_edition, get_edition

Waterbody = Literal["river", "lake"]  # "lake" covers lakes and reservoirs (湖、库)
Op = Literal["<=", ">=", "range"]

WORSE_THAN_V = 6
CLASS_LABELS: dict[int, tuple[str, str]] = {
    1: ("Ⅰ类", "Class I"),
    2: ("Ⅱ类", "Class II"),
    3: ("Ⅲ类", "Class III"),
    4: ("Ⅳ类", "Class IV"),
    5: ("Ⅴ类", "Class V"),
    6: ("劣Ⅴ类", "worse than Class V"),
}
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "Ⅰ": 1, "Ⅱ": 2, "Ⅲ": 3, "Ⅳ": 4, "Ⅴ": 5}

PARAM_LABELS: dict[str, tuple[str, str]] = {
    "ph": ("pH值", "pH"),
    "do": ("溶解氧", "dissolved oxygen"),
    "codmn": ("高锰酸盐指数", "permanganate index"),
    "cod": ("化学需氧量(COD)", "COD"),
    "bod5": ("五日生化需氧量(BOD5)", "BOD5"),
    "nh3n": ("氨氮(NH3-N)", "ammonia nitrogen"),
    "tp": ("总磷(以P计)", "total phosphorus"),
    "tn": ("总氮(湖、库,以N计)", "total nitrogen"),
}


@dataclass(frozen=True, slots=True)
class ParamLimits:
    op: Op
    limits: tuple[float, ...]  # classes I..V; for "range", (low, high) shared by all classes
    unit: str
    waterbodies: tuple[str, ...] = ("river", "lake")


# Table 1, basic items (mg/L unless noted). "tp_lake" is TP's lakes-and-reservoirs column.
CLASS_LIMITS: dict[str, dict[str, ParamLimits]] = {
    "GB 3838-2002": {
        "ph": ParamLimits("range", (6, 9), "pH"),
        "do": ParamLimits(">=", (7.5, 6, 5, 3, 2), "mg/L"),
        "codmn": ParamLimits("<=", (2, 4, 6, 10, 15), "mg/L"),
        "cod": ParamLimits("<=", (15, 15, 20, 30, 40), "mg/L"),
        "bod5": ParamLimits("<=", (3, 3, 4, 6, 10), "mg/L"),
        "nh3n": ParamLimits("<=", (0.15, 0.5, 1.0, 1.5, 2.0), "mg/L"),
        "tp": ParamLimits("<=", (0.02, 0.1, 0.2, 0.3, 0.4), "mg/L", ("river",)),
        "tp_lake": ParamLimits("<=", (0.01, 0.025, 0.05, 0.1, 0.2), "mg/L", ("lake",)),
        "tn": ParamLimits("<=", (0.2, 0.5, 1.0, 1.5, 2.0), "mg/L", ("lake",)),
    },
}

CLAUSE = "Table 1 (basic items)"

# The class-determining parameters an automatic water station is assessed on (standards.md,
# "Section assessment"); a station's registry entry may name its own (`assessment_params`).
ASSESSMENT_ITEMS: tuple[str, ...] = ("ph", "do", "codmn", "nh3n", "tp")


@dataclass(frozen=True, slots=True)
class WaterAssessment:
    classes: dict[str, int]  # per classified parameter
    overall: int | None  # worst class; None when no parameter was classified
    worst: tuple[str, ...]  # the parameter(s) that set the overall class
    standard: str  # "GB 3838-2002"
    edition: str  # the standard's own edition, "2002"
    required: tuple[str, ...] = ASSESSMENT_ITEMS  # the assessment set
    basis: tuple[str, ...] = ()  # the assessment-set parameters the class rests on
    missing: tuple[str, ...] = ()  # assessment-set parameters without a value

    @property
    def provisional(self) -> bool:
        """True when the class rests on fewer parameters than the assessment set."""
        return bool(self.missing)

    @property
    def complete(self) -> bool:
        return self.overall is not None and not self.missing


def _designation(edition: str) -> str:
    return get_edition(edition).water


def parse_class(value: int | str) -> int:
    """A target class as 1..5 from 3, "3", "III" or "Ⅲ"."""
    if isinstance(value, int) and 1 <= value <= 5:
        return value
    text = str(value).strip().upper().removesuffix("类").removeprefix("CLASS ").strip()
    if text.isdigit() and 1 <= int(text) <= 5:
        return int(text)
    if text in _ROMAN:
        return _ROMAN[text]
    raise ValueError(f"not a GB 3838 class I-V: {value!r}")


def param_limits(
    param: str, waterbody: Waterbody = "river", edition: str = DEFAULT_EDITION
) -> ParamLimits | None:
    """The limits that apply to `param` in this kind of water body, or None if unclassified."""
    table = CLASS_LIMITS[_designation(edition)]
    for key in (f"{param}_{waterbody}", param):
        spec = table.get(key)
        if spec is not None and waterbody in spec.waterbodies:
            return spec
    return None


def water_class(
    param: str, value: float, waterbody: Waterbody = "river", edition: str = DEFAULT_EDITION
) -> int | None:
    """Class 1..5 of one value, 6 for worse than V, None if the parameter is not classified."""
    spec = param_limits(param, waterbody, edition)
    if spec is None:
        return None
    if spec.op == "range":
        low, high = spec.limits
        return 1 if low <= value <= high else WORSE_THAN_V
    for cls, lim in enumerate(spec.limits, start=1):
        if (value <= lim) if spec.op == "<=" else (value >= lim):
            return cls
    return WORSE_THAN_V


def class_limit(
    param: str,
    cls: int,
    value: float,
    waterbody: Waterbody = "river",
    edition: str = DEFAULT_EDITION,
) -> tuple[str, float] | None:
    """(op, limit) a value must satisfy to be in class `cls`: what an alert quotes as its limit.

    For pH the bound on the side the value broke is quoted (">=" 6 or "<=" 9).
    """
    spec = param_limits(param, waterbody, edition)
    if spec is None:
        return None
    if spec.op == "range":
        low, high = spec.limits
        return (">=", low) if value < low else ("<=", high)
    return spec.op, spec.limits[cls - 1]


def assessment_set(params: object = None) -> tuple[str, ...]:
    """The assessment set from a registry value (a list, or "ph,do,...") or the default."""
    if params in (None, "", []):
        return ASSESSMENT_ITEMS
    items = params.split(",") if isinstance(params, str) else list(params)  # type: ignore[call-overload]
    out = tuple(str(p).strip() for p in items if str(p).strip())
    bad = [p for p in out if p not in PARAM_LABELS]
    if bad or not out:
        raise ValueError(f"assessment_params must name GB 3838 basic items (got {params!r})")
    return out


def classify(
    values: Mapping[str, float],
    waterbody: Waterbody = "river",
    edition: str = DEFAULT_EDITION,
    required: Sequence[str] = ASSESSMENT_ITEMS,
) -> WaterAssessment:
    """Class of a set of values: every classified parameter counts toward the worst class;
    the class is complete only when each parameter of `required` has a value."""
    classes = {}
    for param, value in values.items():
        cls = water_class(param, value, waterbody, edition)
        if cls is not None:
            classes[param] = cls
    overall = max(classes.values()) if classes else None
    worst = tuple(p for p, c in classes.items() if c == overall)
    designation = _designation(edition)
    req = tuple(required)
    return WaterAssessment(
        classes,
        overall,
        worst,
        designation,
        designation_edition(designation),
        req,
        basis=tuple(p for p in req if p in classes),
        missing=tuple(p for p in req if p not in classes),
    )


def meets_target(a: WaterAssessment, target: int | None) -> bool | None:
    """Whether a class meets its target (no worse than it); None when there is no target, no
    class, or the class is provisional: a provisional class never meets nor misses one."""
    if target is None or not a.complete or a.overall is None:
        return None
    return a.overall <= target


def class_label(cls: int) -> tuple[str, str]:
    return CLASS_LABELS[cls]

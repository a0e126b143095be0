"""Calibration of a micro station against the reference station beside it (pure).

Model (per parameter, PM2.5 and PM10 at least): a low-cost optical sensor reads the reference
concentration scaled, shifted, and inflated by humidity (particles take up water):

    micro = slope * reference + humidity * RH + offset + noise

fitted by ordinary least squares on paired hourly means (the micro station's valid hourly mean
and the reference station's for the same clock hour, with the micro station's own RH). The
noise is on the micro reading, so regressing micro on (reference, RH) is the unbiased
direction; the corrected value inverts it:

    corrected = (micro - humidity * RH - offset) / slope

Quality of a calibration on a set of pairs: n, R² of the fit, and RMSE and bias (mean of
corrected - reference) of the corrected values. A calibration is applied only while its
latest assessment passes the limits (R² at least `min_r2`, |bias| at most `max_bias`, at
least `min_pairs` pairs, slope inside `slope_range`); a failing one raises a station-fault
alert and is no longer applied (docs/review.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True, slots=True)
class Pair:
    hour: int  # hour start, epoch s
    reference: float
    micro: float
    rh: float


@dataclass(frozen=True, slots=True)
class Limits:
    min_pairs: int = 72  # three days of hourly pairs
    min_r2: float = 0.7
    max_bias: float = 5.0  # µg/m³, corrected minus reference
    slope_range: tuple[float, float] = (0.2, 5.0)


@dataclass(frozen=True, slots=True)
class Fit:
    slope: float
    humidity: float
    offset: float
    n: int
    r2: float

    def correct(self, micro: float, rh: float) -> float:
        return (micro - self.humidity * rh - self.offset) / self.slope


@dataclass(frozen=True, slots=True)
class Quality:
    n: int
    r2: float | None  # of the corrected values against the reference
    rmse: float | None
    bias: float | None
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


class CalibrationError(ValueError):
    """Too few or degenerate pairs to fit; str() says why."""


def pair_hourly(
    reference: Mapping[int, float], micro: Mapping[int, float], rh: Mapping[int, float]
) -> list[Pair]:
    """Pairs for the hours that have all three valid hourly means, oldest first."""
    return [
        Pair(h, reference[h], micro[h], rh[h])
        for h in sorted(set(reference) & set(micro) & set(rh))
    ]


def _solve3(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting for the 3x3 normal equations."""
    m = [row[:] + [rhs] for row, rhs in zip(a, b, strict=True)]
    n = len(m)
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-12:
            raise CalibrationError("degenerate pairs: reference and humidity are collinear")
        m[col], m[piv] = m[piv], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit(pairs: Sequence[Pair], min_pairs: int = 3) -> Fit:
    """Least squares micro ~ slope*reference + humidity*RH + offset."""
    n = len(pairs)
    if n < max(3, min_pairs):
        raise CalibrationError(f"{n} pairs, at least {max(3, min_pairs)} needed")
    # Centre the columns: the normal equations stay well conditioned at µg/m³ and % scales.
    mx = sum(p.reference for p in pairs) / n
    mh = sum(p.rh for p in pairs) / n
    my = sum(p.micro for p in pairs) / n
    sxx = sum((p.reference - mx) ** 2 for p in pairs)
    shh = sum((p.rh - mh) ** 2 for p in pairs)
    sxh = sum((p.reference - mx) * (p.rh - mh) for p in pairs)
    sxy = sum((p.reference - mx) * (p.micro - my) for p in pairs)
    shy = sum((p.rh - mh) * (p.micro - my) for p in pairs)
    det = sxx * shh - sxh * sxh
    if sxx <= 0 or abs(det) < 1e-9 * max(1.0, sxx * shh):
        raise CalibrationError("degenerate pairs: no spread in the reference or humidity")
    slope = (sxy * shh - shy * sxh) / det
    hum = (shy * sxx - sxy * sxh) / det
    offset = my - slope * mx - hum * mh
    ss_tot = sum((p.micro - my) ** 2 for p in pairs)
    ss_res = sum((p.micro - (slope * p.reference + hum * p.rh + offset)) ** 2 for p in pairs)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    if slope == 0:
        raise CalibrationError("the micro readings do not follow the reference (slope 0)")
    return Fit(slope, hum, offset, n, r2)


def quality(f: Fit, pairs: Sequence[Pair], limits: Limits) -> Quality:
    """How well `f` corrects these pairs, and which limits it fails."""
    n = len(pairs)
    problems = []
    if n < limits.min_pairs:
        problems.append(f"too few pairs: {n} < {limits.min_pairs}")
    lo, hi = limits.slope_range
    if not lo <= f.slope <= hi:
        problems.append(f"slope {f.slope:.3f} outside {lo}..{hi}")
    if n == 0:
        return Quality(0, None, None, None, tuple(problems))
    errs = [f.correct(p.micro, p.rh) - p.reference for p in pairs]
    bias = sum(errs) / n
    rmse = math.sqrt(sum(e * e for e in errs) / n)
    mref = sum(p.reference for p in pairs) / n
    ss_tot = sum((p.reference - mref) ** 2 for p in pairs)
    r2 = 1.0 - sum(e * e for e in errs) / ss_tot if ss_tot > 0 else None
    if r2 is None or r2 < limits.min_r2:
        problems.append(f"R² {r2 if r2 is None else round(r2, 3)} below {limits.min_r2}")
    if abs(bias) > limits.max_bias:
        problems.append(f"bias {bias:+.2f} beyond ±{limits.max_bias}")
    return Quality(n, r2, rmse, bias, tuple(problems))


@dataclass(frozen=True, slots=True)
class Window:
    """One step of the rolling check: the calibration in force and how it did."""

    start: int
    end: int
    fit: Fit | None  # the calibration in force during the window (None: none applied)
    quality: Quality | None
    refitted: bool


def rolling(pairs: Sequence[Pair], window_s: int, step_s: int, limits: Limits) -> list[Window]:
    """Walk the pairs in steps of `step_s`. The calibration in force is fitted on the
    `window_s` before a step and assessed out of sample on the step's own new pairs (the
    data it is about to correct): while it passes it is refitted on the window ending with
    that step, so slow seasonal change is followed; once it fails it is withdrawn (not
    applied) and the failure reported. A calibration never silently re-fits itself past a
    drift: a person must look at the station (docs/review.md)."""
    if not pairs:
        return []
    out: list[Window] = []
    current: Fit | None = None
    step_limits = Limits(1, limits.min_r2, limits.max_bias, limits.slope_range)
    t = pairs[0].hour + window_s
    last = pairs[-1].hour + 1
    while t < last + step_s:
        win = [p for p in pairs if t - window_s <= p.hour < t]
        if current is None:
            try:
                current = fit(win, limits.min_pairs)
            except CalibrationError:
                current = None
            q = quality(current, win, limits) if current else None
            if current is not None and q is not None and not q.ok:
                current = None
            out.append(Window(t - window_s, t, current, q, current is not None))
            if current is None and out[-1].quality is not None:
                break  # the first fit itself fails: nothing to apply
        else:
            new = [p for p in pairs if t - step_s <= p.hour < t]
            q = quality(current, new, step_limits)
            if new and not q.ok:
                out.append(Window(t - window_s, t, current, q, False))
                break  # withdrawn until a person looks
            try:
                current = fit(win, limits.min_pairs)
            except CalibrationError:
                pass
            out.append(Window(t - window_s, t, current, q, True))
        t += step_s
    return out


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def colocation(
    micro: tuple[float, float],
    references: Mapping[str, tuple[float, float]],
    max_distance_m: float,
) -> tuple[str, float] | None:
    """The nearest reference station within `max_distance_m` of a micro station, or None."""
    best = min(
        ((sid, distance_m(*micro, *pos)) for sid, pos in references.items()),
        key=lambda x: x[1],
        default=None,
    )
    return best if best is not None and best[1] <= max_distance_m else None

"""How a field is shown: its label, unit, thresholds and value mappings.

Limits come from the standards modules, never from numbers written here: GB 3095-2012 air
limits (envnet.core.standards.gb3095), HJ 633-2012 AQI categories and colours
(envnet.core.standards.hj633), GB 3838-2002 water classes (envnet.core.standards.gb3838).
Units and the parameter lists come from the MQTT contract (envnet/core/contract/v1.json).
The standards edition is a parameter throughout.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from envnet.core import contract
from envnet.core.standards import DEFAULT_EDITION, gb3095, gb3838, get_edition, hj633
from envnet.devkit.grafana.builder import steps

GRADE = 2  # GB 3095 Grade II: residential, commercial and industrial areas (the city)

# Display levels that are not in any standard. TODO(envnet/domain/alerts/rules.py): read the battery
# levels from AlertSettings (battery_low_v, battery_critical_v; same values today) once the alert
# engine is committed; the weak-signal level is a display hint only, no rule uses RSSI.
DISPLAY_LEVELS = {"battery_v_critical": 3.2, "battery_v_low": 3.4, "rssi_dbm_weak": -85.0}

# Contract units -> Grafana unit ids ("suffix:" units render the text as written).
UNIT_IDS = {
    "ug/m3": "suffix:µg/m³",
    "mg/m3": "suffix:mg/m³",
    "degC": "celsius",
    "%": "humidity",
    "hPa": "pressurehpa",
    "index": "none",
    "dB(A)": "suffix:dB(A)",
    "pH": "none",
    "mg/L": "suffix:mg/L",
    "uS/cm": "suffix:µS/cm",
    "NTU": "suffix:NTU",
    "mV": "mvolt",
}

# Labels for parameters the standards modules do not name (Chinese first, English beside it).
_OTHER_LABELS = {
    "t": ("温度", "temperature"),
    "rh": ("相对湿度", "relative humidity"),
    "p": ("气压", "pressure"),
    "voc": ("VOC指数", "VOC index"),
    "noise": ("噪声", "noise"),
    "ec": ("电导率", "conductivity"),
    "turb": ("浊度", "turbidity"),
    "orp": ("氧化还原电位", "ORP"),
}

# Display colours for GB 3838 classes 1..6 (not from the standard; best blue, worst red).
_CLASS_COLOURS = ("#1f78c1", "#37872d", "#73bf69", "#fade2a", "#ff9830", "#c4162a")

WINDOW_TEXT = {"1h": "1 h", "8h": "8 h", "24h": "24 h"}


# --- Names and units --------------------------------------------------------------------------


def label(param: str) -> str:
    """ "<Chinese> <English>" for a contract parameter."""
    zh, en = (
        hj633.POLLUTANT_LABELS.get(param)
        or gb3838.PARAM_LABELS.get(param)
        or _OTHER_LABELS.get(param)
        or (param, param)
    )
    return f"{zh} {en}"


def unit(kind: str, param: str) -> str:
    """The Grafana unit id for the contract's unit of `param`."""
    spec = contract.param_spec(kind, param) or {}
    return UNIT_IDS.get(spec.get("unit", ""), "none")


def params(kind: str) -> list[str]:
    """The contract's parameters of a station kind, in contract order."""
    return list(contract.SPEC["kinds"][kind]["params"])


def get_designation(family: str, edition: str = DEFAULT_EDITION) -> str:
    """The standard's designation in `edition`, e.g. "GB 3095-2012" for family "air_limits"."""
    return getattr(get_edition(edition), family)


# --- AQI (HJ 633) -----------------------------------------------------------------------------


def aqi_categories(edition: str) -> tuple[hj633.Category, ...]:
    return hj633.CATEGORIES[get_designation("aqi", edition)]


def aqi_thresholds(edition: str) -> db.ThresholdsConfig:
    cats = aqi_categories(edition)
    return steps(cats[0].rgb, *((c.aqi_min, c.rgb) for c in cats[1:]))


def aqi_category_mappings(edition: str) -> list[dm.ValueMapping]:
    out: list[dm.ValueMapping] = []
    for n, c in enumerate(aqi_categories(edition)):
        out.append(
            dm.RangeMap(
                options=dm.DashboardRangeMapOptions(
                    from_val=c.aqi_min,
                    to=c.aqi_max if c.aqi_max is not None else 100000,
                    result=dm.ValueMappingResult(
                        text=f"{c.name_zh} {c.name_en}", color=c.rgb, index=n
                    ),
                )
            )
        )
    return out


# --- Air limits (GB 3095) ---------------------------------------------------------------------


def air_limits(param: str, edition: str) -> list[tuple[str, float]]:
    """(window, limit) from GB 3095 for the short windows a dashboard can show, lowest first."""
    out = []
    for window in gb3095.windows_for(param, GRADE, edition):
        if window == "annual":
            continue
        lim = gb3095.limit(param, window, GRADE, edition)
        if lim is not None:
            out.append((window, float(lim)))
    return sorted(out, key=lambda wl: wl[1])


def air_limit_thresholds(param: str, edition: str) -> db.ThresholdsConfig:
    colour = {"1h": "red", "8h": "orange", "24h": "orange"}
    return steps("green", *((lim, colour[w]) for w, lim in air_limits(param, edition)))


def air_limit_text(param: str, edition: str) -> str:
    parts = [
        f"{WINDOW_TEXT[w]} mean {lim:g} {gb3095.UNITS[param]}"
        for w, lim in air_limits(param, edition)
    ]
    return f"{get_designation('air_limits', edition)} Grade II limits: " + "; ".join(parts)


# --- Water classes (GB 3838) ------------------------------------------------------------------


def water_thresholds(param: str, edition: str) -> tuple[db.ThresholdsConfig, str] | None:
    """The class limits of a river parameter as thresholds, and as text; None if it has none."""
    spec = gb3838.param_limits(param, "river", edition)
    if spec is None:
        return None
    worst = _CLASS_COLOURS[-1]
    if spec.op == "range":
        low, high = spec.limits
        return steps("red", (low, "green"), (high, "red")), f"must lie in {low:g}-{high:g}"
    if spec.op == ">=":  # dissolved oxygen: a minimum per class, class V's lowest
        levels = [(lim, _CLASS_COLOURS[4 - i]) for i, lim in enumerate(reversed(spec.limits))]
        return steps(worst, *levels), ", ".join(
            f"{gb3838.class_label(c)[0]} >= {lim:g}" for c, lim in enumerate(spec.limits, 1)
        )
    # Equal limits (COD: I and II are both 15) keep the worse class: Grafana takes the last step.
    by_value = {lim: _CLASS_COLOURS[i + 1] for i, lim in enumerate(spec.limits)}
    return steps(_CLASS_COLOURS[0], *by_value.items()), ", ".join(
        f"{gb3838.class_label(c)[0]} <= {lim:g}" for c, lim in enumerate(spec.limits, 1)
    )


def class_mappings() -> list[dm.ValueMapping]:
    """Class numbers 1..6 shown as Ⅰ..劣Ⅴ in their colours."""
    return [
        dm.ValueMap(
            options={
                str(c): dm.ValueMappingResult(
                    text=f"{gb3838.class_label(c)[0]}", color=_CLASS_COLOURS[c - 1], index=c - 1
                )
                for c in range(1, gb3838.WORSE_THAN_V + 1)
            }
        )
    ]


def class_thresholds() -> db.ThresholdsConfig:
    worst = gb3838.WORSE_THAN_V
    return steps(_CLASS_COLOURS[0], *((c, _CLASS_COLOURS[c - 1]) for c in range(2, worst + 1)))


# --- Station health ---------------------------------------------------------------------------


def battery_thresholds() -> db.ThresholdsConfig:
    return steps(
        "red",
        (DISPLAY_LEVELS["battery_v_critical"], "orange"),
        (DISPLAY_LEVELS["battery_v_low"], "green"),
    )


def rssi_thresholds() -> db.ThresholdsConfig:
    return steps("red", (DISPLAY_LEVELS["rssi_dbm_weak"], "green"))


def online_mappings() -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                "1": dm.ValueMappingResult(text="在线 online", color="green", index=0),
                "0": dm.ValueMappingResult(text="离线 offline", color="red", index=1),
            }
        )
    ]

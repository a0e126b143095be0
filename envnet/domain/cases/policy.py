"""The slip policy as data: when each slip of a case is due, per rule and severity, and which
alerts open a case. The table is envnet/domain/cases/policy.json (versioned; a deployment may
point `cases.policy_file` at its own copy); docs/cases.md justifies the defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from envnet.domain.alerts.rules import RULES, SEVERITIES, severity_rank

STEP_KEYS = (
    "notice_after_s",
    "warning_after_s",
    "sign_within_s",
    "report_within_s",
    "urge_after_s",
    "urge_every_s",
    "urge_max",
)


class PolicyError(ValueError):
    """str() names the key that is wrong."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """The deadlines of one (rule, severity), in seconds (urge_max is a count)."""

    notice_after_s: float
    warning_after_s: float
    sign_within_s: float
    report_within_s: float
    urge_after_s: float
    urge_every_s: float
    urge_max: int


@dataclass(frozen=True, slots=True)
class OpenPolicy:
    rules: frozenset[str]
    min_severity: str
    station_classes: frozenset[str]

    def opens(self, rule: str, severity: str, station_class: str | None) -> bool:
        if rule not in self.rules or severity not in SEVERITIES:
            return False
        if severity_rank(severity) < severity_rank(self.min_severity):
            return False
        return not self.station_classes or (station_class or "") in self.station_classes


@dataclass(frozen=True)
class Policy:
    version: str
    defaults: dict[str, float]
    rules: dict[str, dict[str, dict[str, float]]]
    open_cases: OpenPolicy
    reopen_window_s: float

    def schedule(self, rule: str, severity: str) -> Schedule:
        """Most specific wins: rule+severity, rule+*, *+severity, then the defaults."""
        merged = dict(self.defaults)
        for r, s in (("*", severity), (rule, "*"), (rule, severity)):
            merged.update(self.rules.get(r, {}).get(s, {}))
        values = {f.name: float(merged[f.name]) for f in fields(Schedule)}
        return Schedule(**{**values, "urge_max": int(values["urge_max"])})  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        try:
            version = str(d["version"])
            defaults = {k: float(d["defaults"][k]) for k in STEP_KEYS}
        except (KeyError, TypeError, ValueError) as e:
            keys = ",".join(STEP_KEYS)
            raise PolicyError(f"policy: version and defaults.{{{keys}}} needed: {e}") from None
        rules = d.get("rules") or {}
        for rule, by_sev in rules.items():
            if rule != "*" and rule not in RULES:
                raise PolicyError(f"policy: rules.{rule}: unknown rule")
            for sev, steps in by_sev.items():
                if sev != "*" and sev not in SEVERITIES:
                    raise PolicyError(f"policy: rules.{rule}.{sev}: unknown severity")
                for k, v in steps.items():
                    if k not in STEP_KEYS or not isinstance(v, int | float) or v < 0:
                        raise PolicyError(f"policy: rules.{rule}.{sev}.{k}: unknown or negative")
        for k, v in defaults.items():
            if v < 0:
                raise PolicyError(f"policy: defaults.{k}: must not be negative")
        oc = d.get("open_cases") or {}
        open_rules = frozenset(oc.get("rules") or [])
        unknown = sorted(open_rules - set(RULES))
        if unknown:
            raise PolicyError(f"policy: open_cases.rules: unknown {', '.join(unknown)}")
        min_sev = str(oc.get("min_severity", "low"))
        if min_sev not in SEVERITIES:
            raise PolicyError(f"policy: open_cases.min_severity: one of {', '.join(SEVERITIES)}")
        return cls(
            version=version,
            defaults=defaults,
            rules=rules,
            open_cases=OpenPolicy(open_rules, min_sev, frozenset(oc.get("station_classes") or [])),
            reopen_window_s=float(d.get("reopen_window_s", 172800)),
        )


def load_policy(path: str | Path | None = None) -> Policy:
    """The packaged table, or the file at `path`."""
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("envnet.domain.cases").joinpath("policy.json").read_text("utf-8")
    try:
        return Policy.from_dict(json.loads(text))
    except ValueError as e:
        raise PolicyError(
            str(e) if isinstance(e, PolicyError) else f"policy: not JSON: {e}"
        ) from None

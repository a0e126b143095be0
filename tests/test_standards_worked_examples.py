"""The worked examples of docs/standards.md ("Worked examples at breakpoint edges") are tests:
each row's inputs go through hj633 and must give the row's AQI, primary indicators and
category, which were computed by hand from HJ 633-2012 Table 1. The docs and the code cannot
disagree without this failing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envnet.core.standards import hj633

DOC = Path(__file__).resolve().parents[1] / "docs" / "standards.md"
ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}


def _rows() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Worked examples at breakpoint edges", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].isdigit():
            rows.append(cells)
    return rows


ROWS = _rows()


def test_the_docs_have_the_examples() -> None:
    assert len(ROWS) >= 10
    reports = {r[1] for r in ROWS}
    assert {"daily", "real-time", "real-time, realtime_pm=24h"} <= reports


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_worked_example(row: list[str]) -> None:
    _, report, inputs, _, aqi, primary, category = row
    c = {k.strip(): float(v) for k, v in (kv.split("=") for kv in inputs.split(","))}
    if report == "daily":
        conc = {p: v for p, v in c.items() if p in hj633.POLLUTANTS}
        r = hj633.daily_aqi(conc, c.get("o3_8h"), c.get("o3_1h_max"))
    else:
        basis = "24h" if "realtime_pm=24h" in report else "1h"
        conc = {p: v for p, v in c.items() if p in hj633.POLLUTANTS}
        m24 = {k[:-4]: v for k, v in c.items() if k.endswith("_24h")}
        r = hj633.hourly_aqi(conc, o3_8h=c.get("o3_8h"), means_24h=m24, pm_basis=basis)
        # every indicator given is published, whichever PM entered the AQI
        assert set(r.concentrations) == set(c)
    assert r.aqi == int(aqi)
    want = () if primary == "-" else tuple(p.strip() for p in primary.split(","))
    assert r.primary == want
    roman, zh = category.split()
    assert r.category is not None
    assert (r.category.level, r.category.name_zh) == (ROMAN[roman], zh)


def test_example_rows_are_not_all_alike() -> None:
    # a table of one repeated row would pass trivially: the examples span the categories
    assert len({r[6] for r in ROWS}) >= 5 and re.search(r"o3_8h", " ".join(r[5] for r in ROWS))

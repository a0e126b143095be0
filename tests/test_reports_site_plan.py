"""The demo's site file follows the plan where the plan names rivers, sections, targets and
indicators, and says where its other names come from (issue 17)."""

from __future__ import annotations

import json
from importlib import resources

from envnet.core.standards import gb3838
from envnet.domain.reports import rules


def _site() -> dict:
    text = resources.files("envnet.devkit").joinpath("sites/shenyang.json").read_text("utf-8")
    return json.loads(text)


def test_rivers_and_sections_follow_the_plan() -> None:
    site = _site()
    water = {s["id"]: s for s in site["stations"] if s["kind"] == "water"}
    xi = [s for s in water.values() if s["river"] == "细河"]
    # 细河 is among the rivers kept "not worse than V": its target is class V, not IV
    assert xi and all(gb3838.parse_class(s["target_class"]) == 5 for s in xi)
    assert "细河" in site["plan"]["rivers_not_worse_than_v"]
    pu = [s for s in water.values() if s["river"] == "蒲河"]
    assert [s["section"] for s in pu] == ["兴国桥"] and pu[0]["name_zh"] == "蒲河兴国桥"
    assert not any("蒲河沿" in json.dumps(s, ensure_ascii=False) for s in water.values())
    # DESIGN.md: Hun city reach III, Liao main stem IV
    assert {s["river"]: gb3838.parse_class(s["target_class"]) for s in water.values()} == {
        "浑河": 3,
        "辽河": 4,
        "蒲河": 4,
        "细河": 5,
    }


def test_indicator_name_and_sources_are_stated() -> None:
    site = _site()
    name = site["plan"]["indicators"]["good_days_ratio"]["name_zh"]
    assert name == "空气质量优良天数比率" == rules.GOOD_DAYS_RATIO_NAME[0]
    sources = site["sources"]
    assert set(sources) == {"plan", "design", "illustrative"}
    assert any("细河" in k for k in sources["plan"]["names"])
    assert sources["illustrative"], "the file must say which names are illustrative"

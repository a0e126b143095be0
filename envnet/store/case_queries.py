"""Reading many cases: the list behind GET /cases, and the supervision ranking
(周调度、月排名) behind GET /reports/supervision."""

from __future__ import annotations

from typing import Any

from envnet.store.cases import CASE_COLUMNS, CaseStore


# A case is overdue when signing or reporting is past its deadline in the current cycle: the
# same test as envnet.domain.cases.is_overdue, in SQL so that it filters on the indexes.
def count_of(cond: str) -> str:
    """`cond` as 1 / 0 (NULL when it is NULL) for sum(): SQLite sums a boolean as it is,
    PostgreSQL has no sum(boolean)."""
    return f"CASE WHEN {cond} THEN 1 WHEN NOT ({cond}) THEN 0 END"


# No supervision order issued for that step of a case (the step was done on time).
_NO_SLIP = (
    "NOT EXISTS (SELECT 1 FROM case_slips s WHERE s.case_id=c.id"
    " AND s.kind='supervision' AND s.reason='{reason}')"
)

OVERDUE_SQL = (
    "((state='assigned' AND sign_due_at <= :now)"
    " OR (state IN ('assigned','signed','handling') AND report_due_at <= :now))"
)


def list_cases(
    store: CaseStore,
    now: float,
    *,
    state: str | None = None,
    unit: str | None = None,
    district: str | None = None,
    overdue: bool | None = None,
    slip: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page newest first)."""
    where: list[str] = []
    args: dict[str, Any] = {"now": now, "limit": limit, "offset": offset}
    for col, val in (("state", state), ("unit", unit), ("district", district)):
        if val is not None:
            where.append(f"{col} = :{col}")
            args[col] = val
    if overdue is True:
        where.append(OVERDUE_SQL)
    elif overdue is False:
        where.append(f"NOT {OVERDUE_SQL}")
    if slip is not None:
        where.append(
            "EXISTS (SELECT 1 FROM case_slips s WHERE s.case_id = cases.id AND s.kind = :slip)"
        )
        args["slip"] = slip
    w = (" WHERE " + " AND ".join(where)) if where else ""
    q = store.state.query
    total = q(f"SELECT count(*) FROM cases{w}", args)[0][0]  # type: ignore[arg-type]
    rows = q(
        f"SELECT {CASE_COLUMNS} FROM cases{w}"
        " ORDER BY opened_at DESC, id LIMIT :limit OFFSET :offset",
        args,  # type: ignore[arg-type]
    )
    return total, [store.view(r, now) for r in rows]


def supervision(store: CaseStore, since: float, until: float) -> dict[str, Any]:
    """Per unit and per district, for cases opened in [since, until): cases, signed on time,
    reported on time (no supervision order for that step), overdue now, mean time to close;
    ranked by on-time rate (signed and reported), then by mean time to close."""
    q = store.state.query
    sql = f"""
        SELECT {{key}} AS k, count(*) AS cases,
          sum({count_of(_NO_SLIP.format(reason="sign"))}) AS signed_on_time,
          sum({count_of("c.reported_at IS NOT NULL OR c.verified_at IS NOT NULL")}) AS reported,
          sum({count_of(_NO_SLIP.format(reason="report"))}) AS reported_on_time,
          sum({
        count_of(
            OVERDUE_SQL.replace("state", "c.state")
            .replace("sign_due_at", "c.sign_due_at")
            .replace("report_due_at", "c.report_due_at")
        )
    }) AS overdue,
          sum({count_of("c.state='closed'")}) AS closed,
          avg(CASE WHEN c.state='closed' THEN c.closed_at - c.opened_at END) AS mean_close_s,
          (SELECT count(*) FROM case_slips s JOIN cases c2 ON c2.id=s.case_id
              WHERE {{key2}} = {{key}} AND c2.opened_at >= :since AND c2.opened_at < :until
              AND s.kind='urging') AS urgings
        FROM cases c WHERE c.opened_at >= :since AND c.opened_at < :until GROUP BY k"""
    args = {"since": since, "until": until, "now": until}
    out: dict[str, Any] = {"since": since, "until": until}
    names = {u["id"]: u for u in store.grid.units()}
    for level, key, key2 in (
        ("units", "c.unit", "c2.unit"),
        ("districts", "c.district", "c2.district"),
    ):
        rows = [dict(r) for r in q(sql.format(key=key, key2=key2), args)]  # type: ignore[arg-type]
        for r in rows:
            n = r["cases"] or 1
            r["on_time_rate"] = round((r["signed_on_time"] + r["reported_on_time"]) / (2 * n), 4)
            if level == "units":
                u = names.get(r["k"]) or {}
                r["unit"], r["name_zh"], r["name_en"] = r["k"], u.get("name_zh"), u.get("name_en")
                r["district"] = u.get("district")
            else:
                r["district"] = r["k"]
            del r["k"]
        rows.sort(key=lambda r: (-r["on_time_rate"], r["mean_close_s"] or float("inf")))
        for i, r in enumerate(rows, 1):
            r["rank"] = i
        out[level] = rows
    return out

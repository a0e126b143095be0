"""The supervision loop's tables (docs/cases.md): the grid (districts, units, cells) and the
cases with their alerts, slips, history, reports and photos.

They are the "cases" owner's in the state file's schema registry (envnet/store/schema.py):
version 1 is the statements below; a change is a new migration appended to CASES, never an
edit of a statement that has shipped."""

from __future__ import annotations

from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

MIGRATIONS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS grid_districts (
        id TEXT PRIMARY KEY, name_en TEXT, bureau TEXT)""",
    """CREATE TABLE IF NOT EXISTS grid_units (
        id TEXT PRIMARY KEY, name_zh TEXT NOT NULL, name_en TEXT, kind TEXT NOT NULL,
        district TEXT, parent TEXT, contacts TEXT NOT NULL DEFAULT '[]')""",
    """CREATE TABLE IF NOT EXISTS grid_cells (
        id TEXT PRIMARY KEY, name_zh TEXT, name_en TEXT, kind TEXT NOT NULL,
        district TEXT NOT NULL, unit TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cases (
        id TEXT PRIMARY KEY,
        station TEXT, rule TEXT NOT NULL, parameter TEXT NOT NULL, severity TEXT NOT NULL,
        state TEXT NOT NULL, unit TEXT NOT NULL, district TEXT, cell TEXT,
        title TEXT NOT NULL DEFAULT '', opened_at REAL NOT NULL, opened_by TEXT NOT NULL,
        cycle INTEGER NOT NULL DEFAULT 0, cycle_started_at REAL NOT NULL,
        signed_at REAL, reported_at REAL, verified_at REAL, closed_at REAL, normal_since REAL,
        sign_due_at REAL, report_due_at REAL NOT NULL,
        alert_id TEXT, reopened_from TEXT, updated_at REAL NOT NULL,
        -- when the scheduler must look at the case again (NULL: at once); any change resets it
        next_slip_at REAL, version INTEGER NOT NULL DEFAULT 0)""",
    # One case not yet closed per (station, rule, parameter); later alerts link to it.
    """CREATE UNIQUE INDEX IF NOT EXISTS cases_one_open ON cases(station, rule, parameter)
        WHERE state != 'closed'""",
    "CREATE INDEX IF NOT EXISTS cases_by_state_sign ON cases(state, sign_due_at)",
    "CREATE INDEX IF NOT EXISTS cases_by_state_report ON cases(state, report_due_at)",
    "CREATE INDEX IF NOT EXISTS cases_by_next_slip ON cases(state, next_slip_at)",
    "CREATE INDEX IF NOT EXISTS cases_by_unit ON cases(unit, state)",
    "CREATE INDEX IF NOT EXISTS cases_by_district ON cases(district, state)",
    "CREATE INDEX IF NOT EXISTS cases_by_opened ON cases(opened_at)",
    """CREATE TABLE IF NOT EXISTS case_alerts (
        case_id TEXT NOT NULL, alert_id TEXT NOT NULL, linked_at REAL NOT NULL,
        PRIMARY KEY (case_id, alert_id))""",
    "CREATE INDEX IF NOT EXISTS case_alerts_by_alert ON case_alerts(alert_id)",
    # What the scheduler decided about each open alert (and at which severity): it looks again
    # only when the severity changed.
    """CREATE TABLE IF NOT EXISTS case_intake (
        alert_id TEXT PRIMARY KEY, severity TEXT NOT NULL, case_id TEXT, at REAL NOT NULL,
        note TEXT NOT NULL DEFAULT '')""",
    # A slip is issued once per (case, kind, due period): the unique key is what makes two
    # schedulers, or one restarted, never issue one twice.
    """CREATE TABLE IF NOT EXISTS case_slips (
        id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL, kind TEXT NOT NULL,
        period TEXT NOT NULL, reason TEXT NOT NULL, due_at REAL NOT NULL,
        issued_at REAL NOT NULL, unit TEXT NOT NULL, to_unit TEXT NOT NULL,
        UNIQUE (case_id, kind, period))""",
    "CREATE INDEX IF NOT EXISTS case_slips_by_kind ON case_slips(kind, case_id)",
    """CREATE TABLE IF NOT EXISTS case_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL, at REAL NOT NULL,
        actor TEXT NOT NULL, action TEXT NOT NULL, state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX IF NOT EXISTS case_history_by_case ON case_history(case_id, id)",
    """CREATE TABLE IF NOT EXISTS case_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL, cycle INTEGER NOT NULL,
        at REAL NOT NULL, actor TEXT NOT NULL, text TEXT NOT NULL, lat REAL, lon REAL,
        photos TEXT NOT NULL DEFAULT '[]')""",
    "CREATE INDEX IF NOT EXISTS case_reports_by_case ON case_reports(case_id, id)",
    """CREATE TABLE IF NOT EXISTS case_photos (
        sha256 TEXT PRIMARY KEY, content_type TEXT NOT NULL, size INTEGER NOT NULL,
        created_at REAL NOT NULL)""",
)


CASES = STATE_DB.register(
    "cases",
    module=__name__,
    tables=(
        "grid_districts",
        "grid_units",
        "grid_cells",
        "cases",
        "case_alerts",
        "case_intake",
        "case_slips",
        "case_history",
        "case_reports",
        "case_photos",
    ),
    migrations=(";\n".join(MIGRATIONS),),
)


def ensure_schema(state: SqliteStateStore) -> None:
    """Bring the cases tables to their current version (cheap once done on this store)."""
    state.db.ensure(CASES)

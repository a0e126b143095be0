"""The web pages in Debian's Chromium (headless), against the real stack: Mosquitto, InfluxDB,
the gateway and server processes, and simulated stations running the real firmware on the
demo's compressed clock (a data hour every 30 s), so hourly AQI and water classes exist.

Checked: every page loads with zero failed or external requests (the browser's own log);
a station's colour and category on the map match its AQI; /docs and /redoc render the
operations offline; the console's login, acknowledge form and audit row; a form posted without
its CSRF token is refused; a disabled user cannot log in; login throttling; a role kept out of
a section; the case pages: a unit user signs and reports a case (text, photo, position)
through the forms, the duty room verifies it, a unit user gets the 403 page (and an audit row)
for another unit's case, a form without its CSRF token changes nothing.

Screenshots and load times go to a temporary folder, or, with ENVNET_WRITE_SCREENSHOTS=1, to
docs/pages/ (shown in docs/pages.md), so that a test run leaves the tree as it was. Chromium
missing is a failure (the project installs it), not a skip: set ENVNET_SKIP_BROWSER=1 to skip
knowingly.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import browser_helpers as bh
import httpx
import pytest
from conftest import REPO, Proc, wait_until
from selenium.webdriver.common.by import By

from envnet.config import load_config
from envnet.core import calendar as cal
from envnet.core.standards import hj633
from envnet.devkit import scenario
from envnet.devkit.demo import SITE_FILE, shenyang_sites
from envnet.devkit.fleet import Fleet
from envnet.devkit.services import InfluxDB, Mosquitto, component_env, free_port
from envnet.store.audit import query_audit
from envnet.store.state import SqliteStateStore

if bh.available() is not None and not os.environ.get("ENVNET_SKIP_BROWSER"):
    raise RuntimeError(f"browser tests: {bh.available()} (ENVNET_SKIP_BROWSER=1 skips them)")
pytestmark = pytest.mark.skipif(bh.available() is not None, reason=str(bh.available()))

SHOTS = (
    REPO / "docs" / "pages"
    if os.environ.get("ENVNET_WRITE_SCREENSHOTS")
    else Path(tempfile.mkdtemp(prefix="envnet-pages-"))
)
STATIONS = ("sy-taiyuanjie", "sy-wenyilu", "sy-dongling", "sy-yunhe", "hun-city-01")
POLLUTED = "sy-yunhe"  # steered to heavy PM2.5 so that an exceedance alert opens
MAX_FAILURES = 4
PASSWORD = "pages-test-password"


class Stack:
    def __init__(self, base: str, env: dict[str, str], influx: InfluxDB, t0: float) -> None:
        self.base, self.env, self.influx, self.t0 = base, env, influx, t0
        self.load_ms: dict[str, float] = {}

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "envnet.cli", *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )

    def add_user(self, name: str, role: str, unit: str | None = None) -> None:
        extra = ["--unit", unit] if unit else []
        r = self.cli(
            "users", "add", name, "--role", role, *extra, "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("pages")
    with Mosquitto(tmp / "mosquitto") as mosq, InfluxDB(tmp / "influxdb") as influx:
        env = component_env(
            tmp,
            mosq,
            influx,
            f"pages-{free_port()}",
            ENVNET_SERVER_API_KEY="test-key",
            ENVNET_PAGES_COOKIE_SECURE="false",
            ENVNET_PAGES_LOGIN_MAX_FAILURES=str(MAX_FAILURES),
            ENVNET_GATEWAY_MAX_FUTURE_S=str(366 * 86400),
            ENVNET_CASES_GRID_FILE=str(SITE_FILE),
            ENVNET_CASES_PHOTOS_DIR=str(tmp / "case-photos"),
        )
        settings = load_config(None, environ=env)
        gw = Proc(["gateway"], env, tmp / "gateway.log").start()
        srv = Proc(["server"], env, tmp / "server.log").start()
        base = f"http://{env['ENVNET_SERVER_LISTEN']}"
        fleet = Fleet(settings, tmp / "sim", interval_s=scenario.WALL_INTERVAL_S)
        try:
            wait_until(lambda: "subscribed to" in gw.output(), 30, what="gateway")
            wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 30, what="server")
            wall0 = time.time()
            t0 = wall0 - scenario.START_DAYS_AGO * 86400
            clock = {"time_scale": scenario.TIME_SCALE, "t0": t0, "wall0": wall0}
            sites = {s["id"]: s for s in shenyang_sites()}
            for n, sid in enumerate(STATIONS):
                site = sites[sid]
                meta = {k: v for k, v in site.items() if k not in ("id", "kind")}
                data_interval = scenario.WALL_INTERVAL_S * scenario.TIME_SCALE
                fleet.add(sid, site["kind"], meta, n + 1, clock, data_interval)
            scenario.write_overrides(
                fleet.stations[POLLUTED].workdir, {"pm25": 160.0, "pm10": 200.0}
            )
            fleet.start()
            stack = Stack(base, env, influx, t0)

            def hourly_everywhere() -> bool:
                for sid in STATIONS:
                    idx = httpx.get(f"{base}/stations/{sid}").json().get("indices") or {}
                    if not idx.get("water" if sid.startswith("hun") else "aqi_1h"):
                        return False
                return True

            wait_until(hourly_everywhere, 240, 2, what="an hourly index at every station")
            yield stack
        finally:
            fleet.stop()
            srv.stop()
            gw.stop()
            load_times = getattr(locals().get("stack"), "load_ms", {})
            if load_times:
                SHOTS.mkdir(parents=True, exist_ok=True)
                (SHOTS / "load-times.json").write_text(json.dumps(load_times, indent=1) + "\n")


@pytest.fixture
def browser() -> Iterator:
    driver = bh.start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def visit(stack: Stack, driver, path: str, shot: str | None = None, *, ok: bool = True):
    """Open a page; with ok, nothing may fail and nothing may leave the server."""
    bh.take_traffic(driver)  # drop what came before
    driver.get(stack.base + path)
    wait_until(
        lambda: driver.execute_script("return document.readyState") == "complete", 20, what=path
    )
    if ok:
        stack.load_ms[path.split("?")[0]] = round(bh.load_time_ms(driver), 1)
    return shot


def check_clean(stack: Stack, driver, what: str) -> None:
    t = bh.take_traffic(driver)
    assert t.requests, f"{what}: the browser logged no request at all"
    assert t.external(stack.base) == [], f"{what}: external requests {t.external(stack.base)}"
    assert t.failed == [], f"{what}: failed requests {t.failed}"
    assert t.http_errors == [], f"{what}: HTTP errors {t.http_errors}"
    assert t.console_errors == [], f"{what}: console errors {t.console_errors}"


def test_public_pages_load_offline_with_standard_colours(stack: Stack, browser) -> None:
    visit(stack, browser, "/public")
    check_clean(stack, browser, "/public")
    circles = browser.find_elements(By.CSS_SELECTOR, "circle.marker.air")
    assert {c.get_attribute("data-station") for c in circles} == set(STATIONS[:4])
    stored = {
        r["aqi"] for r in stack.influx.rows(f"SELECT aqi FROM aqi WHERE station='{POLLUTED}'")
    }
    for c in circles:
        aqi = int(c.get_attribute("data-aqi"))
        cat = hj633.category(aqi)
        assert c.get_attribute("fill") == cat.rgb, (c.get_attribute("data-station"), aqi)
        assert c.get_attribute("data-category") == cat.name_zh
        assert int(c.get_attribute("data-level")) == cat.level
        if c.get_attribute("data-station") == POLLUTED:
            assert aqi in stored, f"map AQI {aqi} is not one the evaluator stored {stored}"
            assert cat.level >= 3, "PM2.5 160 ug/m3 is at least lightly polluted"
    # The list shows the same category as the map for each station.
    for row in browser.find_elements(By.CSS_SELECTOR, "#air-stations tbody tr"):
        sid = row.get_attribute("data-station")
        badge = row.find_element(By.CSS_SELECTOR, ".aqi")
        circle = browser.find_element(By.CSS_SELECTOR, f"circle[data-station='{sid}']")
        assert badge.get_attribute("data-level") == circle.get_attribute("data-level")
    bh.full_screenshot(browser, SHOTS / "public-map.png")
    browser.set_window_size(390, 844)  # a phone
    visit(stack, browser, "/public")
    bh.full_screenshot(browser, SHOTS / "public-map-phone.png", width=390)
    browser.set_window_size(1280, 900)

    visit(stack, browser, f"/public/stations/{POLLUTED}")
    check_clean(stack, browser, "station page")
    rows = browser.find_elements(By.CSS_SELECTOR, "#iaqi tbody tr")
    assert {r.get_attribute("data-pollutant") for r in rows} >= {"pm25", "pm10"}
    level = int(browser.find_element(By.CSS_SELECTOR, "#realtime .aqi").get_attribute("data-level"))
    advice = hj633.health_advice(level)
    assert advice.measures_zh in browser.find_element(By.CSS_SELECTOR, ".advice").text
    assert "PM2.5" in browser.find_element(By.ID, "primary").text
    assert browser.find_elements(By.CSS_SELECTOR, "#history rect.bar"), "no 24-hour chart bars"
    bh.full_screenshot(browser, SHOTS / "public-station.png")

    visit(stack, browser, "/public/stations/hun-city-01")
    check_clean(stack, browser, "water station page")

    day = cal.date_of(int(stack.t0), ZoneInfo("Asia/Shanghai")).isoformat()
    visit(stack, browser, f"/public/bulletin?date={day}")
    check_clean(stack, browser, "bulletin")
    scopes = [
        r.get_attribute("data-scope")
        for r in browser.find_elements(By.CSS_SELECTOR, "#bulletin tr[data-scope]")
    ]
    assert scopes.count("city") == 1 and "district" in scopes and scopes.count("station") == 4
    bh.full_screenshot(browser, SHOTS / "public-bulletin.png")

    visit(stack, browser, f"/public/rivers?date={day}")
    check_clean(stack, browser, "rivers")
    assert browser.find_element(By.CSS_SELECTOR, "#sections tr[data-id='hun-city-01']")
    bh.full_screenshot(browser, SHOTS / "public-rivers.png")


def test_api_docs_render_offline(stack: Stack, browser) -> None:
    visit(stack, browser, "/docs")
    ops = wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"), 30, what="/docs"
    )
    paths = {o.text.replace("\u200b", "") for o in ops}
    assert {"/stations", "/alerts", "/reports/daily"} <= paths
    check_clean(stack, browser, "/docs")
    bh.full_screenshot(browser, SHOTS / "docs-swagger.png")
    browser.set_window_size(1280, 900)

    visit(stack, browser, "/redoc")
    wait_until(
        lambda: "/reports/daily" in browser.find_element(By.TAG_NAME, "body").text,
        30,
        what="/redoc",
    )
    check_clean(stack, browser, "/redoc")
    browser.save_screenshot(str(SHOTS / "docs-redoc.png"))


def login(stack: Stack, driver, name: str, password: str = PASSWORD) -> None:
    visit(stack, driver, "/console/login", ok=False)
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    # Mark the login page: "complete" must be the next page's, not this one's (the answer
    # waits for the Argon2 check, and the old page is complete until it arrives).
    driver.execute_script("document.documentElement.dataset.left = '1'")
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_until(
        lambda: driver.execute_script(
            "return document.readyState === 'complete' && !document.documentElement.dataset.left"
        ),
        20,
        what="the page after login",
    )


def tiny_png(width: int = 24, height: int = 16) -> bytes:
    """A real PNG (the browser draws it), green, made here so the test needs no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + b"\x2e\x8b\x57" * width for _ in range(height))
    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def open_case_by_api(stack: Stack, cell: str, title: str) -> str:
    body = {"cell": cell, "rule": "aqi_category", "parameter": "aqi", "severity": "high",
            "title": title}  # fmt: skip
    r = httpx.post(f"{stack.base}/cases", json=body, headers={"Authorization": "Bearer test-key"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def case_state(stack: Stack, case_id: str) -> str:
    r = httpx.get(f"{stack.base}/cases/{case_id}", headers={"Authorization": "Bearer test-key"})
    return r.json()["state"]


def attrs(driver, css: str, attr: str) -> set[str]:
    return {e.get_attribute(attr) for e in driver.find_elements(By.CSS_SELECTOR, css)}


def submitted(driver, case_id: str, state: str) -> bool:
    """The form's redirect has brought the browser back to the case page, in `state`."""
    found = driver.find_elements(By.ID, "case-state")
    return (
        driver.current_url.endswith(f"/console/cases/{case_id}")
        and bool(found)
        and found[0].get_attribute("data-state") == state
    )


def test_console_cases_sign_report_verify_refusals(stack: Stack, browser, tmp_path) -> None:
    # Before the throttling test below: it leaves this client address throttled.
    stack.add_user("case-duty", "duty_room")
    stack.add_user("case-hp", "unit", "heping-nanhu-office")
    mine = open_case_by_api(stack, "heping-nanhu", "南湖街道工地扬尘")
    theirs = open_case_by_api(stack, "tiexi-yanfen", "艳粉街道露天焚烧")

    def notice_issued() -> bool:
        r = httpx.get(f"{stack.base}/cases/{mine}", headers={"Authorization": "Bearer test-key"})
        return any(s["kind"] == "notice" for s in r.json()["slips"])

    wait_until(notice_issued, 30, what="the scheduler's 提示单")

    # A unit user lands on its cases and sees only its unit's.
    login(stack, browser, "case-hp")
    assert browser.current_url.endswith("/console/cases")
    visit(stack, browser, "/console/cases")
    check_clean(stack, browser, "unit's case list")
    listed = attrs(browser, "#cases tbody tr[data-case]", "data-case")
    assert mine in listed and theirs not in listed

    # Another unit's case, opened by URL: the 403 page, an audit row, nothing shown.
    visit(stack, browser, f"/console/cases/{theirs}", ok=False)
    assert browser.find_elements(By.CSS_SELECTOR, ".error[data-status='403']")
    assert "艳粉" not in browser.find_element(By.TAG_NAME, "body").text

    visit(stack, browser, f"/console/cases/{mine}")
    check_clean(stack, browser, "case page (assigned)")
    assert "opened" in attrs(browser, "#history tbody tr", "data-action")

    notice = browser.find_element(By.CSS_SELECTOR, "#slips tr[data-slip='notice']")
    assert "提示单" in notice.text and "notice" in notice.text
    # The sign form without its CSRF token: refused, the case stays assigned.
    form = browser.find_element(By.ID, "sign-form")
    browser.execute_script("arguments[0].querySelector('input[name=csrf]').remove()", form)
    form.find_element(By.TAG_NAME, "button").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".error[data-status='403']"), 10)
    assert case_state(stack, mine) == "assigned"

    # Sign, then report with text, a photo and the position, through the forms.
    visit(stack, browser, f"/console/cases/{mine}")
    browser.find_element(By.CSS_SELECTOR, "#sign-form input[name=note]").send_keys("已签收")
    browser.find_element(By.CSS_SELECTOR, "#sign-form button").click()
    wait_until(lambda: submitted(browser, mine, "signed"), 10, what="signed")
    photo = tmp_path / "site.png"
    photo.write_bytes(tiny_png())
    form = browser.find_element(By.ID, "report-form")
    form.find_element(By.NAME, "text").send_keys("工地已停工，洒水抑尘 site stopped, watered")
    form.find_element(By.NAME, "lat").send_keys("41.7784")
    form.find_element(By.NAME, "lon").send_keys("123.4212")
    form.find_element(By.NAME, "photos").send_keys(str(photo))
    form.find_element(By.TAG_NAME, "button").click()
    wait_until(lambda: submitted(browser, mine, "reported"), 10, what="reported")
    bh.take_traffic(browser)
    visit(stack, browser, f"/console/cases/{mine}")
    check_clean(stack, browser, "case page (reported, with its photo)")
    img = browser.find_element(By.CSS_SELECTOR, "#reports img.photo")
    assert browser.execute_script("return arguments[0].naturalWidth", img) == 24
    assert "41.7784, 123.4212" in browser.find_element(By.CSS_SELECTOR, ".report .position").text
    d = httpx.get(f"{stack.base}/cases/{mine}", headers={"Authorization": "Bearer test-key"}).json()
    assert d["state"] == "reported"
    [rep] = d["evidence"]["reports"]
    assert (rep["actor"], rep["lat"], rep["lon"]) == ("case-hp", 41.7784, 123.4212)
    assert len(rep["photos"]) == 1
    assert not browser.find_elements(By.ID, "verify-form"), "a unit may not verify"

    # The duty room sees every case, filters them, and verifies this one: closed.
    browser.delete_all_cookies()
    login(stack, browser, "case-duty")
    visit(stack, browser, "/console/cases?state=reported")
    check_clean(stack, browser, "duty room's case list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr[data-case]")
    assert mine in {r.get_attribute("data-case") for r in rows}
    assert {r.get_attribute("data-state") for r in rows} == {"reported"}
    visit(stack, browser, "/console/cases")
    assert {mine, theirs} <= attrs(browser, "#cases tbody tr[data-case]", "data-case")
    bh.full_screenshot(browser, SHOTS / "console-cases.png")
    visit(stack, browser, f"/console/cases/{mine}")
    check_clean(stack, browser, "case page for the duty room")
    assert not browser.find_elements(By.ID, "report-form"), "the duty room does not report"
    bh.full_screenshot(browser, SHOTS / "console-case-reported.png")
    browser.find_element(By.CSS_SELECTOR, "#verify-form input[name=note]").send_keys("现场复核通过")
    browser.find_element(By.CSS_SELECTOR, "#verify-form button").click()
    wait_until(lambda: submitted(browser, mine, "closed"), 10, what="closed")
    assert case_state(stack, mine) == "closed"
    bh.full_screenshot(browser, SHOTS / "console-case.png")

    # Every action an audit row with the console user's name.
    store = SqliteStateStore(stack.env["ENVNET_STORE_PATH"])
    try:
        rows, _ = query_audit(store, target=mine)
        acts = {(r.action, r.actor) for r in rows}
        assert {("case.sign", "case-hp"), ("case.report", "case-hp"),
                ("case.verify", "case-duty"), ("case.closed", "case-duty")} <= acts  # fmt: skip
        assert not any(r.action == "case.sign.refused" for r in rows)
        refused, _ = query_audit(store, action="case.view.refused", target=theirs)
        assert [r.actor for r in refused] == ["case-hp"]
    finally:
        store.close()


def test_console_login_ack_csrf_roles_disable_and_throttling(stack: Stack, browser) -> None:
    stack.add_user("duty", "duty_room")
    stack.add_user("unit-a", "unit", "heping-district")
    stack.add_user("leaver", "reviewer")
    r = stack.cli("users", "list", "--json")
    listed = {json.loads(x)["name"] for x in r.stdout.splitlines()}
    assert listed - {"case-duty", "case-hp"} == {"duty", "unit-a", "leaver"}  # (the cases test's)

    visit(stack, browser, "/console/login")
    check_clean(stack, browser, "login page")
    bh.full_screenshot(browser, SHOTS / "console-login.png")
    login(stack, browser, "duty")
    assert browser.current_url.endswith("/console/alerts")
    cookie = browser.get_cookie("envnet_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    def open_alert() -> str | None:
        alerts = httpx.get(f"{stack.base}/alerts?state=open&station={POLLUTED}").json()
        return alerts[0]["id"] if alerts else None

    alert_id = wait_until(open_alert, 120, 2, what=f"an open alert at {POLLUTED}")
    visit(stack, browser, "/console/alerts")
    check_clean(stack, browser, "console alerts")
    bh.full_screenshot(browser, SHOTS / "console-alerts.png")

    # A form whose CSRF token was taken out is refused, and nothing changes.
    form = browser.find_element(By.CSS_SELECTOR, f"tr[data-alert='{alert_id}'] form")
    browser.execute_script("arguments[0].querySelector('input[name=csrf]').remove()", form)
    form.find_element(By.TAG_NAME, "button").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".error[data-status='403']"), 10)
    assert httpx.get(f"{stack.base}/alerts/{alert_id}").json()["state"] == "open"
    # The same post from outside the page, with the session cookie but no token: refused.
    r = httpx.post(
        f"{stack.base}/console/alerts/{alert_id}/ack",
        data={"note": "forged"},
        cookies={"envnet_session": cookie["value"]},
    )
    assert r.status_code == 403

    visit(stack, browser, "/console/alerts")
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-alert='{alert_id}']")
    row.find_element(By.NAME, "note").send_keys("值班室已通知和平区 checked")
    row.find_element(By.TAG_NAME, "button").click()
    wait_until(
        lambda: httpx.get(f"{stack.base}/alerts/{alert_id}").json()["state"] == "acknowledged", 10
    )
    a = httpx.get(f"{stack.base}/alerts/{alert_id}").json()
    assert a["acknowledged_by"] == "duty"
    store = SqliteStateStore(stack.env["ENVNET_STORE_PATH"])
    try:
        rows, _ = query_audit(store, action="alert.ack", target=alert_id)
        assert [(r.actor, r.detail["note"]) for r in rows] == [
            ("duty", "值班室已通知和平区 checked")
        ]
        assert query_audit(store, action="console.login", actor="duty")[0]
    finally:
        store.close()

    for path, shot in (
        ("/console/health", "console-health.png"),
        ("/console/rollouts", "console-rollouts.png"),
    ):
        visit(stack, browser, path)
        check_clean(stack, browser, path)
        bh.full_screenshot(browser, SHOTS / shot)
        if path == "/console/health":
            rows = browser.find_elements(By.CSS_SELECTOR, "#health tbody tr")
            assert {r.get_attribute("data-station") for r in rows} == set(STATIONS)
            fw = {r.find_elements(By.TAG_NAME, "td")[6].text for r in rows}
            assert "—" not in fw, "every simulated station reports its firmware version"

    # A unit user sees no duty-room section and is kept out of one opened by URL.
    browser.delete_all_cookies()
    login(stack, browser, "unit-a")
    visit(stack, browser, "/console/alerts", ok=False)
    assert browser.find_elements(By.CSS_SELECTOR, ".error[data-status='403']")

    # A disabled user's session ends and the password no longer opens the console.
    browser.delete_all_cookies()
    login(stack, browser, "leaver")
    assert browser.current_url.endswith("/console/alerts")
    assert stack.cli("users", "disable", "leaver").returncode == 0
    visit(stack, browser, "/console/alerts", ok=False)
    assert browser.current_url.endswith("/console/login")
    login(stack, browser, "leaver")  # failure 1 from this address
    assert "wrong user name or password" in browser.find_element(By.ID, "login-error").text

    # Throttling: after MAX_FAILURES failures (by name or address) even the right password
    # is refused until the window has passed.
    browser.delete_all_cookies()  # the leaver's dead session cookie
    for _ in range(MAX_FAILURES - 1):
        login(stack, browser, "duty", "not-the-password")
    login(stack, browser, "duty")
    assert "too many failed logins" in browser.find_element(By.ID, "login-error").text
    assert browser.get_cookie("envnet_session") is None

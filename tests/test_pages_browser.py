"""The web pages in Debian's Chromium (headless), against the real stack: Mosquitto, InfluxDB,
the gateway and server processes, and simulated stations running the real firmware on the
demo's compressed clock (a data hour every 30 s), so hourly AQI and water classes exist.

Checked: every page loads with zero failed or external requests (the browser's own log);
a station's colour and category on the map match its AQI; /docs and /redoc render the
operations offline; the console's login, acknowledge form and audit row; a form posted without
its CSRF token is refused; a disabled user cannot log in; login throttling; a role kept out of
a section. Screenshots go to docs/pages/ (shown in docs/pages.md); load times to
docs/pages/load-times.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import browser_helpers as bh
import httpx
import pytest
from conftest import REPO, Proc, wait_until
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from envnet.config import load_config
from envnet.core import calendar as cal
from envnet.core.standards import hj633
from envnet.devkit import scenario
from envnet.devkit.demo import shenyang_sites
from envnet.devkit.fleet import Fleet
from envnet.devkit.services import InfluxDB, Mosquitto, component_env, free_port
from envnet.store.audit import query_audit
from envnet.store.state import SqliteStateStore

pytestmark = pytest.mark.skipif(bh.available() is not None, reason=str(bh.available()))

SHOTS = REPO / "docs" / "pages"
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


def _gone(element) -> bool:
    """The element's page has been replaced (Chromium says so in more than one way)."""
    try:
        element.is_enabled()
    except WebDriverException:  # stale reference, or "node does not belong to the document"
        return True
    return False


def login(stack: Stack, driver, name: str, password: str = PASSWORD) -> None:
    visit(stack, driver, "/console/login", ok=False)
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    form = driver.find_element(By.ID, "login")
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    # Wait for the answer page to replace the form: readyState alone can still be the old
    # page's, and the next visit would then cancel a POST the server has not answered yet.
    WebDriverWait(driver, 30).until(lambda _: _gone(form))
    wait_until(lambda: driver.execute_script("return document.readyState") == "complete", 20)


def test_console_login_ack_csrf_roles_disable_and_throttling(stack: Stack, browser) -> None:
    stack.add_user("duty", "duty_room")
    stack.add_user("unit-a", "unit", "heping-district")
    stack.add_user("leaver", "reviewer")
    r = stack.cli("users", "list", "--json")
    assert {json.loads(x)["name"] for x in r.stdout.splitlines()} == {"duty", "unit-a", "leaver"}

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

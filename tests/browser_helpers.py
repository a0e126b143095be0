"""Debian's Chromium, headless, driven through its chromedriver (selenium), for the page tests.

The machine's network is closed, and the pages must not need it anyway: Chromium starts with
everything that phones home turned off and a fresh profile, and every request the browser
makes is read back from its own performance log, so a page that asks the internet for a
script, a style or a font fails the test.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
LOCAL_SCHEMES = ("data:", "blob:", "about:", "chrome:", "chrome-extension:")


def available() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} missing: `make setup` installs chromium and chromium-driver"
    return None


def start_chromium(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="envnet-chromium-")
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


@dataclass
class Traffic:
    """What the browser asked for and what went wrong, since the last `take`."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    http_errors: list[tuple[int, str]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    earlier: list[str] = field(default_factory=list)  # failures of requests sent before

    def external(self, base: str) -> list[str]:
        return [
            u for u in self.requests if not u.startswith(base) and not u.startswith(LOCAL_SCHEMES)
        ]


def take_traffic(driver: webdriver.Chrome) -> Traffic:
    t = Traffic()
    # requestId -> URL, kept on the driver: a failure may be logged after the take that saw
    # its request. A failure belongs to the take that saw its request (the page under test);
    # one of a request sent before (Chromium's own start-up navigation) is kept apart.
    urls: dict[str, str] = driver.__dict__.setdefault("_envnet_urls", {})
    mine: set[str] = set()
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
            mine.add(params["requestId"])
            t.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            rid = params.get("requestId", "")
            text = f"{params.get('errorText')} ({params.get('type')}) {urls.get(rid, '?')}"
            (t.failed if rid in mine else t.earlier).append(text)
        elif method == "Network.responseReceived":
            resp = params["response"]
            if resp["status"] >= 400:
                t.http_errors.append((resp["status"], resp["url"]))
    t.console_errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return t


def load_time_ms(driver: webdriver.Chrome) -> float:
    """The last navigation's load time (navigation start to load event end), from the page."""
    return float(
        driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return n ? n.loadEventEnd - n.startTime : -1;"
        )
    )


def full_screenshot(driver: webdriver.Chrome, path: Path, width: int | None = None) -> None:
    """The whole page, not only the window (the window is resized to the page's height)."""
    size = driver.get_window_size()
    w = width or size["width"]
    h = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(w, min(max(h + 120, 400), 6000))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])

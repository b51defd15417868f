"""Fixtures for the browser tests: Debian's Chromium, a headless driver, the running stack.

The browser is the system's Chromium (Debian packages ``chromium`` and ``chromium-driver``),
driven through the chromedriver built for it: driver and browser come from the same package
build, so their protocol versions always match and nothing is downloaded at test time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from reelrank.settings import Settings
from reelrank.stack import UpResult, _alive, descendants, down, read_pids, up
from tests.conftest import stack_copy

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from tests.conftest import Loop

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
REPO = Path(__file__).resolve().parents[2]
WINDOW = (1400, 900)
PAGE_TIMEOUT_S = 60.0

# every screenshot this session wrote and the stack's start-up time, reported at the end
_WRITTEN: list[Path] = []
_NOTES: list[str] = []


def _missing(reason: str) -> None:
    """The project's rule for a missing prerequisite: skip locally, fail under CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests")
    pytest.skip(reason)


def _apt_install() -> str | None:
    """Install Debian's Chromium and its driver; None when done, else what went wrong.

    The package lists may be absent (a fresh image) or stale (a package moved): then the
    first install fails, and it is tried once more after ``apt-get update``.
    """
    if shutil.which("apt-get") is None:
        return "apt-get is not available (not a Debian-based system)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]
    out = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        update = subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, text=True, check=False
        )
        if update.returncode != 0:
            return f"apt-get update failed: {update.stderr.strip()[-400:]}"
        out = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return f"apt-get install {' '.join(DEBIAN_PACKAGES)} failed: {out.stderr.strip()[-400:]}"
    return None


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium and chromedriver, installed on first use."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        problem = _apt_install()
        if problem is None and not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
            problem = f"{CHROMIUM} or {CHROMEDRIVER} still missing after the install"
        if problem is not None:
            _missing(f"Chromium is not available: {problem}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the session, quit at the end (chromedriver stops with it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root, where the sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        "--disable-background-networking",  # no update checks or metrics calls out
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=opts, service=service)
    # the window's size includes headless Chromium's frame: pin the page's viewport itself,
    # so every screenshot is exactly WINDOW wide and at least WINDOW tall
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where screenshots go: ``REELRANK_SCREENSHOTS`` or ``<repo>/artifacts/screenshots``."""
    out = Path(os.environ.get("REELRANK_SCREENSHOTS", str(REPO / "artifacts" / "screenshots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


def record(path: Path) -> None:
    _WRITTEN.append(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the screenshots at the end of the run, so they are easy to find."""
    if not (_WRITTEN or _NOTES):
        return
    terminalreporter.section("UI screenshots")
    for note in _NOTES:
        terminalreporter.write_line(note)
    if _WRITTEN:
        terminalreporter.write_line(f"folder: {_WRITTEN[0].parent}")
    for path in _WRITTEN:
        terminalreporter.write_line(f"  {path.name} ({path.stat().st_size // 1024} KiB)")


@dataclass
class Stack:
    """The running stack: its settings, what ``up`` returned, and the Airflow login."""

    settings: Settings
    result: UpResult
    seconds_to_answering: float

    @property
    def login(self) -> tuple[str, str]:
        user, _, password = self.result.airflow_login.partition(" / ")
        return user, password

    def url(self, name: str) -> str:
        return self.result.urls[name]


def _all_uis_answer(urls: list[str], timeout_s: float) -> None:
    """Wait until every UI's front page answers 200 (``up`` only waits for health URLs)."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            try:
                if httpx.get(url, timeout=5, follow_redirects=True).status_code == 200:
                    pending.remove(url)
            except httpx.HTTPError:
                pass
        if pending:
            time.sleep(0.5)
    assert not pending, f"UIs not answering after {timeout_s:.0f}s: {pending}"


@pytest.fixture(scope="module")
def stack(loop: Loop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``reelrank up`` on a copy of the loop's home, stopped by pid afterwards.

    The copy keeps ``airflow/`` (the metadata DB with the loop's DAG runs, so the UI has
    runs to show) but not its ``airflow.cfg``, which Airflow writes with the original home's
    paths and regenerates for the copy. The served-request logs stay behind: they belong to
    the loop's own server.
    """
    home = Path(tmp_path_factory.mktemp("ui-stack")) / "var"
    settings = stack_copy(loop.settings, home, "served*", "airflow.cfg")
    family: list[int] = []
    result: UpResult | None = None
    try:
        t0 = time.monotonic()
        result = up(settings)
        _all_uis_answer(list(result.urls.values()), timeout_s=120)
        answering = time.monotonic() - t0
        note = (
            f"reelrank up: every UI answering {answering:.1f}s after calling up "
            f"(up itself returned after {result.seconds_to_ready:.1f}s)"
        )
        print(f"\n{note}")
        _NOTES.append(note)
        family = [p for pid in read_pids(settings).values() for p in (pid, *descendants(pid))]
        yield Stack(settings, result, answering)
    finally:
        family += [p for pid in read_pids(settings).values() for p in (pid, *descendants(pid))]
        stopped = down(settings)
        if result is not None:
            assert set(stopped) == set(result.started), stopped
        assert not read_pids(settings), "pid files left behind"
        alive = sorted({p for p in family if _alive(p)})
        assert not alive, f"processes of the stack still alive after down: {alive}"

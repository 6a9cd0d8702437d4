"""A real headless Chromium for the browser tests and the page benchmark (Selenium + ChromeDriver).

Not a test module. Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them)
are found on PATH, or at ``$GENRECALL_CHROMIUM`` / ``$GENRECALL_CHROMEDRIVER``. Nothing is downloaded:
Selenium Manager stays offline and the browser runs with its network features off, a fresh profile
per session and no sandbox (CI runs as root).

Screenshots go to the test's temporary directory, or to ``$GENRECALL_SCREENSHOTS`` (``docs/img`` to
refresh the ones the docs show); they are shrunk to a small palette PNG first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM_ENV, DRIVER_ENV, SHOTS_ENV = "GENRECALL_CHROMIUM", "GENRECALL_CHROMEDRIVER", "GENRECALL_SCREENSHOTS"
INSTALL_HINT = (
    "no Chromium/ChromeDriver for the browser tests: install them with "
    "`apt-get install chromium chromium-driver` (Debian/Ubuntu; .ci/run does this), or point "
    f"${CHROMIUM_ENV} and ${DRIVER_ENV} at a browser and its matching driver"
)
ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def find_browser() -> tuple[str, str] | None:
    """(browser, driver) executables, or None when either is missing."""
    browser = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get(DRIVER_ENV) or shutil.which("chromedriver")
    return (browser, driver) if browser and driver and Path(browser).exists() and Path(driver).exists() else None


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium session (the caller quits it); raises when no browser is installed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (*ARGS, f"--window-size={width},{height}", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(found[1]))


def screenshot_dir(default: Path) -> Path:
    out = Path(os.environ.get(SHOTS_ENV) or default)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_screenshot(driver: Any, path: Path, *, height: int | None = None, colors: int = 96) -> Path:
    """The viewport (resized to ``height`` px first, when given) as a small palette PNG."""
    from PIL import Image

    if height is not None:
        driver.set_window_size(driver.get_window_size()["width"], height)
    raw = path.with_suffix(".raw.png")
    driver.save_screenshot(str(raw))
    with Image.open(raw) as im:
        im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()
    return path

"""The saved month-end file as a browser shows it: headless Chromium (the system's, through
Playwright) loads the self-contained HTML, every chart decodes, the sections and the tie-out are
on the page, nothing overflows the 720 px layout, and a full-page screenshot has a sensible size.

Skips, saying how to fix it, when no Chromium is installed (`scripts/ensure-chromium`).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monthend_samples import unbalanced_report

from reports.month_end import format_money, render_month_end

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

VIEWPORT = {"width": 800, "height": 900}
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADINGS = [
    "1. Money out",
    "2. Reveni's invoice",
    "3. Settlement",
    "4. What went wrong",
    "5. Trend: the last 12 months",
]

pytestmark = pytest.mark.timeout(60)


def find_chromium() -> str | None:
    """The system's Chromium, else the one `playwright install chromium` downloaded."""
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    browsers = Path(
        os.environ.get("PLAYWRIGHT_BROWSERS_PATH", Path.home() / ".cache/ms-playwright")
    )
    for pattern in (
        "chromium-*/chrome-linux*/chrome",
        "chromium_headless_shell-*/*/headless_shell",
        "chromium_headless_shell-*/*/chrome-headless-shell",
    ):
        for candidate in sorted(browsers.glob(pattern)):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "no Chromium found: run scripts/ensure-chromium (installs Debian's chromium as root) "
            "or .venv/bin/playwright install chromium"
        )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], headless=True
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(10_000)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def saved_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("month-end") / "month-end-2026-10.html"
    path.write_text(render_month_end(unbalanced_report()).html_file, encoding="utf-8")
    return path


def test_the_saved_file_renders_in_chromium(page: Any, saved_file: Path) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(saved_file.as_uri(), wait_until="load")

    images = page.evaluate(
        "() => [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth,"
        " height: i.naturalHeight, alt: i.alt}))"
    )
    assert len(images) == 2
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["alt"]
    # nothing but the file itself and its data: images was fetched
    assert [url for url in requested if not url.startswith(("file:", "data:"))] == []

    headings = page.evaluate("() => [...document.querySelectorAll('h2')].map(h => h.innerText)")
    assert headings == HEADINGS

    body = page.inner_text("body")
    assert "Tie-out EUR" in body and "Tie-out SEK" in body
    assert f"Disbursements on Reveni's invoice\t{format_money(123_450, 'EUR')}" in body
    assert f"Disbursements on Reveni's invoice\t{format_money(1_246_501, 'SEK')}" in body
    assert "EUR: Balanced to the cent, but" in body  # balanced, some lines unmatched
    assert "SEK: NOT balanced" in body
    colour = page.evaluate(
        "() => getComputedStyle([...document.querySelectorAll('p.verdict')]"
        ".find(p => p.innerText.startsWith('SEK: NOT balanced'))).color"
    )
    assert colour == "rgb(207, 34, 46)"  # red

    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"], "the layout overflows the viewport"
    page_width = page.evaluate("() => document.querySelector('table.page').offsetWidth")
    assert 600 <= page_width <= 722

    shot = page.screenshot(full_page=True, type="png")
    assert shot.startswith(b"\x89PNG\r\n\x1a\n")
    shot_width, shot_height = struct.unpack(">II", shot[16:24])
    assert shot_width == VIEWPORT["width"]
    assert shot_height > 3 * VIEWPORT["height"]  # five sections, two charts, the line tables

"""report.html and dashboard.html render in a real (headless) browser, offline.

Drives the system's Chromium (``/usr/bin/chromium``, Debian's package) through the
``playwright`` Python package; no browser is ever downloaded. Without either, the tests
skip, unless ``ERASUS_REQUIRE_BROWSER=1`` (CI) turns the skip into a failure. A full-page
screenshot of the report goes to ``$ERASUS_ARTIFACT_DIR`` (default ``<repo>/artifacts/``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[3]


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return 'the playwright package is not installed (pip install "erasus-viz[test]")'
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")  # session: it skips before the runs are made
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("ERASUS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ERASUS_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _open(browser: Any, path: Path) -> tuple[Any, Any, list[str]]:
    """A new page (and its context) showing ``path``; every console error, page error and
    request off the file system is collected into the returned list."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"network request: {r.url}")
            if not r.url.startswith(("file:", "data:", "about:")) else None)
    page.goto(path.resolve().as_uri(), wait_until="load")
    return context, page, problems


def test_the_report_renders_every_plot_without_errors(browser, viz_run):
    context, page, problems = _open(browser, viz_run / "report.html")
    try:
        images = page.eval_on_selector_all(
            "img[data-plot]", "els => els.map(e => [e.dataset.plot, e.complete, "
            "e.naturalWidth, e.naturalHeight])")
        assert sorted(i[0] for i in images) == sorted(
            p.name for p in (viz_run / "plots").glob("*.png"))
        for name, complete, width, height in images:
            assert complete and width > 0 and height > 0, name
        assert page.locator("#metrics-table tbody tr").count() >= 5
        assert page.locator("#metrics-table th", has_text="|unlearned - oracle|").count() == 1
        assert page.locator("h1").inner_text().startswith("Erasus run: gradient_difference")
        artifacts = Path(os.environ.get("ERASUS_ARTIFACT_DIR") or REPO / "artifacts")
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / "report-screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert problems == []
    finally:
        context.close()


def test_the_dashboard_renders_its_plotly_figures_offline(browser, dashboard):
    context, page, problems = _open(browser, dashboard)
    try:
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
        plots = page.locator(".js-plotly-plot")
        assert plots.count() == 2
        for i in range(2):
            assert plots.nth(i).locator("svg.main-svg").count() >= 1
        # the bars and the loss curves were drawn
        assert page.locator(".js-plotly-plot .barlayer .point").count() >= 3
        assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 6
        assert page.locator("#runs-table tbody tr").count() == 3
        assert problems == []
    finally:
        context.close()

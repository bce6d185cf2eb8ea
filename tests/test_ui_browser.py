"""The runs page in a real headless Chromium (Debian's package, driven by Playwright), against a real
``ml-manager ui`` process; and the report, opened from ``file://`` with the network cut off."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from _ui_process import ui_process
from ml_manager import MLRun

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow
ML_MANAGER = str(Path(sys.executable).with_name("ml-manager"))
WAIT_MS = 20_000


def _chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (the test extra)"
    if found is None:
        reason = "no chromium here (apt-get install chromium)"
    if reason:
        if os.environ.get("ML_MANAGER_REQUIRE_BROWSER"):
            pytest.fail(f"the browser tests must run here: {reason}", pytrace=False)
        pytest.skip(reason)
    assert found is not None
    return found


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page in a headless Chromium; its errors fail the test.

    The tests' own probes (``wait_for_function``) evaluate strings in the page, which the served page's
    Content-Security-Policy forbids: they bypass it, except in the test marked ``csp``, which probes nothing."""
    executable = _chromium()
    bypass_csp = request.node.get_closest_marker("csp") is None
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp)
            new_page = context.new_page()
            new_page.set_default_timeout(WAIT_MS)
            new_page.on("pageerror", lambda error: errors.append(str(error)))
            new_page.on("console", lambda message: _console(message, errors))
            yield new_page
        finally:
            browser.close()
    assert errors == []


def _console(message: Any, errors: list[str]) -> None:
    # A 400 is how the server answers a query it refuses: the page shows it; the browser logs it too.
    if message.type == "error" and "status of 400" not in message.text:
        errors.append(message.text)


@contextlib.contextmanager
def serving(base_dir: Path, page: Any) -> Iterator[str]:
    """``ml-manager ui base_dir`` on a free port, until the block ends; yields its URL once it answers.

    The page leaves it first, so that its polling never meets a server that is gone."""
    with ui_process(str(base_dir)) as url:
        try:
            yield url
        finally:
            page.goto("about:blank")


def make_runs(base_dir: Path) -> list[MLRun]:
    runs = []
    for lr in (0.1, 0.01):
        with MLRun.create({"lr": lr, "model": {"name": "mlp"}}, base_dir, "demo") as run:
            for step in range(200):
                run.log({"loss": math.exp(-lr * step) + 0.05 * (step % 5), "acc": 1 - math.exp(-lr * step)}, step=step)
        runs.append(run)
    return runs


def shot(page: Any, name: str) -> None:
    """Where ML_MANAGER_SCREENSHOTS names a directory, the page as it is now (the README's pictures)."""
    where = os.environ.get("ML_MANAGER_SCREENSHOTS")
    if where:
        page.screenshot(path=str(Path(where) / name))


def lines(page: Any, metric: str) -> int:
    return int(page.evaluate(f"window.mlCharts[{metric!r}].series.length")) - 1


def test_the_table_lists_the_runs_and_a_query_filters_it(page: Any, base_dir: Path) -> None:
    make_runs(base_dir)
    with serving(base_dir, page) as url:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('.row').length === 2")
        assert page.locator("#count").text_content() == "2 runs"
        page.fill("#query", "lr < 0.05")
        page.wait_for_function("document.querySelectorAll('.row').length === 1")
        assert "0.01" in page.locator(".row").text_content()
        assert "q=lr+%3C+0.05" in page.url  # the view is in the URL
        # Columns the user unticks leave the table, and the URL remembers it.
        page.click("#columns-menu summary")
        page.uncheck("#column-list input[data-column='created']")
        page.wait_for_function("!document.getElementById('table-head').textContent.includes('created')")
        assert "hide=created" in page.url
        page.fill("#query", "lr.__class__")
        page.wait_for_function("document.getElementById('query-error').textContent.length > 0")
        assert "not allowed" in page.locator("#query-error").text_content()


def test_two_selected_runs_draw_two_lines_per_metric_and_smoothing_and_log_scale_change_the_drawing(
    page: Any, base_dir: Path
) -> None:
    make_runs(base_dir)
    with serving(base_dir, page) as url:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('.row').length === 2")
        boxes = page.locator(".row input[type=checkbox]")
        boxes.nth(0).check()
        boxes.nth(1).check()
        page.wait_for_function(
            "['loss', 'acc'].every((name) => window.mlCharts[name] && window.mlCharts[name].series.length === 3)"
        )
        assert lines(page, "loss") == 2
        assert lines(page, "acc") == 2
        raw = page.evaluate("window.mlCharts.loss.data[1]")
        assert len(raw) == 200
        assert page.evaluate("window.mlCharts.loss.scales.y.distr") == 1
        page.select_option("#y-scale", "log")
        page.wait_for_function("window.mlCharts.loss.scales.y.distr === 3")
        page.fill("#smoothing", "0.9")
        page.dispatch_event("#smoothing", "input")
        # Each run now drawn twice: the raw line (faint) and the smoothed one.
        page.wait_for_function("window.mlCharts.loss.series.length === 5")
        drawn = page.evaluate("window.mlDrawn.loss[0]")
        assert drawn["smoothed"][0] == pytest.approx(drawn["raw"][0])  # debiased: starts at the first value
        assert drawn["smoothed"][50] != pytest.approx(drawn["raw"][50])
        assert "log=1" in page.url
        assert "smooth=0.9" in page.url
        shot(page, "ui.png")


def test_the_view_in_the_url_is_restored(page: Any, base_dir: Path) -> None:
    runs = make_runs(base_dir)
    selection = "&".join(f"sel=demo%2F{run.run_id}" for run in runs)
    with serving(base_dir, page) as url:
        page.goto(f"{url}#{selection}&log=1&smooth=0.5")
        page.wait_for_function("window.mlCharts.acc && window.mlCharts.acc.series.length === 5")
        assert page.evaluate("window.mlCharts.acc.scales.y.distr") == 3
        assert page.locator("#y-scale").input_value() == "log"


def test_a_running_runs_chart_grows_without_a_reload(page: Any, base_dir: Path) -> None:
    run = MLRun.create({"lr": 0.1}, base_dir, "demo")
    try:
        for step in range(5):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
        run.flush()
        with serving(base_dir, page) as url:
            page.goto(f"{url}#sel=demo%2F{run.run_id}")
            page.wait_for_function("window.mlCharts.loss && window.mlCharts.loss.data[0].length === 5")
            page.evaluate("window.notReloaded = true")
            for step in range(5, 8):
                run.log({"loss": 1.0 / (step + 1)}, step=step)
            run.flush()  # another writer's flush: the page polls and sees it
            page.wait_for_function("window.mlCharts.loss.data[0].length === 8")
            assert page.evaluate("window.notReloaded") is True
            assert page.evaluate("window.mlCharts.loss.data[0][7]") == 7
            assert "running" in page.locator(".row").text_content()
    finally:
        run.finish()


def test_the_report_opened_from_a_file_with_no_network_shows_the_table_and_charts(
    page: Any, base_dir: Path, tmp_path: Path
) -> None:
    runs = make_runs(base_dir)
    report = tmp_path / "report.html"
    done = subprocess.run(
        [ML_MANAGER, "report", str(base_dir), "-o", str(report)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    asked: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.abort()

    page.context.set_offline(True)
    page.route(lambda url: not url.startswith("file:"), refuse)
    selection = "&".join(f"sel=demo%2F{run.run_id}" for run in runs)
    page.goto(f"{report.as_uri()}#{selection}")
    page.wait_for_function("document.querySelectorAll('.row').length === 2")
    page.wait_for_function("window.mlCharts.loss && window.mlCharts.loss.series.length === 3")
    assert lines(page, "acc") == 2
    assert page.evaluate("window.mlCharts.loss.data[1].length") == 200
    page.select_option("#y-scale", "log")
    page.wait_for_function("window.mlCharts.loss.scales.y.distr === 3")
    assert asked == []
    shot(page, "report.png")


def test_zooming_fetches_the_range_at_full_resolution(page: Any, base_dir: Path) -> None:
    with MLRun.create({"lr": 0.1}, base_dir, "demo") as run:
        for step in range(20_000):
            run.log({"acc": (step % 100) / 100}, step=step)
    with serving(base_dir, page) as url:
        page.goto(f"{url}#sel=demo%2F{run.run_id}")
        page.wait_for_function("window.mlCharts.acc && window.mlCharts.acc.data[0].length > 0")
        whole = page.evaluate("window.mlCharts.acc.data[0].length")
        assert whole < 20_000 / 4  # downsampled to the chart's width
        assert page.evaluate("Math.max.apply(null, window.mlCharts.acc.data[1])") == 0.99  # the peaks kept
        # A drag over the chart from x=5000 to x=5300, as uPlot reports it.
        page.evaluate(
            "(() => { const u = window.mlCharts.acc; const a = u.valToPos(5000, 'x'), b = u.valToPos(5300, 'x');"
            " u.setSelect({left: a, top: 0, width: b - a, height: u.bbox.height}, true); })()"
        )
        page.wait_for_function("window.mlCharts.acc.data[0].length > 250 && window.mlCharts.acc.data[0].length < 320")
        first, last = page.evaluate("[window.mlCharts.acc.data[0][0], window.mlCharts.acc.data[0].slice(-1)[0]]")
        assert abs(first - 5000) <= 2
        assert abs(last - 5300) <= 2
        assert page.evaluate("window.mlCharts.acc.data[0][1] - window.mlCharts.acc.data[0][0]") == 1  # every step
        page.dispatch_event(".panel[data-metric='acc'] .u-over", "dblclick")  # back to the whole run
        page.wait_for_function(f"window.mlCharts.acc.data[0].length === {whole}")


def test_grouping_by_a_config_key_draws_each_groups_mean_and_band(page: Any, base_dir: Path) -> None:
    keys = []
    for lr in (0.1, 0.01):
        for seed in (1, 2):
            with MLRun.create({"lr": lr, "seed": seed}, base_dir, "demo") as run:
                for step in range(10):
                    run.log({"loss": lr * seed * step}, step=step)
            keys.append(f"sel=demo%2F{run.run_id}")
    with serving(base_dir, page) as url:
        page.goto(f"{url}#{'&'.join(keys)}&group=lr")
        # Per group: its mean line, and the two edges of its min-max band.
        page.wait_for_function("window.mlCharts.loss && window.mlCharts.loss.series.length === 7")
        drawn = page.evaluate("window.mlDrawn.loss")
        by_label = {line["label"]: line["raw"] for line in drawn}
        assert by_label["lr=0.01 (2)"][4] == pytest.approx((0.01 * 1 * 4 + 0.01 * 2 * 4) / 2)
        assert by_label["lr=0.1 (2)"][9] == pytest.approx((0.1 * 9 + 0.2 * 9) / 2)
        assert page.locator("#group-by").input_value() == "lr"
        page.select_option("#group-by", "")
        page.wait_for_function("window.mlCharts.loss && window.mlCharts.loss.series.length === 5")


@pytest.mark.csp
def test_the_page_runs_under_its_content_security_policy(page: Any, base_dir: Path) -> None:
    runs = make_runs(base_dir)
    with serving(base_dir, page) as url:
        response = page.goto(f"{url}#sel=demo%2F{runs[0].run_id}")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector(".panel[data-metric='loss'] canvas")  # the table and a chart, drawn by the page
        assert page.locator(".row").count() == 2
    # The fixture fails the test on any error the page logged, a refused script or style included.

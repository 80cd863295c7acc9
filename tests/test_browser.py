"""``leaderboard.html`` in headless Chromium: renders offline without errors, tables sort and filter,
hostile strings never run, and a screenshot (``tests/_artifacts/leaderboard.png``).

Drives Debian's ``/usr/bin/chromium`` through the ``playwright`` package (never downloads a
browser). Networking is off three ways: a dead proxy, every non-file request aborted (and
recorded), and the page's own Content-Security-Policy. Without Chromium or playwright the tests
skip locally and fail under CI (conftest's hook for the ``browser`` marker). ``CHROMIUM`` names the
binary to use instead of ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_html import EVIL_BACKBONE, EVIL_LABEL, EVIL_STRATEGY, make_fake_run

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "tests" / "_artifacts" / "leaderboard.png"  # git-ignored; docs/ holds the demo's
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
        "--no-first-run", "--no-default-browser-check", "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>", "--font-render-hinting=none"]


def _chromium() -> str:
    """``$CHROMIUM`` when set (and only it), else Debian's binary."""
    wanted = os.environ.get("CHROMIUM")
    for cand in ((wanted,) if wanted else ("/usr/bin/chromium", shutil.which("chromium"))):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return ""


class Session:
    """One page with every console error, page error, dialog and non-file request recorded."""

    def __init__(self, context):
        self.errors, self.dialogs, self.blocked = [], [], []
        self.page = context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def open(self, path: Path, *, draw_all: bool = True):
        """Open the page; with ``draw_all``, scroll every figure into view (they are drawn as they come near
        the screen), wait until all are drawn and scroll back to the top. The tests of the tables alone leave the
        figures undrawn (about 3 s of CPU a page here); the rendering tests draw them all."""
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        figs = self.page.locator("div.fig[data-figure]")
        if draw_all:
            for i in range(figs.count()):
                figs.nth(i).scroll_into_view_if_needed()
            self.page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {figs.count()}",
                                        timeout=30_000)
            self.page.evaluate("() => window.scrollTo(0, 0)")
        return self.page

    def check_clean(self):
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.errors, f"console errors: {self.errors}"


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    exe = _chromium()
    if not exe:
        pytest.skip(f"Chromium not found at {os.environ.get('CHROMIUM') or '/usr/bin/chromium'} "
                    "(apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:", "blob:", "about:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=exe, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 900}, device_scale_factor=1, service_workers="block",
            accept_downloads=False)
        ctx.route("**/*", route)
        ctx.on("request", lambda req: None if req.url.startswith(("file:", "data:", "blob:", "about:"))
               else blocked.append(req.url))
        yield ctx, blocked
        ctx.close()
    assert not blocked, f"the page tried to reach the network: {blocked[:5]}"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from reports.leaderboard import build_report

    tmp = tmp_path_factory.mktemp("browser")
    clean = make_fake_run(tmp / "clean", kind="nih", name="example page (simulated trial outputs)",
                          backbones=("resnet18", "densenet121", "efficientnet_b0"),
                          strategies=("bce", "focal", "asl", "ml_ros", "logit_adj", "crt", "tau_norm"), seeds=(0, 1),
                          n_boot=40, history=True)
    hostile = make_fake_run(tmp / "hostile", kind="synthetic", hostile=True, n_boot=20, history=True)
    for root in (clean, hostile):
        build_report(root)
    return clean / "leaderboard.html", hostile / "leaderboard.html"


def _update_screenshot(shot: Path) -> None:
    """Keep the test's screenshot as a CI artifact (the README's comes from the demo: benchmarks/screenshot.py)."""
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)


def _rows(page, table="board", col=2):
    return page.eval_on_selector_all(
        f"#{table} tbody tr:not([hidden])", f"rows => rows.map(r => r.cells[{col}].getAttribute('data-v'))")


def _header(page, label, table="board"):
    return page.locator(f"#{table} thead th", has_text=label).first


def test_figures_are_drawn_as_they_come_near_the_screen_and_all_before_printing(browser_context, pages):
    ctx, _ = browser_context
    s = Session(ctx)
    page = s.open(pages[0], draw_all=False)
    drawn = ("() => [...document.querySelectorAll('div.fig[data-figure]')]"
             ".map(d => d.classList.contains('js-plotly-plot'))")
    near = ("() => [...document.querySelectorAll('div.fig[data-figure]')]"
            ".map(d => d.getBoundingClientRect().top < window.innerHeight + 800)")
    page.wait_for_function(f"() => ({drawn})().some(x => x)", timeout=30_000)
    first, close = page.evaluate(drawn), page.evaluate(near)
    assert first == close and not all(first), (first, close)  # the ones near the screen only
    last = page.locator("div.fig[data-figure]").last
    last.scroll_into_view_if_needed()
    page.wait_for_function(f"() => ({drawn})().slice(-1)[0]", timeout=30_000)
    page.evaluate("() => { window.scrollTo(0, 0); window.dispatchEvent(new Event('beforeprint')); }")
    assert all(page.evaluate(drawn))  # printing draws the rest at once
    # a figure waiting to be drawn already holds its final height, so the page does not jump
    heights = page.evaluate("() => [...document.querySelectorAll('div.fig[data-figure]')]"
                            ".map(d => [d.getBoundingClientRect().height, JSON.parse("
                            "document.getElementById(d.id + '-data').textContent).layout.height || 0])")
    assert all(h >= want - 1 for h, want in heights), heights
    s.check_clean()


def test_renders_offline_without_errors_and_screenshot(browser_context, pages):
    ctx, blocked = browser_context
    s = Session(ctx)
    page = s.open(pages[0])
    n_figs = page.locator("div.fig[data-figure]").count()
    assert n_figs >= 6
    assert page.locator(".js-plotly-plot").count() == n_figs
    assert page.locator(".js-plotly-plot svg.main-svg").count() >= n_figs
    assert page.locator("#fig-heat .hm, #fig-heat image, #fig-heat .heatmaplayer *").count() > 0
    assert page.locator("svg.cd text").count() >= 10
    assert page.locator(".gallery img").count() >= 4
    # the training curves: one panel per strategy, crt's two stages shaded and named
    assert page.locator("#fig-train-auc .cartesianlayer > g.subplot").count() == 7
    assert page.locator("#fig-train-loss .annotation-text", has_text="classifier · re-init").count() == 1
    assert page.evaluate("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator(".modebar-btn[data-title*='Plotly'], a.modebar-btn[href]").count() == 0
    shot = Path(str(pages[0]).replace(".html", ".png"))
    page.screenshot(path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": 1480})
    assert 50_000 < shot.stat().st_size < 1_000_000
    _update_screenshot(shot)
    s.check_clean()
    assert not blocked


def test_header_click_sorts_and_reverses(browser_context, pages):
    s = Session(browser_context[0])
    page = s.open(pages[0], draw_all=False)
    auc = [float(v) for v in _rows(page, col=4)]
    assert auc == sorted(auc, reverse=True), "initial order: macro AUC, best first"
    before = _rows(page)
    _header(page, "strategy").click()
    asc = _rows(page)
    assert asc != before and asc == sorted(asc, key=str.lower)
    assert _header(page, "strategy").get_attribute("aria-sort") == "ascending"
    _header(page, "strategy").click()
    desc = _rows(page)
    assert desc == sorted(desc, key=str.lower, reverse=True) and desc != asc
    _header(page, "macro AUC").click()                       # a metric's first click: best first
    assert [float(v) for v in _rows(page, col=4)] == sorted(auc, reverse=True)
    _header(page, "macro AUC").click()                       # numeric, not lexicographic
    assert [float(v) for v in _rows(page, col=4)] == sorted(auc)
    assert _header(page, "macro AUC").get_attribute("aria-sort") == "ascending"
    s.check_clean()


def test_missing_values_sort_last_both_ways(browser_context, pages):
    s = Session(browser_context[0])
    page = s.open(pages[1], draw_all=False)
    for _ in range(2):
        _header(page, "mAP").click()
        vals = _rows(page, col=6)
        missing = [v == "" for v in vals]
        assert any(missing) and missing == sorted(missing), vals   # all missing at the end
        nums = [float(v) for v in vals if v]
        order = _header(page, "mAP").get_attribute("aria-sort")
        assert nums == sorted(nums, reverse=order == "descending")
    s.check_clean()


def test_filter_box_and_selects_hide_rows(browser_context, pages):
    s = Session(browser_context[0])
    page = s.open(pages[0], draw_all=False)
    total = len(_rows(page))
    page.fill(".controls[data-table=board] input.filter", "focal")
    shown = _rows(page)
    assert 0 < len(shown) < total and set(shown) == {"focal"}
    assert page.locator("#board tbody tr[hidden]").count() == total - len(shown)
    page.fill(".controls[data-table=board] input.filter", "densenet121 asl")
    assert _rows(page) == ["asl"]
    page.fill(".controls[data-table=board] input.filter", "")
    assert len(_rows(page)) == total
    page.select_option(".controls[data-table=board] select[data-col='1']", "resnet18")
    assert set(_rows(page, col=1)) == {"resnet18"} and len(_rows(page)) < total
    assert "of" in page.locator(".controls[data-table=board] .count").inner_text()
    s.check_clean()


def test_trials_link_opens_details(browser_context, pages):
    s = Session(browser_context[0])
    page = s.open(pages[0], draw_all=False)
    link = page.locator("#board tbody tr").first.locator("a.trials-link")
    target = link.get_attribute("href")[1:]
    assert page.evaluate(f"() => document.getElementById('{target}').open") is False
    link.click()
    assert page.evaluate(f"() => document.getElementById('{target}').open") is True
    assert page.locator(f"#{target} a[href$='metrics.json']").count() >= 3
    s.check_clean()


def test_hostile_strings_never_execute(browser_context, pages):
    s = Session(browser_context[0])
    page = s.open(pages[1])
    # Shown as text in tables and in plotly labels, never as markup.
    assert page.locator("#labels td", has_text=EVIL_LABEL).count() == 1
    assert page.locator("#board td", has_text=EVIL_STRATEGY).count() >= 1
    assert page.locator("#board td", has_text=EVIL_BACKBONE).count() >= 1
    ticks = page.eval_on_selector_all("#fig-per-label .xtick text", "els => els.map(e => e.textContent)")
    assert EVIL_LABEL in ticks
    assert page.evaluate("() => document.querySelectorAll("
                         "'script:not([type=\"application/json\"]), img:not([src^=\"data:\"])').length") == 2
    # Interact: hover a heatmap, switch the metric menus, sort by the hostile column, open every details block.
    box = page.locator("#fig-per-label .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for label in ("strategy", "backbone"):
        _header(page, label).click()
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    page.locator("#fig-heat .updatemenu-header-group").first.click()
    page.locator("#fig-heat .updatemenu-dropdown-button", has_text="mAP").first.click()
    page.wait_for_function("() => document.getElementById('fig-heat').data.at(-1).visible === true", timeout=10_000)
    visible = page.evaluate("() => document.getElementById('fig-heat').data.map(t => t.visible)")
    assert visible == [False, False, False, True]
    assert "mAP" in page.locator("#fig-heat .gtitle").text_content()
    assert page.evaluate("() => typeof window.__xss") == "undefined"
    s.check_clean()


def test_comparison_page_renders_offline_and_filters(browser_context, tmp_path):
    """``bench compare``'s page: drawn offline without errors, every figure drawn, its table filters."""
    from reports.leaderboard import build_report
    from reports.runcompare import compare_runs, write

    ctx, _ = browser_context
    small = dict(backbones=("resnet18", "densenet121"), strategies=("bce", "focal"), n_boot=20)
    runs = [make_fake_run(tmp_path / name, name=name, seed=i, **small) for i, name in enumerate(("before", "after"))]
    for r in runs:
        build_report(r, html=False)
    files = write(compare_runs(runs), tmp_path / "cmp")
    s = Session(ctx)
    page = s.open(files["comparison.html"])
    assert page.locator(".js-plotly-plot").count() == page.locator("div.fig[data-figure]").count() == 2
    rows = page.locator("#cmp-values tbody tr")
    assert rows.count() == 4
    page.fill(".controls[data-table='cmp-values'] input.filter", "densenet focal")
    page.wait_for_timeout(100)
    assert sum(1 for i in range(rows.count()) if rows.nth(i).is_visible()) == 1
    assert page.locator("#cmp-tests tbody tr").count() == 4 * 3  # 4 rows x 3 tested metrics, one other run
    s.check_clean()

"""`dvc plots show` draws with no network: .dvc/config points DVC at .dvc/plots.html, whose
vega, vega-lite and vega-embed are inlined (dlbasics.dvc.plots_page, `make plots-page`). Checked
in Chromium with every request that is not a local file refused: each plot is a canvas with
marks on it, and the page asked the network for nothing. DVC's own page, under the same block,
draws nothing (the control)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, make_project, tool_env

from dlbasics.dvc import plots_page

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: the browser test drives Debian's chromium "
    "package (CI installs it with apt)")


def test_the_pinned_packages_are_what_the_page_inlines():
    # the versions are those dvc-render would fetch from its CDN
    from dvc_render.vega import VegaRenderer

    for spec in plots_page.PACKAGES:
        name, version = spec.split("@")
        assert f"npm/{name}@{version}" in VegaRenderer.SCRIPTS
    assert plots_page.integrity(b"abc").startswith("sha512-")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A clone with the committed curves (reports/history, reports/selection) and the page;
    with the test predictions too (the confusion matrices) where this checkout has them."""
    proj = make_project(tmp_path_factory.mktemp("plots") / "proj", params_edit=lambda p: p)
    for rel in ("reports/history", "reports/selection", "reports/predictions"):
        if (REPO / rel).is_dir():
            shutil.copytree(REPO / rel, proj / rel)
    built = REPO / ".dvc" / "plots.html"
    if built.is_file():
        shutil.copy(built, proj / ".dvc" / "plots.html")
    else:
        assert plots_page.main([str(proj / ".dvc" / "plots.html")]) == 0, "npm pack failed"
    return proj


def _show(proj: Path, out: str, *extra: str) -> Path:
    proc = subprocess.run(["dvc", "plots", "show", "-o", out, *extra], cwd=proj, env=tool_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proj / out / "index.html"


def _draw(index: Path) -> tuple[dict[str, int], list[str]]:
    """Open `index` with only file:// requests allowed; ({plot id: coloured pixels of its
    canvas}, the other requests the page made)."""
    from playwright.sync_api import sync_playwright

    refused: list[str] = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1366, "height": 768})
            tab.route("**/*", route)
            tab.goto(index.as_uri(), wait_until="load")
            tab.wait_for_timeout(1500)  # vega-embed draws after load
            n_plots = tab.evaluate("document.querySelectorAll('body > div').length")
            inked = tab.evaluate("""() => Object.fromEntries(
              [...document.querySelectorAll('body > div')].map(d => {
                const c = d.querySelector('canvas');
                if (!c || !c.width) return [d.id, 0];
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < px.length; i += 4) if (px[i + 3] && px[i] < 200) n++;
                return [d.id, n];
            }))""")
        finally:
            browser.close()
    assert n_plots == len(inked)
    return inked, refused


def test_every_plot_draws_with_the_network_refused(project):
    # `dvc plots show` as the docs show it: the page goes to dvc_plots/index.html.
    proc = subprocess.run(["dvc", "plots", "show"], cwd=project, env=tool_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    inked, refused = _draw(project / "dvc_plots" / "index.html")
    assert {"train_loss", "val_accuracy", "test_loss", "reports_selection_tuned_json",
            "reports_history_mlp_json"} <= set(inked)
    if not (project / "reports" / "predictions").is_dir():
        assert inked.pop("confusion") == 0  # its data (reports/predictions) is not in git
    assert all(n > 500 for n in inked.values()), {k: n for k, n in inked.items() if n <= 500}
    assert refused == []


def test_dvc_s_own_page_draws_nothing_offline(project):
    # The control: DVC's default page loads vega from a CDN.
    default = project / "default.html"
    default.write_text("<!DOCTYPE html><html><head>{scripts}</head><body>{plot_divs}</body>"
                       "</html>")
    inked, refused = _draw(_show(project, "online", "--html-template", str(default)))
    assert inked and all(n == 0 for n in inked.values())
    assert any("cdn.jsdelivr.net" in url for url in refused)

"""The course website (``python3 tasks.py site``) in a real browser: site/ served on
localhost, every page visited in headless Chromium (Debian's, through Playwright).

Each page must load with no console error, request nothing from any host but localhost,
show its math rendered (no raw ``$…$`` or ``\\(…\\)`` left in its text) and, for a section's
notebook page, at least one loaded figure. One screenshot per section page, and one of
Table 2, go to the test's temporary directory (``NFCOURSE_SCREENSHOTS=DIR`` keeps them).

The site is built, not rebuilt, here: .ci/run builds it first (at the default settings, the
build being the test that every solution notebook passes). Without site/, or without a
browser, the test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_browser import CHROMIUM_FLAGS, INSTALL, _free_port, _unavailable

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
SECTIONS = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.py"))
#: Sections with sliders: on the site each shows its picture at the sliders' start.
WITH_SLIDERS = {p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.py")
                if "interact(" in p.read_text("utf-8")}

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The text a reader sees, code blocks and MathJax's own markup left out.
_VISIBLE_TEXT = """() => {
  const main = document.querySelector('main') || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, mjx-container, .headerlink')
    .forEach(e => e.remove());
  return copy.innerText;
}"""
#: Resolves once MathJax 3 has typeset the page (at once on a page without MathJax).
_MATHJAX_DONE = "() => window.MathJax?.startup?.promise ?? null"
_RAW_MATH = re.compile(r"\\\(|\\\)|\\\[|\\\]|(?<![\w$])\$[^$\s][^$\n]{0,200}?\$(?![\w$])")


def pages() -> list[str]:
    return sorted(str(p.relative_to(SITE)) for p in SITE.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").exists():
        _unavailable("no site/ to test: build it with `python3 tasks.py site`")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(SITE)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait()


@pytest.fixture(scope="module")
def browser(site_url):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e .[test]")
    chromium = shutil.which("chromium")
    if chromium is None:
        _unavailable(f"no chromium on PATH: {INSTALL}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    keep = os.environ.get("NFCOURSE_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path_factory.mktemp("site-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_site_has_every_section_and_study():
    if not (SITE / "index.html").exists():
        _unavailable("no site/ to test: build it with `python3 tasks.py site`")
    built = set(pages())
    assert {f"sections/{s}.html" for s in SECTIONS} <= built, sorted(built)
    studies = {f"studies/{p.stem}.html" for p in (ROOT / "docs").glob("*.md")}
    assert studies <= built, sorted(studies - built)
    downloads = {p.name for p in (SITE / "_downloads").rglob("*.ipynb")}
    assert downloads == {f"{s}.ipynb" for s in SECTIONS}


def test_every_page_loads_offline_with_its_math_and_figures(site_url, browser, shots):
    failures = []
    for name in pages():
        tab = browser.new_page(viewport={"width": 1300, "height": 900})
        errors, foreign = [], []
        tab.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
        tab.on("response", lambda r, e=errors: e.append(f"{r.status} {r.url}")
               if r.status >= 400 else None)
        tab.on("pageerror", lambda err, e=errors: e.append(str(err)))
        tab.on("request", lambda r, f=foreign: None if r.url.startswith(
            (site_url, "data:", "blob:", "about:")) else f.append(r.url))
        tab.goto(site_url + name, wait_until="load")
        tab.evaluate(_MATHJAX_DONE)
        text = tab.evaluate(_VISIBLE_TEXT)
        raw = sorted({m.group(0)[:60] for m in _RAW_MATH.finditer(text)})
        if errors:
            failures.append(f"{name}: console errors {errors[:3]}")
        if foreign:
            failures.append(f"{name}: requests beyond localhost {foreign[:3]}")
        if raw:
            failures.append(f"{name}: math left raw {raw[:5]}")
        if name.startswith("sections/"):
            loaded = tab.evaluate("() => [...document.querySelectorAll('main img')]"
                                  ".filter(i => i.complete && i.naturalWidth > 0).length")
            rendered = tab.evaluate("() => document.querySelectorAll('mjx-container').length")
            if not loaded:
                failures.append(f"{name}: no figure loaded")
            if not rendered:
                failures.append(f"{name}: no math rendered by MathJax")
        if name.startswith("sections/") or name == "studies/table2.html":
            tab.screenshot(path=str(shots / (name.replace("/", "_") + ".png")))
        if Path(name).stem in WITH_SLIDERS:
            widget = tab.locator(".cell", has_text="Interactive in JupyterLab").first
            if not widget.count() or not widget.locator("img").count():
                failures.append(f"{name}: no slider cell drawn at its start")
            else:
                widget.screenshot(path=str(shots / (Path(name).stem + "_widget.png")))
        tab.close()
    print(f"{len(pages())} pages visited; screenshots in {shots}")
    assert not failures, "\n".join(failures)

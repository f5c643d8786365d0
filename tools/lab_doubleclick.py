"""Check by hand that double-clicking a student notebook in JupyterLab opens it as a notebook.

The test suite does this, and more, in tests/test_browser.py (pytest marker ``browser``):
for every student notebook it double-clicks, runs all cells in a headless Chromium, and
checks the outputs. This tool is for a look by hand at a running lab. With JupyterLab running
(``python3 tasks.py course --no-browser --port=8897 --ServerApp.token=``) and Playwright
plus a Chromium (``pip install playwright``; Debian's ``chromium`` package works)::

    python tools/lab_doubleclick.py http://127.0.0.1:8897/lab 01_bayes.py lab.png

It double-clicks the file in the file browser, waits for notebook cells, prints how many
notebook cells and text editors opened, and saves a screenshot. Without the default-viewer
setting that ``python -m nfcourse lab`` installs, the same file opens in the text editor.
"""

import sys

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def main(url: str, name: str, screenshot: str, chromium: str = "/usr/bin/chromium") -> int:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "?reset")  # a fresh workspace: no tabs restored from last time
        page.wait_for_timeout(3000)
        page.keyboard.press("Escape")
        item = page.locator(f".jp-DirListing-item[title*='{name}']").first
        item.wait_for(timeout=60000)
        item.dblclick()
        page.wait_for_timeout(6000)
        cells = page.locator(".jp-NotebookPanel .jp-Cell").count()
        editors = page.locator(".jp-FileEditor").count()
        page.screenshot(path=screenshot)
        browser.close()
    print(f"double-clicked {name}: notebook cells={cells}, text editors={editors}")
    return 0 if cells > 0 and editors == 0 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

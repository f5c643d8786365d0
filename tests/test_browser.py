"""The student notebooks in a real browser: JupyterLab, opened as ``python -m nfcourse lab``
opens it, driven in Chromium by Playwright.

One JupyterLab server and one browser serve every notebook. For each student notebook the
test double-clicks it in the file browser, checks that it opens as a notebook (jupytext's
viewer, not the text editor), runs *Run → Run All Cells* and waits for the kernel to go
idle, then asserts what a student sees: every code cell ran, no output is an error other
than an exercise stub's, the ``interact`` sliders render as widgets, and an untouched
stub's self-check reads "not attempted yet", and that check's ○ is in the progress record
beside the notebook (work/.progress.json). Then it shuts the kernel down and closes the tab.

It needs Debian's Chromium (``apt-get install chromium``) and the ``playwright`` package
(in the ``test`` extra); Playwright's own browser download is never used. Without either,
the test is skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import nfcourse.__main__ as cli
from nfcourse import exercises
from nfcourse.checks import record
from nfcourse.checks.core import NOT_ATTEMPTED
from nfcourse.curriculum import STUB_PREFIX

ROOT = Path(__file__).resolve().parent.parent
STUDENT = sorted((ROOT / "curriculum").glob("[0-9][0-9]_*.py"))
#: Notebooks with ``interact`` sliders: at least one must render as a widget.
WITH_SLIDERS = {p.name for p in STUDENT
                if re.search(r"\b(Int|Float)Slider\b", p.read_text(encoding="utf-8"))}

#: Headless Chromium on a Debian machine without a display, GPU or network.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
INSTALL = "apt-get install chromium"
#: Fast mode, in a browser on a shared 2-core machine: each notebook takes 10-60 s.
RUN_TIMEOUT_S = 600

#: ``python -m nfcourse lab`` itself (its working copies of curriculum/, its default-viewer
#: setting, its JupyterLab command line), with the course folder and the settings it writes
#: moved to a temporary directory, so that neither the checkout nor .venv changes.
_LAB = """\
import sys
from pathlib import Path
import nfcourse.__main__ as cli
from nfcourse import curriculum
root, prefix = Path(sys.argv[1]), Path(sys.argv[2])
curriculum.repo_root = lambda: root
install = cli.install_default_viewer
cli.install_default_viewer = lambda: install(prefix)
sys.exit(cli.main(["lab", *sys.argv[3:]]))
"""

#: Where the current notebook stands, from JupyterLab's own models (the lab is started with
#: expose_app_in_browser, which makes it ``window.jupyterapp``).
_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session?.kernel;
  const cells = panel.content.model.cells;
  const state = {kernel: kernel ? kernel.status : null, code: 0, ran: 0, running: [],
                 errors: []};
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    state.code++;
    if (cell.executionState === 'running') state.running.push(i);
    if (cell.executionCount !== null) state.ran++;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error')
        state.errors.push({cell: i, ename: out.ename, evalue: out.evalue});
    }
  }
  return state;
}"""


def _unavailable(reason: str):
    """Skip locally; in CI a missing browser is a failure, never a silent skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser test must run)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    """The lab's temporary folder: the course copy is its course/."""
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="module")
def lab_url(lab_dir):
    """A JupyterLab server on a temporary copy of the course, as the student's `course`
    command starts it (fast mode, offline), with --no-browser, a free port, no token."""
    tmp = lab_dir
    root, prefix = tmp / "course", tmp / "prefix"
    shutil.copytree(ROOT / "curriculum", root / "curriculum")
    # The user's own Jupyter settings must not matter, nor be written to; no news or
    # update check (JupyterLab would fetch them from the network).
    jupyter = {name: tmp / name.lower() for name in
               ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")}
    notification = (jupyter["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
                    / "notification.jupyterlab-settings")
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, **{k: str(v) for k, v in jupyter.items()},
           "NFCOURSE_FAST": "1", "NFCOURSE_OFFLINE": "1"}
    env.pop("MPLBACKEND", None)      # the tests' Agg would hide the plots a student sees
    port = _free_port()
    log = tmp / "lab.log"
    args = ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", "--IdentityProvider.token=",
            f"--LabApp.app_settings_dir={prefix / 'share' / 'jupyter' / 'lab' / 'settings'}",
            "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")             # CI runs as root
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-c", _LAB, str(root), str(prefix), *args],
                                  env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            try:
                _get(f"{url}/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not answer within 120 s:\n"
                                f"{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        assert sorted(p.name for p in (root / "work").glob("*.py")) == \
            [p.name for p in STUDENT], "the lab command did not make the working copies"
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def page(request):
    """A headless Chromium tab (Debian's chromium, a fresh profile) on JupyterLab."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e .[test]")
    chromium = shutil.which("chromium")
    if chromium is None:
        _unavailable(f"no chromium on PATH: {INSTALL} (Debian's package; Playwright's own "
                     "browser download is not used)")
    lab_url = request.getfixturevalue("lab_url")    # started only once a browser is there
    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary user-data dir, removed on close
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.set_default_timeout(60_000)
            tab.goto(lab_url + "/")   # the lab command's default URL: work/
            tab.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
            yield tab
        finally:
            browser.close()


def test_lab_reads_the_settings_the_course_writes(monkeypatch):
    """The browser test points JupyterLab at a temporary settings folder; a student's
    JupyterLab reads the one `install_default_viewer` writes by default."""
    monkeypatch.delenv("JUPYTERLAB_DIR", raising=False)
    from jupyterlab.labapp import LabApp
    default = inspect.signature(cli.install_default_viewer).parameters["prefix"].default
    assert Path(LabApp().app_settings_dir) == Path(default) / "share" / "jupyter" / "lab" / \
        "settings"


def _wait_for_run(page, name: str) -> dict:
    """Poll until Run All has finished: the kernel idle and no cell queued or running,
    twice in a row, after at least one cell ran."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    settled = 0
    while True:
        state = page.evaluate(_STATE)
        done = (state["kernel"] == "idle" and not state["running"] and state["ran"] > 0)
        settled = settled + 1 if done else 0
        if settled >= 2:
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: Run All did not finish within {RUN_TIMEOUT_S} s: {state}")
        page.wait_for_timeout(1000)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("student", STUDENT, ids=lambda p: p.name)
def test_notebook_runs_in_jupyterlab(page, lab_url, lab_dir, student: Path, tmp_path):
    name = student.name
    started = time.monotonic()
    try:
        page.locator(f".jp-DirListing-item[title*='{name}']").first.dblclick()
        page.wait_for_function("name => window.jupyterapp.shell.currentWidget?.title.label "
                               "=== name", arg=name)
        widget_id = page.evaluate("() => jupyterapp.shell.currentWidget.id")
        widget = page.locator(f"[id='{widget_id}']")
        assert "jp-NotebookPanel" in (widget.get_attribute("class") or "") and \
            widget.locator(".jp-FileEditor").count() == 0, \
            f"{name} opened in the text editor, not as a notebook (jupytext's default viewer)"
        widget.locator(".jp-Cell").first.wait_for()
        # the kernel, started by opening the notebook
        page.wait_for_function("() => jupyterapp.shell.currentWidget.sessionContext.session"
                               "?.kernel?.status === 'idle'", timeout=120_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
        state = _wait_for_run(page, name)
        seconds = time.monotonic() - started

        wrong = [f"cell {e['cell']}: {e['ename']}: {e['evalue']}" for e in state["errors"]
                 if e["ename"] != "NotImplementedError" or STUB_PREFIX not in e["evalue"]]
        assert not wrong, f"{name}: errors other than exercise stubs:\n" + "\n".join(wrong)
        stopped = [f"cell {e['cell']}: {e['evalue']}" for e in state["errors"]]
        assert state["ran"] == state["code"], (
            f"{name}: Run All stopped after {state['ran']} of {state['code']} code cells; "
            "errors: " + "; ".join(stopped))
        broken = widget.locator(".jp-OutputArea-output", has_text="Error displaying widget")
        assert broken.count() == 0, f"{name}: {broken.first.inner_text()}"
        if name in WITH_SLIDERS:
            assert widget.locator(".jp-OutputArea .widget-slider").count() > 0, \
                f"{name}: its interact sliders did not render as widgets"
        assert widget.locator(".jp-OutputArea-output", has_text=NOT_ATTEMPTED).count() > 0, \
            f"{name}: no self-check says '{NOT_ATTEMPTED}' for an untouched stub"
        checked = {e.number for e in exercises.notebook_exercises(ROOT / "solutions" / name)
                   if any(part.kind == "code" for part in e.parts)}
        attempts = record.read(lab_dir / "course" / "work" / record.NAME)[0]
        recorded = {a["status"] for a in attempts if a["exercise"] in checked}
        assert recorded == {"○"}, f"{name}: its self-checks' ○ is not in the record: {attempts}"
        print(f"\n{name}: opened and ran in JupyterLab in {seconds:.0f} s "
              f"({state['code']} code cells)")
    except BaseException:
        screenshot = tmp_path / f"{student.stem}.png"
        try:
            page.screenshot(path=str(screenshot))
            print(f"\n{name}: screenshot of the failure in {screenshot}")
        except Exception:
            pass
        raise
    finally:
        # shut the kernel down (the memory stays low) and close the tab without saving
        page.evaluate("""async () => {
            const panel = jupyterapp.shell.currentWidget;
            if (panel && panel.sessionContext) {
              await panel.sessionContext.shutdown();
              panel.dispose();
            }
        }""")
    deadline = time.monotonic() + 30
    while _get(f"{lab_url}/api/kernels") and time.monotonic() < deadline:
        time.sleep(0.5)
    kernels = _get(f"{lab_url}/api/kernels")
    assert kernels == [], f"{name}: kernels still running after its tab closed: {kernels}"

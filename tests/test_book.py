"""The book builds, and its pages work in a browser.

The book is built once per test module, exactly as a user builds it
(``python -m hwlib book --profile smoke --strict``: every notebook of ``_toc.yml`` executed by
papermill at the ``smoke`` profile, then ``jupyter-book build -W``), into a temporary
``HWLIB_BUILD_ROOT`` so that a developer's own ``_build`` is left alone.  Then:

* every page of the table of contents exists as HTML, the status page names each executed
  notebook and the ``smoke`` profile, and the introduction shows the scorecard table;
* in headless Chromium (skipped when chromium or chromedriver is not installed), every page
  loads without errors in the browser console, every image has loaded and every displayed
  figure has a non-zero size, and all the math is typeset by the bundled MathJax without
  errors.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwlib.study.pipeline import toc_files, toc_notebooks
from hwlib.study.provenance import PROJECT_ROOT

BUILD_TIMEOUT_S = 1800
PAGE_TIMEOUT_S = 20
BROWSER_SKIP = "chromium/chromedriver not installed: browser check skipped"
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def book_html(tmp_path_factory) -> Path:
    """Build the book once into a temporary build root; return its HTML folder."""
    root = tmp_path_factory.mktemp("book")
    env = dict(os.environ, HWLIB_BUILD_ROOT=str(root))
    proc = subprocess.run(
        [sys.executable, "-m", "hwlib", "book", "--profile", "smoke", "--strict"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=BUILD_TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"book build failed (exit {proc.returncode}); last output:\n{proc.stdout[-3000:]}")
    return root / "_build" / "html"


def _pages(html: Path) -> dict[str, Path]:
    """Every page of the table of contents: its _toc.yml name -> its HTML file."""
    return {page: html / f"{page}.html" for page in toc_files()}


def _text(fragment: str) -> str:
    """The text of an HTML fragment: tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


# --- the built HTML ------------------------------------------------------------------------


def test_book_pages_exist(book_html):
    assert (book_html / "index.html").is_file(), f"no index.html in {book_html}"
    missing = [f"{page} ({path})" for page, path in _pages(book_html).items()
               if not path.is_file()]
    assert not missing, "pages of _toc.yml not built:\n" + "\n".join(missing)

    status = (book_html / "book" / "status.html").read_text()
    status_text = _text(status)
    notebooks = toc_notebooks()
    assert notebooks, "_toc.yml lists no notebook"
    for nb in notebooks:
        assert nb.name in status_text, f"book/status.html does not name the executed {nb}"
    assert "smoke" in status_text, "book/status.html does not show the 'smoke' profile"

    intro = (book_html / "book" / "intro.html").read_text()
    headers = [
        [_text(th).lower() for th in re.findall(r"<th\b[^>]*>(.*?)</th>", table, re.S)]
        for table in re.findall(r"<table\b.*?</table>", intro, re.S)
    ]
    assert any("verdict" in cells for cells in headers), (
        f"book/intro.html has no scorecard table (a header cell 'verdict'); "
        f"table headers found: {headers}")


# --- the pages in a browser ----------------------------------------------------------------

# MathJax's marks of TeX errors: <mjx-merror> in CommonHTML output, an element with a
# data-mjx-error attribute in SVG output (the book's tex-svg-full.js); and an undefined
# macro, which the noundefined package shows as red text (seen in the assistive MathML).
MATHJAX_SELECTORS = """
const MERROR = 'mjx-merror, mjx-container svg [data-mjx-error]';
const UNDEFINED_MACRO = 'mjx-assistive-mml mtext[mathcolor="red"]';
"""

# What the page shows once loaded, in one round trip.
PAGE_STATE_JS = MATHJAX_SELECTORS + """
const displayed = img => img.offsetParent !== null;
return {
  math: document.querySelectorAll('.math').length,
  typeset: document.querySelectorAll('mjx-container').length,
  merrors: Array.from(document.querySelectorAll(MERROR),
                      e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 200)),
  undefined: Array.from(document.querySelectorAll(UNDEFINED_MACRO), e => e.textContent),
  images: Array.from(document.images, img => {
    const box = img.getBoundingClientRect();
    return {src: img.getAttribute('src'), complete: img.complete,
            natural: img.naturalWidth, displayed: displayed(img),
            width: box.width, height: box.height};
  }),
};
"""

# Loaded: the document, its images, and (on pages with math) MathJax's output for every
# math element or a MathJax error.
READY_JS = MATHJAX_SELECTORS + """
if (document.readyState !== 'complete') return false;
if (!Array.from(document.images).every(img => img.complete)) return false;
const math = document.querySelectorAll('.math').length;
if (math === 0) return true;
return document.querySelectorAll('mjx-container').length >= math
    || document.querySelector(MERROR) !== null;
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium driven by chromedriver, its console log kept at every level."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(BROWSER_SKIP)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def _page_problems(driver, page: str, path: Path) -> list[str]:
    """Load one page; return its problems, each naming the page."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    problems = []
    driver.get(path.as_uri())
    try:
        WebDriverWait(driver, PAGE_TIMEOUT_S).until(lambda d: d.execute_script(READY_JS))
    except TimeoutException:
        problems.append(f"{page}: not loaded (document, images, MathJax typesetting) "
                        f"within {PAGE_TIMEOUT_S} s")
    state = driver.execute_script(PAGE_STATE_JS)

    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"{page}: console error: {entry['message']}")

    for img in state["images"]:
        if not img["complete"] or img["natural"] == 0:
            problems.append(f"{page}: image {img['src']} did not load (naturalWidth 0)")
        elif img["displayed"] and (img["width"] == 0 or img["height"] == 0):
            problems.append(f"{page}: image {img['src']} is displayed with zero size "
                            f"({img['width']} x {img['height']} px)")

    if state["math"]:
        if state["typeset"] < state["math"]:
            problems.append(f"{page}: MathJax typeset {state['typeset']} of "
                            f"{state['math']} math elements")
        for err in state["merrors"]:
            problems.append(f"{page}: MathJax error: {err}")
        for macro in state["undefined"]:
            problems.append(f"{page}: MathJax: undefined macro {macro}")
    return problems


def test_pages_in_browser(book_html, browser):
    problems = []
    for page, path in _pages(book_html).items():
        assert path.is_file(), f"{page}: {path} not built"
        problems += _page_problems(browser, page, path)
    if problems:
        pytest.fail("problems in the browser:\n" + "\n".join(problems), pytrace=False)

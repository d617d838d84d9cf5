"""The built book, checked the way a reader sees it: headless Chromium (Debian's ``chromium`` and
``chromedriver``) opens every page over a loopback HTTP server and we check that each page has
its title, that every image loaded, that math was typeset by MathJax without errors, and that no
internal link is broken. A screenshot of the home page is kept under ``_build/screenshots``.

These tests need the built book (``bash .ci/book``). In the unit-test run they skip when the book
is absent; ``.ci/test`` runs them after the build with ``INFOENH_REQUIRE_BOOK=1``, which turns a
missing book or browser into a failure.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
REQUIRED = os.environ.get("INFOENH_REQUIRE_BOOK") == "1"
# Pages Sphinx generates for itself; they have no chapter content to check.
GENERATED = {"genindex.html", "search.html", "py-modindex.html"}


def _need(condition: bool, why: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


def _pages() -> list[Path]:
    if not HTML.exists():
        return []
    return sorted(
        p for p in HTML.rglob("*.html")
        if p.name not in GENERATED and "_static" not in p.parts and "_sources" not in p.parts
    )


class _Anchors(html.parser.HTMLParser):
    """Collect every id/name in a page and every href of an <a> or src of an <img>."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.links.append(a["src"])
        if tag == "link" and a.get("href"):
            self.links.append(a["href"])


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Anchors:
    p = _Anchors()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def test_book_was_built():
    _need(HTML.exists() and (HTML / "index.html").exists(), f"no built book at {HTML}; run `bash .ci/book`")
    assert len(_pages()) >= 3, f"only {len(_pages())} pages in {HTML}"


def test_no_broken_internal_link():
    _need(HTML.exists(), f"no built book at {HTML}; run `bash .ci/book`")
    broken = []
    for page in _pages():
        for link in _parse(page).links:
            url = urllib.parse.urlsplit(link)
            if url.scheme or link.startswith("//") or link.startswith("mailto:"):
                continue  # external: not checked offline
            target = page if not url.path else (page.parent / urllib.parse.unquote(url.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(HTML)} -> {link} (no file)")
                continue
            if url.fragment and target.suffix == ".html" and url.fragment not in _parse(target).ids:
                broken.append(f"{page.relative_to(HTML)} -> {link} (no anchor #{url.fragment})")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:50])


@pytest.fixture(scope="module")
def server():
    _need(HTML.exists(), f"no built book at {HTML}; run `bash .ci/book`")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    _need(bool(chromium and driver_path), "Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need(False, "selenium is needed (pip install selenium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


# Waits for MathJax (when the page loads it) to finish typesetting, then reports what a reader sees.
_PROBE = """
const done = arguments[arguments.length - 1];
const report = () => done({
  title: document.title,
  h1: Array.from(document.querySelectorAll('main h1, article h1, h1')).map(h => h.textContent.trim()).filter(Boolean),
  images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
  mathSource: document.querySelectorAll('.math, span.math, div.math').length,
  mathTypeset: document.querySelectorAll('mjx-container').length,
  mathErrors: document.querySelectorAll('mjx-merror').length,
  mathjax: typeof window.MathJax !== 'undefined' && !!window.MathJax.startup,
});
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(report, report);
} else { setTimeout(report, 500); }
"""


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(HTML)))
def test_page_renders(page, server, browser):
    rel = page.relative_to(HTML).as_posix()
    browser.set_script_timeout(60)
    browser.get(f"{server}/{rel}")
    seen = browser.execute_async_script(_PROBE)
    assert seen["title"].strip(), f"{rel}: empty <title>"
    assert seen["h1"], f"{rel}: no heading rendered"
    bad = [i["src"] for i in seen["images"] if not i["ok"]]
    assert not bad, f"{rel}: images that did not load: {bad}"
    if seen["mathSource"]:
        assert seen["mathjax"], f"{rel}: has math but MathJax did not load"
        assert seen["mathTypeset"] >= seen["mathSource"], (
            f"{rel}: {seen['mathSource']} math blocks but only {seen['mathTypeset']} typeset"
        )
        assert seen["mathErrors"] == 0, f"{rel}: {seen['mathErrors']} MathJax errors"
    if rel.startswith("notebooks/"):
        assert any(i["ok"] for i in seen["images"]), f"{rel}: an executed chapter with no figure"


def test_home_page_screenshot(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{server}/index.html")
    out = SHOTS / "home.png"
    browser.save_screenshot(str(out))
    assert out.stat().st_size > 10_000, "home page screenshot is suspiciously small (blank page?)"


def test_every_chapter_has_a_colab_button_to_its_ipynb():
    _need(HTML.exists(), f"no built book at {HTML}; run `bash .ci/book`")
    import re

    import yaml

    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    slug = urllib.parse.urlsplit(repo).path.strip("/")
    chapters = sorted(p for p in (HTML / "notebooks").glob("*.html"))
    assert chapters, "no notebook chapter was built"
    for page in chapters:
        want = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{page.stem}.ipynb"
        links = re.findall(r'href="(https://colab\.research\.google\.com[^"]+)"', page.read_text())
        assert want in links, f"{page.name}: Colab button should point to {want}, found {links}"
        assert (ROOT / "notebooks" / f"{page.stem}.ipynb").exists(), f"{page.stem}.ipynb missing from notebooks/"

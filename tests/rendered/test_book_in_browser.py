"""The built book, checked the way a reader sees it: headless Chromium (Debian's ``chromium`` and
``chromedriver``) opens every page over a loopback HTTP server at 1280 px, with the cache off so
every page is a first load, and we check that each page has its title, that every image loaded,
that math was typeset by MathJax without errors, and that no internal link is broken. Then the
page as a page, at a desktop's 1280 px and a phone's 390 px:

- every figure is shown at >= 75% of its own size (its width in inches, from the PNG's dpi, at
  96 CSS px per inch), so a 10 pt label stays near 10 pt: at 390 px a figure either fits or keeps
  its size in an output that scrolls sideways on its own (book/assets/infoenh.css), and the page
  itself never scrolls sideways;
- every display equation of the method chapters (2-6) carries its number ("(4.3)"), every figure
  a numbered caption ("Figure 4.2 ...") and alt text that describes it (not a file name);
- no code line a reader can see (or unfold) is wider than 88 characters, and no code shows the
  book's bookkeeping (``glue(``/``claim(`` calls belong in ``remove-input`` cells);
- no display equation or table is wider than the content column;
- the first load (document, scripts, styles, fonts, images) is at most 3 MB, no request fails
  and the console shows no error;
- no output cell shows a warning, a traceback, stderr or a path of the machine that built it.

The measurements of every page are written to ``_build/screenshots/layout.json`` (the numbers the
issue notes quote). A screenshot of the home page is kept under ``_build/screenshots``.

These tests need the built book (``bash .ci/book``). In the unit-test run they skip when the book
is absent; ``.ci/test`` runs them after the build with ``INFOENH_REQUIRE_BOOK=1``, which turns a
missing book or browser into a failure.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import struct
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# INFOENH_BOOK_HTML: check a book built elsewhere (a preview of some chapters)
HTML = Path(os.environ.get("INFOENH_BOOK_HTML") or ROOT / "_build" / "html")
SHOTS = HTML.parent / "screenshots"
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
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    # every page a first load: what a reader who follows a link straight to it downloads
    drv.execute_cdp_cmd("Network.enable", {})
    drv.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
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


# What the page looks like once typeset: the content column's width, each figure's displayed and
# natural width, each display equation's and table's width, and every resource the page loaded.
_LAYOUT = """
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const cs = getComputedStyle(article);
const column = article.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
const label = (el) => Array.from((el.innerText || el.textContent || '').replace(/\\s+/g, ' ').trim()).slice(0, 70).join('');
const figures = Array.from(article.querySelectorAll('img')).filter(i => i.naturalWidth > 0).map(i => ({
  src: i.currentSrc || i.src, shown: i.getBoundingClientRect().width, natural: i.naturalWidth}));
const blocks = [];
for (const m of article.querySelectorAll('mjx-container[display="true"]')) {
  const inner = m.querySelector('mjx-math') || m;
  blocks.push({kind: 'equation', width: inner.getBoundingClientRect().width,
               text: (m.closest('.math') || m).getAttribute('id') || label(m.closest('.math') || m)});
}
for (const t of article.querySelectorAll('table')) {
  blocks.push({kind: 'table', width: t.getBoundingClientRect().width, text: label(t.rows[0] || t)});
}
const resources = performance.getEntriesByType('resource').map(r => ({
  url: r.name, bytes: r.transferSize || r.encodedBodySize || 0, status: r.responseStatus || 0}));
const nav = performance.getEntriesByType('navigation')[0];
return JSON.stringify({column, figures, blocks, resources,
                       document: nav ? (nav.transferSize || nav.encodedBodySize || 0) : 0});
"""


def _png_dpi(path: Path) -> float | None:
    """Horizontal dpi of a PNG from its pHYs chunk (None when it has none or is not a PNG)."""
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG"):
        return None
    i = 8
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"pHYs":
            x, _, unit = struct.unpack(">IIB", data[i + 8:i + 17])
            return x * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            return None
        i += 12 + length
    return None


CSS_PX_PER_INCH = 96
MIN_FIGURE_SCALE = 0.75
MAX_FIRST_LOAD = 3_000_000
WIDTHS = (1280, 390)             # a desktop window and a phone (CSS px)
MAX_CODE_LINE = 88
METHOD_CHAPTERS = range(2, 7)    # chapters whose display equations must all be numbered
# Issue 19: chapters 7 and 8 are being rewritten by other engineers (their engineering moves to
# an appendix) and are cleaned after that; until then they are exempt from the code-line width,
# bookkeeping and caption checks below. Nothing else is exempt.
NOT_YET_CLEANED = ("notebooks/07_", "notebooks/08_")
_BOOKKEEPING = re.compile(r"\b(glue|claim)\(")
_FILE_LIKE_ALT = re.compile(r"^([0-9a-f]{16,}|.*\.(png|jpe?g|svg|gif))$", re.I)
# An output that shows the machine that built the book (home, temporary or virtualenv folders).
_MACHINE_PATH = re.compile(r"(/home/|/root/|/tmp/|/work/|/Users/|site-packages|\.venv/|[A-Z]:\\Users)")
_NOISE = re.compile(r"(Traceback \(most recent call last\)|\w+Warning: |^Warning: )", re.M)


# What the reader sees of the book's numbering and code: display equations and their numbers,
# figures in cell outputs with their captions and alt text, every line of code outside outputs,
# and whether the page itself scrolls sideways.
_READER = """
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const eqs = Array.from(article.querySelectorAll('div.math')).map(d => ({
  id: d.id || '', number: ((d.querySelector('.eqno') || {}).textContent || '').replace('#', '').trim()}));
const figs = Array.from(article.querySelectorAll('.cell_output img, figure img')).map(i => {
  const f = i.closest('figure');
  const cap = f ? f.querySelector('figcaption .caption-number') : null;
  return {src: (i.getAttribute('src') || '').split('/').pop(), alt: i.getAttribute('alt') || '',
          id: f ? f.id : '', number: cap ? cap.textContent.trim() : '',
          caption: f && f.querySelector('figcaption .caption-text') ? f.querySelector('figcaption .caption-text').textContent.trim() : ''};
});
const code = [];
for (const pre of article.querySelectorAll('pre')) {
  // code a reader sees: cell inputs and prose code blocks, and code a cell displays as code
  // (IPython's Code, an HTML output); not the text a cell prints
  const out = pre.closest('.cell_output') || pre.closest('.output');
  if (out && !pre.closest('.text_html')) continue;
  for (const line of pre.textContent.split('\\n')) code.push(line);
}
return JSON.stringify({eqs, figs, code,
  page_scroll: document.documentElement.scrollWidth - document.documentElement.clientWidth});
"""


def _doc(rel: str) -> str:
    return re.sub(r"\.html$", "", rel)


def _chapter(rel: str) -> int | None:
    from infoenh.teaching.book_index import toc_chapter_of

    return toc_chapter_of(ROOT).get(_doc(rel))


@functools.lru_cache(maxsize=None)
def _chapter_pages() -> frozenset:
    from infoenh.teaching.book_index import toc_chapter_numbers

    return frozenset(toc_chapter_numbers(ROOT))


def _cleaned(rel: str) -> bool:
    return not rel.startswith(NOT_YET_CLEANED)


def _measure(page: Path, server: str, browser, width: int = 1280) -> dict:
    """Open ``page`` as a first load, ``width`` CSS px wide, and measure what a reader sees
    (see _LAYOUT and _READER)."""
    rel = page.relative_to(HTML).as_posix()
    if width == 1280:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    else:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    browser.set_script_timeout(60)
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(f"{server}/{rel}")
    seen = browser.execute_async_script(_PROBE)
    browser.execute_async_script("""
      const done = arguments[arguments.length - 1];
      (document.fonts ? document.fonts.ready : Promise.resolve()).then(() => setTimeout(done, 200));""")
    layout = json.loads(browser.execute_script(_LAYOUT))
    reader = json.loads(browser.execute_script(_READER))
    figures = []
    for f in layout["figures"]:
        path = HTML / urllib.parse.unquote(urllib.parse.urlsplit(f["src"]).path.lstrip("/"))
        dpi = _png_dpi(path) if path.is_file() else None
        own = f["natural"] / dpi * CSS_PX_PER_INCH if dpi else f["natural"]
        figures.append({"src": path.name, "inches": round(f["natural"] / dpi, 2) if dpi else None,
                        "scale": round(f["shown"] / own, 3)})
    failed = [r["url"] for r in layout["resources"] if r["status"] >= 400]
    # what the console reports as an error: a failed request, a script error
    errors = [e["message"] for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    column = layout["column"]
    return {
        "page": rel, "width": width, "seen": seen, "column_px": round(column, 1), "figures": figures,
        "equations": reader["eqs"], "captions": reader["figs"], "page_scroll_px": reader["page_scroll"],
        "long_code_lines": [l for l in reader["code"] if len(l.rstrip()) > MAX_CODE_LINE],
        "bookkeeping_lines": [l.strip() for l in reader["code"] if _BOOKKEEPING.search(l)],
        "code_lines": len(reader["code"]),
        "min_figure_scale": min((f["scale"] for f in figures), default=None),
        "blocks": [dict(b, ratio=round(b["width"] / column, 3)) for b in layout["blocks"]],
        "widest_block_ratio": max((round(b["width"] / column, 3) for b in layout["blocks"]), default=None),
        "first_load_bytes": layout["document"] + sum(r["bytes"] for r in layout["resources"]),
        "requests": len(layout["resources"]) + 1,
        "failed_requests": failed,
        "console_errors": errors,
    }


_MEASURED: dict = {}


@pytest.fixture
def measured(server, browser):
    """Measure each page once per width; every check below reads the same measurement. A
    screenshot of each notebook page's first screen is kept at each width."""
    def get(page: Path, width: int = 1280) -> dict:
        if (page, width) not in _MEASURED:
            _MEASURED[page, width] = m = _measure(page, server, browser, width)
            SHOTS.mkdir(parents=True, exist_ok=True)
            if m["page"].startswith("notebooks/"):
                browser.save_screenshot(str(SHOTS / f"{Path(m['page']).stem}-{width}.png"))
            report = {f"{m['page']}@{m['width']}": {k: v for k, v in m.items() if k not in ("seen", "page")}
                      for m in _MEASURED.values()}
            (SHOTS / "layout.json").write_text(json.dumps(report, indent=1, sort_keys=True))
        return _MEASURED[page, width]
    return get


_PAGE_IDS = dict(ids=lambda p: str(p.relative_to(HTML)))
_PAGE_WIDTHS = [(p, w) for p in _pages() for w in WIDTHS]
_PAGE_WIDTH_IDS = dict(ids=lambda pw: f"{pw[0].relative_to(HTML)}@{pw[1]}")


@pytest.mark.parametrize("page", _pages(), **_PAGE_IDS)
def test_page_renders(page, measured):
    rel = page.relative_to(HTML).as_posix()
    seen = measured(page)["seen"]
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
    if rel.startswith("notebooks/") and _doc(rel) in _chapter_pages():
        # a chapter's own page; its section pages (sections: in _toc.yml) may be prose and code
        assert any(i["ok"] for i in seen["images"]), f"{rel}: an executed chapter with no figure"


@pytest.mark.parametrize("pw", _PAGE_WIDTHS, **_PAGE_WIDTH_IDS)
def test_figures_are_shown_near_their_own_size(pw, measured):
    m = measured(*pw)
    small = [f for f in m["figures"] if f["scale"] < MIN_FIGURE_SCALE]
    assert not small, (
        f"{m['page']} at {m['width']} px: figures shown at under {MIN_FIGURE_SCALE:.0%} of their size in a "
        f"{m['column_px']:.0f} px column (draw them narrower, about 8 in at most, or stack the panels; "
        f"on a phone the book's CSS should let the output scroll): {small}")
    assert m["page_scroll_px"] <= 1, (
        f"{m['page']} at {m['width']} px: the page scrolls sideways by {m['page_scroll_px']} px "
        "(a wide element outside a scrolling output)")


@pytest.mark.parametrize("pw", _PAGE_WIDTHS, **_PAGE_WIDTH_IDS)
def test_method_chapters_number_every_display_equation(pw, measured):
    m = measured(*pw)
    chapter = _chapter(m["page"])
    if chapter not in METHOD_CHAPTERS:
        pytest.skip(f"{m['page']} is not a method chapter (2-6)")
    unnumbered = [e["id"] or "(no label)" for e in m["equations"]
                  if not re.fullmatch(rf"\({chapter}\.\d+\)", e["number"])]
    assert not unnumbered, (f"{m['page']}: display equations without a ({chapter}.N) number "
                            f"(label them: $$ ... $$ (eq-topic-name)): {unnumbered}")


@pytest.mark.parametrize("pw", _PAGE_WIDTHS, **_PAGE_WIDTH_IDS)
def test_every_figure_has_a_numbered_caption_and_alt_text(pw, measured):
    m = measured(*pw)
    if not _cleaned(m["page"]):
        pytest.skip(f"{m['page']}: not yet cleaned (issue 19, see NOT_YET_CLEANED)")
    bad = [f["src"] for f in m["captions"]
           if not re.fullmatch(r"Figure \d+(\.\d+)*", f["number"]) or not f["caption"]]
    assert not bad, (f"{m['page']}: figures without a numbered caption (cell metadata mystnb: figure: "
                     f"caption/name): {bad}")
    alts = [f"{f['src']}: {f['alt']!r}" for f in m["captions"]
            if len(f["alt"].split()) < 3 or _FILE_LIKE_ALT.match(f["alt"].strip())]
    assert not alts, f"{m['page']}: figures whose alt text does not describe them (mystnb: image: alt): {alts}"


@pytest.mark.parametrize("pw", _PAGE_WIDTHS, **_PAGE_WIDTH_IDS)
def test_code_lines_fit_and_show_no_bookkeeping(pw, measured):
    m = measured(*pw)
    if not _cleaned(m["page"]):
        pytest.skip(f"{m['page']}: not yet cleaned (issue 19, see NOT_YET_CLEANED)")
    assert not m["long_code_lines"], (
        f"{m['page']}: {len(m['long_code_lines'])} visible code lines over {MAX_CODE_LINE} characters: "
        + " | ".join(l.strip()[:60] for l in m["long_code_lines"][:5]))
    assert not m["bookkeeping_lines"], (
        f"{m['page']}: visible glue/claim calls (tag their cells remove-input): {m['bookkeeping_lines'][:5]}")


def test_book_numbers_are_the_colab_editions():
    """The numbers Sphinx gave equations and figures are the ones the Colab converter computes
    from the sources (infoenh.teaching.book_index), so "Eq. (4.3)" means one equation in both."""
    _need(HTML.exists(), f"no built book at {HTML}; run `bash .ci/book`")
    from infoenh.teaching.book_index import BookIndex

    index = BookIndex.load(ROOT)
    built_eq, built_fig = {}, {}
    for page in _pages():
        text = page.read_text(encoding="utf-8", errors="replace")
        for label, number in re.findall(r'id="equation-([\w:.-]+)">\s*<span class="eqno">\((\d+(?:\.\d+)*)\)', text):
            built_eq[label] = number
        for label, number in re.findall(r'<figure[^>]*id="([\w:.-]+)"[^>]*>.*?<span class="caption-number">Figure '
                                        r'(\d+(?:\.\d+)*) ', text, re.S):
            built_fig[label] = number
    assert {k: v for k, v in index.links.equations.items()} == built_eq
    assert {k: v for k, v in index.links.figures.items() if k in built_fig} == built_fig
    missing = sorted(set(index.links.figures) - set(built_fig))
    assert not missing, f"figures the sources name but the book does not show with a number: {missing}"


def test_glued_values_file_is_this_builds():
    """book/glued_values.json (what the Colab edition quotes) was written by a build of the chapters
    as they are now: for every chapter the same code digest and the same glued names as the build
    that just ran (``.ci/book`` writes its values to _build/glued_values.json, never over the
    committed file). Values are not compared one by one: timings differ from run to run, which is
    why the file names the commit of the build it quotes."""
    fresh_file = ROOT / "_build" / "glued_values.json"
    _need(fresh_file.exists(), f"no {fresh_file}; run `bash .ci/book`")
    from infoenh.teaching.book_values import VALUES_FILE

    fresh = json.loads(fresh_file.read_text())["chapters"]
    committed = json.loads((ROOT / VALUES_FILE).read_text())["chapters"]
    summary = {doc: (e["code_sha256"], sorted(e["values"])) for doc, e in fresh.items()}
    assert {doc: (e["code_sha256"], sorted(e["values"])) for doc, e in committed.items()} == summary, (
        f"{VALUES_FILE} is not from a build of the chapters as they are: run `bash .ci/book`, then "
        "`python -m infoenh.teaching.book_values _site/notebooks .` and `python -m infoenh.teaching.colab`, "
        "and commit both")


@pytest.mark.parametrize("page", _pages(), **_PAGE_IDS)
def test_no_equation_or_table_wider_than_the_column(page, measured):
    m = measured(page)
    wide = [b for b in m["blocks"] if b["width"] > m["column_px"] + 1]
    assert not wide, (f"{m['page']}: blocks wider than the {m['column_px']:.0f} px column "
                      f"(split or align the equation, narrow the table): {wide}")


@pytest.mark.parametrize("page", _pages(), **_PAGE_IDS)
def test_first_load_is_light_and_complete(page, measured):
    m = measured(page)
    assert not m["failed_requests"], f"{m['page']}: requests that failed: {m['failed_requests']}"
    assert not m["console_errors"], f"{m['page']}: errors in the browser's console: {m['console_errors']}"
    assert m["first_load_bytes"] <= MAX_FIRST_LOAD, (
        f"{m['page']}: first load is {m['first_load_bytes'] / 1e6:.1f} MB over {m['requests']} requests "
        f"(at most {MAX_FIRST_LOAD / 1e6:.0f} MB)")


class _Outputs(html.parser.HTMLParser):
    """The text of every cell output of a page, and whether any of them is a stderr stream."""

    def __init__(self):
        super().__init__()
        self.depth = 0          # >0 while inside a cell_output element
        self.stack: list[bool] = []
        self.texts: list[str] = []
        self.stderr = 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        opens = "cell_output" in classes
        self.stack.append(opens)
        self.depth += opens
        if self.depth and "stderr" in classes:
            self.stderr += 1

    def handle_endtag(self, tag):
        if self.stack:
            self.depth -= self.stack.pop()

    def handle_data(self, data):
        if self.depth:
            self.texts.append(data)


@pytest.mark.parametrize("page", [p for p in _pages() if "notebooks" in p.parts], **_PAGE_IDS)
def test_outputs_show_no_warning_traceback_or_machine_path(page):
    out = _Outputs()
    out.feed(page.read_text(encoding="utf-8", errors="replace"))
    text = "".join(out.texts)
    assert out.stderr == 0, f"{page.name}: {out.stderr} stderr output(s)"
    noise = sorted({m.group(0) for m in _NOISE.finditer(text)})
    assert not noise, f"{page.name}: warnings or tracebacks in outputs: {noise}"
    paths = sorted({text[max(0, m.start() - 30):m.end() + 30] for m in _MACHINE_PATH.finditer(text)})
    assert not paths, f"{page.name}: outputs show paths of the build machine: {paths[:5]}"


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

"""Read the built course site as a reader would: headless Chromium opens pages, checks.

Usage: python book/check_site.py [--site _site] [--nbs nbs] [--pages index 01_atl ...]
                                  [--shots DIR]

Every page of the site is checked (the landing page and one page per notebook in
--nbs), at 1280 px wide.

Serves the site on 127.0.0.1 (a thread running http.server; nothing else is reachable:
any request to another host is blocked and reported), drives the Chromium that
tools/resources.py finds ($CHROMIUM, Playwright's own, Debian's /usr/bin/chromium, or
one on PATH; `make browser` installs one) with Playwright's Python package, and on every
page checks:
  * math is typeset: every `.math` element holds a MathJax `mjx-container`, and no raw
    `$$`, `\\(` or `\\[` is left in the visible prose;
  * every <img> loaded (naturalWidth > 0), and the page shows at least as many output
    images as its notebook has image outputs (so a figure the notebook carries is on the
    page);
  * no Python traceback is visible ("Traceback (most recent call last)", or an error
    output);
  * no raw Markdown table: no `| --- |` row in the prose or an output (a table a cell
    printed instead of displaying it: `display(records.Table)`);
  * solutions are folded: each `solution` cell is hidden until its toggle is clicked,
    then shown;
  * no code cut off: no `pre` block (code or printed output) is wider than its column
    or scrolls sideways.
Prints one line per page with its timings; exits 1 if any check failed.
"""

import argparse
import functools
import http.server
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev"))  # check_outputs
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # resources
from build_book import part_of
from check_outputs import image_outputs
from resources import find_chromium, line

from hingeabl_nb.student import is_solution

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def notebook_facts(nb_path):
    "Image outputs and solution cells (code, markdown) that the notebook carries."
    import nbformat

    if not Path(nb_path).is_file():
        return {"images": 0, "sol_code": 0, "sol_md": 0}
    nb = nbformat.read(nb_path, as_version=4)
    sol = [c for c in nb.cells if is_solution(c)]
    imgs = sum(image_outputs(c) for c in nb.cells if c.cell_type == "code")
    return {
        "images": imgs,
        "sol_code": sum(c.cell_type == "code" for c in sol),
        "sol_md": sum(c.cell_type == "markdown" for c in sol),
    }


def default_pages(nbs):
    "Every page: index, then each notebook of `nbs` that the book shows, in order."
    return [
        "index",
        *sorted(p.stem for p in Path(nbs).glob("*.ipynb") if part_of(p.name)),
    ]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def serve(site):
    "Start a threaded http.server for `site` on a free loopback port -> (server, url)."
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site))
    )
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


# Runs in the page: what a reader sees.
PAGE_FACTS = """() => {
  const main = document.querySelector('main') || document.body;
  const vis = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const maths = [...main.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
    .map(m => m.textContent.slice(0, 60));
  const prose = main.cloneNode(true);
  prose.querySelectorAll(
    'pre, code, .highlight, mjx-container, script, style, .cell_output, details'
  ).forEach(e => e.remove());
  const text = prose.innerText || prose.textContent;
  const raw = ['$$', '\\\\(', '\\\\['].filter(s => text.includes(s));
  const shown = main.cloneNode(true);  // prose and outputs: no code, no script
  shown.querySelectorAll('.cell_input, script, style, mjx-container')
    .forEach(e => e.remove());
  const rawTables = (shown.textContent.match(/\\|[ \\t]*:?-{3,}:?[ \\t]*\\|/g) || []);
  const imgs = [...main.querySelectorAll('img')];
  return {
    mjx: main.querySelectorAll('mjx-container').length, maths: maths.length,
    untypeset, raw, rawTables,
    imgs: imgs.length, outImgs: main.querySelectorAll('.cell_output img').length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => i.getAttribute('src')),
    traceback: (main.innerText || '').includes('Traceback (most recent call last)')
      || main.querySelectorAll('.output.traceback, .output.error').length > 0,
    pres: [...main.querySelectorAll('pre')].filter(vis).length,
    wide: [...main.querySelectorAll('pre')].filter(vis).map(p => {
      const col = (p.closest('article') || main).getBoundingClientRect();
      const r = p.getBoundingClientRect();
      const over = Math.max(p.scrollWidth - p.clientWidth, r.right - col.right);
      const line = p.textContent.split('\\n')
        .reduce((a, b) => (b.length > a.length ? b : a), '');
      return {over: Math.round(over), line: line.slice(0, 70)};
    }).filter(w => w.over > 1),
  };
}"""


def check_solutions(page, facts):
    "Solutions are hidden until their toggle is clicked; return a list of problems."
    errs = []
    det = page.locator("main details.hide")
    if det.count() < facts["sol_code"]:
        errs.append(
            f"{facts['sol_code']} solution code cells in the notebook, "
            f"{det.count()} folded on the page"
        )
    if det.count():
        first, body = det.first, det.first.locator(".cell_input")
        if first.get_attribute("open") is not None or body.is_visible():
            errs.append("a solution is shown before it is clicked")
        first.locator("summary").click()
        if not body.is_visible():
            errs.append('clicking "Show solution" did not show the solution')
    drop = page.locator("main .admonition.dropdown")
    if drop.count() < facts["sol_md"]:
        errs.append(
            f"{facts['sol_md']} solution markdown cells in the notebook, "
            f"{drop.count()} folded on the page"
        )
    if drop.count():
        hidden = drop.first.locator(".toggle-hidden, .dropdown-content, p").last
        if hidden.is_visible():
            errs.append("a worked (markdown) solution is shown before it is clicked")
        drop.first.locator("button, .admonition-title").first.click()
        page.wait_for_timeout(300)
        if not hidden.is_visible():
            errs.append("clicking a worked solution did not show it")
    facts["folded"] = det.count() + drop.count()
    return errs


def check_page(page, base, stem, facts, shots=None):
    "Open one page and return (problems, seconds to load, seconds to typeset)."
    errs, t0 = [], time.time()
    resp = page.goto(base + stem + ".html", wait_until="load")
    if not resp or resp.status != 200:
        return [f"HTTP {resp.status if resp else 'no response'}"], 0, 0, {}
    t_load = time.time() - t0
    has_math = page.locator("main .math").count() > 0
    if has_math:
        try:
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                timeout=20000,
            )
            page.evaluate("() => MathJax.startup.promise")
        except Exception as e:
            errs.append(f"MathJax did not start: {str(e).splitlines()[0]}")
    t_math = time.time() - t0 - t_load
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete)", timeout=20000
    )
    f = page.evaluate(PAGE_FACTS)
    if has_math and not f["mjx"]:
        errs.append("no equation typeset (no mjx-container)")
    if f["untypeset"]:
        errs.append(
            f"{len(f['untypeset'])} math elements not typeset, "
            f"e.g. {f['untypeset'][0]!r}"
        )
    if f["raw"]:
        errs.append(f"raw TeX delimiters in the visible text: {f['raw']}")
    if f["broken"]:
        errs.append(f"images that did not load: {f['broken'][:3]}")
    if f["outImgs"] < facts["images"]:
        errs.append(
            f"the notebook has {facts['images']} image outputs, "
            f"the page shows {f['outImgs']}"
        )
    if f["traceback"]:
        errs.append("a Python traceback is visible")
    if f["rawTables"]:
        errs.append(
            f"{len(f['rawTables'])} raw Markdown table rows (e.g. "
            f"{f['rawTables'][0]!r}): display the table, do not print it"
        )
    if f["wide"]:
        w = f["wide"][0]
        errs.append(
            f"{len(f['wide'])} code blocks wider than their column "
            f"(cut off or scrolling), e.g. {w['over']} px over: {w['line']!r}"
        )
    errs += check_solutions(page, facts)
    if shots:
        page.screenshot(path=str(Path(shots) / f"{stem}.png"), full_page=False)
    f.update(facts)
    return errs, t_load, t_math, f


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default=str(ROOT / "_site"))
    ap.add_argument(
        "--nbs",
        default=str(ROOT / "nbs"),
        help="notebooks the site was built from (image and solution counts)",
    )
    ap.add_argument(
        "--pages",
        nargs="+",
        help="page stems (default: every page: index and each notebook's)",
    )
    ap.add_argument("--shots", help="folder for a screenshot of each page")
    a = ap.parse_args(argv)
    a.pages = a.pages or default_pages(a.nbs)
    site = Path(a.site)
    if not (site / "index.html").is_file():
        sys.exit(f"check_site: {site}/index.html not found; run `make book` first")
    chromium = find_chromium()[0]
    if chromium is None:
        sys.exit(f"check_site: {line('chromium')}")
    from playwright.sync_api import sync_playwright

    if a.shots:
        Path(a.shots).mkdir(parents=True, exist_ok=True)
    srv, base = serve(site)
    failed, t_all, offsite = 0, time.time(), []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(chromium), headless=True, args=ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def route(r):
                if urlparse(r.request.url).hostname in ("127.0.0.1", "localhost"):
                    return r.continue_()
                offsite.append(r.request.url)
                return r.abort()

            page.route("**/*", route)
            for stem in a.pages:
                facts = notebook_facts(Path(a.nbs) / f"{stem}.ipynb")
                n_off = len(offsite)
                try:
                    errs, t_load, t_math, f = check_page(
                        page, base, stem, facts, a.shots
                    )
                except Exception as e:
                    errs, t_load, t_math, f = (
                        [f"{type(e).__name__}: {str(e).splitlines()[0]}"],
                        0,
                        0,
                        {},
                    )
                errs += [
                    f"asked for an off-site resource: {u}" for u in offsite[n_off:]
                ]
                failed += bool(errs)
                verdict = "FAIL" if errs else "ok  "
                n_sol = f.get("sol_code", 0) + f.get("sol_md", 0)
                print(
                    f"{verdict} {stem}.html: load {t_load:.2f} s, "
                    f"math {t_math:.2f} s; "
                    f"{f.get('mjx', 0)} equations typeset, {f.get('imgs', 0)} images "
                    f"({f.get('outImgs', 0)} figures), "
                    f"{f.get('folded', 0)} of {n_sol} solutions folded, "
                    f"{f.get('pres', 0) - len(f.get('wide', []))} of "
                    f"{f.get('pres', 0)} code blocks within the column"
                )
                for e in errs:
                    print(f"       - {e}")
            browser.close()
    finally:
        srv.shutdown()
    print(
        f"check_site: {len(a.pages)} pages, {failed} failed, "
        f"{time.time() - t_all:.1f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

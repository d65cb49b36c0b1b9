#!/usr/bin/env python
"""What the tests use from outside the repository: found, or named in one line.

    python tools/resources.py            # a line per resource: where it is, or what
                                         # is missing and how to get it
    python tools/resources.py --missing  # only the missing ones (tools/test_all.sh)
    python tools/resources.py --have chromium  # exit 0 if found; else its line and
                                               # exit 1 (skip), 2 if required (fail)

A test that needs one is marked `@pytest.mark.needs("redocred")` (tests/conftest.py):
skipped with the resource's line when it is missing, failed with it when
`$HINGEABL_REQUIRE` names it ("all" for every one: CI sets it, so that a missing
download fails instead of skipping). The library's own search finds the data and the
encoder (`data.locate_redocred`, `core.find_up` from the repository), so a test skips
exactly when the library would not find them either.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENCODER = "minilm-l6-h384-uncased"
GET_DATA = "make data (hingeabl-download, SHA-256 checked; needs internet)"


def find_redocred() -> tuple[Path | None, str]:
    "Re-DocRED's dev and test files, where the library looks for them."
    from hingeabl_nb.data import locate_redocred

    try:
        d = locate_redocred(start=ROOT)
    except FileNotFoundError as e:  # $HINGEABL_DATA names no folder
        return None, str(e)
    if d is None:
        return None, f"no shared/data/redocred above {ROOT}, $HINGEABL_DATA unset"
    absent = [
        n for n in ("dev_revised.json", "test_revised.json") if not (d / n).is_file()
    ]
    return (None, f"{d} lacks {', '.join(absent)}") if absent else (d, "")


def find_minilm() -> tuple[Path | None, str]:
    "The MiniLM encoder folder, where the library looks for it (shared/models/)."
    from hingeabl_nb.core import find_up

    d = find_up(f"shared/models/{ENCODER}", ROOT)
    if d is None:
        return None, f"no shared/models/{ENCODER} above {ROOT}"
    absent = [n for n in ("config.json", "model.safetensors") if not (d / n).is_file()]
    return (None, f"{d} lacks {', '.join(absent)}") if absent else (d, "")


def playwright_browsers() -> list[str]:
    "Chromium builds that `playwright install chromium` put in its cache, newest first."
    base = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(
        Path.home() / ".cache" / "ms-playwright"
    )
    found = glob.glob(f"{base}/chromium-*/chrome-linux*/chrome")
    found += glob.glob(f"{base}/chromium_headless_shell-*/chrome-linux*/headless_shell")
    return sorted(found, reverse=True)


def find_chromium() -> tuple[Path | None, str]:
    """A Chromium that Playwright can drive: $CHROMIUM, else Playwright's own, else
    Debian's /usr/bin/chromium, else `chromium` / `chromium-browser` on PATH."""
    if importlib.util.find_spec("playwright") is None:
        return None, "the playwright package is not installed (make install-book)"
    given = os.environ.get("CHROMIUM")
    if given:
        ok = Path(given).is_file() and os.access(given, os.X_OK)
        return (Path(given), "") if ok else (None, f"$CHROMIUM={given} is no program")
    names = ("chromium", "chromium-browser")
    for c in [*playwright_browsers(), "/usr/bin/chromium", *map(shutil.which, names)]:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c), ""
    return None, "none in $CHROMIUM, Playwright's cache, /usr/bin or on PATH"


def find_paper() -> tuple[Path | None, str]:
    "The paper's text (shared/paper/): only in the development checkout."
    from hingeabl_nb.core import find_up

    p = find_up("shared/paper/hingeabl-paper.md", ROOT)
    return (p, "") if p else (None, f"no shared/paper/hingeabl-paper.md above {ROOT}")


# name -> (what it is, finder, what skips without it, how to get it)
RESOURCES = {
    "redocred": (
        "Re-DocRED dev/test",
        find_redocred,
        "the tests that read it are skipped (the notebooks and the GPU rehearsal use "
        "the packaged sample)",
        GET_DATA,
    ),
    "minilm": (
        "the MiniLM encoder",
        find_minilm,
        "the tests that load it are skipped (the notebooks and the GPU rehearsal use "
        "the tiny encoder)",
        GET_DATA,
    ),
    "chromium": (
        "a Chromium for the browser checks",
        find_chromium,
        "the browser checks of the course site are skipped",
        "make browser (or set CHROMIUM to a Chromium program)",
    ),
    "paper": (
        "the paper's text",
        find_paper,
        "the check of the typed-in paper tables against it is skipped",
        "not downloadable (a copy of the paper): it is in the development checkout's "
        "shared/paper/",
    ),
}


def find(name: str) -> Path | None:
    "Where resource `name` is, or None."
    return RESOURCES[name][1]()[0]


def line(name: str) -> str:
    "One line: where `name` is, or `skipped: what (why): what skips; get it: how`."
    what, finder, skips, get = RESOURCES[name]
    path, why = finder()
    if path is not None:
        return f"found: {what} at {path}"
    return f"skipped: {what} not found ({why}): {skips}; get it: {get}"


def required() -> set[str]:
    "The resources $HINGEABL_REQUIRE names (`all`: every one); missing ones fail."
    names = set(os.environ.get("HINGEABL_REQUIRE", "").replace(",", " ").split())
    unknown = names - set(RESOURCES) - {"all"}
    if unknown:
        raise SystemExit(
            f"$HINGEABL_REQUIRE names {sorted(unknown)}; known: all, "
            + ", ".join(RESOURCES)
        )
    return set(RESOURCES) if "all" in names else names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--missing", action="store_true", help="only the missing ones")
    ap.add_argument("--have", choices=list(RESOURCES), help="exit 1 if it is missing")
    a = ap.parse_args(argv)
    need, rc = required(), 0
    for name in [a.have] if a.have else RESOURCES:
        text = line(name)
        if text.startswith("found:"):
            if not (a.missing or a.have):
                print(text)
            continue
        if name in need:
            text, rc = f"MISSING, required by $HINGEABL_REQUIRE: {text}", 2
        print(text, flush=True)
        rc = max(rc, 1 if a.have else 0)
    return rc


if __name__ == "__main__":
    sys.exit(main())

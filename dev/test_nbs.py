"""Test every notebook as `nbdev_test` does, saying each one's result as it finishes.

Usage: python dev/test_nbs.py [--workers 2] [--only 03_hinge 05_losses ...]

Each notebook runs with nbdev's own `test_nb` (its folder as the working directory,
cells flagged with settings.ini's tst_flags skipped) in one of `--workers` forked
processes, as `nbdev_test` runs them. `nbdev_test --timing` prints nothing until the
last one ends; this prints a line per notebook as it finishes (time, verdict, how many
are done) and, at the end, the slowest ones and the total. The longest notebooks of the
last run start first (their times are kept in .nbtimes.json, git-ignored), so the
workers end together.
Exit status 1 if a notebook failed; its traceback is printed when it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMES = ROOT / ".nbtimes.json"


def run_one(path: str, skip_flags: list[str], basepath: str) -> tuple[bool, float]:
    "Test one notebook in this (worker) process: (passed, seconds)."
    from nbdev.test import test_nb

    return test_nb(Path(path), skip_flags=skip_flags, basepath=basepath)


def notebooks(only: list[str] | None) -> list[Path]:
    "The notebooks nbdev would test (`nbglob`), or those named in `only`."
    from nbdev.doclinks import nbglob

    found = [Path(p).absolute() for p in nbglob(as_path=True)]
    if not only:
        return sorted(found)
    by_stem = {p.stem: p for p in found}
    missing = [n for n in only if Path(n).stem not in by_stem]
    if missing:
        raise SystemExit(f"test_nbs: no notebook {', '.join(missing)} in nbs/")
    return [by_stem[Path(n).stem] for n in only]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="+", help="notebook names (default: every one)")
    a = ap.parse_args(argv)
    from nbdev.config import get_config

    cfg = get_config()
    before = json.loads(TIMES.read_text()) if TIMES.is_file() else {}
    todo = sorted(notebooks(a.only), key=lambda p: -before.get(p.name, 0))
    flags, base = cfg.tst_flags.split(), str(cfg.config_path)
    os.environ.setdefault("IN_TEST", "1")
    t0, times, failed = time.monotonic(), {}, []
    print(f"{len(todo)} notebooks, {a.workers} at a time", flush=True)
    os.chdir(cfg.nbs_path)
    sys.path.insert(0, str(ROOT / "dev"))
    import test_nbs  # a notebook's IPython shell replaces __main__ in its worker

    with ProcessPoolExecutor(a.workers) as pool:
        jobs = {pool.submit(test_nbs.run_one, str(p), flags, base): p for p in todo}
        for k, job in enumerate(as_completed(jobs), 1):
            p = jobs[job]
            ok, secs = job.result()
            times[p.name] = round(secs, 1)
            failed += [] if ok else [p.name]
            verdict = "ok    " if ok else "FAILED"
            print(f"{secs:6.1f} s  {verdict} {p.name}  ({k}/{len(todo)})", flush=True)
    TIMES.write_text(json.dumps(before | times, indent=1, sort_keys=True))
    slow = sorted(times.items(), key=lambda kv: -kv[1])[:5]
    print(
        f"{len(todo) - len(failed)} of {len(todo)} notebooks passed in "
        f"{time.monotonic() - t0:.0f} s; slowest: "
        + ", ".join(f"{n} {s:.0f} s" for n, s in slow)
    )
    if failed:
        print("FAILED: " + " ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

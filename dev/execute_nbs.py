"""Execute notebooks in place (fresh kernel each, run from nbs/), keeping their outputs.

Usage: python dev/execute_nbs.py [--only NB ...] [--timeout S] [--path nbs]
       python dev/execute_nbs.py --strip-widgets-only [--only NB ...]
Cells flagged `#| slow` / `#| gpu` (settings.ini tst_flags) are skipped, as nbdev_test
does, and keep no outputs. Saved widget state (progress bars, sliders: the models in the
notebook's metadata and each output's view of one) is dropped, figures and text stay.
Afterwards `nbdev_clean --fname` tidies each notebook (clear_all = False: outputs stay).
"""

import argparse
import configparser
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def tst_flags():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    return cfg["DEFAULT"].get("tst_flags", "slow gpu").split()


def is_flagged(src, flags):
    "True if a `#| <flag>` directive line is in the cell."
    return any(
        re.match(r"#\|\s*(%s)\s*$" % "|".join(map(re.escape, flags)), l.strip())
        for l in src.splitlines()
    )


class SkipFlagged(ExecutePreprocessor):
    "ExecutePreprocessor that leaves flagged cells unrun, with no outputs."

    flags = ()

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and is_flagged(cell.source, self.flags):
            cell.outputs, cell.execution_count = [], None
            return cell, resources
        return super().preprocess_cell(cell, resources, index)


def strip_widgets(nb) -> None:
    "Drop the widget models and every output's view of one; other outputs stay."
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_VIEW, None)
            if "data" not in out or out["data"]:
                kept.append(out)
        if cell.cell_type == "code":
            cell.outputs = kept


def execute(path, timeout=600, flags=None):
    path = Path(path)
    os.environ.pop(
        "MPLBACKEND", None
    )  # Agg in the kernel would make plt.show() emit no image
    nb = nbformat.read(path, as_version=4)
    # the kernel logs errors only (ipykernel warns of its loopback TCP link at start)
    ep = SkipFlagged(
        timeout=timeout,
        kernel_name="python3",
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    ep.flags = tuple(flags or tst_flags())
    ep.preprocess(nb, {"metadata": {"path": str(path.parent)}})
    strip_widgets(nb)
    nbformat.write(nb, path)
    subprocess.run(["nbdev_clean", "--fname", str(path)], check=True, cwd=ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--only", nargs="+", help="notebook names or paths (default: all in --path)"
    )
    ap.add_argument("--path", default=str(ROOT / "nbs"))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    ap.add_argument(
        "--strip-widgets-only", action="store_true", help="strip, execute nothing"
    )
    a = ap.parse_args(argv)
    base = Path(a.path)
    if a.only:
        nbs = [
            Path(n)
            if Path(n).exists()
            else base / (n if n.endswith(".ipynb") else n + ".ipynb")
            for n in a.only
        ]
    else:
        nbs = sorted(p for p in base.glob("*.ipynb") if not p.name.startswith("_"))
    for nb in nbs:
        if a.strip_widgets_only:
            book = nbformat.read(nb, as_version=4)
            strip_widgets(book)
            nbformat.write(book, nb)
            continue
        t = time.time()
        print(f"executing {nb} ...", flush=True)
        execute(nb, a.timeout)
        print(f"  done in {time.time() - t:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

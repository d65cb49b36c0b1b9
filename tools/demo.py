"""`make demo`: the course's results from the shell, the most robust first.

1. the threshold table of 05a_threshold (scores held fixed, only the threshold moves);
2. the toy of 05b_toy (a linear head trained with four losses on synthetic pairs);
3. the laptop lab of 10_lab as recorded in nbs/results/lab-cpu.json (if present), and
   the command that reruns it when a local encoder and Re-DocRED are found (minutes on
   a laptop CPU; run here with --lab).

Each part ends with one sentence saying what it shows and what it does not. Offline,
CPU, well under a minute. Run: python tools/demo.py [--toy-steps N] [--out DIR] [--lab].
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # offline: nothing is downloaded
    os.environ.setdefault(k, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "nbs" / "results" / "lab-cpu.json"
PARTS = (
    "== 1. Where each loss puts the threshold",
    "== 2. A scorer trained with each loss",
    "== 3. The laptop lab",
)


def threshold_part(n_pairs: int = 2000) -> str:
    "05a's table on its population (2000 pairs), and the sentence that reads it."
    from hingeabl_nb.records import Table
    from hingeabl_nb.threshold import threshold_population, threshold_table

    rows = threshold_table(*threshold_population(n_pairs=n_pairs))
    header = ["loss", "b*", "gold <= TH", "F1 at b*", "F1-opt b", "best F1"]
    body = [
        [r["loss"], f"{r['b_star']:.2f}", f"{100 * r['gold_below']:.1f}%"]
        + [f"{100 * r['f1_at_b_star']:.1f}", f"{r['b_f1']:.2f}"]
        + [f"{100 * r['best_f1']:.1f}"]
        for r in rows
    ]
    title = (
        f"{PARTS[0]} (nbs/05a_threshold.ipynb: {n_pairs} pairs of fixed scores, "
        "the threshold moved by b)"
    )
    lines = [str(Table.of(header, body, title))]
    by = {r["loss"]: r for r in rows}
    high = ", ".join(
        f"{n} {by[n]['b_star'] - by[n]['b_f1']:+.1f}"
        for n in ("ATL", "BalancedSoftmax", "SAT")
    )
    lines.append(
        "Shows: with the scores held fixed, the threshold each loss prefers (b*) and "
        "the F1 there; ATL, Balanced Softmax and SAT want it far above the F1 optimum "
        f"(b* - F1-opt b: {high}). Does not show: training, which moves the scores "
        "as well, Table 3's ranking, or other populations (05a varies them; the order "
        "of the other four losses is the part that changes)."
    )
    return "\n".join(lines)


def toy_part(steps: int, out: Path) -> str:
    "Run `hingeabl-toy` in-process (its table goes to stdout) and return the sentence."
    from hingeabl_nb.cli import toy_main

    print(f"{PARTS[1]} (nbs/05b_toy.ipynb: synthetic pairs, held-out and training)")
    sys.stdout.flush()
    toy_main(["--steps", str(steps), "--out", str(out), "--no-progress"])
    return (
        f"Figure: {out / 'toy.png'} (s_TH and the gold relations at or below it, per "
        "step; held-out solid, training dashed).\n"
        "Shows: trained on Re-DocRED-shaped synthetic pairs, HingeABL and MeanSAT end "
        "with fewer gold relations at or below the threshold than ATL, on held-out "
        "and training pairs alike (seeds 0-2 in 05b). Does not show: a higher F1 "
        "(ATL's is higher on this toy) or anything about real documents."
    )


def lab_part(record: Path = RECORD) -> str:
    "The recorded lab's Table 3, or where to get it."
    if not record.is_file():
        return (
            f"{PARTS[2]}: no record at {record}; nbs/10_lab.ipynb runs it "
            "(needs the local encoder and Re-DocRED)."
        )
    from hingeabl_nb.records import load_record
    from hingeabl_nb.reproduce import table3

    r = load_record(record)
    seeds = sorted({run["seed"] for run in r["runs"]})
    losses = list(dict.fromkeys(run["loss"] for run in r["runs"]))
    return "\n".join(
        [
            f"{PARTS[2]} as recorded in {record.relative_to(ROOT)} "
            f"({r['device']}, {r['date']})",
            str(table3(r)),
            f"Command: {r['command']}",
            f"Shows: the {len(losses)} losses of the record trained on real Re-DocRED "
            "documents on a CPU, "
            f"{len(seeds)} seed(s). Does not show: the paper's Table 3 (a frozen "
            "small encoder and the ATLOP head only, not BERT-base fine-tuned); a "
            "difference between two losses smaller than its spread over seeds is "
            "noise.",
        ]
    )


def lab_command(out: str = "runs/demo-lab") -> str | None:
    "The hingeabl-lab command over the local encoder and Re-DocRED, if both are found."
    from hingeabl_nb.core import find_up
    from hingeabl_nb.data import locate_redocred

    model, data = find_up("shared/models/minilm-l6-h384-uncased"), locate_redocred()
    if model is None or data is None:
        return None
    return shlex.join(
        ["hingeabl-lab", "--model", str(model), "--data-dir", str(data), "--out", out]
    )


def main(argv: list | None = None) -> int:
    "Print the three parts in order, each with its sentence; the toy writes its figure."
    p = argparse.ArgumentParser(
        prog="tools/demo.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("--toy-steps", type=int, default=1000, help="default: 1000")
    p.add_argument("--out", default="runs/demo", help="toy.png, toy.json (runs/demo)")
    p.add_argument("--record", default=str(RECORD), help="the lab record to print")
    p.add_argument(
        "--table-pairs", type=int, default=2000, help="05a's population: 2000 pairs"
    )
    p.add_argument("--lab", action="store_true", help="also rerun the lab (minutes)")
    a = p.parse_args(argv)
    if a.toy_steps < 1 or a.table_pairs < 100:
        p.error(
            f"--toy-steps must be >= 1 and --table-pairs >= 100 "
            f"(got {a.toy_steps} and {a.table_pairs})"
        )
    import matplotlib
    import torch

    matplotlib.use("Agg")
    torch.set_num_threads(1)  # small tensors: threads only add overhead
    t0 = time.time()
    print(threshold_part(a.table_pairs), end="\n\n", flush=True)
    print(toy_part(a.toy_steps, Path(a.out)), end="\n\n", flush=True)
    print(lab_part(Path(a.record).resolve()), end="\n\n")
    cmd = lab_command()
    if cmd is None:
        print(
            "To rerun the lab: it needs a local encoder (shared/models/minilm-l6-h384-"
            "uncased) and Re-DocRED (shared/data/redocred); see nbs/10_lab.ipynb."
        )
    else:
        print(f"Rerun the lab (minutes on a laptop CPU; --lab runs it): {cmd}")
    print(f"demo: {time.time() - t0:.0f} s wall, {time.process_time():.0f} s CPU")
    if a.lab and cmd:
        print("\n== --lab: running the laptop lab ==", flush=True)
        subprocess.run(shlex.split(cmd), check=True)
    print(
        "\nNext: 'make jupyter' opens the course in JupyterLab (nbs/index.ipynb first)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

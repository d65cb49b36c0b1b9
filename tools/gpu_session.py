#!/usr/bin/env python3
"""The whole GPU session in one command, its carried folder, and its CPU rehearsal.

    python3 tools/gpu_session.py           # on the GPU machine (device tool: carry
                                           # .gpu-carry, timeout_s 600; OUT is set)
    python3 tools/gpu_session.py carry     # here: build .gpu-carry/ (make gpu-carry)
    python3 tools/gpu_session.py rehearse  # here: the same session on the CPU, as the
                                           # GPU machine sees it (make gpu-rehearsal)

The session (`run`, the default) goes through these steps; each prints its time and the
status of every step is rewritten to $OUT/steps.json as soon as it ends. Results are
written under $OUT the moment they exist (the grid record after every finished cell),
so a call cut short still brings them back. Any failure ends with a non-zero exit
status and a line naming the failing step(s); a failed `check` does not stop the grid
(one lease, one try), a failed `install`, `locate` or `featurise` stops what needs it.

Time budget of `--size full` (one 10-minute device call; the session aims at 540 s):

| step      | budget | how it was estimated |
| --------- | ------ | -------------------- |
| locate    |   5 s  | sha256 of the 51 MB carried folder: 0.2 s here |
| install   |  30 s  | pip install --no-index of this package: 14-25 s here (busy CPU) |
| check     |  60 s  | hard limit (CUDA tests): torch + CUDA start ~10 s, tests ~20 s |
| featurise |  45 s  | 1,000 documents, MiniLM fast tokenizer: 32 s on this 2-core CPU |
| grid      | ~300 s | the rest; see below |
| bench     |  90 s  | two BERT-base-sized models, 32 documents, warm-up + 1 epoch |
| finish    |  10 s  | record, tables and the cells' archive |

The grid: 7 losses x seeds 1 5 42 (21 cells, seed by seed; seeds 66 and 233 are queued
after them and start only if they are predicted to finish in time) of the `reduced`
preset with 8 epochs instead of 20. Estimate, not measured on a GPU: a training step
is ~7,500 aten calls (torch.profiler here: 4 documents, MiniLM, HingeABL, counted at
every level) with host syncs, ~50-60 ms of single-threaded CPU dispatch at ~7 us a
call, and some 3,000 kernels of a few microseconds, ~10 ms of GPU time that other
processes cannot overlap (no MPS). One cell alone: ~20 s start + 8 x (100 steps x
60 ms + ~1.5 s dev evaluation) + ~5 s test = ~85 s; 11 jobs of 1 thread (16 cores /
11) take the 21 cells in two rounds, ~110 s each with contention; the GPU-bound floor
is 21 x 800 steps x 10 ms = ~170 s. At 20 epochs the same estimate gives ~500 s: it
does not fit one call. The first cells' log.jsonl (epoch seconds, in cells.tar.gz)
measure all of this; re-size from them (--epochs, --jobs).

Every cell's folder (checkpoints) lives in a work folder (/dev/shm when it has room:
the trainer writes ~360 MB of checkpoints per cell and epoch), never under $OUT, which
gets at most 8 small files: session.log, steps.json, reduced-<device>.json (the grid
record, rewritten after each cell), tables.md, cells.tar.gz (each cell's metrics.json,
log.jsonl and console log) and throughput-<device>.json (bench/bench_train.py).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu-carry"  # git-ignored; `carry` builds it from ../shared
DATA_FILES = ("dev_revised.json", "test_revised.json", "rel2id.json", "rel_info.json")
DATA_FILES += ("LICENSE-Re-DocRED",)
ENCODER = "minilm-l6-h384-uncased"
CARRY_LIMIT_MIB = 60
ALL_LOSSES = ("ATL", "BalancedSoftmax", "AFL", "AML", "SAT", "MeanSAT", "HingeABL")
# What each size runs: full (the GPU machine) and tiny (the CPU rehearsal, ~1 minute).
# tiny: 4 documents per split, one training step per cell; a cell's time is MiniLM on
# 1024-token documents with 1 thread (2 x 4 documents cost ~35 s a cell, 4 ~20 s).
SIZES = {
    "full": dict(
        device="cuda",
        losses=ALL_LOSSES,
        seeds=(1, 5, 42, 66, 233),
        min_seeds=3,
        epochs=8,
        max_docs=None,
        jobs=11,
        budget=540,
        slack=1,
        bench=["--encoder-size", "base", "--docs", "32"],
    ),
    "tiny": dict(
        device="cpu",
        losses=("ATL", "HingeABL"),
        seeds=(1,),
        min_seeds=1,
        epochs=1,
        max_docs=4,
        jobs=2,
        budget=900,
        slack=3,  # step time limits x3: a shared CPU runs it (setup alone ~60 s)
        bench=["--encoder-size", "tiny", "--docs", "4"],
    ),
}
BUDGET = {  # seconds per step (see the table above); the grid gets what is left
    "locate": 5,
    "install": 30,
    "check": 60,
    "featurise": 45,
    "bench": 90,
    "finish": 10,
}
# What comes back from $OUT (device tool): at most 8 files of 16 MiB, these names.
OUT_MAX_FILES, OUT_MAX_MIB, OUT_NAME = 8, 16, re.compile(r"^[A-Za-z0-9._-]+$")


# ---- logging and steps ---------------------------------------------------------------


class Session:
    "Step bookkeeping: console + $OUT/session.log, and $OUT/steps.json after each step."

    def __init__(self, out: Path, budget: float, slack: float = 1):
        self.out, self.t0, self.budget = out, time.monotonic(), budget
        self.slack = slack  # step time limits are budgets x slack
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "session.log", "a", buffering=1)
        self.steps: list[dict] = []

    def say(self, msg: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()

    def step(self, name: str, ok: bool, t: float, detail: str = "") -> bool:
        self.steps.append(
            dict(
                step=name,
                ok=ok,
                seconds=round(time.monotonic() - t, 1),
                budget_s=BUDGET.get(name),
                detail=detail,
            )
        )
        self.say(
            f"-- {name}: {'ok' if ok else 'FAILED'} in {self.steps[-1]['seconds']} s"
            + (f" (budget {BUDGET[name]} s)" if name in BUDGET else "")
            + (f": {detail}" if detail else "")
        )
        atomic_write(self.out / "steps.json", json.dumps(self.steps, indent=1))
        return ok

    def run(self, cmd: list, timeout: float, cwd: Path, env: dict) -> int:
        "Run `cmd`, echoing its output here and in session.log; 124 on timeout."
        self.say("$ " + shlex.join(map(str, cmd)))
        p = subprocess.Popen(
            list(map(str, cmd)),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )

        def echo():
            for line in p.stdout:
                print("   " + line.rstrip(), flush=True)
                self.log.write("   " + line.rstrip() + "\n")

        reader = threading.Thread(target=echo, daemon=True)
        reader.start()
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            rc = 124
            self.say(f"timed out after {timeout:.0f} s")
        reader.join(5)
        return rc


def atomic_write(path: Path, text_or_bytes) -> None:
    "Write a file through a temporary name, so a reader never sees half of it."
    tmp = path.with_name(path.name + ".part")
    mode = "wb" if isinstance(text_or_bytes, bytes) else "w"
    with open(tmp, mode) as fh:
        fh.write(text_or_bytes)
    os.replace(tmp, path)


def kill_group(p: subprocess.Popen) -> None:
    "End a child started with start_new_session and everything it started."
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(5)
            return
        except subprocess.TimeoutExpired:
            pass


EXTRA_ENV: dict = {}  # set by `install` when it had to install into a folder


def child_env(work: Path, threads: int | None = None) -> dict:
    "Environment of every child: offline, no display, the work folder's HF cache."
    env = dict(os.environ) | EXTRA_ENV
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(work / "hf-home"),
        TOKENIZERS_PARALLELISM="false",
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
        HINGEABL_DATA=str(work / "shared" / "data" / "redocred"),
    )
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


# ---- steps of the session ------------------------------------------------------------


def step_locate(s: Session, work: Path, carry: Path) -> bool:
    """Check the carried folder against its manifest; link it as work/shared so the
    library's own search (shared/data/redocred, shared/models/<name>) finds it."""
    t = time.monotonic()
    manifest = carry / "MANIFEST.json"
    if not manifest.is_file():
        return s.step("locate", False, t, f"{manifest} missing: run `make gpu-carry`")
    bad = [
        f"{rel} ({why})"
        for rel, (size, digest) in json.loads(manifest.read_text()).items()
        for why in [file_problem(carry / rel, size, digest)]
        if why
    ]
    if bad:
        return s.step("locate", False, t, "carried files damaged: " + ", ".join(bad))
    for link, target in [
        (work / "shared" / "data" / "redocred", carry / "redocred"),
        (work / "shared" / "models" / ENCODER, carry / ENCODER),
    ]:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve(), target_is_directory=True)
    return s.step("locate", True, t, f"data and {ENCODER} from {carry}")


def file_problem(path: Path, size: int, digest: str) -> str:
    "Why a carried file does not match its manifest entry ('' when it does)."
    if not path.is_file():
        return "missing"
    if path.stat().st_size != size:
        return f"{path.stat().st_size} bytes, expected {size}"
    return "" if sha256(path) == digest else "sha256 differs"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def step_install(s: Session, work: Path, carry: Path, device: str) -> bool:
    """pip install this checkout (and any carried wheels) without an index, then check
    the console scripts exist and `import hingeabl_nb` finds the installed copy."""
    t = time.monotonic()
    wheels = sorted((carry / "wheels").glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    pip += ["--no-build-isolation", "--disable-pip-version-check", *wheels, REPO]
    limit = 2 * BUDGET["install"] * s.slack
    rc = s.run(pip, timeout=limit, cwd=work, env=child_env(work))
    scripts = Path(sysconfig.get_path("scripts"))
    if rc not in (0, 124):  # e.g. a read-only environment: a folder on PYTHONPATH
        site = work / "site"
        rc = s.run(
            pip + ["--target", site], timeout=limit, cwd=work, env=child_env(work)
        )
        scripts = site / "bin"
        EXTRA_ENV.update(
            {
                k: os.pathsep.join(filter(None, [str(d), os.environ.get(k)]))
                for k, d in (("PYTHONPATH", site), ("PATH", scripts))
            }
        )
        sys.path.insert(0, str(site))
    if rc:
        return s.step("install", False, t, f"pip install exited {rc}")
    missing = [
        n for n in ("hingeabl-train", "hingeabl-compare") if not (scripts / n).exists()
    ]
    env = child_env(work)
    env["HINGEABL_REQUIRE_CUDA"] = "1" if device == "cuda" else ""
    env["HINGEABL_CHECKOUT"] = str(REPO)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    s.say(probe.stdout.strip() + probe.stderr.strip()[-2000:])
    if probe.returncode or missing:
        why = f"console scripts {missing} not in {scripts}" if missing else "probe"
        return s.step("install", False, t, why)
    return s.step("install", True, t, f"{len(wheels)} carried wheel(s)")


PROBE = """
import importlib.metadata as md, os, re, sys
import hingeabl_nb, torch
print("hingeabl_nb", hingeabl_nb.__version__, "from", hingeabl_nb.__file__)
print("python", sys.version.split()[0], "| torch", torch.__version__,
      "| cuda", torch.cuda.is_available(),
      *(f"| {torch.cuda.get_device_name(0)}",) if torch.cuda.is_available() else ())
need = [re.split(r"[<>=!~ ;\\[]", r)[0] for r in md.requires("hingeabl-nb") or []
        if "extra ==" not in r]
def have(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return None
print("requirements:", ", ".join(f"{n} {have(n) or 'MISSING'}" for n in need))
if hingeabl_nb.__file__.startswith(os.environ["HINGEABL_CHECKOUT"] + os.sep):
    sys.exit("hingeabl_nb was imported from the checkout, not from the install")
if os.environ.get("HINGEABL_REQUIRE_CUDA") and not torch.cuda.is_available():
    sys.exit("the session runs on CUDA but torch sees no CUDA device")
"""


def step_check(s: Session, work: Path, device: str) -> bool:
    """The CUDA tests of tests/test_gpu_session.py (`-k cuda`): skipped without CUDA,
    required (no skip) when the session runs on CUDA."""
    t = time.monotonic()
    env = child_env(work)
    env["HINGEABL_REQUIRE_CUDA"] = "1" if device == "cuda" else ""
    rc = s.run(
        [sys.executable, "-m", "pytest", REPO / "tests" / "test_gpu_session.py"]
        + ["-k", "cuda", "-q", "-rs", "-p", "no:cacheprovider", "--no-header"],
        timeout=BUDGET["check"] * s.slack,
        cwd=work,
        env=env,
    )
    return s.step("check", rc == 0, t, "" if rc == 0 else f"pytest exited {rc}")


def grid_config(a, loss: str, seed: int, threads: int = 0):
    "The `reduced` config of one grid cell (`a`: the session's arguments)."
    from hingeabl_nb import train

    base = train.PRESETS["reduced"]
    protocol = base.protocol
    if a.epochs and a.epochs != base.epochs:
        protocol += (
            f" Epochs cut from {base.epochs} to {a.epochs} "
            "to fit one GPU call (tools/gpu_session.py)."
        )
    if a.max_docs:
        protocol += (
            f" Only the first {a.max_docs} train, dev and test documents "
            "(a rehearsal: the scores mean nothing)."
        )
    return train.resolve_config(
        "reduced",
        loss=loss,
        seed=seed,
        device=a.device,
        epochs=a.epochs,
        max_train_docs=a.max_docs,
        max_eval_docs=a.max_docs,
        num_threads=threads,
        progress=False,
        protocol=protocol,
    )


def share_features(cache: Path) -> None:
    """Make `data.featurize` read and write a feature cache shared by every cell, keyed
    by the documents, tokenizer and arguments (runs.prepare_run featurises each run)."""
    import torch

    from hingeabl_nb import data

    featurize = data.featurize
    sig = inspect.signature(featurize)

    def cached(*args, **kw):
        b = sig.bind(*args, **kw)
        b.apply_defaults()
        x = {k: v for k, v in b.arguments.items() if k != "progress"}
        if x["neg_sample_rate"] >= 1.0:  # the seed only draws the NA pairs kept
            x.pop("seed")
        tok = x.pop("tokenizer")
        h = hashlib.sha256(
            json.dumps(
                [type(tok).__name__, tok.name_or_path, len(tok), x],
                sort_keys=True,
                default=str,
            ).encode()
        )
        path = cache / f"features-{h.hexdigest()[:24]}.pt"
        if path.exists():
            print(f"features: {path.name} from the shared cache", flush=True)
            return torch.load(path, weights_only=True)
        print(f"features: {path.name} not cached; featurising", flush=True)
        feats = featurize(*args, **kw)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        torch.save(feats, tmp)
        os.replace(tmp, path)
        return feats

    data.featurize = cached


def worker_featurise(a) -> None:
    "Child of the `featurise` step: featurise the grid's three splits into the cache."
    from hingeabl_nb import runs

    share_features(Path(a.cache))
    t = time.monotonic()
    run = runs.prepare_run(grid_config(a, a.losses[0], a.seeds[0]))
    sizes = {k: len(v) for k, v in run["features"].items()}
    print(f"featurised {sizes} documents in {time.monotonic() - t:.1f} s -> {a.cache}")


def worker_cell(a) -> None:
    "Child of the `grid` step: train one (loss, seed) cell with the shared features."
    import torch

    from hingeabl_nb import train

    share_features(Path(a.cache))
    cfg = grid_config(a, a.losses[0], a.seeds[0], a.threads)
    torch.set_num_threads(a.threads)
    res = train.run_training(cfg, a.cell_out)
    print(f"{cfg.loss} seed {cfg.seed}: test F1 {res['test']['F1']:.2f}")


def step_featurise(s: Session, work: Path, a) -> bool:
    t = time.monotonic()
    rc = s.run(
        worker_cmd(a, "featurise", a.losses[:1], a.seeds[:1]),
        timeout=3 * BUDGET["featurise"] * s.slack,
        cwd=work,
        env=child_env(work),
    )
    return s.step("featurise", rc == 0, t, "" if rc == 0 else f"exited {rc}")


def worker_cmd(a, what: str, losses, seeds, *extra) -> list:
    "The command line of a child (`--worker featurise|cell`) with the session's sizes."
    cmd = [sys.executable, Path(__file__).resolve(), "run", "--worker", what]
    cmd += ["--device", a.device, "--epochs", a.epochs, "--cache", a.cache]
    cmd += ["--losses", *losses, "--seeds", *seeds, *extra]
    return cmd + (["--max-docs", a.max_docs] if a.max_docs else [])


# ---- the grid: cells as child processes, records as they finish ----------------------


class Grid:
    """Run cells `jobs` at a time; start one only if it is predicted to end before
    `deadline`; stop the running ones at the deadline; call `on_change` after each
    cell ends."""

    def __init__(self, cells, launch, deadline, jobs, epochs, on_change, say=print):
        self.pending, self.launch, self.deadline = list(cells), launch, deadline
        self.jobs, self.epochs, self.on_change, self.say = jobs, epochs, on_change, say
        self.running: dict = {}  # cell -> (Popen, start time, log.jsonl path)
        self.done, self.failed, self.cut, self.not_started = [], [], [], []
        self.walls: list[float] = []

    def predicted(self) -> float | None:
        "Seconds a new cell needs: finished cells' median, else the running ones' pace."
        if self.walls:
            return sorted(self.walls)[len(self.walls) // 2]
        paces = []
        for p, t0, log in self.running.values():
            n = len(log.read_text().splitlines()) if log.exists() else 0
            if n:  # start-up + n epochs took this long; one more epoch-like test pass
                paces.append((time.monotonic() - t0) * (self.epochs + 1) / n)
        return max(paces) if paces else None

    def run(self, poll: float = 1.0) -> None:
        try:
            self._loop(poll)
        finally:  # an interrupted session leaves no cell running
            for p, _, _ in self.running.values():
                kill_group(p)

    def _loop(self, poll: float) -> None:
        while self.pending or self.running:
            for cell, (p, t0, _) in list(self.running.items()):
                if p.poll() is not None:
                    del self.running[cell]
                    wall = time.monotonic() - t0
                    ok = p.returncode == 0
                    (self.done if ok else self.failed).append(cell)
                    self.walls += [wall] if ok else []
                    self.say(
                        f"cell {cell[0]} s{cell[1]} "
                        + (
                            f"done in {wall:.0f} s"
                            if ok
                            else f"FAILED ({p.returncode})"
                        )
                    )
                    self.on_change(self)
            now = time.monotonic()
            if now >= self.deadline:
                for cell, (p, _, _) in list(self.running.items()):
                    kill_group(p)
                    self.cut.append(cell)
                    self.say(f"cell {cell[0]} s{cell[1]} stopped at the grid deadline")
                self.running.clear()
                self.not_started += self.pending
                self.pending = []
                self.on_change(self)
                break
            while self.pending and len(self.running) < self.jobs:
                need = self.predicted()
                if need is not None and now + need > self.deadline:
                    self.say(
                        f"{len(self.pending)} cell(s) not started: ~{need:.0f} s "
                        f"each, {self.deadline - now:.0f} s left"
                    )
                    self.not_started += self.pending
                    self.pending = []
                    break
                cell = self.pending.pop(0)
                self.running[cell] = self.launch(cell)
                self.say(f"cell {cell[0]} s{cell[1]} started")
            time.sleep(poll)


def step_grid(s: Session, work: Path, a, deadline: float) -> tuple[bool, dict | None]:
    t = time.monotonic()
    grid_dir, threads = work / "grid", max(1, (os.cpu_count() or 1) // a.jobs)
    cells = [(l, sd) for sd in a.seeds for l in a.losses]  # seed by seed
    required = [(l, sd) for sd in a.seeds[: a.min_seeds] for l in a.losses]
    s.say(
        f"{len(cells)} cells ({len(required)} required), {a.jobs} jobs x "
        f"{threads} thread(s), {a.epochs} epoch(s), {deadline - s.elapsed():.0f} s"
    )
    state, shown = {"record": None}, []

    def launch(cell):
        d = grid_dir / f"{cell[0]}-s{cell[1]}"
        d.mkdir(parents=True, exist_ok=True)
        log = open(d / "console.log", "w")
        cmd = worker_cmd(a, "cell", [cell[0]], [cell[1]], "--cell-out", d)
        cmd += ["--threads", threads]
        p = subprocess.Popen(
            list(map(str, cmd)),
            cwd=work,
            env=child_env(work, threads),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return p, time.monotonic(), d / "log.jsonl"

    def on_change(g: Grid):
        for cell in g.failed[len(shown) :]:
            tail = (grid_dir / f"{cell[0]}-s{cell[1]}" / "console.log").read_text()
            s.say("   " + "\n   ".join(tail.splitlines()[-15:]))
            shown.append(cell)
        open_cells = [c for c in cells if c not in g.done]
        state["record"] = write_results(s.out, grid_dir, a, open_cells, g) or None

    g = Grid(cells, launch, s.t0 + deadline, a.jobs, a.epochs, on_change, say=s.say)
    g.run()
    missing = [c for c in required if c not in g.done]
    ok = not missing and not g.failed
    detail = f"{len(g.done)}/{len(cells)} cells done"
    if missing:
        detail += f"; {len(missing)} of the {len(required)} required cells missing"
    if g.failed:
        detail += f"; failed: {', '.join(f'{l}-s{sd}' for l, sd in g.failed)}"
    return s.step("grid", ok, t, detail), state["record"]


def write_results(out: Path, grid_dir: Path, a, open_cells, g) -> dict | None:
    """The grid record of the finished cells ($OUT/reduced-<device>.json), its tables
    and an archive of every cell's small files, each written atomically."""
    from hingeabl_nb import records, reproduce

    atomic_write(out / "cells.tar.gz", cells_archive(grid_dir))
    if not g.done:
        return None
    rec = records.collect_runs(grid_dir)
    finished = {(r["loss"], r["seed"]) for r in rec["runs"]}
    seeds = [sd for sd in a.seeds if any((l, sd) in finished for l in a.losses)]
    over = {"epochs": a.epochs} | (
        {"max_train_docs": a.max_docs, "max_eval_docs": a.max_docs}
        if a.max_docs
        else {}
    )
    rec["command"] = records.grid_command(
        "reduced", list(a.losses), seeds, "runs/reduced", **over
    )
    rec["incomplete"] = [f"{l}-s{sd}" for l, sd in open_cells]
    rec["session"] = {
        "command": "python3 tools/gpu_session.py " + shlex.join(sys.argv[1:]),
        "jobs": a.jobs,
        "cut_at_deadline": [f"{l}-s{sd}" for l, sd in g.cut],
        "not_started": [f"{l}-s{sd}" for l, sd in g.not_started],
        "failed": [f"{l}-s{sd}" for l, sd in g.failed],
    }
    name = f"reduced-{records.device_slug(rec['device'])}.json"
    atomic_write(out / name, json.dumps(rec, indent=1))
    atomic_write(out / "tables.md", reproduce.tables_markdown(rec))
    return rec


def cells_archive(grid_dir: Path) -> bytes:
    "A .tar.gz of each cell's metrics.json, log.jsonl and console.log (no checkpoints)."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(grid_dir.glob("*/*")):
            if f.name in ("metrics.json", "log.jsonl", "console.log"):
                tar.add(f, arcname=f"{f.parent.name}/{f.name}")
    return buf.getvalue()


def step_bench(s: Session, work: Path, a) -> bool:
    "bench/bench_train.py --baseline --record: ours vs official-style throughput."
    t = time.monotonic()
    timeout = max(BUDGET["bench"] * s.slack, s.left() - BUDGET["finish"])
    cmd = [sys.executable, REPO / "bench" / "bench_train.py", "--device", a.device]
    cmd += [*a.bench, "--baseline", "--record", s.out / "throughput-{device}.json"]
    rc = s.run(cmd, timeout=timeout, cwd=work, env=child_env(work))
    return s.step("bench", rc == 0, t, "" if rc == 0 else f"exited {rc}")


def work_folder() -> Path:
    "A fresh work folder: in /dev/shm when it has 16 GB free (checkpoints), else /tmp."
    shm = Path("/dev/shm")
    room = shutil.disk_usage(shm).free if shm.is_dir() else 0
    where = shm if room > 16e9 and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="hingeabl-gpu-", dir=where))


def run_session(a) -> int:
    if a.worker:
        {"featurise": worker_featurise, "cell": worker_cell}[a.worker](a)
        return 0
    out = Path(a.out or os.environ.get("OUT") or "gpu-out").resolve()
    s = Session(out, a.budget, SIZES[a.size]["slack"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = work_folder()
    a.cache = str(work / "features")
    s.say(
        f"gpu_session --size {a.size}: device {a.device}, OUT {out}, work {work}, "
        f"{os.cpu_count()} cores, budget {a.budget} s"
    )
    if a.device == "cuda" and shutil.which("nvidia-smi"):
        s.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version"]
            + ["--format=csv,noheader"],
            10,
            work,
            child_env(work),
        )
    failed = []
    ok = step_locate(s, work, Path(a.carry)) and step_install(
        s, work, Path(a.carry), a.device
    )
    if not ok:
        failed.append(s.steps[-1]["step"])
    else:
        if not step_check(s, work, a.device):
            failed.append("check")
        if step_featurise(s, work, a):
            deadline = a.budget - BUDGET["bench"] - BUDGET["finish"]
            ok, _ = step_grid(s, work, a, deadline)
            failed += [] if ok else ["grid"]
        else:
            failed.append("featurise")
        if not step_bench(s, work, a):
            failed.append("bench")
    files = sorted(p.name for p in out.iterdir())
    s.say(f"$OUT holds {len(files)} file(s): {', '.join(files)}")
    s.say(f"work folder kept: {work}" if a.keep else f"removing {work}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    s.say(
        f"gpu_session: FAILED step(s): {', '.join(failed)}"
        if failed
        else f"gpu_session: every step passed in {s.elapsed():.0f} s"
    )
    return 1 if failed else 0


# ---- here: the carried folder and the rehearsal --------------------------------------


def build_carry(shared: Path, dest: Path, wheels: Path, limit_mib: float) -> dict:
    """Copy the data, the encoder and any wheels into `dest` with a manifest; refuse
    (SystemExit) when the total is over `limit_mib`."""
    src = {f"redocred/{n}": shared / "data" / "redocred" / n for n in DATA_FILES}
    enc = shared / "models" / ENCODER
    if not enc.is_dir():
        raise SystemExit(f"gpu carry: encoder folder {enc} not found")
    src |= {f"{ENCODER}/{p.name}": p for p in sorted(enc.iterdir()) if p.is_file()}
    src |= {f"wheels/{p.name}": p for p in sorted(wheels.glob("*.whl"))}
    missing = [str(p) for p in src.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"gpu carry: missing {', '.join(missing)}")
    total = sum(p.stat().st_size for p in src.values()) / 2**20
    if total > limit_mib:
        big = sorted(src, key=lambda k: -src[k].stat().st_size)[:3]
        sizes = ", ".join(f"{k} {src[k].stat().st_size / 2**20:.1f} MiB" for k in big)
        raise SystemExit(
            f"gpu carry: {total:.1f} MiB is over the {limit_mib} MiB limit "
            f"(largest: {sizes}); nothing written"
        )
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = {}
    for rel, p in src.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, tmp / rel)  # contents only: the sources are read-only
        manifest[rel] = [p.stat().st_size, sha256(tmp / rel)]
    (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    print(f"{dest}: {len(manifest)} files, {total:.1f} MiB (limit {limit_mib} MiB)")
    return manifest


def gpu_image_packages() -> set[str]:
    "Normalised names of the GPU image's distributions (tools/gpu_image_packages.txt)."
    lines = (REPO / "tools" / "gpu_image_packages.txt").read_text().splitlines()
    return {norm(x) for x in lines if x.strip() and not x.startswith("#")}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_view(dest: Path, listed: set[str]) -> tuple[list[str], list[str]]:
    """Symlink into `dest` the distributions installed here that the GPU image lists,
    plus what they require here (versions differ: e.g. huggingface_hub here needs
    httpx2 where the image's needs httpx); (listed names, added requirements)."""
    from packaging.requirements import Requirement

    site = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    here = {
        norm(d.metadata["Name"]): d
        for d in importlib.metadata.distributions()
        if str(Path(d.locate_file(""))) in site
    }
    todo, names = sorted(listed & set(here)), set()
    while todo:
        name = todo.pop()
        if name in names:
            continue
        names.add(name)
        for r in map(Requirement, here[name].requires or []):
            if (not r.marker or r.marker.evaluate({"extra": ""})) and norm(
                r.name
            ) in set(here) - names:
                todo.append(norm(r.name))
    dest.mkdir(parents=True)
    taken = set()
    for name in sorted(names):
        d = here[name]
        base = Path(d.locate_file(""))
        for top in sorted({Path(f).parts[0] for f in d.files or ()}):  # + .dist-info
            if top in ("..", "__pycache__") or top.endswith(".pth") or top in taken:
                continue
            if (base / top).exists():
                (dest / top).symlink_to(base / top)
                taken.add(top)
    return sorted(names & listed), sorted(names - listed)


def rehearse(a) -> int:
    """The session with --size tiny on the CPU, as the GPU machine sees it: a clean
    copy of HEAD plus the carried folder, a fresh venv that sees only the GPU image's
    distributions, no index, OUT a temporary folder; then check what OUT holds."""
    if not (CARRY / "MANIFEST.json").is_file():
        raise SystemExit(f"gpu rehearse: {CARRY} missing: run `make gpu-carry` first")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="hingeabl-rehearsal-"))
    if any((d / "shared").exists() for d in tmp.parents):
        raise SystemExit(f"gpu rehearse: a shared/ folder above {tmp} would be found")
    repo, out, venv = tmp / "repo", tmp / "out", tmp / "venv"
    repo.mkdir()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if dirty:
        print(
            "gpu rehearse: uncommitted changes are NOT rehearsed (HEAD is):\n" + dirty
        )
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=REPO, capture_output=True
    )
    if archive.returncode:
        raise SystemExit(f"gpu rehearse: git archive HEAD failed: {archive.stderr!r}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # the "data" filter exists from Python 3.11.4 / 3.10.12; HEAD is our own archive
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(repo, **safe)
    shutil.copytree(CARRY, repo / CARRY.name)
    names, added = image_view(tmp / "image-site", gpu_image_packages())
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    vpy = venv / "bin" / "python3"
    vsite = subprocess.run(
        [vpy, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(vsite) / "gpu_image.pth").write_text(str(tmp / "image-site") + "\n")
    print(
        f"gpu rehearse: {tmp}; the venv sees {len(names)} distributions the GPU image "
        f"lists and {len(added)} they require here ({', '.join(added)}); "
        f"setup {time.monotonic() - t0:.1f} s"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    path = [p for p in env.get("PATH", "").split(":") if not p.startswith(sys.prefix)]
    env.update(PATH=":".join([str(venv / "bin"), *path]), OUT=str(out))
    cmd = ["python3", "tools/gpu_session.py", "run", "--size", "tiny"]
    print("gpu rehearse: $ " + shlex.join(cmd) + f"  (in {repo}, OUT={out})")
    rc = subprocess.run(cmd, cwd=repo, env=env).returncode
    problems = out_problems(out) + venv_problems(vpy, env, set(added))
    for p in problems:
        print("gpu rehearse: PROBLEM:", p)
    wall = time.monotonic() - t0
    print(
        f"gpu rehearse: session exited {rc}; {len(problems)} problem(s); "
        f"{wall:.0f} s in all"
    )
    if a.keep:
        print(f"gpu rehearse: kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if rc or problems else 0


def out_problems(out: Path) -> list[str]:
    """What would not come back from $OUT or is missing there (device tool's rules:
    8 files, 16 MiB each, two folders deep, plain names)."""
    files = [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else []
    probs = [] if files else [f"{out} holds no file"]
    if len(files) > OUT_MAX_FILES:
        probs.append(f"{len(files)} files under OUT, {OUT_MAX_FILES} come back")
    for p in files:
        rel = p.relative_to(out)
        if p.stat().st_size > OUT_MAX_MIB * 2**20 or len(rel.parts) > 3:
            probs.append(f"{rel}: too big or too deep to come back")
        if not all(OUT_NAME.match(x) for x in rel.parts):
            probs.append(f"{rel}: a name the device tool does not return")
    names = {p.name for p in files}
    for want in ("session.log", "steps.json", "tables.md", "cells.tar.gz"):
        if want not in names:
            probs.append(f"{want} missing under OUT")
    for prefix in ("reduced-", "throughput-"):
        if not any(n.startswith(prefix) and n.endswith(".json") for n in names):
            probs.append(f"no {prefix}<device>.json under OUT")
    return probs


def venv_problems(vpy: Path, env: dict, added: set) -> list[str]:
    "Distributions the venv sees that neither the image lists nor its packages need."
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    )
    seen = subprocess.run([vpy, "-c", code], env=env, capture_output=True, text=True)
    extra = sorted(
        {norm(n) for n in json.loads(seen.stdout or "[]")}
        - gpu_image_packages()
        - {"hingeabl-nb"}
        - added
        - {norm(p.name.split("-")[0]) for p in (CARRY / "wheels").glob("*.whl")}
    )
    return (
        [f"the venv sees distributions not on the GPU image: {extra}"] if extra else []
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="the session (default)")
    r.add_argument("--size", choices=list(SIZES), default="full")
    r.add_argument("--out", help="results folder (default: $OUT, else ./gpu-out)")
    r.add_argument("--carry", default=str(CARRY), help="the carried folder")
    r.add_argument("--keep", action="store_true", help="keep the work folder")
    for k in ("device", "epochs", "max_docs", "jobs", "budget", "min_seeds"):
        r.add_argument("--" + k.replace("_", "-"), default=None, type=None)
    r.add_argument("--losses", nargs="+", default=None)
    r.add_argument("--seeds", nargs="+", type=int, default=None)
    r.add_argument("--worker", choices=["featurise", "cell"], help=argparse.SUPPRESS)
    r.add_argument("--cache", help=argparse.SUPPRESS)
    r.add_argument("--cell-out", help=argparse.SUPPRESS)
    r.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    c = sub.add_parser("carry", help="build .gpu-carry/ from ../shared and .whl/")
    c.add_argument("--shared", default=os.environ.get("HINGEABL_SHARED"))
    c.add_argument("--limit-mib", type=float, default=CARRY_LIMIT_MIB)
    h = sub.add_parser("rehearse", help="the session on the CPU (--size tiny)")
    h.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        args = ["run", *args]  # `run` is the default
    a = p.parse_args(args)
    if a.cmd == "carry":
        shared = Path(a.shared) if a.shared else REPO.parent / "shared"
        build_carry(shared, CARRY, REPO / ".whl", a.limit_mib)
        return 0
    if a.cmd == "rehearse":
        return rehearse(a)
    size = SIZES[a.size]
    for k in ("device", "epochs", "max_docs", "jobs", "budget", "min_seeds"):
        v = getattr(a, k)
        setattr(a, k, size[k] if v is None else (v if k == "device" else int(v)))
    a.losses = a.losses or list(size["losses"])
    a.seeds = a.seeds or list(size["seeds"])
    a.bench = size["bench"]
    return run_session(a)


if __name__ == "__main__":
    sys.exit(main())

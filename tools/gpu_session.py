#!/usr/bin/env python3
"""The GPU session: the rented GPU machine's own steps around one library command.

    python3 tools/gpu_session.py           # on the GPU machine (device tool: carry
                                           # .gpu-carry, timeout_s 600; OUT is set)
    python3 tools/gpu_session.py carry     # here: build .gpu-carry/ (make gpu-carry)
    python3 tools/gpu_session.py rehearse  # here: the same session on the CPU, as the
                                           # GPU machine sees it (make gpu-rehearsal)

The machine has no network, a fixed package list (tools/gpu_image_packages.txt) and
brings back at most 8 files of $OUT. The session checks the carried folder (data and
encoder, `carry`), installs this checkout without an index, runs the CUDA checks of
tests/test_gpu_session.py, then the grid, which is the library's own command:

    hingeabl-compare --preset reduced --seeds 1 5 42 66 233 --epochs 8 --jobs 11 \\
        --deadline S --out WORK/grid --record $OUT/reduced-{device}.json

(every loss in the registry; `records.run_cells` starts no cell predicted to miss the
deadline, stops the running ones at it and rewrites the record after every cell, so a
session cut short still brings its results back), and the throughput benchmark. Each
step's status is rewritten to $OUT/steps.json as it ends; a failure names its step.

Budget of `--size full` (one 10-minute call; the session aims at 540 s): locate 5 s,
install 30 s (pip install --no-index: 14-25 s here), check 60 s (CUDA start ~10 s,
tests ~20 s), grid what is left (~300 s: 7 losses x 3 seeds of the reduced preset at 8
epochs, ~85 s a cell alone, 11 jobs; seeds 66 and 233 run only if predicted to finish),
bench 90 s, finish 10 s. These are estimates, not GPU measurements: the cells' log.jsonl
(epoch seconds, in cells.tar.gz) measure it; re-size from them (--epochs, --jobs).

$OUT gets at most 8 small files: session.log, steps.json, reduced-<device>.json,
tables.md, cells.tar.gz (each cell's metrics.json, log.jsonl, console.log) and
throughput-<device>.json. Checkpoints stay in the work folder (/dev/shm with room).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
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
TINY = "tiny-bert"  # the carry's encoder without ../shared: the package's tiny BERT
CARRY_LIMIT_MIB = 60
# full: the GPU machine (every loss in the registry); tiny: the CPU rehearsal, ~1 min
# (4 documents a split, one step a cell; slack: step limits x3 on a shared CPU).
SIZES = {
    "full": dict(device="cuda", losses=(), seeds=(1, 5, 42, 66, 233), epochs=8),
    "tiny": dict(device="cpu", losses=("ATL", "HingeABL"), seeds=(1,), epochs=1),
}
SIZES["full"] |= dict(max_docs=None, n_holdout=None, jobs=11, budget=540, slack=1)
# tiny holds out 4 documents: the packaged sample has 40 of dev_revised, not 500
SIZES["tiny"] |= dict(max_docs=4, n_holdout=4, jobs=2, budget=900, slack=3)
BENCH = {"full": ["base", "32"], "tiny": ["tiny", "4"]}  # --encoder-size, --docs
BUDGET = {"locate": 5, "install": 30, "check": 60, "bench": 90, "finish": 10}
# What comes back from $OUT (device tool): at most 8 files of 16 MiB, these names.
OUT_MAX_FILES, OUT_MAX_MIB, OUT_NAME = 8, 16, re.compile(r"^[A-Za-z0-9._-]+$")


class Session:
    "Step bookkeeping: console + $OUT/session.log, and $OUT/steps.json after each step."

    def __init__(self, out: Path, budget: float, slack: float = 1):
        self.out, self.t0, self.budget, self.slack = (
            out,
            time.monotonic(),
            budget,
            slack,
        )
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "session.log", "a", buffering=1)
        self.steps: list[dict] = []

    def say(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def step(self, name: str, ok: bool, t: float, detail: str = "") -> bool:
        secs = round(time.monotonic() - t, 1)
        self.steps.append(dict(step=name, ok=ok, seconds=secs, detail=detail))
        self.say(
            f"-- {name}: {'ok' if ok else 'FAILED'} in {secs} s (budget "
            f"{BUDGET.get(name, 'the rest')} s)" + (f": {detail}" if detail else "")
        )
        atomic_write(self.out / "steps.json", json.dumps(self.steps, indent=1))
        return ok

    def run(self, cmd: list, timeout: float, cwd: Path, env: dict) -> int:
        "Run `cmd` in a process group of its own, echoing its output; 124 on timeout."
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
            rc = 124
            self.say(f"timed out after {timeout:.0f} s")
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the group: every cell it started
            try:
                os.killpg(p.pid, sig)
                p.wait(10)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        reader.join(5)
        return rc


def atomic_write(path: Path, content) -> None:
    "Write a file through a temporary name, so a reader never sees half of it."
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content)
    os.replace(tmp, path)


EXTRA_ENV: dict = {}  # set by `install` when it had to install into a folder


def child_env(work: Path) -> dict:
    "Environment of every child: offline, no display, the work folder's cache and data."
    env = dict(os.environ) | EXTRA_ENV
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(work / "hf-home"),
        TOKENIZERS_PARALLELISM="false",
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
        HINGEABL_DATA=str(work / "shared" / "data" / "redocred"),
        HINGEABL_CACHE=str(work / "cache"),
    )
    return env


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def carried(carry: Path) -> dict:
    "What the carry holds: {'data': a description, 'encoder': its folder's name}."
    f = carry / "CARRY.json"
    return json.loads(f.read_text()) if f.is_file() else dict(data="?", encoder=ENCODER)


def step_locate(s: Session, work: Path, carry: Path, rehearsal: bool = True) -> bool:
    """Check the carried folder against its manifest; link it as work/shared so the
    library's own search (shared/data/redocred, shared/models/<name>) finds it. The
    tiny encoder's carry (built without ../shared) is for a rehearsal only."""
    t, manifest = time.monotonic(), carry / "MANIFEST.json"
    if not manifest.is_file():
        return s.step("locate", False, t, f"{manifest} missing: run `make gpu-carry`")
    bad = []
    for rel, (size, digest) in json.loads(manifest.read_text()).items():
        f = carry / rel
        why = (
            "missing"
            if not f.is_file()
            else (
                f"{f.stat().st_size} bytes, expected {size}"
                if f.stat().st_size != size
                else "sha256 differs"
                if sha256(f) != digest
                else ""
            )
        )
        bad += [f"{rel} ({why})"] if why else []
    if bad:
        return s.step("locate", False, t, "carried files damaged: " + ", ".join(bad))
    what = carried(carry)
    if what["encoder"] == TINY and not rehearsal:
        why = f"{carry} holds {what['data']} and {TINY}: a rehearsal's carry"
        return s.step("locate", False, t, why + "; build it beside ../shared")
    for link, target in [
        (work / "shared" / "data" / "redocred", carry / "redocred"),
        (work / "shared" / "models" / what["encoder"], carry / what["encoder"]),
    ]:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve(), target_is_directory=True)
    return s.step("locate", True, t, f"{what['data']} and {what['encoder']}")


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


def step_install(s: Session, work: Path, carry: Path, device: str) -> bool:
    """pip install this checkout (and any carried wheels) without an index, then check
    that `import hingeabl_nb` finds the installed copy."""
    t = time.monotonic()
    wheels = sorted((carry / "wheels").glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    pip += ["--no-build-isolation", "--disable-pip-version-check", *wheels, REPO]
    limit = 2 * BUDGET["install"] * s.slack
    rc = s.run(pip, limit, work, child_env(work))
    if rc not in (0, 124):  # e.g. a read-only environment: a folder on PYTHONPATH
        site = work / "site"
        rc = s.run(pip + ["--target", site], limit, work, child_env(work))
        path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        EXTRA_ENV.update(PYTHONPATH=path)
    if rc:
        return s.step("install", False, t, f"pip install exited {rc}")
    env = child_env(work) | dict(HINGEABL_CHECKOUT=str(REPO))
    env["HINGEABL_REQUIRE_CUDA"] = "1" if device == "cuda" else ""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=work, env=env, capture_output=True, text=True
    )
    s.say(probe.stdout.strip() + probe.stderr.strip()[-2000:])
    return s.step(
        "install", probe.returncode == 0, t, f"{len(wheels)} carried wheel(s)"
    )


def step_check(s: Session, work: Path, device: str) -> bool:
    """The CUDA tests of tests/test_gpu_session.py (`-k cuda`): skipped without CUDA,
    required (no skip) when the session runs on CUDA."""
    t, env = time.monotonic(), child_env(work)
    env["HINGEABL_REQUIRE_CUDA"] = "1" if device == "cuda" else ""
    test = REPO / "tests" / "test_gpu_session.py"
    cmd = [sys.executable, "-m", "pytest", test, "-k", "cuda", "-q", "-rs"]
    rc = s.run(cmd + ["-p", "no:cacheprovider"], BUDGET["check"] * s.slack, work, env)
    return s.step("check", rc == 0, t, "" if rc == 0 else f"pytest exited {rc}")


def grid_argv(a, work: Path, out: Path, deadline: float, encoder=ENCODER) -> list:
    "The `hingeabl-compare` arguments of the session's grid (`a`: its sizes)."
    argv = ["--preset", "reduced", "--seeds", *a.seeds, "--epochs", a.epochs]
    argv += ["--model", encoder] if encoder != ENCODER else []
    argv += ["--n-holdout", a.n_holdout] if a.n_holdout else []
    argv += ["--jobs", a.jobs, "--deadline", int(deadline), "--device", a.device]
    argv += ["--out", work / "grid", "--record", out / "reduced-{device}.json"]
    argv += ["--losses", *a.losses] if a.losses else []
    docs = ["--max-train-docs", a.max_docs, "--max-eval-docs", a.max_docs]
    return argv + (docs if a.max_docs else []) + ["--no-progress"]


def step_grid(s: Session, work: Path, a, deadline: float) -> bool:
    "The grid: `hingeabl-compare` with a deadline; then its tables and cells' files."
    t = time.monotonic()
    code = (
        "import sys; from hingeabl_nb.cli import compare_main; sys.exit(compare_main())"
    )
    enc = carried(Path(a.carry))["encoder"]
    cmd = [sys.executable, "-c", code, *grid_argv(a, work, s.out, deadline, enc)]
    rc = s.run(cmd, deadline + 60 * s.slack, work, child_env(work))
    grid = work / "grid"
    if (grid / "tables.md").exists():
        shutil.copyfile(grid / "tables.md", s.out / "tables.md")
    buf = io.BytesIO()  # each cell's small files, no checkpoints
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(grid.glob("*/*")):
            if f.name in ("metrics.json", "log.jsonl", "console.log"):
                tar.add(f, arcname=f"{f.parent.name}/{f.name}")
    atomic_write(s.out / "cells.tar.gz", buf.getvalue())
    done = len(list(grid.glob("*/metrics.json")))
    return s.step("grid", rc == 0, t, f"{done} cell(s) finished; exit {rc}")


def step_bench(s: Session, work: Path, a) -> bool:
    "bench/bench_train.py --baseline --record: ours vs official-style throughput."
    t = time.monotonic()
    size, docs = BENCH[a.size]
    cmd = [sys.executable, REPO / "bench" / "bench_train.py", "--device", a.device]
    cmd += ["--encoder-size", size, "--docs", docs, "--baseline"]
    cmd += ["--record", s.out / "throughput-{device}.json"]
    timeout = max(BUDGET["bench"] * s.slack, s.left() - BUDGET["finish"])
    rc = s.run(cmd, timeout, work, child_env(work))
    return s.step("bench", rc == 0, t, "" if rc == 0 else f"exited {rc}")


def run_session(a) -> int:
    out = Path(a.out or os.environ.get("OUT") or "gpu-out").resolve()
    s = Session(out, a.budget, a.slack)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    shm = Path("/dev/shm")  # checkpoints: ~360 MB a cell and epoch
    room = shutil.disk_usage(shm).free > 16e9 and os.access(shm, os.W_OK)
    work = Path(tempfile.mkdtemp(prefix="hingeabl-gpu-", dir=shm if room else None))
    s.say(
        f"gpu_session --size {a.size}: {a.device}, OUT {out}, work {work}, "
        f"{os.cpu_count()} cores, budget {a.budget} s"
    )
    failed = []
    if not (
        step_locate(s, work, Path(a.carry), rehearsal=a.size != "full")
        and step_install(s, work, Path(a.carry), a.device)
    ):
        failed.append(s.steps[-1]["step"])
    else:
        failed += [] if step_check(s, work, a.device) else ["check"]
        deadline = s.left() - BUDGET["bench"] - BUDGET["finish"]
        failed += [] if step_grid(s, work, a, deadline) else ["grid"]
        failed += [] if step_bench(s, work, a) else ["bench"]
    s.say(f"$OUT holds: {', '.join(sorted(p.name for p in out.iterdir()))}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    s.say(
        f"gpu_session: FAILED step(s): {', '.join(failed)}"
        if failed
        else "gpu_session: every step passed"
    )
    return 1 if failed else 0


# ---- here: the carried folder and the rehearsal --------------------------------------


def carry_sources(shared: Path, tmp: Path) -> tuple[dict, dict]:
    """{carried name: source file}, and what they are: Re-DocRED dev/test and MiniLM
    from `shared` when there, else the packaged sample (its 40 dev_revised documents as
    dev_revised.json) and the package's tiny BERT saved into `tmp`."""
    from hingeabl_nb.data import sample_dir
    from hingeabl_nb.datafiles import assets_dir

    data, sample = shared / "data" / "redocred", sample_dir()
    own = {  # the package's copies of the small files (the same bytes as ../shared's)
        "rel2id.json": assets_dir() / "rel2id.json",
        "rel_info.json": assets_dir() / "rel_info.json",
        "LICENSE-Re-DocRED": sample / "LICENSE-Re-DocRED",
    }
    if all((data / n).is_file() for n in DATA_FILES[:2]):
        what = {"data": f"Re-DocRED dev/test ({data})"}
        src = {n: data / n if (data / n).is_file() else own[n] for n in DATA_FILES}
    else:
        what = {"data": "the packaged Re-DocRED sample"}
        docs = [
            json.loads((sample / f"{k}.json").read_text()) for k in ("train", "dev")
        ]
        (tmp / "dev_revised.json").write_text(json.dumps(docs[0] + docs[1]))
        src = {"dev_revised.json": tmp / "dev_revised.json"}
        src |= {"test_revised.json": sample / "test.json"} | own
    src = {f"redocred/{n}": p for n, p in src.items()}
    enc = shared / "models" / ENCODER
    if not (enc / "config.json").is_file():
        enc = save_tiny_encoder(tmp / TINY)
    what["encoder"] = enc.name
    src |= {f"{enc.name}/{p.name}": p for p in sorted(enc.iterdir()) if p.is_file()}
    return src, what


def save_tiny_encoder(dest: Path) -> Path:
    "The package's tiny BERT (seeded) and its tokenizer, saved as an encoder folder."
    from transformers.utils import logging

    from hingeabl_nb.data import tiny_tokenizer
    from hingeabl_nb.encoders import tiny_bert

    logging.disable_progress_bar()  # a 2 MB file
    tok = tiny_tokenizer()
    ids = dict(cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id)
    tiny_bert(vocab_size=len(tok), **ids).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def build_carry(shared: Path, dest: Path, wheels: Path, limit_mib: float) -> dict:
    """Copy the data, the encoder and any wheels into `dest` with a manifest; refuse
    (SystemExit) when the total is over `limit_mib`. Without Re-DocRED or MiniLM in
    `shared`, the packaged sample and the tiny encoder stand in (rehearsal only)."""
    with tempfile.TemporaryDirectory(prefix="hingeabl-carry-") as made:
        src, what = carry_sources(shared, Path(made))
        src |= {f"wheels/{p.name}": p for p in sorted(wheels.glob("*.whl"))}
        manifest = copy_carry(src, dest, limit_mib, what)
    print(f"{dest}: {what['data']}, encoder {what['encoder']}")
    return manifest


def copy_carry(src: dict, dest: Path, limit_mib: float, what: dict) -> dict:
    "Copy {name: file} into `dest` (atomically) with MANIFEST.json and CARRY.json."
    missing = [str(p) for p in src.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"gpu carry: missing {', '.join(missing)}")
    total = sum(p.stat().st_size for p in src.values()) / 2**20
    if total > limit_mib:
        big = sorted(src, key=lambda k: -src[k].stat().st_size)[:3]
        sizes = ", ".join(f"{k} {src[k].stat().st_size / 2**20:.1f} MiB" for k in big)
        raise SystemExit(
            f"gpu carry: {total:.1f} MiB is over the {limit_mib} MiB "
            f"limit (largest: {sizes}); nothing written"
        )
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = {}
    for rel, p in src.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, tmp / rel)  # contents only: the sources are read-only
        manifest[rel] = [p.stat().st_size, sha256(tmp / rel)]
    (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    (tmp / "CARRY.json").write_text(json.dumps(what, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    print(f"{dest}: {len(manifest)} files, {total:.1f} MiB (limit {limit_mib} MiB)")
    return manifest


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_image_packages() -> set[str]:
    "Normalised names of the GPU image's distributions (tools/gpu_image_packages.txt)."
    lines = (REPO / "tools" / "gpu_image_packages.txt").read_text().splitlines()
    return {norm(x) for x in lines if x.strip() and not x.startswith("#")}


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
        if name not in names:
            names.add(name)
            for r in map(Requirement, here[name].requires or []):
                if not r.marker or r.marker.evaluate({"extra": ""}):
                    todo += [norm(r.name)] if norm(r.name) in set(here) - names else []
    dest.mkdir(parents=True)
    taken = set()
    for name in sorted(names):
        base = Path(here[name].locate_file(""))
        for top in sorted({Path(f).parts[0] for f in here[name].files or ()}):
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
    t0, tmp = time.monotonic(), Path(tempfile.mkdtemp(prefix="hingeabl-rehearsal-"))
    if any((d / "shared").exists() for d in tmp.parents):
        raise SystemExit(f"gpu rehearse: a shared/ folder above {tmp} would be found")
    repo, out, venv = tmp / "repo", tmp / "out", tmp / "venv"
    repo.mkdir()
    git = dict(cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], **git).stdout
    if dirty.strip():
        print(
            "gpu rehearse: uncommitted changes are NOT rehearsed (HEAD is):\n" + dirty
        )
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True)
    if archive.returncode:
        raise SystemExit(f"gpu rehearse: git archive HEAD failed: {archive.stderr!r}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # the "data" filter exists from Python 3.11.4 / 3.10.12; HEAD is our own archive
        tar.extractall(
            repo, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {})
        )
    shutil.copytree(CARRY, repo / CARRY.name)
    names, added = image_view(tmp / "image-site", gpu_image_packages())
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    vpy = venv / "bin" / "python3"
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    vsite = subprocess.run([vpy, "-c", where], capture_output=True, text=True).stdout
    (Path(vsite.strip()) / "gpu_image.pth").write_text(str(tmp / "image-site") + "\n")
    print(
        f"gpu rehearse: {tmp}; the venv sees {len(names)} distributions the GPU image "
        f"lists and {len(added)} they require here ({', '.join(added)})"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "HINGEABL_CACHE")
    }
    path = [p for p in env.get("PATH", "").split(":") if not p.startswith(sys.prefix)]
    env.update(PATH=":".join([str(venv / "bin"), *path]), OUT=str(out))
    cmd = ["python3", "tools/gpu_session.py", "run", "--size", "tiny"]
    print("gpu rehearse: $ " + shlex.join(cmd) + f"  (in {repo}, OUT={out})")
    rc = subprocess.run(cmd, cwd=repo, env=env).returncode
    problems = out_problems(out) + venv_problems(vpy, env, set(added))
    for p in problems:
        print("gpu rehearse: PROBLEM:", p)
    print(
        f"gpu rehearse: session exited {rc}; {len(problems)} problem(s); "
        f"{time.monotonic() - t0:.0f} s in all"
    )
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if rc or problems else 0


def out_problems(out: Path) -> list[str]:
    """What would not come back from $OUT or is missing there (device tool's rules:
    8 files, 16 MiB each, two folders deep, plain names), or an unfinished grid."""
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
        found = [p for p in files if p.name.startswith(prefix) and p.suffix == ".json"]
        if not found:
            probs.append(f"no {prefix}<device>.json under OUT")
        elif prefix == "reduced-" and json.loads(found[0].read_text())["incomplete"]:
            probs.append(f"{found[0].name}: the grid did not finish")
    return probs


def venv_problems(vpy: Path, env: dict, added: set) -> list[str]:
    "Distributions the venv sees that neither the image lists nor its packages need."
    code = "import importlib.metadata as m, json; "
    code += "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    seen = subprocess.run([vpy, "-c", code], env=env, capture_output=True, text=True)
    wheels = {norm(p.name.split("-")[0]) for p in (CARRY / "wheels").glob("*.whl")}
    extra = {norm(n) for n in json.loads(seen.stdout or "[]")} - gpu_image_packages()
    extra = sorted(extra - {"hingeabl-nb"} - added - wheels)
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
    r.add_argument("--device", choices=["cpu", "cuda"])
    for k in ("epochs", "max_docs", "jobs", "budget"):
        r.add_argument("--" + k.replace("_", "-"), type=int)
    r.add_argument("--losses", nargs="+", help="default: every loss in the registry")
    r.add_argument("--seeds", nargs="+", type=int)
    c = sub.add_parser("carry", help="build .gpu-carry/ from ../shared and .whl/")
    c.add_argument("--shared", default=os.environ.get("HINGEABL_SHARED"))
    c.add_argument("--dest", default=str(CARRY), help="the carried folder to write")
    c.add_argument("--limit-mib", type=float, default=CARRY_LIMIT_MIB)
    h = sub.add_parser("rehearse", help="the session on the CPU (--size tiny)")
    h.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = list(sys.argv[1:] if argv is None else argv)
    a = p.parse_args(args if args and not args[0].startswith("-") else ["run", *args])
    if a.cmd == "carry":
        shared = Path(a.shared) if a.shared else REPO.parent / "shared"
        build_carry(shared, Path(a.dest), REPO / ".whl", a.limit_mib)
        return 0
    if a.cmd == "rehearse":
        return rehearse(a)
    for k, v in SIZES[a.size].items():  # what was not given: the size's
        setattr(a, k, v if getattr(a, k, None) is None else getattr(a, k))
    return run_session(a)


if __name__ == "__main__":
    sys.exit(main())

"""Runs in a fresh venv with only `pip install .`.

Checks that the library works without nbdev or Jupyter.
"""

import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

for absent in ("nbdev", "jupyter_core", "execnb", "ipykernel"):
    assert importlib.util.find_spec(absent) is None, (
        f"{absent} should not be installed here"
    )

# Every module must import without nbdev or Jupyter installed.
MODULES = (
    "atl",
    "cli",
    "data",
    "hinge",
    "lab",
    "losses",
    "metrics",
    "model",
    "records",
    "reproduce",
    "sat",
    "train",
)
mods = {name: importlib.import_module(f"hingeabl_nb.{name}") for name in MODULES}
data, lab, records = mods["data"], mods["lab"], mods["records"]
LOSSES, predict = mods["losses"].LOSSES, mods["losses"].predict

logits = torch.randn(6, 97, requires_grad=True)
labels = torch.zeros(6, 97)
labels[:3, 0] = 1
labels[3:, 5] = 1
for name, fn in LOSSES.items():
    loss = fn(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all(), name
    logits.grad = None
assert predict(logits).shape == logits.shape
docs = data.load_docs(data.sample_dir() / "dev.json")
assert docs and data.tiny_tokenizer() is not None
cfg = json.loads(
    subprocess.run(
        [
            "hingeabl-train",
            "--preset",
            "paper",
            "--loss",
            "HingeABL",
            "--seed",
            "1",
            "--out",
            "x",
            "--print-config",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
assert cfg, cfg
# Every console script is this venv's and its entry point answers --help (in-process:
# a subprocess each would import torch again; the jobs below run the scripts).
eps = {
    ep.name: ep
    for ep in importlib.metadata.entry_points(group="console_scripts")
    if ep.name.startswith("hingeabl-")
}
assert {"hingeabl-lab", "hingeabl-compare", "hingeabl-download"} <= set(eps), eps
for name, ep in eps.items():
    where = shutil.which(name)
    assert where and Path(where).parent == Path(sys.executable).parent, (name, where)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            rc = ep.load()(["--help"])
        except SystemExit as e:
            rc = e.code
    assert rc in (0, None) and "usage:" in out.getvalue(), (name, rc)

# The console scripts must exit with status 0 after a real (tiny) job,
# not print their result dict.
tmp = Path(tempfile.mkdtemp())
run = lambda *argv: subprocess.run(list(argv), capture_output=True, text=True)
r = run(
    "hingeabl-train",
    "--preset",
    "smoke",
    "--loss",
    "HingeABL",
    "--seed",
    "1",
    "--epochs",
    "1",
    "--max-train-docs",
    "4",
    "--max-eval-docs",
    "2",
    "--threads",
    "1",
    "--no-progress",
    "--out",
    str(tmp / "train"),
)
assert r.returncode == 0 and (tmp / "train" / "metrics.json").is_file(), (
    r.returncode,
    r.stderr[-2000:],
)
tiny = lab.save_tiny_encoder(tmp / "tiny")
r = run(
    "hingeabl-lab",
    "--model",
    str(tiny),
    "--data-dir",
    str(data.sample_dir()),
    "--out",
    str(tmp / "lab"),
    "--losses",
    "ATL",
    "--seeds",
    "0",
    "--epochs",
    "1",
    "--cache-dir",
    str(tmp / "cache"),
    "--threads",
    "1",
    "--no-progress",
)
assert (
    r.returncode == 0
    and records.load_record(tmp / "lab" / "grid.json")["preset"] == "lab"
), (r.returncode, r.stderr[-2000:])
r = run(
    "hingeabl-train",
    "--preset",
    "smoke",
    "--loss",
    "NoSuchLoss",
    "--out",
    str(tmp / "bad"),
)
assert r.returncode != 0 and "NoSuchLoss" in r.stderr and "Traceback" not in r.stderr, (
    r.stderr[-2000:]
)
print(
    f"installed package OK: {len(LOSSES)} losses, {len(docs)} sample dev docs, "
    "CLIs run and exit cleanly"
)

"""Every console script, walked with a table of bad inputs.

Each row is one command line that must be refused: exit status 2, one line on stderr
(no usage block, no traceback) that starts with `hingeabl-<tool>: error:`, the expected
words, only flags the tool has (no option of a library function), a refusal within
`BOUND` seconds (before any model is read or document encoded), and no `--out` / `DEST`
folder created when it did not exist. The rows run in-process, each
timed on its own; the fixtures they need are built once.
"""

import json
import os
import re
import shutil
import time

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import cli, data, datafiles, lab, runs
from hingeabl_nb import train as T

torch.set_num_threads(1)
BOUND = 5.0  # seconds: a bad input is refused within this, whatever the input
SAMPLE = data.sample_dir()
SHARED = data.locate_redocred()
MINILM = runs.resolve_encoder("minilm-l6-h384-uncased")
HEX = "0" * 64
MAINS = {
    "train": (cli.train_main, cli.train_parser),
    "lab": (cli.lab_main, cli.lab_parser),
    "compare": (cli.compare_main, cli.compare_parser),
    "toy": (cli.toy_main, cli.toy_parser),
    "download": (cli.download_main, cli.download_parser),
    "grade": (cli.grade_main, None),
}


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    "The files and folders the rows name: {name: path}."
    t = tmp_path_factory.mktemp("bad")
    (t / "file").write_text("not a folder")
    (t / "empty").mkdir()
    (t / "config-only").mkdir()
    (t / "config-only" / "config.json").write_text("{}")
    docs = json.loads((SAMPLE / "train.json").read_text())
    dup = t / "dup"  # two training documents with one title
    shutil.copytree(SAMPLE, dup)
    (dup / "train.json").write_text(json.dumps([docs[0], *docs[1:], docs[0]]))
    for name, edit in (  # a relation the vocabulary lacks; a document without labels
        ("unknown-rel", lambda d: d["labels"][0].update(r="P99999")),
        ("no-labels", lambda d: d.pop("labels")),
    ):
        shutil.copytree(SAMPLE, t / name)
        bad = json.loads((SAMPLE / "train.json").read_text())
        edit(bad[1])
        (t / name / "train.json").write_text(json.dumps(bad))
    dev_folder = t / "dev-folder"  # dev.json is a folder
    shutil.copytree(SAMPLE, dev_folder)
    (dev_folder / "dev.json").unlink()
    (dev_folder / "dev.json").mkdir()
    split = t / "split-dev"  # no train file: the lab holds out dev documents
    split.mkdir()
    shutil.copy(SAMPLE / "dev.json", split / "dev_revised.json")
    shutil.copy(SAMPLE / "test.json", split / "test_revised.json")
    grid = t / "grid-cut-spec"  # a grid whose spec.json was cut short
    grid.mkdir()
    (grid / "spec.json").write_text('{"preset": "smo')
    local = t / "local"  # a same-size corrupted copy of dev_revised.json
    local.mkdir()
    size = datafiles.REDOCRED_FILES["dev"][2]
    (local / "dev_revised.json").write_bytes(b"x" * size)
    tiny = lab.save_tiny_encoder(t / "tiny")
    smoke = T.resolve_config(  # the fields in the order the command line gives them
        "smoke", max_train_docs=6, max_eval_docs=3, epochs=2, seed=3
    )
    for name in ("flipped", "no-best"):  # runs cut after their first epoch
        T.run_training(smoke, t / name, stop_after=1)
    last = t / "flipped" / "checkpoint" / "last.pt"
    b = bytearray(last.read_bytes())
    b[len(b) // 2] ^= 0xFF
    last.write_bytes(b)
    for best in (t / "no-best" / "checkpoint").glob("best-*.pt"):
        best.unlink()
    return dict(
        tmp=t,
        file=t / "file",
        empty=t / "empty",
        config_only=t / "config-only",
        unknown_rel=t / "unknown-rel",
        no_labels=t / "no-labels",
        dup=dup,
        dev_folder=dev_folder,
        split=split,
        grid_cut_spec=grid,
        local=local,
        tiny=tiny,
        sample=SAMPLE,
        new=t / "never-created",
    )


SMOKE_RUN = ["--epochs", "2", "--max-train-docs", "6", "--max-eval-docs", "3"]
LAB = ["--model", "{tiny}", "--data-dir", "{sample}", "--out", "{new}", "--seeds", "0"]
LAB += ["--losses", "ATL", "--no-progress", "--cache-dir", "{tmp}/cache"]
COMPARE = ["--preset", "smoke", "--losses", "ATL", "--seeds", "1", "--out", "{new}"]
TRAIN = ["--preset", "smoke", "--out", "{new}"]

ROWS = [  # (tool, argv, words the message must hold, environment)
    ("train", [*TRAIN, "--loss-option", "margin=abc"], "option margin='abc' must be"),
    ("train", [*TRAIN, "--epochs", "0"], "--epochs must be >= 1, got 0"),
    ("train", [*TRAIN, "--max-train-docs", "-2"], "--max-train-docs must be >= 1"),
    ("train", [*TRAIN, "--lr", "inf"], "--lr inf must be a finite number > 0"),
    ("train", [*TRAIN, "--head-lr", "nan"], "--head-lr nan must be a finite number"),
    ("train", [*TRAIN, "--warmup-ratio", "1.5"], "--warmup-ratio 1.5 must be a"),
    ("train", [*TRAIN, "--neg-sample-rate", "0"], "--neg-sample-rate 0.0 must be"),
    ("train", [*TRAIN, "--seed", str(2**64)], "--seed 18446744073709551616 must be in"),
    ("train", [*TRAIN, "--seed", "-1"], "--seed -1 must be in 0..4294967295"),
    ("train", [*TRAIN, "--emb-size", "60"], "emb_size a multiple of block_size"),
    ("train", [*TRAIN, "--block-size", "0"], "--block-size must be >= 1, got 0"),
    ("train", [*TRAIN, "--threads", "-1"], "--threads must be >= 0, got -1"),
    ("train", [*TRAIN, "--device", "tpu"], "allowed: auto, cpu, cuda"),
    ("train", [*TRAIN, "--batching", "sorted"], "allowed: random, bucket"),
    ("train", [*TRAIN, "--loss", "Focal"], "unknown loss 'Focal'"),
    ("train", ["--preset", "lab", "--out", "{new}"], "its own command, hingeabl-lab"),
    ("train", ["--preset", "huge", "--out", "{new}"], "unknown preset 'huge'"),
    ("train", [*TRAIN, "--data-dir", "{file}"], "--data-dir {file} is a file, not"),
    ("train", [*TRAIN, "--data-dir", "{dev_folder}"], "dev.json is a folder, not"),
    ("train", [*TRAIN, "--data-dir", "{tmp}/none"], "train.json not found in"),
    ("train", [*TRAIN, "--data-dir", "{dup}"], "share the title"),
    ("train", [*TRAIN, "--data-dir", "{unknown_rel}"], "'P99999' is not a known"),
    ("train", [*TRAIN, "--data-dir", "{no_labels}"], "missing field 'labels'"),
    ("train", [*TRAIN, "--model", "{empty}"], "the encoder folder has no config.json"),
    ("train", [*TRAIN, "--model", "{config_only}"], "no weight file"),
    ("train", [*TRAIN, "--model", "{tmp}/none"], "not found: not a folder"),
    ("train", ["--preset", "smoke", "--out", "{file}"], "{file} is a file, not a"),
    ("train", ["--preset", "smoke", "--out", ""], "run folder is empty"),
    ("train", [*TRAIN, "--out", "{file}/run"], "{file} is a file"),
    ("train", [*TRAIN, "--max-train-docs", "3", "--drop-last"], "0 optimiser steps"),
    ("train", [*TRAIN, "--max-train-docs", "4"], "shared by 2 processes", "world2"),
    ("train", ["--out", "{tmp}/flipped", *SMOKE_RUN, "--seed", "3"], "CRC-32 check"),
    ("train", ["--out", "{tmp}/no-best", *SMOKE_RUN, "--seed", "3"], "is missing"),
    ("lab", [*LAB, "--emb-size", "0"], "--emb-size must be >= 1, got 0"),
    ("lab", [*LAB, "--block-size", "0"], "--block-size must be >= 1, got 0"),
    ("lab", [*LAB, "--emb-size", "60"], "not a multiple of block_size=8"),
    ("lab", [*LAB, "--threads", "-1"], "--threads must be >= 0, got -1"),
    ("lab", [*LAB, "--n-holdout", "0"], "--n-holdout must be >= 1, got 0"),
    ("lab", [*LAB, "--data-dir", "{split}", "--n-holdout", "8"], "hold out 1 to 7"),
    ("lab", [*LAB, "--lr", "inf"], "--lr inf must be a finite number > 0"),
    ("lab", [*LAB, "--seeds", str(2**64)], "seed 18446744073709551616 must be in"),
    ("lab", [*LAB, "--cache-dir", "{file}"], "--cache-dir {file}"),
    ("lab", [*LAB, "--record", "{tmp}"], "--record {tmp} is a folder"),
    ("lab", [*LAB, "--deadline", "-1"], "--deadline must be a finite number >= 0"),
    ("lab", [*LAB, "--deadline", "nan"], "--deadline must be a finite number >= 0"),
    ("lab", [*LAB, "--losses", "Focal"], "unknown loss 'Focal'"),
    ("lab", [*LAB, "--model", "{empty}"], "not an encoder folder"),
    ("lab", [*LAB, "--model", "{config_only}"], "no weight file"),
    ("lab", [*LAB, "--data-dir", "{file}"], "--data-dir {file} is a file, not a"),
    ("lab", [*LAB, "--data-dir", "{dev_folder}"], "dev.json is a folder, not a file"),
    ("lab", [*LAB, "--data-dir", "{dup}"], "share the title"),
    ("lab", [*LAB, "--encoder-layers", "9"], "--encoder-layers: num_layers=9"),
    ("lab", [*LAB, "--out", "{file}"], "{file} is a file, not a folder"),
    ("compare", [*COMPARE, "--jobs", "0"], "--jobs must be >= 1, got 0"),
    ("compare", [*COMPARE, "--seeds", "1", "1"], "duplicate seed in the grid: 1"),
    ("compare", ["--preset", "lab", *COMPARE[2:]], "its own command, hingeabl-lab"),
    ("compare", [*COMPARE, "--deadline", "nan"], "--deadline must be a finite"),
    ("compare", [*COMPARE, "--record", "{tmp}"], "--record {tmp} is a folder"),
    ("compare", [*COMPARE, "--data-dir", "{dup}"], "share the title"),
    ("compare", [*COMPARE, "--loss-option", "margin=2"], "has no option(s)"),
    ("compare", [*COMPARE, "--out", "{grid_cut_spec}"], "spec.json is unreadable"),
    ("toy", ["--steps", "0", "--out", "{new}"], "--steps must be >= 1, got 0"),
    ("toy", ["--losses", "Focal", "--out", "{new}"], "unknown loss 'Focal'"),
    ("toy", ["--seed", "-1", "--out", "{new}"], "--seed -1 must be in"),
    ("toy", ["--out", "{file}"], "{file} is a file, not a folder"),
    ("download", ["{file}"], "DEST {file} is a file, not a folder"),
    ("download", ["{new}", "--splits", "dev", "--sha256", "dev=abc"], "not a SHA-256"),
    ("download", ["{new}", "--splits", "dev", "--sha256", f"train={HEX}"], "not among"),
    ("download", ["{new}", "--sha256", "nohash"], "--sha256 takes SPLIT=HEX"),
    (
        "download",
        ["{local}", "--splits", "dev"],
        "moved to dev_revised.json.unverified",
    ),
    ("grade", ["{new}", "--timeout", "0"], "--timeout 0: must be at least 1"),
]
if SHARED and MINILM != "minilm-l6-h384-uncased":  # late checks on the real files
    REAL = ["--model", MINILM, "--data-dir", str(SHARED), "--out", "{new}"]
    REAL += ["--losses", "ATL", "--seeds", "0", "--no-progress"]
    ROWS += [
        ("lab", [*REAL, "--n-holdout", "500"], "hold out 1 to 499 of the 500"),
        ("lab", [*REAL, "--cache-dir", "{file}"], "--cache-dir {file}"),
        ("lab", [*REAL, "--record", "{tmp}"], "--record {tmp} is a folder"),
        ("lab", [*REAL, "--encoder-layers", "7"], "num_layers=7"),
    ]


def flags_of(tool: str) -> set:
    "Every option string the tool's parser knows."
    parser = MAINS[tool][1]
    if parser is None:
        from hingeabl_nb.grade import grade_parser as parser
    return {s for a in parser()._actions for s in a.option_strings}


def offline(url, headers, timeout=60):
    raise OSError(101, "Network is unreachable")


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input_is_refused_in_one_line(row, place, capsys, monkeypatch):
    tool, argv, want, *env = row
    fill = lambda s: s.format(**{k: str(v) for k, v in place.items()})
    argv, want = [fill(a) for a in argv], fill(want)
    if env == ["world2"]:  # a run of two processes: the rank-0 process checks it
        monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(datafiles, "urllib_opener", offline)
    main = MAINS[tool][0]
    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    took = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code}, stderr {err!r}"
    assert "Traceback" not in err and lines, err
    assert lines[-1].startswith(f"hingeabl-{tool}: error: "), err
    assert len(lines) == 1 and want in lines[0], (want, err)
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", lines[-1]))
    unknown = named - flags_of(tool)
    assert not unknown, f"the message suggests flags {tool} does not have: {unknown}"
    api = re.findall(r"\b[a-z_]+=(?:False|True)\b", lines[-1])
    assert not api, f"the message suggests options of a function, not flags: {api}"
    assert took < BOUND, f"refused after {took:.1f} s"
    assert not place["new"].exists(), "a refused command created its output folder"


def test_the_table_covers_every_tool_and_the_issue_cases():
    assert {r[0] for r in ROWS} == set(MAINS)
    assert len(ROWS) >= 60


def test_no_traceback_at_the_console_entry_point(tmp_path):
    "A bug (not a bad input) is one line too, naming its type and --debug."
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hingeabl_nb import cli\n"
        "def bug(argv):\n"
        "    return {}['no such key']\n"
        "sys.exit(cli.run_tool('toy', bug, []))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    assert "error: KeyError: 'no such key' (unexpected: rerun with --debug" in r.stderr


def test_an_interrupt_is_one_line_and_status_130(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert cli.run_tool("lab", interrupted, []) == 130
    assert capsys.readouterr().err == "hingeabl-lab: interrupted\n"

"""The run-folder contract, tried the way results get lost or go silently wrong.

A rerun keeps the earlier result unless `--overwrite` (lab, grid, toy); two runs on one
folder (the second is refused, the first's result is complete); a full disk and a kill
during the final write (the earlier result survives, the leftover is removed by the next
run); a kill during the first checkpoint; flipped checkpoint bytes; changed data (a cell
of other data is refused by name, a table never mixes two test sets). The tiny encoder
and the embedded sample keep every test on a CPU in seconds.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import cli, data, lab, runs
from hingeabl_nb import records as G
from hingeabl_nb import train as T

torch.set_num_threads(1)
SAMPLE = data.sample_dir()
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return lab.save_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


def lab_argv(tiny, out, cache, seeds=("0",), losses=("ATL",), epochs="1"):
    "A small hingeabl-lab command on the sample (CPU, seconds)."
    return [
        *("--model", str(tiny), "--data-dir", str(SAMPLE), "--out", str(out)),
        *("--cache-dir", str(cache), "--epochs", epochs, "--no-progress"),
        *("--threads", "1", "--emb-size", "32", "--batch-pairs", "256"),
        *("--losses", *losses, "--seeds", *seeds),
    ]


def run_main(main, argv, capsys):
    "Exit status, stdout and stderr of a console script run in-process."
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def mtimes(folder: Path) -> dict:
    "Every file under a folder with its modification time (ns)."
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def wait_for(test, proc, what: str, limit: float = 120):
    "Poll until `test()` holds; fail if the process ends first or time runs out."
    t0 = time.time()
    while not test():
        assert proc.poll() is None, f"the process ended before {what}"
        assert time.time() - t0 < limit, f"no {what} after {limit} s"
        time.sleep(0.05)


def kill_mid_write(
    patch: str, main: str, argv: list, folder: Path, prefix: str = "."
) -> None:
    """Run `cli.<main>(argv)` in a process whose writes stall as `patch` (code that
    replaces a writer) makes them; SIGKILL it once a temporary file whose name starts
    with `prefix` is in `folder` (another file's passing temporary is not the stall)."""
    code = f"import sys, time\n{patch}\nfrom hingeabl_nb import cli\n"
    code += f"sys.exit(cli.{main}(sys.argv[1:]))\n"
    writer = subprocess.Popen([sys.executable, "-c", code, *argv], env=ENV)
    try:
        stalled = lambda: [p for p in leftovers(folder) if p.startswith(prefix)]
        wait_for(stalled, writer, "a temporary file")
    finally:
        writer.send_signal(signal.SIGKILL)  # no except, no finally runs
        writer.wait()


# ---- a rerun keeps the earlier result unless --overwrite -----------------------------


def test_lab_rerun_keeps_the_result_unless_overwrite(tiny, tmp_path, capsys):
    out, argv = tmp_path / "lab", lab_argv(tiny, tmp_path / "lab", tmp_path / "c")
    assert run_main(cli.lab_main, argv, capsys)[0] == 0
    grid, before = (out / "grid.json").read_bytes(), mtimes(out)
    code, stdout, _ = run_main(cli.lab_main, argv, capsys)
    assert code == 0 and "already holds this grid's result; nothing trained" in stdout
    assert (out / "grid.json").read_bytes() == grid and mtimes(out) == before
    code, _, err = run_main(cli.lab_main, [*argv, "--epochs", "2"], capsys)
    assert code == 2 and "cell(s) hold results of it" in err and "--overwrite" in err
    assert (out / "grid.json").read_bytes() == grid and mtimes(out) == before
    code, *_ = run_main(cli.lab_main, [*argv, "--epochs", "2", "--overwrite"], capsys)
    rec = G.load_record(out / "grid.json")
    assert code == 0 and rec["details"]["config"]["epochs"] == 2
    assert "--overwrite" not in rec["command"]  # the recorded command reruns the grid
    assert len(rec["runs"][0]["history"]) == 2


def test_grid_rerun_keeps_the_result_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["--preset", "smoke", "--losses", "ATL", "--seeds", "1", "--out", str(out)]
    argv += ["--epochs", "1", "--max-train-docs", "4", "--max-eval-docs", "2"]
    assert run_main(cli.compare_main, argv, capsys)[0] == 0
    before = mtimes(out)
    assert {p.name for p in before} >= {"grid.json", "tables.md", "metrics.json"}
    assert run_main(cli.compare_main, argv, capsys)[0] == 0
    assert mtimes(out) == before  # grid.json, tables.md and the cell: all kept
    assert run_main(cli.compare_main, [*argv, "--overwrite"], capsys)[0] == 0
    after = mtimes(out)
    for name in ("grid.json", "metrics.json"):  # retrained and rewritten
        (p,) = [p for p in after if p.name == name]
        assert after[p] > before[p], name


def test_toy_rerun_keeps_the_result_unless_overwrite(tmp_path, capsys):
    argv = ["--losses", "ATL", "--steps", "20", "--out", str(tmp_path), "--no-progress"]
    assert run_main(cli.toy_main, argv, capsys)[0] == 0
    before = mtimes(tmp_path)
    code, stdout, _ = run_main(cli.toy_main, argv, capsys)
    assert code == 0 and "kept" in stdout and mtimes(tmp_path) == before
    code, _, err = run_main(cli.toy_main, [*argv, "--seed", "1"], capsys)
    assert code == 2 and "other inputs (config seed (0 -> 1))" in err
    assert run_main(cli.toy_main, [*argv, "--seed", "1", "--overwrite"], capsys)[0] == 0
    assert json.loads((tmp_path / "toy.json").read_text())["setting"]["seed"] == 1


# ---- two runs on one folder ----------------------------------------------------------


def test_a_second_lab_run_on_a_held_folder_is_refused_and_the_first_completes(
    tiny, tmp_path, capsys
):
    out = tmp_path / "lab"
    argv = lab_argv(
        tiny, out, tmp_path / "c", ("0", "1", "2"), ("ATL", "SAT", "HingeABL"), "3"
    )
    code = (
        "import sys\nfrom hingeabl_nb import cli\nsys.exit(cli.lab_main(sys.argv[1:]))"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=ENV, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: (out / ".lock.owner").exists(), first, "lock")
        code, _, err = run_main(cli.lab_main, argv, capsys)
        assert code == 2 and f"is in use by another run (pid {first.pid} on" in err
    finally:
        assert first.wait(timeout=600) == 0, first.stderr.read()
    rec = G.load_record(out / "grid.json")  # the first run's result, whole
    assert len(rec["runs"]) == 9 and rec["incomplete"] == []
    assert not (out / ".lock.owner").exists() and leftovers(out) == []


# ---- a full disk, a kill -------------------------------------------------------------


@pytest.fixture
def lab_grid(tiny, tmp_path, capsys):
    "A finished one-cell lab grid: (folder, the command that extends it, grid.json)."
    out, cache = tmp_path / "lab", tmp_path / "c"
    assert run_main(cli.lab_main, lab_argv(tiny, out, cache), capsys)[0] == 0
    return out, lab_argv(tiny, out, cache, ("0", "1")), (out / "grid.json").read_bytes()


def test_a_full_disk_during_the_final_write_keeps_the_earlier_grid(
    lab_grid, monkeypatch, capsys
):
    out, extend, grid = lab_grid
    real = Path.write_text

    def disk_full(self, text, *a, **k):  # grid.json: half of it, then the disk is full
        if self.name.startswith(".grid.json."):
            real(self, text[: len(text) // 2], *a, **k)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", disk_full)
    code, _, err = run_main(cli.lab_main, extend, capsys)
    last = err.strip().splitlines()[-1]  # after the grid's progress bar
    assert code == 2 and last.startswith("hingeabl-lab: error: ") and "Trace" not in err
    assert f"No space left on device {out / 'grid.json'}; free disk space" in last
    assert (out / "grid.json").read_bytes() == grid  # complete, and still the old one
    assert leftovers(out) == []
    monkeypatch.setattr(Path, "write_text", real)
    cell = out / "ATL-s1" / "metrics.json"
    trained = cell.stat().st_mtime_ns  # the new cell was finished before the failure
    assert run_main(cli.lab_main, extend, capsys)[0] == 0
    assert len(G.load_record(out / "grid.json")["runs"]) == 2
    assert cell.stat().st_mtime_ns == trained  # reused, not trained again


def test_a_kill_during_the_final_write_keeps_the_earlier_grid(lab_grid, capsys):
    out, extend, grid = lab_grid
    stall = (  # the grid's temporary file is written: stall before its rename
        "from pathlib import Path\n"
        "from hingeabl_nb import runfolder\n"
        "real = runfolder.fsync_path\n"
        "def slow(path):\n"
        "    if Path(path).name.startswith('.grid.json.'):\n"
        "        time.sleep(300)\n"
        "    real(path)\n"
        "runfolder.fsync_path = slow"
    )
    kill_mid_write(stall, "lab_main", extend, out, prefix=".grid.json.")
    assert (out / "grid.json").read_bytes() == grid  # the earlier result, intact
    assert len(leftovers(out)) == 1 and (out / ".lock.owner").exists()
    code, _, err = run_main(cli.lab_main, extend, capsys)  # the lock died with it
    assert code == 0, err
    assert leftovers(out) == [] and not (out / ".lock.owner").exists()
    assert len(G.load_record(out / "grid.json")["runs"]) == 2


def test_a_kill_during_the_first_checkpoint_leaves_a_run_that_starts_again(
    tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["--preset", "smoke", "--out", str(out), "--epochs", "2"]
    argv += ["--max-train-docs", "4", "--max-eval-docs", "2"]
    stall = (  # last.pt: half written, then the kill comes
        "import torch\n"
        "real = torch.save\n"
        "def slow(obj, f, *a, **k):\n"
        "    if '.last.pt.' in str(f):\n"
        "        open(f, 'wb').write(b'PK half a checkpoint')\n"
        "        time.sleep(300)\n"
        "    return real(obj, f, *a, **k)\n"
        "torch.save = slow"
    )
    kill_mid_write(stall, "train_main", argv, out)
    assert not (out / "checkpoint" / "last.pt").exists()
    code, stdout, err = run_main(cli.train_main, argv, capsys)
    assert code == 0, err  # not "holds files of an earlier run"
    assert "test F1" in stdout and leftovers(out) == []
    assert json.loads((out / "metrics.json").read_text())["config"]["epochs"] == 2


# ---- checkpoints -------------------------------------------------------------------


def test_flipped_bytes_in_the_best_checkpoint_are_refused_before_training(tmp_path):
    cfg = T.resolve_config(
        "smoke", epochs=2, max_train_docs=4, max_eval_docs=2, progress=False
    )
    T.run_training(cfg, tmp_path / "run", stop_after=1)
    (best,) = (tmp_path / "run" / "checkpoint").glob("best-*.pt")
    b = bytearray(best.read_bytes())
    b[len(b) // 2] ^= 0xFF
    best.write_bytes(b)
    t0 = time.perf_counter()
    with pytest.raises(T.TrainSetupError, match=f"{best.name} is damaged: .* CRC-32"):
        T.run_training(cfg, tmp_path / "run")
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "run" / "metrics.json").exists()


# ---- changed data ------------------------------------------------------------------


class Fake:
    "Stands in for `train.run_training`: a metrics.json of the config and data it had."

    def __init__(self):
        self.calls = []

    def __call__(self, config, out_dir):
        self.calls.append((config.loss, config.seed))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        m = dict(dev={}, test={"F1": 1.0}, wall_seconds=1.0, device="synthetic")
        m |= dict(config=asdict(config), data=runs.data_fingerprint(config))
        (Path(out_dir) / "metrics.json").write_text(json.dumps(m))


def test_a_grid_cell_of_other_data_is_refused_by_name(tmp_path, monkeypatch):
    fake = Fake()
    monkeypatch.setattr(T, "run_training", fake)
    folder = tmp_path / "data"
    shutil.copytree(SAMPLE, folder)
    grid = lambda losses: G.run_grid(
        "smoke", losses, [1], tmp_path / "g", data_dir=str(folder), epochs=1
    )
    grid(["ATL"])
    docs = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps(docs[:4]))  # another test set
    with pytest.raises(ValueError, match=r"ATL-s1 \(data: test.json \(sha256"):
        grid(["ATL"])  # not read back as done, not silently retrained
    with pytest.raises(ValueError, match=r"1 grid cell\(s\) .* ATL-s1 \(data: test"):
        grid(["SAT"])  # extending the grid would mix two test sets in one table
    assert fake.calls == [("ATL", 1)]
    shutil.rmtree(tmp_path / "g" / "ATL-s1")  # what the message says to do
    grid(["ATL", "SAT"])
    assert fake.calls[1:] == [("ATL", 1), ("SAT", 1)]


def test_one_table_never_mixes_two_test_sets(tmp_path, monkeypatch):
    fake = Fake()
    monkeypatch.setattr(T, "run_training", fake)
    G.run_grid("smoke", ["ATL", "SAT"], [1], tmp_path, epochs=1)
    m = json.loads((tmp_path / "SAT-s1" / "metrics.json").read_text())
    m["data"]["files"]["test.json"] = "f" * 64  # a cell copied in from elsewhere
    (tmp_path / "SAT-s1" / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="against ATL-s1, SAT-s1 .test.json .sha256"):
        G.collect_runs(tmp_path)


def test_a_lab_cell_of_other_data_is_refused_by_name(tiny, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(SAMPLE, folder)
    argv = lab_argv(tiny, tmp_path / "lab", tmp_path / "c")
    argv[argv.index("--data-dir") + 1] = str(folder)
    assert run_main(cli.lab_main, argv, capsys)[0] == 0
    docs = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps(docs[:4]))
    code, _, err = run_main(cli.lab_main, argv, capsys)
    assert (
        code == 2 and "ATL-s0 holds a result of other inputs (test.json (sha256" in err
    )
    assert run_main(cli.lab_main, [*argv, "--overwrite"], capsys)[0] == 0
    assert G.load_record(tmp_path / "lab" / "grid.json")["details"]["n"]["test"] == 4

"""Runs you can trust: one run per folder, atomic result files, resume checks what it
resumes, the official batch order and precision (single process; CPU, seconds each).
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import cli, data, runs
from hingeabl_nb import records as G
from hingeabl_nb import train as T

torch.set_num_threads(1)
TINY = dict(epochs=2, max_train_docs=6, max_eval_docs=3, progress=False)


def smoke(**kw):
    return T.resolve_config("smoke", loss="HingeABL", seed=3, **(TINY | kw))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    "A finished smoke run: its config, folder and metrics.json."
    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = smoke()
    return cfg, out, T.run_training(cfg, out)


def copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock*"))
    return dst


# ---- 1. one run per folder -----------------------------------------------------------


def test_second_run_on_a_held_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from hingeabl_nb import train as T\n"
        "cfg = T.resolve_config('smoke', seed=3, epochs=5, max_train_docs=8, "
        "max_eval_docs=3, progress=False)\n"
        "T.run_training(cfg, sys.argv[1])\n"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", code, str(out)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        t0 = time.time()  # wait until the first run is mid-way (its first checkpoint)
        while not (out / "checkpoint" / "last.pt").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.time() - t0 < 120
            time.sleep(0.05)
        cfg = T.resolve_config(
            "smoke", seed=3, epochs=5, max_train_docs=8, max_eval_docs=3
        )
        with pytest.raises(T.TrainSetupError, match="in use by another run") as e:
            T.run_training(dataclasses.replace(cfg, progress=False), out)
        assert f"pid {first.pid} on " in str(e.value)
    finally:
        assert first.wait(timeout=300) == 0, first.stderr.read()
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in log] == list(range(1, 6))  # each line once


def test_folder_with_another_runs_result_is_refused(finished, tmp_path):
    cfg, out, res = finished
    run = copy_run(out, tmp_path / "run")
    shutil.rmtree(run / "checkpoint")  # a finished run whose checkpoint was removed
    before = (run / "metrics.json").read_text()
    other = dataclasses.replace(cfg, loss="ATL")
    with pytest.raises(T.TrainSetupError, match=r"another run.*--overwrite"):
        T.run_training(other, run)
    assert (run / "metrics.json").read_text() == before
    m = T.run_training(other, run, overwrite=True)
    assert m["config"]["loss"] == "ATL"
    assert json.loads((run / "metrics.json").read_text())["config"]["loss"] == "ATL"


def test_same_config_again_prints_the_result_and_trains_nothing(
    finished, tmp_path, capsys
):
    cfg, out, res = finished
    run = copy_run(out, tmp_path / "run")
    files = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    again = T.run_training(cfg, run)
    assert again == res and "nothing trained" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in files} == files  # nothing rewritten


def test_empty_out_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.jsonl").write_text("mine\n")
    with pytest.raises(T.TrainSetupError, match="run folder is empty"):
        T.run_training(smoke(), "")
    argv = ["--preset", "smoke", "--epochs", "1", "--out", ""]
    assert cli.train_main(argv) == 2
    assert "run folder is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]
    assert (tmp_path / "log.jsonl").read_text() == "mine\n"


# ---- 2. atomic result files ----------------------------------------------------------


def test_a_failed_metrics_write_leaves_no_result(finished, tmp_path, monkeypatch):
    cfg, out, res = finished
    run = tmp_path / "run"
    real = Path.write_text

    def disk_full(self, text, *a, **k):
        if "metrics.json" in self.name:  # half the file, then a full disk
            real(self, text[: len(text) // 2])
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        T.run_training(cfg, run)
    monkeypatch.setattr(Path, "write_text", real)
    assert not (run / "metrics.json").exists()  # no half result
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    m = T.run_training(cfg, run)  # resumes from the last checkpoint, then tests
    assert m["test"] == res["test"]


def test_grid_reruns_an_unreadable_cell_in_one_line(tmp_path, capsys):
    over = dict(epochs=1, max_train_docs=4, max_eval_docs=2)
    (first,) = G.run_grid("smoke", ["ATL"], [1], tmp_path, **over)
    metrics = tmp_path / "ATL-s1" / "metrics.json"
    metrics.write_text("")  # a kill during an in-place write
    capsys.readouterr()
    (again,) = G.run_grid("smoke", ["ATL"], [1], tmp_path, **over)
    out = capsys.readouterr().out
    assert f"{metrics} is unreadable (empty file): rerunning this cell" in out
    assert not again["skipped"] and again["test"] == first["test"]
    assert json.loads(metrics.read_text())["test"] == first["test"]
    metrics.write_text("{")  # collect_runs counts it as incomplete, in one line
    with pytest.raises(FileNotFoundError, match="no finished run"):
        G.collect_runs(tmp_path)
    assert "counted as incomplete" in capsys.readouterr().out


def test_grid_cells_share_one_feature_file(tmp_path, monkeypatch):
    """Two runs of one grid (other seed, other loss) read the features the first one
    wrote: `prepare_run` goes through the feature cache ($HINGEABL_CACHE)."""
    monkeypatch.setenv("HINGEABL_CACHE", str(tmp_path / "cache"))
    calls, real = [], data.featurize
    monkeypatch.setattr(
        data, "featurize", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    a = runs.prepare_run(T.resolve_config("smoke", loss="ATL", seed=1, **TINY))
    b = runs.prepare_run(T.resolve_config("smoke", loss="HingeABL", seed=5, **TINY))
    assert len(calls) == 3  # train, dev and test, once
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 3
    for split in ("train", "dev", "test"):
        assert [f["hts"] for f in a["features"][split]] == [
            f["hts"] for f in b["features"][split]
        ]


# ---- 3. resume checks what it resumes ------------------------------------------------


def test_resume_refuses_changed_data_file(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(data.sample_dir(), folder)
    cfg = smoke(data_dir=str(folder), max_train_docs=None)
    T.run_training(cfg, tmp_path / "run", stop_after=1)
    docs = json.loads((folder / "train.json").read_text())
    (folder / "train.json").write_text(json.dumps(docs[:8]))  # 32 documents cut to 8
    with pytest.raises(T.TrainSetupError, match=r"other data: train.json \(sha256"):
        T.run_training(cfg, tmp_path / "run")


def test_resume_refuses_another_tokenizer(tmp_path, monkeypatch):
    cfg = smoke()
    T.run_training(cfg, tmp_path / "run", stop_after=1)
    monkeypatch.setattr(data, "tokenizer_fingerprint", lambda tok: "another")
    with pytest.raises(T.TrainSetupError, match="other data: tokenizer "):
        T.run_training(cfg, tmp_path / "run")


def test_resume_refuses_another_world_size(tmp_path):
    cfg = smoke()
    T.run_training(cfg, tmp_path / "run", stop_after=1)
    last = tmp_path / "run" / "checkpoint" / "last.pt"
    ck = torch.load(last, weights_only=False)
    ck["world"] = 2  # as written by a 2-process run
    torch.save(ck, last)
    with pytest.raises(
        T.TrainSetupError, match=r"by 2 process\(es\) and this run has 1"
    ):
        T.run_training(cfg, tmp_path / "run")


# ---- 5. the official batch order and precision ---------------------------------------


def test_paper_batches_are_shuffled_and_use_each_document_once():
    "Random batches (paper preset): new combinations each epoch, each document once."
    feats = [{"input_ids": [0] * (10 + 3 * i)} for i in range(103)]  # distinct lengths
    cfg = T.resolve_config("paper")
    assert (cfg.batching, cfg.train_batch_size, cfg.drop_last) == ("random", 4, True)
    epochs = [T.epoch_batches(feats, cfg, e) for e in range(4)]
    for bs in epochs:
        used = [i for b in bs for i in b]
        assert len(used) == len(set(used)) == 100  # 103 less the dropped remainder 3
    for a, b in zip(epochs, epochs[1:]):
        recur = {frozenset(x) for x in a} & {frozenset(x) for x in b}
        assert len(recur) <= 1  # 25 batches of 4 out of 103: a repeat is rare
    bucket = [T.epoch_batches(feats, T.resolve_config("reduced"), e) for e in range(2)]
    assert {frozenset(x) for x in bucket[0]} == {frozenset(x) for x in bucket[1]}


def test_bucketing_is_a_named_option_in_config_and_protocol(finished):
    red = T.resolve_config("reduced")
    assert red.batching == "bucket" and "length-bucketed" in red.protocol
    assert "shuffled batches" in T.resolve_config("paper").protocol
    cfg, out, res = finished
    assert res["config"]["batching"] == "random"
    with pytest.raises(T.TrainSetupError, match="allowed: random, bucket"):
        T.check_config(dataclasses.replace(cfg, batching="sorted"))


def test_official_precision_autocasts_the_head():
    "paper: the whole model under autocast (fp16 on a GPU); reduced: head in float32."
    paper = T.resolve_config("paper", encoder="tiny", emb_size=64, block_size=16)
    reduced = dataclasses.replace(paper, mixed_precision="auto")
    assert T.choose_mixed_precision(paper.mixed_precision, True, True) == "fp16"
    f = data.featurize(
        data.load_docs(data.sample_dir() / "dev.json")[:1],
        data.tiny_tokenizer(),
        data.load_rel2id(),
        max_len=512,
        progress=False,
    )
    x = data.collate(f)
    args = (x["input_ids"], x["attention_mask"], x["entity_pos"], x["hts"])
    dtypes = []
    for c in (paper, reduced):
        net = T.build_model(c, data.tiny_tokenizer())
        with torch.autocast("cpu", dtype=torch.bfloat16):  # CPU stand-in for fp16
            dtypes.append(net(*args).dtype)
    assert dtypes == [torch.bfloat16, torch.float32]

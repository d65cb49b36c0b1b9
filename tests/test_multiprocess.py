"""Two CPU processes (gloo) under `accelerate launch`: disjoint shards, evaluation equal
to one process, a killed and resumed run equal to an uninterrupted one bit for bit, and
rank 1 writes nothing.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import data
from hingeabl_nb import train as T

OVER = dict(seed=1, epochs=2, max_train_docs=8, max_eval_docs=4, progress=False)

# Rank 1 may read but never write in the run folders: every way of writing is refused.
SCRIPT = """
import builtins, io, os, sys, torch
torch.set_num_threads(1)
from hingeabl_nb import train as T
OVER = {over!r}
whole, killed = sys.argv[1], sys.argv[2]
if int(os.environ["RANK"]) != 0:
    real = dict(open=io.open, replace=os.replace, unlink=os.unlink, rename=os.rename)

    def mine(path):
        return str(os.path.abspath(path)).startswith((whole, killed))

    def guarded_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and mine(file):
            raise RuntimeError(f"rank 1 wrote {{file}}")
        return real["open"](file, mode, *a, **k)

    def guard(name):
        def f(*paths, **k):
            if any(mine(p) for p in paths):
                raise RuntimeError(f"rank 1 called {{name}}{{paths}}")
            return real[name](*paths, **k)
        return f

    builtins.open = io.open = guarded_open
    os.replace, os.unlink = guard("replace"), guard("unlink")
    os.rename = guard("rename")
predicted, real_predict = [], T.predict_logits


def counting(net, features, *a, **k):  # documents this process predicts
    predicted.append(len(features))
    return real_predict(net, features, *a, **k)


T.predict_logits = counting
cfg = T.resolve_config("smoke", loss="HingeABL", **OVER)
T.run_training(cfg, whole)
T.run_training(cfg, killed, stop_after=1)  # a kill after epoch 1 ...
torch.manual_seed(12345)  # ... a new process's random state ...
T.run_training(cfg, killed)  # ... and the resumed run
print(f"rank {{os.environ['RANK']}} predicted {{sum(predicted)}} documents", flush=True)
"""


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "run.py"
    script.write_text(SCRIPT.format(over=OVER))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision"]
    launch += ["no", "--dynamo_backend", "no", str(script)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OMP_NUM_THREADS": "1",
    }
    r = subprocess.run(
        launch + [str(tmp / "whole"), str(tmp / "killed")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    (tmp / "launch.out").write_text(r.stdout)
    return tmp


def read(run):
    return json.loads((run / "metrics.json").read_text())


def test_shards_are_disjoint_and_equal():
    cfg = T.resolve_config("smoke", **OVER)
    feats = [{"input_ids": [0] * (5 + i)} for i in range(16)]
    for e in range(2):
        r0, r1 = (T.epoch_batches(feats, cfg, e, rank, 2) for rank in (0, 1))
        assert len(r0) == len(r1) == 2
        assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}


def test_killed_and_resumed_equals_uninterrupted_bit_for_bit(two_process_runs):
    whole, killed = read(two_process_runs / "whole"), read(two_process_runs / "killed")
    assert "x2" in whole["device"] and [l["epoch"] for l in whole["history"]] == [1, 2]
    for a, b in zip(whole["history"], killed["history"]):
        assert (a["train_loss"], a["dev_F1"], a["lr"]) == (
            b["train_loss"],
            b["dev_F1"],
            b["lr"],
        )
    assert whole["test"] == killed["test"]
    logits = [
        torch.load(two_process_runs / r / "test_logits.pt")["logits"]
        for r in ("whole", "killed")
    ]
    assert torch.equal(*logits)


def test_sharded_evaluation_equals_one_process(two_process_runs):
    "Dev and test counts of the 2-process run = one process scoring the same weights."
    run = two_process_runs / "whole"
    m = read(run)
    cfg = T.TrainConfig(**m["config"])
    inputs = T.prepare_run(cfg)
    net = T.build_model(cfg, inputs["tokenizer"])
    net.load_state_dict(torch.load(m["best_checkpoint"]))
    docs = inputs["docs"]
    for split in ("dev", "test"):
        feats = inputs["features"][split]
        logits = T.predict_logits(net, feats, cfg.test_batch_size)
        one = T.score(logits, feats, docs[split], docs["train"], cfg, inputs["id2rel"])
        assert one["patterns"] == m[split]["patterns"]  # TP, FP, FN counts
        for k in ("F1", "P", "R", "Ign_F1"):
            assert one[k] == pytest.approx(m[split][k], abs=1e-9)
    n = len(inputs["features"]["test"])
    assert len(torch.load(run / "test_logits.pt")["titles"]) == n  # no duplicates


def test_every_process_predicts_its_share(two_process_runs):
    "Evaluation is sharded: both processes predict, the same number of documents."
    out = (two_process_runs / "launch.out").read_text()
    docs = dict(re.findall(r"rank (\d) predicted (\d+) documents", out))
    assert set(docs) == {"0", "1"} and docs["0"] == docs["1"] != "0", out


def test_one_process_refuses_a_two_process_checkpoint(two_process_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_process_runs / "killed" / "checkpoint", run / "checkpoint")
    cfg = T.resolve_config("smoke", loss="HingeABL", **OVER)
    with pytest.raises(
        T.TrainSetupError, match=r"by 2 process\(es\) and this run has 1"
    ):
        T.run_training(cfg, run)


def test_rank_1_wrote_nothing(two_process_runs):
    "The launch succeeded with rank 1's writes refused; the files are rank 0's."
    names = sorted(p.name for p in (two_process_runs / "whole").iterdir())
    assert names == [
        ".lock",
        "checkpoint",
        "log.jsonl",
        "metrics.json",
        "test_logits.pt",
    ]
    assert data.sample_dir().is_dir()

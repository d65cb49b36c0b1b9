"""The benchmark scripts run end to end on a tiny configuration.

Their numbers are not asserted: they are measurements.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_train_baseline_rows_ratio_and_record(capsys, tmp_path):
    import json

    threads = torch.get_num_threads()
    argv = [
        "--encoder-size",
        "tiny",
        "--docs",
        "3",
        "--batch-size",
        "2",
        "--baseline",
        "--record",
        str(tmp_path / "throughput-{device}.json"),
    ]
    try:
        rows = load("bench_train").main(argv)
    finally:
        torch.set_num_threads(threads)
    assert [r["impl"] for r in rows] == ["ours", "official-style"]
    assert all(
        r["train_docs_s"] > 0 and r["eval_docs_s"] > 0 and r["docs"] == 3 for r in rows
    )
    assert "ours / official-style: training throughput" in capsys.readouterr().out
    (path,) = tmp_path.glob("throughput-cpu-x*-threads.json")
    rec = json.loads(path.read_text())
    assert rec["ratio"] == pytest.approx(
        rows[0]["train_docs_s"] / rows[1]["train_docs_s"]
    )
    assert (
        rec["ours_docs_per_s"] == rows[0]["train_docs_s"] and rec["encoder"] == "tiny"
    )
    assert (
        rec["command"].startswith("python bench/bench_train.py --encoder-size tiny")
        and rec["date"][:2] == "20"
    )


def test_bench_train_record_needs_baseline(capsys):
    with pytest.raises(SystemExit):
        load("bench_train").main(["--record", "x.json"])
    assert "--record needs --baseline" in capsys.readouterr().err


def test_bench_hingeabl_agrees_and_prints_ratio(capsys):
    threads = torch.get_num_threads()
    try:
        load("bench_hingeabl").main(
            ["--device", "cpu", "--rounds", "1", "--repeats", "2", "--warmup", "1"]
        )
    finally:
        torch.set_num_threads(threads)
    assert "ratio official/ours" in capsys.readouterr().out


def test_bench_lab_head_rows_and_breakdown(capsys):
    threads = torch.get_num_threads()
    try:
        res = load("bench_lab_head").main(
            ["--threads", "1", "--rounds", "1", "--pairs", "1024"]
            + ["--peak-sizes", "128"]
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "GEMM peak float32" in out and out.count("% of fp32 peak") == len(
        res["best"]
    )
    assert {
        "one at a time",
        "lockstep, autograd",
        "lockstep, fp32",
        "lockstep, bf16",
        "2 stacks side by side",
    } <= set(res["best"])
    mine = {"float32": "fp32", "bfloat16": "bf16"}[res["lab"]]
    assert f"lockstep, {mine} (the lab)" in out and out.count("(the lab)") == 1
    for parts in res["parts"].values():
        assert parts["GEMMs"] > 0 and parts["loss (fwd + bwd)"] > 0
    assert len(res["exp"]) == 5 and out.count(" us  x") == 5


def test_bench_lab_encoder_rows_and_drift(capsys):
    threads = torch.get_num_threads()
    try:
        res = load("bench_lab_encoder").main(
            ["--encoder", "tiny", "--data", "sample", "--docs", "3", "--rounds", "1"]
            + ["--threads", "1"]
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.count("speed-up") == 3 and "int8 dynamic" in out
    base, sdpa, q8 = (res["outs"][k] for k in res["best"])
    assert torch.allclose(
        base["rs"].float(), sdpa["rs"].float(), atol=2e-3
    )  # same math
    assert not torch.equal(base["rs"], q8["rs"])  # int8 changes the features

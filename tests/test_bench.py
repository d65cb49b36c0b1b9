"""The benchmark scripts run end to end on a tiny configuration (their numbers are not asserted: they are measurements)."""
import importlib.util, os, sys
from pathlib import Path
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_bench_train_baseline_rows_and_ratio(capsys):
    threads = torch.get_num_threads()
    try: rows = load("bench_train").main(["--encoder-size", "tiny", "--docs", "3", "--batch-size", "2", "--baseline"])
    finally: torch.set_num_threads(threads)
    assert [r["impl"] for r in rows] == ["ours", "official-style"]
    assert all(r["train_docs_s"] > 0 and r["eval_docs_s"] > 0 and r["docs"] == 3 for r in rows)
    assert "ours / official-style: training throughput" in capsys.readouterr().out


def test_bench_hingeabl_agrees_and_prints_ratio(capsys):
    threads = torch.get_num_threads()
    try: load("bench_hingeabl").main(["--device", "cpu", "--rounds", "1", "--repeats", "2", "--warmup", "1"])
    finally: torch.set_num_threads(threads)
    assert "ratio official/ours" in capsys.readouterr().out

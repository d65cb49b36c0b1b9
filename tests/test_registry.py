"""The registry is the only list of losses: an eighth loss, added in this test only, is
picked up by the grid, the lab, the command lines' help, the demo and the test suite,
with no other edit. The loss lives in tests/conftest.py (`SquaredAML`: AML's hinge,
squared), which registers it for a whole pytest run when HINGEABL_EXTRA_LOSS=1."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import EXTRA_LOSS, extra_loss_spec
from test_reproduce import synthetic_metrics

from hingeabl_nb import cli, data, lab, records, train
from hingeabl_nb.losses import LOSSES, LossSpec

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture
def eighth(monkeypatch):
    "The registry with the extra loss appended (restored afterwards)."
    monkeypatch.setitem(LOSSES, EXTRA_LOSS, extra_loss_spec())
    return EXTRA_LOSS


def test_a_new_option_without_a_rule_fails_when_the_registry_is_built():
    def loss(logits, labels, margin=1.0, power=2.0):
        return LOSSES["AML"].fn(logits, labels, margin)

    with pytest.raises(ValueError, match=r"option\(s\) \['power'\] have no rule"):
        LossSpec(EXTRA_LOSS, loss, LOSSES["AML"].ref, dict(margin=1.0, power=2.0))


def test_help_and_demo_list_it(eighth):
    for parser in (
        cli.train_parser,
        cli.compare_parser,
        cli.lab_parser,
        cli.toy_parser,
    ):
        assert eighth in " ".join(parser().format_help().split()), parser.__name__
    spec = importlib.util.spec_from_file_location("demo", ROOT / "tools" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert f"\n{eighth} " in demo.threshold_part(300)  # 05a's table, one row a loss


def test_the_grid_trains_it_by_default(eighth, tmp_path, capsys, monkeypatch):
    "hingeabl-compare without --losses: every loss in the registry, the eighth too."
    trained = []

    def fake(config, out_dir):  # records the cell, writes a synthetic result
        trained.append(config.loss)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        m = synthetic_metrics(config.loss, config.seed)
        (Path(out_dir) / "metrics.json").write_text(json.dumps(m))

    monkeypatch.setattr(train, "run_training", fake)
    cli.compare_cli(["--preset", "smoke", "--seeds", "1", "--out", str(tmp_path / "g")])
    assert trained == list(LOSSES) and trained[-1] == eighth
    rec = records.load_record(tmp_path / "g" / "grid.json")
    assert [r["loss"] for r in rec["runs"]] == list(LOSSES)
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{eighth} ") for line in printed)  # its table row


def test_the_lab_trains_it_by_default(eighth, tmp_path):
    enc = lab.save_tiny_encoder(tmp_path / "tiny")
    over = dict(epochs=1, batch_pairs=256, emb_size=32, block_size=8, num_threads=1)
    rec = lab.run_lab(
        enc,
        data.sample_dir(),
        tmp_path / "lab",
        seeds=[0],
        cache_dir=tmp_path / "c",
        max_seq_length=512,
        progress=False,
        **over,
    )
    assert [r["loss"] for r in rec["runs"]] == list(LOSSES)
    assert rec["runs"][-1]["thresholds"]["threshold"] == "TH"


def test_the_test_suite_picks_it_up():
    "The tests that iterate LOSSES, run with the eighth loss registered: they cover it."
    env = dict(os.environ, HINGEABL_EXTRA_LOSS="1")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        EXTRA_LOSS,
    ]
    files = ["tests/test_losses.py", "tests/test_course_claims.py"]
    p = subprocess.run(cmd + files, cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    passed = int(p.stdout.strip().splitlines()[-1].split()[0])
    assert passed >= 3, p.stdout[-2000:]  # its reference, float32 and float64 checks

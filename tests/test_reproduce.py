"""Tests of hingeabl_nb.records and hingeabl_nb.reproduce.

Grid runner, record, tables and the hingeabl-compare CLI.

Most tests replace `train.run_training` by a stand-in that writes a SYNTHETIC
metrics.json (random numbers, labelled "synthetic" in every field that names a device or
protocol), so the table arithmetic is checked against sums and square roots written out
here, independently of `statistics`. One test trains the real `smoke` preset end to end.
"""

import json
import math
import random
import re
import shlex
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import resources
import torch

from hingeabl_nb import cli, runs, train
from hingeabl_nb import records as G
from hingeabl_nb import reproduce as R

PATTERN_KEYS = ("F/(T+F)", "FN/F", "FN_CRK/FN")
FINGERPRINTS = {}  # data folder -> `runs.data_fingerprint` (hashed once per folder)


def fingerprint(config) -> dict:
    "The data fingerprint a real run of `config` stores (hashed once per data folder)."
    if config.data_dir not in FINGERPRINTS:
        FINGERPRINTS[config.data_dir] = runs.data_fingerprint(config)
    return FINGERPRINTS[config.data_dir]


def synthetic_split(rng: random.Random) -> dict:
    "One split's scores, random (synthetic, not a measurement)."
    fp, crk, irk, t = (rng.randint(1, 50) for _ in range(4))
    fn, f = crk + irk, fp + crk + irk
    return {
        "F1": rng.uniform(0, 100),
        "Ign_F1": rng.uniform(0, 100),
        "macro_F1": rng.uniform(0, 100),
        "macro_Ign_F1": rng.uniform(0, 100),
        "patterns": {
            "FP": fp,
            "FN_CRK": crk,
            "FN_IRK": irk,
            "T": t,
            "F": f,
            "FN": fn,
            "F/(T+F)": f / (t + f),
            "FN/F": fn / f,
            "FN_CRK/FN": crk / fn,
        },
    }


def synthetic_metrics(loss: str, seed: int, config=None) -> dict:
    "A cell's metrics.json: random scores, with the config and data it would be of."
    rng = random.Random(f"{loss}-{seed}")
    trained = {"config": asdict(config), "data": fingerprint(config)} if config else {}
    return {
        "dev": synthetic_split(rng),
        "test": synthetic_split(rng),
        "wall_seconds": rng.uniform(1, 9),
        "device": "synthetic-device",
        "protocol": "synthetic test protocol",
        "config": {"loss": loss, "seed": seed, "preset": "smoke"},
    } | trained


class FakeTrainer:
    """Stands in for train.run_training.

    Counts calls and writes a synthetic metrics.json.
    """

    def __init__(self, write=True):
        self.calls, self.configs, self.write = [], [], write

    def __call__(self, config, out_dir):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.calls.append((config.loss, config.seed, out_dir))
        self.configs.append((config,))
        m = synthetic_metrics(config.loss, config.seed, config)
        if self.write:
            (out_dir / "metrics.json").write_text(json.dumps(m))
        return m


@pytest.fixture
def fake(monkeypatch):
    f = FakeTrainer()
    monkeypatch.setattr(train, "run_training", f)
    return f


def hand_mean_std(xs):
    n = len(xs)
    mean = sum(xs) / n
    return mean, (
        math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    )


# ---------------------------------------------------------------- grid runner


def test_grid_runs_each_cell_once_and_resumes(tmp_path, fake):
    res = G.run_grid("smoke", ["ATL", "HingeABL"], [1, 5], tmp_path, epochs=1)
    order = [("ATL", 1), ("HingeABL", 1), ("ATL", 5), ("HingeABL", 5)]  # seed by seed
    assert [(l, s) for l, s, _ in fake.calls] == order
    assert [c[2] for c in fake.calls] == [tmp_path / f"{l}-s{s}" for l, s in order]
    assert not any(r["skipped"] for r in res)
    again = G.run_grid("smoke", ["ATL", "HingeABL"], [1, 5], tmp_path, epochs=1)
    assert len(fake.calls) == 4 and all(r["skipped"] for r in again)
    assert [r["test"]["F1"] for r in again] == [r["test"]["F1"] for r in res]
    # an interrupted cell (folder and log, no metrics.json) is handed back to the
    # trainer, in the same folder
    (tmp_path / "ATL-s5" / "metrics.json").unlink()
    (tmp_path / "ATL-s5" / "log.jsonl").write_text("{}\n")
    G.run_grid("smoke", ["ATL", "HingeABL"], [1, 5], tmp_path, epochs=1)
    assert (
        len(fake.calls) == 5
        and fake.calls[-1][:2] == ("ATL", 5)
        and fake.calls[-1][2] == tmp_path / "ATL-s5"
    )


def test_grid_config_per_cell(tmp_path, fake, monkeypatch):
    seen = []

    def spy(config, out_dir):
        seen.append(config)
        return fake(config, out_dir)

    monkeypatch.setattr(train, "run_training", spy)
    G.run_grid("smoke", ["SAT"], [7], tmp_path, epochs=1, max_train_docs=3)
    (cfg,) = seen
    assert (cfg.preset, cfg.loss, cfg.seed, cfg.epochs, cfg.max_train_docs) == (
        "smoke",
        "SAT",
        7,
        1,
        3,
    )


def test_grid_errors_before_training(tmp_path, fake):
    with pytest.raises(ValueError, match=r"unknown loss 'Focal'; allowed: ATL"):
        G.run_grid("smoke", ["ATL", "Focal"], [1], tmp_path)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        G.run_grid("huge", ["ATL"], [1], tmp_path)
    with pytest.raises(ValueError, match="duplicate seed"):
        G.run_grid("smoke", ["ATL"], [1, 1], tmp_path)
    with pytest.raises(
        ValueError, match="epochs"
    ):  # unknown config field, reported by train.resolve_config
        G.run_grid("smoke", ["ATL"], [1], tmp_path, epoch=3)
    assert fake.calls == []


def test_grid_refuses_to_mix_protocols(tmp_path, fake):
    G.run_grid("smoke", ["ATL"], [1], tmp_path, epochs=1)
    with pytest.raises(ValueError, match="Use another --out folder"):
        G.run_grid("smoke", ["ATL"], [1], tmp_path, epochs=2)
    G.run_grid(
        "smoke", ["HingeABL"], [1, 2], tmp_path, epochs=1
    )  # more cells, same protocol: fine
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert (
        spec["losses"] == ["ATL", "HingeABL"]
        and spec["seeds"] == [1, 2]
        and len(fake.calls) == 3
    )


def test_trainer_without_metrics_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "run_training", FakeTrainer(write=False))
    with pytest.raises(RuntimeError, match="without writing"):
        G.run_grid("smoke", ["ATL"], [1], tmp_path)


# ---------------------------------------------------------------- record


def test_record_schema(tmp_path, fake):
    G.run_grid("smoke", ["HingeABL", "ATL"], [5, 1], tmp_path, epochs=1)
    (tmp_path / "AFL-s3").mkdir()  # started, never finished
    rec = G.collect_runs(tmp_path)
    assert set(rec) >= {"device", "protocol", "date", "command", "preset", "runs"}
    assert (
        rec["device"] == "synthetic-device"
        and rec["protocol"] == "synthetic test protocol"
        and rec["preset"] == "smoke"
    )
    assert (
        rec["command"]
        == "hingeabl-compare --preset smoke --losses HingeABL ATL --seeds 5 1 --out "
        + str(tmp_path)
        + " --epochs 1"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["date"])
    assert [(r["loss"], r["seed"]) for r in rec["runs"]] == [
        ("HingeABL", 1),
        ("HingeABL", 5),
        ("ATL", 1),
        ("ATL", 5),
    ]
    for r in rec["runs"]:
        assert set(r) == {"loss", "seed", "dev", "test", "wall_seconds", "best_epoch"}
        assert r["test"] == synthetic_metrics(r["loss"], r["seed"])["test"]
    assert rec["incomplete"] == ["AFL-s3"]
    assert json.loads((tmp_path / "grid.json").read_text()) == rec
    assert G.load_record(tmp_path / "grid.json") == rec


def test_record_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        G.collect_runs(tmp_path)
    with pytest.raises(ValueError, match=r"bad.json: missing field\(s\) device"):
        G.check_record({"runs": []}, "bad.json")
    (tmp_path / "ATL-s1").mkdir()
    (tmp_path / "ATL-s1" / "metrics.json").write_text(json.dumps({"dev": {}}))
    with pytest.raises(FileNotFoundError, match="no finished run"):  # not a result
        G.collect_runs(tmp_path)


def test_devices_that_disagree_are_all_kept(tmp_path, fake):
    G.run_grid("smoke", ["ATL"], [1, 2], tmp_path)
    m = json.loads((tmp_path / "ATL-s2" / "metrics.json").read_text())
    m["device"] = "other synthetic device"
    (tmp_path / "ATL-s2" / "metrics.json").write_text(json.dumps(m))
    assert G.collect_runs(tmp_path)["device"] == [
        "synthetic-device",
        "other synthetic device",
    ]


# ---------------------------------------------------------------- tables


@pytest.fixture
def record(tmp_path, fake):
    G.run_grid("smoke", ["ATL", "HingeABL", "SAT"], [1, 5, 42], tmp_path)
    (tmp_path / "SAT-s5" / "metrics.json").unlink()
    (tmp_path / "SAT-s42" / "metrics.json").unlink()  # SAT: one seed
    return G.collect_runs(tmp_path)


def test_table3_by_hand(record):
    t = R.table3(record)
    assert [r["loss"] for r in t] == ["ATL", "HingeABL", "SAT"]
    for row in t:
        for metric in ("F1", "Ign_F1"):
            xs = [
                synthetic_metrics(row["loss"], s)["test"][metric]
                for s in ((1, 5, 42) if row["loss"] != "SAT" else (1,))
            ]
            mean, std = hand_mean_std(xs)
            assert row[f"{metric}_mean"] == pytest.approx(mean, abs=1e-12)
            assert row[f"{metric}_std"] == (
                None if std is None else pytest.approx(std, abs=1e-12)
            )
    assert (
        t[0]["paper_F1"],
        t[0]["paper_Ign_F1"],
        t[1]["paper_F1"],
        t[2]["paper_Ign_F1"],
    ) == (73.29, 72.46, 75.15, 72.61)
    md = t.to_markdown()
    assert f"| ATL | 3 | {t[0]['F1_mean']:.2f} ± {t[0]['F1_std']:.2f} | 73.29 |" in md
    assert "(1 seed)" in md and "Table 3" in md


def test_table3_dev_split(record):
    t = R.table3(record, split="dev")
    xs = [synthetic_metrics("ATL", s)["dev"]["F1"] for s in (1, 5, 42)]
    assert t[0]["F1_mean"] == pytest.approx(sum(xs) / 3, abs=1e-12)


def test_table4_by_hand(record):
    t = R.table4(
        record
    )  # dev by default: the official statistics script reads the dev file
    for row in t:
        seeds = (1, 5, 42) if row["loss"] != "SAT" else (1,)
        for k in PATTERN_KEYS:
            xs = []
            for s in seeds:
                p = synthetic_metrics(row["loss"], s)["dev"]["patterns"]
                den = {
                    "F/(T+F)": p["T"] + p["F"],
                    "FN/F": p["F"],
                    "FN_CRK/FN": p["FN"],
                }[k]
                num = {"F/(T+F)": p["F"], "FN/F": p["FN"], "FN_CRK/FN": p["FN_CRK"]}[k]
                xs.append(100.0 * num / den)
            assert row[f"{k}_mean"] == pytest.approx(hand_mean_std(xs)[0], abs=1e-9)
    assert (
        t[1]["paper_FN_CRK/FN"] == 43.84 and t[2]["paper_FN/F"] is None
    )  # the paper's Table 4 has no SAT row
    assert "| SAT | 1 |" in t.to_markdown() and "–" in t.to_markdown()


def test_table7_by_hand(record):
    t = R.table7(record)
    xs = [synthetic_metrics("HingeABL", s)["test"]["macro_Ign_F1"] for s in (1, 5, 42)]
    mean, std = hand_mean_std(xs)
    assert t[1]["macro_Ign_F1_mean"] == pytest.approx(mean, abs=1e-12) and t[1][
        "macro_Ign_F1_std"
    ] == pytest.approx(std, abs=1e-12)
    assert (t[1]["paper_macro_F1"], t[1]["paper_macro_Ign_F1"]) == (64.13, 61.34)


def test_hinge_minus_atl_by_hand(record):
    rec = {
        **record,
        "runs": [
            r for r in record["runs"] if not (r["loss"] == "ATL" and r["seed"] == 42)
        ],
    }
    t = R.paired_difference(rec)
    assert [r["seed"] for r in t] == [1, 5]  # seed 42 has no ATL run: not paired
    d = [
        synthetic_metrics("HingeABL", s)["test"]["F1"]
        - synthetic_metrics("ATL", s)["test"]["F1"]
        for s in (1, 5)
    ]
    assert [r["d_F1"] for r in t] == pytest.approx(d, abs=1e-12)
    mean, std = hand_mean_std(d)
    assert t.summary["d_F1_mean"] == pytest.approx(mean, abs=1e-12) and t.summary[
        "d_F1_std"
    ] == pytest.approx(std, abs=1e-12)
    assert t.paper == {
        "d_F1": pytest.approx(75.15 - 73.29),
        "d_Ign_F1": pytest.approx(73.84 - 72.46),
    }
    with pytest.raises(ValueError, match="no AFL runs"):
        R.paired_difference(rec, a="AFL")


def test_tables_name_the_run(record):
    md = R.tables_markdown(record)
    for needle in (
        "Table 3",
        "Table 4",
        "Table 7",
        "HingeABL − ATL",
        "synthetic-device",
        "synthetic test protocol",
    ):
        assert needle in md


@pytest.mark.needs("paper")
def test_paper_constants_match_the_paper():
    "PAPER_TABLE3/7 against the rows of the paper's text (tools/resources.py)."
    text = re.sub(r"</?b>", "", resources.find("paper").read_text())
    rows = re.findall(
        r"^(ATL|Balanced Softmax|AML|AFL|SAT|MeanSAT|HingeABL)[^\t]*"
        r"\t([\d.]+%?)\t([\d.]+%?)(?:\t([\d.]+%?))?$",
        text,
        re.M,
    )
    t3, t4, t7 = rows[:7], rows[7:12], rows[12:19]
    for table, got, cols in (
        (R.PAPER_TABLE3, t3, ("F1", "Ign_F1")),
        (R.PAPER_TABLE7, t7, ("macro_F1", "macro_Ign_F1")),
        (R.PAPER_TABLE4, t4, PATTERN_KEYS),
    ):
        assert len(got) == len(table)
        for name, *vals in got:
            assert R.paper_row(table, name) == {
                c: float(v.rstrip("%")) for c, v in zip(cols, vals)
            }


# ---------------------------------------------------------------- figure 1


def test_figure1_table_by_hand(record):
    rec = {
        **record,
        "runs": [
            dict(
                r,
                thresholds={
                    "n_gold": 4,
                    "gold_below": 0.25 * (r["seed"] % 4),
                    "s_th": {"mean": 0.0, "median": float(r["seed"])},
                },
            )
            for r in record["runs"]
        ],
    }
    t = R.figure1_table(rec)
    assert t[0]["median_s_th_mean"] == pytest.approx(hand_mean_std([1.0, 5.0, 42.0])[0])
    assert t[0]["gold_below_mean"] == pytest.approx(
        hand_mean_std([25.0, 25.0, 50.0])[0]
    )
    assert t[1]["FN_CRK_mean"] == pytest.approx(
        hand_mean_std(
            [
                synthetic_metrics("HingeABL", s)["dev"]["patterns"]["FN_CRK"]
                for s in (1, 5, 42)
            ]
        )[0]
    )
    assert (t[0]["paper_FN_CRK"], t[1]["paper_FN_CRK"]) == (3192, None)


# ---------------------------------------------------------------- command line


def cli_fails(capsys, argv):
    try:
        code = cli.compare_main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    assert code == 2
    return capsys.readouterr().err


def test_cli_argument_errors(capsys, fake, tmp_path):
    base = ["--seeds", "1", "--out", str(tmp_path / "g")]
    assert "unknown loss 'Focal'; allowed: ATL" in cli_fails(
        capsys, ["--preset", "smoke", "--losses", "ATL", "Focal", *base]
    )
    assert "unknown preset 'fast'; allowed: paper, reduced, smoke" in cli_fails(
        capsys, ["--preset", "fast", "--losses", "ATL", *base]
    )
    assert "hingeabl-lab" in cli_fails(capsys, ["--preset", "lab", *base])
    assert "invalid int value: 'x'" in cli_fails(
        capsys, ["--preset", "smoke", "--losses", "ATL", "--seeds", "x", "--out", "o"]
    )
    assert "--out" in cli_fails(
        capsys, ["--preset", "smoke", "--losses", "ATL", "--seeds", "1"]
    )
    assert "--epochs must be >= 1" in cli_fails(
        capsys, ["--preset", "smoke", "--losses", "ATL", "--epochs", "0", *base]
    )
    assert "--max-train-docs must be >= 1" in cli_fails(
        capsys,
        ["--preset", "smoke", "--losses", "ATL", "--max-train-docs", "-2", *base],
    )
    assert "duplicate loss" in cli_fails(
        capsys, ["--preset", "smoke", "--losses", "ATL", "ATL", *base]
    )
    assert fake.calls == [] and not (tmp_path / "g").exists()


def test_cli_writes_tables_and_record(capsys, fake, tmp_path):
    out, dest = tmp_path / "grid", tmp_path / "results" / "reduced-{device}.json"
    cli.compare_cli(
        [
            "--preset",
            "smoke",
            "--losses",
            "ATL",
            "HingeABL",
            "--seeds",
            "1",
            "5",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--model",
            "tiny",
            "--max-eval-docs",
            "3",
            "--record",
            str(dest),
        ]
    )
    printed = capsys.readouterr().out
    assert "Table 3" in printed and "Table 4" in printed and "Table 7" in printed
    md = (out / "tables.md").read_text()  # the same tables: Markdown in the file,
    assert "| --- |" in md and "| --- |" not in printed  # aligned text on the terminal
    rec = G.load_record(tmp_path / "results" / "reduced-synthetic-device.json")
    assert rec == json.loads((out / "grid.json").read_text()) and len(rec["runs"]) == 4
    assert all(
        t.to_text() in printed and t.to_markdown() in md for t in R.record_tables(rec)
    )
    assert rec["command"].endswith("--model tiny --max-eval-docs 3 --epochs 1")
    assert [c[0].max_eval_docs for c in fake.configs] == [3] * 4
    # the recorded command reruns the grid: nothing left to train
    cli.compare_cli(shlex.split(rec["command"])[1:])
    assert len(fake.calls) == 4  # the second call trained nothing


# ---------------------------------------------------------------- one real grid


def test_real_smoke_grid(tmp_path):
    """The real trainer, smoke preset: 2 losses x 1 seed x 1 epoch on a few sample
    documents.
    """
    torch.set_num_threads(1)
    t = time.time()
    res = G.run_grid(
        "smoke",
        ["ATL", "HingeABL"],
        [1],
        tmp_path,
        epochs=1,
        max_train_docs=8,
        max_eval_docs=8,
    )
    rec = G.collect_runs(tmp_path)
    assert [(r["loss"], r["seed"]) for r in rec["runs"]] == [
        ("ATL", 1),
        ("HingeABL", 1),
    ]
    assert [r["test"]["F1"] for r in rec["runs"]] == [r["test"]["F1"] for r in res]
    assert all(
        0 <= r["test"]["F1"] <= 100 and r["wall_seconds"] > 0 for r in rec["runs"]
    )
    assert "smoke" in rec["protocol"].lower() or "plumbing" in rec["protocol"].lower()
    saved = torch.load(tmp_path / "ATL-s1" / "test_logits.pt")
    logits, labels = saved["logits"].float(), saved["labels"].float()
    assert logits.shape == labels.shape and logits.shape[1] == 97
    th = rec["runs"][0]["thresholds"]
    gaps = [
        float(logits[i, j] - logits[i, 0])
        for i in range(len(labels))
        for j in range(1, 97)
        if labels[i, j] == 1
    ]
    assert th["n_gold"] == len(gaps) and sum(th["gap_hist"]["counts"]) == len(gaps)
    assert th["gold_below"] == pytest.approx(sum(g <= 0 for g in gaps) / len(gaps))
    assert len(R.table3(rec)) == 2 and len(R.paired_difference(rec)) == 1
    assert time.time() - t < 60


def test_real_interrupted_cell_resumes(tmp_path):
    """A cell killed after epoch 1 (real trainer) is finished by run_grid through the
    trainer's checkpoint.
    """
    torch.set_num_threads(1)
    over = dict(epochs=2, max_train_docs=4, max_eval_docs=4)
    cfg = train.resolve_config("smoke", loss="HingeABL", seed=3, **over)
    train.run_training(cfg, tmp_path / "HingeABL-s3", stop_after=1)
    assert not (tmp_path / "HingeABL-s3" / "metrics.json").exists()
    assert len(G.read_log(tmp_path / "HingeABL-s3")) == 1
    (res,) = G.run_grid("smoke", ["HingeABL"], [3], tmp_path, **over)
    assert not res["skipped"] and [
        l["epoch"] for l in G.read_log(tmp_path / "HingeABL-s3")
    ] == [1, 2]
    assert [l["epoch"] for l in res["history"]] == [1, 2]


def test_parallel_jobs_train_every_cell(tmp_path):
    """jobs=2: two cells trained in separate processes; the record equals one trained
    cell by cell.
    """
    over = dict(epochs=1, max_train_docs=4, max_eval_docs=2)
    par = G.run_grid(
        "smoke", ["ATL", "HingeABL"], [1], tmp_path / "par", jobs=2, **over
    )
    seq = G.run_grid("smoke", ["ATL", "HingeABL"], [1], tmp_path / "seq", **over)
    assert [(r["loss"], r["skipped"]) for r in par] == [
        ("ATL", False),
        ("HingeABL", False),
    ]
    for a, b in zip(par, seq):
        assert a["test"]["F1"] == pytest.approx(b["test"]["F1"], abs=1e-9)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        G.run_grid("smoke", ["ATL"], [1], tmp_path / "x", jobs=0)
    # a damaged checkpoint of a cut cell is refused before any cell trains
    cell = tmp_path / "par" / "HingeABL-s1"
    (cell / "metrics.json").unlink()
    (cell / "checkpoint" / "last.pt").write_text("cut")
    with pytest.raises(ValueError, match="HingeABL-s1 .checkpoint .* is damaged"):
        G.run_grid("smoke", ["ATL", "HingeABL"], [1], tmp_path / "par", 2, **over)
    # a cell whose process fails is reported with its log; the other cells' results stay
    shutil.rmtree(cell / "checkpoint")  # its log.jsonl stays: a run it cannot resume
    ends = []
    with pytest.raises(RuntimeError, match=r"1 cell\(s\) failed: HingeABL-s1"):
        G.run_grid(
            "smoke",
            ["ATL", "HingeABL"],
            [1],
            tmp_path / "par",
            2,
            None,
            ends.append,
            **over,
        )
    assert "Traceback" in (tmp_path / "par" / "HingeABL-s1" / "console.log").read_text()
    assert len(ends) == 2  # after the cell, and once more at the end of the grid
    assert ends[-1].failed == [("HingeABL", 1)] and ends[-1].skipped == [("ATL", 1)]


def test_mean_std_of_undefined_ratios_is_nan_not_a_crash():
    import math

    from hingeabl_nb.reproduce import mean_std

    mean, std = mean_std([math.nan, math.nan, math.nan])
    assert math.isnan(mean) and math.isnan(std)
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and abs(std - 1.0) < 1e-12

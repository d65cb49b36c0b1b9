"""Tests of hingeabl_nb.train.

Presets, CLI, end-to-end smoke runs, determinism and resume.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import cli, data
from hingeabl_nb import train as T
from hingeabl_nb.losses import LOSSES

torch.set_num_threads(1)
TINY = dict(
    epochs=2, max_train_docs=6, max_eval_docs=3, progress=False
)  # a few seconds on one core


def exit_message(argv):
    """Run the console script in-process, expect exit status 2 and a message (not a
    traceback) on stderr; return the message.
    """
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.train_main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code
    assert code == 2 and "Traceback" not in err.getvalue(), err.getvalue()
    return err.getvalue()


# ---- configuration -------------------------------------------------------------------


def test_paper_preset_data_encoder_and_seeds():
    c = T.resolve_config("paper")
    # Appendix B + Jize-W/HingeABL scripts/train_*.sh and train.py defaults (facts, not
    # measurements)
    assert (c.encoder, c.train_file, c.dev_file, c.test_file) == (
        "bert-base-cased",
        "train_revised.json",
        "dev_revised.json",
        "test_revised.json",
    )
    # epochs, batch sizes, learning rates, warm-up and clipping: checked in 09_train
    assert (c.max_seq_length, c.top_k, c.loss) == (1024, 4, "HingeABL")
    assert (
        T.PAPER_SEEDS == (1, 5, 42, 66, 233)
        and c.mixed_precision == "official"  # fp16 autocast + grad scaler on a GPU
        and not c.split_dev_for_train
    )
    json.dumps(T.dataclasses.asdict(c))  # JSON-serialisable


def test_reduced_preset_is_labelled_and_splits_dev():
    c = T.resolve_config("reduced")
    assert (
        "reduced protocol" in c.protocol.lower()
        and c.split_dev_for_train
        and c.n_holdout == 100
    )
    assert (c.lr, c.head_lr, c.train_batch_size, c.warmup_ratio) == (
        5e-5,
        1e-4,
        4,
        0.06,
    )
    if Path(c.encoder).is_dir():
        assert (Path(c.encoder) / "config.json").is_file()


def test_overrides_and_errors():
    c = T.resolve_config(
        "smoke",
        loss="HingeABL",
        seed=7,
        epochs=None,
        loss_options={"margin": 2.0, "normalize": "joint"},
    )
    assert (c.loss, c.seed, c.epochs, c.loss_options) == (
        "HingeABL",
        7,
        T.PRESETS["smoke"].epochs,
        {"margin": 2.0, "normalize": "joint"},
    )
    assert (
        T.PRESETS["smoke"].loss == "HingeABL" and T.PRESETS["smoke"].loss_options == {}
    )  # preset untouched
    assert (
        T.resolve_config("smoke").loss_options is not T.PRESETS["smoke"].loss_options
    )  # no shared dict
    assert not hasattr(
        c, "margin"
    )  # no loss-specific config field: options live in loss_options
    with pytest.raises(T.TrainSetupError, match="epochs"):
        T.resolve_config("smoke", epoch=3)
    with pytest.raises(T.TrainSetupError, match="paper, reduced, smoke"):
        T.resolve_config("quick")


def test_encoder_layers_checked_and_the_lab_is_not_a_preset():
    assert T.resolve_config("paper").encoder_layers == 0
    with pytest.raises(T.TrainSetupError, match="encoder_layers=-1"):
        T.check_config(T.resolve_config("smoke", encoder_layers=-1))
    with pytest.raises(T.TrainSetupError, match="tiny encoder has 2"):
        T.check_config(T.resolve_config("smoke", encoder_layers=3))
    with pytest.raises(T.TrainSetupError, match="its own command, hingeabl-lab"):
        T.resolve_config("lab")


def test_fit_passes_loss_options():
    """fit computes LOSSES[config.loss] with config.loss_options: a margin change
    changes the loss it reports.
    """
    X = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    Y = torch.zeros(8, 5)
    Y[:, 1] = 1

    def run(opts):
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 5)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        cfg = T.TrainConfig(
            loss="HingeABL", loss_options=opts, epochs=1, progress=False
        )
        return T.fit(
            net, opt, sch, cfg, lambda e: [torch.arange(8)], lambda i: (net(X[i]), Y[i])
        )[0], net

    (l5, net), (l1, _) = run({}), run({"margin": 1.0})
    assert l5 == pytest.approx(
        LOSSES["HingeABL"].fn(net(X).detach(), Y, margin=5.0).item(), abs=1e-6
    )
    assert l1 == pytest.approx(
        LOSSES["HingeABL"].fn(net(X).detach(), Y, margin=1.0).item(), abs=1e-6
    ) and l1 != pytest.approx(l5)


def test_loss_option_validation():
    T.check_config(T.resolve_config("smoke", loss="AFL", loss_options={"gamma": 2.0}))
    with pytest.raises(T.TrainSetupError, match="has no option"):
        T.check_config(
            T.resolve_config("smoke", loss="ATL", loss_options={"gamma": 2.0})
        )


def test_mixed_precision_choice():
    assert T.choose_mixed_precision("auto", cuda=False) == "no"
    assert T.choose_mixed_precision("auto", cuda=True, bf16_supported=False) == "fp16"
    assert T.choose_mixed_precision("auto", cuda=True, bf16_supported=True) == "bf16"
    with pytest.raises(T.TrainSetupError, match="CUDA"):
        T.choose_mixed_precision("fp16", cuda=False)


def test_warmup_steps_rounds_down():
    for total in (1, 16, 17, 100, 22890):
        assert (
            T.warmup_steps(total) == (total * 6) // 100
        )  # integer arithmetic, independent of float rounding


# ---- CLI -----------------------------------------------------------------------------


def test_print_config(capsys):
    assert (
        cli.train_cli(
            [
                "--preset",
                "paper",
                "--loss",
                "SAT",
                "--seed",
                "42",
                "--epochs",
                "3",
                "--print-config",
            ]
        )
        is None
    )
    printed = json.loads(capsys.readouterr().out)
    assert (printed["loss"], printed["seed"], printed["epochs"], printed["preset"]) == (
        "SAT",
        42,
        3,
        "paper",
    )
    assert set(printed) == {f.name for f in T.dataclasses.fields(T.TrainConfig)}


def test_print_config_subprocess():
    "The same through a fresh interpreter, as the console script runs it."
    code = "import sys; from hingeabl_nb.cli import train_main; sys.exit(train_main())"
    r = subprocess.run(
        [sys.executable, "-c", code, "--preset", "reduced", "--print-config"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["split_dev_for_train"] is True


def test_cli_loss_option(capsys):
    cli.train_cli(
        [
            "--preset",
            "smoke",
            "--loss",
            "AFL",
            "--loss-option",
            "gamma=2",
            "--loss-option",
            "focal_form=paper",
            "--print-config",
        ]
    )
    assert json.loads(capsys.readouterr().out)["loss_options"] == {
        "gamma": 2,
        "focal_form": "paper",
    }
    msg = exit_message(["--loss", "ATL", "--loss-option", "margin=3", "--print-config"])
    assert "ATL has no option(s) ['margin']" in msg
    assert "expected NAME=VALUE" in exit_message(
        ["--loss-option", "margin", "--print-config"]
    )


def test_cli_unknown_loss_lists_allowed():
    msg = exit_message(["--loss", "Focal", "--print-config"])
    assert "Focal" in msg and all(k in msg for k in LOSSES)


def test_cli_missing_encoder(tmp_path):
    msg = exit_message(
        [
            "--preset",
            "smoke",
            "--model",
            str(tmp_path / "no-encoder"),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert "no-encoder" in msg and "--model PATH" in msg


def test_cli_missing_data_file_paper(tmp_path):
    msg = exit_message(
        [
            "--preset",
            "paper",
            "--model",
            "tiny",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert (
        "train_revised.json" in msg
        and str(tmp_path.resolve()) in msg
        and "download_redocred" in msg
    )


def test_cli_missing_test_file(tmp_path):
    (tmp_path / "train.json").write_text((data.sample_dir() / "train.json").read_text())
    (tmp_path / "dev.json").write_text((data.sample_dir() / "dev.json").read_text())
    msg = exit_message(
        [
            "--preset",
            "smoke",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert "test.json not found" in msg and str(tmp_path.resolve()) in msg


def test_cli_reduced_without_shared_files(tmp_path, monkeypatch):
    "Far from any shared/ folder, the reduced preset names what it could not find."
    shared = data.locate_redocred()  # found from the repository, before we leave it
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HINGEABL_DATA", raising=False)
    c = T.resolve_config("reduced")
    assert c.data_dir == "" and c.encoder == "minilm-l6-h384-uncased"
    msg = exit_message(["--preset", "reduced", "--out", str(tmp_path / "run")])
    assert "dev_revised.json" in msg and "--data-dir" in msg
    if shared is not None and (Path(shared) / "dev_revised.json").exists():
        msg = exit_message(
            [
                "--preset",
                "reduced",
                "--data-dir",
                str(shared),
                "--out",
                str(tmp_path / "run"),
            ]
        )
        assert "minilm-l6-h384-uncased" in msg and "--model PATH" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_cuda_without_cuda(tmp_path):
    msg = exit_message(
        ["--preset", "smoke", "--device", "cuda", "--out", str(tmp_path)]
    )
    assert "no CUDA device" in msg


def test_cli_requires_out():
    assert "--out" in exit_message(["--preset", "smoke"])


# ---- end-to-end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    cfg = T.resolve_config("smoke", loss="HingeABL", seed=3, **TINY)
    return cfg, out, T.run_training(cfg, out)


def test_smoke_outputs(smoke_run):
    cfg, out, res = smoke_run
    m = json.loads((out / "metrics.json").read_text())
    assert {"dev", "test", "wall_seconds", "device", "config", "protocol"} <= set(m)
    assert m["config"] == T.dataclasses.asdict(cfg) and m["protocol"] == cfg.protocol
    for split in ("dev", "test"):
        assert {"F1", "Ign_F1", "macro_F1", "macro_Ign_F1", "P", "R"} <= set(m[split])
        assert all(
            0.0 <= m[split][k] <= 100.0
            for k in ("F1", "Ign_F1", "macro_F1", "macro_Ign_F1", "P", "R")
        )
        pats = m[split]["patterns"]
        assert {"TP", "TN", "FP", "FN_CRK", "FN_IRK"} <= set(pats)
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in log] == [1, 2]
    assert {
        "epoch",
        "step",
        "train_loss",
        "dev_F1",
        "dev_Ign_F1",
        "lr",
        "seconds",
    } <= set(log[0])
    assert m["dev"]["F1"] == pytest.approx(
        max(l["dev_F1"] for l in log)
    )  # dev = best epoch
    # test logits: one row per pair of every test document, float16 logits and uint8
    # labels
    tl = torch.load(out / "test_logits.pt")
    docs = data.load_docs(data.sample_dir() / "test.json")[: TINY["max_eval_docs"]]
    n_pairs = sum(len(d["vertexSet"]) * (len(d["vertexSet"]) - 1) for d in docs)
    assert (
        tl["logits"].shape == (n_pairs, 97)
        and tl["logits"].dtype == torch.float16
        and tl["labels"].dtype == torch.uint8
    )
    assert tl["titles"] == [d["title"] for d in docs]
    gold = sum(len({(l["h"], l["t"]) for l in d["labels"]}) for d in docs)
    assert (
        int((tl["labels"][:, 1:].sum(1) > 0).sum()) == gold
    )  # pairs with a relation, counted from the raw files
    assert sum(pats[k] for k in ("TP", "TN", "FP", "FN_CRK", "FN_IRK")) == n_pairs


def test_lr_schedule_logged(smoke_run):
    "The logged lr after each epoch follows warm-up + linear decay, computed by hand."
    cfg, out, res = smoke_run
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    total = log[-1]["step"]
    warm = int(total * 0.06)
    for l in log:
        t = l["step"]
        lam = t / warm if t < warm else max(0.0, (total - t) / (total - warm))
        assert l["lr"] == pytest.approx(cfg.lr * lam, abs=1e-12)


def test_test_logits_come_from_best_checkpoint(smoke_run):
    """Reload best.pt into a fresh model and recompute the test logits one document at a
    time.
    """
    cfg, out, res = smoke_run
    tok = T.load_tokenizer(cfg)
    rel2id = data.load_rel2id()
    docs = data.load_docs(data.sample_dir() / "test.json")[: TINY["max_eval_docs"]]
    feats = data.featurize(
        docs, tok, rel2id, max_len=cfg.max_seq_length, progress=False
    )
    best = Path(res["best_checkpoint"])
    assert (
        best.parent == out / "checkpoint"
        and best.name == f"best-epoch{res['best_epoch']}.pt"
    )
    assert sorted(p.name for p in best.parent.glob("best-*.pt")) == [
        best.name
    ]  # stale best files removed
    model = T.build_model(cfg, tok)
    model.load_state_dict(torch.load(best))
    model.eval()
    rows = []
    with torch.no_grad():
        for f in feats:
            ids = torch.tensor([f["input_ids"]])
            mask = torch.ones(1, len(f["input_ids"]))
            rows.append(model(ids, mask, [f["entity_pos"]], [f["hts"]]).float())
    ref = torch.cat(rows)
    torch.testing.assert_close(
        torch.load(out / "test_logits.pt")["logits"].float(), ref, atol=2e-2, rtol=2e-3
    )


def test_determinism_same_seed(smoke_run, tmp_path):
    cfg, out, res = smoke_run
    again = T.run_training(cfg, tmp_path / "again")
    for a, b in zip(res["history"], again["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-9)
        assert a["dev_F1"] == pytest.approx(b["dev_F1"], abs=1e-9)
    torch.testing.assert_close(
        torch.load(out / "test_logits.pt")["logits"],
        torch.load(tmp_path / "again" / "test_logits.pt")["logits"],
        atol=0,
        rtol=0,
    )
    other = T.run_training(T.dataclasses.replace(cfg, seed=4), tmp_path / "other")
    assert other["history"][0]["train_loss"] != pytest.approx(
        res["history"][0]["train_loss"], abs=1e-6
    )


def test_resume_equals_uninterrupted(smoke_run, tmp_path):
    cfg, out, res = smoke_run
    part = T.run_training(cfg, tmp_path / "run", stop_after=1)  # "killed" after epoch 1
    assert part["epoch"] == 1 and not (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "checkpoint" / "last.pt").exists()
    assert not list((tmp_path / "run" / "checkpoint").glob("*.tmp"))
    # a kill after writing epoch 2's best model but before its last.pt leaves a stale
    # best file behind
    torch.save(
        {"not": torch.zeros(1)}, tmp_path / "run" / "checkpoint" / "best-epoch2.pt"
    )
    (tmp_path / "run" / "log.jsonl").write_text(
        ""
    )  # ... or a kill after last.pt but before the log line
    resumed = T.run_training(cfg, tmp_path / "run")
    assert [l["epoch"] for l in resumed["history"]] == [1, 2]
    for a, b in zip(res["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-9) and a[
            "lr"
        ] == pytest.approx(b["lr"], abs=1e-15)
        assert a["dev_F1"] == pytest.approx(b["dev_F1"], abs=1e-9)
    for k in ("F1", "Ign_F1", "macro_F1", "P", "R"):
        assert resumed["test"][k] == pytest.approx(res["test"][k], abs=1e-9)
    torch.testing.assert_close(
        torch.load(out / "test_logits.pt")["logits"],
        torch.load(tmp_path / "run" / "test_logits.pt")["logits"],
        atol=0,
        rtol=0,
    )
    assert [p.name for p in (tmp_path / "run" / "checkpoint").glob("best-*.pt")] == [
        Path(resumed["best_checkpoint"]).name
    ]
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in log] == [1, 2]  # no duplicated epoch line


def test_resume_refuses_other_config(smoke_run, tmp_path):
    cfg, out, res = smoke_run
    T.run_training(cfg, tmp_path / "run", stop_after=1)
    with pytest.raises(T.TrainSetupError, match="different config"):
        T.run_training(T.dataclasses.replace(cfg, seed=99), tmp_path / "run")


@pytest.mark.needs("redocred", "minilm")
def test_reduced_preset_runs_with_pretrained_minilm(tmp_path):
    """The reduced protocol end to end on a handful of documents: MiniLM weights, dev
    split, test_revised.
    """
    cfg = T.resolve_config(
        "reduced",
        epochs=1,
        max_train_docs=4,
        max_eval_docs=2,
        train_batch_size=2,
        test_batch_size=2,
        progress=False,
    )
    assert Path(cfg.encoder).is_dir() and cfg.data_dir  # as the library finds them
    res = T.run_training(cfg, tmp_path / "run")
    assert (
        res["protocol"].lower().startswith("reduced protocol")
        and res["history"][0]["step"] == 2
    )
    train_docs, dev_docs = data.split_docs(
        data.load_docs(Path(cfg.data_dir) / "dev_revised.json"), n_holdout=100, seed=0
    )
    tl = torch.load(tmp_path / "run" / "test_logits.pt")
    test_docs = data.load_docs(Path(cfg.data_dir) / "test_revised.json")[:2]
    assert tl["titles"] == [d["title"] for d in test_docs]
    assert not {d["title"] for d in train_docs[:4]} & {
        d["title"] for d in dev_docs
    }  # the split is disjoint

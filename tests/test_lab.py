"""Tests of hingeabl_nb.lab and hingeabl_nb.labcache.

Protocol choice, feature cache, head training, the lab record and the CLI (offline, tiny
encoder).
"""

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import cli, data, metrics, records, reproduce
from hingeabl_nb import lab as L
from hingeabl_nb import labcache as C
from hingeabl_nb.losses import LOSSES, predict
from hingeabl_nb.runs import TrainSetupError

torch.set_num_threads(1)
RESULTS = Path(__file__).resolve().parents[1] / "nbs" / "results"
FAST = dict(
    epochs=2, batch_pairs=256, emb_size=32, block_size=8, progress=False
)  # LabConfig fields changed from the lab's defaults


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A random tiny BERT with the package's tokenizer, saved as an encoder folder."
    return L.save_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


@pytest.fixture(scope="module")
def split_dev_dir(tmp_path_factory):
    """A data folder without a train file: dev_revised.json (the 32+8 sample docs) and
    test_revised.json.
    """
    d = tmp_path_factory.mktemp("redocred")
    docs = [
        doc
        for f in ("train.json", "dev.json")
        for doc in json.loads((data.sample_dir() / f).read_text())
    ]
    (d / "dev_revised.json").write_text(json.dumps(docs))
    shutil.copy(data.sample_dir() / "test.json", d / "test_revised.json")
    return d


def test_lab_files_protocols(split_dev_dir, tmp_path):
    assert L.lab_files(data.sample_dir())["protocol"] == "train-dev-test"
    assert (
        L.lab_files(split_dev_dir)["protocol"] == "split-dev"
        and L.lab_files(split_dev_dir)["train"] is None
    )
    with pytest.raises(FileNotFoundError, match="no test file"):
        (tmp_path / "dev_revised.json").write_text("[]")
        L.lab_files(tmp_path)


def test_pairs_key_follows_the_features_it_encodes(tiny):
    "The pooled features' key follows the featurisation, and only what changes it."
    docs = data.load_docs(data.sample_dir() / "dev.json")
    fp, rel2id, tok = (
        C.encoder_fingerprint(tiny),
        data.load_rel2id(),
        data.tiny_tokenizer(),
    )

    def key(**kw):
        return C.pairs_cache_key(fp, data.features_cache_key(docs, tok, rel2id, **kw))

    assert key(max_len=512) == key(max_len=512, seed=3)  # every NA pair kept: no seed
    assert key(max_len=512) != key(max_len=256)
    assert key() != C.pairs_cache_key(
        fp, data.features_cache_key(docs[1:], tok, rel2id)
    )


def test_train_head_is_seeded_and_learns(tiny, tmp_path):
    lab = L.load_lab_data(
        tiny, data.sample_dir(), tmp_path / "cache", max_len=512, progress=False
    )
    cfg = L.LabConfig(loss="HingeABL", seed=3, lr=5e-3, **{**FAST, "epochs": 3})
    h1, hist1 = L.train_head(lab["pairs"]["train"], lab["pairs"]["dev"], cfg)
    h2, hist2 = L.train_head(lab["pairs"]["train"], lab["pairs"]["dev"], cfg)
    assert [x["train_loss"] for x in hist1] == [x["train_loss"] for x in hist2]
    assert hist1[-1]["train_loss"] < hist1[0]["train_loss"]
    best = max(hist1, key=lambda x: x["dev_F1"])
    dev = lab["pairs"]["dev"]
    assert L.dev_f1(
        L.head_logits(h1, dev, matmul=cfg.matmul), dev["labels"].float(), "TH"
    ) == pytest.approx(best["dev_F1"])  # best epoch kept
    with pytest.raises(ValueError, match="allowed"):
        L.train_head(lab["pairs"]["train"], dev, dataclasses.replace(cfg, loss="Hinge"))


def every_loss_on_the_sample(tiny, tmp_path, matmul: str) -> tuple:
    "The sample's train/dev/test pair sets and one quick config per loss (seed 3)."
    lab = L.load_lab_data(
        tiny, data.sample_dir(), tmp_path / "cache", max_len=512, progress=False
    )
    tr, dev, test = (lab["pairs"][k] for k in ("train", "dev", "test"))
    base = L.LabConfig(seed=3, lr=5e-3, matmul=matmul, **{**FAST, "batch_pairs": 1024})
    return tr, dev, test, [dataclasses.replace(base, loss=n) for n in LOSSES]


def test_lockstep_equals_one_at_a_time(tiny, tmp_path):
    """Every loss trained in lockstep (`train_heads`, one HeadStack) ends where
    `train_head` ends training it alone: the same logits (float32, up to the order of
    sums), weights, losses and dev F1. Few steps: the hinges of AML and HingeABL turn
    float32 rounding into runs that drift apart after some tens of steps."""
    tr, dev, test, configs = every_loss_on_the_sample(tiny, tmp_path, "float32")
    stack, histories = L.train_heads(tr, dev, configs)
    together = L.lockstep.stack_logits(stack, test)
    for r, cfg in enumerate(configs):
        head, alone = L.train_head(tr, dev, cfg)
        torch.testing.assert_close(
            together[r], L.head_logits(head, test), rtol=1e-3, atol=1e-3
        )  # HingeABL, the farthest apart: 3e-4 after these 24 steps
        for name, w in head.state_dict().items():
            torch.testing.assert_close(
                stack.head(r).state_dict()[name], w, rtol=1e-3, atol=1e-4
            )
        for a, b in zip(alone, histories[r], strict=True):
            assert a["epoch"] == b["epoch"] and a["train_loss"] == pytest.approx(
                b["train_loss"], rel=1e-5
            ), cfg.loss
            assert a["dev_F1"] == pytest.approx(b["dev_F1"], abs=0.2), cfg.loss
    with pytest.raises(ValueError, match="share seed"):
        L.train_heads(tr, dev, [configs[0], dataclasses.replace(configs[0], seed=4)])


def test_dev_f1_equals_official_scorer(tiny, tmp_path):
    lab = L.load_lab_data(
        tiny, data.sample_dir(), tmp_path / "cache", max_len=512, progress=False
    )
    ps = lab["pairs"]["test"]
    torch.manual_seed(0)
    logits = torch.randn(ps["labels"].shape) + 3 * ps["labels"].float()
    tri = metrics.to_official(
        predict(logits), C.doc_features(ps), data.id2rel(lab["rel2id"])
    )
    assert L.dev_f1(logits, ps["labels"].float()) == pytest.approx(
        100 * metrics.official_scores(tri, lab["docs"]["test"])["F1"], abs=1e-9
    )


def test_run_lab_split_dev_record_and_cache(tiny, split_dev_dir, tmp_path):
    cache = tmp_path / "cache"
    threads_before = torch.get_num_threads()
    res = L.run_lab(
        tiny,
        split_dev_dir,
        tmp_path / "out",
        losses=["ATL", "BalancedSoftmax", "HingeABL"],
        seeds=[0, 1],
        cache_dir=cache,
        n_holdout=8,
        max_seq_length=512,
        num_threads=1,
        **FAST,
    )
    rec = records.load_record(tmp_path / "out" / "grid.json")  # an ordinary grid record
    assert rec == res and rec["preset"] == "lab" and rec["incomplete"] == []
    assert [(r["loss"], r["seed"]) for r in rec["runs"]] == [
        (l, s) for s in (0, 1) for l in ("ATL", "BalancedSoftmax", "HingeABL")
    ]
    n = rec["details"]["n"]
    assert (n["train"], n["dev"], n["test"]) == (32, 8, 8)
    assert (
        rec["protocol"].startswith("Reduced protocol (NOT the paper's")
        and "split-dev: train on 32" in rec["protocol"]
    )
    split = L.load_lab_data(
        tiny, split_dev_dir, cache, n_holdout=8, max_len=512, progress=False
    )["docs"]
    train_titles, dev_titles = (
        {d["title"] for d in split[k]} for k in ("train", "dev")
    )
    assert not train_titles & dev_titles  # no document both trained on and selected on
    for r in rec["runs"]:
        for sp in ("dev", "test"):
            assert {"F1", "Ign_F1", "macro_F1", "patterns"} <= set(r[sp]), r[sp].keys()
            assert 0 <= r[sp]["Ign_F1"] <= r[sp]["F1"] + 1e-9 <= 100 + 1e-9
        assert len(r["history"]) == FAST["epochs"] and r["wall_seconds"] > 0
        assert r["cpu_seconds"] > 0 and all(h["dev_seconds"] >= 0 for h in r["history"])
        assert r["thresholds"]["threshold"] == LOSSES[r["loss"]].threshold
        o = r["dev_offset"]
        assert o["F1_at_b_f1"] >= o["F1_at_0"] - 1e-9 and -10 <= o["b_f1"] <= 10
    bs = next(r for r in rec["runs"] if r["loss"] == "BalancedSoftmax")["thresholds"]
    assert (
        bs["s_th"]["median"] == 0.0
    )  # Balanced Softmax is scored against the constant threshold 0
    test_docs = json.loads((split_dev_dir / "test_revised.json").read_text())
    gold = sum(len({(l["h"], l["t"], l["r"]) for l in d["labels"]}) for d in test_docs)
    assert (
        rec["runs"][0]["thresholds"]["n_gold"] == gold
    )  # every gold relation of the test file
    t = rec["details"]["timings"]
    assert t["cache_hit"] == {"dev": False, "test": False} and t["peak_rss_mb"] > 0
    assert t["cold"] and t["total_cpu_s"] > 0 and len(t["load_avg"]) == 2
    again = L.run_lab(
        tiny,
        split_dev_dir,
        tmp_path / "out2",
        losses=["ATL"],
        seeds=[0],
        cache_dir=cache,
        n_holdout=8,
        max_seq_length=512,
        num_threads=1,
        **FAST,
    )
    assert again["details"]["timings"]["cache_hit"] == {"dev": True, "test": True}
    assert not again["details"]["timings"]["cold"]
    assert (
        again["runs"][0]["test"]["F1"] == res["runs"][0]["test"]["F1"]
    )  # same features, same seed: same run
    assert [r["loss"] for r in reproduce.table3(rec)] == [
        "ATL",
        "BalancedSoftmax",
        "HingeABL",
    ]  # notebook 11 reads it as is
    assert torch.get_num_threads() == threads_before  # the lab's settings undone
    assert (torch.tensor([1e-39]) * 1.0).item() > 0  # denormals kept again


def test_cpu_settings_flush_every_thread_of_a_fresh_process():
    "What `hingeabl-lab` gets: threads started inside the block inherit the flush."
    code = (
        "import torch\n"
        "from hingeabl_nb.lockstep import cpu_settings\n"
        "with cpu_settings(2):\n"
        "    x = torch.full((1_000_000,), 1e-39) * 1.0\n"  # split over both threads
        "print(int((x == 0).sum()), int(x.numel()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    zeros, n = map(int, out.stdout.split())
    assert zeros == n  # every element, whichever thread computed it


def test_encoder_layers_change_the_features_and_are_checked(tiny, tmp_path):
    "Fewer layers: other features (the truncated encoder ran) and a protocol saying so."
    get = lambda k: L.load_lab_data(
        tiny,
        data.sample_dir(),
        tmp_path / "cache",
        max_len=512,
        progress=False,
        encoder_layers=k,
    )
    full, two = get(0), get(2)
    assert not two["cache_hit"]["dev"]  # its own cache entry, not the full encoder's
    assert (full["pairs"]["dev"]["rs"] - two["pairs"]["dev"]["rs"]).abs().max() > 1e-3
    assert "its first 2 layer(s)" in two["protocol"] and "first" not in full["protocol"]
    with pytest.raises(ValueError, match="has 4 layers"):
        get(5)


def test_run_lab_rejects_unknown_loss(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown loss"):
        L.run_lab(tiny, data.sample_dir(), tmp_path, losses=["Hinge"])
    with pytest.raises(ValueError, match=r"unknown option\(s\) \[.margin.\]"):
        L.run_lab(
            tiny,
            data.sample_dir(),
            tmp_path,
            losses=["ATL"],
            loss_options={"margin": 3.0},
        )


def test_lab_cli_end_to_end_and_errors(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    res = cli.lab_cli(
        [
            "--model",
            str(tiny),
            "--data-dir",
            str(data.sample_dir()),
            "--out",
            str(out),
            "--losses",
            "SAT",
            "MeanSAT",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--emb-size",
            "32",
            "--block-size",
            "8",
            "--cache-dir",
            str(tmp_path / "c"),
            "--no-progress",
            "--threads",
            "1",
            "--record",
            str(tmp_path / "rec.json"),
        ]
    )
    assert records.load_record(out / "grid.json")["command"].startswith(
        "hingeabl-lab --model"
    )
    as_json = lambda r: json.dumps(r, sort_keys=True)  # NaN ratios compare as text
    assert as_json(records.load_record(tmp_path / "rec.json")) == as_json(res)
    assert [r["loss"] for r in res["runs"]] == [
        "SAT",
        "MeanSAT",
    ] and "MeanSAT" in capsys.readouterr().out
    for argv, msg in [
        (
            ["--model", str(tmp_path / "none"), "--data-dir", str(data.sample_dir())],
            "not an encoder folder (no config.json there)",
        ),
        (
            ["--model", str(tiny), "--data-dir", str(tmp_path / "nodata")],
            "does not exist",
        ),
    ]:
        assert cli.lab_main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("hingeabl-lab: error: ") and msg in err, err


def test_offset_scan_finds_the_best_move_exactly():
    torch.manual_seed(0)
    labels = torch.zeros(300, 97)
    labels[
        torch.arange(300), torch.randint(1, 97, (300,)) * (torch.rand(300) < 0.3)
    ] = 1
    logits = torch.randn(300, 97) + 2 * labels  # gold scores higher, TH at about 0
    got = L.offset_scan(logits, labels)

    def f1_loop(b):  # s_r - b > s_TH, counted relation by relation
        tp = fp = fn = 0
        for s, y in zip(logits.tolist(), labels.tolist()):
            for r in range(1, 97):
                pred, gold = s[r] - b > s[0], y[r] > 0.5
                tp, fp, fn = (
                    tp + (pred and gold),
                    fp + (pred and not gold),
                    fn + (gold and not pred),
                )
        return 200 * tp / (2 * tp + fp + fn)

    assert got["F1_at_b_f1"] == pytest.approx(f1_loop(got["b_f1"]))
    assert got["F1_at_0"] == pytest.approx(f1_loop(0.0))
    for b in [x / 8 for x in range(-16, 33)]:  # no move on a fine grid does better
        assert f1_loop(b) <= got["F1_at_b_f1"] + 1e-9, b


def test_lab_cli_defaults_to_three_seeds():
    a = cli.lab_parser().parse_args(["--out", "x"])
    assert a.seeds == list(L.LAB_SEEDS) and len(a.seeds) >= 3


OLD_NAMES = {"batch_pairs": "train_batch_size", "encode_batch": "test_batch_size"}
ADDED = {"matmul"}  # fields newer than some records: those ran with float32 products
# `matmul` defaulted to "bfloat16", then "auto" (the CPU's choice), until this time; a
# record made before it whose command names no --matmul holds the default of its day
FLOAT32_DEFAULT_SINCE = "2026-12-08T01:30:00Z"


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(RESULTS)
        for p in RESULTS.rglob("*.json")
        if p.parent.name != "previous"
    ),
    ids=str,
)
def test_every_lab_record_reruns_from_its_command(path):
    """A recorded lab command, parsed by today's hingeabl-lab, asks for the settings,
    losses and seeds its record holds (records before LabConfig named two of its
    fields as TrainConfig did; previous/ keeps older records for comparison only)."""
    rec = records.load_record(RESULTS / path)
    if rec["preset"] != "lab":
        pytest.skip("not a lab record")
    argv = shlex.split(rec["command"])
    assert argv[0] == "hingeabl-lab"
    a = cli.lab_parser().parse_args(argv[1:])
    cfg = L.LabConfig(**cli.config_overrides(a, L.LabConfig, cli.OWN["lab"]))
    saved = rec["details"]["config"]
    skip = ("encoder", "data_dir", "progress", "num_threads", "loss", "seed")
    old_default = (  # matmul left to the default of the record's day
        not any(a.startswith("--matmul") for a in argv)
        and rec["date"] < FLOAT32_DEFAULT_SINCE
    )
    for f in dataclasses.fields(L.LabConfig):
        if f.name in ADDED and f.name not in saved:
            continue  # the record predates the field (its command now gets the default)
        if f.name == "matmul" and (cfg.matmul == "auto" or old_default):
            assert saved["matmul"] in L.lockstep.MATMUL, path  # the dtype it used
        elif f.name not in skip:
            was = saved.get(f.name, saved.get(OLD_NAMES.get(f.name)))
            assert getattr(cfg, f.name) == was, (path, f.name)
    assert list(dict.fromkeys(r["loss"] for r in rec["runs"])) == (
        a.losses or [n for n in LOSSES if n in reproduce.PAPER_TABLE3]  # Table 3
    )
    assert sorted({r["seed"] for r in rec["runs"]}) == sorted(a.seeds)


def test_bfloat16_products_stay_close_to_float32(tiny, tmp_path):
    """bfloat16 matrix products (`--matmul bfloat16`, or "auto" on a fast CPU) train
    each loss to nearly where float32 products do: the same losses to 2%, test logits
    within 2% of their spread on average; one at a time (autocast) lands close to
    lockstep."""
    tr, dev, test, configs = every_loss_on_the_sample(tiny, tmp_path, "bfloat16")
    f32 = [dataclasses.replace(c, matmul="float32") for c in configs]
    (s16, h16), (s32, h32) = (
        L.train_heads(tr, dev, configs),
        L.train_heads(tr, dev, f32),
    )
    l16 = L.lockstep.stack_logits(s16, test, dtype=torch.bfloat16)
    l32 = L.lockstep.stack_logits(s32, test)
    assert l16.dtype == torch.float32 and not torch.equal(l16, l32)  # rounded
    for r, cfg in enumerate(configs):
        spread, gap = float(l32[r].std()), (l16[r] - l32[r]).abs()
        assert float(gap.mean()) < 0.02 * spread, cfg.loss  # AML's: 0.9%
        assert float(gap.max()) < 0.15 * spread, cfg.loss  # AML's hinges: 7%
        for a, b in zip(h16[r], h32[r], strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02), cfg.loss
    head, alone = L.train_head(tr, dev, configs[-1])  # HingeABL, autocast
    one = L.head_logits(head, test, matmul="bfloat16")
    assert float((one - l16[-1]).abs().mean()) < 0.02 * float(l32[-1].std())
    with pytest.raises(TrainSetupError, match="matmul='float16'; allowed: auto"):
        L.check_lab_config(dataclasses.replace(configs[0], matmul="float16"))


@pytest.mark.parametrize(
    "bf16_s, picked", [(0.5, "bfloat16"), (0.7, "float32"), (40.0, "float32")]
)
def test_auto_products_follow_the_cpu(monkeypatch, bf16_s, picked):
    """`matmul="auto"` picks bfloat16 only where a stack step runs 1.5x faster with it,
    and `lab_config` writes the choice into the config (the record names it)."""
    timed = {"float32": 1.0, "bfloat16": bf16_s}
    monkeypatch.setattr(L.lockstep, "time_stack_steps", lambda: timed)
    L.lockstep.fast_matmul.cache_clear()
    try:
        assert L.LabConfig().matmul == "float32"  # the default: the same on every CPU
        assert L.lab_config(data_dir="x").matmul == "float32"
        assert L.lab_config(data_dir="x", matmul="auto").matmul == picked
        assert L.lab_config(data_dir="x", matmul="float32").matmul == "float32"
        assert L.lockstep.products("auto") == L.lockstep.MATMUL[picked]
    finally:
        L.lockstep.fast_matmul.cache_clear()  # the next call times this CPU again

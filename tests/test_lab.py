"""Tests of hingeabl_nb.lab: protocol choice, feature cache, head training, the lab record and the CLI (offline, tiny encoder)."""
import json, os, shutil
from pathlib import Path
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import lab as L
from hingeabl_nb import data, metrics
from hingeabl_nb.losses import LOSSES, predict

torch.set_num_threads(1)
FAST = dict(epochs=2, batch_pairs=256, emb_size=32, block_size=8, progress=False, verbose=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A random tiny BERT with the package's tokenizer, saved as an encoder folder."
    return L.save_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


@pytest.fixture(scope="module")
def split_dev_dir(tmp_path_factory):
    "A data folder without a train file: dev_revised.json (the 32+8 sample docs) and test_revised.json."
    d = tmp_path_factory.mktemp("redocred")
    docs = [doc for f in ("train.json", "dev.json") for doc in json.loads((data.sample_dir() / f).read_text())]
    (d / "dev_revised.json").write_text(json.dumps(docs))
    shutil.copy(data.sample_dir() / "test.json", d / "test_revised.json")
    return d


def test_lab_files_protocols(split_dev_dir, tmp_path):
    assert L.lab_files(data.sample_dir())["protocol"] == "train-dev-test"
    assert L.lab_files(split_dev_dir)["protocol"] == "split-dev" and L.lab_files(split_dev_dir)["train"] is None
    with pytest.raises(FileNotFoundError, match="no test file"):
        (tmp_path / "dev_revised.json").write_text("[]"); L.lab_files(tmp_path)


def test_cache_key_tracks_encoder_data_and_args(tiny, tmp_path):
    tok_fp = data.tokenizer_fingerprint(data.tiny_tokenizer()); rel2id = data.load_rel2id()
    fp = L.encoder_fingerprint(tiny); f = data.sample_dir() / "dev.json"
    k = L.pairs_cache_key(fp, tok_fp, f, rel2id, max_len=512)
    assert k == L.pairs_cache_key(fp, tok_fp, f, rel2id, max_len=512)
    assert k != L.pairs_cache_key(fp, tok_fp, f, rel2id, max_len=256)
    assert k != L.pairs_cache_key(fp, tok_fp, data.sample_dir() / "test.json", rel2id, max_len=512)
    other = L.save_tiny_encoder(tmp_path / "other", seed=1)  # same architecture, other weights
    assert k != L.pairs_cache_key(L.encoder_fingerprint(other), tok_fp, f, rel2id, max_len=512)


def test_train_head_is_seeded_and_learns(tiny, tmp_path):
    lab = L.load_lab_data(tiny, data.sample_dir(), tmp_path / "cache", max_len=512, progress=False)
    kw = {k: FAST[k] for k in ("batch_pairs", "emb_size", "block_size")}
    h1, hist1 = L.train_head(lab["pairs"]["train"], lab["pairs"]["dev"], "HingeABL", seed=3, epochs=3, lr=5e-3, **kw)
    h2, hist2 = L.train_head(lab["pairs"]["train"], lab["pairs"]["dev"], "HingeABL", seed=3, epochs=3, lr=5e-3, **kw)
    assert [x["train_loss"] for x in hist1] == [x["train_loss"] for x in hist2]
    assert hist1[-1]["train_loss"] < hist1[0]["train_loss"]
    best = max(hist1, key=lambda x: x["dev_F1"])
    dev = lab["pairs"]["dev"]
    assert L.dev_f1(L.head_logits(h1, dev), dev["labels"].float()) == pytest.approx(best["dev_F1"])  # best epoch kept
    with pytest.raises(ValueError, match="allowed"): L.train_head(lab["pairs"]["train"], dev, "Hinge")


def test_dev_f1_equals_official_scorer(tiny, tmp_path):
    lab = L.load_lab_data(tiny, data.sample_dir(), tmp_path / "cache", max_len=512, progress=False)
    ps = lab["pairs"]["test"]
    torch.manual_seed(0); lg = torch.randn(ps["labels"].shape) + 3 * ps["labels"].float()
    tri = metrics.to_official(predict(lg), L.doc_features(ps), data.id2rel(lab["rel2id"]))
    assert L.dev_f1(lg, ps["labels"].float()) == pytest.approx(100 * metrics.official_scores(tri, lab["docs"]["test"])["F1"], abs=1e-9)


def test_run_lab_split_dev_record_and_cache(tiny, split_dev_dir, tmp_path):
    cache = tmp_path / "cache"
    res = L.run_lab(tiny, split_dev_dir, tmp_path / "out", losses=["ATL", "BalancedSoftmax", "HingeABL"], seeds=[0, 1],
                    cache_dir=cache, n_holdout=8, max_len=512, threads=1, **FAST)
    rec = json.loads((tmp_path / "out" / "lab.json").read_text())
    assert [(r["loss"], r["seed"]) for r in rec["runs"]] == [(l, s) for s in (0, 1) for l in ("ATL", "BalancedSoftmax", "HingeABL")]
    assert rec["protocol"]["n"]["train"] == 32 and rec["protocol"]["n"]["dev"] == 8 and rec["protocol"]["n"]["test"] == 8
    assert rec["protocol"]["description"].startswith("Reduced protocol (NOT the paper's") and "split-dev: train on 32" in rec["protocol"]["description"]
    split = L.load_lab_data(tiny, split_dev_dir, cache, n_holdout=8, max_len=512, progress=False)["docs"]
    train_titles, dev_titles = ({d["title"] for d in split[k]} for k in ("train", "dev"))
    assert not train_titles & dev_titles  # no document both trained on and selected on
    for r in rec["runs"]:
        for split in ("dev", "test"):
            assert {"F1", "Ign_F1", "macro_F1", "patterns"} <= set(r[split]), r[split].keys()
            assert 0 <= r[split]["Ign_F1"] <= r[split]["F1"] + 1e-9 <= 100 + 1e-9
        assert set(r["thresholds"]) == {"s_TH", "gap"} and len(r["history"]) == FAST["epochs"]
    bs = next(r for r in rec["runs"] if r["loss"] == "BalancedSoftmax")["thresholds"]["s_TH"]
    assert bs["q05"] == bs["q95"] == 0.0  # Balanced Softmax is scored against the constant threshold 0
    gold = sum(len(d["labels"]) for d in json.loads((split_dev_dir / "test_revised.json").read_text()))
    assert rec["runs"][0]["thresholds"]["gap"]["n"] <= gold and rec["runs"][0]["thresholds"]["gap"]["n"] > 0
    assert rec["timings"]["cache_hit"] == {"dev": False, "test": False} and rec["timings"]["peak_rss_mb"] > 0
    again = L.run_lab(tiny, split_dev_dir, tmp_path / "out2", losses=["ATL"], seeds=[0], cache_dir=cache, n_holdout=8,
                      max_len=512, threads=1, **FAST)
    assert again["timings"]["cache_hit"] == {"dev": True, "test": True}
    assert again["runs"][0]["test"]["F1"] == res["runs"][0]["test"]["F1"]  # same features, same seed: same run
    assert "ATL" in L.format_table(rec) and len(L.format_table(rec).splitlines()) == 2 + len(rec["runs"])


def test_run_lab_rejects_unknown_loss(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown loss"): L.run_lab(tiny, data.sample_dir(), tmp_path, losses=["Hinge"])


def test_lab_cli_end_to_end_and_errors(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    res = L.lab_cli(["--model", str(tiny), "--data-dir", str(data.sample_dir()), "--out", str(out), "--losses", "SAT", "MeanSAT",
                     "--epochs", "1", "--emb-size", "32", "--block-size", "8", "--cache-dir", str(tmp_path / "c"), "--no-progress",
                     "--threads", "1"])
    assert json.loads((out / "lab.json").read_text())["command"].startswith("hingeabl-lab --model")
    assert [r["loss"] for r in res["runs"]] == ["SAT", "MeanSAT"] and "MeanSAT" in capsys.readouterr().out
    for argv, msg in [(["--model", str(tmp_path / "none"), "--data-dir", str(data.sample_dir())], "no config.json"),
                      (["--model", str(tiny), "--data-dir", str(tmp_path / "nodata")], "does not exist")]:
        with pytest.raises(SystemExit) as e: L.lab_cli([*argv, "--out", str(out)])
        assert e.value.code == 2 and msg in capsys.readouterr().err

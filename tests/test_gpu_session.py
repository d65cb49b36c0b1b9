"""Tests of tools/gpu_session.py (the GPU machine's glue) and the CUDA checks it runs.

The tests named *cuda* need a CUDA device: they are skipped without one, and fail
instead when HINGEABL_REQUIRE_CUDA is set (the session's check step on the GPU
machine). They compare a CUDA float32 result with a float64 reference on the CPU
within tolerances that allow CUDA's nondeterminism (atomic adds in index_add and
scatter backward), never bit for bit. The same checks run on the CPU here (float32
against float64), so CI exercises their code and tolerances.

This module imports only what the GPU image holds (torch, pytest, hingeabl_nb).
"""

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import cli, data, train
from hingeabl_nb import model as atlop_model
from hingeabl_nb.losses import LOSSES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import gpu_session as G

# float32 on any device against float64 on the CPU: reassociation (CUDA's atomic
# adds, other kernels) moves float32 results by ~1e-6 relative; a wrong kernel or a
# lost term moves them by far more.
LOSS_TOL = dict(rtol=1e-4, atol=1e-6)
MODEL_TOL = dict(rtol=1e-3, atol=1e-4)


@pytest.fixture
def cuda_dev():
    "The CUDA device; skip without one, fail when HINGEABL_REQUIRE_CUDA is set."
    if not torch.cuda.is_available():
        if os.environ.get("HINGEABL_REQUIRE_CUDA"):
            pytest.fail("HINGEABL_REQUIRE_CUDA is set but torch sees no CUDA device")
        pytest.skip("no CUDA device (run by tools/gpu_session.py on the GPU machine)")
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda")


def pairs(n=64, n_rel=97, seed=0, scale=3.0):
    "Random logits and multi-hot labels (about a third NA pairs), float64 on the CPU."
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, n_rel, generator=g, dtype=torch.float64)
    labels = (torch.rand(n, n_rel, generator=g) < 0.03).double()
    labels[:, 0] = 0
    na = labels[:, 1:].sum(1) == 0
    na[: n // 3] = True
    labels[na] = 0
    labels[na, 0] = 1
    return logits, labels


def loss_and_grad(name, logits, labels):
    x = logits.detach().clone().requires_grad_(True)
    loss = LOSSES[name](x, labels)
    loss.backward()
    return loss.detach(), x.grad


def check_losses(device, dtype=torch.float32):
    "Each loss and its gradient on `device` in `dtype` against float64 on the CPU."
    logits, labels = pairs()
    for name in LOSSES:
        ref, ref_g = loss_and_grad(name, logits, labels)
        got, got_g = loss_and_grad(
            name, logits.to(device, dtype), labels.to(device, dtype)
        )
        torch.testing.assert_close(got.cpu().double(), ref, **LOSS_TOL, msg=name)
        torch.testing.assert_close(got_g.cpu().double(), ref_g, **LOSS_TOL, msg=name)


def check_half_finite(device, dtype):
    "Each loss finite, with finite gradients, for huge logits in half precision."
    logits, labels = pairs(scale=1e4)
    for name in LOSSES:
        loss, grad = loss_and_grad(name, logits.to(device, dtype), labels.to(device))
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), name


def tiny_batch(n_docs=2):
    "The sample's documents with the fewest entities (72 and 90 pairs), collated."
    tok = data.tiny_tokenizer()
    docs = data.load_docs(data.sample_dir() / "train.json")
    docs = sorted(docs, key=lambda d: len(d["vertexSet"]))[:n_docs]
    feats = data.featurize(docs, tok, data.load_rel2id(), max_len=512, progress=False)
    return tok, data.collate(feats, pad_id=tok.pad_token_id or 0)


def atlop_logits_and_grads(net, x, device):
    "Logits and the encoder's and head's gradients of the ATL loss, on `device`."
    net = net.to(device)
    net.zero_grad()
    logits = net(
        x["input_ids"].to(device),
        x["attention_mask"].to(device, next(net.parameters()).dtype),
        x["entity_pos"],
        x["hts"],
    )
    LOSSES["ATL"](logits, x["labels"].to(device, logits.dtype)).backward()
    grads = {k: p.grad.detach().cpu().double() for k, p in net.named_parameters()}
    return logits.detach().cpu().double(), grads


def check_atlop(device, n_docs=2):
    """ATLOP over a tiny BERT on real sample documents: float32 on `device` against
    float64 on the CPU, logits and every parameter's gradient."""
    tok, x = tiny_batch(n_docs)
    enc = atlop_model.tiny_bert(
        len(tok), cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id
    )
    net = atlop_model.ATLOP(enc, emb_size=64, block_size=16).eval()  # no dropout
    ref, ref_g = atlop_logits_and_grads(copy.deepcopy(net).double(), x, "cpu")
    got, got_g = atlop_logits_and_grads(net, x, device)
    torch.testing.assert_close(got, ref, **MODEL_TOL)
    for k in ref_g:
        torch.testing.assert_close(got_g[k], ref_g[k], **MODEL_TOL, msg=k)
    return got


# ---- CUDA (the session's check step; skipped here) -----------------------------------


def test_cuda_losses_match_float64(cuda_dev):
    check_losses(cuda_dev)


def test_cuda_losses_finite_in_bf16_and_fp16(cuda_dev):
    for dtype in (torch.bfloat16, torch.float16):
        check_half_finite(cuda_dev, dtype)


def test_cuda_atlop_matches_float64(cuda_dev):
    check_atlop(cuda_dev)


def test_cuda_training_repeats_within_tolerance(cuda_dev, tmp_path):
    """Two smoke runs with one seed on CUDA (bf16 autocast where supported): the same
    losses within tolerance (atomics make them differ in the last bits), finite."""
    runs = []
    for i in range(2):
        cfg = train.resolve_config(
            "smoke", device="cuda", epochs=2, max_train_docs=8, max_eval_docs=4
        )
        runs.append(train.run_training(cfg, tmp_path / f"run{i}"))
    a, b = ([h["train_loss"] for h in r["history"]] for r in runs)
    assert all(torch.isfinite(torch.tensor(a))), a
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=2e-2, atol=1e-3)
    assert torch.cuda.get_device_name(0) in runs[0]["device"]


# ---- the same checks on the CPU (float32 against float64) ----------------------------


def test_loss_check_passes_on_cpu_and_catches_an_error(monkeypatch):
    check_losses("cpu")
    check_half_finite("cpu", torch.bfloat16)
    spec = LOSSES["HingeABL"]

    def off_in_float32(s, y, **o):  # a small error that only float32 inputs get
        return spec.fn(s, y, **o) * (1 + 1e-3 * (s.dtype == torch.float32))

    wrong = type(spec)(spec.name, off_in_float32, spec.defaults)
    monkeypatch.setitem(LOSSES, "HingeABL", wrong)
    with pytest.raises(AssertionError, match="HingeABL"):
        check_losses("cpu")


def test_atlop_check_passes_on_cpu_and_catches_an_error(monkeypatch):
    logits = check_atlop("cpu", n_docs=1)
    assert logits.shape[1] == 97 and torch.isfinite(logits).all()
    pool = atlop_model.ATLOPHead.forward

    def off_by_a_bit(self, hs, rs, ts):  # a float32-sized error in the context only
        return pool(self, hs, rs * (1 + 1e-2 * (hs.dtype == torch.float32)), ts)

    monkeypatch.setattr(atlop_model.ATLOPHead, "forward", off_by_a_bit)
    with pytest.raises(AssertionError):
        check_atlop("cpu", n_docs=1)


# ---- the session script --------------------------------------------------------------


def fake_shared(root: Path) -> Path:
    for rel in [f"data/redocred/{n}" for n in G.DATA_FILES] + [
        f"models/{G.ENCODER}/config.json",
        f"models/{G.ENCODER}/model.safetensors",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(2048))
    return root


def test_carry_builds_manifest_refuses_over_limit_and_locate_finds_damage(tmp_path):
    shared, dest = fake_shared(tmp_path / "shared"), tmp_path / "carry"
    with pytest.raises(SystemExit, match="over the .* limit"):
        G.build_carry(shared, dest, tmp_path / "no-wheels", limit_mib=0.01)
    assert not dest.exists()
    manifest = G.build_carry(shared, dest, tmp_path / "no-wheels", limit_mib=1)
    assert len(manifest) == len(G.DATA_FILES) + 2
    s = G.Session(tmp_path / "out", budget=60)
    assert G.step_locate(s, tmp_path / "work1", dest)
    assert (tmp_path / "work1/shared/data/redocred/dev_revised.json").is_file()
    (dest / "redocred" / "dev_revised.json").write_bytes(b"cut short")
    assert not G.step_locate(s, tmp_path / "work2", dest)
    steps = json.loads((tmp_path / "out" / "steps.json").read_text())
    assert [x["ok"] for x in steps] == [True, False]
    assert "redocred/dev_revised.json" in steps[-1]["detail"]


def test_carry_without_shared_is_the_sample_and_the_tiny_encoder(tmp_path):
    """No ../shared: the packaged sample (its 40 dev_revised documents as dev) and the
    tiny BERT saved as an encoder folder; the library loads both; rehearsal only."""
    from hingeabl_nb import runs

    dest = tmp_path / "carry"
    G.build_carry(tmp_path / "no-shared", dest, tmp_path / "no-wheels", limit_mib=10)
    assert G.carried(dest) == {
        "data": "the packaged Re-DocRED sample",
        "encoder": G.TINY,
    }
    sample = data.sample_dir()
    dev = data.load_docs(dest / "redocred" / "dev_revised.json")
    assert len(dev) == 40 and dev[:32] == data.load_docs(sample / "train.json")
    test = (dest / "redocred" / "test_revised.json").read_bytes()
    assert test == (sample / "test.json").read_bytes()
    tok = runs.load_tokenizer(argparse.Namespace(encoder=str(dest / G.TINY)))
    assert tok.tokenize("Lovelace") == data.tiny_tokenizer().tokenize("Lovelace")
    assert atlop_model.load_encoder(dest / G.TINY).config.hidden_size == 64
    s = G.Session(tmp_path / "out", budget=60)
    assert not G.step_locate(s, tmp_path / "w1", dest, rehearsal=False)
    assert "a rehearsal's carry" in s.steps[-1]["detail"]
    assert G.step_locate(s, tmp_path / "w2", dest)
    assert (tmp_path / "w2/shared/models" / G.TINY / "config.json").is_file()


def test_the_grid_is_the_library_command():
    "The session's grid is `hingeabl-compare` with the size's settings, as it parses."
    a = argparse.Namespace(size="full", **G.SIZES["full"])
    argv = [str(x) for x in G.grid_argv(a, Path("/work"), Path("/out"), 300)]
    got = cli.compare_parser().parse_args(argv)
    assert got.losses is None  # every loss in the registry, whatever it holds
    assert (got.preset, got.seeds, got.epochs, got.jobs) == (
        "reduced",
        [1, 5, 42, 66, 233],
        8,
        11,
    )
    assert got.deadline == 300 and got.record == "/out/reduced-{device}.json"
    assert got.out == "/work/grid"
    tiny = argparse.Namespace(size="tiny", **G.SIZES["tiny"])
    argv = map(str, G.grid_argv(tiny, Path("/w"), Path("/o"), 60, G.TINY))
    got = cli.compare_parser().parse_args(argv)
    assert (got.losses, got.max_train_docs, got.device, got.n_holdout) == (
        ["ATL", "HingeABL"],
        4,
        "cpu",
        4,
    )
    assert got.encoder == G.TINY


def test_session_fails_naming_the_step(tmp_path, capsys):
    rc = G.main(["--size", "tiny", "--carry", str(tmp_path), "--out", str(tmp_path)])
    assert rc == 1
    assert "FAILED step(s): locate" in capsys.readouterr().out
    log = (tmp_path / "session.log").read_text()
    assert "MANIFEST.json missing" in log and "FAILED step(s): locate" in log


def test_out_problems_follow_the_device_tools_rules(tmp_path):
    for n in ["session.log", "steps.json", "tables.md", "cells.tar.gz"]:
        (tmp_path / n).write_text("x")
    (tmp_path / "reduced-cpu.json").write_text('{"incomplete": []}')
    (tmp_path / "throughput-cpu.json").write_text("{}")
    assert G.out_problems(tmp_path) == []
    for n in ["a b.json", "x1", "x2"]:
        (tmp_path / n).write_text("x")
    probs = G.out_problems(tmp_path)
    assert any("9 files" in p for p in probs) and any("a b.json" in p for p in probs)
    (tmp_path / "reduced-cpu.json").write_text('{"incomplete": ["ATL-s1"]}')
    assert "reduced-cpu.json: the grid did not finish" in G.out_problems(tmp_path)

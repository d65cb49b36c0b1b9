"""Every bad input gets one clear line, before any work is done.

The command-line cases run the console scripts' functions in-process
(`cli.*_main(argv)` returns the exit status); a few run as real subprocesses. Each case
states the message it expects; a CLI case also checks stderr: one line, no traceback.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from hingeabl_nb import cli, data, datafiles, metrics, model, runs, train
from hingeabl_nb.hinge import hinge_abl_loss
from hingeabl_nb.losses import LOSSES, predict

torch.set_num_threads(1)
SAMPLE = data.sample_dir()
TINY = [
    "--epochs",
    "1",
    "--max-train-docs",
    "2",
    "--max-eval-docs",
    "1",
    "--no-progress",
]


def one_line_error(capsys, main, argv, tool):
    "Run a console script in-process; expect exit status 2 and one line on stderr."
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, f"exit status {code}, stderr {err!r}"
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hingeabl-{tool}: error: "), err
    assert len(err.strip().splitlines()) <= 2, err  # argparse adds its usage line
    return last


def read_only_dir():
    "An existing folder nobody can write into, even root (a read-only mount), or None."
    for d in ("/sys/kernel", "/proc/self"):
        probe = Path(d) / "hingeabl-probe"
        try:
            probe.write_text("x")
            probe.unlink()
        except OSError:
            return Path(d)
    return None


def data_dir_with(tmp_path, train_text: bytes | str) -> Path:
    "A copy of the sample with train.json replaced by `train_text`."
    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    f = d / "train.json"
    f.write_bytes(train_text if isinstance(train_text, bytes) else train_text.encode())
    return d


def sample_docs(split="train"):
    return json.loads((SAMPLE / f"{split}.json").read_text())


# ------------------------------------------------------------ hingeabl-train


@pytest.mark.parametrize(
    "argv, want",
    [
        (
            ["--loss-option", "margin=abc"],
            "option margin='abc' must be a finite number",
        ),
        (
            ["--loss-option", "margin=-1"],
            "option margin=-1 must be a finite number >= 0",
        ),
        (["--loss-option", "margin=NaN"], "option margin=nan must be"),
        (["--loss-option", "normalize=bogus"], "normalize='bogus' must be 'separate'"),
        (["--loss-option", "margin"], "expected NAME=VALUE"),
        (["--loss", "AFL", "--loss-option", "gamma=-2"], "gamma=-2 must be"),
        (["--loss", "ATL", "--loss-option", "margin=3"], "has no option(s) ['margin']"),
        (["--max-eval-docs", "0"], "--max-eval-docs must be >= 1, got 0"),
        (["--max-train-docs", "-2"], "--max-train-docs must be >= 1, got -2"),
        (["--max-train-docs", "0"], "--max-train-docs must be >= 1, got 0"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--data-dir", "{tmp}/none"], "data file train.json not found in"),
        (["--model", "{tmp}/none"], "not found: not a folder"),
    ],
)
def test_train_flags(capsys, tmp_path, argv, want):
    out = tmp_path / "run"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    msg = one_line_error(
        capsys, cli.train_main, ["--preset", "smoke", "--out", str(out), *argv], "train"
    )
    assert want in msg
    assert not (out / "log.jsonl").exists()  # nothing was trained


def test_train_out_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("keep me")
    msg = one_line_error(
        capsys, cli.train_main, ["--out", str(tmp_path / "f")], "train"
    )
    assert f"--out {tmp_path / 'f'} is a file, not a folder" in msg
    assert (tmp_path / "f").read_text() == "keep me"


@pytest.mark.parametrize("sub", ["", "new/run"])
def test_train_out_read_only(capsys, sub):
    ro = read_only_dir()
    if ro is None:
        pytest.skip("no read-only folder on this machine")
    out = str(ro / sub) if sub else str(ro)
    msg = one_line_error(capsys, cli.train_main, ["--out", out, *TINY], "train")
    assert f"--out {out} is not writable" in msg


def test_train_truncated_checkpoint(capsys, tmp_path):
    ck = tmp_path / "run" / "checkpoint" / "last.pt"
    runs.atomic_save({"x": torch.ones(1000)}, ck)
    ck.write_bytes(ck.read_bytes()[:500])
    msg = one_line_error(
        capsys, cli.train_main, ["--out", str(tmp_path / "run")], "train"
    )
    assert f"checkpoint {ck} is damaged" in msg and "delete it" in msg


def test_train_truncated_rel2id(capsys, tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    assets.mkdir()
    text = (datafiles.assets_dir() / "rel2id.json").read_text()
    (assets / "rel2id.json").write_text(text[:200])
    shutil.copytree(datafiles.assets_dir() / "tiny-vocab", assets / "tiny-vocab")
    monkeypatch.setattr(datafiles, "assets_dir", lambda: assets)  # load_rel2id reads it
    argv = ["--data-dir", str(SAMPLE), "--out", str(tmp_path / "r")]
    msg = one_line_error(capsys, cli.train_main, argv, "train")
    assert "rel2id.json: not a JSON object relation -> column" in msg


@pytest.mark.parametrize(
    "train_text, want",
    [
        (
            json.dumps(sample_docs())[:5000].encode() + b"caf\xe9",
            "train.json: not UTF-8 text (byte 0xe9 at offset 5003)",
        ),
        (json.dumps(sample_docs())[:5000], "train.json: not valid JSON"),
        (
            json.dumps(
                [
                    dict(d, vertexSet=d["vertexSet"][:1], labels=[])
                    for d in sample_docs()
                ]
            ),
            "none of the 2 training documents has two entities",
        ),
        (
            json.dumps(
                [{k: v for k, v in d.items() if k != "labels"} for d in sample_docs()]
            ),
            "missing field 'labels'",
        ),
    ],
    ids=["non-utf8", "truncated", "no-pairs", "no-labels"],
)
def test_train_bad_data_file(capsys, tmp_path, train_text, want):
    d = data_dir_with(tmp_path, train_text)
    argv = ["--data-dir", str(d), "--out", str(tmp_path / "run"), *TINY]
    msg = one_line_error(capsys, cli.train_main, argv, "train")
    assert want in msg
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_train_full_disk(capsys, tmp_path, monkeypatch):
    "torch.save on a full disk raises '[enforce fail ...] unexpected pos'."

    def full(obj, f, *a, **k):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 6"
        )

    monkeypatch.setattr(runs.torch, "save", full)
    out = tmp_path / "run"
    msg = one_line_error(capsys, cli.train_main, ["--out", str(out), *TINY], "train")
    assert f"could not write {out / 'checkpoint'}" in msg and "disk may be full" in msg
    assert not list((out / "checkpoint").glob("*.tmp"))


def test_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    argv = ["--out", str(tmp_path), "--loss-option", "margin=abc"]
    with pytest.raises(cli.CLIError, match="margin='abc'"):
        cli.train_main([*argv, "--debug"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(cli.CLIError, match="margin='abc'"):
        cli.train_main(argv)


# ------------------------------------------------------------ the other tools


def test_compare_missing_inputs_leave_no_spec(capsys, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    base = ["--preset", "smoke", "--losses", "ATL", "--seeds", "1", "--out", str(out)]
    for extra, want in [
        (["--data-dir", str(tmp_path / "none")], "data file train.json not found in"),
        (["--model", str(tmp_path / "none")], "not found: not a folder"),
        (["--max-eval-docs", "0"], "--max-eval-docs must be >= 1, got 0"),
    ]:
        assert want in one_line_error(capsys, cli.compare_main, base + extra, "compare")
    assert not out.exists()  # no spec.json to block the corrected rerun
    calls = []

    def fake_training(config, out_dir):
        calls.append(config.data_dir)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return {}

    monkeypatch.setattr(train, "run_training", fake_training)
    with pytest.raises(RuntimeError, match="without writing"):  # the fake writes none
        cli.compare_cli([*base, "--data-dir", str(SAMPLE)])
    assert calls == [str(SAMPLE)]  # the corrected rerun got past spec.json


def test_lab_bad_inputs(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    tiny = tmp_path / "tiny"
    (tiny).mkdir()
    (tiny / "config.json").write_text("{}")
    base = ["--model", str(tiny), "--data-dir", str(SAMPLE)]
    for extra, want in [
        (["--out", str(tmp_path / "f")], "is a file, not a folder"),
        (
            [
                "--out",
                str(tmp_path / "o"),
                "--losses",
                "AML",
                "--loss-option",
                "margin=x",
            ],
            "option margin='x' must be",
        ),
        (["--out", str(tmp_path / "o"), "--epochs", "0"], "--epochs must be >= 1"),
        (
            ["--out", str(tmp_path / "o"), "--encoder-layers", "-1"],
            "--encoder-layers must be >= 0",
        ),
    ]:
        assert want in one_line_error(capsys, cli.lab_main, base + extra, "lab")
    assert not (tmp_path / "o").exists()


def test_toy_out_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    argv = ["--out", str(tmp_path / "f"), "--steps", "5"]
    assert "is a file" in one_line_error(capsys, cli.toy_main, argv, "toy")


def test_download_offline(capsys, tmp_path, monkeypatch):
    def offline(url, headers, timeout=60):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(datafiles, "urllib_opener", offline)
    argv = [str(tmp_path / "d"), "--splits", "dev"]
    msg = one_line_error(capsys, cli.download_main, argv, "download")
    assert "dev_revised.json: download from https://" in msg
    assert "Temporary failure in name resolution" in msg
    assert "check the network connection" in msg and ".part" not in msg


def test_download_destination_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    msg = one_line_error(capsys, cli.download_main, [str(tmp_path / "f")], "download")
    assert f"DEST {tmp_path / 'f'} is a file, not a folder" in msg


@pytest.mark.parametrize(
    "tool, argv, want",
    [
        ("train", ["--loss-option", "margin=abc", "--out", "{tmp}/r"], "margin='abc'"),
        ("download", ["{tmp}/f"], "is a file"),
    ],
)
def test_console_script_in_a_subprocess(tmp_path, tool, argv, want):
    "As a shell runs it: exit status 2, one line on stderr, no traceback."
    (tmp_path / "f").write_text("")
    code = (
        f"import sys; from hingeabl_nb.cli import {tool}_main; sys.exit({tool}_main())"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *[a.replace("{tmp}", str(tmp_path)) for a in argv],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"hingeabl-{tool}: error: ") and want in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------ library


def batch():
    "Two pairs: one NA, one with relation 2."
    return torch.zeros(2, 4), torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0]])


@pytest.mark.parametrize(
    "edit, want",
    [
        ((1, 2, 0.7), "labels must be 0 or 1, row 1 column 2 is 0.7"),
        ((1, 2, 2.0), "row 1 column 2 is 2"),
        ((0, 3, -1.0), "row 0 column 3 is -1"),
        ((0, 3, math.nan), "row 0 column 3 is nan"),
        ((0, 1, 1.0), "row 0 is marked NA (column 0) and related (columns [1])"),
        ((1, 2, 0.0), "row 1 is neither NA (column 0) nor related"),
    ],
)
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_refuse_bad_labels(name, edit, want):
    logits, labels = batch()
    labels[edit[0], edit[1]] = edit[2]
    with pytest.raises(ValueError) as e:
        LOSSES[name](logits, labels)
    assert str(e.value).startswith(f"LOSSES['{name}']: ") and want in str(e.value)


@pytest.mark.parametrize(
    "name, options, want",
    [
        ("HingeABL", dict(margin=-1), "option margin=-1 must be a finite number >= 0"),
        ("HingeABL", dict(margin=math.nan), "option margin=nan must be"),
        ("HingeABL", dict(margin=math.inf), "option margin=inf must be"),
        ("HingeABL", dict(margin="5"), "option margin='5' must be a finite number"),
        ("HingeABL", dict(normalize="bogus"), "must be 'separate' or 'joint'"),
        ("HingeABL", dict(detach_weights="no"), "must be true or false"),
        ("HingeABL", dict(norm_eps=0.0), "norm_eps=0.0 must be a finite number > 0"),
        ("AFL", dict(gamma=-2), "option gamma=-2 must be a finite number >= 0"),
        ("AFL", dict(focal_form="Paper"), "must be 'official' or 'paper'"),
        ("AML", dict(margin=-0.5), "option margin=-0.5 must be"),
        ("SAT", dict(prob_eps=-1e-30), "option prob_eps=-1e-30 must be"),
        ("ATL", dict(margin=1.0), "unknown option(s) ['margin']"),
    ],
)
def test_losses_refuse_bad_options(name, options, want):
    with pytest.raises(ValueError) as e:
        LOSSES[name](*batch(), **options)
    assert f"LOSSES['{name}']" in str(e.value) and want in str(e.value)


@pytest.mark.parametrize("name", list(LOSSES))
def test_empty_batch_is_a_zero_loss_with_zero_gradient(name):
    logits = torch.zeros(0, 97, requires_grad=True)
    loss = LOSSES[name](logits, torch.zeros(0, 97))
    loss.backward()
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert logits.grad.shape == (0, 97)


def test_bare_losses_refuse_an_empty_batch():
    with pytest.raises(ValueError, match="an empty batch"):
        hinge_abl_loss(torch.zeros(0, 97), torch.zeros(0, 97))


def test_predict_refuses_nan_logits():
    s = torch.randn(5, 4)
    s[3, 2] = math.nan
    with pytest.raises(ValueError, match="predict: logits row 3 has NaN scores"):
        predict(s)
    with pytest.raises(ValueError, match="row 3"):
        LOSSES["BalancedSoftmax"].predict(s)


def test_unlabelled_documents_need_an_explicit_option(tmp_path):
    docs = sample_docs("dev")
    del docs[2]["labels"]
    f = tmp_path / "dev.json"
    f.write_text(json.dumps(docs))
    with pytest.raises(datafiles.DocREDFormatError) as e:
        data.load_docs(f)
    assert (
        f"dev.json: document 2 ({docs[2]['title']!r}): missing field 'labels'"
        in str(e.value)
    )
    assert len(data.load_docs(f, labelled=False)) == len(docs)


def test_library_run_refuses_negative_doc_limits():
    cfg = train.resolve_config("smoke", max_train_docs=-2)
    with pytest.raises(train.TrainSetupError, match="max_train_docs = -2 must be >= 1"):
        train.run_training(cfg, "unused")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_refuses_non_finite_logits(name, bad):
    "The same refusal from every loss, whether called through the registry or bare."
    logits, labels = batch()
    logits[1, 3] = bad
    for fn, where in ((LOSSES[name], f"LOSSES['{name}']"), (LOSSES[name].fn, "")):
        with pytest.raises(ValueError) as e:
            fn(logits, labels)
        assert "logits row 1 is not finite (1 of 2 rows hold NaN or inf)" in str(
            e.value
        )
        assert str(e.value).startswith(where)


def test_pattern_stats_refuses_nan_like_predict():
    logits, labels = torch.zeros(3, 4), torch.tensor([[1.0, 0, 0, 0]] * 3)
    logits[2] = math.nan  # would count as a correct negative
    for rule in ("official", "general"):
        with pytest.raises(ValueError, match="logits row 2 has NaN scores"):
            metrics.pattern_stats(logits, labels, rule=rule)


@pytest.mark.parametrize(
    "build, want",
    [
        (
            lambda: model.ATLOPHead(0),
            "ATLOPHead: hidden_size=0 must be an integer >= 1",
        ),
        (lambda: model.ATLOPHead(8, n_classes=-1), "n_classes=-1"),
        (lambda: model.ATLOPHead(8, emb_size=0), "emb_size=0"),
        (lambda: model.ATLOPHead(8, block_size=0), "block_size=0"),
        (lambda: model.ATLOPHead(8, emb_size=10, block_size=4), "not a multiple"),
        (lambda: model.ATLOP(model.tiny_bert(50), emb_size=0), "emb_size=0"),
        (lambda: model.tiny_bert(50, hidden_size=-4), "tiny_bert: hidden_size=-4"),
        (lambda: model.tiny_bert(0), "tiny_bert: vocab_size=0"),
    ],
)
def test_model_constructors_refuse_sizes_below_one(build, want):
    with pytest.raises(ValueError, match=re.escape(want)):
        build()

#!/usr/bin/env python
"""Throughput, memory and time per epoch of the `hingeabl_nb.train` loop.

Measured, not asserted. Runs the trainer's own pieces (`make_accelerator`,
`epoch_batches`, `fit`, `predict_logits`) on real Re-DocRED documents (the first
`--docs` of dev_revised.json when the shared data folder is found, else the embedded
sample) and reports, per device:

* training throughput (documents/s) over one epoch, after one untimed warm-up epoch;
* evaluation throughput (documents/s) with the test batch size;
* seconds per training epoch over the documents used, and extrapolated to the 3,053
  documents of train_revised.json (paper preset) and to the 400 of the reduced preset;
* peak memory: process RSS on CPU, `torch.cuda.max_memory_allocated` on CUDA.

Encoders: `tiny` (random 2-layer BERT, smoke preset), `minilm` (the shared MiniLM-L6,
reduced preset) and `base` (a randomly initialised BERT-base-sized encoder: 12 layers,
hidden 768; its timing is the same as pretrained bert-base-cased, whose weights are not
available offline).

With `--baseline`, the same epoch is also timed, in the same process and on the same
documents, for an *official-style* configuration: pooling by Python loops over entities
and pairs (`model.pool_loop`, the structure of the official ATLOP/HingeABL code), eager
attention, and fp16 autocast on CUDA (fp32 on CPU), as the official scripts run. The
script prints our throughput divided by that baseline's. This is our re-expression of
the official code's structure, not the official code itself.

Usage:
    python bench/bench_train.py                              # CPU, tiny encoder, 8 docs
    # ratio against the loop baseline
    python bench/bench_train.py --encoder-size minilm --docs 16 --baseline
    python bench/bench_train.py --encoder-size minilm --docs 16  # CPU, MiniLM
    # CPU then CUDA
    python bench/bench_train.py --encoder-size base --device all --docs 64
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hingeabl_nb import data, train
from hingeabl_nb import model as atlop_model
from hingeabl_nb.core import find_up


def build(size: str, attn: str):
    "Tokenizer and ATLOP model for an encoder size (random weights except `minilm`)."
    if size == "tiny":
        tok = data.tiny_tokenizer()
        enc = atlop_model.tiny_bert(
            len(tok),
            cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id,
            attn_implementation=attn,
        )
        return tok, atlop_model.ATLOP(enc, emb_size=64, block_size=16)
    minilm = find_up("shared/models/minilm-l6-h384-uncased")
    if minilm is None:
        sys.exit(
            "bench_train: shared/models/minilm-l6-h384-uncased not found "
            "(needed for its tokenizer)"
        )
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(minilm)
    if size == "minilm":
        enc = atlop_model.load_encoder(
            minilm, dtype=torch.float32, attn_implementation=attn
        )
    else:  # BERT-base sized, random weights: same shapes (and time) as bert-base-cased
        cfg = BertConfig(
            vocab_size=len(tok),
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            attn_implementation=attn,
        )
        cfg.cls_token_id, cfg.sep_token_id = tok.cls_token_id, tok.sep_token_id
        enc = BertModel(cfg, add_pooling_layer=False)
    return tok, atlop_model.ATLOP(enc)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one_epoch(net, opt, sched, acc, feats, batches, cfg) -> None:
    "One epoch of `train.fit` (the trainer's own loop) over `batches`."
    dev = acc.device

    def forward(b):
        x = data.collate([feats[i] for i in b])
        return net(
            x["input_ids"].to(dev),
            x["attention_mask"].to(dev),
            x["entity_pos"],
            x["hts"],
        ), x["labels"].to(dev)

    train.fit(
        net,
        opt,
        sched,
        dataclasses.replace(cfg, epochs=1),
        lambda e: batches,
        forward,
        accelerator=acc,
    )


def bench(device: str, args, baseline: bool = False) -> dict:
    """Time one training epoch and one evaluation pass; `baseline`: the official-style
    configuration (see above).
    """
    mixed = ("fp16" if device == "cuda" else "no") if baseline else args.mixed_precision
    cfg = train.resolve_config(
        "smoke" if args.encoder_size == "tiny" else "reduced",
        device=device,
        progress=False,
        mixed_precision=mixed,
        train_batch_size=args.batch_size,
        test_batch_size=args.test_batch_size,
        drop_last=False,
        loss=args.loss,
    )
    acc, mp = train.make_accelerator(cfg)
    torch.manual_seed(0)
    tok, net = build(args.encoder_size, "eager" if baseline else args.attn)
    if baseline:
        net.head.pool = (
            atlop_model.pool_loop
        )  # instance attribute: loops over entities and pairs
    found = data.locate_redocred()
    src = found / "dev_revised.json" if found else data.sample_dir() / "train.json"
    docs = data.load_docs(src)[: args.docs]
    feats = data.featurize(docs, tok, data.load_rel2id(), max_len=1024, progress=False)
    opt = torch.optim.AdamW(
        net.param_groups(cfg.lr, cfg.head_lr), lr=cfg.lr, eps=cfg.adam_eps
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    net, opt = acc.prepare(net, opt)
    if acc.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(acc.device)
    sync = (
        (lambda: torch.cuda.synchronize(acc.device))
        if acc.device.type == "cuda"
        else (lambda: None)
    )
    batches = train.epoch_batches(feats, cfg, 0)
    one_epoch(
        net, opt, sched, acc, feats, batches[:2], cfg
    )  # warm-up (allocator, kernels)
    sync()
    t = time.perf_counter()
    one_epoch(net, opt, sched, acc, feats, batches, cfg)
    sync()
    t_train = time.perf_counter() - t
    raw = acc.unwrap_model(net)
    t = time.perf_counter()
    train.predict_logits(raw, feats, cfg.test_batch_size, acc.device, acc.autocast)
    sync()
    t_eval = time.perf_counter() - t
    n_tok = sum(len(f["input_ids"]) for f in feats) / len(feats)
    return {
        "device": (
            torch.cuda.get_device_name(acc.device)
            if acc.device.type == "cuda"
            else f"cpu x{torch.get_num_threads()} threads"
        ),
        "impl": "official-style" if baseline else "ours",
        "precision": mp,
        "encoder": args.encoder_size,
        "docs": len(feats),
        "mean_tokens": n_tok,
        "train_docs_s": len(feats) / t_train,
        "eval_docs_s": len(feats) / t_eval,
        "epoch_s": t_train,
        "epoch_s_reduced": 400 / (len(feats) / t_train) + 100 / (len(feats) / t_eval),
        "epoch_s_paper": 3053 / (len(feats) / t_train) + 500 / (len(feats) / t_eval),
        "peak_mb": peak_memory_mb(acc.device),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "all"])
    p.add_argument("--encoder-size", default="tiny", choices=["tiny", "minilm", "base"])
    p.add_argument("--docs", type=int, default=8, help="documents per timed epoch")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--test-batch-size", type=int, default=8)
    p.add_argument("--loss", default="HingeABL")
    p.add_argument(
        "--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"]
    )
    p.add_argument(
        "--attn",
        default="eager",
        choices=["eager", "sdpa"],
        help="encoder attention implementation",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also time the official-style configuration and print the ratio",
    )
    p.add_argument(
        "--record",
        default=None,
        help="with --baseline: write the measured ratio as JSON here "
        "(e.g. nbs/results/throughput-{device}.json; "
        "{device} becomes the device's name)",
    )
    args = p.parse_args(argv)
    if args.record and not args.baseline:
        p.error(
            "--record needs --baseline (the record holds ours / official-style ratios)"
        )
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            sys.exit("bench_train: --device cuda but no CUDA device is available")
        devices = ["cpu"]
    rows = [
        bench(d, args, baseline)
        for d in devices
        for baseline in ((False, True) if args.baseline else (False,))
    ]
    cols = [
        ("device", "{}"),
        ("impl", "{}"),
        ("precision", "{}"),
        ("encoder", "{}"),
        ("docs", "{}"),
        ("mean_tokens", "{:.0f}"),
        ("train_docs_s", "{:.2f}"),
        ("eval_docs_s", "{:.2f}"),
        ("epoch_s", "{:.1f}"),
        ("epoch_s_reduced", "{:.1f}"),
        ("epoch_s_paper", "{:.0f}"),
        ("peak_mb", "{:.0f}"),
    ]
    print(" | ".join(c for c, _ in cols))
    for r in rows:
        print(" | ".join(f.format(r[c]) for c, f in cols))
    print(
        "epoch_s_reduced / epoch_s_paper: one epoch (train + one dev evaluation) "
        "extrapolated from the measured "
        "throughput to 400 + 100 (reduced) and 3,053 + 500 (paper) documents."
    )
    for ours, base in zip(rows[::2], rows[1::2]) if args.baseline else ():
        print(
            f"[{ours['device']}] ours / official-style: training throughput "
            f"{ours['train_docs_s'] / base['train_docs_s']:.2f}x, "
            f"evaluation throughput {ours['eval_docs_s'] / base['eval_docs_s']:.2f}x"
        )
    if args.record:
        print(
            "recorded in",
            write_record(
                rows,
                args.record,
                " ".join(["python bench/bench_train.py", *(argv or sys.argv[1:])]),
            ),
        )
    return rows


def write_record(rows: list, path: str, command: str) -> Path:
    """Write the throughput record: per device, ours and official-style docs/s and their
    ratio, with the command and date.
    """
    import datetime
    import json
    import re

    pairs = [
        dict(
            device=o["device"],
            encoder=o["encoder"],
            precision=o["precision"],
            baseline_precision=b["precision"],
            docs=o["docs"],
            mean_tokens=o["mean_tokens"],
            ours_docs_per_s=o["train_docs_s"],
            baseline_docs_per_s=b["train_docs_s"],
            ratio=o["train_docs_s"] / b["train_docs_s"],
            ours_eval_docs_per_s=o["eval_docs_s"],
            baseline_eval_docs_per_s=b["eval_docs_s"],
            eval_ratio=o["eval_docs_s"] / b["eval_docs_s"],
            epoch_s_reduced=o["epoch_s_reduced"],
            epoch_s_paper=o["epoch_s_paper"],
            peak_mb=o["peak_mb"],
        )
        for o, b in zip(rows[::2], rows[1::2])
    ]
    last = pairs[-1]
    rec = dict(
        device=last["device"],
        encoder=last["encoder"],
        ours_docs_per_s=last["ours_docs_per_s"],
        baseline_docs_per_s=last["baseline_docs_per_s"],
        ratio=last["ratio"],
        command=command,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__,
        measurements=pairs,
    )
    out = Path(
        path.replace(
            "{device}", re.sub(r"[^A-Za-z0-9]+", "-", last["device"]).strip("-").lower()
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1))
    return out


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Forward + backward throughput (documents/s) of ATLOP: eager attention versus SDPA.

Eager attention (as the official code) versus SDPA in every layer with only the last
layer's attention probabilities recomputed (`attn_implementation="sdpa"`).

Both encoders carry the same weights and run in the same process on the same synthetic
Re-DocRED-like batch (random tokens, `--entities` entities with 1-3 mentions each, all
ordered pairs); their logits are checked to agree before timing.

Usage:
    # CPU, MiniLM if found (else tiny BERT), 2 x 512 tokens
    python bench/bench_model.py
    # CPU, then CUDA if available
    python bench/bench_model.py --device all
    # CUDA, 4 x 1024 tokens, PATH a local bert-base-cased folder
    python bench/bench_model.py --device cuda --len 1024 --batch 4 --encoder PATH
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch

from hingeabl_nb.core import find_up
from hingeabl_nb.model import ATLOP, encode_long, load_encoder, tiny_bert


def find_minilm() -> Path | None:
    cfg = find_up("shared/models/minilm-l6-h384-uncased/config.json")
    return cfg.parent if cfg else None


def make_encoder(spec: str, impl: str):
    if spec == "tiny":
        return tiny_bert(
            30522,
            hidden_size=128,
            num_layers=2,
            num_heads=4,
            cls_token_id=101,
            sep_token_id=102,
            attn_implementation=impl,
        )
    return load_encoder(spec, attn_implementation=impl)


def synthetic_batch(batch: int, length: int, entities: int, vocab: int, seed: int = 0):
    "Random token ids and Re-DocRED-like entity_pos / hts."
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (batch, length), generator=g)
    am = torch.ones(batch, length)
    ents = [
        [
            [(rng.randrange(1, length - 1), 0) for _ in range(rng.randint(1, 3))]
            for _ in range(entities)
        ]
        for _ in range(batch)
    ]
    hts = [
        [(h, t) for h in range(entities) for t in range(entities) if h != t]
        for _ in range(batch)
    ]
    return ids, am, ents, hts


def time_steps(model, batch, device, steps: int, autocast_dtype) -> list[float]:
    ids, am, ents, hts = batch
    ids, am = ids.to(device), am.to(device)
    times = []
    for i in range(steps + 1):  # the first step is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(
            device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            logits = model(ids, am, ents, hts)
        logits.float().logsumexp(1).mean().backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return times


def time_encoder(model, batch, device, steps: int, autocast_dtype) -> list[float]:
    """Forward + backward of the encoding step alone (`encode_long`), where the two
    options differ.
    """
    ids, am = batch[0].to(device), batch[1].to(device)
    start, end = model.window_tokens()
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(
            device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            seq, attn = encode_long(model.encoder, ids, am, start, end)
        (seq.float().square().mean() + attn.float().square().mean()).backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return times


def bench(device: torch.device, args) -> None:
    spec = args.encoder or (str(find_minilm()) if find_minilm() else "tiny")
    torch.manual_seed(0)
    models = {}
    for impl in ("eager", "sdpa"):
        torch.manual_seed(0)
        models[impl] = ATLOP(make_encoder(spec, impl)).to(device).train()
    models["sdpa"].load_state_dict(models["eager"].state_dict())
    batch = synthetic_batch(
        args.batch, args.len, args.entities, models["eager"].encoder.config.vocab_size
    )
    with torch.no_grad():
        for m in models.values():
            m.eval()
        ids, am = batch[0].to(device), batch[1].to(device)
        diff = (
            (models["eager"](ids, am, *batch[2:]) - models["sdpa"](ids, am, *batch[2:]))
            .abs()
            .max()
            .item()
        )
        for m in models.values():
            m.train()
    amp = torch.bfloat16 if device.type == "cuda" and not args.fp32 else None
    print(
        f"[{device}] encoder={spec} batch={args.batch} len={args.len} "
        f"entities={args.entities} "
        f"pairs/doc={args.entities * (args.entities - 1)} autocast={amp} | "
        f"eval logits max |eager - sdpa| = {diff:.2e}"
    )
    for what, timer in [("whole model", time_steps), ("encoder only", time_encoder)]:
        rate = {}
        for impl, model in models.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t = statistics.median(timer(model, batch, device, args.steps, amp))
            rate[impl] = args.batch / t
            mem = (
                f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
                if device.type == "cuda"
                else ""
            )
            print(
                f"  {what:12s} {impl:5s}: {t * 1000:8.1f} ms / step, "
                f"{rate[impl]:7.2f} docs/s (forward + backward){mem}"
            )
        print(
            f"  {what:12s} sdpa / eager throughput ratio: "
            f"{rate['sdpa'] / rate['eager']:.2f}x"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "all"])
    p.add_argument(
        "--encoder",
        default=None,
        help="local encoder folder, or 'tiny' (default: shared MiniLM if found)",
    )
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--len", type=int, default=None)
    p.add_argument("--entities", type=int, default=20)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for d in devices:
        if d == "cuda" and not torch.cuda.is_available():
            print("[cuda] not available, skipped")
            continue
        a = argparse.Namespace(**vars(args))
        a.batch = args.batch or (4 if d == "cuda" else 2)
        a.len = args.len or (1024 if d == "cuda" else 512)
        bench(torch.device(d), a)


if __name__ == "__main__":
    main()

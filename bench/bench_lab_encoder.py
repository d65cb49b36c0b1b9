#!/usr/bin/env python
"""The lab's cold cost: encoding documents with the frozen encoder, three ways.

The baseline is `labcache.encode_pairs` with float32 eager attention (the official
code's). Against it, in the same process on the same documents, in alternating rounds:
SDPA attention with the last layer's probabilities recomputed (what `hingeabl-lab`
uses), and PyTorch's
dynamic int8 quantisation of every `nn.Linear` (`torch.ao...quantize_dynamic`).
A faster variant is only useful if the pair features stay close, so the drift of
hs, rs, ts against the baseline is printed too (relative error and smallest cosine).

Usage:
    python bench/bench_lab_encoder.py                 # 40 dev documents, MiniLM
    python bench/bench_lab_encoder.py --docs 8 --encoder tiny --data sample
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn.functional as F

from hingeabl_nb import data
from hingeabl_nb import model as M
from hingeabl_nb.core import find_up
from hingeabl_nb.labcache import encode_pairs, save_tiny_encoder


def encoders(spec: str) -> tuple[dict, str]:
    "The three encoders (same weights) and the folder they were loaded from."
    if spec == "tiny":
        import tempfile

        path = str(save_tiny_encoder(tempfile.mkdtemp()))
    elif spec == "minilm":
        cfg = find_up("shared/models/minilm-l6-h384-uncased/config.json")
        if cfg is None:
            raise SystemExit("bench_lab_encoder: MiniLM not found (use --encoder tiny)")
        path = str(cfg.parent)
    else:
        path = spec
    base = M.load_encoder(path, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        q8 = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(base), {torch.nn.Linear}, dtype=torch.qint8
        )
    sdpa = M.load_encoder(path, dtype=torch.float32, attn_implementation="sdpa")
    return {"fp32 eager": base, "fp32 sdpa (lab)": sdpa, "int8 dynamic": q8}, path


def drift(a: dict, b: dict) -> str:
    "Relative error and smallest row cosine of b's hs, rs, ts against a's."
    out = []
    for k in ("hs", "rs", "ts"):
        x, y = a[k].float(), b[k].float()
        rel = float((x - y).norm() / x.norm())
        cos = float(F.cosine_similarity(x, y, dim=1).min()) if len(x) else 1.0
        out.append(f"{k} rel err {rel:.1e} min cos {cos:.3f}")
    return ", ".join(out)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="minilm", help="minilm, tiny or a folder")
    ap.add_argument("--data", default="shared", help="shared (dev_revised) or sample")
    ap.add_argument("--docs", type=int, default=40, help="documents encoded per round")
    ap.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds (best kept)"
    )
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    encs, path = encoders(a.encoder)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if a.data == "sample":
        f = data.sample_dir() / "dev.json"
    else:
        d = data.locate_redocred()  # $HINGEABL_DATA or shared/data/redocred
        if d is None or not (d / "dev_revised.json").is_file():
            raise SystemExit("bench_lab_encoder: dev_revised.json not found")
        f = d / "dev_revised.json"
    docs = data.load_docs(f)[: a.docs]
    feats = data.featurize(docs, tok, data.load_rel2id(), max_len=1024, progress=False)
    best, outs = {k: (float("inf"), float("inf")) for k in encs}, {}
    for _ in range(a.rounds):
        for name, enc in encs.items():
            t, c = time.perf_counter(), time.process_time()
            outs[name] = encode_pairs(enc, tok, feats, 4, progress=False)
            w, cpu = time.perf_counter() - t, time.process_time() - c
            best[name] = min(best[name], (w, cpu))
    print(
        f"torch {torch.__version__}, {a.threads} thread(s), {len(feats)} documents of "
        f"{f.name}, encoder {path}, best of {a.rounds} alternating rounds"
    )
    base = "fp32 eager"
    for name, (w, cpu) in best.items():
        ratio = best[base][1] / cpu
        extra = "" if name == base else f"; {drift(outs[base], outs[name])}"
        print(
            f"  {name:<17} wall {w:6.2f} s CPU {cpu:6.2f} s",
            f" speed-up {ratio:.2f}x{extra}",
        )
    return dict(best=best, outs=outs)


if __name__ == "__main__":
    main()

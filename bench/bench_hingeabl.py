#!/usr/bin/env python
"""Time forward + backward of our `hinge_abl_loss` against the official formulation.

The baseline is a re-expression, written for this benchmark, of the computation in the
official `losses.py` (`Jize-W/HingeABL`, `get_relu_sat_loss`): hinge weights masked by
multiplication and normalised separately, probabilities from `torch.exp` of the raw
scores, `-log(p + 1e-30)`. Both run in the same process on the same tensors; the two
values are checked to agree before timing.

Usage (from the repository root):
    python bench/bench_hingeabl.py        # CPU, then CUDA if available; 4 x 400 x 97
    python bench/bench_hingeabl.py --device cpu --threads 1 --rounds 5
    python bench/bench_hingeabl.py --docs 4 --pairs 400 --classes 97 --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

try:
    from hingeabl_nb.hinge import hinge_abl_loss
except (
    ImportError
):  # run from a checkout without the package installed: use the checkout's copy
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from hingeabl_nb.hinge import hinge_abl_loss


def official_formulation(
    logits: torch.Tensor, labels: torch.Tensor, m: float = 5.0
) -> torch.Tensor:
    """Exp-based HingeABL as the official code computes it (separate normalisation, eps
    1e-30).
    """
    s_th = logits[:, :1]
    not_labels = 1 - labels
    w_pos = (F.relu(s_th - logits + m) * labels)[:, 1:]
    w_pos = w_pos / (w_pos.sum(1, keepdim=True) + 1e-30)
    w_neg = (F.relu(logits - s_th + m) * not_labels)[:, 1:]
    w_neg = w_neg / (w_neg.sum(1, keepdim=True) + 1e-30)
    e_s, e_th = torch.exp(logits), torch.exp(s_th)
    p_pos = e_s / (e_s + e_th)
    p_neg = e_th / (e_th + e_s)
    term_pos = (-torch.log(p_pos + 1e-30) * labels)[:, 1:] * w_pos
    term_neg = (-torch.log(p_neg + 1e-30) * not_labels)[:, 1:] * w_neg
    return (term_pos.sum(1) + term_neg.sum(1)).mean()


def ours(logits: torch.Tensor, labels: torch.Tensor, m: float = 5.0) -> torch.Tensor:
    return hinge_abl_loss(logits, labels, margin=m)


def make_inputs(
    n_pairs: int, n_classes: int, device: str, seed: int = 0, pos_rate: float = 0.06
):
    "Random scores and Re-DocRED-like labels: most pairs NA, a few with 1-2 relations."
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_pairs, n_classes, generator=g) * 3
    labels = torch.zeros(n_pairs, n_classes)
    has_rel = torch.rand(n_pairs, generator=g) < pos_rate
    rel = torch.randint(1, n_classes, (n_pairs, 2), generator=g)
    two = torch.rand(n_pairs, generator=g) < 0.2
    rows = torch.arange(n_pairs)
    labels[rows[has_rel], rel[has_rel, 0]] = 1
    labels[rows[has_rel & two], rel[has_rel & two, 1]] = 1
    labels[:, 0] = (labels[:, 1:].sum(1) == 0).float()
    return logits.to(device), labels.to(device)


def time_fwd_bwd(fn, logits, labels, m, repeats, warmup, device):
    "Median wall time (ms) of one forward + backward."
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        x = logits.detach().requires_grad_(True)
        sync()
        t0 = time.perf_counter()
        torch.autograd.grad(fn(x, labels, m), x)
        sync()
        t1 = time.perf_counter()
        if i >= warmup:
            times.append((t1 - t0) * 1e3)
    return statistics.median(times)


def bench(device: str, args) -> float:
    logits, labels = make_inputs(
        args.docs * args.pairs, args.classes, device, args.seed
    )
    xa, xb = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    a, b = ours(xa, labels, args.margin), official_formulation(xb, labels, args.margin)
    (ga,), (gb,) = torch.autograd.grad(a, xa), torch.autograd.grad(b, xb)
    diff, gdiff = (a - b).abs().item(), (ga - gb).abs().max().item()
    assert diff < 1e-4 and gdiff < 1e-6, (
        f"ours and the official formulation disagree: loss {diff:.3e}, grad {gdiff:.3e}"
    )
    # interleave the two in rounds so that drift in machine load hits both alike
    t_ours, t_off = [], []
    for _ in range(args.rounds):
        t_ours.append(
            time_fwd_bwd(
                ours, logits, labels, args.margin, args.repeats, args.warmup, device
            )
        )
        t_off.append(
            time_fwd_bwd(
                official_formulation,
                logits,
                labels,
                args.margin,
                args.repeats,
                args.warmup,
                device,
            )
        )
    mo, mf = statistics.median(t_ours), statistics.median(t_off)
    print(
        f"[{device}] shape {tuple(logits.shape)}  |loss diff| {diff:.1e}  "
        f"max |grad diff| {gdiff:.1e}\n  "
        f"ours {mo:.3f} ms  official {mf:.3f} ms  ratio official/ours {mf / mo:.2f}"
    )
    return mf / mo


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=4, help="documents per batch")
    p.add_argument("--pairs", type=int, default=400, help="entity pairs per document")
    p.add_argument("--classes", type=int, default=97, help="1 + number of relations")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed repeats per round")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds; the median of round medians is reported",
    )
    p.add_argument("--margin", type=float, default=5.0, help="HingeABL margin m")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        default="all",
        choices=["cpu", "cuda", "all"],
        help="all (default: cpu, then cuda if available), cpu or cuda",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            p.error("--device cuda: no CUDA device available")
        print("[cuda] not available, skipped")
        devices.remove("cuda")
    print(
        f"torch {torch.__version__}, {args.threads} CPU thread(s), forward+backward, "
        f"median of {args.repeats} x {args.rounds}"
    )
    return {d: bench(d, args) for d in devices}


if __name__ == "__main__":
    main()

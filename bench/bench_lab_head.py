#!/usr/bin/env python
"""The lab's head step against this machine's matrix-product peak, in one process.

First the peak: dense square float32 (and bfloat16, where the CPU has it) products,
best of several. Then one optimiser step of the lab's head (`LabConfig` sizes: 512
pairs, 384-dimensional features, emb 64, block 8, 97 classes: 0.69 MFLOP per pair,
forward and backward) for every loss of the registry, done several ways on the same
batches:

- one at a time: seven `ATLOPHead`s, one after the other, as `lab.train_head` steps them
  (autograd, `clip_grad_norm_`, fused AdamW);
- lockstep, autograd: the seven as one stack (`lockstep.HeadStack`'s weights), its
  forward written with plain tensor operations and differentiated by autograd;
- lockstep, fp32: `lockstep.HeadStack` with its hand-written backward, float32 rows
  (every product in float32: `--matmul float32`);
- lockstep, bf16: the same with bfloat16 rows: the extractors' products and their
  weight gradients in bfloat16, the bilinear in float32;
- 2 stacks side by side: the seven runs dealt into two stacks (4 + 3), stepped side by
  side on two threads of one torch thread each (`lab.run_group(workers=2)`, the lab's
  layout before it was measured slower than one stack), in the lab's dtype;
- lockstep, compiled: the seven losses under `torch.compile` (`--compile`), whole
  (`fullgraph`), in the lab's dtype: the batch's values are checked once outside the
  graph (`RunLosses.check`); its compilation time is printed beside it.

The lab's dtype is its default, `LabConfig.matmul` (float32; "auto" would be what
`lockstep.fast_matmul` picks on this CPU: bfloat16 where a lab-sized stack step runs
1.5x faster with it than with float32); its row, the one `hingeabl-lab` runs for a seed
on all of torch's threads, is marked "(the lab)".

Last, `torch.exp` on a batch of scores (512 x 97) whose arguments lie in one range each,
against arguments in [-80, 0]: on some CPUs (an AMD EPYC with torch's AVX2 code) an
argument whose result underflows, overflows or is -inf takes a slow path that flushing
denormals does not remove; the losses (`logsumexp`, `logsigmoid`, their gradients) meet
such arguments once a head's scores spread.

Everything runs under the lab's CPU settings (`lockstep.cpu_settings`: its threads,
denormal floats flushed to zero). Each way is timed in alternating rounds (best kept);
a head step is one run's step, so the lockstep times are a step of the stack divided
by the number of runs. The breakdown of one-at-a-time and of the two one-stack
lockstep ways comes from `torch.profiler`: matrix products, the head's elementwise
work, the losses (forward and backward), clipping and the optimiser, the gather of
the batch.

Usage:
    python bench/bench_lab_head.py                  # 2 threads, 20 rounds
    python bench/bench_lab_head.py --threads 1 --rounds 3 --pairs 4096   # quick
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from hingeabl_nb import lockstep
from hingeabl_nb.atl import values_checked
from hingeabl_nb.lab import LabConfig
from hingeabl_nb.lockstep import best_seconds
from hingeabl_nb.losses import LOSSES

H, C, E, BLOCK, P = 384, 97, 64, 8, 512  # the lab's sizes (LabConfig defaults)
FLOP_PER_PAIR = 2 * (2 * (2 * H * E) * 2 + 3 * E * BLOCK * C)  # fwd + bwd, no x grad
GEMMS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def gemm_peak(dtype, sizes=(512, 1024, 2048), repeats: int = 10) -> dict:
    "GFLOP/s of square products n x n @ n x n, per n, and the best."
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        out[n] = 2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e9
    return dict(per_n=out, peak=max(out.values()))


def pairs(n: int, seed: int = 0) -> tuple:
    "Random pair features (n, 3H) float32 and labels: 6% of pairs hold one relation."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3 * H, generator=g)
    labels = torch.zeros(n, C)
    rel = torch.randint(1, C, (n,), generator=g)
    labels[torch.arange(n), torch.where(torch.rand(n, generator=g) < 0.06, rel, 0)] = 1
    return x, labels


def adamw(params):
    return torch.optim.AdamW(params, lr=3e-3, eps=1e-6, weight_decay=0.0, fused=True)


def one_at_a_time(x, labels):
    "step(idx): each loss's head in turn, as `lab.train_head` steps it."
    runs = [
        (h, adamw(h.parameters()), LOSSES[n])
        for h, n in zip(lockstep.lab_heads(7), LOSSES)
    ]
    hs, rs, ts = (x[:, i * H : (i + 1) * H].contiguous() for i in range(3))

    def step(idx):
        for head, opt, loss in runs:
            with record_function("gather"):
                batch = hs[idx], rs[idx], ts[idx]
                y = labels[idx]
            with record_function("head forward"):
                logits = head(*batch)
            with record_function("loss"):
                s = logits.detach().requires_grad_()
                loss(s, y).backward()
            with record_function("head backward"):
                logits.backward(s.grad)
            with record_function("clip"):
                torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            with record_function("optimizer"):
                opt.step()
                opt.zero_grad(set_to_none=True)

    return step, len(runs)


def autograd_heads(stack, x):
    "The stack's forward in plain operations, pairs first (autograd differentiates it)."
    R, k, n = stack.w_s.shape[0], E // BLOCK, x.shape[0]

    def side(w, b, rows):  # (P, R * E): one product for every run
        return torch.tanh(torch.addmm(b.reshape(-1), rows, w.reshape(R * E, -1).t()))

    z_s = side(stack.w_s, stack.b_s, x[:, : 2 * H]).view(n, R, k, BLOCK, 1)
    z_o = side(stack.w_o, stack.b_o, x[:, H:]).view(n, R, k, 1, BLOCK)
    outer = (z_s * z_o).view(n, R, E * BLOCK).transpose(0, 1)  # (R, P, E * b)
    return torch.baddbmm(stack.b_b[:, None], outer, stack.w_b.transpose(1, 2))


def lockstep_step(x, labels, forward="fp32", compile_losses=False, runs=None):
    """step(idx): the runs (default: one per loss) as one stack; `forward` picks how the
    stack computes: "fp32" (float32 products), "bf16" (bfloat16 products in the
    extractors), "autograd" (plain operations, float32)."""
    names = runs or list(LOSSES)
    stack = lockstep.HeadStack(lockstep.lab_heads(len(names)))
    opt = adamw(stack.parameters())
    losses = lockstep.RunLosses([(n, {}) for n in names])
    call = losses
    if compile_losses:  # the values are checked once per batch, outside the graph
        inner = torch.compile(_unchecked(losses), dynamic=False, fullgraph=True)

        def call(s, y):
            losses.check(s, y.float())
            return inner(s, y.float())

    rows = x.bfloat16() if forward == "bf16" else x
    run = {
        "fp32": stack,
        "bf16": stack,
        "autograd": lambda xb: autograd_heads(stack, xb),
    }[forward]

    def step(idx):
        with record_function("gather"):
            xb, y = rows.index_select(0, idx), labels.index_select(0, idx)
        with record_function("head forward"):
            logits = run(xb)
        with record_function("loss"):
            s = logits.detach().requires_grad_()
            call(s, y).sum().backward()
        with record_function("head backward"):
            logits.backward(s.grad)
        with record_function("clip"):
            lockstep.clip_runs_(stack.parameters(), 1.0)
        with record_function("optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step, len(names)


def _unchecked(losses):
    "The stack's losses without their value checks (`RunLosses.check` runs outside)."

    def inner(s, y):
        with values_checked():
            return torch.stack(
                [f(a.float(), y, **o) for a, (f, o) in zip(s, losses.losses)]
            )

    return inner


def two_stacks(x, labels, forward):
    """step(idx): `lab.run_group(workers=2)` for one seed: the seven runs dealt into two
    stacks (4 + 3 runs), each stepped on its own thread with one torch thread."""
    names = list(LOSSES)
    parts = [lockstep_step(x, labels, forward, runs=names[w::2])[0] for w in range(2)]
    pool = ThreadPoolExecutor(2)

    def step(idx):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            list(pool.map(lambda f: f(idx), parts))
        finally:
            torch.set_num_threads(threads)

    return step, len(names)


def breakdown(step, batches, runs: int) -> dict:
    "Milliseconds per head step by kind of work, from `torch.profiler`."
    step(batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for idx in batches:
            step(idx)
    ev = prof.key_averages()
    total = lambda name: sum(e.cpu_time_total for e in ev if e.key == name)
    gemm = sum(e.self_cpu_time_total for e in ev if e.key in GEMMS)
    head = total("head forward") + total("head backward")
    out = {
        "GEMMs": gemm,
        "head elementwise": head - gemm,
        "loss (fwd + bwd)": total("loss"),
        "clip + optimizer": total("clip") + total("optimizer"),
        "data gather": total("gather"),
    }
    scale = 1e-3 / (len(batches) * runs)  # us per profile -> ms per head step
    return {k: v * scale for k, v in out.items()}


EXP_RANGES = {  # exp's arguments: the baseline, then results that under- or overflow
    "[-80, 0] (baseline)": (-80.0, 0.0),
    "[-104, -88]: denormal result": (-104.0, -88.0),
    "[-200, -104]: result 0": (-200.0, -104.0),
    "[89, 200]: result inf": (89.0, 200.0),
    "-inf": (float("-inf"), float("-inf")),
}


def exp_ranges(repeats: int = 20) -> dict:
    "Seconds of `torch.exp` on 512 x 97 arguments drawn from each of `EXP_RANGES`."
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, (lo, hi) in EXP_RANGES.items():
        u = torch.rand(P, C, generator=g)
        x = torch.full((P, C), lo) if lo == hi else lo + (hi - lo) * u
        out[name] = best_seconds(lambda: x.exp(), repeats)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20, help="alternating rounds")
    ap.add_argument("--pairs", type=int, default=32768, help="training pairs drawn")
    ap.add_argument("--compile", action="store_true", help="also torch.compile losses")
    ap.add_argument(
        "--peak-sizes", type=int, nargs="+", default=[512, 1024, 2048], metavar="N"
    )
    a = ap.parse_args(argv)
    with lockstep.cpu_settings(a.threads):  # the lab's: its threads, denormals flushed
        return measure(a)


def measure(a) -> dict:
    "Peaks, head steps and breakdowns, with the arguments of `main`."
    x, labels = pairs(a.pairs)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randperm(a.pairs, generator=g)[:P] for _ in range(8)]
    peak = {"float32": gemm_peak(torch.float32, a.peak_sizes)}
    if (
        torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ):
        peak["bfloat16"] = gemm_peak(torch.bfloat16, a.peak_sizes)
    lab = LabConfig().matmul  # the lab's default products on this CPU
    lab = lockstep.fast_matmul() if lab == "auto" else lab
    forward = {"float32": "fp32", "bfloat16": "bf16"}[lab]  # its way of `lockstep_step`
    ways = {
        "one at a time": one_at_a_time(x, labels),
        "lockstep, autograd": lockstep_step(x, labels, "autograd"),
        "lockstep, fp32": lockstep_step(x, labels),
        "lockstep, bf16": lockstep_step(x, labels, "bf16"),
        "2 stacks side by side": two_stacks(x, labels, forward),
    }
    compile_s = None
    if a.compile:
        t = time.perf_counter()
        ways["lockstep, compiled"] = step = lockstep_step(
            x, labels, forward, compile_losses=True
        )
        step[0](batches[0])
        compile_s = time.perf_counter() - t
    best = {k: float("inf") for k in ways}
    for i in range(a.rounds):
        idx = batches[i % len(batches)]
        for name, (step, runs) in ways.items():
            t = time.perf_counter()
            step(idx)
            best[name] = min(best[name], (time.perf_counter() - t) / runs)
    fp32 = peak["float32"]["peak"]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    cpu = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, {a.threads} thread(s), {os.cpu_count()} CPUs "
        f"({cpu}), load average {os.getloadavg()[0]:.2f}, {date}"
    )
    for dt, p in peak.items():
        per = ", ".join(f"n={n}: {v:.0f}" for n, v in p["per_n"].items())
        print(f"GEMM peak {dt}: {p['peak']:.0f} GFLOP/s ({per})")
    flop = FLOP_PER_PAIR * P
    print(
        f"head step: {P} pairs, {flop / 1e6:.0f} MFLOP (forward + backward), "
        f"best of {a.rounds} alternating rounds"
    )
    base = best["one at a time"]
    print(f"the lab's products here (matmul={LabConfig().matmul!r}): {lab}")
    print(f'matmul="auto" would pick here: {lockstep.fast_matmul()}')
    for name, s in best.items():
        extra = f", compiled in {compile_s:.0f} s" if "compiled" in name else ""
        name += " (the lab)" if name == f"lockstep, {forward}" else ""
        print(
            f"  {name:<27} {1e3 * s:6.2f} ms per head step  {flop / s / 1e9:6.1f} "
            f"GFLOP/s  {100 * flop / s / 1e9 / fp32:5.1f}% of fp32 peak  "
            f"x{base / s:.2f}{extra}"
        )
    parts = {}
    for name in ("one at a time", "lockstep, fp32", "lockstep, bf16"):
        parts[name] = breakdown(ways[name][0], batches[:4], ways[name][1])
    print("breakdown, ms per head step (torch.profiler; it adds its own overhead):")
    print(f"  {'':<18}" + "".join(f"{n:>26}" for n in parts))
    for k in parts["one at a time"]:
        print(f"  {k:<18}" + "".join(f"{v[k]:>26.2f}" for v in parts.values()))
    exps = exp_ranges()
    base_exp = exps["[-80, 0] (baseline)"]
    print(f"torch.exp on {P} x {C} arguments (flushed denormals), by where they lie:")
    for name, s in exps.items():
        print(f"  {name:<30} {1e6 * s:8.1f} us  x{s / base_exp:.1f}")
    return dict(
        peak=peak, best=best, parts=parts, compile_s=compile_s, lab=lab, exp=exps
    )


if __name__ == "__main__":
    main()

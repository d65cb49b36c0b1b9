"""Every Part I exercise check judges the answer: known-wrong answers are rejected and
right variants (float32 where the text allows it, another formula, a list for a tuple,
a Python float for a tensor) pass.

Each answer is written here as a student would write it and taken the way grading takes
it (`grade.try_answers`: run, handed out as plain data, judged by the instructor's check
in the judge process). The wrong answers include the ones a review of the exercises
found accepted (limits typed in for m = 10**7, a root within 3e-4, a crossing at c = -5,
HingeABL's b* for MeanSAT's, tie-blind predictions, calling the function the exercise
forbids, typing back a value the check left behind) and some of our own.
"""

from pathlib import Path

import pytest

from hingeabl_nb.grade import load_key, try_answers

NBS = Path(__file__).resolve().parents[1] / "nbs"
K = "import math\nimport torch\nimport torch.nn.functional as F\n"

# {notebook: {exercise: {"wrong": {label: source}, "right": {label: source}}}}
ANSWERS = {
    "00_core": {
        1: {
            "wrong": {
                "float32 then upcast": "answer_1 = torch.sigmoid(torch.linspace(-20, 20, 101)).double()",
                "zeros": "answer_1 = torch.zeros(101, dtype=torch.float64)",
                "100 points": "answer_1 = torch.sigmoid(torch.linspace(-20, 20, 100, dtype=torch.float64))",
            },
            "right": {
                "closed form": "answer_1 = torch.sigmoid(torch.linspace(-20, 20, 101, dtype=torch.float64))",
                "a list": "answer_1 = torch.sigmoid(torch.linspace(-20, 20, 101, dtype=torch.float64)).tolist()",
            },
        }
    },
    "01_atl": {
        1: {
            "wrong": {
                "calls atl_loss": "def binary_logistic(logits, labels):\n    return atl_loss(logits, labels)",
                "through an alias": "f = atl_ref\ndef binary_logistic(logits, labels):\n    return torch.tensor(f(logits, labels))",
                "sign swapped": "def binary_logistic(logits, labels):\n    z = logits[:, 1] - logits[:, 0]\n    return torch.where(labels[:, 1] > 0.5, F.softplus(z), F.softplus(-z)).mean()",
                "sum": "def binary_logistic(logits, labels):\n    z = logits[:, 1] - logits[:, 0]\n    return torch.where(labels[:, 1] > 0.5, F.softplus(-z), F.softplus(z)).sum()",
            },
            "right": {
                "BCE with logits": "def binary_logistic(logits, labels):\n    return F.binary_cross_entropy_with_logits(logits[:, 1] - logits[:, 0], labels[:, 1])",
                "log-sigmoid": "def binary_logistic(logits, labels):\n    z = logits[:, 1] - logits[:, 0]\n    y = labels[:, 1]\n    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()",
            },
        },
        2: {
            "wrong": {
                "rounded": "answer_2 = 89.6",
                "one": "answer_2 = 1.0",
                "in float32": "lg, lb = synthetic_batch(400, na_share=0.94, gap=3.0, seed=1)\nr = threshold_grad_split(lg.float(), lb)\nanswer_2 = float(-r['grad_L2'] / r['grad_L1'])",
            },
            "right": {
                "autograd": "lg, lb = synthetic_batch(400, na_share=0.94, gap=3.0, seed=1)\nx = lg.double().requires_grad_()\nL1, L2 = atl_parts(x, lb)\n(g1,) = torch.autograd.grad(L1.mean(), x, retain_graph=True)\n(g2,) = torch.autograd.grad(L2.mean(), x)\nanswer_2 = -g2[:, 0].sum().item() / g1[:, 0].sum().item()",
            },
        },
    },
    "02_sat": {
        1: {
            "wrong": {
                "autograd": "def mean_sat_grad(logits, labels):\n    x = logits.clone().requires_grad_()\n    (g,) = torch.autograd.grad(mean_sat_loss(x, labels, prob_eps=0), x)\n    return g",
                "SAT's gradient": "def mean_sat_grad(logits, labels):\n    return sat_grad(logits, labels)",
            },
            "right": {},
        },
        2: {
            "wrong": {
                "swapped": "g = sat_grad(*[t.double() if t.is_floating_point() else t for t in synthetic_batch(400, na_share=0.94, gap=3.0, seed=1)])\nlb = synthetic_batch(400, na_share=0.94, gap=3.0, seed=1)[1]\nna = lb[:, 0] > 0.5\nanswer_2 = (g[~na, 0].sum().item(), g[na, 0].sum().item())",
                "typing back the check's value": "answer_2 = th_push_2()",
                "signs flipped": "lg, lb = synthetic_batch(400, na_share=0.94, gap=3.0, seed=1)\ng = sat_grad(lg.double(), lb)[:, 0]\nna = lb[:, 0] > 0.5\nanswer_2 = (-g[na].sum().item(), -g[~na].sum().item())",
            },
            "right": {
                "a list of numpy floats": "import numpy as np\nlg, lb = synthetic_batch(400, na_share=0.94, gap=3.0, seed=1)\ng = sat_grad(lg.double(), lb)[:, 0]\nna = lb[:, 0] > 0.5\nanswer_2 = [np.float64(g[na].sum()), np.float64(g[~na].sum())]",
            },
        },
    },
    "03_hinge": {
        1: {
            "wrong": {
                "the limits": "lg1, lb1 = synthetic_batch(50, n_rel=10, na_share=0.6, seed=5)\nlg1 = lg1.double()\nanswer_1 = (mean_sat_loss(lg1, lb1, prob_eps=0).item(), (sat_loss(lg1, lb1, prob_eps=0) / 10).item())",
                "m = 1e6": "lg1, lb1 = synthetic_batch(50, n_rel=10, na_share=0.6, seed=5)\nanswer_1 = tuple(hinge_abl_loss(lg1.double(), lb1, margin=1e6, normalize=n, prob_eps=0).item() for n in ('separate', 'joint'))",
                "swapped": "lg1, lb1 = synthetic_batch(50, n_rel=10, na_share=0.6, seed=5)\nanswer_1 = tuple(hinge_abl_loss(lg1.double(), lb1, margin=1e7, normalize=n, prob_eps=0).item() for n in ('joint', 'separate'))",
            },
            "right": {
                "tensors": "lg1, lb1 = synthetic_batch(50, n_rel=10, na_share=0.6, seed=5)\nanswer_1 = [hinge_abl_loss(lg1.double(), lb1, margin=1e7, normalize=n, prob_eps=0) for n in ('separate', 'joint')]",
            },
        },
        2: {
            "wrong": {
                "rounded": "answer_2 = (1.538, 0.769)",
                "swapped": "sp = lambda x: math.log1p(math.exp(-x))\nanswer_2 = ((6 * sp(-1) + 4 * sp(1) + 2 * sp(3)) / 12, sp(-1) + (4 * sp(1) + 2 * sp(3)) / 6)",
                "weights from m = 6": "sp = lambda x: math.log1p(math.exp(-x))\nanswer_2 = (sp(-1) + (5 * sp(1) + 3 * sp(3)) / 8, (7 * sp(-1) + 5 * sp(1) + 3 * sp(3)) / 15)",
            },
            "right": {
                "with the library": "row = torch.tensor([[0.0, -1.0, -1.0, -3.0, -6.0]], dtype=torch.float64)\nlab = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)\nanswer_2 = [hinge_abl_loss(row, lab, normalize=n, prob_eps=0).item() for n in ('separate', 'joint')]",
            },
        },
    },
    "04_convexity": {
        1: {
            "wrong": {
                "the crossing at -m": "answer_1 = -4.9999",
                "off by 2.8e-4": "answer_1 = math.log(math.e - 1) + 2.8e-4",
                "zero": "answer_1 = 0.0",
                "six decimals": "answer_1 = round(math.log(math.e - 1), 6)",
            },
            "right": {
                "closed form": "answer_1 = math.log(math.e - 1)",
                "a 0-d float64 tensor": "answer_1 = torch.tensor(math.log(math.e - 1), dtype=torch.float64)",
            },
        },
        2: {
            "wrong": {
                "m_w = 5": "c = torch.linspace(-0.999, 20, 2001, dtype=torch.float64)\nanswer_2 = hinge_class_curvature(c, 5.0)",
                "first derivative": "c = torch.linspace(-0.999, 20, 2001, dtype=torch.float64, requires_grad=True)\n(answer_2,) = torch.autograd.grad(hinge_class_loss(c, 1.0).sum(), c)",
            },
            "right": {
                "with F.softplus": "c = torch.linspace(-0.999, 20, 2001, dtype=torch.float64, requires_grad=True)\nf = (torch.clamp(1 + c, min=0) * F.softplus(c)).sum()\n(g1,) = torch.autograd.grad(f, c, create_graph=True)\n(answer_2,) = torch.autograd.grad(g1.sum(), c)",
            },
        },
        3: {
            "wrong": {
                "separate normalisation": "def two_inside(c):\n    s = torch.tensor([0.0, -c, -1.0, -20, -20], dtype=torch.float64)\n    return pair_loss(s, torch.tensor([True, False, False, False]), normalize='separate')",
                "relation 2 beyond the margin": "def two_inside(c):\n    s = torch.tensor([0.0, -c, -6.0, -20, -20], dtype=torch.float64)\n    return pair_loss(s, torch.tensor([True, False, False, False]), normalize='joint')",
            },
            "right": {
                "a Python float": "def two_inside(c):\n    s = torch.tensor([0.0, -c, -1.0, -20, -20], dtype=torch.float64)\n    return pair_loss(s, torch.tensor([True, False, False, False]), normalize='joint').item()",
            },
        },
    },
    "05_losses": {
        1: {
            "wrong": {
                "calls afl_loss": "def afl_paper_gamma0(logits, labels):\n    return afl_loss(logits, labels, gamma=0.0, focal_form='paper')",
                "no SAT part": "def afl_paper_gamma0(logits, labels):\n    pos = labels[:, 1:] > 0.5\n    in_pos = torch.cat([torch.zeros_like(pos[:, :1]), pos], 1)\n    return (torch.logsumexp(logits.masked_fill(in_pos, float('-inf')), 1) - logits[:, 0]).mean()",
            },
            "right": {},
        },
        2: {
            "wrong": {
                "swapped": "answer_2 = {n: (LOSSES[m](s + 3.0, y) - LOSSES[m](s, y)).abs().item() for n, m in (('BalancedSoftmax', 'ATL'), ('ATL', 'BalancedSoftmax'))}",
                "signed": "answer_2 = {n: (LOSSES[n](s, y) - LOSSES[n](s + 3.0, y)).item() for n in ('BalancedSoftmax', 'ATL')}",
            },
            "right": {
                "with the references": "answer_2 = {n: abs(LOSSES[n].ref(s + 3.0, y) - LOSSES[n].ref(s, y)) for n in ('BalancedSoftmax', 'ATL')}",
            },
        },
        3: {
            "wrong": {
                "strict at the k-th score (ties)": "def predict_rel_only(s, k):\n    kth = torch.topk(s[:, 1:], k, dim=1).values[:, -1:]\n    return ((s[:, 1:] > s[:, :1]) & (s[:, 1:] > kth)).float()",
                "exactly k (ties)": "def predict_rel_only(s, k):\n    top = torch.zeros_like(s[:, 1:]).scatter(1, torch.topk(s[:, 1:], k, dim=1).indices, 1.0)\n    return (top.bool() & (s[:, 1:] > s[:, :1])).float()",
            },
            "right": {
                "booleans": "def predict_rel_only(s, k):\n    kth = torch.topk(s[:, 1:], k, dim=1).values[:, -1:]\n    return (s[:, 1:] > s[:, :1]) & (s[:, 1:] >= kth)",
            },
        },
    },
    "05a_threshold": {
        1: {
            "wrong": {
                "HingeABL's b*": "one = torch.tensor([[0.0, 8.0] + [-4.0] * 95], dtype=torch.float64)\nlab = torch.zeros_like(one)\nlab[0, 1] = 1\nanswer_1 = loss_optimal_offset('HingeABL', one, lab)",
                "ATL's b*": "one = torch.tensor([[0.0, 8.0] + [-4.0] * 95], dtype=torch.float64)\nlab = torch.zeros_like(one)\nlab[0, 1] = 1\nanswer_1 = loss_optimal_offset('ATL', one, lab)",
            },
            "right": {
                "in float32": "one = torch.tensor([[0.0, 8.0] + [-4.0] * 95], dtype=torch.float64)\nlab = torch.zeros_like(one)\nlab[0, 1] = 1\nanswer_1 = torch.tensor(loss_optimal_offset('MeanSAT', one, lab), dtype=torch.float32)",
            },
        },
        2: {
            "wrong": {
                "swapped in each pair": "ps = [{}, dict(na_share=0.94, mu_gold=3.0, mu_neg=0.0, sd=1.0), dict(na_share=0.94, mu_gold=3.0, mu_neg=-3.0, sd=1.0)]\nrows = [threshold_table(*threshold_population(**p), names=['MeanSAT'])[0] for p in ps]\nanswer_2 = [(r['b_f1'], r['b_star']) for r in rows]",
                "HingeABL's": "ps = [{}, dict(na_share=0.94, mu_gold=3.0, mu_neg=0.0, sd=1.0), dict(na_share=0.94, mu_gold=3.0, mu_neg=-3.0, sd=1.0)]\nrows = [threshold_table(*threshold_population(**p), names=['HingeABL'])[0] for p in ps]\nanswer_2 = [(r['b_star'], r['b_f1']) for r in rows]",
            },
            "right": {
                "lists": "ps = [{}, dict(na_share=0.94, mu_gold=3.0, mu_neg=0.0, sd=1.0), dict(na_share=0.94, mu_gold=3.0, mu_neg=-3.0, sd=1.0)]\nrows = [threshold_table(*threshold_population(**p), names=['MeanSAT'])[0] for p in ps]\nanswer_2 = [[r['b_star'], r['b_f1']] for r in rows]",
            },
        },
    },
    "05b_toy": {
        1: {
            "wrong": {
                "margins swapped": "f = lambda m: train_toy(['HingeABL'], margin=m, steps=600, every=600, progress=False)['history']['HingeABL'][-1]['gold_below']\nanswer_1 = {1.0: f(5.0), 5.0: f(1.0)}",
                "500 steps": "f = lambda m: train_toy(['HingeABL'], margin=m, steps=500, every=500, progress=False)['history']['HingeABL'][-1]['gold_below']\nanswer_1 = {m: f(m) for m in (1.0, 5.0)}",
            },
            "right": {},
        },
        2: {
            "wrong": {
                "reversed": "f = lambda p: train_toy(['ATL'], steps=600, every=600, progress=False, data=dict(na_share=p))['history']['ATL'][-1]['gold_below']\nanswer_2 = [f(p) for p in (0.98, 0.93, 0.8)]",
            },
            "right": {},
        },
    },
}


def _trials(name: str) -> dict:
    "{trial id: {exercise: source}}: each answer of ANSWERS, plus the solutions' own."
    out = {}
    for n, sets in ANSWERS[name].items():
        for kind in ("wrong", "right"):
            for label, src in sets[kind].items():
                out[f"{kind}|{n}|{label}"] = {n: K + src}
    return out


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_checks_reject_wrong_answers_and_pass_right_ones(name):
    key = load_key(NBS / f"{name}.ipynb")
    assert sorted(ANSWERS[name]) == [e.n for e in key.exercises]  # every exercise
    got = try_answers(key, _trials(name))
    bad = []
    for tid, verdicts in got.items():
        kind, n, label = tid.split("|")
        status, msg = verdicts[int(n)]
        ok = status == "passed" if kind == "right" else status in ("wrong", "error")
        if not ok:
            bad.append(f"exercise {n}, {kind} answer '{label}': {status} {msg}")
        print(f"{name} {n} {kind:5} {label:32} {status:7} {msg[:90]}")
    assert not bad, bad
    assert any(k.startswith("wrong") for k in got)

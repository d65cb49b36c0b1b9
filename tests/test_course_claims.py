"""Claims of the course that no single notebook pins down for library users.

1. Every loss's defaults are the paper's (Appendix B: HingeABL's m = 5) or, where the
   paper states no value, the official code's; checked on the registry, on the functions
   called directly and by behaviour against numbers computed here by hand.
2. The convexity module (notebook 04) analyses the loss the library trains with: its
   per-class functions and curvature are checked against `LOSSES` itself, by finite
   differences and autograd.
3. The toy (notebook 05b) reports its metrics on its held-out pairs, not its training
   pairs.
"""

import inspect
import math

import pytest
import torch

from hingeabl_nb.convexity import (
    aml_class_loss,
    hinge_class_curvature,
    hinge_class_grad,
    hinge_class_loss,
    min_hessian_eig,
    pair_loss,
)
from hingeabl_nb.hinge import hinge_abl_loss, hinge_abl_per_pair, hinge_weights
from hingeabl_nb.losses import LOSSES, afl_loss, aml_loss
from hingeabl_nb.toy import fit_toy, toy_data

# What the paper states, and where it is silent what the official code uses
# (Jize-W/HingeABL, wzhouad/ATLOP). The tiny epsilons are the official code's.
STATED = {
    "ATL": {},
    "BalancedSoftmax": {},
    "AFL": dict(gamma=1.0, focal_form="official"),  # paper: no value; code: 1
    "AML": dict(margin=1.0),  # eq. (12) names m, no value; code: 1
    "SAT": dict(prob_eps=1e-30),
    "MeanSAT": dict(prob_eps=1e-30, negatives="rel"),  # eq. (11); code: 96 - N_p
    "HingeABL": dict(
        margin=5.0,  # Appendix B: "We select the margin of HingeABL as m = 5"
        normalize="separate",  # eq. (10) normalises jointly; the code separately
        detach_weights=False,
        norm_eps=1e-30,
        prob_eps=1e-30,
    ),
}

softplus = lambda x: math.log1p(math.exp(x)) if x < 30 else x + math.log1p(math.exp(-x))


def test_registry_defaults_are_the_stated_ones():
    assert list(LOSSES)[: len(STATED)] == list(STATED)  # Table 3, in its order
    for name, stated in STATED.items():
        assert LOSSES[name].defaults == stated, name
    assert [n for n in STATED if LOSSES[n].threshold == "zero"] == ["BalancedSoftmax"]


@pytest.mark.parametrize("name", list(STATED))
def test_functions_called_directly_have_the_same_defaults(name):
    # a user may call hinge_abl_loss(logits, labels) without the registry
    for fn in (LOSSES[name].fn, LOSSES[name].ref):
        params = inspect.signature(fn).parameters
        for option, value in STATED[name].items():
            if option in params:
                assert params[option].default == value, (fn.__name__, option)


def one_pair(scores, gold):
    "TH at 0 and the given relation scores; `gold` lists the gold columns (1-based)."
    logits = torch.tensor([[0.0, *scores]], dtype=torch.float64)
    labels = torch.zeros_like(logits)
    labels[0, list(gold)] = 1.0
    if not gold:
        labels[0, 0] = 1.0
    return logits, labels


def test_hinge_default_margin_is_five_by_behaviour():
    # gold at d = 3 (w = 2), negatives at d = 2, 4, 7 (w = 3, 1, 0): every term but the
    # last counts with m = 5, none with m = 1
    logits, labels = one_pair([3.0, -2.0, -4.0, -7.0], [1])
    m5 = softplus(-3) + (3 * softplus(-2) + 1 * softplus(-4)) / 4
    for value in (
        LOSSES["HingeABL"](logits, labels),
        hinge_abl_loss(logits, labels),
        LOSSES["HingeABL"].ref(logits, labels),
    ):
        assert float(value) == pytest.approx(m5, rel=1e-9)
    assert hinge_weights(torch.tensor(3.0)).item() == 2.0  # m - d with m = 5
    assert hinge_class_loss(torch.tensor(-3.0, dtype=torch.float64)).item() == (
        pytest.approx(2 * softplus(-3), rel=1e-12)
    )


def test_aml_and_afl_defaults_by_behaviour():
    logits, labels = one_pair([0.5, -0.25, -3.0], [1])  # d = 0.5, 0.25, 3
    aml = (1 - 0.5) + (1 - 0.25)  # m = 1: d = 3 is beyond the margin
    assert float(LOSSES["AML"](logits, labels)) == pytest.approx(aml)
    assert float(aml_loss(logits, labels)) == pytest.approx(aml)
    assert aml_class_loss(torch.tensor(-0.5)).item() == pytest.approx(0.5)  # m + c
    # AFL, official form, gamma = 1: (1 + (1 - P)) * -log P for the gold relation,
    # P = sigma(s_r - s_TH); then ATL's eq. (4) over TH and the negatives
    p = 1 / (1 + math.exp(-0.5))
    afl = (2 - p) * -math.log(p) + math.log(1 + math.exp(-0.25) + math.exp(-3.0))
    assert float(LOSSES["AFL"](logits, labels)) == pytest.approx(afl, rel=1e-9)
    assert float(afl_loss(logits, labels)) == pytest.approx(afl, rel=1e-9)


# --- 2. the convexity module analyses the loss the library trains with -------------


def registry_loss(name, c, positive=True):
    "LOSSES[name] on a pair with a single relation at c = -d, gold or absent."
    c = torch.as_tensor(c, dtype=torch.float64)  # keeps c's autograd graph
    logits = torch.stack([torch.zeros_like(c), -c if positive else c])[None]
    labels = torch.tensor([[0.0, 1.0] if positive else [1.0, 0.0]], dtype=c.dtype)
    return LOSSES[name](logits, labels)


C_GRID = [-4.5, -3.0, -1.0, -0.2, 0.0, 0.7, 2.0, 5.0, 12.0]


@pytest.mark.parametrize("positive", [True, False])
def test_aml_class_loss_is_the_aml_loss_and_linear(positive):
    m = LOSSES["AML"].defaults["margin"]
    for c in C_GRID + [-0.5]:
        actual = float(registry_loss("AML", c, positive))
        assert aml_class_loss(torch.tensor(c, dtype=torch.float64)).item() == (
            pytest.approx(actual, abs=1e-12)
        )
    # eq. (14) on the registry's loss: slope 1 and no curvature wherever c > -m
    h = 1e-3
    for c in [x for x in C_GRID if x > -m + 2 * h]:
        f = [float(registry_loss("AML", c + k * h, positive)) for k in (-1, 0, 1)]
        assert (f[2] - f[0]) / (2 * h) == pytest.approx(1.0, abs=1e-9)
        assert abs(f[2] - 2 * f[1] + f[0]) / h**2 < 1e-6


def unnormalised_hinge(c, positive=True):
    "Appendix E's per-class HingeABL from the registry: a lone relation's normalised"
    # weight is w / w = 1, so the registry gives softplus(c); times the dropped
    # normaliser w = max(0, m + c), m = 5 as the paper states
    c = torch.as_tensor(c, dtype=torch.float64)
    return (5.0 + c).clamp_min(0) * registry_loss("HingeABL", c, positive)


@pytest.mark.parametrize("positive", [True, False])
def test_hinge_class_loss_is_hingeabl_without_its_normaliser(positive):
    for c in C_GRID + [-6.0, -5.0]:
        want = float(unnormalised_hinge(c, positive))
        got = hinge_class_loss(torch.tensor(c, dtype=torch.float64)).item()
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), c


@pytest.mark.parametrize("positive", [True, False])
def test_hinge_strictly_convex_where_the_notebook_says(positive):
    # eqs. (19)-(20) of the module against derivatives of the registry's loss: autograd
    # for the slope, a central second difference for the curvature, on (-m, 20]
    for c in [x for x in C_GRID if x > -5] + [-4.9, 20.0]:
        x = torch.tensor(c, dtype=torch.float64, requires_grad=True)
        (slope,) = torch.autograd.grad(unnormalised_hinge(x, positive), x)
        assert hinge_class_grad(x.detach()).item() == pytest.approx(slope.item(), 1e-9)
        h = 1e-3
        f = [float(unnormalised_hinge(c + k * h, positive)) for k in (-1, 0, 1)]
        curvature = (f[2] - 2 * f[1] + f[0]) / h**2
        assert curvature > 0
        module = hinge_class_curvature(torch.tensor(c, dtype=torch.float64)).item()
        assert module == pytest.approx(curvature, rel=1e-4, abs=1e-6)
    # and flat, curvature 0, beyond the margin (c <= -m)
    f = [float(unnormalised_hinge(-7.0 + k * 1e-3, positive)) for k in (-1, 0, 1)]
    assert f == [0.0, 0.0, 0.0]


def test_pair_loss_and_its_hessian_are_those_of_hinge_abl_loss():
    g = torch.Generator().manual_seed(0)
    found_negative = 0
    for i in range(12):
        s = torch.randn(7, generator=g, dtype=torch.float64) * 3
        pos = torch.zeros(6, dtype=torch.bool)
        pos[0], pos[1] = True, i % 2 == 0
        labels = torch.cat([torch.zeros(1, dtype=torch.float64), pos.double()])[None]
        for normalize in ("separate", "joint"):

            def actual(x):
                return hinge_abl_loss(x[None], labels, normalize=normalize, prob_eps=0)

            ours = pair_loss(s, pos, normalize=normalize)
            assert ours.item() == pytest.approx(actual(s).item(), rel=1e-12)
            H = torch.autograd.functional.hessian(actual, s)
            want = torch.linalg.eigvalsh((H + H.T) / 2)[0].item()
            got = min_hessian_eig(lambda x: pair_loss(x, pos, normalize=normalize), s)
            assert got == pytest.approx(want, abs=1e-9)
            found_negative += want < -1e-6
    assert found_negative > 0  # notebook 04's "second break" is a property of the loss


def test_hinge_per_pair_matches_registry_mean():
    logits, labels = one_pair([3.0, -2.0, -4.0, -7.0], [1])
    d = torch.tensor([[3.0, 2.0, 4.0, 7.0]], dtype=torch.float64)
    per_pair = hinge_abl_per_pair(d, labels[:, 1:] > 0.5)
    assert per_pair.item() == pytest.approx(float(LOSSES["HingeABL"](logits, labels)))


# --- 3. the toy reports held-out metrics ---------------------------------------------

HELD_OUT_KEYS = ("gold_below", "gold_margin", "s_th", "F1")


def held_out_history(train, heldout, lr=0.02):
    hist = fit_toy("ATL", train, heldout, steps=20, lr=lr, every=10, progress=False)
    return [[e[k] for k in HELD_OUT_KEYS] for e in hist]


def test_toy_metrics_come_from_the_held_out_pairs():
    data = dict(n_pairs=600, n_rel=8, dim=16)
    train = toy_data(seed=0, **data)
    heldout_a, heldout_b = toy_data(seed=1, **data), toy_data(seed=2, **data)
    # the same training run scored on two held-out sets must give different numbers
    assert held_out_history(train, heldout_a) != held_out_history(train, heldout_b)
    # with lr = 0 the scorer never changes, so the training pairs cannot matter
    other_train = toy_data(seed=3, **data)
    frozen = held_out_history(train, heldout_a, lr=0.0)
    assert held_out_history(other_train, heldout_a, lr=0.0) == frozen

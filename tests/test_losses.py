"""Tests of hingeabl_nb.losses.

Every loss in the registry against its float64 loop reference (`LOSSES[name].ref`,
written in the notebooks from the formulas), hypothesis properties, and the prediction
rule.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hingeabl_nb.losses import LOSSES, LossSpec, predict

NAMES = list(LOSSES)  # every loss in the registry (a test may add one: conftest.py)


def make_batch(seed, n=7, c=12, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * scale
    labels = (torch.rand(n, c, generator=g) < 0.2).float()
    labels[:, 0] = 0
    labels[0] = 0
    labels[0, 0] = 1  # an NA pair
    labels[1, 1:] = 0
    labels[1, 2] = 1  # exactly one positive
    na = labels[:, 1:].sum(1) == 0
    labels[na, 0] = 1
    return logits, labels


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    n=st.integers(2, 6),
    c=st.integers(3, 12),
    scale=st.sampled_from([0.1, 1.0, 3.0, 20.0]),
)
def test_loss_matches_reference_float64(name, seed, n, c, scale):
    """Random float64 batches: the registry entry keeps float64 and equals the loop
    reference to 1e-10.
    """
    logits, labels = make_batch(seed, n, c, scale)
    got = LOSSES[name](logits.double(), labels.double())
    assert got.dtype == torch.float64 and got.ndim == 0
    torch.testing.assert_close(
        got.item(), LOSSES[name].ref(logits, labels), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_float32_matches_reference(name, seed):
    logits, labels = make_batch(seed)
    got = LOSSES[name](logits, labels)
    assert got.dtype == torch.float32 and got.ndim == 0
    torch.testing.assert_close(
        got.item(), LOSSES[name].ref(logits, labels), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "name,options",
    [
        ("AFL", dict(focal_form="paper")),
        ("AFL", dict(gamma=2.0)),
        ("AFL", dict(gamma=2.0, focal_form="paper")),
        ("AML", dict(margin=2.5)),
        ("SAT", dict(prob_eps=0.0)),
        ("MeanSAT", dict(prob_eps=0.0)),
        ("MeanSAT", dict(negatives="official")),
        ("MeanSAT", dict(negatives="official", prob_eps=0.0)),
        ("HingeABL", dict(normalize="joint")),
        ("HingeABL", dict(margin=2.0)),
        ("HingeABL", dict(margin=2.0, normalize="joint", prob_eps=0.0)),
    ],
)
def test_options_match_reference(name, options):
    logits, labels = make_batch(11)
    got = LOSSES[name](logits.double(), labels.double(), **options)
    torch.testing.assert_close(
        got.item(), LOSSES[name].ref(logits, labels, **options), rtol=1e-10, atol=1e-10
    )


def test_detached_weights_same_value_different_gradient():
    logits, labels = make_batch(5)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    loss_a = LOSSES["HingeABL"](a, labels)
    loss_b = LOSSES["HingeABL"](b, labels, detach_weights=True)
    torch.testing.assert_close(loss_a, loss_b)
    loss_a.backward()
    loss_b.backward()
    assert (a.grad - b.grad).abs().max() > 1e-4


def test_unknown_option_and_bad_shapes():
    logits, labels = make_batch(0)
    with pytest.raises(ValueError, match="allowed"):
        LOSSES["AML"](logits, labels, m=2.0)
    with pytest.raises(ValueError, match="same shape"):
        LOSSES["AFL"](logits, labels[:, :-1])
    with pytest.raises(ValueError, match="official"):
        LOSSES["AFL"](logits, labels, focal_form="focal")


def official_mean_sat_float64(logits, labels):
    """MeanSAT with the official code's arithmetic (Jize-W/HingeABL): sigmoid
    probabilities from exp, 1e-30 in the log and in both divisors, N_n = 96 - N_p
    whatever the number of relations. Python floats, float64."""
    total = 0.0
    for s, y in zip(logits.double().tolist(), labels.double().tolist()):
        gold = [r for r in range(1, len(s)) if y[r] > 0.5]
        absent = [r for r in range(1, len(s)) if y[r] <= 0.5]
        e = [math.exp(v) for v in s]
        pos = sum(-math.log(e[r] / (e[r] + e[0]) + 1e-30) for r in gold)
        neg = sum(-math.log(e[0] / (e[0] + e[r]) + 1e-30) for r in absent)
        total += pos / (len(gold) + 1e-30) + neg / (96 - len(gold) + 1e-30)
    return total / len(logits)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_sat_official_is_the_official_function_at_5_relations(seed):
    logits, labels = make_batch(seed, n=9, c=6, scale=2.0)  # 5 relations
    got = LOSSES["MeanSAT"](logits.double(), labels.double(), negatives="official")
    want = official_mean_sat_float64(logits, labels)
    torch.testing.assert_close(got.item(), want, rtol=1e-12, atol=1e-12)
    paper = LOSSES["MeanSAT"](logits.double(), labels.double()).item()
    assert paper > 1.5 * want  # eq. (11) divides the negatives by 5 - N_p, not 96 - N_p


def test_mean_sat_forms_agree_at_96_relations_only():
    logits, labels = make_batch(3, n=9, c=97)
    a, b = (LOSSES["MeanSAT"](logits, labels, negatives=n) for n in ("rel", "official"))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        b.item(), official_mean_sat_float64(logits, labels), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="negatives='96' must be 'rel' or 'official'"):
        LOSSES["MeanSAT"](logits, labels, negatives="96")


# ---------------------------------------------------------------- hypothesis properties
@st.composite
def batches(draw, lo=-30.0, hi=30.0):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(2, 8))
    logits = draw(arrays(np.float32, (n, c), elements=st.floats(lo, hi, width=32)))
    rel = draw(arrays(np.bool_, (n, c - 1)))
    labels = np.zeros((n, c), np.float32)
    labels[:, 1:] = rel
    labels[:, 0] = ~rel.any(1)
    return torch.from_numpy(logits), torch.from_numpy(labels)


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(NAMES))
def test_non_negative(batch, name):
    logits, labels = batch
    assert LOSSES[name](logits, labels).item() >= -1e-6


@settings(max_examples=60, deadline=None)
@given(
    batches(lo=-1e4, hi=1e4),
    st.sampled_from(NAMES),
    st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
)
def test_finite_and_inputs_unchanged(batch, name, dtype):
    logits, labels = batch
    logits = logits.to(dtype)
    keep_logits, keep_labels = logits.clone(), labels.clone()
    x = logits.clone().requires_grad_(True)
    v = LOSSES[name](x, labels)
    (g,) = torch.autograd.grad(v, x)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    LOSSES[name](logits, labels)
    assert logits.dtype == dtype and labels.dtype == torch.float32
    assert torch.equal(logits, keep_logits) and torch.equal(labels, keep_labels)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 8),
    st.integers(-40, 40),
    st.integers(0, 80),
    st.data(),
)
def test_hinge_zero_beyond_margin(n, n_rel, s_th, extra, data):
    s_th, extra = (
        s_th / 4,
        extra / 4,
    )  # quarters: exact in float32, so d_r is exactly m + extra
    m = data.draw(st.sampled_from([1.0, 5.0]))
    rel = torch.tensor(data.draw(arrays(np.bool_, (n, n_rel))))
    labels = torch.zeros(n, 1 + n_rel)
    labels[:, 1:] = rel.float()
    labels[:, 0] = (~rel.any(1)).float()
    # every d_r = m + extra >= m: positives above s_th + m, negatives below s_th - m
    logits = torch.full((n, 1 + n_rel), s_th, dtype=torch.float64)
    logits[:, 1:] = torch.where(rel, s_th + m + extra, s_th - m - extra)
    for normalize in ("separate", "joint"):
        assert (
            LOSSES["HingeABL"](logits, labels, margin=m, normalize=normalize).item()
            == 0.0
        )
    assert LOSSES["AML"](logits, labels, margin=m).item() == 0.0


# ---------------------------------------------------------------- predict
def ref_predict(s, top_k, zero):
    out = []
    for row in s.tolist():
        th = 0.0 if zero else row[0]
        kth = (
            sorted(row, reverse=True)[min(top_k, len(row)) - 1] if top_k else -math.inf
        )
        rel = [1.0 if (v > th and v >= kth) else 0.0 for v in row[1:]]
        out.append([0.0 if any(rel) else 1.0] + rel)
    return torch.tensor(out)


@settings(max_examples=80, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 5), st.integers(2, 9)),
        elements=st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]),
    ),  # few values: many ties
    st.sampled_from([None, 0, 1, 2, 4, 20]),
    st.booleans(),
)
def test_predict_matches_loop(s, top_k, zero):
    s = torch.from_numpy(s)
    got = predict(s, top_k=top_k, threshold="zero" if zero else "TH")
    assert got.shape == s.shape
    torch.testing.assert_close(got, ref_predict(s, top_k, zero))


def test_predict_hand_cases():
    s = torch.tensor([[0.0, 3.0, 2.0, 2.0, 1.0, -1.0]])
    assert predict(s, top_k=2).tolist() == [
        [0, 1, 1, 1, 0, 0]
    ]  # tie at the k-th place: both kept
    assert predict(s, top_k=1).tolist() == [[0, 1, 0, 0, 0, 0]]
    assert predict(s, top_k=None).tolist() == [[0, 1, 1, 1, 1, 0]]
    na = torch.tensor([[1.0, 0.5, -3.0]])
    assert predict(na).tolist() == [[1, 0, 0]]  # nothing above TH -> NA column
    assert predict(na, threshold="zero").tolist() == [
        [0, 1, 0]
    ]  # 0.5 > 0 under the zero threshold
    with pytest.raises(ValueError, match="top_k"):
        predict(s, top_k=-1)


def test_registry_entries_are_named_specs():
    # the threshold rules and HingeABL's margin are checked in 05_losses
    assert all(
        isinstance(spec, LossSpec) and spec.name == n for n, spec in LOSSES.items()
    )
    assert LOSSES["HingeABL"].defaults["normalize"] == "separate"

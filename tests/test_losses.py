"""Tests of hingeabl_nb.losses: every Table 3 loss against an independent float64 loop written here
from the formulas, hypothesis properties, and the prediction rule."""
import math
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from hingeabl_nb.losses import LOSSES, LossSpec, predict

NAMES = ["ATL", "BalancedSoftmax", "AFL", "AML", "SAT", "MeanSAT", "HingeABL"]


# ---------------------------------------------------------------- float64 loop references
def _lse(xs):
    mx = max(xs)
    return mx + math.log(sum(math.exp(x - mx) for x in xs))

def _log_sigmoid(x):  # log(1 / (1 + e^{-x})), stable both ways
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))

def _split(s, y):
    pos = [r for r in range(1, len(s)) if y[r] > 0.5]
    neg = [r for r in range(1, len(s)) if y[r] <= 0.5]
    d = {r: (s[r] - s[0]) if r in pos else (s[0] - s[r]) for r in range(1, len(s))}
    return pos, neg, d

def ref_atl(s, y):  # eqs. (3)-(5)
    pos, neg, _ = _split(s, y)
    lse_p = _lse([s[0]] + [s[r] for r in pos])
    l1 = sum(lse_p - s[r] for r in pos)
    l2 = _lse([s[0]] + [s[r] for r in neg]) - s[0]
    return l1 + l2

def ref_balanced_softmax(s, y):  # log(1 + sum_neg e^s) + log(1 + sum_pos e^-s), all columns, NA a class
    neg = [s[i] for i in range(len(s)) if y[i] <= 0.5]
    pos = [-s[i] for i in range(len(s)) if y[i] > 0.5]
    return _lse([0.0] + neg) + _lse([0.0] + pos)

def ref_afl(s, y, gamma=1.0, official=True):
    pos, neg, _ = _split(s, y)
    total = 0.0
    for r in pos:
        p = 1.0 / (1.0 + math.exp(s[0] - s[r]))
        w = (1.0 - p) ** gamma
        total += -(1.0 + w if official else w) * math.log(p)
    return total + _lse([s[0]] + [s[r] for r in neg]) - s[0]

def ref_aml(s, y, m=1.0):
    _, _, d = _split(s, y)
    return sum(max(0.0, m - d[r]) for r in d)

def _sat_term(d, eps=1e-30):
    return -math.log(1.0 / (1.0 + math.exp(-d)) + eps)

def ref_sat(s, y):
    _, _, d = _split(s, y)
    return sum(_sat_term(v) for v in d.values())

def ref_mean_sat(s, y):
    pos, neg, d = _split(s, y)
    p = sum(_sat_term(d[r]) for r in pos) / len(pos) if pos else 0.0
    n = sum(_sat_term(d[r]) for r in neg) / len(neg) if neg else 0.0
    return p + n

def ref_hinge(s, y, m=5.0, joint=False):
    pos, neg, d = _split(s, y)
    w = {r: max(0.0, m - d[r]) for r in d}
    groups = [pos + neg] if joint else [pos, neg]
    total = 0.0
    for g in groups:
        z = sum(w[r] for r in g) + 1e-30
        total += sum(w[r] / z * _sat_term(d[r]) for r in g)
    return total

REFS = {"ATL": ref_atl, "BalancedSoftmax": ref_balanced_softmax, "AFL": ref_afl, "AML": ref_aml,
        "SAT": ref_sat, "MeanSAT": ref_mean_sat, "HingeABL": ref_hinge}

def ref_mean(fn, logits, labels, **kw):
    s, y = logits.double().tolist(), labels.double().tolist()
    return sum(fn(si, yi, **kw) for si, yi in zip(s, y)) / len(s)


def make_batch(seed, n=7, c=12, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * scale
    labels = (torch.rand(n, c, generator=g) < 0.2).float()
    labels[:, 0] = 0
    labels[0] = 0; labels[0, 0] = 1            # an NA pair
    labels[1, 1:] = 0; labels[1, 2] = 1        # exactly one positive
    na = labels[:, 1:].sum(1) == 0
    labels[na, 0] = 1
    return logits, labels


# ---------------------------------------------------------------- registry
def test_keys_exact():
    assert list(LOSSES) == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_float64_loop(name, seed):
    logits, labels = make_batch(seed)
    got = LOSSES[name](logits, labels)
    assert got.dtype == torch.float32 and got.ndim == 0
    torch.testing.assert_close(got.double(), torch.tensor(ref_mean(REFS[name], logits, labels), dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,options,ref_kw", [
    ("AFL", dict(focal_form="paper"), dict(official=False)),
    ("AFL", dict(gamma=2.0), dict(gamma=2.0)),
    ("AFL", dict(gamma=2.0, focal_form="paper"), dict(gamma=2.0, official=False)),
    ("AML", dict(margin=2.5), dict(m=2.5)),
    ("HingeABL", dict(normalize="joint"), dict(joint=True)),
    ("HingeABL", dict(margin=2.0), dict(m=2.0)),
])
def test_options_match_float64_loop(name, options, ref_kw):
    logits, labels = make_batch(11)
    got = LOSSES[name](logits, labels, **options)
    want = ref_mean(REFS[name], logits, labels, **ref_kw)
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_detached_weights_same_value_different_gradient():
    logits, labels = make_batch(5)
    a = logits.clone().requires_grad_(True); b = logits.clone().requires_grad_(True)
    la = LOSSES["HingeABL"](a, labels); lb = LOSSES["HingeABL"](b, labels, detach_weights=True)
    torch.testing.assert_close(la, lb)
    la.backward(); lb.backward()
    assert (a.grad - b.grad).abs().max() > 1e-4


def test_unknown_option_and_bad_shapes():
    logits, labels = make_batch(0)
    with pytest.raises(ValueError, match="allowed"):
        LOSSES["AML"](logits, labels, m=2.0)
    with pytest.raises(ValueError, match="same shape"):
        LOSSES["AFL"](logits, labels[:, :-1])
    with pytest.raises(ValueError, match="official"):
        LOSSES["AFL"](logits, labels, focal_form="focal")


# ---------------------------------------------------------------- hypothesis properties
@st.composite
def batches(draw, lo=-30.0, hi=30.0):
    n = draw(st.integers(1, 4)); c = draw(st.integers(2, 8))
    logits = draw(arrays(np.float32, (n, c), elements=st.floats(lo, hi, width=32)))
    rel = draw(arrays(np.bool_, (n, c - 1)))
    labels = np.zeros((n, c), np.float32); labels[:, 1:] = rel
    labels[:, 0] = ~rel.any(1)
    return torch.from_numpy(logits), torch.from_numpy(labels)


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(NAMES))
def test_non_negative(batch, name):
    logits, labels = batch
    assert LOSSES[name](logits, labels).item() >= -1e-6


@settings(max_examples=60, deadline=None)
@given(batches(lo=-1e4, hi=1e4), st.sampled_from(NAMES), st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
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
@given(st.integers(1, 4), st.integers(1, 8), st.integers(-40, 40), st.integers(0, 80), st.data())
def test_hinge_zero_beyond_margin(n, n_rel, s_th, extra, data):
    s_th, extra = s_th / 4, extra / 4  # quarters: exact in float32, so d_r is exactly m + extra
    m = data.draw(st.sampled_from([1.0, 5.0]))
    rel = torch.tensor(data.draw(arrays(np.bool_, (n, n_rel))))
    labels = torch.zeros(n, 1 + n_rel); labels[:, 1:] = rel.float(); labels[:, 0] = (~rel.any(1)).float()
    # every d_r = m + extra >= m: positives above s_th + m, negatives below s_th - m
    logits = torch.full((n, 1 + n_rel), s_th, dtype=torch.float64)
    logits[:, 1:] = torch.where(rel, s_th + m + extra, s_th - m - extra)
    for normalize in ("separate", "joint"):
        assert LOSSES["HingeABL"](logits, labels, margin=m, normalize=normalize).item() == 0.0
    assert LOSSES["AML"](logits, labels, margin=m).item() == 0.0


# ---------------------------------------------------------------- predict
def ref_predict(s, top_k, zero):
    out = []
    for row in s.tolist():
        th = 0.0 if zero else row[0]
        kth = sorted(row, reverse=True)[min(top_k, len(row)) - 1] if top_k else -math.inf
        rel = [1.0 if (v > th and v >= kth) else 0.0 for v in row[1:]]
        out.append([0.0 if any(rel) else 1.0] + rel)
    return torch.tensor(out)


@settings(max_examples=80, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(2, 9)),
              elements=st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])),  # few values: many ties
       st.sampled_from([None, 0, 1, 2, 4, 20]), st.booleans())
def test_predict_matches_loop(s, top_k, zero):
    s = torch.from_numpy(s)
    got = predict(s, top_k=top_k, zero_threshold=zero)
    assert got.shape == s.shape
    torch.testing.assert_close(got, ref_predict(s, top_k, zero))


def test_predict_hand_cases():
    s = torch.tensor([[0.0, 3.0, 2.0, 2.0, 1.0, -1.0]])
    assert predict(s, top_k=2).tolist() == [[0, 1, 1, 1, 0, 0]]      # tie at the k-th place: both kept
    assert predict(s, top_k=1).tolist() == [[0, 1, 0, 0, 0, 0]]
    assert predict(s, top_k=None).tolist() == [[0, 1, 1, 1, 1, 0]]
    na = torch.tensor([[1.0, 0.5, -3.0]])
    assert predict(na).tolist() == [[1, 0, 0]]                        # nothing above TH -> NA column
    assert predict(na, zero_threshold=True).tolist() == [[0, 1, 0]]   # 0.5 > 0 under the zero threshold
    with pytest.raises(ValueError, match="top_k"):
        predict(s, top_k=-1)


def test_threshold_rules_live_in_the_registry():
    assert [n for n, spec in LOSSES.items() if spec.threshold == "zero"] == ["BalancedSoftmax"]
    s = torch.tensor([[0.5, 0.3, -0.2], [-1.0, -0.5, 0.4]])
    assert LOSSES["BalancedSoftmax"].predict(s, top_k=None).tolist() == [[0, 1, 0], [0, 0, 1]]
    assert LOSSES["HingeABL"].predict(s, top_k=None).tolist() == [[1, 0, 0], [0, 1, 1]]
    assert all(isinstance(spec, LossSpec) and spec.name == n for n, spec in LOSSES.items())
    assert LOSSES["HingeABL"].defaults["margin"] == 5.0 and LOSSES["HingeABL"].defaults["normalize"] == "separate"


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    """Analytic gradients equal finite differences; needs float64 kept as float64 by the registry."""
    g = torch.Generator().manual_seed(11)
    y = torch.zeros(5, 8, dtype=torch.float64); y[0, 0] = 1; y[1, 3] = 1; y[2, [1, 6]] = 1; y[3, 0] = 1; y[4, 2] = 1
    x = (torch.randn(5, 8, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    assert LOSSES[name](x, y).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda s: LOSSES[name](s, y), (x,))

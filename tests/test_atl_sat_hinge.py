"""Tests of hingeabl_nb.atl, .sat and .hinge.

Checked against the exported float64 loop references (atl_ref, sat_ref, mean_sat_ref,
hinge_abl_ref), closed-form gradients and hand numbers (eqs. 3-11).
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hingeabl_nb.atl import (
    atl_loss,
    atl_parts,
    atl_ref,
    synthetic_batch,
    threshold_grad_split,
)
from hingeabl_nb.hinge import hinge_abl_loss, hinge_abl_ref, hinge_weights
from hingeabl_nb.sat import (
    distances,
    mean_sat_loss,
    mean_sat_ref,
    sat_grad,
    sat_loss,
    sat_ref,
)

torch.set_num_threads(1)
FAST = settings(max_examples=40, deadline=None)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def make_batch(seed, n_pairs, n_rel, scale, na_share=0.5):
    "Random float64 logits and multi-hot labels with a valid NA column."
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_pairs, 1 + n_rel, generator=g, dtype=torch.float64) * scale
    pos = torch.rand(n_pairs, n_rel, generator=g) < 0.3
    pos[torch.rand(n_pairs, generator=g) < na_share] = False
    labels = torch.cat([(~pos.any(1, keepdim=True)), pos], 1).double()
    return logits, labels


def all_losses():
    "Every loss with its option variants, as (name, callable)."
    out = [("atl", atl_loss), ("sat", sat_loss), ("mean_sat", mean_sat_loss)]
    for norm in ("separate", "joint"):
        for det in (False, True):
            out.append(
                (
                    f"hinge_{norm}_{det}",
                    lambda x, y, n=norm, d=det: hinge_abl_loss(
                        x, y, normalize=n, detach_weights=d
                    ),
                )
            )
    return out


# ---- small float64 helpers for the gradient formulas ---------------------------------
# (the loss references are the exported *_ref)


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def rows(logits, labels):
    for s, y in zip(logits.tolist(), labels.tolist()):
        P = [r for r in range(1, len(s)) if y[r] > 0.5]
        N = [r for r in range(1, len(s)) if y[r] <= 0.5]
        yield s, P, N


def lse(xs):
    mx = max(xs)
    return mx + math.log(sum(math.exp(x - mx) for x in xs))


def ref_terms(s, P, N):
    "(is_positive, d_r) for every relation of a pair, eq. (8)."
    return [(r in P, s[r] - s[0] if r in P else s[0] - s[r]) for r in range(1, len(s))]


batches = st.tuples(
    st.integers(0, 10**6),
    st.integers(1, 6),
    st.integers(1, 9),
    st.sampled_from([0.1, 1.0, 5.0, 20.0]),
)


# ---- agreement with the loop references ----------------------------------------------


@FAST
@given(batches)
def test_atl_matches_reference(b):
    logits, labels = make_batch(*b)
    L1, L2 = atl_parts(logits, labels)
    per_pair = torch.tensor(
        [atl_ref(logits[i : i + 1], labels[i : i + 1]) for i in range(len(logits))],
        dtype=torch.float64,
    )
    torch.testing.assert_close(L1 + L2, per_pair, rtol=1e-10, atol=1e-10)
    eq6 = [
        softplus(lse([s[r] - s[0] for r in N])) if N else 0.0
        for s, P, N in rows(logits, labels)
    ]  # eq. (6), a different formula
    torch.testing.assert_close(
        L2, torch.tensor(eq6, dtype=torch.float64), rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(
        atl_loss(logits, labels).item(), atl_ref(logits, labels), rtol=1e-10, atol=1e-10
    )


@FAST
@given(batches, st.sampled_from([1e-30, 0.0]), st.sampled_from(["rel", "official"]))
def test_sat_and_mean_sat_match_reference(b, eps, negatives):
    logits, labels = make_batch(*b)
    torch.testing.assert_close(
        sat_loss(logits, labels, prob_eps=eps).item(),
        sat_ref(logits, labels, prob_eps=eps),
        rtol=1e-10,
        atol=1e-10,
    )
    torch.testing.assert_close(
        mean_sat_loss(logits, labels, prob_eps=eps, negatives=negatives).item(),
        mean_sat_ref(logits, labels, prob_eps=eps, negatives=negatives),
        rtol=1e-10,
        atol=1e-10,
    )


@FAST
@given(
    batches,
    st.sampled_from([0.5, 1.0, 5.0]),
    st.sampled_from(["separate", "joint"]),
    st.sampled_from([1e-30, 0.0]),
)
def test_hinge_matches_reference(b, m, normalize, eps):
    logits, labels = make_batch(*b)
    ours = hinge_abl_loss(
        logits, labels, margin=m, normalize=normalize, prob_eps=eps
    ).item()
    torch.testing.assert_close(
        ours,
        hinge_abl_ref(logits, labels, margin=m, normalize=normalize, prob_eps=eps),
        rtol=1e-10,
        atol=1e-10,
    )


def test_references_hand_numbers():
    """The references themselves, on a pair typed out by hand: gold at d = 2 and d = 1,
    one negative at d = 1.
    """
    logits = torch.tensor([[0.0, 2.0, -1.0, 1.0]])
    labels = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    sp = lambda d: math.log1p(math.exp(-d))  # softplus(-d)
    assert math.isclose(
        atl_ref(logits, labels),
        2 * math.log(1 + math.e**2 + math.e) - 3 + math.log(1 + math.exp(-1)),
        rel_tol=1e-12,
    )
    assert math.isclose(
        sat_ref(logits, labels, prob_eps=0), sp(2) + 2 * sp(1), rel_tol=1e-12
    )
    assert math.isclose(
        mean_sat_ref(logits, labels, prob_eps=0),
        (sp(2) + sp(1)) / 2 + sp(1),
        rel_tol=1e-12,
    )
    assert math.isclose(
        hinge_abl_ref(logits, labels, prob_eps=0),
        3 / 7 * sp(2) + 4 / 7 * sp(1) + sp(1),
        rel_tol=1e-12,
    )
    assert math.isclose(
        hinge_abl_ref(logits, labels, normalize="joint", prob_eps=0),
        (3 * sp(2) + 8 * sp(1)) / 11,
        rel_tol=1e-12,
    )
    with pytest.raises(ValueError, match="normalize must be one of"):
        hinge_abl_ref(logits, labels, normalize="global")


def test_distances_hand_numbers():
    logits = torch.tensor([[0.5, 2.0, -1.0], [1.0, 3.0, 0.0]])
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(
        distances(logits, labels), torch.tensor([[1.5, 1.5], [-2.0, 1.0]])
    )


def test_hinge_weights_hand_numbers():
    torch.testing.assert_close(
        hinge_weights(torch.tensor([-2.0, 0.0, 3.0, 5.0, 9.0]), 5.0),
        torch.tensor([7.0, 5.0, 2.0, 0.0, 0.0]),
    )


def test_official_epsilon_caps_far_wrong_terms():
    # one positive relation at d = -200: -log(sigma(d) + 1e-30) = -log(1e-30) in the
    # official code
    logits = torch.tensor([[200.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(
        sat_loss(logits, labels).item(), -math.log(1e-30), rtol=1e-9, atol=1e-9
    )
    torch.testing.assert_close(
        sat_loss(logits, labels, prob_eps=0).item(), 200.0, rtol=1e-12, atol=1e-12
    )


# ---- properties ----------------------------------------------------------------------


@FAST
@given(batches)
def test_losses_non_negative(b):
    logits, labels = make_batch(*b)
    for name, f in all_losses():
        assert f(logits, labels).item() >= 0, name


@FAST
@given(
    st.integers(0, 10**6),
    st.integers(1, 5),
    st.integers(1, 8),
    st.sampled_from([0.5, 5.0]),
    st.sampled_from(["separate", "joint"]),
)
def test_hinge_zero_when_all_beyond_margin(seed, n_pairs, n_rel, m, normalize):
    g = torch.Generator().manual_seed(seed)
    _, labels = make_batch(seed, n_pairs, n_rel, 1.0)
    s_th = torch.randn(n_pairs, 1, generator=g, dtype=torch.float64)
    u = 0.01 + 10 * torch.rand(
        n_pairs, n_rel, generator=g, dtype=torch.float64
    )  # every d_r = m + u > m
    sign = 2 * labels[:, 1:] - 1
    logits = torch.cat([s_th, s_th + sign * (m + u)], 1).requires_grad_()
    loss = hinge_abl_loss(logits, labels, margin=m, normalize=normalize)
    (grad,) = torch.autograd.grad(loss, logits)
    assert loss.item() == 0.0
    assert (grad == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_big_logits_finite_in_all_dtypes(dtype, sign):
    logits, labels = synthetic_batch(16, n_rel=8, na_share=0.5, seed=0)
    big = (sign * 1e4 * logits).to(dtype)
    for name, f in all_losses() + [
        ("sat_eps0", lambda x, y: sat_loss(x, y, prob_eps=0)),
        ("hinge_eps0", lambda x, y: hinge_abl_loss(x, y, prob_eps=0)),
    ]:
        x = big.clone().requires_grad_()
        loss = f(x, labels)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss.dtype == torch.float32, name
        assert torch.isfinite(loss), name
        assert torch.isfinite(grad).all(), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_inputs_compute_in_float32(dtype):
    logits, labels = synthetic_batch(20, n_rel=8, na_share=0.5, seed=1)
    low = (3 * logits).to(dtype)
    for name, f in all_losses():
        out = f(low, labels)
        assert out.dtype == torch.float32, name
        torch.testing.assert_close(
            out.double(), f(low.double(), labels.double()), rtol=1e-5, atol=1e-5
        )


def test_inputs_unchanged():
    logits, labels = make_batch(3, 6, 7, 2.0)
    logits = logits.float()
    labels = labels.float()
    lc, yc = logits.clone(), labels.clone()
    for name, f in all_losses():
        f(logits, labels)
        assert torch.equal(logits, lc) and torch.equal(labels, yc), name
        assert not logits.requires_grad
    threshold_grad_split(logits, labels)
    distances(logits, labels)
    sat_grad(logits, labels)
    assert torch.equal(logits, lc) and torch.equal(labels, yc)


# ---- gradients -----------------------------------------------------------------------


@FAST
@given(batches)
def test_sat_grad_matches_autograd(b):
    logits, labels = make_batch(*b)
    x = logits.clone().requires_grad_()
    (g,) = torch.autograd.grad(sat_loss(x, labels, prob_eps=0), x)
    torch.testing.assert_close(sat_grad(logits, labels), g, rtol=1e-10, atol=1e-12)


def test_threshold_grad_split_matches_loop_formulas():
    logits, labels = synthetic_batch(60, n_rel=12, na_share=0.8, gap=1.0, seed=2)
    res = threshold_grad_split(logits.double(), labels)
    g1 = g2 = 0.0
    for s, P, N in rows(logits.double(), labels):
        g1 += len(P) * math.exp(
            s[0] - lse([s[0]] + [s[r] for r in P])
        )  # |P| * softmax(TH) among P + TH
        g2 += (
            math.exp(s[0] - lse([s[0]] + [s[r] for r in N])) - 1
        )  # softmax(TH) among N + TH, minus 1
    torch.testing.assert_close(res["grad_L1"], g1 / 60, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(res["grad_L2"], g2 / 60, rtol=1e-10, atol=1e-12)
    assert res["step_L1"] == -1 and res["step_L2"] == 1


@pytest.mark.parametrize("normalize", ["separate", "joint"])
def test_non_detached_extra_gradient(normalize):
    """Not detaching adds -1[d_k<m] (l_k - L_group) / W_group to dL/dd_k (loop formula,
    float64).
    """
    m = 5.0
    logits, labels = make_batch(11, 8, 10, 3.0)
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    (g_def,) = torch.autograd.grad(
        hinge_abl_loss(x1, labels, margin=m, normalize=normalize, prob_eps=0), x1
    )
    (g_det,) = torch.autograd.grad(
        hinge_abl_loss(
            x2, labels, margin=m, normalize=normalize, prob_eps=0, detach_weights=True
        ),
        x2,
    )
    expected = torch.zeros_like(logits)
    n = len(logits)
    for i, (s, P, N) in enumerate(rows(logits, labels)):
        t = ref_terms(s, P, N)
        groups = (
            [list(range(len(t)))]
            if normalize == "joint"
            else [
                [k for k in range(len(t)) if t[k][0]],
                [k for k in range(len(t)) if not t[k][0]],
            ]
        )
        for grp in groups:
            W = sum(max(0.0, m - t[k][1]) for k in grp)
            if W == 0:
                continue
            Lg = sum(max(0.0, m - t[k][1]) * softplus(-t[k][1]) for k in grp) / W
            for k in grp:
                if t[k][1] >= m:
                    continue
                extra_d = -(softplus(-t[k][1]) - Lg) / W / n  # d(mean loss)/d d_k
                sgn = 1.0 if t[k][0] else -1.0  # d d_k / d s_k
                expected[i, k + 1] += sgn * extra_d
                expected[i, 0] -= sgn * extra_d
    torch.testing.assert_close(g_def - g_det, expected, rtol=1e-9, atol=1e-12)


# ---- errors --------------------------------------------------------------------------


def test_errors_name_the_problem():
    logits, labels = torch.zeros(3, 5), torch.zeros(3, 4)
    for f in (atl_loss, sat_loss, mean_sat_loss, hinge_abl_loss):
        with pytest.raises(ValueError, match="labels shape"):
            f(logits, labels)
    with pytest.raises(ValueError, match="normalize must be one of"):
        hinge_abl_loss(torch.zeros(2, 3), torch.eye(3)[:2], normalize="global")
    with pytest.raises(ValueError, match="logits must have shape"):
        atl_loss(torch.zeros(4), torch.zeros(4))

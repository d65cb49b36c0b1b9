"""Tests of hingeabl_nb.threshold (notebook 05a).

Moving the threshold, the loss-optimal offset against closed forms derived by hand, F1
at an offset on hand-counted cases, the exact F1-optimal offset against every cut, the
table's shape and the sweep's rows.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hingeabl_nb.losses import LOSSES
from hingeabl_nb.threshold import (
    f1_at_offset,
    f1_optimal_offset,
    loss_minima,
    loss_optimal_offset,
    offset_sweep,
    pair_labels,
    shift_threshold,
    threshold_population,
    threshold_table,
)


def one_pair(s_p, s_n, n_neg):
    "One pair: TH at 0, one gold score s_p, n_neg negatives at s_n (float64)."
    logits = torch.tensor([[0.0, s_p] + [s_n] * n_neg], dtype=torch.float64)
    labels = torch.zeros_like(logits)
    labels[0, 1] = 1
    return logits, labels


def test_shift_threshold_moves_relations_only_and_copies():
    logits = torch.tensor([[0.5, 1.0, -2.0], [3.0, 0.0, 4.0]], dtype=torch.float64)
    before = logits.clone()
    out = shift_threshold(logits, 1.5)
    torch.testing.assert_close(out[:, 0], before[:, 0])  # the TH column stays
    torch.testing.assert_close(
        out[:, 1:], before[:, 1:] - 1.5
    )  # every relation score moves down
    torch.testing.assert_close(logits, before)  # the argument is not modified
    torch.testing.assert_close(
        (out[:, 1:] - out[:, :1]), (logits[:, 1:] - logits[:, :1]) - 1.5
    )


@settings(max_examples=15, deadline=None)
@given(s_p=st.floats(-3, 5), gap=st.floats(0.5, 8), n_neg=st.integers(1, 60))
def test_atl_offset_matches_closed_form(s_p, gap, n_neg):
    # softplus(b - s_p) + log(1 + N e^{s_n - b}) is convex in b with its minimum at
    # (s_p + s_n + log N) / 2
    s_n = s_p - gap
    b = loss_optimal_offset("ATL", *one_pair(s_p, s_n, n_neg), lo=-20, hi=20)
    assert b == pytest.approx((s_p + s_n + math.log(n_neg)) / 2, abs=1e-4)


@pytest.mark.parametrize("n_neg", [1, 10, 95])
def test_mean_sat_offset_is_the_midpoint(n_neg):
    # softplus(b - s_p) + softplus(s_n - b) (the mean over identical negatives):
    # symmetric about (s_p + s_n)/2
    b = loss_optimal_offset("MeanSAT", *one_pair(2.0, -3.0, n_neg))
    assert b == pytest.approx(-0.5, abs=1e-4)


def test_offset_unknown_loss_names_allowed():
    with pytest.raises(ValueError, match="allowed"):
        loss_optimal_offset("Focal", *one_pair(1.0, -1.0, 3))


def test_f1_at_offset_hand_counted():
    logits = torch.tensor(
        [[0.0, 3.0, 1.0, -2.0], [0.0, -1.0, 2.0, -3.0], [1.0, 0.0, 0.5, 0.0]],
        dtype=torch.float64,
    )
    labels = torch.tensor(
        [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
        dtype=torch.float64,
    )
    # b = 0: predicted (0,1), (0,2), (1,2); pair 2 predicts nothing (all below its
    # TH 1). 2 correct, 3 predicted, 2 gold
    assert f1_at_offset(logits, labels, 0.0) == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    # b = -1.2 (every relation score + 1.2): pair 0 predicts 2, pair 1 predicts 2
    # (0.2 > 0 joins), pair 2 all 3
    # (1.2, 1.7, 1.2 > 1): 2 correct of 7 predicted -> P = 2/7, R = 1
    assert f1_at_offset(logits, labels, -1.2) == pytest.approx(
        2 * (2 / 7) / (2 / 7 + 1)
    )
    assert f1_at_offset(logits, labels, 2.5) == pytest.approx(
        2 * 1 * 0.5 / 1.5
    )  # only 3 - 2.5 > 0 survives
    # Balanced Softmax thresholds at 0, not at column 0: at b = 0 pairs 0, 1, 2
    # predict 3 and 1, 2, 0.5: 2 correct of 4
    assert f1_at_offset(logits, labels, 0.0, "zero") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_threshold_table_rows_in_order_and_consistent():
    logits, labels = threshold_population(n_pairs=300, n_rel=12, seed=3)
    names = ["HingeABL", "ATL", "MeanSAT"]
    rows = threshold_table(logits, labels, names=names, step=0.5)
    assert [r["loss"] for r in rows] == names
    gold = labels[:, 1:] > 0.5
    for r in rows:
        assert set(r) == {
            "loss",
            "b_star",
            "minima",
            "gold_below",
            "f1_at_b_star",
            "b_f1",
            "best_f1",
        }
        assert (
            r["best_f1"] >= r["f1_at_b_star"] - 1e-12
        )  # the F1 optimum over the grid is at least as good
        assert r["b_star"] == pytest.approx(
            loss_optimal_offset(r["loss"], logits, labels, step=0.5)
        )
        below = (
            (logits[:, 1:] - r["b_star"] <= 0) & gold
        ).sum().item() / gold.sum().item()  # counted here, TH = 0
        assert r["gold_below"] == pytest.approx(below)
    by = {r["loss"]: r for r in rows}
    assert (
        by["ATL"]["b_star"] > by["HingeABL"]["b_star"]
    )  # ATL wants the threshold higher (05a)


def test_population_rejects_bad_share():
    with pytest.raises(ValueError, match="na_share"):
        threshold_population(na_share=1.2)


@pytest.mark.parametrize("rule", ["TH", "zero"])
def test_f1_optimal_offset_beats_every_cut(rule):
    logits, labels = threshold_population(n_pairs=120, n_rel=6, na_share=0.6, seed=4)
    logits[:, 0] = torch.randn(
        120, generator=torch.Generator().manual_seed(5)
    )  # TH varies
    b, f1 = f1_optimal_offset(logits, labels, rule)
    assert f1_at_offset(logits, labels, b, rule) == pytest.approx(f1, abs=1e-12)
    # brute force: every cut between two sorted margins, scored by pair_prf
    th = torch.zeros(120) if rule == "zero" else logits[:, 0]
    m = (logits[:, 1:] - th[:, None]).flatten().sort().values
    cuts = ((m[1:] + m[:-1]) / 2).tolist() + [m[0].item() - 1, m[-1].item() + 1]
    assert f1 == pytest.approx(max(f1_at_offset(logits, labels, c, rule) for c in cuts))


def test_offset_sweep_rows_are_threshold_table_rows():
    pops = {"a": dict(n_pairs=200, n_rel=12), "b": dict(n_pairs=200, n_rel=12, seed=1)}
    rows = offset_sweep(pops, names=["ATL", "HingeABL"])
    assert [(r["population"], r["loss"]) for r in rows] == [
        ("a", "ATL"),
        ("a", "HingeABL"),
        ("b", "ATL"),
        ("b", "HingeABL"),
    ]
    for r in rows:
        logits, labels = threshold_population(**pops[r["population"]])
        assert r["offset"] == pytest.approx(r["b_star"] - r["b_f1"])
        assert r["b_star"] == pytest.approx(
            loss_optimal_offset(r["loss"], logits, labels), abs=1e-2
        )  # float32, b* to 0.01, lands where float64 and the default scan do


@pytest.mark.parametrize("name", ["ATL", "BalancedSoftmax", "AML", "SAT", "MeanSAT"])
@pytest.mark.parametrize("kw", [dict(noise="t3", sd=1.5), dict(n_rel=5, na_share=0.5)])
def test_losses_convex_in_b_have_one_minimum(name, kw):
    # each is a sum of convex functions of b with weights that do not depend on b
    lg, lb = threshold_population(n_pairs=300, seed=2, **kw)
    mins = loss_minima(name, lg, lb, lo=-10, hi=10, step=0.25)
    assert len(mins) == 1
    b, v = mins[0]
    f = lambda x: LOSSES[name](shift_threshold(lg, x), lb).item()
    assert v <= min(f(b - 0.05), f(b + 0.05))  # a minimum, refined


def test_loss_minima_finds_both_minima_of_hinge_on_t3_negatives():
    lg, lb = threshold_population(n_pairs=1000, noise="t3", sd=1.0)
    mins = loss_minima("HingeABL", lg, lb, lo=-6, hi=6)
    assert len(mins) == 2
    (b1, v1), (b2, v2) = mins
    f = lambda x: LOSSES["HingeABL"](shift_threshold(lg, x), lb).item()
    hump = max(f(b1 + k * (b2 - b1) / 20) for k in range(1, 20))
    assert hump > max(v1, v2) + 0.01  # two basins, not one flat valley
    assert loss_optimal_offset("HingeABL", lg, lb, lo=-6, hi=6) == (
        b1 if v1 < v2 else b2
    )


def test_more_gold_relations_are_drawn_after_the_first_two():
    rel = torch.arange(500) % 3 == 0
    two, four = (
        pair_labels(rel, 96, 1.0, torch.Generator().manual_seed(4), max_gold=k)
        for k in (2, 4)
    )
    assert ((two > 0.5) <= (four > 0.5)).all()  # every gold of the first two stays
    per_pair = four[rel, 1:].sum(1)
    assert per_pair.max() == 4 and per_pair.min() >= 2 and (four[~rel, 0] == 1).all()

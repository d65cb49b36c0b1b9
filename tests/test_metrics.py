"""Tests of hingeabl_nb.metrics.

Against hand-computed numbers and independent float64 / loop references.
"""

import copy
import math
import random

import pytest
import torch

from hingeabl_nb.metrics import (
    PATTERNS,
    gold_ranks,
    macro_scores,
    official_scores,
    pair_patterns,
    pattern_ratios,
    pattern_stats,
    to_official,
    train_facts,
)


def ent(*names):
    return [{"name": n, "sent_id": 0, "pos": [0, 1], "type": "MISC"} for n in names]


def lab(h, t, r):
    return {"h": h, "t": t, "r": r, "evidence": []}


# Two gold documents: 4 unique gold triples (one label repeated).
GOLD = [
    {
        "title": "A",
        "vertexSet": [ent("Ann", "Annie"), ent("Oslo"), ent("Norway")],
        "labels": [lab(0, 2, "P27"), lab(1, 2, "P17"), lab(1, 2, "P17")],
    },
    {
        "title": "B",
        "vertexSet": [ent("Ben"), ent("Rome"), ent("Italy")],
        "labels": [lab(1, 2, "P17"), lab(0, 1, "P19")],
    },
]
# Training facts reach A's P27 only through the second mention name "Annie", and B's P17
# directly.
TRAIN = [
    {
        "title": "T",
        "vertexSet": [
            ent("Annie"),
            ent("Norway", "Kingdom of Norway"),
            ent("Rome"),
            ent("Italy"),
        ],
        "labels": [lab(0, 1, "P27"), lab(2, 3, "P17")],
    },
]


def T(title, h, t, r):
    return {"title": title, "h_idx": h, "t_idx": t, "r": r}


def test_train_facts_all_mention_pairs():
    assert train_facts(TRAIN) == {
        ("Annie", "Norway", "P27"),
        ("Annie", "Kingdom of Norway", "P27"),
        ("Rome", "Italy", "P17"),
    }


def test_scores_hand_computed_with_duplicates_unknown_titles_and_ign():
    preds = [
        T("A", 0, 2, "P27"),
        T("A", 0, 2, "P27"),
        T("A", 0, 2, "P27"),  # correct, in train (via "Annie"), x3
        T("A", 1, 2, "P17"),  # correct, not in train (Oslo)
        T("B", 1, 2, "P17"),  # correct, in train
        T("B", 0, 2, "P17"),  # wrong
        T("Z", 0, 1, "P17"),
        T("Z", 0, 1, "P17"),
    ]  # unknown title, x2
    before = copy.deepcopy(preds)
    s = official_scores(preds, GOLD, TRAIN)
    assert preds == before  # input not sorted / modified
    # unique predictions 5, gold 4, correct 3, correct-in-train 2
    assert (
        s["n_pred_raw"],
        s["n_pred"],
        s["n_gold"],
        s["n_correct"],
        s["n_correct_in_train"],
        s["n_pred_unknown_title"],
    ) == (8, 5, 4, 3, 2, 1)
    P, R = 3 / 5, 3 / 4
    assert s["P"] == pytest.approx(P, abs=1e-12) and s["R"] == pytest.approx(
        R, abs=1e-12
    )
    assert s["F1"] == pytest.approx(2 * P * R / (P + R), abs=1e-12)
    ign_p = (3 - 2) / (5 - 2 + 1e-5)
    assert s["Ign_P"] == pytest.approx(ign_p, abs=1e-12)
    assert s["Ign_F1"] == pytest.approx(2 * ign_p * R / (ign_p + R), abs=1e-12)
    assert s["Ign_F1"] == pytest.approx(2 * (1 / 3) * 0.75 / (1 / 3 + 0.75), abs=1e-5)


def test_no_gold_triple_is_an_error():
    nogold = [{"title": "A", "vertexSet": GOLD[0]["vertexSet"], "labels": []}]
    with pytest.raises(ValueError, match="no gold triple"):
        official_scores([T("A", 0, 1, "P17")], nogold)


def test_all_correct_in_train_gives_zero_ign_and_no_train_matches_p():
    preds = [T("B", 1, 2, "P17")]
    s = official_scores(preds, GOLD, TRAIN)
    assert (
        s["Ign_P"] == 0.0
        and s["Ign_F1"] == 0.0
        and s["F1"] == pytest.approx(2 * 1 * 0.25 / 1.25)
    )
    s0 = official_scores(preds, GOLD)  # no training docs: Ign_P = 1 / (1 + 1e-5)
    assert s0["Ign_P"] == pytest.approx(1 / (1 + 1e-5), abs=1e-12)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"triples\[1\]: missing field 'r'"):
        official_scores(
            [T("A", 0, 2, "P27"), {"title": "A", "h_idx": 0, "t_idx": 2}], GOLD
        )
    with pytest.raises(ValueError, match="duplicate title"):
        official_scores([], GOLD + [GOLD[1]])


def reference_micro(preds, gold_docs, train_docs):
    """Loop reference of the official rules.

    Sort + adjacent dedup, per-mention-name train lookup.
    """
    facts = []
    for d in train_docs:
        for l in d["labels"]:
            for a in d["vertexSet"][l["h"]]:
                for b in d["vertexSet"][l["t"]]:
                    facts.append((a["name"], b["name"], l["r"]))
    gold, vs = [], {}
    for d in gold_docs:
        vs[d["title"]] = d["vertexSet"]
        for l in d["labels"]:
            if (d["title"], l["h"], l["t"], l["r"]) not in gold:
                gold.append((d["title"], l["h"], l["t"], l["r"]))
    if not preds:
        return dict(F1=0.0, Ign_F1=0.0, P=0.0, R=0.0)
    srt = sorted((p["title"], p["h_idx"], p["t_idx"], p["r"]) for p in preds)
    uniq = [srt[0]] + [srt[i] for i in range(1, len(srt)) if srt[i] != srt[i - 1]]
    correct = in_train = 0
    for title, h, t, r in uniq:
        if (title, h, t, r) in gold:
            correct += 1
            hit = False
            for a in vs[title][h]:
                for b in vs[title][t]:
                    hit = hit or (a["name"], b["name"], r) in facts
            in_train += hit
    P, R = correct / len(uniq), correct / len(gold)
    F1 = 0.0 if P + R == 0 else 2 * P * R / (P + R)
    ip = (correct - in_train) / (len(uniq) - in_train + 1e-5)
    return dict(F1=F1, Ign_F1=0.0 if ip + R == 0 else 2 * ip * R / (ip + R), P=P, R=R)


def random_world(rng, n_docs=6):
    names = ["n%d" % i for i in range(12)]
    rels = ["P1", "P2", "P3"]

    def doc(title):
        vs = [
            ent(*rng.sample(names, rng.randint(1, 2))) for _ in range(rng.randint(2, 5))
        ]
        n = len(vs)
        labels = [
            lab(h, t, rng.choice(rels))
            for h in range(n)
            for t in range(n)
            if h != t and rng.random() < 0.3
        ]
        return {"title": title, "vertexSet": vs, "labels": labels or [lab(0, 1, "P1")]}

    gold = [doc("g%d" % i) for i in range(n_docs)]
    train = [doc("t%d" % i) for i in range(n_docs)]
    preds = []
    for d in gold:
        n = len(d["vertexSet"])
        preds += [
            T(d["title"], l["h"], l["t"], l["r"])
            for l in d["labels"]
            if rng.random() < 0.6
        ]
        preds += [
            T(d["title"], rng.randrange(n), rng.randrange(n), rng.choice(rels))
            for _ in range(rng.randint(0, 4))
        ]
    preds += rng.sample(preds, len(preds) // 4) + [
        T("unknown", 0, 1, "P1")
    ] * rng.randint(0, 2)
    rng.shuffle(preds)
    return gold, train, preds, rels


@pytest.mark.parametrize("seed", range(20))
def test_random_worlds_match_loop_reference(seed):
    gold, train, preds, _ = random_world(random.Random(seed))
    s, ref = official_scores(preds, gold, train), reference_micro(preds, gold, train)
    for k in ref:
        assert s[k] == pytest.approx(ref[k], abs=1e-12), k


def test_macro_by_hand():
    preds = [
        T("A", 0, 2, "P27"),
        T("A", 1, 2, "P17"),
        T("B", 1, 2, "P17"),
        T("B", 0, 2, "P17"),
        T("A", 2, 0, "P150"),
    ]  # P150 has no gold triple
    m = macro_scores(preds, GOLD, TRAIN)
    # P27: 1 pred, 1 gold, 1 correct (in train): F1 = 1, Ign_P = 0 -> Ign_F1 = 0
    # P17: 3 pred, 2 gold, 2 correct (1 in train): P=2/3, R=1, F1=0.8;
    # Ign_P = 1/(2+1e-5)
    # P19: 0 pred, 1 gold: all 0
    assert m["n_relations"] == 3 and set(m["per_relation"]) == {"P17", "P19", "P27"}
    ip17 = 1 / (2 + 1e-5)
    f17_ign = 2 * ip17 * 1 / (ip17 + 1)
    assert m["macro_F1"] == pytest.approx((1 + 0.8 + 0) / 3, abs=1e-12)
    assert m["macro_Ign_F1"] == pytest.approx((0 + f17_ign + 0) / 3, abs=1e-12)
    assert m["macro_P"] == pytest.approx((1 + 2 / 3 + 0) / 3, abs=1e-12)
    mu = macro_scores(preds, GOLD, TRAIN, over="union")
    assert mu["n_relations"] == 4 and mu["macro_F1"] == pytest.approx(
        1.8 / 4, abs=1e-12
    )
    m0 = macro_scores([], GOLD, TRAIN)  # no prediction: zeros, like the micro scorer
    assert (m0["macro_F1"], m0["macro_Ign_F1"], m0["n_relations"]) == (0.0, 0.0, 3)


@pytest.mark.parametrize("seed", range(5))
def test_macro_matches_per_relation_loop(seed):
    gold, train, preds, rels = random_world(random.Random(100 + seed))
    m = macro_scores(preds, gold, train)
    f1s = []
    for r in sorted({l["r"] for d in gold for l in d["labels"]}):
        sub_gold = [
            {**d, "labels": [l for l in d["labels"] if l["r"] == r]} for d in gold
        ]
        sub_pred = [p for p in preds if p["r"] == r]
        f1s.append(reference_micro(sub_pred, sub_gold, train)["F1"])
    assert m["macro_F1"] == pytest.approx(sum(f1s) / len(f1s), abs=1e-12)


def test_to_official_order_and_na_ignored():
    feats = [
        {"title": "X", "hts": [(0, 1), (1, 0), (0, 2)]},
        {"title": "Y", "hts": [(1, 0)]},
    ]
    id2rel = {1: "R1", 2: "R2", 3: "R3"}
    g = torch.Generator().manual_seed(0)
    preds = (torch.rand(4, 4, generator=g) > 0.5).float()
    preds[0, 0] = 1  # a set NA column must never produce a triple
    out = to_official(preds, feats, id2rel)
    expected, pairs = [], [("X", 0, 1), ("X", 1, 0), ("X", 0, 2), ("Y", 1, 0)]
    for i, (title, h, t) in enumerate(pairs):
        for j in range(1, 4):
            if preds[i, j] == 1:
                expected.append(
                    {"title": title, "h_idx": h, "t_idx": t, "r": id2rel[j]}
                )
    assert out == expected
    assert to_official(preds.numpy(), feats, id2rel) == expected
    with pytest.raises(ValueError, match="sum of len"):
        to_official(preds[:2], feats, id2rel)
    with pytest.raises(ValueError, match="multi-hot"):
        to_official(torch.randn(4, 4), feats, id2rel)  # logits instead of predictions
    with pytest.raises(ValueError, match="not in id2rel"):
        to_official(torch.ones(4, 4), feats, {1: "R1"})


def test_only_unknown_titles():
    s = official_scores([T("nowhere", 0, 1, "P17")] * 3, GOLD)
    assert (
        s["n_pred"],
        s["n_correct"],
        s["n_pred_unknown_title"],
        s["P"],
        s["F1"],
    ) == (1, 0, 1, 0.0, 0.0)


def rows(cases):
    """cases: list of (scores incl. TH, gold columns) -> logits, labels."""
    logits = torch.tensor([c[0] for c in cases], dtype=torch.float32)
    labels = torch.zeros_like(logits)
    for i, (_, g) in enumerate(cases):
        if g:
            labels[i, list(g)] = 1
        else:
            labels[i, 0] = 1
    return logits, labels


CASES = {  # scores [TH, r1..r5], gold columns, expected (general, official)
    "TP": ([0.0, 2, 1, -1, -2, -3], [1, 2], ("TP", "TP")),
    "TN": ([0.0, -2, -1, -1, -2, -3], [], ("TN", "TN")),
    "FP_NA_pair": ([0.0, 1, -1, -1, -2, -3], [], ("FP", "FP")),
    "FP_missing": ([0.0, 2, -1, -1, -2, -3], [1, 2], ("FP", "FP")),
    "FP_extra": ([0.0, 2, 1, 0.5, -2, -3], [1, 2], ("FP", "FP")),
    "FN_CRK": ([3.0, 2, 1, -1, -2, -3], [1, 2], ("FN_CRK", "FN_CRK")),
    "FN_IRK": ([3.0, 2, -1, 1, -2, -3], [1, 2], ("FN_IRK", "FN_IRK")),
    "4gold": ([9.0, 4, 3, 2, 1, -3], [1, 2, 3, 4], ("FN_CRK", "FN_IRK")),
    "cross_tie": ([9.0, 2, 1, 1, -2, -3], [1, 2], ("FN_IRK", "FN_CRK")),
    "gold_tie": ([9.0, 2, 2, 1, -2, -3], [1, 2, 3], ("FN_CRK", "FN_IRK")),
}


@pytest.mark.parametrize("rule,pos", [("general", 0), ("official", 1)])
def test_pattern_cases_both_rules(rule, pos):
    logits, labels = rows([(c[0], c[1]) for c in CASES.values()])
    got = [PATTERNS[i] for i in pair_patterns(logits, labels, rule=rule)]
    assert got == [c[2][pos] for c in CASES.values()]
    st = pattern_stats(logits, labels, rule=rule)
    want = {p: [c[2][pos] for c in CASES.values()].count(p) for p in PATTERNS}
    assert {p: st[p] for p in PATTERNS} == want
    Tn, FN = want["TP"] + want["TN"], want["FN_CRK"] + want["FN_IRK"]
    F = want["FP"] + FN
    assert st["F/(T+F)"] == pytest.approx(F / (Tn + F)) and st["FN/F"] == pytest.approx(
        FN / F
    )
    assert st["FN_CRK/FN"] == pytest.approx(want["FN_CRK"] / FN)


def test_ratios_table1():
    r = pattern_ratios(dict(TP=0, TN=0, FP=2859, FN_CRK=3192, FN_IRK=889))
    assert r["FN/F"] == pytest.approx(4081 / 6940) and r["FN_CRK/FN"] == pytest.approx(
        3192 / 4081
    )


def ref_patterns(logits, labels, top_k, rule):
    """Loop reference in float64.

    get_label-style prediction, then statistic.py's decision order.
    """
    out = []
    for s, y in zip(logits.double().tolist(), labels.tolist()):
        n = len(s)
        kth = sorted(s, reverse=True)[min(top_k, n) - 1] if top_k else -math.inf
        pred = {j for j in range(1, n) if s[j] > s[0] and s[j] >= kth}
        gold = {j for j in range(1, n) if y[j] == 1}
        if not gold and not pred:
            out.append("TN")
        elif pred == gold:
            out.append("TP")
        elif pred:
            out.append("FP")
        else:
            if rule == "official":
                ranks = {
                    1 + sum(1 for k in range(1, n) if k != g and s[k] > s[g])
                    for g in gold
                }
                ok = ranks in [{1}, {1, 2}, {1, 2, 3}]
            else:
                ok = all(
                    s[g] > s[k] for g in gold for k in range(1, n) if k not in gold
                )
            out.append("FN_CRK" if ok else "FN_IRK")
    return out


@pytest.mark.parametrize(
    "rule,top_k",
    [("general", 4), ("general", 1), ("general", None), ("official", None)],
)
def test_patterns_match_loop_reference_on_random_integer_scores(rule, top_k):
    g = torch.Generator().manual_seed(7)
    n, c = 600, 9
    logits = torch.randint(
        -3, 4, (n, c), generator=g
    ).float()  # small integers: many ties
    labels = torch.zeros(n, c)
    for i in range(n):
        k = int(torch.randint(0, 6, (1,), generator=g))
        if k == 0:
            labels[i, 0] = 1
        else:
            labels[i, 1 + torch.randperm(c - 1, generator=g)[:k]] = 1
    got = [PATTERNS[i] for i in pair_patterns(logits, labels, top_k=top_k, rule=rule)]
    assert got == ref_patterns(logits, labels, top_k, rule)


def test_zero_threshold_changes_fn_to_tp():
    # TH column 5 is above every relation, but with threshold="zero" the positive scores
    # count as predictions
    logits, labels = rows([([5.0, 1, -1, -2], [1])])
    assert PATTERNS[pair_patterns(logits, labels)[0]] == "FN_CRK"
    assert (
        PATTERNS[pair_patterns(logits, labels, rule="general", threshold="zero")[0]]
        == "TP"
    )


def test_official_rule_has_no_cap_and_no_zero_threshold():
    """Tables 1/4: s_r > s_TH (strict), no top-k cap, the TH column for every loss;
    other prediction rules are refused.
    """
    logits, labels = rows(
        [([0.0, 5, 4, 3, 2, 1, -1], [1, 2, 3, 4, 5]), ([1.0, 1, 0, 0, 0, 0, 0], [1])]
    )
    assert [PATTERNS[i] for i in pair_patterns(logits, labels)] == [
        "TP",
        "FN_CRK",
    ]  # tie with TH: not predicted
    assert [
        PATTERNS[i] for i in pair_patterns(logits, labels, rule="general", top_k=4)
    ] == [
        "FP",
        "FN_CRK",
    ]
    for kw in (dict(top_k=4), dict(threshold="zero")):
        with pytest.raises(ValueError, match="rule='official' predicts s_r > s_TH"):
            pattern_stats(logits, labels, **kw)


def test_gold_ranks_loop():
    g = torch.Generator().manual_seed(5)
    logits = torch.randint(-2, 3, (50, 6), generator=g).float()
    rk = gold_ranks(logits)
    for s, r in zip(logits.tolist(), rk.tolist()):
        assert r == [
            1 + sum(1 for k in range(1, 6) if s[k] > s[j]) for j in range(1, 6)
        ]


def test_pattern_input_errors():
    logits, labels = rows([([0.0, 1, 2], [1])])
    with pytest.raises(ValueError, match="'general' or 'official'"):
        pattern_stats(logits, labels, rule="x")
    with pytest.raises(ValueError, match="row 0"):
        pattern_stats(logits, torch.zeros_like(labels))
    with pytest.raises(ValueError, match="must both be"):
        pattern_stats(logits, labels[:, :2])


def test_threshold_summary_against_a_loop_and_zero_threshold():
    from hingeabl_nb.metrics import GAP_EDGES, threshold_summary

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 9, generator=g) * 4
    labels = (torch.rand(40, 9, generator=g) < 0.15).float()
    labels[:, 0] = (labels[:, 1:].sum(1) == 0).float()
    for rule in ("TH", "zero"):
        out = threshold_summary(logits.half(), labels, rule)
        th = [0.0 if rule == "zero" else float(logits.half()[i, 0]) for i in range(40)]
        gaps = [
            float(logits.half()[i, j]) - th[i]
            for i in range(40)
            for j in range(1, 9)
            if labels[i, j] == 1
        ]
        assert out["n_gold"] == len(gaps) and out["gold_below"] == pytest.approx(
            sum(v <= 0 for v in gaps) / len(gaps)
        )
        clipped = [min(max(v, GAP_EDGES[0]), GAP_EDGES[-1]) for v in gaps]
        want = [
            sum(
                GAP_EDGES[k] <= v < GAP_EDGES[k + 1]
                or (k == len(GAP_EDGES) - 2 and v == GAP_EDGES[-1])
                for v in clipped
            )
            for k in range(len(GAP_EDGES) - 1)
        ]
        assert out["gap_hist"]["counts"] == want
        rel = [th[i] for i in range(40) if labels[i, 1:].any()]
        assert out["s_th"]["mean"] == pytest.approx(sum(rel) / len(rel), abs=1e-3)
    # the patterns inside are the official rule: no top-k cap, TH threshold whatever the
    # loss
    from hingeabl_nb.metrics import pattern_stats

    assert threshold_summary(logits, labels, "zero")["patterns"] == pattern_stats(
        logits, labels, rule="official"
    )

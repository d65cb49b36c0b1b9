"""The scoring shortcuts give what the direct formulas give: `predict` ranks only rows
where the top-k cap can bite, `f1_optimal_offset` ranks only the cuts that can win,
`refuse_nan` looks at rows only when a sum is not finite, `word_tokens` tokenizes a
document's words in one call, `bulk_score` counts the predicted cells."""

import pytest
import torch

from hingeabl_nb import datafiles
from hingeabl_nb.data import load_docs, sample_dir
from hingeabl_nb.losses import THRESHOLDS, predict, refuse_nan, threshold_scores
from hingeabl_nb.threshold import _cuts_that_can_win, f1_optimal_offset


def capped_every_row(s, k, rule):
    "The official rule: the k-th largest score of every row, TH column included."
    rel = s[:, 1:] > threshold_scores(s, rule)[:, None]
    if k:
        rel &= s[:, 1:] >= torch.topk(s, min(k, s.shape[1]), dim=1).values[:, -1:]
    return torch.cat([~rel.any(1, keepdim=True), rel], 1).float()


@pytest.mark.parametrize("rule", THRESHOLDS)
@pytest.mark.parametrize("k", [None, 1, 2, 4, 7])
def test_predict_matches_the_cap_on_every_row(rule, k):
    g = torch.Generator().manual_seed(k or 0)
    s = (torch.randn(3000, 8, generator=g) * 2).round() / 2  # many ties
    test = torch.tensor(
        [[0.5, 0.3, 0.2, -1.0, -1.0, -1, -1, -1]]
    )  # TH outranks, zero rule
    s = torch.cat([s, test])
    assert torch.equal(
        predict(s, top_k=k, threshold=rule), capped_every_row(s, k, rule)
    )
    if k == 2 and rule == "zero":  # 2 candidates, TH above both: the second is cut
        assert predict(s, top_k=2, threshold="zero")[-1, 1:3].tolist() == [1.0, 0.0]


def sorted_every_margin(logits, labels):
    margin = (logits[:, 1:] - logits[:, :1]).flatten()
    m, order = margin.sort(descending=True)
    gold = (labels[:, 1:] > 0.5).flatten()[order]
    f1 = (
        2
        * gold.cumsum(0, dtype=torch.float64)
        / (torch.arange(1, len(m) + 1) + gold.sum())
    )
    k = int(f1.argmax())
    below = m[k + 1] if k + 1 < len(m) else m[k] - 1
    return float((m[k] + below) / 2), float(f1[k])


@pytest.mark.parametrize("seed", range(6))
def test_f1_optimal_offset_matches_the_full_sort(seed):
    g = torch.Generator().manual_seed(seed)
    n, r = 2000, 12
    y = torch.zeros(n, r + 1)
    y[:, 1:] = (torch.rand(n, r, generator=g) < [0.01, 0.05, 0.3][seed % 3]).float()
    y[:, 0] = (y[:, 1:].sum(1) == 0).float()
    s = torch.randn(n, r + 1, generator=g) * (1 + seed) + 2 * y
    assert f1_optimal_offset(s, y) == sorted_every_margin(s, y)
    margin, gold = (s[:, 1:] - s[:, :1]).flatten(), y[:, 1:].flatten() > 0.5
    assert 0 < _cuts_that_can_win(margin, gold) <= len(margin)


def test_f1_optimal_offset_without_a_bound_ranks_everything():
    s = torch.tensor([[5.0, 1.0, 2.0], [5.0, 0.5, -1.0]])  # nothing above TH
    y = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    margin, gold = (s[:, 1:] - s[:, :1]).flatten(), y[:, 1:].flatten() > 0.5
    assert _cuts_that_can_win(margin, gold) == 4
    assert f1_optimal_offset(s, y) == sorted_every_margin(s, y)


def test_refuse_nan_only_for_nan():
    inf = torch.tensor([[float("inf"), -float("inf"), 1.0], [0.0, 1.0, 2.0]])
    refuse_nan(inf, "here")  # inf - inf sums to NaN, but no score is NaN
    refuse_nan(torch.full((2, 3), 3e38), "here")  # the sum overflows: still no NaN
    bad = inf.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="here: logits row 1 has NaN"):
        refuse_nan(bad, "here")


def test_word_tokens_is_tokenize_word_by_word():
    tok = datafiles.tiny_tokenizer()
    words = [
        w for d in load_docs(sample_dir() / "test.json") for s in d["sents"] for w in s
    ]
    words += ["", "  ", "Zürich", "[SEP]", "a-b", "x" * 200]
    assert datafiles.word_tokens(words, tok) == [tok.tokenize(w) for w in words]

    class Slow:  # a tokenizer without the fast batch call: word by word
        is_fast = False
        tokenize = staticmethod(tok.tokenize)

    assert datafiles.word_tokens(words[:50], Slow()) == [
        tok.tokenize(w) for w in words[:50]
    ]

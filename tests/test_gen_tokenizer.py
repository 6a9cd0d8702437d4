from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from genrecall.gen.tokenizer import SPECIAL_TOKENS, GenTokenizer, TokenizerConfig

TEXTS = [
    "Red Stainless Steel Kettle 1.7L by Kettlo",
    "blue cotton t-shirt size m",
    "Green Ceramic Mug 350ml",
    "red kettle",
    "cotton tshirt",
    "ceramic mug set",
] * 5
SIZES = (6, 4, 5, 3)


@pytest.fixture(scope="module")
def tok() -> GenTokenizer:
    return GenTokenizer.train(
        TEXTS,
        SIZES,
        TokenizerConfig(vocab_size=320, max_text_tokens=12),
        profile_values={"gender": ["f", "m", "u"], "age_band": ["25-34"], "price_tier": ["low"]},
    )


def test_vocab_layout_blocks_are_disjoint_and_contiguous(tok: GenTokenizer) -> None:
    blocks = [tok.sid_token_ids(p) for p in range(len(SIZES))]
    assert [len(b) for b in blocks] == list(SIZES)
    flat = np.concatenate(blocks)
    np.testing.assert_array_equal(flat, np.arange(tok.sid_start, tok.vocab_size))
    assert tok.sid_start > tok.n_text
    specials = {tok.token_to_id(t) for t in SPECIAL_TOKENS}
    assert len(specials) == len(SPECIAL_TOKENS) and all(tok.n_text <= i < tok.sid_start for i in specials)
    assert len(tok) == tok.vocab_size


def test_every_sid_round_trips(tok: GenTokenizer) -> None:
    for sid in itertools.product(*(range(s) for s in SIZES)):
        ids = tok.encode_sid(sid)
        assert tok.decode_sid(ids) == sid
        assert tok.decode_sid(tok.encode_target(sid)) == sid  # trailing <eos> accepted
        assert [tok.token_to_id(tok.id_to_token(i)) for i in ids] == ids


def test_decode_sid_rejects_wrong_positions_and_lengths(tok: GenTokenizer) -> None:
    ids = tok.encode_sid((1, 2, 3, 0))
    with pytest.raises(ValueError):
        tok.decode_sid([ids[1], ids[0], ids[2], ids[3]])  # position-1 token at position 0
    with pytest.raises(ValueError):
        tok.decode_sid(ids[:3])
    with pytest.raises(ValueError):
        tok.encode_sid((6, 0, 0, 0))  # code beyond the level's size


def test_prompt_formats(tok: GenTokenizer) -> None:
    q = tok.encode_prompt("red kettle")
    assert q[0] == tok.bos_id and q[-1] == tok.sid_id and tok.token_to_id("<query>") in q
    # an anonymous user prompt is exactly the query prompt
    assert tok.encode_prompt("red kettle", profile=None, history=(), categories=()) == q
    u = tok.encode_prompt(
        "red kettle",
        profile={"gender": "f", "age_band": "65+", "price_tier": "low"},
        history=[(1, 2, 3, 0), (4, 0, 1, 2)],
        categories=["Kettles"],
    )
    text = tok.decode(u)
    assert "<gender:f>" in text and "<age_band:?>" in text and "<price_tier:low>" in text  # unseen value -> ?
    assert "<hist> <s0_1> <s1_2> <s2_3> <s3_0> <sep> <s0_4> <s1_0> <s2_1> <s3_2>" in text
    assert u[-len(q) + 1 :] == q[1:]  # the query part is the same tokens
    item = tok.encode_prompt("Red Stainless Steel Kettle", kind="item")
    assert item[1] == tok.token_to_id("<item>")
    with pytest.raises(ValueError):
        tok.encode_prompt("x", kind="item", history=[(0, 0, 0, 0)])


def test_text_is_never_a_special_token_and_is_truncated(tok: GenTokenizer) -> None:
    ids = tok.encode_text("<sid> <bos> red kettle")
    assert all(i < tok.n_text for i in ids)
    long = tok.encode_text(" ".join(["kettle"] * 100))
    assert len(long) == 12
    assert tok.encode_text("RED KETTLE") == tok.encode_text("red kettle")  # lowercased


def test_save_load_json_identical(tok: GenTokenizer, tmp_path) -> None:
    path = tok.save(tmp_path / "tok.json")
    json.loads(path.read_text())  # plain JSON, no pickle
    back = GenTokenizer.load(path)
    assert back.vocab_size == tok.vocab_size and back.sid_vocab_sizes == tok.sid_vocab_sizes
    for t in TEXTS[:6]:
        assert back.encode_prompt(t, profile={"gender": "m"}, history=[(0, 1, 2, 0)]) == tok.encode_prompt(
            t, profile={"gender": "m"}, history=[(0, 1, 2, 0)]
        )


def test_training_is_deterministic() -> None:
    a = GenTokenizer.train(TEXTS, SIZES, TokenizerConfig(vocab_size=320))
    b = GenTokenizer.train(TEXTS, SIZES, TokenizerConfig(vocab_size=320))
    assert a.to_dict() == b.to_dict()


def test_pretrained_backend_from_tokenizer_json(tok: GenTokenizer, tmp_path) -> None:
    tok.text.save(str(tmp_path / "tokenizer.json"))  # stands in for a checkpoint's own tokenizer.json
    pre = GenTokenizer.from_pretrained(tmp_path, SIZES)
    assert pre.n_text == tok.n_text
    assert pre.encode_text("red kettle") == tok.encode_text("red kettle")
    assert pre.decode_sid(pre.encode_sid((5, 3, 4, 2))) == (5, 3, 4, 2)
    with pytest.raises(FileNotFoundError):
        GenTokenizer.from_pretrained(tmp_path / "missing", SIZES)


def test_missing_profile_values_get_no_token_of_their_own() -> None:
    tok = GenTokenizer.train(
        TEXTS,
        SIZES,
        TokenizerConfig(vocab_size=300),
        profile_values={"gender": ["f", None, float("nan")], "price_tier": ["low"]},
    )
    assert tok.profile_values["gender"] == ("f",)
    assert tok.profile_token_id("gender", None) == tok.token_to_id("<gender:?>")
    assert tok.profile_token_id("gender", "x") == tok.token_to_id("<gender:?>")
    with pytest.raises(KeyError):
        tok.profile_token_id("shoe_size", "42")

"""Meta's Llama 3 tokenizer on a tiny byte-level BPE file, the chat format, and text generation through it."""
import base64
import json

import pytest
import torch

pytest.importorskip("tiktoken")

from labml_nn.transformers.llama import ModelArgs, Transformer  # noqa: E402
from labml_nn.transformers.llama.generation import Llama, save_checkpoint  # noqa: E402
from labml_nn.transformers.llama.tokenizer import ChatFormat, Tokenizer  # noqa: E402

# Every single byte, then a few merges (a merge's parts must be tokens of lower rank).
MERGES = [b"th", b"the", b" t", b" the", b"in", b"ing"]


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    tokens = [bytes([i]) for i in range(256)] + MERGES
    path.write_bytes(b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
                              for rank, token in enumerate(tokens)))
    return path


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return Tokenizer(tokenizer_path)


def test_vocabulary_and_special_tokens(tokenizer):
    base = 256 + len(MERGES)
    assert tokenizer.n_words == base + 256
    # Llama 3.1's order of the named special tokens.
    assert tokenizer.bos_id == base and tokenizer.eos_id == base + 1
    assert tokenizer.pad_id == base + 4
    assert tokenizer.special_tokens["<|start_header_id|>"] == base + 6
    assert tokenizer.eom_id == base + 8 and tokenizer.eot_id == base + 9
    assert tokenizer.special_tokens["<|python_tag|>"] == base + 10
    assert tokenizer.special_tokens["<|reserved_special_token_2|>"] == base + 11
    # As in Meta's Llama 3.1 code, the unnamed ones continue from reserved_special_token_2.
    assert tokenizer.special_tokens["<|reserved_special_token_246|>"] == base + 255
    assert sorted(tokenizer.special_tokens.values()) == list(range(base, base + 256))
    assert set(tokenizer.stop_tokens) == {tokenizer.eos_id, tokenizer.eom_id, tokenizer.eot_id}


def test_encode_merges_and_round_trips(tokenizer):
    rank = {token: 256 + i for i, token in enumerate(MERGES)}
    assert tokenizer.encode("the", bos=False, eos=False) == [rank[b"the"]]
    # " the": t+h first (lowest rank), then th+e, then " "+the.
    assert tokenizer.encode(" the", bos=False, eos=False) == [rank[b" the"]]
    # " thing": th, then i+n, then in+g; " th" is not a token.
    assert tokenizer.encode(" thing", bos=False, eos=False) == [ord(" "), rank[b"th"], rank[b"ing"]]
    assert tokenizer.encode("the thing", bos=True, eos=True) == \
        [tokenizer.bos_id, rank[b"the"], ord(" "), rank[b"th"], rank[b"ing"], tokenizer.eos_id]
    for text in ["the thing", "Ünïcödé ✓ 123456", "a\n\n  b\t", ""]:
        assert tokenizer.decode(tokenizer.encode(text, bos=False, eos=False)) == text


def test_special_token_text_is_ordinary_unless_allowed(tokenizer):
    text = "<|eot_id|>"
    assert tokenizer.eot_id not in tokenizer.encode(text, bos=False, eos=False)
    assert tokenizer.encode(text, bos=False, eos=False, allowed_special="all") == [tokenizer.eot_id]


def test_long_runs_are_split(tokenizer):
    text = "x" * 30_000 + " " * 30_000 + "y"
    assert tokenizer.decode(tokenizer.encode(text, bos=False, eos=False)) == text


def test_chat_format(tokenizer):
    dialog = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "hi"}]
    tokens = ChatFormat(tokenizer).encode_dialog_prompt(dialog)
    start, end = tokenizer.special_tokens["<|start_header_id|>"], tokenizer.special_tokens["<|end_header_id|>"]
    expected_text = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tokenizer.decode(tokens) == expected_text
    assert tokens[0] == tokenizer.bos_id and tokens.count(start) == 3 and tokens.count(end) == 3


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.model"):
        Tokenizer(tmp_path / "nothing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(base64.b64encode(b"a") + b" 0\nnot-base64!! 1\n")
    with pytest.raises(ValueError, match="line 2"):
        Tokenizer(bad)


def test_text_completion_through_build(tmp_path, tokenizer_path, tokenizer):
    torch.manual_seed(0)
    args = ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tokenizer.n_words, multiple_of=16)
    save_checkpoint(Transformer(args), tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "params.json").read_text())["vocab_size"] == tokenizer.n_words
    llama = Llama.build(tmp_path / "ckpt", tokenizer_path=tokenizer_path, max_seq_len=64, max_batch_size=2,
                        device="cpu")
    completions = llama.text_completion(["the thing", "in"], max_gen_len=10, temperature=0.0)
    expected = llama.generate([tokenizer.encode(p, bos=True, eos=False) for p in ["the thing", "in"]],
                              max_gen_len=10, temperature=0.0)
    assert [c["generation"] for c in completions] == [tokenizer.decode(t) for t in expected]
    reply = llama.chat_completion([[{"role": "user", "content": "hi"}]], max_gen_len=5, temperature=0.0)
    assert reply[0]["generation"]["role"] == "assistant" and isinstance(reply[0]["generation"]["content"], str)

    # A tokenizer whose vocabulary disagrees with params.json is refused.
    args.vocab_size = tokenizer.n_words + 1
    args.to_json(tmp_path / "ckpt" / "params.json")
    with pytest.raises(ValueError, match="vocab_size"):
        Llama.build(tmp_path / "ckpt", tokenizer_path=tokenizer_path, device="cpu")

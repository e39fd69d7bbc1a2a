"""Smoke tests of the Llama experiment: a few training steps then generation, and completing with a Meta checkpoint."""
import base64
import json

import pytest
import torch

from labml_nn.transformers.experiments.llama import LlamaExperiment, main
from labml_nn.transformers.llama import ModelArgs, Transformer
from labml_nn.transformers.llama.generation import Llama, save_checkpoint
from labml_nn.transformers.llama.tokenizer import Tokenizer


def test_tiny_training_run(tmp_path, data_dir):
    out = tmp_path / "run"
    main(["--preset", "tiny", "--out", str(out), "--device", "cpu", "--data-dir", str(data_dir)])
    result = json.loads((out / "result.json").read_text())
    assert torch.isfinite(torch.tensor(result["val_loss"]))
    generation = result["generation"]
    assert generation["tokens"] == 20 and generation["greedy_outputs_equal"]
    assert generation["cached_tokens_per_s"] > 0 and generation["uncached_tokens_per_s"] > 0
    assert (out / "sample.txt").read_text().startswith("ROMEO:\n")
    # The run saved the model in Meta's format; it loads strictly.
    llama = Llama.build(out / "meta_checkpoint", max_seq_len=64, max_batch_size=1, device="cpu")
    assert llama.model.params.dim == 32


def test_completes_a_prompt_with_a_meta_checkpoint(tmp_path):
    pytest.importorskip("tiktoken")
    tokens = [bytes([i]) for i in range(256)] + [b"th", b"the"]
    tokenizer_path = tmp_path / "ckpt" / "tokenizer.model"
    tokenizer_path.parent.mkdir()
    tokenizer_path.write_bytes(b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n"
                                        for r, t in enumerate(tokens)))
    vocab_size = Tokenizer(tokenizer_path).n_words
    save_checkpoint(Transformer(ModelArgs(dim=32, n_layers=1, n_heads=4, vocab_size=vocab_size, multiple_of=16)),
                    tmp_path / "ckpt")
    out = tmp_path / "run"
    main(["--ckpt-dir", str(tmp_path / "ckpt"), "--prompt", "the", "--gen-tokens", "6", "--out", str(out),
          "--device", "cpu"])
    result = json.loads((out / "result.json").read_text())
    assert result["prompt"] == "the" and isinstance(result["completion"], str)
    assert 0 <= result["generated_tokens"] <= 6


@pytest.mark.parametrize("field, value", [("gen_tokens", 0), ("temperature", -1.0), ("top_p", 0.0),
                                          ("n_kv_heads", 3), ("prompt", "")])
def test_bad_configuration(field, value):
    with pytest.raises(ValueError, match=field):
        LlamaExperiment(**{field: value})

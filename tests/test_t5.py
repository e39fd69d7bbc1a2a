"""T5: logits and greedy generations equal Hugging Face's `T5ForConditionalGeneration` (v1.0 and v1.1, every 1-D
parameter perturbed, padding in the batch); cached generation equals greedy decoding by full forward passes; the
relative position buckets equal a plain loop written from the definition; span corruption gives back the original
and has the specified noise; the additive attention options of `MultiHeadAttention` agree between the fused and the
explicit path and with the formula; bad input is a clear error; the experiment smoke-runs."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labml_nn.transformers.mha import MultiHeadAttention
from labml_nn.transformers.t5 import (T5, T5Config, T5LayerNorm, load_hf, relative_position_bucket,
                                      span_corruption)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("single_thread")

V10 = dict(feed_forward_proj="relu", tie_word_embeddings=True)
V11 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
TINY = dict(vocab_size=40, d_model=16, d_kv=6, d_ff=24, num_layers=2, num_heads=3,
            relative_attention_num_buckets=8, relative_attention_max_distance=12, decoder_start_token_id=0)


# ## The reference: a tiny random Hugging Face T5 with every 1-D parameter (the norms' gains) perturbed,
# saved with `save_pretrained` and loaded with our `load_hf`.
def hf_pair(tmp_path: Path, version: dict, **changes):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.T5Config(**{**TINY, **version, **changes})
    reference = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.5 * torch.randn_like(parameter))
    reference.save_pretrained(tmp_path)
    return reference, load_hf(tmp_path)


def batch_with_padding():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 40, (3, 11), generator=generator)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    decoder_ids = torch.randint(2, 40, (3, 7), generator=generator)
    decoder_mask = torch.ones(3, 7, dtype=torch.long)
    decoder_mask[2, 5:] = 0
    return ids, mask, decoder_ids, decoder_mask


@pytest.mark.parametrize("version", [V10, V11], ids=["v1.0", "v1.1"])
def test_logits_equal_hugging_face(tmp_path, version):
    # An encoder and a decoder of different depths, to catch a map that confuses them
    reference, ours = hf_pair(tmp_path, version, num_decoder_layers=3)
    assert not ours.training and ours.config.tie_word_embeddings == version["tie_word_embeddings"]
    ids, mask, decoder_ids, decoder_mask = batch_with_padding()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids,
                             decoder_attention_mask=decoder_mask).logits
        encoded = reference.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours.encode(ids, mask), encoded, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(ids, decoder_ids, mask, decoder_mask), expected, atol=1e-5, rtol=0)


# Files written by older writers: T5 v1.1 with its own `lm_head.weight` (what `transformers` 4 and Google's
# conversions write, with `tie_word_embeddings: false` and no `scale_decoder_outputs`), and copies of the embedding
# table under each stack's name. The head must be that tensor, unscaled: the logits are Hugging Face's decoder
# output times it.
def test_older_files_with_their_own_head(tmp_path):
    from safetensors.torch import load_file, save_file

    reference, _ = hf_pair(tmp_path, V11)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    head = torch.randn(40, 16, generator=torch.Generator().manual_seed(3))
    save_file({**tensors, "lm_head.weight": head, "encoder.embed_tokens.weight": tensors["shared.weight"].clone(),
               "decoder.embed_tokens.weight": tensors["shared.weight"].clone()}, str(tmp_path / "model.safetensors"))
    config = json.loads((tmp_path / "config.json").read_text())
    del config["scale_decoder_outputs"]
    config["tie_word_embeddings"] = False
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = load_hf(tmp_path)
    ids, mask, decoder_ids, decoder_mask = batch_with_padding()
    with torch.no_grad():
        memory = reference.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = reference.decoder(input_ids=decoder_ids, attention_mask=decoder_mask, encoder_hidden_states=memory,
                                   encoder_attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours(ids, decoder_ids, mask, decoder_mask), hidden @ head.T, atol=1e-5, rtol=0)


# The tokens a greedy decoder picks when every step re-reads the whole prefix with `forward`, padded after the end.
def greedy_by_forward(model: T5, ids, mask, steps: int) -> torch.Tensor:
    c = model.config
    out = torch.full((ids.shape[0], 1), c.decoder_start_token_id)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(steps):
        with torch.no_grad():
            token = model(ids, out, mask)[:, -1].argmax(dim=-1)
        token = torch.where(done, c.pad_token_id, token)
        out = torch.cat([out, token[:, None]], dim=1)
        done |= token == c.eos_token_id
        if done.all():
            break
    return out


@pytest.mark.parametrize("version", [V10, V11], ids=["v1.0", "v1.1"])
def test_generate_equals_full_forward_and_hugging_face(tmp_path, version):
    ids, mask, _, _ = batch_with_padding()
    reference, ours = hf_pair(tmp_path / "a", version)
    # Make generation stop: the end id is a token the first row writes at its third step, so that the rows end
    # at different steps and the padding after the end is exercised
    eos = int(ours.generate(ids, mask, max_new_tokens=6)[0, 3])
    reference, ours = hf_pair(tmp_path / "b", version, eos_token_id=eos)
    steps = 12
    cached = ours.generate(ids, mask, max_new_tokens=steps)
    assert (cached == eos).any()
    assert torch.equal(cached, greedy_by_forward(ours, ids, mask, steps))
    expected = reference.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, do_sample=False,
                                  num_beams=1)
    assert torch.equal(cached, expected)


# ## Relative position buckets, from the definition: exact below n/2, logarithmic up to max_distance, then the last
def bucket_by_loop(relative: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        if relative > 0:
            bucket = num_buckets
        distance = abs(relative)
    else:
        distance = max(-relative, 0)
    exact = num_buckets // 2
    if distance < exact:
        return bucket + distance
    return bucket + min(num_buckets - 1,
                        exact + int(math.log(distance / exact) / math.log(max_distance / exact) * (num_buckets - exact)))


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 12), (16, 50)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_equals_loop(num_buckets, max_distance, bidirectional):
    relative = torch.arange(-5 * max_distance, 5 * max_distance + 1)
    got = relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    assert got.dtype == torch.long and got.shape == relative.shape
    assert got.tolist() == [bucket_by_loop(r, bidirectional, num_buckets, max_distance) for r in relative.tolist()]
    # Shape kept for a matrix of positions
    assert relative_position_bucket(relative.view(-1, 1) - relative.view(1, -1)).shape == (relative.numel(),) * 2


# ## Span corruption
@pytest.mark.parametrize("length", [2, 7, 20, 64, 257])
def test_span_corruption_restores_and_counts(length):
    sentinels = list(range(1000, 1100))
    generator = torch.Generator().manual_seed(length)
    for _ in range(20):
        tokens = torch.randint(0, 50, (length,), generator=generator)
        inputs, targets = span_corruption(tokens, sentinel_ids=sentinels, generator=generator)
        # Replace each sentinel of the input by what follows the same sentinel in the target
        spans, current = {}, None
        for t in targets.tolist():
            if t >= 1000:
                current = t
                spans[current] = []
            else:
                spans[current].append(t)
        restored = [x for t in inputs.tolist() for x in (spans[t] if t >= 1000 else [t])]
        assert restored == tokens.tolist()
        noise = min(max(round(length * 0.15), 1), length - 1)
        n_spans = min(max(round(noise / 3.0), 1), length - noise)
        assert len(spans) == n_spans and sum(map(len, spans.values())) == noise
        assert all(spans.values()), "every span is non-empty"
        # Sentinels in order, one per span, the same in the input and the target
        assert [t for t in inputs.tolist() if t >= 1000] == sentinels[:n_spans] == list(spans)


def test_span_corruption_mean_span_length():
    tokens = torch.arange(600)
    inputs, targets = span_corruption(tokens, sentinel_ids=range(1000, 1100), noise_density=0.3,
                                      mean_noise_span_length=5.0, generator=torch.Generator().manual_seed(0))
    assert (targets < 1000).sum() == 180 and (targets >= 1000).sum() == 36
    with pytest.raises(ValueError, match="sentinel"):
        span_corruption(tokens, sentinel_ids=[1000, 1001])


# ## The attention options T5 uses: a float bias on the scores, no scaling, head width apart from d_model / heads,
# keys and values projected once. The fused path, the explicit path and the formula in float64 agree.
def test_attention_bias_scale_and_precomputed_kv():
    torch.manual_seed(0)
    attention = MultiHeadAttention(heads=3, d_model=16, bias=False, d_head=6, scale=1.0).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    bias = torch.randn(1, 3, 5, 7)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 4:] = False
    fused = attention(x, memory, memory, mask, attn_bias=bias)
    explicit, weights = attention(x, memory, memory, mask, need_weights=True, attn_bias=bias)
    projected = attention(x, None, None, mask, attn_bias=bias, kv=attention.project_kv(memory))
    # The formula, in float64: softmax(Q K^T + B) V, masked keys excluded, then W^O
    d = {name: getattr(attention, name).weight.double() for name in ("query", "key", "value", "output")}
    q = (x.double() @ d["query"].T).view(2, 5, 3, 6).transpose(1, 2)
    k = (memory.double() @ d["key"].T).view(2, 7, 3, 6).transpose(1, 2)
    v = (memory.double() @ d["value"].T).view(2, 7, 3, 6).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2) + bias.double()).masked_fill(~mask, float("-inf"))
    expected = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 18) @ d["output"].T
    for out in (fused, explicit, projected):
        torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 5))
    with pytest.raises(ValueError, match="not both"):
        attention(x, memory, memory, kv=attention.project_kv(memory))


def test_layer_norm_is_rms_in_float32():
    norm = T5LayerNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, 8))
    x = torch.randn(3, 8, dtype=torch.float64) * 300
    expected = norm.weight.double() * x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x.float()).double(), expected, atol=1e-5, rtol=1e-5)
    # Half-precision input whose squares overflow float16: still finite, because the variance is in float32
    assert torch.isfinite(norm(torch.full((2, 8), 1000.0, dtype=torch.float16))).all()


# ## Bad input
def test_bad_config(tmp_path):
    with pytest.raises(ValueError, match="feed_forward_proj"):
        T5Config(feed_forward_proj="gated-swish")
    with pytest.raises(ValueError, match="d_kv"):
        T5Config(d_kv=0)
    with pytest.raises(ValueError, match="eos_token_id"):
        T5Config(vocab_size=10, eos_token_id=10)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"d_model": 16, "model_type": "t5", "architectures": ["T5"], "rotary": True}))
    with pytest.raises(ValueError, match=r"config.json.*rotary"):
        T5Config.from_json(path)
    path.write_text(json.dumps({"d_model": 16, "model_type": "t5", "transformers_version": "4.0",
                                "dense_act_fn": "relu", "num_layers": 3}))
    config = T5Config.from_json(path)
    assert (config.d_model, config.num_layers, config.num_decoder_layers) == (16, 3, 3)


def test_bad_inputs():
    model = T5(T5Config(**TINY)).eval()
    ids = torch.randint(0, 40, (2, 5))
    with pytest.raises(ValueError, match="token ids"):
        model(ids, torch.tensor([[0, 40]] * 2))
    with pytest.raises(ValueError, match="token ids"):
        model.generate(torch.tensor([[3, -1, 4]]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, ids, torch.ones(2, 4))
    with pytest.raises(ValueError, match="decoder_attention_mask"):
        model(ids, ids[:, :3], None, torch.ones(3, 3))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(ids, max_new_tokens=0)


@pytest.mark.parametrize("version", [V10, V11], ids=["v1.0", "v1.1"])
def test_bad_checkpoints_name_the_key(tmp_path, version):
    from safetensors.torch import load_file, save_file

    hf_pair(tmp_path, version)
    path = tmp_path / "model.safetensors"
    tensors = load_file(str(path))
    key = "decoder.block.1.layer.1.EncDecAttention.k.weight"
    cases = {"missing": ({k: v for k, v in tensors.items() if k != key}, f"no tensor '{key}'"),
             "unexpected": ({**tensors, "encoder.block.0.extra.weight": torch.zeros(2)}, "encoder.block.0.extra.weight"),
             "misshaped": ({**tensors, key: torch.zeros(3, 3)}, rf"{key}.*shape")}
    for name, (changed, message) in cases.items():
        save_file(changed, str(path))
        with pytest.raises(ValueError, match=message):
            load_hf(tmp_path)
    save_file(tensors, str(path))
    load_hf(tmp_path)


# ## The experiment runs
def test_experiment_smoke(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "labml_nn.transformers.t5", "--preset", "tiny", "--device", "cpu",
                           "--out", str(out)], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert json.loads(done.stdout) == result
    for key in ("val_loss", "span_accuracy", "val_loss_long", "span_accuracy_long"):
        assert set(result[key]) == {"relative", "absolute"}, key
    assert len(result["examples"]) == 2 and "⟨0⟩" in result["examples"][0]["input"]
    for name in ("loss.png", "long_inputs.png", "examples.txt"):
        assert (out / name).is_file(), name


# ## The benchmark runs (its timings are not checked)
def test_benchmark_smoke():
    pytest.importorskip("transformers")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "t5.py"), "--tiny", "--rounds", "1"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Hugging Face generate" in done.stdout and "as fast as Hugging Face's generate" in done.stdout

"""Llama 3.1: a tiny checkpoint in Meta's format against a from-the-equations float64 forward pass, the KV cache,
scaled RoPE, GQA, generation, and the errors of bad checkpoints."""
import json
import math

import pytest
import torch

from labml_nn.transformers.llama import (Attention, FeedForward, ModelArgs, RMSNorm, Transformer, apply_rotary_emb,
                                         apply_scaling, precompute_freqs_cis, rotate_pairs_complex,
                                         rotate_pairs_real)
from labml_nn.transformers.llama.generation import Llama, sample_top_p

# The tiny model of the issue: 2 layers, dim 64, 4 heads of 16, 2 kv heads, vocab 97.
PARAMS = {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 97, "multiple_of": 32,
          "ffn_dim_multiplier": 1.3, "norm_eps": 1e-5, "rope_theta": 500000.0, "use_scaled_rope": True}
# Meta's rounding written out: int(2 * 4 * 64 / 3) = 170, int(1.3 * 170) = 221, up to a multiple of 32.
HIDDEN = 224


# The spread of each kind of random weight: queries and keys large enough that attention is far from uniform
# (so positions and masks matter), the projections into the residual stream small enough that it stays of order one.
WEIGHT_SCALES = {"tok_embeddings": 1.0, "wq": 0.3, "wk": 0.3, "wv": 0.25, "wo": 0.1, "w1": 0.25, "w3": 0.25,
                 "w2": 0.05, "output": 0.25}


def meta_state_dict(params: dict, hidden: int) -> dict[str, torch.Tensor]:
    """A random checkpoint with Meta's tensor names and shapes, listed by hand (not taken from our model)."""
    dim, n_heads, n_kv = params["dim"], params["n_heads"], params["n_kv_heads"]
    head_dim = dim // n_heads
    shapes = {"tok_embeddings.weight": (params["vocab_size"], dim), "norm.weight": (dim,),
              "output.weight": (params["vocab_size"], dim)}
    for i in range(params["n_layers"]):
        shapes.update({
            f"layers.{i}.attention.wq.weight": (n_heads * head_dim, dim),
            f"layers.{i}.attention.wk.weight": (n_kv * head_dim, dim),
            f"layers.{i}.attention.wv.weight": (n_kv * head_dim, dim),
            f"layers.{i}.attention.wo.weight": (dim, n_heads * head_dim),
            f"layers.{i}.feed_forward.w1.weight": (hidden, dim),
            f"layers.{i}.feed_forward.w2.weight": (dim, hidden),
            f"layers.{i}.feed_forward.w3.weight": (hidden, dim),
            f"layers.{i}.attention_norm.weight": (dim,),
            f"layers.{i}.ffn_norm.weight": (dim,),
        })
    generator = torch.Generator().manual_seed(1)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            tensor = 1 + 0.2 * torch.randn(shape, generator=generator)
        else:
            tensor = WEIGHT_SCALES[name.split(".")[-2]] * torch.randn(shape, generator=generator)
        # Meta's checkpoints are bfloat16.
        state[name] = tensor.to(torch.bfloat16)
    return state


def write_checkpoint(ckpt_dir, params=PARAMS, state=None):
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = meta_state_dict(PARAMS, HIDDEN) if state is None else state
    (ckpt_dir / "params.json").write_text(json.dumps(params))
    torch.save(state, ckpt_dir / "consolidated.00.pth")
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ckpt_dir = tmp_path_factory.mktemp("llama_tiny")
    state = write_checkpoint(ckpt_dir)
    return ckpt_dir, state


@pytest.fixture(scope="module")
def llama(checkpoint):
    return Llama.build(checkpoint[0], max_seq_len=48, max_batch_size=4, device="cpu")


# ## The reference: the forward pass from the equations, in float64

def reference_frequencies(head_dim: int, theta: float, scaled: bool) -> list[float]:
    """RoPE frequencies, scaled by Llama 3.1's rule written as a plain loop (as in Meta's apply_scaling)."""
    freqs = [theta ** (-2 * i / head_dim) for i in range(head_dim // 2)]
    if not scaled:
        return freqs
    out = []
    for f in freqs:
        wavelength = 2 * math.pi / f
        if wavelength < 8192 / 4:
            out.append(f)
        elif wavelength > 8192 / 1:
            out.append(f / 8)
        else:
            smooth = (8192 / wavelength - 1) / (4 - 1)
            out.append((1 - smooth) * f / 8 + smooth * f)
    return out


def reference_logits(state: dict, params: dict, tokens: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    w = {name: tensor.double() for name, tensor in state.items()}
    dim, n_heads, n_kv = params["dim"], params["n_heads"], params["n_kv_heads"]
    head_dim, eps = dim // n_heads, params["norm_eps"]
    batch, seq = tokens.shape

    def rms_norm(x, gain):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * gain

    freqs = torch.tensor(reference_frequencies(head_dim, params["rope_theta"], params["use_scaled_rope"]),
                         dtype=torch.float64)
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * freqs[None, :]
    # e^{i m theta}, [seq, head_dim / 2], complex128
    rotation = torch.complex(torch.cos(angles), torch.sin(angles))

    def rope(x):  # [batch, seq, heads, head_dim]: pairs (2i, 2i + 1) as complex numbers
        z = torch.view_as_complex(x.reshape(batch, seq, x.shape[2], head_dim // 2, 2).contiguous())
        return torch.view_as_real(z * rotation[None, :, None, :]).reshape(x.shape)

    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    h = w["tok_embeddings.weight"][tokens]
    for i in range(params["n_layers"]):
        p = f"layers.{i}."
        a = rms_norm(h, w[p + "attention_norm.weight"])
        q = rope((a @ w[p + "attention.wq.weight"].T).view(batch, seq, n_heads, head_dim))
        k = rope((a @ w[p + "attention.wk.weight"].T).view(batch, seq, n_kv, head_dim))
        v = (a @ w[p + "attention.wv.weight"].T).view(batch, seq, n_kv, head_dim)
        # Each kv head serves n_heads / n_kv consecutive query heads.
        k = k.repeat_interleave(n_heads // n_kv, dim=2)
        v = v.repeat_interleave(n_heads // n_kv, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
        scores = scores.masked_fill(~causal, float("-inf"))
        weights = torch.exp(scores - scores.amax(-1, keepdim=True))
        weights = weights / weights.sum(-1, keepdim=True)
        if stats is not None:
            stats.setdefault("max_attention_weight", []).append(weights.amax(-1).mean().item())
        out = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, seq, dim)
        h = h + out @ w[p + "attention.wo.weight"].T
        f = rms_norm(h, w[p + "ffn_norm.weight"])
        gate = f @ w[p + "feed_forward.w1.weight"].T
        hidden = (gate * torch.sigmoid(gate)) * (f @ w[p + "feed_forward.w3.weight"].T)
        h = h + hidden @ w[p + "feed_forward.w2.weight"].T
    return rms_norm(h, w["norm.weight"]) @ w["output.weight"].T


# ## Loading and the forward pass

def test_build_loads_strictly_and_matches_reference(checkpoint, llama):
    _, state = checkpoint
    model = llama.model
    assert model.tok_embeddings.weight.dtype == torch.float32 and model.tok_embeddings.weight.device.type == "cpu"
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[name].float(), rtol=0, atol=0)
    tokens = torch.randint(0, PARAMS["vocab_size"], (3, 20))
    stats = {}
    expected = reference_logits(state, PARAMS, tokens, stats)
    # The attention is sharp, not uniform (its largest weight averages over half): positions and masks matter.
    assert min(stats["max_attention_weight"]) > 0.5
    torch.testing.assert_close(model(tokens).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.forward_inference(tokens, 0).double(), expected, rtol=1e-5, atol=1e-5)
    model.free_caches()


def test_cached_decoding_matches_full_forward_single(llama):
    model = llama.model
    tokens = torch.randint(0, PARAMS["vocab_size"], (1, 24))
    full = model(tokens)
    steps = [model.forward_inference(tokens[:, :7], 0)]
    steps += [model.forward_inference(tokens[:, pos:pos + 1], pos) for pos in range(7, 24)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    model.free_caches()


def test_cached_decoding_matches_full_forward_batched_in_chunks(llama):
    # Three sequences fed as in generation: the first 4 tokens at once, a chunk of 5 (start_pos > 0 and seq > 1:
    # the shifted causal mask), then one token at a time.
    model = llama.model
    tokens = torch.randint(0, PARAMS["vocab_size"], (3, 20))
    full = model(tokens)
    chunks = [(0, 4), (4, 9)] + [(pos, pos + 1) for pos in range(9, 20)]
    cached = torch.cat([model.forward_inference(tokens[:, a:b], a) for a, b in chunks], dim=1)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    # A smaller batch reuses the first rows of the caches.
    first = torch.cat([model.forward_inference(tokens[:1, a:b], a) for a, b in chunks], dim=1)
    torch.testing.assert_close(first, full[:1], rtol=1e-5, atol=1e-5)
    model.free_caches()


def test_causal(llama):
    model = llama.model
    tokens = torch.randint(0, PARAMS["vocab_size"], (2, 12))
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % PARAMS["vocab_size"]
    torch.testing.assert_close(model(tokens)[:, :8], model(changed)[:, :8], rtol=0, atol=0)


def test_bfloat16_copy_keeps_rotations(llama):
    # A complex table held as a buffer would lose its imaginary part under .to(torch.bfloat16).
    tokens = torch.randint(0, PARAMS["vocab_size"], (2, 16))
    model32 = llama.model
    model16 = Transformer(model32.params)
    model16.load_state_dict(model32.state_dict())
    model16 = model16.to(torch.bfloat16)
    torch.testing.assert_close(model16(tokens).float(), model32(tokens), rtol=0.1, atol=0.25)


# ## Pieces against independent references

def test_rms_norm_matches_the_formula():
    norm = RMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 5, 64)
    # x / sqrt(mean(x^2) + eps) * g, written out in float64.
    x64, g64 = x.double(), norm.weight.detach().double()
    expected = x64 / torch.sqrt((x64 * x64).mean(-1, keepdim=True) + 1e-5) * g64
    torch.testing.assert_close(norm(x).double(), expected, rtol=1e-6, atol=1e-6)
    # bfloat16: normalised in float32, cast to bfloat16, then scaled (Meta's order).
    xb, wb = x.bfloat16(), norm.weight.detach().bfloat16()
    x32 = xb.float()
    expected = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).bfloat16() * wb
    torch.testing.assert_close(norm.bfloat16()(xb), expected, rtol=0, atol=0)


@pytest.mark.parametrize("dim, multiplier, multiple_of, expected", [
    (4096, 1.3, 1024, 14336),   # Llama 3.1 8B
    (8192, 1.3, 4096, 28672),   # 70B
    (16384, 1.2, 4096, 53248),  # 405B
    (64, 1.3, 32, HIDDEN),
])
def test_feed_forward_hidden_sizes_of_published_models(dim, multiplier, multiple_of, expected):
    assert FeedForward.hidden_size(4 * dim, multiple_of, multiplier) == expected


def test_feed_forward_is_swiglu():
    ffn = FeedForward(16, 64, multiple_of=8, ffn_dim_multiplier=None)
    x = torch.randn(2, 3, 16)
    gate, value = x @ ffn.w1.weight.T, x @ ffn.w3.weight.T
    expected = (gate * torch.sigmoid(gate) * value) @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), expected)


def test_feed_forward_equals_gated_feed_forward_module():
    feed_forward = pytest.importorskip("labml_nn.transformers.feed_forward")
    ffn = FeedForward(16, 64, multiple_of=8, ffn_dim_multiplier=None)
    hidden = ffn.w1.out_features
    other = feed_forward.FeedForward(16, hidden, dropout=0.0, activation=torch.nn.SiLU(), is_gated=True,
                                     bias1=False, bias2=False, bias_gate=False)
    with torch.no_grad():
        other.layer1.weight.copy_(ffn.w1.weight)
        other.linear_v.weight.copy_(ffn.w3.weight)
        other.layer2.weight.copy_(ffn.w2.weight)
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(other(x), ffn(x))


# ## Rotary frequencies

def test_scaling_at_the_boundary_wavelengths():
    # Wavelengths at and around the two boundaries L / 4 = 2048 and L / 1 = 8192, and inside.
    wavelengths = torch.tensor([100.0, 2047.0, 2048.0, 2049.0, 3000.0, 4096.0, 8191.0, 8192.0, 8193.0, 1e6],
                               dtype=torch.float64)
    freqs = 2 * math.pi / wavelengths
    scaled = apply_scaling(freqs)
    for wavelength, f, got in zip(wavelengths.tolist(), freqs.tolist(), scaled.tolist()):
        if wavelength < 2048:
            expected = f
        elif wavelength > 8192:
            expected = f / 8
        else:
            gamma = (8192 / wavelength - 1) / 3
            expected = (1 - gamma) * f / 8 + gamma * f
        assert got == pytest.approx(expected, rel=1e-12), wavelength
    # The pieces meet: unchanged at 2048 tokens, divided by 8 at 8192, a third of the way at 4096.
    assert scaled[2].item() == pytest.approx(freqs[2].item(), rel=1e-12)
    assert scaled[7].item() == pytest.approx(freqs[7].item() / 8, rel=1e-12)
    assert scaled[5].item() == pytest.approx(freqs[5].item() * (2 / 3 / 8 + 1 / 3), rel=1e-12)


@pytest.mark.parametrize("use_scaled", [False, True])
def test_precompute_freqs_cis_against_formula(use_scaled):
    head_dim, end, theta = 128, 300, 500000.0
    freqs_cis = precompute_freqs_cis(head_dim, end, theta, use_scaled)
    assert freqs_cis.shape == (end, head_dim // 2) and freqs_cis.dtype == torch.complex64
    freqs = torch.tensor(reference_frequencies(head_dim, theta, use_scaled), dtype=torch.float64)
    angles = torch.arange(end, dtype=torch.float64)[:, None] * freqs
    torch.testing.assert_close(freqs_cis.real.double(), torch.cos(angles), rtol=0, atol=2e-4)
    torch.testing.assert_close(freqs_cis.imag.double(), torch.sin(angles), rtol=0, atol=2e-4)
    # Llama 3.1 at head_dim 128 has all three kinds of pairs; the scaled table differs from the plain one.
    if use_scaled:
        wavelengths = 2 * math.pi / torch.tensor(reference_frequencies(head_dim, theta, False))
        assert (wavelengths < 2048).any() and (wavelengths > 8192).any()
        assert ((wavelengths >= 2048) & (wavelengths <= 8192)).any()
        assert not torch.allclose(freqs_cis, precompute_freqs_cis(head_dim, end, theta, False))


@pytest.mark.parametrize("rotate", [None, rotate_pairs_complex, rotate_pairs_real])
def test_rotations_equal_rotation_matrices(rotate):
    # The page's equation: each pair (x_2i, x_2i+1) times the 2x2 rotation matrix of angle m theta_i, in float64.
    # `None` is `apply_rotary_emb` itself (the complex product when not compiling).
    xq, xk = torch.randn(2, 4, 10, 16), torch.randn(2, 2, 10, 16)
    freqs_cis = precompute_freqs_cis(16, 10, 500000.0, True)
    angles = torch.atan2(freqs_cis.imag, freqs_cis.real).double()
    cos, sin = torch.cos(angles), torch.sin(angles)
    # `[seq, head_dim / 2, 2, 2]`
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    if rotate is None:
        q, k = apply_rotary_emb(xq, xk, freqs_cis)
    else:
        q, k = rotate(xq, freqs_cis), rotate(xk, freqs_cis)
    for x, out in ((xq, q), (xk, k)):
        pairs = x.double().unflatten(-1, (-1, 2))
        expected = torch.einsum("spij,bhspj->bhspi", rotation, pairs).flatten(-2)
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_apply_rotary_emb_keeps_dtype_and_accepts_strided_inputs():
    # bfloat16 in, bfloat16 out (rotated in float32); a transposed view, as the attention passes it, works too.
    x = torch.randn(2, 10, 4, 16).transpose(1, 2)
    freqs_cis = precompute_freqs_cis(16, 10, 10000.0)
    q, _ = apply_rotary_emb(x.bfloat16(), x.bfloat16(), freqs_cis)
    assert q.dtype == torch.bfloat16
    expected, _ = apply_rotary_emb(x.contiguous(), x.contiguous(), freqs_cis)
    torch.testing.assert_close(apply_rotary_emb(x, x, freqs_cis)[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(q.float(), expected, rtol=2e-2, atol=2e-2)


def test_unscaled_rope_equals_interleaved_rotary_module():
    rope = pytest.importorskip("labml_nn.transformers.rope")
    head_dim, theta, offset = 16, 500000.0, 5
    module = rope.RotaryPositionalEmbeddings(head_dim, base=theta, interleaved=True)
    x = torch.randn(2, 4, 9, head_dim)
    freqs_cis = precompute_freqs_cis(head_dim, offset + 9, theta, use_scaled=False)[offset:]
    ours, _ = apply_rotary_emb(x, x, freqs_cis)
    torch.testing.assert_close(module(x, offset=offset), ours, rtol=1e-5, atol=1e-5)


# ## Attention

def tiny_args(**overrides) -> ModelArgs:
    return ModelArgs(**{**PARAMS, "max_seq_len": 48, "max_batch_size": 4, **overrides})


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_attention_matches_multi_head_attention(n_kv_heads):
    # With the rotations switched off (angle 0: freqs_cis = 1), Llama's attention is plain (grouped-query)
    # multi-head attention without biases.
    from labml_nn.transformers.mha import MultiHeadAttention
    attention = Attention(tiny_args(n_kv_heads=n_kv_heads))
    mha = MultiHeadAttention(4, 64, bias=False, kv_heads=n_kv_heads)
    with torch.no_grad():
        for ours, theirs in ((attention.wq, mha.query), (attention.wk, mha.key), (attention.wv, mha.value),
                             (attention.wo, mha.output)):
            theirs.weight.copy_(ours.weight)
    x = torch.randn(2, 7, 64)
    identity = torch.ones(7, 8, dtype=torch.complex64)
    expected, _ = mha(x, x, x, is_causal=True, need_weights=True)
    torch.testing.assert_close(attention(x, identity), expected, rtol=1e-5, atol=1e-5)


# ## Generation

def greedy_by_full_forward(model, prompt, steps):
    tokens = list(prompt)
    for _ in range(steps):
        logits = model(torch.tensor([tokens]))
        tokens.append(int(logits[0, -1].argmax()))
    return tokens[len(prompt):]


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]


def test_caches_made_during_generation_outlive_inference_mode(llama):
    # `generate` runs in inference mode; the caches it makes must still take writes outside it (no_grad, compile).
    model = llama.model
    model.free_caches()
    llama.generate([[1, 2, 3]], 4, temperature=0.0)
    assert not model.caches[0].cache_k.is_inference() and not model.freqs_cis.is_inference()
    tokens = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(model.forward_inference(tokens, 0), model(tokens), rtol=1e-5, atol=1e-5)


def test_greedy_generation_is_deterministic_and_matches_full_forward(llama):
    first = llama.generate(PROMPTS, max_gen_len=12, temperature=0.0)
    second = llama.generate(PROMPTS, max_gen_len=12, temperature=0.0)
    assert first == second
    assert [len(out) for out in first] == [12, 12, 12]
    for prompt, out in zip(PROMPTS, first):
        assert out == greedy_by_full_forward(llama.model, prompt, 12)
    echoed = llama.generate(PROMPTS, max_gen_len=12, temperature=0.0, echo=True)
    assert echoed == [prompt + out for prompt, out in zip(PROMPTS, first)]


def test_sampling_is_seeded_and_tiny_top_p_is_greedy(llama):
    torch.manual_seed(3)
    a = llama.generate(PROMPTS, max_gen_len=10, temperature=1.0, top_p=0.95)
    torch.manual_seed(3)
    b = llama.generate(PROMPTS, max_gen_len=10, temperature=1.0, top_p=0.95)
    assert a == b and [len(out) for out in a] == [10, 10, 10]
    # A nucleus of probability ~0 holds only the most likely token.
    assert llama.generate(PROMPTS, max_gen_len=10, temperature=0.8, top_p=1e-9) == \
        llama.generate(PROMPTS, max_gen_len=10, temperature=0.0)


class StopTokens:
    """Stands in for a tokenizer: generation only reads `stop_tokens`."""

    def __init__(self, stop_tokens):
        self.stop_tokens = stop_tokens


def test_generation_stops_at_stop_tokens(llama):
    free = llama.generate(PROMPTS, max_gen_len=12, temperature=0.0)
    stop = free[0][4]
    stopping = Llama(llama.model, StopTokens([stop]))
    out = stopping.generate(PROMPTS, max_gen_len=12, temperature=0.0)
    for row_free, row in zip(free, out):
        expected = row_free[:row_free.index(stop)] if stop in row_free else row_free
        assert row == expected


def test_sample_top_p_keeps_the_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).repeat(4000, 1)
    # Ranked 0.5, 0.3, 0.15, 0.05: the mass above 0.15 is 0.8 > 0.7, so only the first two stay.
    samples = sample_top_p(probs, 0.7)
    assert set(samples.tolist()) == {1, 3}
    assert (samples == 1).float().mean().item() == pytest.approx(0.5 / 0.8, abs=0.03)
    assert set(sample_top_p(probs, 1.0).tolist()) == {0, 1, 2, 3}


def test_forward_loss_ignores_positions():
    torch.manual_seed(0)
    model = Transformer(tiny_args())
    inputs = torch.randint(0, 97, (2, 10))
    targets = torch.randint(0, 97, (2, 10))
    targets[:, :4] = -100
    logits = model(inputs)
    log_probs = logits.log_softmax(-1)[:, 4:].gather(-1, targets[:, 4:, None])
    torch.testing.assert_close(model.forward_loss(inputs, targets), -log_probs.mean())


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = Transformer(ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=20, multiple_of=16,
                                  max_seq_len=16, max_batch_size=4))
    tokens = torch.randint(0, 20, (4, 17))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        loss = model.forward_loss(tokens[:, :-1], tokens[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


# ## Errors

@pytest.mark.parametrize("field, value", [
    ("dim", "64"), ("dim", 64.0), ("dim", True), ("dim", 0), ("n_layers", None), ("n_kv_heads", 3),
    ("n_kv_heads", "2"), ("vocab_size", -1), ("norm_eps", "1e-5"), ("norm_eps", 0), ("rope_theta", -1.0),
    ("ffn_dim_multiplier", "1.3"), ("use_scaled_rope", 1), ("use_scaled_rope", "true"), ("multiple_of", 2.5),
])
def test_bad_params_json_names_file_and_field(tmp_path, field, value):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({**PARAMS, field: value}))
    with pytest.raises(ValueError) as error:
        ModelArgs.from_json(path)
    assert str(path) in str(error.value) and field in str(error.value)
    with pytest.raises(ValueError, match=field):
        ModelArgs(**{**PARAMS, field: value})


def test_params_json_structure_errors(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({**PARAMS, "n_expert": 8}))
    with pytest.raises(ValueError, match="n_expert"):
        ModelArgs.from_json(path)
    path.write_text(json.dumps({k: v for k, v in PARAMS.items() if k != "vocab_size"}))
    with pytest.raises(ValueError, match="vocab_size"):
        ModelArgs.from_json(path)
    path.write_text("{dim: 64")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelArgs.from_json(path)
    path.write_text("[64, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        ModelArgs.from_json(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ModelArgs.from_json(tmp_path / "missing.json")


def test_params_json_round_trip(tmp_path):
    args = tiny_args()
    args.to_json(tmp_path / "params.json")
    assert ModelArgs.from_json(tmp_path / "params.json", max_seq_len=48, max_batch_size=4) == args
    assert json.loads((tmp_path / "params.json").read_text()) == PARAMS


def test_build_missing_files(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Llama.build(tmp_path / "nowhere", device="cpu")
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "params.json").write_text(json.dumps(PARAMS))
    with pytest.raises(FileNotFoundError, match="consolidated.00.pth"):
        Llama.build(tmp_path / "no_weights", device="cpu")
    (tmp_path / "no_params").mkdir()
    torch.save({}, tmp_path / "no_params" / "consolidated.00.pth")
    with pytest.raises(FileNotFoundError, match="params.json"):
        Llama.build(tmp_path / "no_params", device="cpu")
    with pytest.raises(FileNotFoundError, match="tokenizer.model"):
        Llama.build(checkpoint[0], tokenizer_path=tmp_path / "tokenizer.model", device="cpu")


def test_build_rejects_mismatched_checkpoints(tmp_path, checkpoint):
    _, state = checkpoint
    # The shapes disagree with the args: the file was written for 2 kv heads, params.json says 4.
    write_checkpoint(tmp_path / "shape", params={**PARAMS, "n_kv_heads": 4}, state=state)
    with pytest.raises(ValueError) as error:
        Llama.build(tmp_path / "shape", device="cpu")
    message = str(error.value)
    assert "consolidated.00.pth" in message and "layers.0.attention.wk.weight" in message and "[32, 64]" in message

    missing = {name: tensor for name, tensor in state.items() if name != "layers.1.ffn_norm.weight"}
    write_checkpoint(tmp_path / "missing", state=missing)
    with pytest.raises(ValueError, match=r"consolidated\.00\.pth is missing .*layers\.1\.ffn_norm\.weight"):
        Llama.build(tmp_path / "missing", device="cpu")

    write_checkpoint(tmp_path / "unexpected", state={**state, "layers.2.ffn_norm.weight": torch.ones(64)})
    with pytest.raises(ValueError, match=r"consolidated\.00\.pth has 1 tensor.*layers\.2\.ffn_norm\.weight"):
        Llama.build(tmp_path / "unexpected", device="cpu")

    write_checkpoint(tmp_path / "bad_params", params={**PARAMS, "dim": "64"}, state=state)
    with pytest.raises(ValueError, match=r"params\.json.*dim"):
        Llama.build(tmp_path / "bad_params", device="cpu")

    write_checkpoint(tmp_path / "sharded", state=state)
    torch.save(state, tmp_path / "sharded" / "consolidated.01.pth")
    with pytest.raises(ValueError, match="shards"):
        Llama.build(tmp_path / "sharded", device="cpu")


def test_generate_argument_errors(llama):
    with pytest.raises(ValueError, match="max_seq_len"):
        llama.generate([[1, 2]], max_gen_len=47)
    with pytest.raises(ValueError, match="max_batch_size"):
        llama.generate([[1]] * 5, max_gen_len=2)
    with pytest.raises(ValueError, match="prompt 1"):
        llama.generate([[1], [97]], max_gen_len=2)
    with pytest.raises(ValueError, match="empty"):
        llama.generate([[]], max_gen_len=2)
    with pytest.raises(ValueError, match="top_p"):
        llama.generate([[1]], max_gen_len=2, top_p=0.0)
    with pytest.raises(ValueError, match="tokenizer"):
        llama.text_completion(["hello"])


def test_forward_inference_errors():
    model = Transformer(tiny_args())
    with pytest.raises(ValueError, match="start the sequences at 0"):
        model.forward_inference(torch.zeros(1, 1, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.forward_inference(torch.zeros(1, 49, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="max_batch_size"):
        model.forward_inference(torch.zeros(5, 1, dtype=torch.long), 0)


# ## On a GPU, in bfloat16

@pytest.mark.cuda
def test_cuda_bfloat16_build_and_cached_decoding(checkpoint):
    ckpt_dir, state = checkpoint
    llama = Llama.build(ckpt_dir, max_seq_len=48, max_batch_size=4, device="cuda")
    model = llama.model
    expected_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert model.output.weight.dtype == expected_dtype and model.output.weight.is_cuda
    tokens = torch.randint(0, PARAMS["vocab_size"], (3, 20))
    expected = reference_logits(state, PARAMS, tokens)
    full = model(tokens.cuda()).double().cpu()
    # bfloat16 keeps about 3 significant digits; compare relative to the scale of the logits.
    assert (full - expected).abs().max() < 0.05 * expected.abs().max()
    chunks = [(0, 4), (4, 9)] + [(pos, pos + 1) for pos in range(9, 20)]
    cached = torch.cat([model.forward_inference(tokens[:, a:b].cuda(), a) for a, b in chunks], dim=1).double().cpu()
    assert (cached - expected).abs().max() < 0.05 * expected.abs().max()
    out = llama.generate(PROMPTS, max_gen_len=8, temperature=0.0)
    assert [len(row) for row in out] == [8, 8, 8]


# ## Meta's import path

@pytest.mark.parametrize("first", ["labml_nn.transformers.llama", "labml_nn.transformers.llama.generation"])
def test_llama_imports_from_the_package_as_in_metas_code(first):
    import subprocess
    import sys

    # A fresh interpreter, so that the import order is the one under test and nothing is imported already.
    code = (f"import {first}\n"
            "from labml_nn.transformers.llama import Llama\n"
            "from labml_nn.transformers.llama.generation import Llama as FromGeneration\n"
            "assert Llama is FromGeneration and hasattr(Llama, 'build')\n"
            "import labml_nn.transformers.llama as package\n"
            "try:\n"
            "    package.NoSuchName\n"
            "except AttributeError as error:\n"
            "    assert 'NoSuchName' in str(error)\n"
            "else:\n"
            "    raise AssertionError('no AttributeError')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

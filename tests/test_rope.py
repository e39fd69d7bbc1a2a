"""Rotary positional embeddings against the complex-number formulation of RoFormer, and their invariants.

Every check that does not need float64 runs on the CPU and, marked `cuda`, on a GPU in float32 and bfloat16.
"""
import copy
import math

import pytest
import torch

from labml_nn.transformers.mha import KVCache, MultiHeadAttention
from labml_nn.transformers.rope import RotaryPEMultiHeadAttention, RotaryPositionalEmbeddings

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
# Tolerances for results in each dtype compared with a float64 reference
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}


def assert_close_within(actual, expected, dtype):
    """Assert `actual` equals `expected` within the tolerance of `dtype`, compared in float64."""
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), rtol=tol, atol=tol)


# ## Independent references

def frequencies(d: int, base: float = 10_000.0) -> torch.Tensor:
    """theta_i = base^(-2i/d) in float64, one at a time."""
    return torch.tensor([base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)


def rotations(d: int, seq: int, offset: int, base: float = 10_000.0) -> torch.Tensor:
    """e^{i m theta_j} for m = offset ... offset + seq - 1, complex128 [seq, d / 2]."""
    position = torch.arange(offset, offset + seq, dtype=torch.float64)
    angle = position[:, None] * frequencies(d, base)[None, :]
    return torch.polar(torch.ones_like(angle), angle)


def complex_rope_interleaved(x: torch.Tensor, d: int, offset: int = 0, base: float = 10_000.0) -> torch.Tensor:
    """RoFormer / Meta: features (2j, 2j+1) are the complex number x_2j + i x_2j+1, multiplied by e^{i m theta_j}."""
    x = x.double().cpu()
    pairs = torch.view_as_complex(x[..., :d].reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rotated = torch.view_as_real(pairs * rotations(d, x.shape[-2], offset, base)).reshape(*x.shape[:-1], d)
    return torch.cat([rotated, x[..., d:]], dim=-1)


def complex_rope_half(x: torch.Tensor, d: int, offset: int = 0, base: float = 10_000.0) -> torch.Tensor:
    """GPT-NeoX / Hugging Face: features (j, j + d/2) are the complex number x_j + i x_{j+d/2}."""
    x = x.double().cpu()
    pairs = torch.complex(x[..., :d // 2], x[..., d // 2:d]) * rotations(d, x.shape[-2], offset, base)
    return torch.cat([pairs.real, pairs.imag, x[..., d:]], dim=-1)


def half_permutation(d: int) -> torch.Tensor:
    """pi = (0, 2, ..., d-2, 1, 3, ..., d-1): interleaved pair j moves to positions (j, j + d/2)."""
    return torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])


# ## RotaryPositionalEmbeddings

@pytest.mark.parametrize("d,d_head,offset,base", [(16, 16, 0, 10_000.0), (8, 12, 5, 10_000.0), (6, 6, 40, 500_000.0)])
def test_interleaved_equals_complex_formulation_float64(d, d_head, offset, base):
    x = torch.randn(2, 3, 9, d_head, dtype=torch.float64)
    rope = RotaryPositionalEmbeddings(d, base=base, interleaved=True)
    assert_close_within(rope(x, offset=offset), complex_rope_interleaved(x, d, offset, base), torch.float64)


@pytest.mark.parametrize("d,d_head,offset", [(16, 16, 0), (8, 12, 5)])
def test_half_equals_complex_formulation_float64(d, d_head, offset):
    x = torch.randn(2, 3, 9, d_head, dtype=torch.float64)
    assert_close_within(RotaryPositionalEmbeddings(d)(x, offset=offset), complex_rope_half(x, d, offset), torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("interleaved", [False, True])
def test_matches_reference_on_device(device, dtype, interleaved):
    # A large offset: angles computed in the input's low precision would be off by whole radians.
    d, d_head, offset = 32, 48, 3001
    x = torch.randn(2, 4, 17, d_head, device=device).to(dtype)
    out = RotaryPositionalEmbeddings(d, interleaved=interleaved)(x, offset=offset)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    reference = (complex_rope_interleaved if interleaved else complex_rope_half)(x, d, offset)
    # A float32 angle near 3000 radians is itself only accurate to about 2e-4 (Meta's code has the same limit).
    tol = 1e-3 if dtype == torch.float32 else TOLERANCE[dtype]
    torch.testing.assert_close(out.double().cpu(), reference, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_output_close_to_float32(dtype):
    x = torch.randn(1, 2, 64, 16)
    rope = RotaryPositionalEmbeddings(16)
    out = rope(x.to(dtype), offset=2000)
    assert out.dtype == dtype
    assert_close_within(out, rope(x, offset=2000), dtype)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotation_preserves_norms_of_each_pair(interleaved):
    d = 12
    x = torch.randn(2, 3, 20, d, dtype=torch.float64)
    out = RotaryPositionalEmbeddings(d, interleaved=interleaved)(x, offset=7)
    if interleaved:
        pair_norms = lambda t: t.unflatten(-1, (d // 2, 2)).norm(dim=-1)  # noqa: E731
    else:
        pair_norms = lambda t: torch.stack([t[..., :d // 2], t[..., d // 2:]], dim=-1).norm(dim=-1)  # noqa: E731
    assert_close_within(pair_norms(out), pair_norms(x), torch.float64)
    assert_close_within(out.norm(dim=-1), x.norm(dim=-1), torch.float64)
    # ... and the rotation really moves the vectors
    assert (out - x).abs().max() > 0.1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("interleaved", [False, True])
def test_scores_depend_only_on_relative_position(device, dtype, interleaved):
    rope = RotaryPositionalEmbeddings(16, interleaved=interleaved)
    q = torch.randn(1, 2, 10, 16, device=device).to(dtype)
    k = torch.randn(1, 2, 10, 16, device=device).to(dtype)

    def scores(offset):
        return (rope(q, offset=offset).double() @ rope(k, offset=offset).double().transpose(-2, -1))

    # Shifting every query and key by the same amount leaves all scores unchanged. A score sums 16 products,
    # each rounded to the input's precision, hence the wider tolerance in bfloat16.
    tol = 1e-4 if dtype == torch.float32 else 0.15
    torch.testing.assert_close(scores(1234).cpu(), scores(0).cpu(), rtol=tol, atol=tol)
    # The same query and key vectors at every position: score[m, n] depends only on m - n (a Toeplitz matrix).
    same_q = q[:, :, :1].expand_as(q)
    same_k = k[:, :, :1].expand_as(k)
    s = rope(same_q).double() @ rope(same_k).double().transpose(-2, -1)
    for shift in range(1, 10):
        torch.testing.assert_close(s[..., shift:, shift:].cpu(), s[..., :-shift, :-shift].cpu(), rtol=tol, atol=tol)
    # ... which is not constant: positions do change the scores.
    assert (s[..., 0, 0] - s[..., 9, 0]).abs().max() > 0.1


@pytest.mark.parametrize("d,d_head", [(16, 16), (8, 12)])
def test_half_equals_interleaved_after_permutation(d, d_head):
    x = torch.randn(2, 3, 11, d_head, dtype=torch.float64)
    # Permute the rotated features only; the tail keeps its place.
    perm = torch.cat([half_permutation(d), torch.arange(d, d_head)])
    half = RotaryPositionalEmbeddings(d)(x[..., perm], offset=3)
    interleaved = RotaryPositionalEmbeddings(d, interleaved=True)(x, offset=3)
    assert_close_within(half, interleaved[..., perm], torch.float64)
    # The two pairings are genuinely different maps.
    assert (RotaryPositionalEmbeddings(d)(x) - RotaryPositionalEmbeddings(d, interleaved=True)(x)).abs().max() > 0.1


def test_permuting_query_and_key_weights_moves_a_model_between_pairings():
    d_model, d_head = 16, 8
    wq, wk = torch.randn(d_model, d_head, dtype=torch.float64), torch.randn(d_model, d_head, dtype=torch.float64)
    x = torch.randn(1, 1, 6, d_model, dtype=torch.float64)
    perm = half_permutation(d_head)

    def scores(rope, wq, wk):
        return rope(x @ wq) @ rope(x @ wk).transpose(-2, -1)

    assert_close_within(scores(RotaryPositionalEmbeddings(d_head), wq[:, perm], wk[:, perm]),
          scores(RotaryPositionalEmbeddings(d_head, interleaved=True), wq, wk), torch.float64)


@pytest.mark.parametrize("interleaved", [False, True])
def test_partial_rotation_leaves_tail_untouched(interleaved):
    x = torch.randn(2, 3, 7, 20)
    out = RotaryPositionalEmbeddings(6, interleaved=interleaved)(x, offset=11)
    assert torch.equal(out[..., 6:], x[..., 6:])
    assert (out[..., :6] - x[..., :6]).abs().max() > 0.1


@pytest.mark.parametrize("interleaved", [False, True])
def test_offset_equals_slicing_a_longer_sequence(interleaved):
    rope = RotaryPositionalEmbeddings(10, interleaved=interleaved)
    x = torch.randn(2, 3, 30, 14, dtype=torch.float64)
    full = rope(x)
    for start, end in [(0, 5), (12, 13), (17, 30)]:
        assert_close_within(rope(x[:, :, start:end], offset=start), full[:, :, start:end], torch.float64)


def test_position_zero_is_identity_and_input_is_not_modified():
    rope = RotaryPositionalEmbeddings(8)
    x = torch.randn(1, 2, 4, 8)
    copy = x.clone()
    out = rope(x)
    assert torch.equal(x, copy)
    torch.testing.assert_close(out[:, :, 0], x[:, :, 0])


def test_no_state_and_gradients():
    rope = RotaryPositionalEmbeddings(8)
    assert list(rope.parameters()) == [] and list(rope.buffers()) == [] and rope.state_dict() == {}
    x = torch.randn(1, 2, 5, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: rope(t, offset=3), (x,))


@pytest.mark.parametrize("d", [7, 1, 0, -2, 8.0])
def test_odd_or_nonpositive_d_raises(d):
    with pytest.raises(ValueError, match="even"):
        RotaryPositionalEmbeddings(d)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="base"):
        RotaryPositionalEmbeddings(8, base=1.0)
    rope = RotaryPositionalEmbeddings(8)
    with pytest.raises(ValueError, match="d_head"):
        rope(torch.randn(1, 1, 3, 6))
    with pytest.raises(ValueError, match="offset"):
        rope(torch.randn(1, 1, 3, 8), offset=-1)
    with pytest.raises(ValueError, match=r"\[batch, heads, seq, d_head\]"):
        rope(torch.randn(3, 8))


# ## RotaryPEMultiHeadAttention

def reference_attention(mha: RotaryPEMultiHeadAttention, x: torch.Tensor, d_rope: int) -> torch.Tensor:
    """Causal self-attention written out in float64, rotating the first `d_rope` features with the complex form."""
    batch, seq, _ = x.shape
    x = x.double().cpu()
    # Copies: `Module.double()` converts in place.
    w = {name: copy.deepcopy(getattr(mha, name)).double().cpu() for name in ("query", "key", "value", "output")}

    def heads(t):
        # [batch, seq, heads * d_head] to [batch, heads, seq, d_head]
        return t.view(batch, seq, mha.heads, mha.d_head).transpose(1, 2)

    q = complex_rope_half(heads(w["query"](x)), d_rope)
    k = complex_rope_half(heads(w["key"](x)), d_rope)
    v = heads(w["value"](x))
    scores = q @ k.transpose(-2, -1) / math.sqrt(mha.d_head)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    attn = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(batch, seq, -1)
    return w["output"](out)


@pytest.mark.parametrize("rope_percentage,d_rope", [(0.5, 8), (1.0, 16), (0.3, 4), (0.35, 4)])
def test_rotated_features_count(rope_percentage, d_rope):
    assert RotaryPEMultiHeadAttention(2, 32, rope_percentage=rope_percentage).rope.d == d_rope


@pytest.mark.parametrize("rope_percentage", [0.5, 1.0])
def test_attention_matches_written_out_reference(rope_percentage):
    mha = RotaryPEMultiHeadAttention(4, 32, rope_percentage=rope_percentage).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    expected = reference_attention(mha, x, mha.rope.d)
    assert_close_within(mha(x, x, x, is_causal=True), expected, torch.float64)
    assert_close_within(mha(x, x, x, need_weights=True, is_causal=True)[0], expected, torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_path_equals_explicit_path(device, dtype):
    mha = RotaryPEMultiHeadAttention(4, 64).to(device=device, dtype=dtype).eval()
    x = torch.randn(2, 13, 64, device=device).to(dtype)
    fast = mha(x, x, x, is_causal=True)
    explicit, attn = mha(x, x, x, need_weights=True, is_causal=True)
    assert fast.dtype == dtype
    assert_close_within(fast, explicit, dtype)
    # With an explicit boolean causal mask instead of the flag
    causal = torch.ones(13, 13, dtype=torch.bool, device=device).tril()
    assert_close_within(mha(x, x, x, mask=causal), explicit, dtype)
    # Against the float64 reference
    assert_close_within(fast, reference_attention(mha, x, mha.rope.d), dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_decoding_equals_full_forward(device, dtype):
    batch, seq, prompt = 2, 12, 5
    mha = RotaryPEMultiHeadAttention(4, 32).to(device=device, dtype=dtype).eval()
    x = torch.randn(batch, seq, 32, device=device).to(dtype)
    full = mha(x, x, x, is_causal=True)
    cache = KVCache(batch, mha.heads, seq, mha.d_head, dtype=dtype, device=device)
    chunks = [x[:, :prompt]] + [x[:, i:i + 1] for i in range(prompt, seq)]
    outputs = [mha(chunk, chunk, chunk, is_causal=True, cache=cache) for chunk in chunks]
    assert cache.length == seq
    assert_close_within(torch.cat(outputs, dim=1), full, dtype)
    # The explicit path with a cache agrees too.
    cache = KVCache(batch, mha.heads, seq, mha.d_head, dtype=dtype, device=device)
    outputs = [mha(chunk, chunk, chunk, need_weights=True, is_causal=True, cache=cache)[0] for chunk in chunks]
    assert_close_within(torch.cat(outputs, dim=1), full, dtype)


def test_attention_gradients_flow():
    mha = RotaryPEMultiHeadAttention(2, 16)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mha(x, x, x, is_causal=True).square().sum().backward()
    assert x.grad.abs().sum() > 0
    for name, p in mha.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("heads,d_model,rope_percentage", [(2, 32, 0.0), (2, 32, -0.5), (2, 32, 1.5),
                                                            (4, 8, 0.5), (2, 32, 0.1)])
def test_bad_rope_percentage_raises(heads, d_model, rope_percentage):
    # The last two round down to zero rotated features: attention without positions, almost surely a mistake.
    with pytest.raises(ValueError, match="rope_percentage"):
        RotaryPEMultiHeadAttention(heads, d_model, rope_percentage=rope_percentage)


def test_only_encode_positions_is_overridden():
    overridden = {name for name in vars(RotaryPEMultiHeadAttention)
                  if callable(getattr(MultiHeadAttention, name, None))}
    assert overridden == {"__init__", "encode_positions"}
    # It must not be a no-op: the same content at different positions attends differently.
    mha = RotaryPEMultiHeadAttention(2, 16)
    x = torch.randn(1, 1, 16).expand(1, 6, 16)
    _, attn = mha(x, x, x, need_weights=True)
    assert (attn[0, :, 0] - attn[0, :, 5]).abs().max() > 1e-3

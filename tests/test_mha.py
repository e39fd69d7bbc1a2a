"""Multi-head attention against torch.nn.MultiheadAttention, a float64 loop, and its own two paths."""
import pytest
import torch

from labml_nn.transformers.mha import KVCache, MultiHeadAttention
from labml_nn.transformers.utils import padding_mask, subsequent_mask

D_MODEL, HEADS = 32, 4


def make_pair(dtype=torch.float64, bias=True):
    """Our attention and torch's, with the same weights."""
    ours = MultiHeadAttention(HEADS, D_MODEL, bias=bias).to(dtype)
    ref = torch.nn.MultiheadAttention(D_MODEL, HEADS, bias=bias, batch_first=True).to(dtype)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
        ref.out_proj.weight.copy_(ours.output.weight)
        if bias:
            ref.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
            ref.out_proj.bias.copy_(ours.output.bias)
    return ours.eval(), ref.eval()


TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"])
@pytest.mark.parametrize("cross", [False, True])
def test_matches_torch_multihead_attention(dtype, mask_kind, cross):
    ours, ref = make_pair(dtype)
    x = torch.randn(3, 6, D_MODEL, dtype=dtype)
    memory = torch.randn(3, 9, D_MODEL, dtype=dtype) if cross else x
    seq_k = memory.shape[1]
    ref_kwargs, mask = {}, None
    if mask_kind == "causal" and not cross:
        mask = subsequent_mask(6)
        # torch's boolean attn_mask means "may NOT attend": the opposite convention
        ref_kwargs["attn_mask"] = ~mask
    if mask_kind == "padding":
        tokens = torch.ones(3, seq_k, dtype=torch.long)
        tokens[0, -2:] = 0
        tokens[2, -4:] = 0
        mask = padding_mask(tokens, pad_id=0)
        ref_kwargs["key_padding_mask"] = tokens == 0
    expected, expected_weights = ref(x, memory, memory, average_attn_weights=False, **ref_kwargs)
    fast = ours(x, memory, memory, mask=mask)
    explicit, weights = ours(x, memory, memory, mask=mask, need_weights=True)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(fast, expected, atol=tol, rtol=tol)
    torch.testing.assert_close(explicit, expected, atol=tol, rtol=tol)
    torch.testing.assert_close(weights, expected_weights, atol=tol, rtol=tol)


@pytest.mark.parametrize("seq", [1, 5])
def test_self_attention_projections_match_torch_for_one_and_many_positions(seq):
    """Self-attention stacks the projections for several positions and runs them one by one for a single
    position (a decoding step); both match torch's packed in-projection."""
    ours, ref = make_pair(torch.float64)
    x = torch.randn(2, seq, D_MODEL, dtype=torch.float64)
    expected, _ = ref(x, x, x)
    torch.testing.assert_close(ours(x, x, x), expected, atol=1e-10, rtol=1e-10)


def test_is_causal_equals_explicit_causal_mask_and_loop():
    """The kernel's causal flag, an explicit mask, and a float64 loop over positions agree."""
    ours, _ = make_pair()
    x = torch.randn(2, 7, D_MODEL, dtype=torch.float64)
    flagged = ours(x, x, x, is_causal=True)
    masked = ours(x, x, x, mask=subsequent_mask(7))
    torch.testing.assert_close(flagged, masked, atol=1e-12, rtol=0)
    # Position t sees only the prefix: attention over x[:, :t+1] alone, taking its last output.
    loop = torch.stack([ours(x[:, :t + 1], x[:, :t + 1], x[:, :t + 1])[:, -1] for t in range(7)], dim=1)
    torch.testing.assert_close(flagged, loop, atol=1e-12, rtol=0)


def test_weights_sum_to_one_and_masked_weights_are_zero():
    ours, _ = make_pair()
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    mask = subsequent_mask(5)
    _, weights = ours(x, x, x, mask=mask, need_weights=True)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, HEADS, 5, dtype=torch.float64))
    assert (weights[..., ~mask] == 0).all()


@pytest.mark.parametrize("need_weights", [False, True])
def test_query_that_may_attend_nothing_gets_zero_not_nan(need_weights):
    ours, _ = make_pair(torch.float32)
    x = torch.randn(2, 4, D_MODEL, requires_grad=True)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 1] = False
    out = ours(x, x, x, mask=mask, need_weights=need_weights)
    out = out[0] if need_weights else out
    # The attention output of that query is zero, so the layer's output is the output projection's bias.
    torch.testing.assert_close(out[0, 1], ours.output.bias.detach().expand(D_MODEL))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_explicit_and_fast_paths_agree_with_dropout_off_and_gradients_flow():
    ours, _ = make_pair(torch.float32)
    x = torch.randn(2, 8, D_MODEL, requires_grad=True)
    fast = ours(x, x, x, is_causal=True)
    explicit, _ = ours(x, x, x, is_causal=True, need_weights=True)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    fast.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_attention_equals_mha_with_repeated_heads(kv_heads):
    """GQA equals plain MHA whose key/value weights repeat each kv head for its group of query heads."""
    gqa = MultiHeadAttention(HEADS, D_MODEL, kv_heads=kv_heads).double().eval()
    mha = MultiHeadAttention(HEADS, D_MODEL).double().eval()
    group = HEADS // kv_heads
    d_head = D_MODEL // HEADS
    with torch.no_grad():
        mha.query.load_state_dict(gqa.query.state_dict())
        mha.output.load_state_dict(gqa.output.state_dict())
        for name in ("key", "value"):
            src, dst = getattr(gqa, name), getattr(mha, name)
            # Head h of the MHA reads kv head h // group: repeat each kv head's rows `group` times.
            weight = src.weight.view(kv_heads, d_head, D_MODEL).repeat_interleave(group, dim=0)
            dst.weight.copy_(weight.reshape(HEADS * d_head, D_MODEL))
            dst.bias.copy_(src.bias.view(kv_heads, d_head).repeat_interleave(group, dim=0).reshape(-1))
    x = torch.randn(2, 6, D_MODEL, dtype=torch.float64)
    expected = mha(x, x, x, is_causal=True)
    torch.testing.assert_close(gqa(x, x, x, is_causal=True), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(gqa(x, x, x, is_causal=True, need_weights=True)[0], expected, atol=1e-12, rtol=0)


def test_kv_cache_decoding_equals_full_forward():
    ours = MultiHeadAttention(HEADS, D_MODEL, kv_heads=2).double().eval()
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    full = ours(x, x, x, is_causal=True)
    cache = KVCache(2, 2, 9, D_MODEL // HEADS, dtype=torch.float64)
    # A prompt of 4 positions at once, then one position at a time, then the last two together.
    chunks = [(0, 4)] + [(t, t + 1) for t in range(4, 7)] + [(7, 9)]
    outputs = [ours(x[:, a:b], x[:, a:b], x[:, a:b], is_causal=True, cache=cache) for a, b in chunks]
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="full"):
        ours(x[:, :1], x[:, :1], x[:, :1], cache=cache)


def test_bias_flag_applies_to_all_projections():
    no_bias = MultiHeadAttention(HEADS, D_MODEL, bias=False)
    assert all(getattr(no_bias, n).bias is None for n in ("query", "key", "value", "output"))
    ours, ref = make_pair(torch.float64, bias=False)
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(ours(x, x, x), ref(x, x, x)[0], atol=1e-10, rtol=0)


def test_weight_layout_is_head_major():
    """Rows h*d_head:(h+1)*d_head of the query weight produce head h."""
    ours = MultiHeadAttention(HEADS, D_MODEL, bias=False).double()
    x = torch.randn(1, 3, D_MODEL, dtype=torch.float64)
    q, _, _ = ours.project(x, x, x)
    d_head = D_MODEL // HEADS
    for h in range(HEADS):
        torch.testing.assert_close(q[0, h], x[0] @ ours.query.weight[h * d_head:(h + 1) * d_head].T)


@pytest.mark.parametrize("kwargs, message", [
    (dict(heads=5, d_model=32), "divisible by heads"),
    (dict(heads=4, d_model=32, kv_heads=3), "divisible by kv_heads"),
    (dict(heads=4, d_model=32, dropout_prob=1.0), "dropout_prob"),
])
def test_bad_construction_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


@pytest.mark.parametrize("mask, message", [
    (torch.ones(5, 5, dtype=torch.bool), "does not broadcast"),
    (torch.ones(3, 1, 4, 4, dtype=torch.bool), "does not broadcast"),
    (torch.ones(1, 1, 1, 1, 4, 4, dtype=torch.bool), "does not broadcast"),
    (torch.ones(4, 4), "boolean"),
])
def test_bad_mask_raises(mask, message):
    ours = MultiHeadAttention(HEADS, D_MODEL)
    x = torch.randn(2, 4, D_MODEL)
    with pytest.raises(ValueError, match=message):
        ours(x, x, x, mask=mask)


def test_bad_input_shapes_raise():
    ours = MultiHeadAttention(HEADS, D_MODEL)
    with pytest.raises(ValueError, match="query"):
        ours(torch.randn(2, 4, 16), torch.randn(2, 4, 16), torch.randn(2, 4, 16))
    with pytest.raises(ValueError, match="key and value"):
        ours(torch.randn(2, 4, D_MODEL), torch.randn(2, 5, D_MODEL), torch.randn(2, 4, D_MODEL))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_cuda_paths_agree(dtype, tol):
    ours = MultiHeadAttention(HEADS, 64, kv_heads=2).cuda().to(dtype).eval()
    x = torch.randn(2, 128, 64, device="cuda", dtype=dtype)
    fast = ours(x, x, x, is_causal=True)
    explicit, _ = ours(x, x, x, is_causal=True, need_weights=True)
    torch.testing.assert_close(fast.float(), explicit.float(), atol=tol, rtol=tol)
    cpu = ours.float().cpu()(x.float().cpu(), x.float().cpu(), x.float().cpu(), is_causal=True)
    torch.testing.assert_close(fast.float().cpu(), cpu, atol=tol, rtol=tol)

"""flash_attention against F.scaled_dot_product_attention and MultiHeadAttention's explicit path (outputs and
gradients), gradcheck, what its backward stores, the skipped causal blocks against a brute-force count and a FLOP
count, bad input, smoke runs of the experiment and the benchmark, and (on a GPU) the Triton forward kernel against
SDPA."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right
from torch.utils.flop_counter import FlopCounterMode

from labml_nn.transformers.flash_attention import causal_block_counts, flash_attention
from labml_nn.transformers.mha import MultiHeadAttention

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
BATCH, HEADS, D_HEAD = 2, 3, 8

pytestmark = pytest.mark.usefixtures("single_thread")

# (seq_q, seq_k, block_q, block_k): lengths not divisible by the blocks, seq_q < seq_k and seq_q > seq_k, blocks of
# one row and blocks longer than the sequence.
SHAPES = [(13, 13, 4, 5), (7, 12, 3, 5), (12, 7, 5, 3), (9, 9, 1, 1), (6, 11, 1, 4), (9, 11, 64, 64), (16, 16, 4, 4)]


def make_inputs(seq_q, seq_k, dtype, d_v=D_HEAD):
    q = torch.randn(BATCH, HEADS, seq_q, D_HEAD, dtype=dtype, requires_grad=True)
    k = torch.randn(BATCH, HEADS, seq_k, D_HEAD, dtype=dtype, requires_grad=True)
    v = torch.randn(BATCH, HEADS, seq_k, d_v, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(BATCH, HEADS, seq_q, d_v, dtype=dtype)
    return q, k, v, grad_out


def output_and_grads(fn, q, k, v, grad_out):
    out = fn(q, k, v)
    return (out, *torch.autograd.grad(out, (q, k, v), grad_out))


def assert_all_close(actual, expected, tol):
    for name, a, e in zip(("out", "dq", "dk", "dv"), actual, expected):
        torch.testing.assert_close(a, e, atol=tol, rtol=tol, msg=lambda m: f"{name}: {m}")


# ## Equal to SDPA and to the explicit path


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("is_causal, seq_q, seq_k, block_q, block_k",
                         # is_causal needs seq_q <= seq_k (an error, tested below)
                         [(c, *shape) for c in (False, True) for shape in SHAPES if not (c and shape[0] > shape[1])])
def test_matches_sdpa_and_explicit_path(dtype, is_causal, seq_q, seq_k, block_q, block_k):
    inputs = make_inputs(seq_q, seq_k, dtype)
    ours = output_and_grads(lambda q, k, v: flash_attention(q, k, v, is_causal=is_causal, block_q=block_q,
                                                            block_k=block_k), *inputs)
    # SDPA's own bottom-right causal mask
    sdpa_mask = causal_lower_right(seq_q, seq_k) if is_causal else None
    sdpa = output_and_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask), *inputs)
    # MultiHeadAttention's explicit softmax(QK^T / sqrt(d))V with its causal mask
    mha = MultiHeadAttention(HEADS, HEADS * D_HEAD)
    mask = mha.causal_mask(seq_q, seq_k, torch.device("cpu")) if is_causal else None
    explicit = output_and_grads(lambda q, k, v: mha.attend_explicitly(q, k, v, mask)[0], *inputs)
    assert_all_close(ours, sdpa, TOLERANCE[dtype])
    assert_all_close(ours, explicit, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_square_causal_matches_sdpa_is_causal(dtype):
    """For seq_q == seq_k the bottom-right mask is SDPA's `is_causal=True`."""
    inputs = make_inputs(21, 21, dtype)
    ours = output_and_grads(lambda q, k, v: flash_attention(q, k, v, is_causal=True, block_q=8, block_k=5), *inputs)
    sdpa = output_and_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), *inputs)
    assert_all_close(ours, sdpa, TOLERANCE[dtype])


def test_scale_and_value_width():
    inputs = make_inputs(10, 14, torch.float64, d_v=5)
    ours = output_and_grads(lambda q, k, v: flash_attention(q, k, v, is_causal=True, block_q=3, block_k=4,
                                                            scale=0.3), *inputs)
    sdpa = output_and_grads(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=causal_lower_right(10, 14), scale=0.3), *inputs)
    assert_all_close(ours, sdpa, 1e-10)


def test_large_scores_do_not_overflow():
    """The running maximum keeps every exponent <= 0: scores of several thousand are fine in float32."""
    q, k, v, grad_out = make_inputs(12, 12, torch.float32)
    with torch.no_grad():
        q.mul_(300.0)
    ours = output_and_grads(lambda q, k, v: flash_attention(q, k, v, block_q=4, block_k=4), q, k, v, grad_out)
    assert all(torch.isfinite(x).all() for x in ours)
    expected = output_and_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                                *(x.detach().double().requires_grad_() for x in (q, k, v)), grad_out.double())
    torch.testing.assert_close(ours[0].double(), expected[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("is_causal", [False, True])
def test_gradcheck(is_causal):
    q, k, v, _ = make_inputs(5, 7, torch.float64)
    q, k, v = q[:1, :2], k[:1, :2], v[:1, :2]
    assert torch.autograd.gradcheck(
        lambda q, k, v: flash_attention(q, k, v, is_causal=is_causal, block_q=2, block_k=3), (q, k, v))


# ## What the backward pass keeps


def saved_shapes(fn, *inputs):
    """Shapes of every tensor autograd saves for the backward pass while `fn` runs."""
    shapes = []

    def pack(x):
        shapes.append(tuple(x.shape))
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn(*inputs)
    return out, shapes


def test_backward_stores_no_seq_by_seq_tensor():
    seq = 32
    q, k, v, _ = make_inputs(seq, seq, torch.float32)
    out, shapes = saved_shapes(lambda q, k, v: flash_attention(q, k, v, is_causal=True, block_q=8, block_k=8), q, k, v)
    assert shapes, "the hooks saw nothing"
    assert all(s[-2:] != (seq, seq) and torch.Size(s).numel() <= BATCH * HEADS * seq * D_HEAD for s in shapes), shapes
    # What the autograd function keeps: q, k, v, out and the per-row log-sum-exp
    assert [tuple(t.shape) for t in out.grad_fn.saved_tensors] == [
        (BATCH, HEADS, seq, D_HEAD)] * 4 + [(BATCH, HEADS, seq)]
    # The check can fail: the explicit path keeps its [seq, seq] weights
    mha = MultiHeadAttention(HEADS, HEADS * D_HEAD)
    _, explicit_shapes = saved_shapes(lambda q, k, v: mha.attend_explicitly(q, k, v, None)[0], q, k, v)
    assert (BATCH, HEADS, seq, seq) in explicit_shapes


# ## Skipped causal blocks


def brute_force_block_counts(seq_q, seq_k, block_q, block_k):
    """Classify every block of the full bottom-right causal mask: all hidden, all visible, or mixed."""
    mask = torch.ones(seq_q, seq_k, dtype=torch.bool).tril(diagonal=seq_k - seq_q)
    counts = {"full": 0, "masked": 0, "skipped": 0}
    for q0 in range(0, seq_q, block_q):
        for k0 in range(0, seq_k, block_k):
            block = mask[q0:q0 + block_q, k0:k0 + block_k]
            counts["skipped" if not block.any() else "full" if block.all() else "masked"] += 1
    return counts


@pytest.mark.parametrize("seq_q, seq_k, block_q, block_k",
                         [(8, 8, 2, 2), (13, 13, 4, 5), (7, 12, 3, 5), (9, 9, 1, 1), (6, 11, 1, 4), (9, 11, 64, 64),
                          (100, 100, 16, 8), (30, 70, 7, 9), (1, 5, 1, 2), (64, 64, 64, 1)])
def test_causal_block_counts_match_brute_force(seq_q, seq_k, block_q, block_k):
    assert causal_block_counts(seq_q, seq_k, block_q, block_k) == brute_force_block_counts(seq_q, seq_k, block_q,
                                                                                           block_k)


def test_skipped_blocks_are_not_computed():
    """The forward pass does the matrix products of the visited blocks only: two `[block, d] x [d, block]`-sized
    products per block, counted by torch's FLOP counter."""
    seq, block = 32, 8
    q, k, v, _ = make_inputs(seq, seq, torch.float32)
    counts = causal_block_counts(seq, seq, block, block)
    flops_per_block = 2 * 2 * BATCH * HEADS * block * block * D_HEAD
    for is_causal, visited in ((True, counts["full"] + counts["masked"]), (False, (seq // block) ** 2)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            flash_attention(q, k, v, is_causal=is_causal, block_q=block, block_k=block)
        assert counter.get_total_flops() == visited * flops_per_block
    assert counts["skipped"] == 6


# ## Bad input


@pytest.mark.parametrize("shapes, kwargs, match", [
    (((2, 3, 5, 8), (2, 3, 5, 6), (2, 3, 5, 8)), {}, "head dimension"),
    (((2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 4, 8)), {}, "sequence length"),
    (((2, 3, 5, 8), (2, 2, 5, 8), (2, 2, 5, 8)), {}, "batch and heads"),
    (((3, 5, 8), (3, 5, 8), (3, 5, 8)), {}, r"\[batch, heads, seq, d_head\]"),
    (((2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 5, 8)), {"block_q": 0}, "block sizes must be positive"),
    (((2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 5, 8)), {"block_k": -1}, "block sizes must be positive"),
    (((2, 3, 6, 8), (2, 3, 5, 8), (2, 3, 5, 8)), {"is_causal": True}, "seq_q <= seq_k"),
    (((2, 3, 6, 8), (2, 3, 0, 8), (2, 3, 0, 8)), {}, "at least one position"),
])
def test_bad_input(shapes, kwargs, match):
    q, k, v = (torch.randn(s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        flash_attention(q, k, v, **kwargs)


def test_bad_dtypes():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="floating-point"):
        flash_attention(q, q.long(), q)
    with pytest.raises(ValueError, match="share dtype"):
        flash_attention(q, q.double(), q)


def test_block_counts_reject_bad_sizes():
    with pytest.raises(ValueError):
        causal_block_counts(8, 4, 2, 2)
    with pytest.raises(ValueError):
        causal_block_counts(8, 8, 0, 2)


# ## On a GPU


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
def test_cuda_matches_sdpa(dtype, tol):
    inputs = [x.cuda().to(dtype).detach().requires_grad_(x.requires_grad) for x in make_inputs(200, 300, torch.float32)]
    ours = output_and_grads(lambda q, k, v: flash_attention(q, k, v, is_causal=True), *inputs)
    sdpa = output_and_grads(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=causal_lower_right(200, 300)), *inputs)
    for a, e in zip(ours, sdpa):
        torch.testing.assert_close(a.float(), e.float(), atol=tol, rtol=tol)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2), (torch.float32, 5e-3)])
@pytest.mark.parametrize("is_causal, seq_q, seq_k, d_head", [(False, 200, 300, 64), (True, 200, 300, 64),
                                                             (True, 256, 256, 128), (False, 77, 77, 40)])
def test_triton_forward_matches_sdpa(dtype, tol, is_causal, seq_q, seq_k, d_head):
    """The Triton kernel's output and log-sum-exp against SDPA and logsumexp in float32 (float32 inputs go through
    TF32 tensor cores, hence the tolerance)."""
    pytest.importorskip("triton")
    from labml_nn.transformers.flash_attention.triton_forward import flash_attention_triton

    q = torch.randn(2, 3, seq_q, d_head, device="cuda").to(dtype)
    k, v = (torch.randn(2, 3, seq_k, d_head, device="cuda").to(dtype) for _ in range(2))
    out, lse = flash_attention_triton(q, k, v, is_causal=is_causal)
    mask = causal_lower_right(seq_q, seq_k) if is_causal else None
    q32, k32, v32 = q.float(), k.float(), v.float()
    expected = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=mask)
    scores = (q32 @ k32.transpose(-2, -1)) / d_head ** 0.5
    if is_causal:
        scores = scores.masked_fill(~torch.ones(seq_q, seq_k, dtype=torch.bool, device="cuda").tril(seq_k - seq_q),
                                    float("-inf"))
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)
    torch.testing.assert_close(lse, scores.logsumexp(dim=-1), atol=tol, rtol=tol)


def test_triton_kernel_is_optional():
    """Without Triton or a GPU the module still imports, and the kernel says what it needs."""
    from labml_nn.transformers.flash_attention.triton_forward import flash_attention_triton, triton_available

    if triton_available():
        pytest.skip("Triton and a GPU are present: the cuda test runs the kernel")
    q = torch.randn(1, 1, 16, 16)
    with pytest.raises(RuntimeError, match="Triton"):
        flash_attention_triton(q, q, q)


# ## The experiment and the benchmark run


def test_experiment_smoke(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "labml_nn.transformers.flash_attention", "--preset", "tiny",
                           "--device", "cpu", "--out", str(tmp_path)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert json.loads(done.stdout) == result
    assert result["errors"] == {}
    for key in ("peak_memory_mib", "time_ms"):
        for method in ("explicit", "flash", "sdpa"):
            values = result[key][method]
            assert len(values) == len(result["seq_lens"]) and all(x is not None and x >= 0 for x in values)
    assert all(x < 1e-5 for x in result["max_difference"].values())
    assert result["causal_blocks"] == brute_force_block_counts(32, 32, 8, 8)
    assert (tmp_path / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "config.json").is_file()


def test_benchmark_smoke():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "flash_attention.py"), "--tiny", "--rounds", "2",
                           "--warmup", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "flash_attention" in done.stdout and "x SDPA" in done.stdout

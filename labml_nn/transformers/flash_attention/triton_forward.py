r"""
---
title: FlashAttention's forward pass as a Triton kernel
summary: The same online-softmax forward pass as the plain-PyTorch FlashAttention, as one GPU kernel in Triton - one program per block of queries, the blocks in on-chip memory, no Python loop.
---

# FlashAttention's forward pass as a Triton kernel

The [plain-PyTorch version](/transformers/flash_attention/index.md) runs the loop over blocks in Python. Here the
same forward pass is one [Triton](https://triton-lang.org) kernel, for NVIDIA (and AMD) GPUs. What changes:

* **One program per block of queries.** The kernel is launched on a grid of
  $\lceil \text{seq}_q / B_q \rceil \times (\text{batch} \cdot \text{heads})$ programs, which the GPU runs in
  parallel, one per streaming multiprocessor at a time; the Python loop over query blocks becomes this grid.
* **The blocks live on the chip.** `tl.load` brings a block of $Q$ into registers and shared memory once, then
  each block of $K$ and $V$ in turn; the scores $S$, the probabilities $\tilde{P}$ and the running $m$, $\ell$,
  $\tilde{O}$ never leave the chip. Only $O$ and the log-sum-exp $L$ are written back to the GPU's main memory.
* **Tensor cores and warps.** `tl.dot` computes $Q_i K_j^\top$ and $\tilde{P}_{ij} V_j$ on the tensor cores;
  Triton splits each block's work across the program's warps (`num_warps`, groups of 32 threads), which the
  CUDA kernels of the papers do by hand.
* **The loop over key blocks is a loop in the kernel**, with no dispatch per block.

The arithmetic is line for line that of
[`FlashAttention.forward`](/transformers/flash_attention/index.md#FlashAttention.forward), with the statistics
in float32 and the products in the input's precision (TF32 for float32 inputs, by Triton's default). Blocks must
be powers of two of at least 16 rows (the sizes `tl.dot` accepts), and the head dimension is padded to one. This
is the forward pass only (no gradients); `flash_attention_triton` is for inference.

Triton is not a dependency of this package: this module imports it only if it is installed, and
`flash_attention_triton` raises a `RuntimeError` without it or without a GPU.
"""

import math

import torch

from labml_nn.transformers.flash_attention import check_inputs

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None


def triton_available() -> bool:
    """Whether the Triton kernel can run here: Triton installed and a CUDA (or ROCm) GPU present."""
    return triton is not None and torch.cuda.is_available()


# ## The kernel
#
# One program computes the output rows `[start_q, start_q + BLOCK_Q)` of one (batch, head) pair. Rows and
# features past the ends of the tensors are loaded as zeros and never stored.
if triton is not None:
    @triton.jit
    def _forward_kernel(q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr,
                        stride_qb, stride_qh, stride_qs, stride_qd,
                        stride_kb, stride_kh, stride_ks, stride_kd,
                        stride_vb, stride_vh, stride_vs, stride_vd,
                        stride_ob, stride_oh, stride_os, stride_od,
                        heads, seq_q, seq_k, d_head, d_v, scale,
                        IS_CAUSAL: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                        BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
        start_q = tl.program_id(0) * BLOCK_Q
        batch_head = tl.program_id(1)
        b = batch_head // heads
        h = batch_head % heads
        rows = start_q + tl.arange(0, BLOCK_Q)
        features = tl.arange(0, BLOCK_D)
        value_features = tl.arange(0, BLOCK_DV)
        keys_in_block = tl.arange(0, BLOCK_K)

        # $Q_i$, `[BLOCK_Q, BLOCK_D]`, loaded once and kept on the chip
        q = tl.load(q_ptr + b * stride_qb + h * stride_qh + rows[:, None] * stride_qs + features[None, :] * stride_qd,
                    mask=(rows[:, None] < seq_q) & (features[None, :] < d_head), other=0.0)
        # $m_i$, $\ell_i$, $\tilde{O}_i$ in float32
        m = tl.full([BLOCK_Q], float("-inf"), dtype=tl.float32)
        ell = tl.zeros([BLOCK_Q], dtype=tl.float32)
        acc = tl.zeros([BLOCK_Q, BLOCK_DV], dtype=tl.float32)

        # Under the bottom-right causal mask the key blocks past the block's last row are skipped.
        offset = seq_k - seq_q
        if IS_CAUSAL:
            key_end = tl.minimum(seq_k, start_q + BLOCK_Q + offset)
        else:
            key_end = seq_k
        for start_k in range(0, key_end, BLOCK_K):
            keys = start_k + keys_in_block
            # $K_j^\top$, `[BLOCK_D, BLOCK_K]`, and $V_j$, `[BLOCK_K, BLOCK_DV]`
            k = tl.load(k_ptr + b * stride_kb + h * stride_kh + keys[None, :] * stride_ks
                        + features[:, None] * stride_kd,
                        mask=(keys[None, :] < seq_k) & (features[:, None] < d_head), other=0.0)
            v = tl.load(v_ptr + b * stride_vb + h * stride_vh + keys[:, None] * stride_vs
                        + value_features[None, :] * stride_vd,
                        mask=(keys[:, None] < seq_k) & (value_features[None, :] < d_v), other=0.0)
            # $S_{ij} = \tau Q_i K_j^\top$, `[BLOCK_Q, BLOCK_K]`, keys past the end and above the diagonal $-\infty$
            scores = tl.dot(q, k) * scale
            visible = keys[None, :] < seq_k
            if IS_CAUSAL:
                visible = visible & (keys[None, :] <= rows[:, None] + offset)
            scores = tl.where(visible, scores, float("-inf"))
            # The online softmax, as in the PyTorch version
            m_new = tl.maximum(m, tl.max(scores, 1))
            p = tl.exp(scores - m_new[:, None])
            rescale = tl.exp(m - m_new)
            ell = rescale * ell + tl.sum(p, 1)
            acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v)
            m = m_new

        # $O_i = \tilde{O}_i / \ell_i$ and $L_i = m_i + \log \ell_i$, the only writes to main memory
        out = acc / ell[:, None]
        tl.store(out_ptr + b * stride_ob + h * stride_oh + rows[:, None] * stride_os
                 + value_features[None, :] * stride_od, out.to(out_ptr.dtype.element_ty),
                 mask=(rows[:, None] < seq_q) & (value_features[None, :] < d_v))
        tl.store(lse_ptr + batch_head * seq_q + rows, m + tl.log(ell), mask=rows < seq_q)


def _block_size(name: str, value: int) -> int:
    if value < 16 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two of at least 16 for the Triton kernel, got {value}")
    return value


# ## Launching it
def flash_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, is_causal: bool = False,
                           block_q: int = 64, block_k: int = 64, scale: float | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The forward pass of [`flash_attention`](/transformers/flash_attention/index.md#flash_attention) as one Triton
    kernel (no gradients). Same arguments; returns the output `[batch, heads, seq_q, d_v]` and the log-sum-exp
    `[batch, heads, seq_q]` (float32).
    """
    if not triton_available():
        raise RuntimeError("the Triton kernel needs Triton (pip install triton) and a CUDA GPU")
    check_inputs(q, k, v, is_causal, block_q, block_k)
    if not q.is_cuda:
        raise ValueError(f"the Triton kernel runs on a CUDA device, got tensors on {q.device}")
    block_q, block_k = _block_size("block_q", block_q), _block_size("block_k", block_k)
    batch, heads, seq_q, d_head = q.shape
    seq_k, d_v = k.shape[2], v.shape[3]
    scale = 1 / math.sqrt(d_head) if scale is None else float(scale)
    # `[batch, heads, seq_q, d_v]` and `[batch, heads, seq_q]`
    out = torch.empty(batch, heads, seq_q, d_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(batch, heads, seq_q, dtype=torch.float32, device=q.device)
    # One program per block of queries and (batch, head) pair
    grid = (triton.cdiv(seq_q, block_q), batch * heads)
    _forward_kernel[grid](q, k, v, out, lse, *q.stride(), *k.stride(), *v.stride(), *out.stride(),
                          heads, seq_q, seq_k, d_head, d_v, scale, IS_CAUSAL=is_causal, BLOCK_Q=block_q,
                          BLOCK_K=block_k, BLOCK_D=max(16, triton.next_power_of_2(d_head)),
                          BLOCK_DV=max(16, triton.next_power_of_2(d_v)))
    return out, lse

r"""
---
title: FlashAttention, written out
summary: Exact attention without the attention matrix, in plain PyTorch - tiles of queries and keys, the online softmax, a backward pass that recomputes each tile from the log-sum-exp in FlashAttention-2's order, and causal tiles skipped.
---

# FlashAttention, written out

The [explicit path](/transformers/mha.md#MultiHeadAttention.attend_explicitly) of multi-head attention computes

$$S = \frac{Q K^\top}{\sqrt{d_k}}, \qquad P = \operatorname{softmax}(S), \qquad O = P V$$

and so it stores $S$ and $P$, two `[batch, heads, seq_q, seq_k]` tensors, and autograd keeps $P$ for the
backward pass. Their memory grows with the square of the sequence length: one head of 8,192 positions in
float32 is 256 MiB per matrix. On a GPU it is also slow: the matrices are written to the GPU's main memory (HBM)
and read back, several times, and the arithmetic per byte moved is so small that attention is limited by
memory bandwidth, not by the compute units.

[FlashAttention](https://arxiv.org/abs/2205.14135) (Dao et al., 2022) computes exactly the same $O$ without
ever storing $S$ or $P$. It splits $Q$ into blocks of rows and $K$, $V$ into blocks of rows, and walks over the
blocks of keys with a running maximum and a running sum, the **online softmax**, so each block of scores lives
only while it is used. In the backward pass it **recomputes** each block of $P$ from $Q$, $K$ and one number per
query, the log-sum-exp of its scores, instead of storing $P$.
[FlashAttention-2](https://arxiv.org/abs/2307.08691) (Dao, 2023) reorders the loops and moves work out of the
inner loop; this page follows it.

This is the algorithm in plain PyTorch: a Python loop over the blocks, vectorised inside each block and over
the batch and the heads. It runs on any device and reads like the papers' pseudo-code, but it is *slower* than
PyTorch's fused kernel (see the [benchmark](#what-a-gpu-kernel-adds)), because the point of FlashAttention is
where the blocks live on a GPU, which Python cannot express. What it does show for real is the memory: the
[experiment](/transformers/experiments/flash_attention.md) measures the peak memory of a forward and backward
pass, quadratic in the sequence length for the explicit path and linear for this one and for
`F.scaled_dot_product_attention`.

## The online softmax

Take one query row. Its scores against all keys are $s_1, \dots, s_N$, and the output is

$$o = \frac{\sum_j e^{s_j - m} v_j}{\sum_j e^{s_j - m}}, \qquad m = \max_j s_j$$

Subtracting the maximum $m$ changes nothing mathematically (it cancels between the numerator and the
denominator) and keeps every exponent $\le 0$, so nothing overflows. The trouble is that $m$ is a maximum over
*all* keys: it seems we have to see every score before we can exponentiate any of them.

Now let the keys arrive in blocks. After the blocks seen so far, keep three things for the row: the running
maximum $m$, the running sum $\ell = \sum_{j \text{ seen}} e^{s_j - m}$ and the unnormalised output
$\tilde{o} = \sum_{j \text{ seen}} e^{s_j - m} v_j$. When a block $B$ with scores $s_B$ arrives:

$$
\begin{aligned}
m' &= \max\big(m, \max_{j \in B} s_j\big) \\
\ell' &= e^{m - m'}\,\ell + \sum_{j \in B} e^{s_j - m'} \\
\tilde{o}' &= e^{m - m'}\,\tilde{o} + \sum_{j \in B} e^{s_j - m'} v_j
\end{aligned}
$$

The factor $e^{m - m'}$ moves the old terms from the old maximum to the new one:
$e^{m - m'}\, e^{s_j - m} = e^{s_j - m'}$. So after each block, $\ell$ and $\tilde{o}$ are *exactly* the sum and
the weighted sum over the keys seen so far, taken relative to the maximum over the keys seen so far; after the
last block that maximum is $m$ over all keys, and

$$o = \tilde{o} / \ell$$

is the softmax-weighted average, the same number the explicit path computes, up to rounding. Nothing is
approximated: the rescaling is an identity. (FlashAttention-2's changes here: divide by $\ell$ once at the end,
not after every block, and keep for the backward pass only $L$ below, not both $m$ and $\ell$.)

The forward pass keeps one more number per row for the backward pass, the log-sum-exp of its scores,

$$L = m + \log \ell = \log \sum_j e^{s_j}$$

from which any block of the softmax comes back in one step: $P_{ij} = e^{S_{ij} - L_i}$.

## The backward pass

With $\mathrm{d}X$ the gradient of the loss with respect to $X$, and $O = PV$, $P = \operatorname{softmax}(S)$ by
rows, $S = \tau Q K^\top$ with $\tau$ the scale:

$$
\begin{aligned}
\mathrm{d}V &= P^\top \mathrm{d}O, \qquad \mathrm{d}P = \mathrm{d}O\, V^\top \\
\mathrm{d}S_{ij} &= P_{ij} \big(\mathrm{d}P_{ij} - D_i\big), \qquad
D_i = \sum_l P_{il}\, \mathrm{d}P_{il} = \sum_l P_{il}\, \mathrm{d}o_i \cdot v_l = \mathrm{d}o_i \cdot o_i \\
\mathrm{d}Q &= \tau\, \mathrm{d}S\, K, \qquad \mathrm{d}K = \tau\, \mathrm{d}S^\top Q
\end{aligned}
$$

The softmax's Jacobian needs the row sum $D_i$ of $P \circ \mathrm{d}P$, which would need the whole row of
$P$; but it equals $\mathrm{d}o_i \cdot o_i$, one dot product of two vectors we already have. With $D$ and $L$
computed up front, every block of $\mathrm{d}S$ needs only its own blocks of $Q$, $K$, $V$, $\mathrm{d}O$: the
backward pass recomputes $S$ and $P$ block by block, and stores them nowhere.

FlashAttention-2's order: the **outer loop runs over blocks of keys**, the inner over blocks of queries. Then
$\mathrm{d}K_j$ and $\mathrm{d}V_j$ of a key block are sums over query blocks, accumulated in place while the
key block is held; only $\mathrm{d}Q$ is added to from different outer iterations (on a GPU, where each
key block is one thread block, with atomic adds).

The forward pass stores $Q$, $K$, $V$, $O$ and $L$: memory linear in the sequence length. Recomputing $S$ costs
one more $QK^\top$ in the backward pass, and is still faster on a GPU, because arithmetic is cheap and reading
memory is not.

## Causal masking

With `is_causal=True` query $i$ may attend key $j$ when $j \le i + (\text{seq}_k - \text{seq}_q)$: the
lower-triangular mask aligned to the **bottom-right** corner of the score matrix, which is
[`MultiHeadAttention.causal_mask`](/transformers/mha.md#MultiHeadAttention.causal_mask), FlashAttention-2's
convention (since its version 2.1), and SDPA's `torch.nn.attention.bias.causal_lower_right`. The new queries of
a model that generates with a [key/value cache](/transformers/mha.md#KVCache) are the last positions, so they
see every cached key. When $\text{seq}_q = \text{seq}_k$ it is the usual causal mask, the same as
`F.scaled_dot_product_attention(is_causal=True)`. (That flag aligns to the *top-left* corner, which differs
only when $\text{seq}_q \neq \text{seq}_k$.) With $\text{seq}_q > \text{seq}_k$ the first queries would see no
key at all, so it is an error.

The mask is never built for the whole matrix. A block entirely above the diagonal is **skipped**: its scores
are not computed at all. A block entirely below needs no mask, and only the blocks the diagonal crosses are
masked, by a `[block_q, block_k]` mask. For a square matrix that skips almost half of the work;
[`causal_block_counts`](#causal_block_counts) counts the blocks of each kind.

## What a GPU kernel adds

The algorithm above is the whole of FlashAttention's arithmetic, but its speed comes from where each block
lives. A GPU kernel (the [Triton tutorial](https://triton-lang.org/main/getting-started/tutorials/06-fused-attention.html),
the CUDA kernels of the papers, or `F.scaled_dot_product_attention`'s flash backend) runs each query block on
one thread block (FlashAttention-2 parallelises over query blocks, batch and heads), holds the block of $Q$, the
running $m$, $\ell$, $\tilde{o}$ and the current blocks of $K$ and $V$ in on-chip SRAM (shared memory and
registers: a few hundred KiB per streaming multiprocessor, 228 KiB on an H100, against its 80 GB of HBM),
computes $QK^\top$ and $PV$ on tensor cores split
across warps, and writes only $O$ and $L$ back to HBM. HBM is read once per block of keys instead of once per
score. There is no Python loop and no dispatch per block: the loop over key blocks is a loop in the kernel.
[The forward pass as a Triton kernel](/transformers/flash_attention/triton_forward.md) shows these changes on the
same arithmetic, for readers with a GPU.

Here every block is a handful of PyTorch calls, each dispatched from Python, each reading and writing its
operands in main memory. The benchmark `benchmarks/flash_attention.py` measures the price on a CPU against
PyTorch's fused CPU kernel.
"""

import math

import torch
from torch.autograd.function import FunctionCtx, once_differentiable


# ## Checking the inputs
#
# Shapes that do not fit would otherwise fail deep inside a block, or broadcast silently.
def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool, block_q: int,
                 block_k: int) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 4:
            raise ValueError(f"{name} must be [batch, heads, seq, d_head], got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} must share batch and heads, "
                         f"and k and v their sequence length")
    if k.shape[2] == 0:
        raise ValueError("k and v must have at least one position: a query needs a key to attend to")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head dimension, got {q.shape[-1]} and {k.shape[-1]}")
    if q.dtype != k.dtype or k.dtype != v.dtype or q.device != k.device or k.device != v.device:
        raise ValueError(f"q, k and v must share dtype and device, got {q.dtype, k.dtype, v.dtype} "
                         f"on {q.device, k.device, v.device}")
    if block_q < 1 or block_k < 1:
        raise ValueError(f"block sizes must be positive, got block_q={block_q}, block_k={block_k}")
    if is_causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"is_causal needs seq_q <= seq_k (the mask is aligned to the bottom-right corner, so with "
                         f"seq_q={q.shape[2]} > seq_k={k.shape[2]} the first queries would see no key)")


# ## Causal blocks
#
# Query $i$ sees key $j$ when $j \le i + \text{offset}$, with $\text{offset} = \text{seq}_k - \text{seq}_q \ge 0$.
# For the query block $[q_0, q_1)$ the keys from `causal_key_end` on are hidden from all its rows (even the last,
# $q_1 - 1$), so the loop over key blocks stops there.
def causal_key_end(q1: int, seq_q: int, seq_k: int) -> int:
    return min(seq_k, q1 + seq_k - seq_q)


# A key block $[k_0, k_1)$ needs a mask inside the query block $[q_0, q_1)$ when its last key is hidden from the
# block's first query, $k_1 - 1 > q_0 + \text{offset}$; otherwise every query of the block sees every key.
def needs_mask(q0: int, k1: int, seq_q: int, seq_k: int) -> bool:
    return k1 - 1 > q0 + seq_k - seq_q


# The `[q1 - q0, k1 - k0]` mask of a block the diagonal crosses, `True` = may attend.
def block_mask(q0: int, q1: int, k0: int, k1: int, seq_q: int, seq_k: int, device: torch.device) -> torch.Tensor:
    rows = torch.arange(q0, q1, device=device)[:, None] + (seq_k - seq_q)
    return torch.arange(k0, k1, device=device)[None, :] <= rows


# The backward pass loops over key blocks first. The first query that sees key $k_0$ is $k_0 - \text{offset}$;
# this is the start of the query block that holds it (earlier query blocks are entirely above the diagonal).
def causal_query_start(k0: int, block_q: int, seq_q: int, seq_k: int) -> int:
    return max(0, k0 - (seq_k - seq_q)) // block_q * block_q


# ### Counting the blocks
#
# The blocks of the `[seq_q, seq_k]` score matrix that the causal forward pass computes without a mask (`full`),
# with a mask (`masked`), and skips (`skipped`), walking them exactly as
# [`FlashAttention.forward`](#FlashAttention.forward) does. For a square matrix of $n$ blocks a side, $n$ blocks
# on the diagonal are masked, $n(n - 1)/2$ below it are full and $n(n - 1)/2$ above are skipped: with
# $n = 128$ (8,192 positions in blocks of 64), 8,128 of the 16,384 blocks are never computed.
def causal_block_counts(seq_q: int, seq_k: int, block_q: int, block_k: int) -> dict[str, int]:
    """Number of full, masked and skipped `[block_q, block_k]` blocks of causal attention."""
    if block_q < 1 or block_k < 1 or seq_q > seq_k:
        raise ValueError(f"need positive block sizes and seq_q <= seq_k, got block_q={block_q}, "
                         f"block_k={block_k}, seq_q={seq_q}, seq_k={seq_k}")
    counts = {"full": 0, "masked": 0, "skipped": 0}
    key_blocks = math.ceil(seq_k / block_k)
    for q0 in range(0, seq_q, block_q):
        q1 = min(q0 + block_q, seq_q)
        visited = 0
        for k0 in range(0, causal_key_end(q1, seq_q, seq_k), block_k):
            k1 = min(k0 + block_k, seq_k)
            counts["masked" if needs_mask(q0, k1, seq_q, seq_k) else "full"] += 1
            visited += 1
        counts["skipped"] += key_blocks - visited
    return counts


# ## The autograd function
class FlashAttention(torch.autograd.Function):
    r"""
    Exact attention $\operatorname{softmax}(\tau Q K^\top) V$ computed block by block. The forward pass saves
    $Q, K, V, O$ and the log-sum-exp $L$, nothing of size `[seq_q, seq_k]`; the backward pass recomputes each
    block of scores from them.
    """

    # ### Forward: the online softmax
    #
    # FlashAttention-2's order: the outer loop over blocks of queries (on a GPU, the parallel dimension),
    # the inner over blocks of keys.
    #
    # | FlashAttention-2, algorithm 1 | here |
    # |---|---|
    # | for each query block $Q_i$: $m_i = -\infty$, $\ell_i = 0$, $\tilde{O}_i = 0$ | before the inner loop |
    # | for each key block $K_j, V_j$: $S_{ij} = \tau Q_i K_j^\top$ | `scores` |
    # | $m_i' = \max(m_i, \operatorname{rowmax} S_{ij})$, $\tilde{P}_{ij} = e^{S_{ij} - m_i'}$ | `m_new`, `p` |
    # | $\ell_i' = e^{m_i - m_i'} \ell_i + \operatorname{rowsum} \tilde{P}_{ij}$ | `ell` |
    # | $\tilde{O}_i' = e^{m_i - m_i'} \tilde{O}_i + \tilde{P}_{ij} V_j$ | `acc` |
    # | $O_i = \tilde{O}_i / \ell_i$, $L_i = m_i + \log \ell_i$ | after the inner loop |
    @staticmethod
    def forward(ctx: FunctionCtx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool,
                block_q: int, block_k: int, scale: float) -> torch.Tensor:
        batch, heads, seq_q, _ = q.shape
        seq_k, d_v = k.shape[2], v.shape[3]
        # Low-precision inputs keep their running statistics in float32, as the GPU kernels do.
        acc_dtype = torch.promote_types(q.dtype, torch.float32)
        # `[batch, heads, seq_q, d_v]` and `[batch, heads, seq_q]`
        out = torch.empty(batch, heads, seq_q, d_v, dtype=q.dtype, device=q.device)
        lse = torch.empty(batch, heads, seq_q, dtype=acc_dtype, device=q.device)

        for q0 in range(0, seq_q, block_q):
            q1 = min(q0 + block_q, seq_q)
            # $\tau Q_i$, `[batch, heads, q1 - q0, d_head]`: scaling the queries once is cheaper than every score
            q_block = q[:, :, q0:q1].to(acc_dtype) * scale
            # $m_i$, $\ell_i$ `[batch, heads, q1 - q0]` and $\tilde{O}_i$ `[batch, heads, q1 - q0, d_v]`
            m = torch.full((batch, heads, q1 - q0), float("-inf"), dtype=acc_dtype, device=q.device)
            ell = torch.zeros(batch, heads, q1 - q0, dtype=acc_dtype, device=q.device)
            acc = torch.zeros(batch, heads, q1 - q0, d_v, dtype=acc_dtype, device=q.device)

            # Under the causal mask the key blocks from `causal_key_end` on are skipped.
            key_end = causal_key_end(q1, seq_q, seq_k) if is_causal else seq_k
            for k0 in range(0, key_end, block_k):
                k1 = min(k0 + block_k, seq_k)
                # $S_{ij} = \tau Q_i K_j^\top$, `[batch, heads, q1 - q0, k1 - k0]`
                scores = q_block @ k[:, :, k0:k1].to(acc_dtype).transpose(-2, -1)
                # Masked scores are $-\infty$, so their $e^{s - m'}$ is exactly zero. Key 0 is in the first block
                # and every query sees it, so $m'$ is finite from the first block on and nothing becomes `NaN`.
                if is_causal and needs_mask(q0, k1, seq_q, seq_k):
                    scores = scores.masked_fill(~block_mask(q0, q1, k0, k1, seq_q, seq_k, q.device), float("-inf"))
                # $m_i' = \max(m_i, \operatorname{rowmax} S_{ij})$
                m_new = torch.maximum(m, scores.amax(dim=-1))
                # $\tilde{P}_{ij} = e^{S_{ij} - m_i'}$
                p = torch.exp(scores - m_new[..., None])
                # $e^{m_i - m_i'}$, which moves the old sums to the new maximum (zero on the first block)
                rescale = torch.exp(m - m_new)
                # $\ell_i' = e^{m_i - m_i'} \ell_i + \operatorname{rowsum} \tilde{P}_{ij}$
                ell = rescale * ell + p.sum(dim=-1)
                # $\tilde{O}_i' = e^{m_i - m_i'} \tilde{O}_i + \tilde{P}_{ij} V_j$, `[batch, heads, q1 - q0, d_v]`
                acc = rescale[..., None] * acc + p @ v[:, :, k0:k1].to(acc_dtype)
                m = m_new

            # $O_i = \tilde{O}_i / \ell_i$, divided once, at the end
            out[:, :, q0:q1] = acc / ell[..., None]
            # $L_i = m_i + \log \ell_i$
            lse[:, :, q0:q1] = m + torch.log(ell)

        # Linear in the sequence length: no block of scores survives the loop.
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.is_causal, ctx.block_q, ctx.block_k, ctx.scale = is_causal, block_q, block_k, scale
        return out

    # ### Backward: recomputing the blocks
    #
    # FlashAttention-2's algorithm 2: the outer loop over key blocks, which accumulate their $\mathrm{d}K_j$ and
    # $\mathrm{d}V_j$ over the inner loop over query blocks; $\mathrm{d}Q_i$ is added to from every key block.
    #
    # | FlashAttention-2, algorithm 2 | here |
    # |---|---|
    # | $D = \operatorname{rowsum}(\mathrm{d}O \circ O)$ | `delta`, before the loops |
    # | for each key block $K_j, V_j$: $\mathrm{d}K_j = 0$, $\mathrm{d}V_j = 0$ | `dk_block`, `dv_block` |
    # | for each query block: $S_{ij} = \tau Q_i K_j^\top$, $P_{ij} = e^{S_{ij} - L_i}$ | `scores`, `p` |
    # | $\mathrm{d}V_j \mathrel{+}= P_{ij}^\top \mathrm{d}O_i$ | `dv_block` |
    # | $\mathrm{d}P_{ij} = \mathrm{d}O_i V_j^\top$ | `dp` |
    # | $\mathrm{d}S_{ij} = P_{ij} \circ (\mathrm{d}P_{ij} - D_i)$ | `ds` |
    # | $\mathrm{d}Q_i \mathrel{+}= \tau\, \mathrm{d}S_{ij} K_j$ | `dq` |
    # | $\mathrm{d}K_j \mathrel{+}= \tau\, \mathrm{d}S_{ij}^\top Q_i$ | `dk_block` |
    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        is_causal, block_q, block_k, scale = ctx.is_causal, ctx.block_q, ctx.block_k, ctx.scale
        seq_q, seq_k = q.shape[2], k.shape[2]
        acc_dtype = lse.dtype
        # $D_i = \mathrm{d}o_i \cdot o_i$, `[batch, heads, seq_q]`
        delta = (grad_out.to(acc_dtype) * out.to(acc_dtype)).sum(dim=-1)
        # `[batch, heads, seq_q, d_head]`, added to by every key block
        dq = torch.zeros_like(q, dtype=acc_dtype)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)

        for k0 in range(0, seq_k, block_k):
            k1 = min(k0 + block_k, seq_k)
            # `[batch, heads, k1 - k0, d_head]` and `[batch, heads, k1 - k0, d_v]`
            k_block = k[:, :, k0:k1].to(acc_dtype)
            v_block = v[:, :, k0:k1].to(acc_dtype)
            dk_block = torch.zeros_like(k_block)
            dv_block = torch.zeros_like(v_block)

            # Under the causal mask the query blocks before `causal_query_start` do not see this key block.
            query_start = causal_query_start(k0, block_q, seq_q, seq_k) if is_causal else 0
            for q0 in range(query_start, seq_q, block_q):
                q1 = min(q0 + block_q, seq_q)
                # `[batch, heads, q1 - q0, d_head]`, `[batch, heads, q1 - q0, d_v]`
                q_block = q[:, :, q0:q1].to(acc_dtype)
                grad_out_block = grad_out[:, :, q0:q1].to(acc_dtype)
                # $S_{ij} = \tau Q_i K_j^\top$, recomputed, `[batch, heads, q1 - q0, k1 - k0]`
                scores = (q_block @ k_block.transpose(-2, -1)) * scale
                if is_causal and needs_mask(q0, k1, seq_q, seq_k):
                    scores = scores.masked_fill(~block_mask(q0, q1, k0, k1, seq_q, seq_k, q.device), float("-inf"))
                # $P_{ij} = e^{S_{ij} - L_i}$: the softmax itself, already normalised, from one number per row
                p = torch.exp(scores - lse[:, :, q0:q1, None])
                # $\mathrm{d}V_j \mathrel{+}= P_{ij}^\top \mathrm{d}O_i$, `[batch, heads, k1 - k0, d_v]`
                dv_block += p.transpose(-2, -1) @ grad_out_block
                # $\mathrm{d}P_{ij} = \mathrm{d}O_i V_j^\top$, `[batch, heads, q1 - q0, k1 - k0]`
                dp = grad_out_block @ v_block.transpose(-2, -1)
                # $\mathrm{d}S_{ij} = P_{ij} \circ (\mathrm{d}P_{ij} - D_i)$
                ds = p * (dp - delta[:, :, q0:q1, None])
                # $\mathrm{d}Q_i \mathrel{+}= \tau\, \mathrm{d}S_{ij} K_j$, `[batch, heads, q1 - q0, d_head]`
                dq[:, :, q0:q1] += (ds @ k_block) * scale
                # $\mathrm{d}K_j \mathrel{+}= \tau\, \mathrm{d}S_{ij}^\top Q_i$, `[batch, heads, k1 - k0, d_head]`
                dk_block += (ds.transpose(-2, -1) @ q_block) * scale

            dk[:, :, k0:k1] = dk_block
            dv[:, :, k0:k1] = dv_block

        # One gradient per input of `forward`; the flags and sizes get none.
        return dq.to(q.dtype), dk, dv, None, None, None, None


# ## The function
def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, is_causal: bool = False,
                    block_q: int = 64, block_k: int = 64, scale: float | None = None) -> torch.Tensor:
    r"""
    $\operatorname{softmax}(\tau Q K^\top) V$ by FlashAttention's tiled algorithm, differentiable.

    Arguments:
        q: queries `[batch, heads, seq_q, d_head]`.
        k: keys `[batch, heads, seq_k, d_head]`.
        v: values `[batch, heads, seq_k, d_v]`.
        is_causal: query $i$ attends keys $j \le i + \text{seq}_k - \text{seq}_q$ (bottom-right aligned; for
            $\text{seq}_q = \text{seq}_k$ the same as SDPA's `is_causal`); needs $\text{seq}_q \le \text{seq}_k$.
        block_q, block_k: rows of the query blocks and of the key/value blocks.
        scale: $\tau$, by default $1 / \sqrt{d_{head}}$.

    Returns:
        `[batch, heads, seq_q, d_v]`, the same as
        `F.scaled_dot_product_attention(q, k, v, scale=scale)` (with the causal mask as above).
    """
    check_inputs(q, k, v, is_causal, block_q, block_k)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return FlashAttention.apply(q, k, v, is_causal, block_q, block_k, scale)

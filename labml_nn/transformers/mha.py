r"""
---
title: Multi-Head Attention (MHA)
summary: Multi-head attention from "Attention Is All You Need", with grouped-query attention, a key/value cache, and PyTorch's fused scaled-dot-product kernels.
---

# Multi-Head Attention (MHA)

This is the attention of
[Attention Is All You Need](https://arxiv.org/abs/1706.03762) (Vaswani et al., 2017).
Each query vector $q$ asks a question; each key vector $k$ says what its position offers; the answer
is a weighted average of the value vectors $v$, weighted by how well the query matches each key:

$$\operatorname{Attention}(Q, K, V) = \operatorname*{softmax}_{seq}\Bigg(\frac{Q K^\top}{\sqrt{d_k}}\Bigg)V$$

The dot products grow with the dimension $d_k$: for entries with unit variance, $q \cdot k$ has variance
$d_k$. Dividing by $\sqrt{d_k}$ brings the scores back to unit variance, so that the softmax does not
saturate into a one-hot vector whose gradients vanish.

**Multi-head** attention runs $h$ such attentions side by side, each on its own learned projection of
the inputs into a $d_k = d_{model} / h$ dimensional space, and concatenates the results:

$$
\begin{aligned}
\operatorname{MultiHead}(Q, K, V) &= \operatorname{Concat}(\text{head}_1, \dots, \text{head}_h)\, W^O \\
\text{head}_i &= \operatorname{Attention}(Q W^Q_i, K W^K_i, V W^V_i)
\end{aligned}
$$

Different heads can attend to different things (the previous token, the subject of the sentence, ...)
for about the cost of one full-width attention.

![One head's attention weights over 24 positions whose queries and keys are sinusoidal position encodings: without a mask each query attends most to nearby keys on both sides; with is_causal=True only to keys at or before it](/figures/attention.png)

**Grouped-query attention** ([Ainslie et al., 2023](https://arxiv.org/abs/2305.13245)) lets groups of
query heads share key and value heads: with $h$ query heads and $h_{kv}$ key/value heads, query head $i$
reads key/value head $\lfloor i / (h / h_{kv}) \rfloor$. It shrinks the key/value cache of a generating
model by $h / h_{kv}$ with little loss in quality; Llama 3 uses it.

## Two paths, one answer

The layout inside attention is `[batch, heads, seq, d_head]`. There are two ways to compute the same thing:

* the **explicit path**, $\text{softmax}(QK^\top / \sqrt{d_k})V$ written out with matrix products, which
  materialises the `[batch, heads, seq_q, seq_k]` attention matrix. It is the path this page explains,
  and the one used when you ask for the attention weights;
* the **fast path**, PyTorch's
  [`scaled_dot_product_attention`](https://pytorch.org/docs/stable/generated/torch.nn.functional.scaled_dot_product_attention.html),
  which dispatches to fused kernels (FlashAttention, memory-efficient attention) that never store the
  attention matrix. It is the default.

The tests check that the two agree, and that both agree with `torch.nn.MultiheadAttention`.

Masks are boolean with `True` meaning "may attend" (see [masks](/transformers/utils.md)), broadcastable to
`[batch, heads, seq_q, seq_k]`. A query that may attend to nothing gets a zero attention output (before the
output projection $W^O$), so the layer returns the output projection's bias for it (zero with `bias=False`).

The experiment (`python -m labml_nn.transformers.mha`) trains a small autoregressive transformer on
Tiny Shakespeare and draws one head's attention over a sample.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


# ## Key/value cache
#
# A model that generates one token at a time would recompute the keys and values of the whole prefix
# at every step. They do not change (a causal model's position $j$ never sees later tokens), so we keep
# them. The cache is preallocated for `max_len` positions and filled in place; the caller owns it and
# passes it to every forward call, so the module itself stays stateless.
class KVCache:
    """Keys and values of past positions for one attention layer, `[batch, kv_heads, max_len, d_head]`."""

    def __init__(self, batch_size: int, kv_heads: int, max_len: int, d_head: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        self.key = torch.zeros(batch_size, kv_heads, max_len, d_head, dtype=dtype, device=device)
        self.value = torch.zeros_like(self.key)
        # Number of positions filled so far; the next keys go to position `length`.
        self.length = 0

    # Write the new keys and values after the filled positions and return everything filled so far.
    # `key` and `value` are `[batch, kv_heads, seq_new, d_head]`.
    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.length, self.length + key.shape[2]
        if end > self.key.shape[2]:
            raise ValueError(f"KVCache is full: {end} positions asked for, room for {self.key.shape[2]}")
        if key.shape[0] != self.key.shape[0]:
            raise ValueError(f"KVCache was made for batch size {self.key.shape[0]}, got {key.shape[0]}")
        self.key[:, :, start:end] = key
        self.value[:, :, start:end] = value
        self.length = end
        # `[batch, kv_heads, length, d_head]`
        return self.key[:, :, :end], self.value[:, :, :end]


# ## Multi-head attention
#
# The module holds the four projections. Its pieces come first, then [`forward`](#MultiHeadAttention.forward),
# which projects the inputs and splits them into heads, adds positions (a hook for subclasses), appends to the
# cache, checks the mask, attends by one of the two paths and concatenates the heads again.
class MultiHeadAttention(nn.Module):
    r"""
    Multi-head attention with optional grouped-query attention.

    Arguments:
        heads: number of query heads $h$.
        d_model: width of the input and output vectors.
        dropout_prob: dropout on the attention weights (training only).
        bias: whether the four projections (`query`, `key`, `value`, `output`) have biases.
        kv_heads: number of key/value heads $h_{kv}$; `None` means `heads` (plain multi-head attention).
        d_head: width $d_k$ of each head; `None` means `d_model // heads`. Models such as
            [T5](/transformers/t5/index.md) choose it apart from the width, so that `heads * d_head` may differ
            from `d_model`.
        scale: the factor on the scores; `None` means $1/\sqrt{d_k}$. T5 uses `1.0` (no scaling, see its page).

    The projections are `nn.Linear` layers whose weights are laid out head-major, `[heads * d_head, d_model]`:
    rows `i * d_head ... (i + 1) * d_head` are head `i`'s $W^Q_i$ (resp. $W^K$, $W^V$).
    """

    def __init__(self, heads: int, d_model: int, dropout_prob: float = 0.0, bias: bool = True,
                 kv_heads: int | None = None, *, d_head: int | None = None, scale: float | None = None):
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        if heads < 1 or kv_heads < 1:
            raise ValueError(f"heads and kv_heads must be positive, got heads={heads}, kv_heads={kv_heads}")
        if d_head is None and d_model % heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        if heads % kv_heads != 0:
            raise ValueError(f"heads ({heads}) must be divisible by kv_heads ({kv_heads})")
        if not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"dropout_prob must be in [0, 1), got {dropout_prob}")
        if d_head is not None and d_head < 1:
            raise ValueError(f"d_head must be positive, got {d_head}")

        self.heads = heads
        self.kv_heads = kv_heads
        # $d_k$, the width of each head
        self.d_head = d_model // heads if d_head is None else d_head
        self.d_model = d_model
        self.dropout_prob = dropout_prob

        # The projections $W^Q$, $W^K$, $W^V$ for all heads at once, and the output projection $W^O$.
        # Keys and values have only `kv_heads` heads.
        self.query = nn.Linear(d_model, heads * self.d_head, bias=bias)
        self.key = nn.Linear(d_model, kv_heads * self.d_head, bias=bias)
        self.value = nn.Linear(d_model, kv_heads * self.d_head, bias=bias)
        self.output = nn.Linear(heads * self.d_head, d_model, bias=bias)

        # Dropout on the attention weights of the explicit path; the fast path passes `dropout_prob` to the kernel.
        self.dropout = nn.Dropout(dropout_prob)
        # $\frac{1}{\sqrt{d_k}}$ unless the model chose another factor
        self.scale = 1 / math.sqrt(self.d_head) if scale is None else scale
        # Whether self-attention projects queries, keys and values in one product (below). Tensor parallelism
        # with DTensor turns it off: its sharded weights must go through the projections' own `forward`.
        self.fuse_projections = True

    # ### Splitting into heads
    #
    # A projection gives `[batch, seq, heads * d_head]`; attention works per head, so we view the last
    # dimension as `[heads, d_head]` and move heads before the sequence.
    def split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        batch, seq, _ = x.shape
        # `[batch, seq, heads * d_head]` to `[batch, seq, heads, d_head]` to `[batch, heads, seq, d_head]`
        return x.view(batch, seq, heads, self.d_head).transpose(1, 2)

    # ### Projecting queries, keys and values
    #
    # For self-attention (`query`, `key` and `value` are the same tensor) the three projections are one
    # matrix product with the weights stacked, $x\,[W^Q; W^K; W^V]^\top$: one large product keeps the
    # processor busier than three small ones, and reads $x$ once. Stacking copies the weights, which pays off
    # when many positions share the product; a decoding step has one position per sequence, and there the copy
    # would cost as much as the product, so the three projections run separately.
    def project(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.fuse_projections and query is key and key is value and query.shape[1] > 1:
            weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
            bias = None
            if self.query.bias is not None:
                bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
            q_width, kv_width = self.query.out_features, self.key.out_features
            # `[batch, seq, (heads + 2 * kv_heads) * d_head]` split into the three projections
            q, k, v = F.linear(query, weight, bias).split([q_width, kv_width, kv_width], dim=-1)
        else:
            q, k, v = self.query(query), self.key(key), self.value(value)
        # `[batch, heads, seq_q, d_head]` and `[batch, kv_heads, seq_k, d_head]`
        return self.split_heads(q, self.heads), self.split_heads(k, self.kv_heads), self.split_heads(v, self.kv_heads)

    # ### Keys and values projected once
    #
    # In an encoder-decoder, the cross-attention's keys and values are projections of the encoder's output, which
    # does not change while the decoder writes. A decoder that generates one token at a time projects them once
    # with this method and passes them to every step as `kv=`.
    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`memory` `[batch, seq_k, d_model]` to keys and values `[batch, kv_heads, seq_k, d_head]`."""
        return self.split_heads(self.key(memory), self.kv_heads), self.split_heads(self.value(memory), self.kv_heads)

    # ### Positions
    #
    # A hook for attention variants that put position information into the queries and keys, such as
    # [rotary embeddings](/transformers/rope/index.md). `offset` is the position of the first of these queries and keys
    # (non-zero when earlier positions are in a cache). Plain attention knows nothing of positions:
    # they were added to the embeddings before the first layer.
    def encode_positions(self, q: torch.Tensor, k: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    # ### Scores
    #
    # $$S = Q K^\top$$
    #
    # The unscaled score of query $i$ against key $j$ in each head, `[batch, heads, seq_q, seq_k]`.
    def get_scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        # `[batch, heads, seq_q, d_head] @ [batch, heads, d_head, seq_k]` to `[batch, heads, seq_q, seq_k]`
        return query @ key.transpose(-2, -1)

    # ### Checking the mask
    #
    # A mask that does not broadcast against `[batch, heads, seq_q, seq_k]` would otherwise fail deep inside
    # a kernel, or worse, broadcast along the wrong dimension. We check it up front.
    def check_mask(self, mask: torch.Tensor, batch: int, seq_q: int, seq_k: int) -> None:
        target = (batch, self.heads, seq_q, seq_k)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}")
        if mask.dim() > 4 or any(m not in (1, t) for m, t in zip(mask.shape[::-1], target[::-1])):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to "
                             f"[batch, heads, seq_q, seq_k] = {list(target)}")

    # ### The causal mask when keys come from a cache
    #
    # With `seq_cached` earlier positions in the cache, query $i$ of this call sits at position
    # $\text{seq\_cached} + i$ and may attend keys $j \le \text{seq\_cached} + i$: the lower-triangular mask
    # aligned to the bottom-right corner of the `[seq_q, seq_k]` score matrix.
    @staticmethod
    def causal_mask(seq_q: int, seq_k: int, device: torch.device) -> torch.Tensor:
        # `[seq_q, seq_k]`
        return torch.ones(seq_q, seq_k, dtype=torch.bool, device=device).tril(diagonal=seq_k - seq_q)

    # ### The forward pass
    #
    # In order: project into heads, encode positions (nothing here; rotations in subclasses), append to the
    # cache, build the mask, attend (the fused kernel, or the explicit path when the weights are wanted), and
    # concatenate the heads and apply $W^O$.
    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None, need_weights: bool = False, *,
                is_causal: bool = False, cache: KVCache | None = None, attn_bias: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None):
        """
        Arguments:
            query: `[batch, seq_q, d_model]`.
            key, value: `[batch, seq_k, d_model]` (the same tensor as `query` for self-attention).
            mask: boolean, `True` = may attend, broadcastable to `[batch, heads, seq_q, seq_k]`.
            need_weights: also return the attention weights `[batch, heads, seq_q, seq_k]` (explicit path).
            is_causal: apply the causal mask (combined with `mask` if both are given); lets the fast path use
                its causal kernels without building a mask.
            cache: a [`KVCache`](/transformers/mha.md#KVCache) holding earlier keys and values; the new ones are appended to it.
            attn_bias: a float tensor added to the scaled scores, broadcastable to `[batch, heads, seq_q, seq_k]`
                (T5's relative position bias); masked keys stay masked.
            kv: keys and values already projected, `[batch, kv_heads, seq_k, d_head]` each (from
                [`project_kv`](#MultiHeadAttention.project_kv)); `key` and `value` must then be `None`.

        Returns:
            `[batch, seq_q, d_model]`, or `(output, attention)` when `need_weights` is set.
        """
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must be [batch, seq, d_model={self.d_model}], got {tuple(query.shape)}")
        if kv is not None:
            if key is not None or value is not None:
                raise ValueError("give either key and value, or kv (keys and values already projected), not both")
        elif key.shape != value.shape or key.shape[0] != query.shape[0] or key.shape[-1] != self.d_model:
            raise ValueError(f"key and value must both be [batch={query.shape[0]}, seq_k, d_model={self.d_model}], "
                             f"got {tuple(key.shape)} and {tuple(value.shape)}")
        batch, seq_q, _ = query.shape

        # `q` is `[batch, heads, seq_q, d_head]`; `k`, `v` are `[batch, kv_heads, seq_k, d_head]`
        if kv is None:
            q, k, v = self.project(query, key, value)
        else:
            q, (k, v) = self.split_heads(self.query(query), self.heads), kv
        offset = cache.length if cache is not None else 0
        q, k = self.encode_positions(q, k, offset)
        if cache is not None:
            # `[batch, kv_heads, seq_cached + seq_k, d_head]`
            k, v = cache.append(k, v)
        seq_k = k.shape[2]

        if mask is not None:
            self.check_mask(mask, batch, seq_q, seq_k)
        # The causal mask becomes explicit when the kernel's own causal flag cannot express it: with another
        # mask to combine with, or with cached keys (the kernel's causal mask is aligned to the top-left corner).
        # A single query at the end of the cache may see every key, so it needs no mask at all.
        use_kernel_causal = is_causal and mask is None and attn_bias is None and seq_q == seq_k and not need_weights
        if is_causal and not use_kernel_causal and seq_q > 1:
            causal = self.causal_mask(seq_q, seq_k, q.device)
            mask = causal if mask is None else mask & causal

        if need_weights:
            out, attn = self.attend_explicitly(q, k, v, mask, attn_bias)
        else:
            # An additive bias goes to the kernel as a float mask, with $-\infty$ where the boolean mask forbids.
            attn_mask = mask
            if attn_bias is not None:
                attn_mask = attn_bias if mask is None else attn_bias.masked_fill(~mask, float("-inf"))
            # `[batch, heads, seq_q, d_head]`
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout_prob if self.training else 0.0,
                is_causal=use_kernel_causal, scale=self.scale, enable_gqa=self.kv_heads != self.heads)

        # Concatenate the heads: `[batch, heads, seq_q, d_head]` to `[batch, seq_q, heads * d_head]`
        out = out.transpose(1, 2).reshape(batch, seq_q, self.heads * self.d_head)
        # $W^O$, `[batch, seq_q, d_model]`
        out = self.output(out)
        return (out, attn) if need_weights else out

    # ### The explicit path
    #
    # Attention written out, as in the paper. It materialises the attention matrix, which is what you need
    # to look at it (`need_weights=True`), and what the fused kernels avoid storing.
    def attend_explicitly(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                          attn_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # Grouped-query attention: each key/value head serves `heads / kv_heads` consecutive query heads,
        # so query head $i$ reads key/value head $\lfloor i / (h / h_{kv}) \rfloor$.
        # `[batch, kv_heads, seq_k, d_head]` to `[batch, heads, seq_k, d_head]`
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)

        # $$\frac{Q K^\top}{\sqrt{d_k}}$$
        #
        # `[batch, heads, seq_q, seq_k]`
        scores = self.get_scores(q, k) * self.scale
        # An additive bias on the scores, when the model has one (T5's relative positions)
        if attn_bias is not None:
            scores = scores + attn_bias

        # Masked keys get a score of $-\infty$, hence a weight of exactly zero after the softmax.
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))

        # $$\operatorname*{softmax}_{seq}\Bigg(\frac{Q K^\top}{\sqrt{d_k}}\Bigg)$$
        #
        # The softmax runs over the keys, so each query's weights sum to one.
        attn = scores.softmax(dim=-1)

        # A query whose keys are all masked has a row of $-\infty$, and its softmax is `NaN`. Setting the masked
        # weights to zero turns such a row into zeros (so its output is zero) and changes nothing elsewhere.
        if mask is not None:
            attn = attn.masked_fill(~mask, 0.0)

        # $$\operatorname*{softmax}_{seq}\Bigg(\frac{Q K^\top}{\sqrt{d_k}}\Bigg)V$$
        #
        # `[batch, heads, seq_q, seq_k] @ [batch, heads, seq_k, d_head]` to `[batch, heads, seq_q, d_head]`
        out = self.dropout(attn) @ v
        return out, attn


if __name__ == "__main__":
    from labml_nn.transformers.experiments.mha import main

    main()

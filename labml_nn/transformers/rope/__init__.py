r"""
---
title: Rotary Positional Embeddings (RoPE)
summary: Rotary positional embeddings from RoFormer, derived and implemented with both feature pairings, partial rotation and cached decoding.
---

# Rotary Positional Embeddings (RoPE)

[Fixed](/transformers/positional_encoding.md) and learned positional encodings are added to the token
embeddings once, before the first layer: they say where a token is (its *absolute* position), and each
layer has to work out from that how far apart two tokens are. Rotary positional embeddings, from
[RoFormer: Enhanced Transformer with Rotary Position Embedding](https://arxiv.org/abs/2104.09864)
(Su et al., 2021), put positions into the attention scores themselves, in every layer, and so that a
score depends only on the **relative** position of query and key. GPT-NeoX, PaLM and Llama use them.

## The rotation

We want to change a query $q$ at position $m$ and a key $k$ at position $n$, by functions
$f(q, m)$ and $f(k, n)$, so that their dot product depends on the positions only through $m - n$:

$$\big\langle f(q, m), f(k, n) \big\rangle = g(q, k, m - n)$$

Take $d = 2$ first, and read the pair of features $(x^{(1)}, x^{(2)})$ as the complex number
$x^{(1)} + i x^{(2)}$. For two such numbers the dot product of the 2-d vectors is the real part of
$q \bar{k}$. Multiplying by $e^{i m \theta}$, a rotation by the angle $m\theta$, is a solution:

$$\big\langle q e^{i m \theta}, k e^{i n \theta} \big\rangle
= \mathrm{Re}\big[q e^{i m \theta}\, \overline{k e^{i n \theta}}\big]
= \mathrm{Re}\big[q \bar{k}\, e^{i (m - n) \theta}\big]$$

As a real $2 \times 2$ matrix, the rotation is

$$
f(x, m) = R_{m\theta} \begin{pmatrix} x^{(1)} \\ x^{(2)} \end{pmatrix}
= \begin{pmatrix} \cos m\theta & -\sin m\theta \\ \sin m\theta & \cos m\theta \end{pmatrix}
\begin{pmatrix} x^{(1)} \\ x^{(2)} \end{pmatrix}
= \begin{pmatrix} x^{(1)} \cos m\theta - x^{(2)} \sin m\theta \\ x^{(2)} \cos m\theta + x^{(1)} \sin m\theta \end{pmatrix}
$$

and since rotations compose by adding angles and $R^\top_{\alpha} = R_{-\alpha}$,

$$\big(R_{m\theta}\, q\big)^\top \big(R_{n\theta}\, k\big) = q^\top R_{-m\theta} R_{n\theta}\, k = q^\top R_{(n - m)\theta}\, k$$

which depends on $m$ and $n$ only through $m - n$. Rotations also keep lengths, $\lVert R x \rVert = \lVert x \rVert$,
so the positions change the angles between queries and keys but never their sizes.

For $d$ features, split them into $d/2$ pairs and rotate pair $i$ by $m\theta_i$, with a different
frequency for each pair, as in the [sinusoidal encodings](/transformers/positional_encoding.md):

$$\theta_i = \text{base}^{-\frac{2i}{d}}, \quad i = 0, 1, \dots, \frac{d}{2} - 1, \quad \text{base} = 10000$$

Fast-turning pairs resolve nearby positions, slow-turning ones distant positions. The whole map is a
block-diagonal rotation $R^d_{\Theta, m}$, and the score of query $m$ and key $n$ is
$q^\top R^d_{\Theta, n - m}\, k$. (Llama 3 uses $\text{base} = 500000$, and Llama 3.1 also stretches the low
frequencies for long contexts, see [Llama](/transformers/llama/index.md).)

![Pairs of features rotating with position, and the query-key score as a function of relative position](/figures/rope_rotation.png)

## Which features form a pair

The paper pairs neighbouring features $(x_{2i}, x_{2i+1})$; Meta's Llama code does the same, reading the
vector as $d/2$ complex numbers. GPT-NeoX and Hugging Face's Llama pair feature $i$ with feature
$i + d/2$ ("rotate half"), which needs no interleaving. Both are rotary embeddings; they differ by a fixed
permutation of the features. Let

$$\pi = (0, 2, 4, \dots, d - 2,\; 1, 3, \dots, d - 1), \qquad (P x)_j = x_{\pi_j}$$

so that $(Px)_i = x_{2i}$ and $(Px)_{i + d/2} = x_{2i+1}$: the interleaved pair $i$ becomes the half pair $i$,
with the same frequency $\theta_i$. Hence

$$\text{RoPE}_{\text{half}}(P x, m) = P\, \text{RoPE}_{\text{interleaved}}(x, m)$$

and since $P$ is a permutation, $(Pq)^\top (Pk) = q^\top k$: a model trained with one pairing runs with the
other once the rows of $W^Q$ and $W^K$ are permuted by $\pi$ within each head (this is how Meta's Llama
weights are converted for Hugging Face). The values are not rotated and need no permutation. The default
here is "rotate half"; `interleaved=True` gives the paper's pairing.

## Partial rotation

Rotary embeddings can rotate only the first $d$ of the $d_{head}$ features of each head and pass the rest
through unchanged, as GPT-NeoX and GPT-J do: those features compare content regardless of position.

The experiment (`python -m labml_nn.transformers.rope`, see
[the experiment page](/transformers/experiments/rope.md)) trains a small model with rotary attention.
"""

import torch
from torch import nn

from labml_nn.transformers.mha import MultiHeadAttention


# ## Rotating queries and keys
#
# The rotation itself, as a module without parameters: attention calls it on the queries and on the keys
# (never the values), so only the scores learn where the tokens are.
class RotaryPositionalEmbeddings(nn.Module):
    r"""
    Rotates pairs of the first `d` features of queries or keys by angles proportional to their positions.

    Arguments:
        d: number of features to rotate, even; the remaining features of each head pass through.
        base: the base of the frequencies $\theta_i = \text{base}^{-2i/d}$.
        interleaved: pair features $(2i, 2i + 1)$ as in RoFormer and Meta's Llama code; otherwise
            $(i, i + d/2)$ ("rotate half", GPT-NeoX and Hugging Face).

    The module has no parameters and no buffers: the angles are computed at each call, on the input's
    device, so it holds no state that could go stale or be cast to low precision.
    """

    def __init__(self, d: int, base: float = 10_000, interleaved: bool = False):
        super().__init__()
        if not isinstance(d, int) or d < 2 or d % 2 != 0:
            raise ValueError(f"d (the number of rotated features) must be a positive even integer, got {d}")
        if base <= 1:
            raise ValueError(f"base must be greater than 1 (so that the frequencies decrease), got {base}")
        self.d = d
        self.base = base
        self.interleaved = interleaved

    # ### The angles
    #
    # The angles $m\theta_i$, `[seq, d / 2]`, for positions $m$ = `offset ... offset + seq - 1`. They are
    # computed in float32 (or float64 for float64 inputs) whatever the input's dtype: the angles grow with the
    # position, and bfloat16 numbers between 512 and 1024 are 4 apart, so position 1001 would be rotated as if
    # it were 1000.
    def angles(self, seq: int, offset: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        # $$\theta_i = \text{base}^{-\frac{2i}{d}}$$
        #
        # `[d / 2]`
        theta = self.base ** (-torch.arange(0, self.d, 2, device=device, dtype=dtype) / self.d)
        # Positions $m$, `[seq]`
        position = torch.arange(offset, offset + seq, device=device, dtype=dtype)
        # $m \theta_i$, `[seq, d / 2]`
        return torch.outer(position, theta)

    # ### Rotating the pairs
    #
    # Each pair of features is rotated by its angle $m\theta_i$, in float32 at least, and the features past
    # the first `d` pass through unchanged.
    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """
        Arguments:
            x: queries or keys, `[batch, heads, seq, d_head]` with `d_head >= d`.
            offset: the position of `x[:, :, 0]` (the number of cached positions when decoding).

        Returns:
            `[batch, heads, seq, d_head]` in the dtype of `x`: the first `d` features rotated, the rest unchanged.
        """
        if x.dim() != 4:
            raise ValueError(f"x must be [batch, heads, seq, d_head], got shape {tuple(x.shape)}")
        if x.shape[-1] < self.d:
            raise ValueError(f"cannot rotate d={self.d} features of heads with only d_head={x.shape[-1]} features")
        if offset < 0:
            raise ValueError(f"offset must be non-negative, got {offset}")
        # The arithmetic runs in float32 at least and the result is rounded to the input's dtype once.
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        angle = self.angles(x.shape[2], offset, x.device, compute_dtype)
        # $\cos m\theta_i$ and $\sin m\theta_i$, `[seq, d / 2]`, broadcast over batch and heads
        cos, sin = angle.cos(), angle.sin()

        # The features to rotate, and the ones that pass through
        x_rope, x_pass = x[..., :self.d].to(compute_dtype), x[..., self.d:]
        # Split into the two members of each pair, $x^{(1)}_i$ and $x^{(2)}_i$, each `[batch, heads, seq, d / 2]`
        if self.interleaved:
            # Pairs $(x_{2i}, x_{2i+1})$: `[batch, heads, seq, d]` viewed as `[batch, heads, seq, d / 2, 2]`
            x1, x2 = x_rope.unflatten(-1, (self.d // 2, 2)).unbind(-1)
        else:
            # Pairs $(x_i, x_{i + d/2})$: the first and the second half
            x1, x2 = x_rope.chunk(2, dim=-1)

        # $$
        # \begin{pmatrix} x^{(1)}_i \cos m\theta_i - x^{(2)}_i \sin m\theta_i \\
        # x^{(2)}_i \cos m\theta_i + x^{(1)}_i \sin m\theta_i \end{pmatrix}
        # $$
        rotated1 = x1 * cos - x2 * sin
        rotated2 = x2 * cos + x1 * sin

        # Put the pairs back where they came from, `[batch, heads, seq, d]`
        if self.interleaved:
            # `[batch, heads, seq, d / 2, 2]` to `[batch, heads, seq, d]`
            rotated = torch.stack([rotated1, rotated2], dim=-1).flatten(-2)
        else:
            rotated = torch.cat([rotated1, rotated2], dim=-1)
        # `[batch, heads, seq, d_head]`
        return torch.cat([rotated.to(x.dtype), x_pass], dim=-1)


# ## Multi-head attention with rotary embeddings
class RotaryPEMultiHeadAttention(MultiHeadAttention):
    r"""
    [Multi-head attention](/transformers/mha.md) whose queries and keys are rotated by their positions
    before the scores are taken.

    Arguments:
        heads: number of heads.
        d_model: width of the input and output vectors.
        rope_percentage: the fraction of each head's features to rotate, in $(0, 1]$;
            `int(d_head * rope_percentage)` features, rounded down to an even number, are rotated.
        dropout_prob: dropout on the attention weights.

    Only [`encode_positions`](/transformers/mha.md#MultiHeadAttention.encode_positions) changes, and the base
    class calls it on both the fast (SDPA) and the explicit path: rotating $q$ and $k$ before the product
    gives the scores $q_m^\top R^d_{\Theta, n - m} k_n$ without touching the attention kernel.
    With a [key/value cache](/transformers/mha.md#KVCache) the keys are rotated once, at their own position
    (`offset` is the number of cached positions), and stored rotated: a key's rotation depends only on its
    own position, so it never needs to be redone.
    """

    def __init__(self, heads: int, d_model: int, rope_percentage: float = 0.5, dropout_prob: float = 0.0):
        super().__init__(heads, d_model, dropout_prob)
        if not 0.0 < rope_percentage <= 1.0:
            raise ValueError(f"rope_percentage must be in (0, 1], got {rope_percentage}")
        # The number of rotated features, rounded down to an even number (features rotate in pairs)
        d_rope = int(self.d_head * rope_percentage)
        d_rope -= d_rope % 2
        # Rotating nothing would silently give attention without any position information.
        if d_rope < 2:
            raise ValueError(f"rope_percentage={rope_percentage} of d_head={self.d_head} rotates {d_rope} features; "
                             f"at least one pair (2 features) must be rotated")
        # One module serves queries and keys: it has no state, and both must use the same frequencies.
        self.rope = RotaryPositionalEmbeddings(d_rope)

    # $q_m \to R^d_{\Theta, m} q_m$ and $k_n \to R^d_{\Theta, n} k_n$, on `[batch, heads, seq, d_head]`
    # (keys `[batch, kv_heads, seq, d_head]`), positions counted from `offset`.
    def encode_positions(self, q: torch.Tensor, k: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rope(q, offset), self.rope(k, offset)

r"""
---
title: Fixed Positional Encodings
summary: The sinusoidal positional encodings of "Attention Is All You Need", and why sines and cosines make relative positions easy to attend to.
---

# Fixed Positional Encodings

Attention by itself does not know where a token is: permute the keys and values together and every query
gets the same answer. The transformer of
[Attention Is All You Need](https://arxiv.org/abs/1706.03762) (Vaswani et al., 2017) therefore adds a
vector that depends only on the position $p$ to each token embedding before the first layer. The vectors
are fixed, not learned:

$$
\begin{aligned}
\mathrm{PE}_{p,2i} &= \sin\Bigg(\frac{p}{10000^{\frac{2i}{d_{model}}}}\Bigg) \\
\mathrm{PE}_{p,2i + 1} &= \cos\Bigg(\frac{p}{10000^{\frac{2i}{d_{model}}}}\Bigg)
\end{aligned}
$$

where $p$ is the position and $i$ indexes pairs of features, $0 \le i < d_{model} / 2$. Each pair
$(2i, 2i + 1)$ is a point going round a circle at its own angular frequency
$\omega_i = 10000^{-2i / d_{model}}$; the wavelengths $2\pi / \omega_i$ form a geometric progression from
$2\pi$ (feature pair 0 changes every position) to almost $10000 \cdot 2\pi$ (the last pairs barely move over
thousands of positions). Together they work like the hands of a clock: fast hands tell nearby positions
apart, slow hands tell distant ones apart.

![Left, heat map of the positional encodings (64 features, 100 positions): position across, feature down. Right, features 6, 12, 20 and 32, sines of growing wavelength, as functions of the position](/figures/positional_encoding.png)

## Why sines and cosines: relative positions are linear maps

The paper chose sinusoids because "for any fixed offset $k$, $\mathrm{PE}_{p+k}$ can be represented as a
linear function of $\mathrm{PE}_p$". By the angle-addition formulas, for each pair of features

$$
\begin{pmatrix} \sin \omega_i (p + k) \\ \cos \omega_i (p + k) \end{pmatrix}
=
\begin{pmatrix} \cos \omega_i k & \sin \omega_i k \\ -\sin \omega_i k & \cos \omega_i k \end{pmatrix}
\begin{pmatrix} \sin \omega_i p \\ \cos \omega_i p \end{pmatrix}
$$

The matrix is a rotation that depends on the offset $k$ but **not on the position $p$**. Stacking one such
$2 \times 2$ block per pair gives a block-diagonal matrix $M_k$ with $\mathrm{PE}_{p+k} = M_k\, \mathrm{PE}_p$
for every $p$. So a linear layer (a query or key projection) can learn "look $k$ tokens back" once, and it works
at every position. A consequence is that the similarity of two encodings depends only on how far apart
they are:

$$\mathrm{PE}_p \cdot \mathrm{PE}_{p+k} = \sum_{i} \big(\sin \omega_i p \, \sin \omega_i (p+k) + \cos \omega_i p \, \cos \omega_i (p+k)\big) = \sum_i \cos \omega_i k$$

The same rotations, applied to queries and keys instead of added to the embeddings, are
[rotary positional embeddings](/transformers/rope/index.md).

The paper also reports that learned positional embeddings work about as well; the sinusoids need no
parameters and are defined for any position, though a model trained on short sequences does not
automatically generalise to longer ones.

The experiment (`python -m labml_nn.transformers.positional_encoding`, see
[the experiment page](/transformers/experiments/positional_encoding.md)) trains a small model with these
encodings.
"""

import math

import torch
from torch import nn


# ## The encoding table
#
# Returns `[max_len, d_model]`: row $p$ is $\mathrm{PE}_p$. The angles $p\,\omega_i$ reach `max_len` radians, where
# a float32 angle is only accurate to about $10^{-4}$, so the table is computed in float64 and rounded to
# float32 once at the end.
#
# An odd `d_model` is rejected: the last feature would be a sine without its cosine, and a lone sine is
# not a rotation of its earlier values, so $\mathrm{PE}_{p+k} = M_k \mathrm{PE}_p$ would fail for that feature.
def get_positional_encoding(d_model: int, max_len: int = 5000) -> torch.Tensor:
    """Sinusoidal positional encodings `[max_len, d_model]` (float32), sine on even and cosine on odd features."""
    if d_model < 2 or d_model % 2 != 0:
        raise ValueError(f"d_model must be a positive even integer (features come in sin/cos pairs), got {d_model}")
    if max_len < 1:
        raise ValueError(f"max_len must be a positive integer, got {max_len}")
    # Positions $p$, `[max_len, 1]`
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    # $$\omega_i = 10000^{-\frac{2i}{d_{model}}} = \exp\Big(-\frac{2i}{d_{model}} \ln 10000\Big)$$
    #
    # `[d_model / 2]`
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    frequency = torch.exp(two_i * (-math.log(10000.0) / d_model))
    # $p\,\omega_i$, `[max_len, 1] * [d_model / 2]` to `[max_len, d_model / 2]`
    angle = position * frequency
    encodings = torch.empty(max_len, d_model, dtype=torch.float64)
    # $\mathrm{PE}_{p,2i} = \sin(p\,\omega_i)$
    encodings[:, 0::2] = torch.sin(angle)
    # $\mathrm{PE}_{p,2i+1} = \cos(p\,\omega_i)$
    encodings[:, 1::2] = torch.cos(angle)
    return encodings.float()


# ## Adding the encodings to the embeddings
class PositionalEncoding(nn.Module):
    r"""
    Adds $\mathrm{PE}_p$ to the vector at position $p$ of `[batch, seq, d_model]` and applies dropout, as the paper does
    to the sums of the embeddings and the positional encodings.

    Arguments:
        d_model: width of the vectors (even).
        dropout_prob: dropout probability applied after adding the encodings.
        max_len: the longest sequence (including `offset`) that can be encoded.
    """

    def __init__(self, d_model: int, dropout_prob: float, max_len: int = 5000):
        super().__init__()
        if not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"dropout_prob must be in [0, 1), got {dropout_prob}")
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout_prob)
        # The table is a buffer, so it moves with the module between devices, and non-persistent, so it is
        # not saved in checkpoints: it is a function of `d_model` and `max_len`, not a learned weight.
        self.register_buffer("positional_encodings", get_positional_encoding(d_model, max_len), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """
        Arguments:
            x: `[batch, seq, d_model]`.
            offset: the position of `x[:, 0]`; non-zero when earlier positions were processed before
                (decoding one token at a time).

        Returns:
            `[batch, seq, d_model]`.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be [batch, seq, d_model={self.d_model}], got {tuple(x.shape)}")
        seq = x.shape[1]
        if offset < 0 or seq + offset > self.max_len:
            raise ValueError(f"positions {offset}..{offset + seq - 1} (offset={offset}, seq={seq}) "
                             f"must lie in [0, max_len={self.max_len})")
        # The rows for positions `offset ... offset + seq - 1`, `[seq, d_model]`, in the input's dtype and on
        # its device (a no-op when they already match).
        pe = self.positional_encodings[offset:offset + seq].to(device=x.device, dtype=x.dtype)
        # $x_p + \mathrm{PE}_p$; `[seq, d_model]` broadcasts over the batch.
        return self.dropout(x + pe)


if __name__ == "__main__":
    from labml_nn.transformers.experiments.positional_encoding import main

    main()

r"""
---
title: Position-wise Feed-Forward Network (FFN)
summary: The transformer's position-wise feed-forward network and its gated variants GLU, GEGLU and SwiGLU.
---

# Position-wise Feed-Forward Network (FFN)

Every transformer layer has two sub-layers: attention, which moves information **between** positions,
and a feed-forward network, which transforms the vector at **each position** on its own, with the same
weights everywhere. In [Attention Is All You Need](https://arxiv.org/abs/1706.03762) it is two linear
layers with a ReLU between them:

$$\operatorname{FFN}(x) = \max(0, x W_1 + b_1) W_2 + b_2$$

$W_1$ widens the vector from $d_{model}$ to $d_{ff}$ (four times wider in the paper, $2048 = 4 \times 512$),
the activation acts on each hidden feature, and $W_2$ projects back to $d_{model}$ so the result can be
added to the residual stream. Most of a transformer's parameters are in these two matrices. It is also
called a 1-by-1 convolution over the sequence, or an MLP. BERT and GPT-2 replace the ReLU with the
smoother [GELU](https://arxiv.org/abs/1606.08415).

## Gated variants

[GLU Variants Improve Transformer](https://arxiv.org/abs/2002.05202) (Shazeer, 2020) replaces the first
layer by a *gated linear unit*: two projections of $x$, one passed through an activation $\sigma$ and used
to gate the other, element by element:

$$\operatorname{FFN}_{\text{gated}}(x) = \big(\sigma(x W_1) \otimes x V\big) W_2$$

With different activations this gives (the paper drops the biases):

$$
\begin{aligned}
\operatorname{FFN}_{\text{GLU}}(x) &= \big(\text{sigmoid}(x W_1) \otimes x V\big) W_2 \\
\operatorname{FFN}_{\text{ReGLU}}(x) &= \big(\max(0, x W_1) \otimes x V\big) W_2 \\
\operatorname{FFN}_{\text{GEGLU}}(x) &= \big(\text{GELU}(x W_1) \otimes x V\big) W_2 \\
\operatorname{FFN}_{\text{SwiGLU}}(x) &= \big(\text{Swish}_1(x W_1) \otimes x V\big) W_2
\end{aligned}
$$

where $\text{Swish}_\beta(z) = z\,\text{sigmoid}(\beta z)$; with $\beta = 1$ it is PyTorch's
`nn.SiLU`. The gate lets each hidden feature be switched on by one direction of the input and scaled
by another, a multiplicative interaction a single projection followed by an activation does not have.
In Shazeer's experiments on T5 the gated variants (GEGLU and SwiGLU best) reached lower perplexity than
ReLU and GELU at the same cost. The gated network has three weight matrices instead of two, so the
comparison is made at equal parameter count by shrinking $d_{ff}$ to $\frac{2}{3}$ of the ungated width.
PaLM and Llama use SwiGLU (Llama with $d_{ff} \approx \frac{2}{3} \cdot 4 d_{model}$, rounded up).

In this module the gate's activation is the `activation` argument and `is_gated=True` adds the
projection $V$ (`linear_v`): `activation=nn.Sigmoid()` gives GLU, `nn.GELU()` GEGLU, `nn.SiLU()` SwiGLU.

The experiment (`python -m labml_nn.transformers.feed_forward`, see
[the experiment page](/transformers/experiments/feed_forward.md)) compares these variants on a small model.
"""

from collections.abc import Callable

import torch
from torch import nn


# ## The feed-forward module
#
# One module for the plain and the gated forms, so that the variants are compared with everything else
# (dropout, biases, the widths) held the same.
class FeedForward(nn.Module):
    r"""
    Position-wise feed-forward network, optionally gated.

    Arguments:
        d_model: width of the input and output vectors.
        d_ff: width of the hidden layer.
        dropout: dropout probability on the hidden layer (training only).
        activation: the activation $\sigma$ (the gate's activation when gated). The default `nn.ReLU()`
            instance is shared by every `FeedForward` built without one; that is harmless because it
            has no parameters or state.
        is_gated: use the gated form $\big(\sigma(x W_1) \otimes x V\big) W_2$.
        bias1: whether the first layer $W_1$ (`layer1`) has a bias.
        bias2: whether the second layer $W_2$ (`layer2`) has a bias.
        bias_gate: whether the gated value projection $V$ (`linear_v`) has a bias.

    Submodules: `layer1` ($d_{model} \to d_{ff}$), `layer2` ($d_{ff} \to d_{model}$, the projection back into
    the residual stream), `linear_v` ($d_{model} \to d_{ff}$, `None` unless gated), `activation`, `dropout`.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1,
                 activation: nn.Module | Callable[[torch.Tensor], torch.Tensor] = nn.ReLU(),
                 is_gated: bool = False, bias1: bool = True, bias2: bool = True, bias_gate: bool = True):
        super().__init__()
        if d_model < 1 or d_ff < 1:
            raise ValueError(f"d_model and d_ff must be positive, got d_model={d_model}, d_ff={d_ff}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not callable(activation):
            raise ValueError(f"activation must be a module or function, got {activation!r}")
        self.is_gated = is_gated
        # $W_1$ (and $b_1$), $d_{model} \to d_{ff}$
        self.layer1 = nn.Linear(d_model, d_ff, bias=bias1)
        # $W_2$ (and $b_2$), $d_{ff} \to d_{model}$
        self.layer2 = nn.Linear(d_ff, d_model, bias=bias2)
        # $V$, the value that the activated $x W_1$ gates; only in the gated variants
        self.linear_v = nn.Linear(d_model, d_ff, bias=bias_gate) if is_gated else None
        self.activation = activation
        # Dropout on the hidden layer, as in the paper's reference implementation
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` is `[..., d_model]` (usually `[batch, seq, d_model]`); returns the same shape."""
        # $\sigma(x W_1 + b_1)$, `[..., d_ff]`
        hidden = self.activation(self.layer1(x))
        # $$\sigma(x W_1 + b_1) \otimes (x V + c)$$
        #
        # where $c$ is the bias of `linear_v` (zero with `bias_gate=False`). In the gated variants the
        # activated features scale the value projection element by element.
        if self.linear_v is not None:
            hidden = hidden * self.linear_v(x)
        # $$\text{Dropout}(h) W_2 + b_2$$
        #
        # `[..., d_model]`
        return self.layer2(self.dropout(hidden))


if __name__ == "__main__":
    from labml_nn.transformers.experiments.feed_forward import main

    main()

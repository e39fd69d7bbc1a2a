r"""
---
title: "2. Self-attention"
summary: "The averaging trick (the mean of the past as a lower-triangular matrix product, then as a masked softmax), and one head of scaled self-attention: queries, keys, values and why the scores are divided by the square root of the head size."
---

# 2. Self-attention

The [bigram](/transformers/from_scratch/ch1_bigram.md) reads one character. To read more, position $t$ must gather information from
positions $1 \dots t$, and never from the future, which is what it predicts.

## The averaging trick

The crudest gathering is the mean of the past: $\bar x_t = \frac{1}{t} \sum_{s \le t} x_s$. Written as a loop it
is slow; written as a matrix product it is one operation. With $M$ the lower-triangular matrix of ones divided
by each row's count,

$$\bar X = M X, \qquad M_{ts} = \begin{cases}1/t & s \le t \\ 0 & s > t\end{cases}$$

and the same $M$ is the softmax of a matrix that is 0 on and below the diagonal and $-\infty$ above it:

$$M = \text{softmax}(S), \qquad S_{ts} = \begin{cases}0 & s \le t \\ -\infty & s > t\end{cases}$$

That last form is the door to attention: replace the zeros by scores that depend on the data, and each position
takes a weighted mean of the past in which it chooses the weights.

## One head of self-attention

Each position emits a **query** $q_t = x_t W_Q$ (what it looks for), a **key** $k_s = x_s W_K$ (what it
offers) and a **value** $v_s = x_s W_V$ (what it gives if chosen). The score of $s$ for $t$ is $q_t \cdot k_s$,
and the output is the mean of the values weighted by the softmax of the scores over $s \le t$:

$$\text{head}(X) = \text{softmax}\Big(\frac{Q K^\top}{\sqrt{d_k}} + \text{mask}\Big) V$$

**Why $1/\sqrt{d_k}$.** If the $d_k$ entries of $q$ and $k$ are independent with mean 0 and variance 1,
$q \cdot k = \sum_i q_i k_i$ is a sum of $d_k$ terms of variance 1: its variance is $d_k$. Dividing by $\sqrt{d_k}$
brings it back to 1 ([`score_variance`](#score_variance) measures both). Without it, the scores grow with
the head size, and the softmax of large scores is nearly one-hot ([`saturation`](#saturation)): each position
then listens to one other position only, and the softmax's gradient, $p(1 - p)$, vanishes.

Attention has no notion of order, so the model adds a learned **position embedding** to each character's
embedding: the keys and queries can then depend on where a character is as well as on what it is.

The code column has a second tab, **JAX/Flax**: the same chapter in JAX with Flax, with the same structure and
names (choose it once and every chapter shows it).
"""

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.from_scratch.ch0_infrastructure import Config, run_chapter


# ## The averaging trick, as a matrix
#
# $M X$ with $M$ lower triangular, each row summing to one. `x` is `[batch, seq, channels]`.
def mean_of_past_matmul(x: torch.Tensor) -> torch.Tensor:
    seq = x.shape[1]
    # `[seq, seq]`, ones on and below the diagonal
    tril = torch.tril(torch.ones(seq, seq, dtype=x.dtype))
    # $M$: each row divided by its count
    weights = tril / tril.sum(dim=1, keepdim=True)
    # `[seq, seq] @ [batch, seq, channels]` -> `[batch, seq, channels]`
    return weights @ x


# ## The averaging trick, as a masked softmax
#
# Scores of zero where $s \le t$ and $-\infty$ elsewhere; their softmax is $M$.
def mean_of_past_softmax(x: torch.Tensor) -> torch.Tensor:
    seq = x.shape[1]
    tril = torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    # `[seq, seq]`
    scores = torch.zeros(seq, seq, dtype=x.dtype).masked_fill(~tril, float("-inf"))
    return F.softmax(scores, dim=-1) @ x


# <a id="score_variance"></a>
#
# ## The variance of the scores
#
# The variance of $q \cdot k$ over `n` draws of unit-variance $q, k \in \mathbb{R}^{d_k}$, with and without
# the scale: about $d_k$ without, about 1 with.
def score_variance(head_size: int, scaled: bool, n: int = 10_000, seed: int = 0) -> float:
    generator = torch.Generator().manual_seed(seed)
    # `[n, head_size]` each
    q = torch.randn(n, head_size, generator=generator)
    k = torch.randn(n, head_size, generator=generator)
    # `[n]`
    scores = (q * k).sum(dim=-1)
    if scaled:
        scores = scores * head_size ** -0.5
    return scores.var().item()


# <a id="saturation"></a>
#
# ## The softmax saturates
#
# The same scores, multiplied by $\sqrt{d_k}$ as they would be without the scale at $d_k = 64$: the softmax
# that was spread over all five positions puts most of its weight on the largest, and the larger $d_k$ the
# closer to one-hot it gets.
def saturation(head_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.tensor([0.1, -0.2, 0.3, -0.2, 0.5])
    return F.softmax(scores, dim=-1), F.softmax(scores * head_size ** 0.5, dim=-1)


# ## One head
#
# `x` is `[batch, seq, n_embd]`; the output is `[batch, seq, head_size]`. The causal mask is computed for the
# sequence at hand, so the head runs on any length up to `block_size` (sampling feeds it shorter ones).
# `dropout` and `bias` stay off until [chapter 5](/transformers/from_scratch/ch5_gpt.md).
class Head(nn.Module):
    def __init__(self, n_embd: int, head_size: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=bias)
        self.query = nn.Linear(n_embd, head_size, bias=bias)
        self.value = nn.Linear(n_embd, head_size, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.shape[1]
        # `[batch, seq, head_size]` each
        k, q, v = self.key(x), self.query(x), self.value(x)
        # $\frac{Q K^\top}{\sqrt{d_k}}$: `[batch, seq, head_size] @ [batch, head_size, seq]` -> `[batch, seq, seq]`
        scores = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        # True = may attend: the key is not after the query
        causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool, device=x.device))
        weights = F.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        # `[batch, seq, seq] @ [batch, seq, head_size]` -> `[batch, seq, head_size]`
        return self.dropout(weights) @ v


# ## The model
#
# Token embedding plus position embedding, one head as wide as the embedding, and a linear layer from the
# head's output to the logits.
class SingleHeadLanguageModel(nn.Module):
    def __init__(self, n_vocab: int, config: Config):
        super().__init__()
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(n_vocab, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.sa_head = Head(config.n_embd, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, n_vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = embed(self, ids)
        # `[batch, seq, n_vocab]`
        return self.lm_head(self.sa_head(x))


# ## The embeddings
#
# What a character is plus where it is, `[batch, seq, n_embd]`. Shared by the models of chapters 2 to 5.
def embed(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    seq = ids.shape[1]
    if seq > model.block_size:
        raise ValueError(f"the model reads at most block_size={model.block_size} positions, got {seq}")
    positions = torch.arange(seq, device=ids.device)
    # `[batch, seq, n_embd] + [seq, n_embd]`
    return model.token_embedding_table(ids) + model.position_embedding_table(positions)


def build_model(config: Config, n_vocab: int) -> nn.Module:
    return SingleHeadLanguageModel(n_vocab, config)


# ## Running it
#
# The demonstrations first, then training.
def demonstrate() -> None:
    x = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(0))
    print("x:", x[0].tolist())
    print("mean of the past, matrix: ", mean_of_past_matmul(x)[0].tolist())
    print("mean of the past, softmax:", mean_of_past_softmax(x)[0].tolist())
    for head_size in (16, 64):
        print(f"d_k = {head_size}: var(q.k) = {score_variance(head_size, scaled=False):.2f} unscaled, "
              f"{score_variance(head_size, scaled=True):.2f} scaled")
    spread, saturated = saturation()
    print("softmax of the scores:", [round(p, 3) for p in spread.tolist()])
    print("the same scores times 8:", [round(p, 3) for p in saturated.tolist()])


def main(argv: list[str] | None = None) -> dict:
    demonstrate()
    return run_chapter("ch2_self_attention", build_model, argv)


if __name__ == "__main__":
    main()

r"""
---
title: "2. Self-attention (JAX/Flax)"
summary: "The averaging trick and one head of scaled self-attention in JAX and Flax NNX."
---

# 2. Self-attention (JAX/Flax)

The PyTorch chapter in JAX: the averaging trick as a matrix and as a masked
softmax, the variance of the scores, and one head of scaled self-attention,

$$\text{head}(X) = \text{softmax}\Big(\frac{Q K^\top}{\sqrt{d_k}} + \text{mask}\Big) V$$

The causal mask is made from the sequence length at each call: under `jit` the length is known when the function
is traced, so the mask is a constant of the compiled program and costs nothing per step. A Flax linear layer's
kernel is `[in, out]` and computes $x W$.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from labml_nn.transformers.from_scratch.flax.ch0_infrastructure import Config, run_chapter


# ## The averaging trick, as a matrix
#
# $M X$ with $M$ lower triangular, each row summing to one. `x` is `[batch, seq, channels]`.
def mean_of_past_matmul(x: jax.Array) -> jax.Array:
    seq = x.shape[1]
    # `[seq, seq]`, ones on and below the diagonal
    tril = jnp.tril(jnp.ones((seq, seq), dtype=x.dtype))
    # $M$: each row divided by its count
    weights = tril / tril.sum(axis=1, keepdims=True)
    # `[seq, seq] @ [batch, seq, channels]` -> `[batch, seq, channels]`
    return weights @ x


# ## The averaging trick, as a masked softmax
#
# Scores of zero where $s \le t$ and $-\infty$ elsewhere; their softmax is $M$.
def mean_of_past_softmax(x: jax.Array) -> jax.Array:
    seq = x.shape[1]
    tril = jnp.tril(jnp.ones((seq, seq), dtype=bool))
    # `[seq, seq]`
    scores = jnp.where(tril, 0.0, -jnp.inf).astype(x.dtype)
    return jax.nn.softmax(scores, axis=-1) @ x


# ## The variance of the scores
#
# The variance of $q \cdot k$ over `n` draws of unit-variance $q, k \in \mathbb{R}^{d_k}$: about $d_k$ unscaled,
# about 1 scaled. One key, split in two, draws $q$ and $k$.
def score_variance(head_size: int, scaled: bool, n: int = 10_000, seed: int = 0) -> float:
    q_key, k_key = jax.random.split(jax.random.key(seed))
    # `[n, head_size]` each
    q = jax.random.normal(q_key, (n, head_size))
    k = jax.random.normal(k_key, (n, head_size))
    # `[n]`
    scores = (q * k).sum(axis=-1)
    if scaled:
        scores = scores * head_size ** -0.5
    return float(scores.var(ddof=1))


# ## The softmax saturates
#
# The same scores times $\sqrt{d_k}$: the softmax puts most of its weight on the largest.
def saturation(head_size: int = 64) -> tuple[jax.Array, jax.Array]:
    scores = jnp.array([0.1, -0.2, 0.3, -0.2, 0.5])
    return jax.nn.softmax(scores, axis=-1), jax.nn.softmax(scores * head_size ** 0.5, axis=-1)


# ## One head
#
# `x` is `[batch, seq, n_embd]`; the output is `[batch, seq, head_size]`. `dropout` and `bias` stay off until
# [chapter 5](/transformers/from_scratch/ch5_gpt.md).
class Head(nnx.Module):
    def __init__(self, n_embd: int, head_size: int, rngs: nnx.Rngs, dropout: float = 0.0, bias: bool = False):
        self.key = nnx.Linear(n_embd, head_size, use_bias=bias, rngs=rngs)
        self.query = nnx.Linear(n_embd, head_size, use_bias=bias, rngs=rngs)
        self.value = nnx.Linear(n_embd, head_size, use_bias=bias, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        seq = x.shape[1]
        # `[batch, seq, head_size]` each
        k, q, v = self.key(x), self.query(x), self.value(x)
        # $\frac{Q K^\top}{\sqrt{d_k}}$: `[batch, seq, head_size] @ [batch, head_size, seq]` -> `[batch, seq, seq]`
        scores = q @ k.swapaxes(-2, -1) * k.shape[-1] ** -0.5
        # True = may attend: the key is not after the query
        causal = jnp.tril(jnp.ones((seq, seq), dtype=bool))
        weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        # `[batch, seq, seq] @ [batch, seq, head_size]` -> `[batch, seq, head_size]`
        return self.dropout(weights) @ v


# ## The model
#
# Token embedding plus position embedding, one head as wide as the embedding, and the output layer.
class SingleHeadLanguageModel(nnx.Module):
    def __init__(self, n_vocab: int, config: Config, rngs: nnx.Rngs):
        self.block_size = config.block_size
        self.token_embedding_table = nnx.Embed(n_vocab, config.n_embd, rngs=rngs)
        self.position_embedding_table = nnx.Embed(config.block_size, config.n_embd, rngs=rngs)
        self.sa_head = Head(config.n_embd, config.n_embd, rngs)
        self.lm_head = nnx.Linear(config.n_embd, n_vocab, rngs=rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        x = embed(self, ids)
        # `[batch, seq, n_vocab]`
        return self.lm_head(self.sa_head(x))


# ## The embeddings
#
# What a character is plus where it is, `[batch, seq, n_embd]`. Shared by the models of chapters 2 to 5.
def embed(model: nnx.Module, ids: jax.Array) -> jax.Array:
    seq = ids.shape[1]
    if seq > model.block_size:
        raise ValueError(f"the model reads at most block_size={model.block_size} positions, got {seq}")
    # `[batch, seq, n_embd] + [seq, n_embd]`
    return model.token_embedding_table(ids) + model.position_embedding_table(jnp.arange(seq))


def build_model(config: Config, n_vocab: int, rngs: nnx.Rngs) -> nnx.Module:
    return SingleHeadLanguageModel(n_vocab, config, rngs)


# ## Running it
#
# The demonstrations first, then training.
def demonstrate() -> None:
    x = jax.random.normal(jax.random.key(0), (1, 4, 2))
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

r"""
---
title: "3. Multi-head self-attention (JAX/Flax)"
summary: "Several heads of self-attention in Flax NNX, concatenated and projected."
---

# 3. Multi-head self-attention (JAX/Flax)

The PyTorch chapter in Flax:
$\text{MultiHead}(X) = \text{Concat}(\text{head}_1, \dots, \text{head}_h)\, W_O$. The heads are kept in an
`nnx.List`, NNX's list of modules (the counterpart of `nn.ModuleList`), so that their parameters are found.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from labml_nn.transformers.from_scratch.flax.ch0_infrastructure import Config, run_chapter
from labml_nn.transformers.from_scratch.flax.ch2_self_attention import Head, embed


# ## The heads and the projection
#
# `[batch, seq, n_embd]` to `n_head` outputs `[batch, seq, head_size]`, concatenated and projected back to
# `[batch, seq, n_embd]`. `dropout` and `bias` stay off until [chapter 5](/transformers/from_scratch/ch5_gpt.md).
class MultiHeadAttention(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, head_size: int, rngs: nnx.Rngs, dropout: float = 0.0,
                 bias: bool = False):
        self.heads = nnx.List([Head(n_embd, head_size, rngs, dropout, bias) for _ in range(n_head)])
        self.proj = nnx.Linear(n_head * head_size, n_embd, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # `[batch, seq, n_head * head_size]`
        out = jnp.concatenate([head(x) for head in self.heads], axis=-1)
        return self.dropout(self.proj(out))


# ## The model
#
# Chapter 2's model with `n_head` heads of `n_embd / n_head` features.
class MultiHeadLanguageModel(nnx.Module):
    def __init__(self, n_vocab: int, config: Config, rngs: nnx.Rngs):
        self.block_size = config.block_size
        self.token_embedding_table = nnx.Embed(n_vocab, config.n_embd, rngs=rngs)
        self.position_embedding_table = nnx.Embed(config.block_size, config.n_embd, rngs=rngs)
        self.sa_heads = MultiHeadAttention(config.n_embd, config.n_head, config.n_embd // config.n_head, rngs)
        self.lm_head = nnx.Linear(config.n_embd, n_vocab, rngs=rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        x = embed(self, ids)
        # `[batch, seq, n_vocab]`
        return self.lm_head(self.sa_heads(x))


def build_model(config: Config, n_vocab: int, rngs: nnx.Rngs) -> nnx.Module:
    return MultiHeadLanguageModel(n_vocab, config, rngs)


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch3_multi_head", build_model, argv)


if __name__ == "__main__":
    main()

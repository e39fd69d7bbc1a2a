r"""
---
title: "4. The transformer block (JAX/Flax)"
summary: "The feed-forward network, residual connections and pre-norm layer normalisation in Flax NNX."
---

# 4. The transformer block (JAX/Flax)

The PyTorch chapter in Flax:
$x \leftarrow x + \text{MultiHead}(\text{LN}_1(x))$, $x \leftarrow x + \text{FFN}(\text{LN}_2(x))$.
Flax's `nnx.LayerNorm` defaults differ from PyTorch's: $\epsilon = 10^{-6}$ (PyTorch $10^{-5}$) and a "fast" variance
$E[x^2] - E[x]^2$ (PyTorch: $E[(x - \mu)^2]$). Both are set here as PyTorch has them, so that the same weights
give the same outputs.
"""

import jax
from flax import nnx

from labml_nn.transformers.from_scratch.flax.ch0_infrastructure import Config, run_chapter
from labml_nn.transformers.from_scratch.flax.ch2_self_attention import embed
from labml_nn.transformers.from_scratch.flax.ch3_multi_head import MultiHeadAttention


# The layer norm of PyTorch, in Flax.
def layer_norm(n_embd: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(n_embd, epsilon=1e-5, use_fast_variance=False, rngs=rngs)


# ## The feed-forward network
#
# `[batch, seq, n_embd]` to `[batch, seq, 4 n_embd]` and back; the dropouts stay off until
# [chapter 5](/transformers/from_scratch/ch5_gpt.md).
class FeedForward(nnx.Module):
    def __init__(self, n_embd: int, rngs: nnx.Rngs, dropout: float = 0.0):
        self.net = nnx.Sequential(
            nnx.Linear(n_embd, 4 * n_embd, rngs=rngs),
            nnx.relu,
            nnx.Dropout(dropout, rngs=rngs),
            nnx.Linear(4 * n_embd, n_embd, rngs=rngs),
            nnx.Dropout(dropout, rngs=rngs),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)


# ## The block
#
# Communication, then computation, each pre-normed and added to the residual stream.
class Block(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, rngs: nnx.Rngs, dropout: float = 0.0, bias: bool = False):
        self.sa = MultiHeadAttention(n_embd, n_head, n_embd // n_head, rngs, dropout, bias)
        self.ffwd = FeedForward(n_embd, rngs, dropout)
        self.ln1 = layer_norm(n_embd, rngs)
        self.ln2 = layer_norm(n_embd, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # $$x + \text{MultiHead}(\text{LN}_1(x))$$
        x = x + self.sa(self.ln1(x))
        # $$x + \text{FFN}(\text{LN}_2(x))$$
        return x + self.ffwd(self.ln2(x))


# ## The model
#
# Embeddings, `n_layer` blocks, the final layer norm and the output layer.
class TransformerLanguageModel(nnx.Module):
    def __init__(self, n_vocab: int, config: Config, rngs: nnx.Rngs):
        self.block_size = config.block_size
        self.token_embedding_table = nnx.Embed(n_vocab, config.n_embd, rngs=rngs)
        self.position_embedding_table = nnx.Embed(config.block_size, config.n_embd, rngs=rngs)
        self.blocks = nnx.Sequential(*[Block(config.n_embd, config.n_head, rngs) for _ in range(config.n_layer)])
        self.ln_f = layer_norm(config.n_embd, rngs)
        self.lm_head = nnx.Linear(config.n_embd, n_vocab, rngs=rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        x = self.blocks(embed(self, ids))
        # `[batch, seq, n_vocab]`
        return self.lm_head(self.ln_f(x))


def build_model(config: Config, n_vocab: int, rngs: nnx.Rngs) -> nnx.Module:
    return TransformerLanguageModel(n_vocab, config, rngs)


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch4_block", build_model, argv)


if __name__ == "__main__":
    main()

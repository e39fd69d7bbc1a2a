r"""
---
title: "5. Scaling up: the GPT (JAX/Flax)"
summary: "Dropout, the tied output layer and biased heads in Flax NNX: the PyTorch chapter's GPT, with the same weights giving the same logits."
---

# 5. Scaling up: the GPT (JAX/Flax)

The PyTorch chapter in Flax. Two things read differently:

* **Dropout needs randomness**, and in JAX randomness needs a key. `nnx.Dropout` draws its masks from the
  `nnx.Rngs` the model was built with; NNX advances that generator's state inside `nnx.jit`, so each training step
  gets new masks. `model.eval()` turns it off.
* **The tied output layer** is not a layer: `nnx.Embed.attend(x)` computes $x W_E^\top$ with the embedding table
  itself, so the table gets the gradient of both its uses, as the one PyTorch tensor does.
"""

import jax
from flax import nnx

from labml_nn.transformers.from_scratch.ch5_gpt import PRESETS
from labml_nn.transformers.from_scratch.flax.ch0_infrastructure import Config, run_chapter
from labml_nn.transformers.from_scratch.flax.ch2_self_attention import embed
from labml_nn.transformers.from_scratch.flax.ch4_block import Block, layer_norm


# ## The model
#
# Chapter 4's model with dropout on the embeddings, biased heads, and the output layer tied to the token
# embedding table.
class GPTLanguageModel(nnx.Module):
    def __init__(self, n_vocab: int, config: Config, rngs: nnx.Rngs):
        self.block_size = config.block_size
        self.token_embedding_table = nnx.Embed(n_vocab, config.n_embd, rngs=rngs)
        self.position_embedding_table = nnx.Embed(config.block_size, config.n_embd, rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.blocks = nnx.Sequential(*[Block(config.n_embd, config.n_head, rngs, config.dropout, bias=True)
                                       for _ in range(config.n_layer)])
        self.ln_f = layer_norm(config.n_embd, rngs)
        init_weights(self, rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        x = self.blocks(self.dropout(embed(self, ids)))
        # $W_E^\top$, the token embedding table itself: `[batch, seq, n_vocab]`
        return self.token_embedding_table.attend(self.ln_f(x))


# ## The initialisation
#
# By module type, $\mathcal{N}(0, 0.02^2)$ and zero biases, each weight from a key of its own.
def init_weights(model: nnx.Module, rngs: nnx.Rngs) -> None:
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.Linear):
            module.kernel[...] = 0.02 * jax.random.normal(rngs.params(), module.kernel.shape)
            if module.bias is not None:
                module.bias[...] = 0.0 * module.bias[...]
        elif isinstance(module, nnx.Embed):
            module.embedding[...] = 0.02 * jax.random.normal(rngs.params(), module.embedding.shape)


def build_model(config: Config, n_vocab: int, rngs: nnx.Rngs) -> nnx.Module:
    return GPTLanguageModel(n_vocab, config, rngs)


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch5_gpt", build_model, argv, PRESETS)


if __name__ == "__main__":
    main()

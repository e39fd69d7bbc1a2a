r"""
---
title: "1. The bigram (JAX/Flax)"
summary: "The bigram in Flax NNX: the token-embedding table as a table of next-character logits."
---

# 1. The bigram (JAX/Flax)

The PyTorch chapter in Flax: the same table, `nnx.Embed`, whose weight is called
`embedding` where PyTorch's `nn.Embedding` calls it `weight`. Modules take the `nnx.Rngs` to draw their initial
weights from: there is no global generator.
"""

import jax
from flax import nnx

from labml_nn.transformers.from_scratch.ch1_bigram import PRESETS
from labml_nn.transformers.from_scratch.flax.ch0_infrastructure import Config, run_chapter


# ## The model
#
# A lookup of row $x_t$ for every position, `[batch, seq, n_vocab]`.
class BigramLanguageModel(nnx.Module):
    def __init__(self, n_vocab: int, rngs: nnx.Rngs):
        self.token_embedding_table = nnx.Embed(n_vocab, n_vocab, rngs=rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        # `[batch, seq, n_vocab]`
        return self.token_embedding_table(ids)


def build_model(config: Config, n_vocab: int, rngs: nnx.Rngs) -> nnx.Module:
    return BigramLanguageModel(n_vocab, rngs)


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch1_bigram", build_model, argv, PRESETS)


if __name__ == "__main__":
    main()

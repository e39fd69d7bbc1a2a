r"""
---
title: "1. The bigram"
summary: "The token-embedding table as a table of next-character logits: each character predicts the next from itself alone."
---

# 1. The bigram

The simplest model that uses its input: the next character is predicted from the current one alone.

$$p(x_{t+1} = j \mid x_t = i) = \text{softmax}(W_{i,:})_j$$

$W$ is a $V \times V$ table, read with an embedding lookup: row $i$ holds the logits of every character that
may follow character $i$. Training counts, in effect, which character follows which; the best table gives
each row the frequencies of the next character after $i$ in the text.

Trained with the track's small recipe it ends near 2.57 and still falling; with the original's recipe for this
chapter (preset `original`: a learning rate ten times larger) it reaches the original's 2.49 (the
[index](/transformers/from_scratch/index.md) has the measured table). More training can not take it much further: whatever the table
holds, the model sees one character back. Every later chapter is a way to let a position
read the ones before it.

The code column has a second tab, **JAX/Flax**: the same chapter in JAX with Flax, with the same structure and
names (choose it once and every chapter shows it).
"""

import torch
from torch import nn

from labml_nn.transformers.from_scratch.ch0_infrastructure import Config, run_chapter


# ## The model
#
# A lookup of row $x_t$ for every position: the logits `[batch, seq, n_vocab]` come straight out of the
# table, without any computation.
class BigramLanguageModel(nn.Module):
    def __init__(self, n_vocab: int):
        super().__init__()
        self.token_embedding_table = nn.Embedding(n_vocab, n_vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # `[batch, seq, n_vocab]`
        return self.token_embedding_table(ids)


def build_model(config: Config, n_vocab: int) -> nn.Module:
    return BigramLanguageModel(n_vocab)


# ## The recipes
#
# `small` is the track's recipe. The original trained its bigram with a learning rate ten times larger for
# fewer steps; `original` is that recipe. At the track's learning rate the table is still learning at the
# end, which is the point the next chapters start from.
PRESETS = {"small": Config(), "original": Config(lr=1e-2, max_steps=3000)}


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch1_bigram", build_model, argv, PRESETS)


if __name__ == "__main__":
    main()

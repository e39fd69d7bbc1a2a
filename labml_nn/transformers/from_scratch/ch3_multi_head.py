r"""
---
title: "3. Multi-head self-attention"
summary: "Several heads of self-attention in parallel, their outputs concatenated and projected back to the embedding."
---

# 3. Multi-head self-attention

One [head](/transformers/from_scratch/ch2_self_attention.md) computes one weighted mean per position: it can look for one kind of thing
at a time (the previous vowel, say, or the start of the word). $h$ heads, each of size $d_k = d_{model} / h$,
look for $h$ things at once for the same cost, and a linear projection $W_O$ mixes what they found:

$$\text{MultiHead}(X) = \text{Concat}(\text{head}_1, \dots, \text{head}_h)\, W_O$$

With the small recipe's 4 heads of 8 features, the loss drops below the single head's (measured on the
[index](/transformers/from_scratch/index.md)).

The library's [`MultiHeadAttention`](/transformers/mha.md) computes the same thing with one projection for all the
heads' queries (and keys, and values), viewed as `[batch, heads, seq, d_head]`, and one call of PyTorch's fused
attention kernel. Here the heads stay separate modules, each the chapter-2 head, so that the sum is visible; the
[last chapter](/transformers/from_scratch/ch5_gpt.md) shows that stacking their weights gives exactly the library's projections.

The code column has a second tab, **JAX/Flax**: the same chapter in JAX with Flax, with the same structure and
names (choose it once and every chapter shows it).
"""

import torch
from torch import nn

from labml_nn.transformers.from_scratch.ch0_infrastructure import Config, run_chapter
from labml_nn.transformers.from_scratch.ch2_self_attention import Head, embed


# ## The heads and the projection
#
# `x` is `[batch, seq, n_embd]`; each head gives `[batch, seq, head_size]`; concatenated,
# `[batch, seq, n_head * head_size]`; projected, `[batch, seq, n_embd]`. `dropout` (on the attention
# weights and on the output) and `bias` stay off until [chapter 5](/transformers/from_scratch/ch5_gpt.md).
class MultiHeadAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, head_size: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        self.heads = nn.ModuleList([Head(n_embd, head_size, dropout, bias) for _ in range(n_head)])
        self.proj = nn.Linear(n_head * head_size, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # `[batch, seq, n_head * head_size]`
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        return self.dropout(self.proj(out))


# ## The model
#
# Chapter 2's model with the single head replaced by `n_head` heads of `n_embd / n_head` features.
class MultiHeadLanguageModel(nn.Module):
    def __init__(self, n_vocab: int, config: Config):
        super().__init__()
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(n_vocab, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.sa_heads = MultiHeadAttention(config.n_embd, config.n_head, config.n_embd // config.n_head)
        self.lm_head = nn.Linear(config.n_embd, n_vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = embed(self, ids)
        # `[batch, seq, n_vocab]`
        return self.lm_head(self.sa_heads(x))


def build_model(config: Config, n_vocab: int) -> nn.Module:
    return MultiHeadLanguageModel(n_vocab, config)


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch3_multi_head", build_model, argv)


if __name__ == "__main__":
    main()

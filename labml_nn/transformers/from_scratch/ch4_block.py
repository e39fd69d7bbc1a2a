r"""
---
title: "4. The transformer block"
summary: "The feed-forward network, residual connections and layer normalisation: the pre-norm transformer block, stacked."
---

# 4. The transformer block

Three ideas turn [multi-head attention](/transformers/from_scratch/ch3_multi_head.md) into a transformer.

**The feed-forward network.** Attention moves information between positions; it computes little with it (a
weighted mean). A two-layer network applied to every position on its own, $\text{FFN}(x) = \max(0, x W_1 + b_1)
W_2 + b_2$ with a hidden layer four times wider, lets each position think about what it gathered
([the library's version](/transformers/feed_forward.md)).

**Residual connections.** A block adds its output to its input, $x \leftarrow x + f(x)$, instead of replacing
it. The gradient then reaches every block through the sum unchanged, so a deep stack trains as well as a
shallow one at first, and each block learns a correction
([He et al., 2015](https://arxiv.org/abs/1512.03385)).

**Layer normalisation** ([Ba et al., 2016](https://arxiv.org/abs/1607.06450)) rescales each position's vector
to mean 0 and variance 1 across its features, then applies a learned gain and bias $\gamma, \beta$:

$$\text{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta$$

Here it is **pre-norm**, as in GPT-2 and the original: each sublayer reads a normalised copy of the residual
stream, which itself is never normalised, so a final layer norm comes before the output layer
([pre-norm vs post-norm](/transformers/models.md#TransformerLayer)).

$$x \leftarrow x + \text{MultiHead}(\text{LN}_1(x)), \qquad x \leftarrow x + \text{FFN}(\text{LN}_2(x))$$

With the small recipe, `n_layer` blocks of 4 heads: the original reports about 2.08 with the residual
connections (the [index](/transformers/from_scratch/index.md) has the measured figures).

The code column has a second tab, **JAX/Flax**: the same chapter in JAX with Flax, with the same structure and
names (choose it once and every chapter shows it).
"""

import torch
from torch import nn

from labml_nn.transformers.from_scratch.ch0_infrastructure import Config, run_chapter
from labml_nn.transformers.from_scratch.ch2_self_attention import embed
from labml_nn.transformers.from_scratch.ch3_multi_head import MultiHeadAttention


# ## The feed-forward network
#
# `[batch, seq, n_embd]` to `[batch, seq, 4 n_embd]` and back. The two dropouts (on the hidden layer, and on the
# output before it joins the residual stream) stay off until [chapter 5](/transformers/from_scratch/ch5_gpt.md); they sit where the
# library's GPT puts them.
class FeedForward(nn.Module):
    def __init__(self, n_embd: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ## The block
#
# Communication (attention), then computation (the feed-forward network), each pre-normed and added to the
# residual stream.
class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, n_embd // n_head, dropout, bias)
        self.ffwd = FeedForward(n_embd, dropout)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # $$x + \text{MultiHead}(\text{LN}_1(x))$$
        x = x + self.sa(self.ln1(x))
        # $$x + \text{FFN}(\text{LN}_2(x))$$
        return x + self.ffwd(self.ln2(x))


# ## The model
#
# Embeddings, `n_layer` blocks, the final layer norm and the output layer.
class TransformerLanguageModel(nn.Module):
    def __init__(self, n_vocab: int, config: Config):
        super().__init__()
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(n_vocab, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.Sequential(*[Block(config.n_embd, config.n_head) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, n_vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.blocks(embed(self, ids))
        # `[batch, seq, n_vocab]`
        return self.lm_head(self.ln_f(x))


def build_model(config: Config, n_vocab: int) -> nn.Module:
    return TransformerLanguageModel(n_vocab, config)


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch4_block", build_model, argv)


if __name__ == "__main__":
    main()

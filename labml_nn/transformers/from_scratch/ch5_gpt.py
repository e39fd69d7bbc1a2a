r"""
---
title: "5. Scaling up: the GPT"
summary: "Dropout, a tied output layer and biases in the attention, then the model scaled up: the library's GPT, proved equal by loading this chapter's weights into it."
---

# 5. Scaling up: the GPT

[Chapter 4](/transformers/from_scratch/ch4_block.md)'s model is a transformer. Made bigger (more layers, wider, a longer context) it
overfits Tiny Shakespeare's million characters, so this chapter first adds **dropout**
([Srivastava et al., 2014](https://jmlr.org/papers/v15/srivastava14a.html)): in training, a random fraction of
activations is set to zero (and the rest scaled up to keep the mean), so that no feature can rely on another
being there. It is off in evaluation and sampling. Dropout sits where the library's GPT puts it:

* on the embeddings;
* on the attention weights of each head;
* on each sublayer's output before it joins the residual stream (after $W_O$, after the feed-forward network);
* on the feed-forward network's hidden layer.

The original drops out at three of these places (not the embeddings nor the hidden layer).

Two more changes make the model *the* [GPT](/transformers/gpt/index.md) of this library, GPT-2's architecture:

* **a tied output layer**: the output layer's weight is the token embedding table, one tensor, and has no bias.
  The original keeps a separate output layer with a bias. Tying saves $V \cdot d$ parameters and lets a rare
  character's vector learn from every output ([why](/transformers/gpt/index.md#tied-embeddings));
* **biases in the queries, keys and values**, as GPT-2 has. The original's heads have none.

The weights start as in the original's final script (and GPT-2): $\mathcal{N}(0, 0.02^2)$ for every linear and
embedding weight, zero biases. With a tied table, PyTorch's default $\mathcal{N}(0, 1)$ embedding would start the
logits far too large.

## The scaled-up recipe

The original's GPU model (preset `gpu`): 6 blocks of 6 heads, width 384, context 256, batches of 64, learning
rate $3 \cdot 10^{-4}$, dropout 0.2, 5,000 steps, for a validation loss of 1.48. A CPU can not train it in
reasonable time, so the preset `cpu` is a small version of it (see `PRESETS`); the [index](/transformers/from_scratch/index.md) has what it
measured.

## The same model as the library's GPT

[`to_library_gpt`](#to_library_gpt) copies this chapter's weights into the library's
[`GPT`](/transformers/gpt/index.md#GPT), built from a [`TransformerConfigs`](/transformers/configs.md) that
describes this model; the test suite checks that both give the same logits. The only non-trivial row of the
mapping is attention's: the library projects all heads' queries with one matrix, whose rows are the heads' query
matrices stacked in order (head $h$ gives rows $h d_k$ to $(h + 1) d_k - 1$), and likewise keys and values. The
library then runs all heads at once with PyTorch's fused attention kernel, which is why it is the one to train
at scale.

The code column has a second tab, **JAX/Flax**: the same chapter in JAX with Flax, with the same structure and
names (choose it once and every chapter shows it).
"""

import torch
from torch import nn

from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.from_scratch.ch0_infrastructure import Config, run_chapter
from labml_nn.transformers.from_scratch.ch2_self_attention import embed
from labml_nn.transformers.from_scratch.ch4_block import Block
from labml_nn.transformers.gpt import GPT


# ## The model
#
# Chapter 4's model with dropout on the embeddings, biased heads, and the output layer tied to the token
# embedding table.
class GPTLanguageModel(nn.Module):
    def __init__(self, n_vocab: int, config: Config):
        super().__init__()
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(n_vocab, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.Sequential(*[Block(config.n_embd, config.n_head, config.dropout, bias=True)
                                      for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        # $W_E^\top$: one tensor with the token embedding table, no bias
        self.lm_head = nn.Linear(config.n_embd, n_vocab, bias=False)
        self.lm_head.weight = self.token_embedding_table.weight
        self.apply(init_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.dropout(embed(self, ids)))
        # `[batch, seq, n_vocab]`
        return self.lm_head(self.ln_f(x))


# ## The initialisation
#
# By module type, $\mathcal{N}(0, 0.02^2)$ and zero biases; layer norms keep PyTorch's unit gain and zero bias.
def init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def build_model(config: Config, n_vocab: int) -> nn.Module:
    return GPTLanguageModel(n_vocab, config)


# ## The recipes
#
# `gpu` is the original's scaled-up model. `cpu` keeps its shape (blocks of heads with dropout, a context much
# longer than chapter 4's) at a size a laptop trains in minutes. `tiny` is for smoke tests.
PRESETS = {
    "gpu": Config(batch_size=64, block_size=256, max_steps=5000, eval_interval=500, eval_iters=200, lr=3e-4,
                  n_embd=384, n_head=6, n_layer=6, dropout=0.2),
    "cpu": Config(batch_size=16, block_size=64, max_steps=2000, eval_interval=250, eval_iters=50, lr=1e-3,
                  n_embd=64, n_head=4, n_layer=4, dropout=0.1),
    "tiny": Config(batch_size=4, block_size=8, max_steps=2, eval_interval=1, eval_iters=2, n_embd=16, n_head=2,
                   n_layer=1, dropout=0.1, sample_chars=20),
}


# <a id="to_library_gpt"></a>
#
# ## Into the library's GPT
#
# The configuration that describes this model: learned positions, unscaled embeddings (GPT-2's), a ReLU
# feed-forward network four times wider, pre-norm, the same dropout everywhere.
def library_configs(config: Config, n_vocab: int) -> TransformerConfigs:
    return TransformerConfigs(n_layers=config.n_layer, d_model=config.n_embd, n_heads=config.n_head,
                              d_ff=4 * config.n_embd, dropout=config.dropout, n_src_vocab=n_vocab,
                              max_len=config.block_size, positional="learned", ffn_activation="relu",
                              pre_norm=True, scale_embeddings=False)


# The weights under the library's names. Per block: the heads' query, key and value matrices `[head_size, n_embd]`
# stacked into `[n_head * head_size, n_embd]`, and the other layers one to one.
def library_state_dict(model: GPTLanguageModel) -> dict[str, torch.Tensor]:
    state = {
        "embed.embeddings.weight": model.token_embedding_table.weight,
        "embed.positional_encodings": model.position_embedding_table.weight,
        "head.weight": model.lm_head.weight,
        "encoder.norm.weight": model.ln_f.weight,
        "encoder.norm.bias": model.ln_f.bias,
    }
    for i, block in enumerate(model.blocks):
        layer = f"encoder.layers.{i}."
        for name in ("query", "key", "value"):
            for kind in ("weight", "bias"):
                state[f"{layer}self_attn.{name}.{kind}"] = torch.cat(
                    [getattr(getattr(head, name), kind) for head in block.sa.heads])
        pairs = {"self_attn.output": block.sa.proj, "feed_forward.layer1": block.ffwd.net[0],
                 "feed_forward.layer2": block.ffwd.net[3], "norm_self_attn": block.ln1, "norm_ff": block.ln2}
        for ours, module in pairs.items():
            state[f"{layer}{ours}.weight"] = module.weight
            state[f"{layer}{ours}.bias"] = module.bias
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def to_library_gpt(model: GPTLanguageModel, config: Config, n_vocab: int) -> GPT:
    """The library's `GPT` with `model`'s weights; every weight of the GPT must be given (strict)."""
    gpt = GPT(library_configs(config, n_vocab))
    gpt.load_state_dict(library_state_dict(model), strict=True)
    return gpt.to(model.lm_head.weight.device)


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch5_gpt", build_model, argv, PRESETS)


if __name__ == "__main__":
    main()

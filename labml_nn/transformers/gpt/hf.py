r"""
---
title: GPT-2 checkpoints
summary: Loading Hugging Face's GPT-2 checkpoints (config.json and model.safetensors) into this package's GPT, strictly, with the name map between their tensors and ours, and what GPT-2 needs that the default GPT does not.
---

# GPT-2 checkpoints

nanoGPT loads OpenAI's weights with `GPT.from_pretrained('gpt2')`, which downloads them. Here the download is
yours, once (for instance `huggingface-cli download gpt2 config.json model.safetensors --local-dir gpt2`), and
[`load_hf`](#load_hf) reads the directory offline:

```python
import torch
from labml_nn.transformers.gpt import load_hf

model = load_hf("gpt2")  # a GPT in evaluation mode, float32, on the CPU
# "Hello, my dog is" in GPT-2's byte-pair tokens (tiktoken.get_encoding("gpt2") encodes and decodes text)
tokens = torch.tensor([[15496, 11, 616, 3290, 318]])
out = model.generate(tokens, 20, temperature=0.8, top_k=50, eos_token_id=50256)  # 50256: <|endoftext|>
```

It reads the two files Hugging Face writes: `config.json`, the hyper-parameters of `GPT2Config`, and
`model.safetensors`, the tensors by name (`pytorch_model.bin` and sharded files are read too; see
[the reader](/transformers/hf_checkpoints.md#read_tensors)).

## What GPT-2 is, in this package's terms

GPT-2 is the [GPT](/transformers/gpt/index.md) of this package with these choices of its
[configuration](/transformers/configs.md#TransformerConfigs): learned positions (`positional="learned"`),
token embeddings not scaled by $\sqrt{d_{model}}$ (`scale_embeddings=False`), pre-norm layers with a final layer
normalisation, the output layer tied to the token embeddings, and biases on every linear layer but the output
layer: the query, key, value and output projections of attention and both layers of the feed-forward network,
which is what `MultiHeadAttention` and `FeedForward` have by default. Two details needed options of their own,
added to the configuration with defaults that keep every other model as it was:

* **The GELU.** GPT-2's code computes the GELU with its tanh approximation,
  $\frac{z}{2}\big(1 + \tanh(\sqrt{2/\pi}\,(z + 0.044715 z^3))\big)$ (Hugging Face's `gelu_new`), not the exact
  $z\,\Phi(z)$ that `nn.GELU()` computes. They differ by up to $5 \cdot 10^{-4}$, enough to move the logits of a
  12-layer model visibly, so `ffn_activation="gelu_tanh"` builds `nn.GELU(approximate="tanh")`.
* **The layer norms' $\epsilon$** is `layer_norm_epsilon` in `config.json`, $10^{-5}$ for OpenAI's models and
  PyTorch's default; `norm_eps` carries any other value.

Our GPT takes no attention mask: where Hugging Face's model gets an `attention_mask` for a batch of prompts of
different lengths, ours needs the rows padded on the right, and then the logits at every real position are the
same, because no position attends to the padding after it.

What is not the same, and does not change the outputs in evaluation mode: GPT-2 has three dropout rates
(embeddings, attention weights, residual branches) where `TransformerConfigs` has one, so they must be equal (or
`dropout` given to `load_hf`); and our feed-forward network also drops out its hidden layer when training.

## The name map

Hugging Face's `GPT2LMHeadModel` names its tensors `transformer.h.{i}.attn.c_attn.weight` and so on (a bare
`GPT2Model`, such as OpenAI's original upload, has the same names without `transformer.`). Their linear layers
are `Conv1D` modules, which store $W$ as `[in, out]` and compute $xW$, where `nn.Linear` stores `[out, in]`;
so every matrix is transposed. `c_attn` holds $[W^Q\ W^K\ W^V]$ side by side, cut into our three projections
(both lay each projection out head by head, so no permutation is needed).

| ours | theirs | transform |
|---|---|---|
| `embed.embeddings.weight` (also `head.weight`, tied) | `wte.weight` | |
| `embed.positional_encodings` | `wpe.weight` | |
| `encoder.layers.{i}.norm_self_attn` | `h.{i}.ln_1` | |
| `...self_attn.query`, `.key`, `.value` | `h.{i}.attn.c_attn` | transpose, split in three |
| `...self_attn.output` | `h.{i}.attn.c_proj` | transpose |
| `...norm_ff` | `h.{i}.ln_2` | |
| `...feed_forward.layer1`, `.layer2` | `h.{i}.mlp.c_fc`, `h.{i}.mlp.c_proj` | transpose |
| `encoder.norm` | `ln_f` | |
| (none) | `lm_head.weight`, `h.{i}.attn.bias`, `h.{i}.attn.masked_bias` | dropped, see below |

The [strict walk](/transformers/hf_checkpoints.md#load_table) of the table makes any tensor left over, any of ours
left unfilled and any shape that does not match an error naming the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.gpt import GPT
from labml_nn.transformers.hf_checkpoints import (Row, config_from_dict, load_table, read_config, read_tensors,
                                                  split, transpose)

__all__ = ["GPT2Config", "gpt2_table", "load_hf", "HF_ACTIVATIONS"]

# <a id="HF_ACTIVATIONS"></a>
#
# ## GPT-2's activations
#
# The names Hugging Face's configurations use, and ours. Five of theirs are the tanh approximation written in
# different ways (they agree to float32 rounding); two are the exact GELU. Any other, such as `quick_gelu`
# ($z\,\sigma(1.702 z)$), is an error rather than a model that runs with the wrong function.
HF_ACTIVATIONS = {
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh", "gelu_accurate": "gelu_tanh",
    "gelu": "gelu", "gelu_python": "gelu",
    "relu": "relu",
}


# ## The configuration
#
# The fields of Hugging Face's `GPT2Config` that decide the model, under their names, validated; `config.json`
# is read into it strictly (an unknown key is an error, see
# [`config_from_dict`](/transformers/hf_checkpoints.md#config_from_dict)). Options of GPT-2's code that change
# the computation and that our GPT does not have are accepted only at the value that leaves them off.
@dataclass
class GPT2Config:
    r"""
    Arguments (Hugging Face's names):
        vocab_size: number of tokens (50257 for OpenAI's models).
        n_positions: the context length, the number of learned positions.
        n_embd: $d_{model}$.
        n_layer: number of layers.
        n_head: number of attention heads.
        n_inner: the feed-forward network's hidden width; `None` means $4 d_{model}$.
        activation_function: one of [`HF_ACTIVATIONS`](#HF_ACTIVATIONS).
        resid_pdrop, embd_pdrop, attn_pdrop: dropout on residual branches, embeddings and attention weights.
        layer_norm_epsilon: the $\epsilon$ of every layer normalisation.
        initializer_range: the $\sigma$ of the initialisation (used only before the weights are loaded).
        n_ctx: an old name for `n_positions`, kept by older files; must equal it.
        scale_attn_weights: divide scores by $\sqrt{d_{head}}$; must be true.
        scale_attn_by_inverse_layer_idx: also divide by the layer's number (Stanford CRFM's Mistral runs); must be false.
        reorder_and_upcast_attn: compute the scores in float32 under autocast; no effect on float32 weights.
        add_cross_attention: attention over an encoder; must be false.
        tie_word_embeddings: the output layer is the token embedding; must be true.
    """
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    n_ctx: int | None = None
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True

    def __post_init__(self):
        if self.activation_function not in HF_ACTIVATIONS:
            raise ValueError(f"activation_function {self.activation_function!r} is not supported; "
                             f"supported: {', '.join(HF_ACTIVATIONS)}")
        if isinstance(self.initializer_range, bool) or not isinstance(self.initializer_range, (int, float)) \
                or not 0 < self.initializer_range < math.inf:
            raise ValueError(f"initializer_range must be a positive number, got {self.initializer_range!r}")
        if self.n_ctx is not None and self.n_ctx != self.n_positions:
            raise ValueError(f"n_ctx ({self.n_ctx}) differs from n_positions ({self.n_positions}); "
                             f"only n_ctx = n_positions is supported")
        for name, allowed in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                              ("add_cross_attention", False), ("tie_word_embeddings", True)):
            if getattr(self, name) is not allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not supported: our GPT needs {name}={allowed}")

    # ### Our configuration
    #
    # Field by field. The three dropout rates become our one, which must then be the same for all three unless
    # `dropout` chooses it. The other fields are validated by `TransformerConfigs` itself.
    def to_transformer_configs(self, dropout: float | None = None) -> TransformerConfigs:
        """The [`TransformerConfigs`](/transformers/configs.md#TransformerConfigs) of the same model."""
        if dropout is None:
            rates = {self.resid_pdrop, self.embd_pdrop, self.attn_pdrop}
            if len(rates) != 1:
                raise ValueError(f"resid_pdrop ({self.resid_pdrop}), embd_pdrop ({self.embd_pdrop}) and attn_pdrop "
                                 f"({self.attn_pdrop}) differ, and our GPT has one dropout rate: pass dropout=...")
            dropout = rates.pop()
        return TransformerConfigs(
            n_layers=self.n_layer, d_model=self.n_embd, n_heads=self.n_head,
            d_ff=4 * self.n_embd if self.n_inner is None else self.n_inner, dropout=dropout,
            n_src_vocab=self.vocab_size, max_len=self.n_positions, positional="learned",
            ffn_activation=HF_ACTIVATIONS[self.activation_function], pre_norm=True, scale_embeddings=False,
            norm_eps=self.layer_norm_epsilon)


# Keys of `config.json` that say nothing about the model's computation: the special token ids (the tokenizer's
# business), the heads of `GPT2DoubleHeadsModel` (`summary_*`), generation defaults, and old flags.
IGNORED_KEYS = frozenset({
    "pad_token_id", "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
    "summary_first_dropout", "task_specific_params", "gradient_checkpointing", "output_past", "_num_labels",
})


# ## The table
#
# One block of rows per layer, then the embeddings and the final layer normalisation; `prefix` is
# `transformer.` for `GPT2LMHeadModel`'s files and empty for `GPT2Model`'s. The rows with no name of ours read
# tensors that some files have and we do not need:
#
# * `lm_head.weight`, the output matrix, which is the token embedding (`load_hf` checks that it is);
# * `attn.bias`, the causal mask as a `[1, 1, n_positions, n_positions]` buffer, and `attn.masked_bias`, the
#   large negative number written into masked scores; older versions of `transformers` saved both with the
#   weights. Our attention builds its causal mask (or lets the kernel apply it).
def gpt2_table(n_layers: int, d_model: int, prefix: str = "transformer.") -> list[Row]:
    """The name map between our [`GPT`](/transformers/gpt/index.md#GPT) and GPT-2's tensors."""
    # $[W^Q\ W^K\ W^V]$ to our three projections: the bias `[3 d_model]` is cut in three; the weight
    # `[d_model, 3 d_model]` is first transposed to `[3 d_model, d_model]`.
    qkv = split(d_model, d_model, d_model)

    def qkv_weights(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return qkv(transpose(tensor))

    p = prefix
    rows = [Row("embed.embeddings.weight", f"{p}wte.weight", note="also head.weight: one tensor"),
            Row("embed.positional_encodings", f"{p}wpe.weight")]
    for i in range(n_layers):
        ours, theirs = f"encoder.layers.{i}", f"{p}h.{i}"
        rows += [
            Row(f"{ours}.norm_self_attn.weight", f"{theirs}.ln_1.weight"),
            Row(f"{ours}.norm_self_attn.bias", f"{theirs}.ln_1.bias"),
            Row(tuple(f"{ours}.self_attn.{name}.weight" for name in ("query", "key", "value")),
                f"{theirs}.attn.c_attn.weight", qkv_weights),
            Row(tuple(f"{ours}.self_attn.{name}.bias" for name in ("query", "key", "value")),
                f"{theirs}.attn.c_attn.bias", qkv),
            Row(f"{ours}.self_attn.output.weight", f"{theirs}.attn.c_proj.weight", transpose),
            Row(f"{ours}.self_attn.output.bias", f"{theirs}.attn.c_proj.bias"),
            Row(f"{ours}.norm_ff.weight", f"{theirs}.ln_2.weight"),
            Row(f"{ours}.norm_ff.bias", f"{theirs}.ln_2.bias"),
            Row(f"{ours}.feed_forward.layer1.weight", f"{theirs}.mlp.c_fc.weight", transpose),
            Row(f"{ours}.feed_forward.layer1.bias", f"{theirs}.mlp.c_fc.bias"),
            Row(f"{ours}.feed_forward.layer2.weight", f"{theirs}.mlp.c_proj.weight", transpose),
            Row(f"{ours}.feed_forward.layer2.bias", f"{theirs}.mlp.c_proj.bias"),
            Row((), f"{theirs}.attn.bias", note="the causal mask, a buffer: ours is built", optional=True),
            Row((), f"{theirs}.attn.masked_bias", note="the masked score, a buffer: ours is -inf", optional=True),
        ]
    rows += [Row("encoder.norm.weight", f"{p}ln_f.weight"),
             Row("encoder.norm.bias", f"{p}ln_f.bias"),
             Row((), "lm_head.weight", note="tied: the same matrix as wte.weight, checked", optional=True)]
    return rows


# <a id="load_hf"></a>
#
# ## Loading
#
# Read and validate the configuration, build our GPT from it, pick the prefix by which names the file has, and
# walk the table. The model comes back in evaluation mode (dropout off), as `from_pretrained` returns it.
def load_hf(model_dir: str | Path, *, dropout: float | None = None) -> GPT:
    """
    Load a Hugging Face GPT-2 checkpoint directory (`config.json` and `model.safetensors`) into a
    [`GPT`](/transformers/gpt/index.md#GPT), in evaluation mode, float32, on the CPU.

    `dropout` sets the model's one dropout rate (for fine-tuning) when the file's three rates differ.
    Raises `FileNotFoundError` for missing files and `ValueError`, naming the file and the field or tensor, for
    anything that does not match.
    """
    values, config_path = read_config(model_dir)
    config = config_from_dict(GPT2Config, values, config_path, ignored=IGNORED_KEYS)
    try:
        configs = config.to_transformer_configs(dropout)
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from error
    model = GPT(configs, init_std=config.initializer_range)

    tensors, source = read_tensors(model_dir)
    prefix = "transformer." if "transformer.wte.weight" in tensors else ""
    load_table(model, gpt2_table(config.n_layer, config.n_embd, prefix), tensors, source)
    if "lm_head.weight" in tensors and not torch.equal(tensors["lm_head.weight"], tensors[f"{prefix}wte.weight"]):
        raise ValueError(f"{source}: 'lm_head.weight' differs from '{prefix}wte.weight', but config.json says "
                         f"tie_word_embeddings=true and our GPT's output layer is the token embedding")
    return model.eval()

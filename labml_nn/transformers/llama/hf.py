r"""
---
title: Llama from Hugging Face checkpoints
summary: Load a Hugging Face LlamaForCausalLM checkpoint into Meta's Llama layout, undoing the permutation of the query and key weights that Hugging Face's rotate-half rotary embedding needs.
---

# Llama from Hugging Face checkpoints

Most Llama-family checkpoints are shared in Hugging Face's layout: `config.json` with Hugging Face's field names
and `model.safetensors` with theirs (`model.layers.3.self_attn.q_proj.weight` where Meta writes
`layers.3.attention.wq.weight`). [`load_hf`](#load_hf) reads them into this package's
[Llama](/transformers/llama/index.md), which keeps Meta's names. It is two tables: the
[configuration's fields](#args_from_hf) and the [tensors' names](#llama_rows), walked strictly by
[`hf_checkpoints`](/transformers/hf_checkpoints.md). [Mixtral](/transformers/moe/mixtral.md) (and any other
Llama-family model) uses both and adds its own rows.

## The one tensor that is not a rename: the rotary pairing

Meta's Llama rotates the *interleaved* pairs of features of each query and key head, $(x_{2i}, x_{2i+1})$ by the
angle $m\theta_i$. Hugging Face's implementation rotates the *halves*: feature $i$ with feature $i + d/2$, by
the same angle $m\theta_i$ ([the rope page](/transformers/rope/index.md) shows both). When Meta's weights were
converted, the rows of $W^Q$ and $W^K$ were permuted within each head so that the two pairings compute the same
thing: the row that gave feature $2i$ became row $i$, and the row that gave $2i+1$ became row $i + d/2$,

$$W^{HF}_{h,\, c \cdot d/2 + i} = W^{Meta}_{h,\, 2i + c}, \quad c \in \{0, 1\},\ i < d/2.$$

Then Hugging Face's pair $(i, i + d/2)$ holds exactly Meta's pair $(2i, 2i+1)$ and turns by the same angle. The
attention scores do not see the difference: $q \cdot k$ sums over features, and the same permutation applied to
both $q$ and $k$ only reorders the terms. The values and $W^O$ are not rotated and are not permuted.

Loading goes the other way: [`unpermute_rotate_half`](#unpermute_rotate_half) takes
$W^{Meta}_{h,\, 2i + c} = W^{HF}_{h,\, c \cdot d/2 + i}$, a reshape and a transpose. A model trained in
Hugging Face's layout from scratch was never permuted, but since the two pairings are equivalent up to this
permutation, the same transform loads it correctly too: the tests compare logits with Hugging Face's own model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from labml_nn.transformers.hf_checkpoints import (HF_BOOKKEEPING_KEYS, Row, load_table, read_config,
                                                  read_tensors)

__all__ = ["unpermute_rotate_half", "args_from_hf", "llama_rows", "load_hf"]


# ## The permutation
#
# `weight` is `[heads * head_dim, dim]` in Hugging Face's order. Per head, its rows are $c \cdot d/2 + i$: a
# `[2, d/2]` grid. Transposing the grid to `[d/2, 2]` puts row $c \cdot d/2 + i$ at $2i + c$.
def unpermute_rotate_half(n_heads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A transform from Hugging Face's rotate-half row order of a query or key projection to Meta's interleaved one."""
    def unpermute(weight: torch.Tensor) -> torch.Tensor:
        rows, dim = weight.shape
        if rows % (2 * n_heads) != 0:
            raise ValueError(f"{rows} rows are not {n_heads} heads of an even width")
        head_dim = rows // n_heads
        # `[heads * head_dim, dim]` to `[heads, 2, head_dim / 2, dim]`: row $c \cdot d/2 + i$ of each head at $(c, i)$
        grid = weight.reshape(n_heads, 2, head_dim // 2, dim)
        # `[heads, head_dim / 2, 2, dim]` to `[heads * head_dim, dim]`: $(i, c)$ is row $2i + c$
        return grid.transpose(1, 2).reshape(rows, dim)
    return unpermute


# ## The configuration
#
# Each field of Hugging Face's `LlamaConfig` is mapped, checked or named as harmless, explicitly; a field not
# listed is an error, as is a value this model does not implement (biases in attention or the feed-forward,
# an activation other than SiLU, a head width other than `dim / heads`, a rotary scaling other than Llama 3's).
#
# | theirs | ours |
# |---|---|
# | `hidden_size`, `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads`, `vocab_size` | `dim`, `n_layers`, `n_heads`, `n_kv_heads`, `vocab_size` |
# | `intermediate_size` | `ffn_hidden_dim` |
# | `rms_norm_eps` | `norm_eps` |
# | `rope_parameters` (or the older `rope_theta` and `rope_scaling`) | `rope_theta`; with `rope_type: llama3`, `use_scaled_rope` and `factor`, `low_freq_factor`, `high_freq_factor`, `original_max_position_embeddings` as `rope_scale_factor`, ... |
# | `max_position_embeddings` | `max_seq_len` (unless overridden) |
# | `tie_word_embeddings` | the output matrix is the embedding matrix |
#
# The result is the keyword arguments of [`ModelArgs`](/transformers/llama/index.md#ModelArgs), the tying flag
# and what is left of `config` for a family to map (Mixtral's experts); `harmless` names fields a family knows to
# be irrelevant to the forward pass.
HARMLESS = frozenset({"initializer_range", "pad_token_id", "pretraining_tp", "attention_dropout"})


def args_from_hf(config: dict, path: str | Path) -> tuple[dict, bool, dict]:
    """Map Hugging Face Llama `config` (read from `path`) to `ModelArgs` keywords; returns them, whether the
    embeddings are tied, and the fields not consumed. Unsupported values raise `ValueError` naming `path`."""
    config = {key: value for key, value in config.items() if key not in HF_BOOKKEEPING_KEYS | HARMLESS}

    def take(name: str, default=None, required: bool = True):
        if name not in config and required and default is None:
            raise ValueError(f"{path}: missing field {name!r}")
        return config.pop(name, default)

    def expect(name: str, allowed, meaning: str):
        value = config.pop(name, allowed[0])
        if value not in allowed:
            raise ValueError(f"{path}: {name}={value!r} is not supported: {meaning}")

    args = {"dim": take("hidden_size"), "n_layers": take("num_hidden_layers"), "n_heads": take("num_attention_heads"),
            "vocab_size": take("vocab_size"), "ffn_hidden_dim": take("intermediate_size"),
            "norm_eps": take("rms_norm_eps", 1e-6)}
    args["n_kv_heads"] = take("num_key_value_heads", args["n_heads"])
    max_positions = take("max_position_embeddings", required=False)
    if max_positions is not None:
        args["max_seq_len"] = max_positions
    expect("hidden_act", ["silu"], "the feed-forward network is SwiGLU")
    expect("attention_bias", [False], "the attention projections have no biases")
    expect("mlp_bias", [False], "the feed-forward projections have no biases")
    head_dim = config.pop("head_dim", None)
    if head_dim is not None and isinstance(args["dim"], int) and isinstance(args["n_heads"], int) \
            and head_dim * args["n_heads"] != args["dim"]:
        raise ValueError(f"{path}: head_dim={head_dim} is not supported: the head width is "
                         f"hidden_size / num_attention_heads = {args['dim'] // args['n_heads']}")
    args.update(_rope_args(config, path))
    tied = config.pop("tie_word_embeddings", False)
    if not isinstance(tied, bool):
        raise ValueError(f"{path}: tie_word_embeddings must be true or false, got {tied!r}")
    return args, tied, config


# The rotary settings moved between versions of `transformers`: version 5 writes one `rope_parameters` object
# (with `rope_theta` inside), earlier versions a top-level `rope_theta` and a `rope_scaling` object (whose kind
# is `rope_type`, or `type` in older files still). Both are read.
def _rope_args(config: dict, path: str | Path) -> dict:
    rope = dict(config.pop("rope_parameters", None) or {})
    rope.update(config.pop("rope_scaling", None) or {})
    if "rope_theta" in config:
        rope.setdefault("rope_theta", config.pop("rope_theta"))
    kind = rope.pop("rope_type", rope.pop("type", "default"))
    args = {"rope_theta": rope.pop("rope_theta", 10000.0)}
    if kind == "llama3":
        args["use_scaled_rope"] = True
        for theirs, ours in (("factor", "rope_scale_factor"), ("low_freq_factor", "rope_low_freq_factor"),
                             ("high_freq_factor", "rope_high_freq_factor"),
                             ("original_max_position_embeddings", "rope_original_context")):
            if theirs not in rope:
                raise ValueError(f"{path}: llama3 rotary scaling without {theirs!r}")
            args[ours] = rope.pop(theirs)
    elif kind != "default":
        raise ValueError(f"{path}: rotary scaling of type {kind!r} is not implemented (only 'default' and 'llama3')")
    if rope:
        raise ValueError(f"{path}: unknown rotary parameter(s) {sorted(rope)} for rope_type {kind!r}")
    return args


# ## The tensors
#
# One row per tensor of the attention, the norms, the embeddings and the output; `feed_forward=False` leaves
# out the feed-forward rows, for a family whose feed-forward network differs. The rotary tables
# (`rotary_emb.inv_freq`) that older files hold are recomputed from the configuration, and are read and dropped.
def llama_rows(n_layers: int, n_heads: int, n_kv_heads: int, *, tied: bool, feed_forward: bool = True) -> list[Row]:
    """The name map of a Hugging Face Llama checkpoint to Meta's names."""
    rows = [Row("tok_embeddings.weight", "model.embed_tokens.weight"), Row("norm.weight", "model.norm.weight")]
    if not tied:
        rows.append(Row("output.weight", "lm_head.weight"))
    for i in range(n_layers):
        ours, theirs = f"layers.{i}", f"model.layers.{i}"
        rows += [
            Row(f"{ours}.attention.wq.weight", f"{theirs}.self_attn.q_proj.weight", unpermute_rotate_half(n_heads)),
            Row(f"{ours}.attention.wk.weight", f"{theirs}.self_attn.k_proj.weight", unpermute_rotate_half(n_kv_heads)),
            Row(f"{ours}.attention.wv.weight", f"{theirs}.self_attn.v_proj.weight"),
            Row(f"{ours}.attention.wo.weight", f"{theirs}.self_attn.o_proj.weight"),
            Row(f"{ours}.attention_norm.weight", f"{theirs}.input_layernorm.weight"),
            Row(f"{ours}.ffn_norm.weight", f"{theirs}.post_attention_layernorm.weight"),
            Row((), f"{theirs}.self_attn.rotary_emb.inv_freq", note="recomputed from the configuration",
                optional=True),
        ]
        if feed_forward:
            rows += [Row(f"{ours}.feed_forward.w1.weight", f"{theirs}.mlp.gate_proj.weight"),
                     Row(f"{ours}.feed_forward.w2.weight", f"{theirs}.mlp.down_proj.weight"),
                     Row(f"{ours}.feed_forward.w3.weight", f"{theirs}.mlp.up_proj.weight")]
    return rows


# ## Loading
#
# `overrides` sets fields of `ModelArgs`, typically `max_batch_size` and `max_seq_len` (which size the key/value
# caches; without an override `max_seq_len` is the checkpoint's `max_position_embeddings`). With tied
# embeddings the output matrix *is* the embedding matrix, one tensor, filled once.
def load_hf(model_dir: str | Path, **overrides):
    """The Llama [`Transformer`](/transformers/llama/index.md#Transformer) of a Hugging Face `LlamaForCausalLM`
    directory (`config.json` and `model.safetensors`), in float32 unless the weights are moved afterwards."""
    from labml_nn.transformers.llama import ModelArgs, Transformer
    config, path = read_config(model_dir)
    args, tied, rest = args_from_hf(config, path)
    if rest:
        raise ValueError(f"{path}: unknown field(s) {sorted(rest)} for a Llama checkpoint")
    try:
        model_args = ModelArgs(**{**args, **overrides})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error
    model = Transformer(model_args)
    if tied:
        model.output.weight = model.tok_embeddings.weight
    tensors, source = read_tensors(model_dir)
    load_table(model, llama_rows(model_args.n_layers, model_args.n_heads, model_args.n_kv_heads, tied=tied),
               tensors, source)
    return model.eval()

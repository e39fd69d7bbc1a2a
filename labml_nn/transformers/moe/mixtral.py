r"""
---
title: Mixtral
summary: Mixtral of experts, the Llama block with its feed-forward network replaced by a top-2 mixture of eight SwiGLU experts, loading Hugging Face's Mixtral checkpoints.
---

# Mixtral

[Mixtral of Experts](https://arxiv.org/abs/2401.04088) (Mistral AI, 2024) is a [Llama](/transformers/llama/index.md)
whose feed-forward networks are each replaced by a [mixture of experts](/transformers/moe/index.md): eight SwiGLU
experts, two per token. Mixtral 8x7B has 47B parameters and uses 13B per token.

| | Llama | Mixtral |
|---|---|---|
| Feed-forward | one SwiGLU | [`MoE`](/transformers/moe/index.md#MoE): $E = 8$ SwiGLU experts of the same width, top-2 router, softmax over the two chosen logits |
| Loss in training | next-token cross-entropy | plus the load-balancing loss of every layer |
| Everything else | RMSNorm, grouped-query attention, rotary embeddings, key/value cache | the same |

Here that is literal: [`MixtralBlock`](#MixtralBlock) is Llama's
[`TransformerBlock`](/transformers/llama/index.md#TransformerBlock) with one method overridden, the one that builds
the feed-forward network, and [`Mixtral`](#Mixtral) is Llama's `Transformer` with that block. Attention, the norms,
the rotary embeddings and the cache, and with them cached generation, are Llama's. Mixtral's router is the
[default order](/transformers/moe/index.md#Router), which is Hugging Face's softmax, top-2, renormalise.

Checkpoints in Hugging Face's layout load with [`load_hf`](#load_hf): Llama's
[configuration map and name map](/transformers/llama/hf.md), including the permutation that brings the query and
key weights back to Meta's interleaved rotary pairs, plus the rows of the experts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.hf_checkpoints import Row, load_table, read_config, read_tensors
from labml_nn.transformers.llama import KVCache, ModelArgs, Transformer, TransformerBlock
from labml_nn.transformers.llama.hf import args_from_hf, llama_rows
from labml_nn.transformers.moe import MoE, MoEStats

__all__ = ["MixtralArgs", "MixtralBlock", "Mixtral", "load_hf"]


# ## Model arguments
#
# Llama's, with the experts' settings. The feed-forward hidden width (`ffn_hidden_dim`, or Meta's rule) is each
# expert's. Mixtral 8x7B: `dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_hidden_dim=14336, n_experts=8,
# top_k=2, rope_theta=1e6`.
@dataclass(kw_only=True)
class MixtralArgs(ModelArgs):
    """
    Arguments (besides [Llama's](/transformers/llama/index.md#ModelArgs)):
        n_experts: experts per layer.
        top_k: experts per token.
        aux_loss_coeff: coefficient of each layer's load-balancing loss in `forward_loss`.
        z_loss_coeff: coefficient of each layer's router z-loss in `forward_loss`.
        router_jitter: the router's input jitter in training.
        capacity_factor: `None` (dropless, as Mixtral) or the experts' capacity factor.
    """
    n_experts: int = 8
    top_k: int = 2
    aux_loss_coeff: float = 1e-2
    z_loss_coeff: float = 0.0
    router_jitter: float = 0.0
    capacity_factor: float | None = None

    # The ranges of the experts' fields are checked by `MoE` itself, when the model is built.
    def __post_init__(self):
        super().__post_init__()
        for name in ("n_experts", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k ({self.top_k}) must be at most n_experts ({self.n_experts})")


# ## The block
#
# Llama's block with an [`MoE`](/transformers/moe/index.md#MoE) as its feed-forward network. The layer returns its
# output and its [statistics](/transformers/moe/index.md#MoEStats); the block adds the output to the residual
# stream and, when the caller passes a list as `stats`, appends the statistics to it. Without one (Llama's
# `forward_inference` calls the block as a Llama block) they are dropped.
class MixtralBlock(TransformerBlock):
    """A Llama block whose `feed_forward` is a mixture of experts."""

    def build_feed_forward(self, args: MixtralArgs) -> nn.Module:
        return MoE(args.dim, args.hidden_dim, args.n_experts, args.top_k, activation="swiglu",
                   capacity_factor=args.capacity_factor, aux_loss_coeff=args.aux_loss_coeff,
                   z_loss_coeff=args.z_loss_coeff, jitter=args.router_jitter)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, cache: KVCache | None = None, start_pos: int = 0,
                mask: torch.Tensor | None = None, stats: list[MoEStats] | None = None) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis, cache, start_pos, mask)
        y, layer_stats = self.feed_forward(self.ffn_norm(h))
        if stats is not None:
            stats.append(layer_stats)
        return h + y


# ## The model
#
# Llama's `Transformer` with Mixtral's block; its `forward_inference` (generation with the cache) is inherited as
# it is. What changes:
#
# * the initialisation, where the experts' stacked weights take the place of `feed_forward.w2` and friends;
# * `forward_with_stats`, the whole-sequence forward pass that also returns each layer's statistics, and `forward`,
#   which keeps the logits;
# * `forward_loss`, the cross-entropy plus every layer's auxiliary losses (already scaled by their coefficients).
class Mixtral(Transformer):
    """Mixtral: Llama with [`MixtralBlock`](#MixtralBlock)s."""

    block = MixtralBlock

    def __init__(self, args: MixtralArgs):
        if not isinstance(args, MixtralArgs):
            raise ValueError(f"Mixtral needs MixtralArgs, got {type(args).__name__}")
        super().__init__(args)

    # ### Initialisation
    #
    # As Llama's: $\mathcal{N}(0, 0.02^2)$ for every matrix, the experts' included, gains at one, and the matrices
    # that write into the residual stream (`wo` and each expert's `w2`) scaled down by $\sqrt{2 n_{layers}}$.
    def init_weights(self) -> None:
        super().init_weights()
        for layer in self.layers:
            for weight in (layer.feed_forward.experts.w1, layer.feed_forward.experts.w3):
                nn.init.normal_(weight, mean=0.0, std=0.02)

    def residual_weights(self, layer: nn.Module) -> tuple[torch.Tensor, ...]:
        return layer.attention.wo.weight, layer.feed_forward.experts.w2

    def forward_with_stats(self, tokens: torch.Tensor) -> tuple[torch.Tensor, list[MoEStats]]:
        """Logits `[batch, seq, vocab_size]` of `tokens` `[batch, seq]`, and each layer's `MoEStats`."""
        self._check_tokens(tokens, 0)
        h = self.tok_embeddings(tokens)
        freqs_cis = self.rotations(0, tokens.shape[1], h.device)
        stats: list[MoEStats] = []
        for layer in self.layers:
            h = layer(h, freqs_cis, stats=stats)
        return self.output(self.norm(h)), stats

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits `[batch, seq, vocab_size]` for `tokens` `[batch, seq]`."""
        return self.forward_with_stats(tokens)[0]

    # $$\mathcal{L} = \mathcal{L}_{CE} + \sum_{\text{layers}} \big(\alpha\,\mathcal{L}_{aux} + \beta\,\mathcal{L}_z\big)$$
    def forward_loss(self, inputs: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Next-token cross-entropy of `inputs` against `targets` (`[batch, seq]`) plus the layers' auxiliary losses."""
        if targets.shape != inputs.shape:
            raise ValueError(f"targets must have the shape of inputs {list(inputs.shape)}, got {list(targets.shape)}")
        logits, stats = self.forward_with_stats(inputs)
        # `[batch, seq, vocab]` to `[batch * seq, vocab]`
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
        return loss + sum(s.aux_loss + s.z_loss for s in stats)


# ## Loading Hugging Face's Mixtral
#
# The configuration is Llama's (`args_from_hf`) plus:
#
# | theirs | ours |
# |---|---|
# | `num_local_experts`, `num_experts_per_tok` | `n_experts`, `top_k` |
# | `router_aux_loss_coef` | `aux_loss_coeff` $= k \cdot$ it: Hugging Face's load-balancing loss is [$k$ times ours](/transformers/moe/index.md#load_balancing_loss), so each layer's term has the same size (Hugging Face computes one loss over the layers' averaged loads, we sum the layers' losses, as Megatron-LM) |
# | `router_jitter_noise` | `router_jitter` (Hugging Face multiplies the experts' input by the same noise, we only the router's; both only in training) |
# | `sliding_window` | must be `null`: sliding-window attention is not implemented |
# | `output_router_logits` | harmless (whether Hugging Face returns the router logits) |
#
# The tensors: Llama's rows without the dense feed-forward network, and per layer the router and the experts'
# weights, which Hugging Face's files store one matrix per expert (`experts.3.w1.weight`) and we stack, `[E, ...]`.
def stack(*tensors: torch.Tensor) -> torch.Tensor:
    """The experts' matrices stacked along a new first dimension."""
    return torch.stack(tensors)


def mixtral_rows(n_layers: int, n_heads: int, n_kv_heads: int, n_experts: int, *, tied: bool) -> list[Row]:
    """The name map of a Hugging Face Mixtral checkpoint."""
    rows = llama_rows(n_layers, n_heads, n_kv_heads, tied=tied, feed_forward=False)
    for i in range(n_layers):
        ours, theirs = f"layers.{i}.feed_forward", f"model.layers.{i}.block_sparse_moe"
        rows.append(Row(f"{ours}.router.gate.weight", f"{theirs}.gate.weight"))
        for w in ("w1", "w2", "w3"):
            rows.append(Row(f"{ours}.experts.{w}", tuple(f"{theirs}.experts.{e}.{w}.weight" for e in range(n_experts)),
                            stack))
    return rows


def load_hf(model_dir: str | Path, **overrides) -> Mixtral:
    """The `Mixtral` of a Hugging Face `MixtralForCausalLM` directory; `overrides` set fields of `MixtralArgs`
    (typically `max_batch_size` and `max_seq_len`)."""
    config, path = read_config(model_dir)
    config = {key: value for key, value in config.items() if key != "output_router_logits"}
    args, tied, rest = args_from_hf(config, path)
    for theirs, ours in (("num_local_experts", "n_experts"), ("num_experts_per_tok", "top_k"),
                         ("router_jitter_noise", "router_jitter")):
        if theirs in rest:
            args[ours] = rest.pop(theirs)
    if "router_aux_loss_coef" in rest:
        args["aux_loss_coeff"] = rest.pop("router_aux_loss_coef") * args.get("top_k", 2)
    if rest.pop("sliding_window", None) is not None:
        raise ValueError(f"{path}: sliding_window is not supported (sliding-window attention is not implemented)")
    if rest:
        raise ValueError(f"{path}: unknown field(s) {sorted(rest)} for a Mixtral checkpoint")
    try:
        model_args = MixtralArgs(**{**args, **overrides})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error
    model = Mixtral(model_args)
    if tied:
        model.output.weight = model.tok_embeddings.weight
    tensors, source = read_tensors(model_dir)
    rows = mixtral_rows(model_args.n_layers, model_args.n_heads, model_args.n_kv_heads, model_args.n_experts,
                        tied=tied)
    load_table(model, rows, tensors, source)
    return model.eval()

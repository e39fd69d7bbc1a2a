r"""
---
title: T5, the text-to-text transformer
summary: An annotated T5 (v1.0 and v1.1) built from this package's attention, feed-forward network and layer, with relative position buckets, RMS-style layer norm, unscaled attention, span corruption, cached greedy generation, and a strict loader for Hugging Face checkpoints.
---

# T5, the text-to-text transformer

[Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer](https://arxiv.org/abs/1910.10683)
(Raffel et al., 2020) casts every task (translation, classification, question answering) as text in, text out,
and trains one [encoder-decoder](/transformers/models.md) on all of them, after pretraining it to fill in
corrupted spans of text. The model is the 2017 transformer with a handful of changes, each explained where the
code makes it:

| | The 2017 transformer | GPT-2 | T5 |
|---|---|---|---|
| Stacks | encoder and decoder | decoder only | encoder and decoder |
| Normalisation | LayerNorm after each sub-layer (post-norm) | LayerNorm before each sub-layer (pre-norm), one at the end | [RMS-style layer norm](#T5LayerNorm) (no mean, no bias) before each sub-layer, one at the end of each stack |
| Positions | sinusoids added to the embeddings | learned vectors added to the embeddings | none in the embeddings: a learned [bias on the attention scores](#RelativePositionBias) per head and [distance bucket](#relative_position_bucket) |
| Attention scores | $QK^\top / \sqrt{d_k}$ | $QK^\top / \sqrt{d_k}$ | $QK^\top + B$: no $1/\sqrt{d_k}$, [folded into the initialisation](#T5.init_weights) |
| Biases | everywhere | everywhere | none (nor in layer norms) |
| Feed-forward | $\max(0, xW_1)W_2$ | $\text{GELU}(xW_1)W_2$ | v1.0: $\max(0, xW_1)W_2$; v1.1: [gated GELU](/transformers/feed_forward.md), $\big(\text{GELU}(xW_1) \otimes xV\big)W_2$ |
| Embeddings | scaled by $\sqrt{d_{model}}$ | unscaled | unscaled, one table for encoder and decoder |
| Output head | tied to the embeddings | tied | v1.0: tied, the decoder's output scaled by $d_{model}^{-1/2}$ first; v1.1: its own matrix, unscaled |

Each layer is pre-norm, with $\text{LN}$ T5's layer norm and $h$ the `[batch, seq, d_model]` residual stream:

$$
\begin{aligned}
h &\leftarrow h + \text{SelfAttention}\big(\text{LN}(h)\big) \\
h &\leftarrow h + \text{CrossAttention}\big(\text{LN}(h), \text{encoder output}\big) \quad \text{(decoder only)} \\
h &\leftarrow h + \text{FFN}\big(\text{LN}(h)\big)
\end{aligned}
$$

which is exactly this package's [pre-norm `TransformerLayer`](/transformers/models.md#TransformerLayer) with
T5's norm in place of `nn.LayerNorm`. [`T5Layer`](#T5Layer) subclasses it: it swaps the norms and overrides
`forward`, to pass the position bias to the self-attention and the encoder's keys and values (projected once) to
the cross-attention; the residual connections are the parent's. The stacks subclass
[`TransformerStack`](/transformers/models.md#TransformerStack) in the same way. The
attention is this package's [`MultiHeadAttention`](/transformers/mha.md) with `scale=1.0`, `bias=False`,
`d_head=d_kv` and the position bias as `attn_bias` (a float mask for PyTorch's fused kernel); the feed-forward
network is [`FeedForward`](/transformers/feed_forward.md) without biases; generation uses its
[`KVCache`](/transformers/mha.md#KVCache).

The configuration [`T5Config`](#T5Config) has the field names of Hugging Face's `config.json`, and
[`load_hf`](#load_hf) reads a Hugging Face directory (`config.json` and `model.safetensors`) through
[one table of names](#hf_name_map), strictly ([the idiom](/transformers/hf_checkpoints.md)). The tests check the
logits and the greedy generations against Hugging Face's `T5ForConditionalGeneration`, for v1.0 and v1.1.

Layouts: `[batch, seq, d_model]`; inside attention `[batch, heads, seq, d_kv]`. The masks a caller passes are
Hugging Face's, `[batch, seq]` with 1 (or `True`) at real tokens and 0 at padding.

The experiment (`python -m labml_nn.transformers.t5`, [its page](/transformers/experiments/t5.md)) pretrains a
small T5 on Tiny Shakespeare by [span corruption](#span_corruption), shows the spans it fills in, and compares
relative position biases with learned absolute positions on inputs longer than those it was trained on.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.hf_checkpoints import (Row, config_from_dict, load_table, read_config, read_json_object,
                                                  read_tensors)
from labml_nn.transformers.mha import KVCache, MultiHeadAttention
from labml_nn.transformers.models import Embeddings, TransformerLayer, TransformerStack

__all__ = ["T5Config", "T5LayerNorm", "relative_position_bucket", "RelativePositionBias", "T5Layer", "T5Stack",
           "T5", "hf_name_map", "load_hf", "span_corruption"]

FEED_FORWARD_PROJ = ("relu", "gated-gelu")


# ## Configuration
#
# The fields and defaults of Hugging Face's `T5Config` (the defaults are t5-small's). `d_kv` is the width of a
# head, chosen apart from `d_model / num_heads` (t5-3b has `d_model` 1024, 32 heads of 128). T5 v1.0 is
# `feed_forward_proj="relu"` with tied embeddings; v1.1 (and Flan-T5) is `"gated-gelu"` with its own output matrix.
@dataclass
class T5Config:
    """A T5's hyper-parameters, with Hugging Face's `config.json` names."""
    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    """Encoder layers."""
    num_decoder_layers: int | None = None
    """Decoder layers; `None` means `num_layers`."""
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    """'relu' (T5 v1.0) or 'gated-gelu' (v1.1: GELU, tanh approximation, gating a second projection)."""
    tie_word_embeddings: bool = True
    """The output head is the embedding table, applied to the decoder's output scaled by d_model^-1/2."""
    decoder_start_token_id: int = 0
    pad_token_id: int = 0
    eos_token_id: int = 1

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.feed_forward_proj not in FEED_FORWARD_PROJ:
            raise ValueError(f"feed_forward_proj must be one of {list(FEED_FORWARD_PROJ)}, "
                             f"got {self.feed_forward_proj!r}")
        if self.relative_attention_num_buckets % 2 or self.relative_attention_num_buckets < 4:
            raise ValueError(f"relative_attention_num_buckets must be even and at least 4, "
                             f"got {self.relative_attention_num_buckets}")
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
            raise ValueError(f"relative_attention_max_distance ({self.relative_attention_max_distance}) must exceed "
                             f"half the buckets ({self.relative_attention_num_buckets // 2}), where the "
                             f"logarithmic buckets begin")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"layer_norm_epsilon must be positive, got {self.layer_norm_epsilon}")
        for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} must be a token id in [0, vocab_size={self.vocab_size}), got {value!r}")

    # ### Reading `config.json`
    #
    # Hugging Face's bookkeeping and the fields derived from `feed_forward_proj` (`dense_act_fn`, `is_gated_act`)
    # or used only to initialise (`initializer_factor`) are dropped; any other unknown field is an error.
    #
    # One wrinkle: `transformers` 5 always ties the output head to the embeddings in memory, writes
    # `tie_word_embeddings: true` for every model, and records whether the output is scaled in
    # `scale_decoder_outputs`. A v1.1 model it writes (`false`) has no `lm_head.weight` in its file: its head is
    # the embedding table, unscaled. We read that as what it computes: an untied model (no scaling) whose head
    # [starts as a copy](#hf_name_map) of the embeddings.
    @classmethod
    def from_json(cls, path: str | Path) -> "T5Config":
        """The configuration in a Hugging Face `config.json` file."""
        return cls._from_dict(read_json_object(path), path)

    @classmethod
    def _from_dict(cls, config: dict, path: str | Path) -> "T5Config":
        config = dict(config)
        if "scale_decoder_outputs" in config:
            config["tie_word_embeddings"] = bool(config.pop("scale_decoder_outputs"))
        return config_from_dict(cls, config, path, ignored=(
            "dense_act_fn", "is_gated_act", "initializer_factor", "classifier_dropout", "is_decoder",
            "n_positions", "output_past", "task_specific_params", "gradient_checkpointing"))


# ## T5's layer norm
#
# $$\text{LN}(x) = g \otimes \frac{x}{\sqrt{\frac{1}{d}\sum_i x_i^2 + \epsilon}}$$
#
# LayerNorm without its two centring parts: no mean is subtracted and no bias added, only a learned gain $g$
# per feature. It is the [RMSNorm](https://arxiv.org/abs/1910.07467) that [Llama](/transformers/llama/index.md)
# uses too (T5 calls it layer norm). Dropping the mean saves a reduction and, in practice, costs nothing.
#
# The mean of squares is taken in float32 whatever the input's precision: in float16 the squares of a
# residual stream overflow (T5's activations grow large), and in bfloat16 the sum loses its low bits. The
# result returns to half precision only when the gain is in half precision, as Hugging Face's `T5LayerNorm` does.
class T5LayerNorm(nn.Module):
    """Scale-only layer norm over the last dimension, the variance computed in float32."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # $\frac{1}{d}\sum_i x_i^2$ in float32, `[..., 1]`
        variance = x.float().pow(2).mean(dim=-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


# ## Relative position buckets
#
# T5 gives attention no position vectors at all. Instead each head learns one scalar per *bucket* of the
# distance $j - i$ from query $i$ to key $j$, added to the score. Buckets are exact for small distances and
# logarithmically coarser for larger ones, up to `max_distance`, beyond which all distances share the last
# bucket: a model cares whether a word is 1 or 2 positions away, hardly whether it is 100 or 101.
#
# With $n$ buckets (per direction), the first $n/2$ hold the distances $0 \dots n/2 - 1$ one each, and a distance
# $r \ge n/2$ goes to
#
# $$\frac{n}{2} + \left\lfloor \frac{\log(r / (n/2))}{\log(\text{max\_distance} / (n/2))} \cdot \frac{n}{2} \right\rfloor,
# \quad \text{at most } n - 1.$$
#
# The encoder is **bidirectional**: half the buckets are for keys before the query, half for keys after it
# (offset by $n$, where $n$ is half of `num_buckets`). The decoder is **causal**: it never sees keys after the
# query, so all `num_buckets` go to distances into the past, and keys in the future share bucket 0 with the
# query itself (the causal mask removes them anyway).
#
# ![Bucket against relative position: the encoder's bidirectional buckets and the decoder's causal ones](/figures/t5_buckets.png)
#
# The logarithm is computed in float32, as in Mesh TensorFlow and Hugging Face's code, so that the boundaries
# between buckets fall exactly where a checkpoint's model expects them.
def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """The bucket (a `LongTensor` of the same shape) of each relative position $j - i$, key minus query."""
    if bidirectional:
        num_buckets //= 2
    # $n/2$, the number of exact buckets
    max_exact = num_buckets // 2
    if max_exact < 1 or max_distance <= max_exact:
        raise ValueError(f"need at least 2 buckets per direction and max_distance > {max_exact}, got "
                         f"num_buckets={num_buckets * (2 if bidirectional else 1)}, max_distance={max_distance}")
    relative_position = relative_position.long()
    if bidirectional:
        # Keys after the query use the upper half of the buckets.
        offset = (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        # Only the past counts; keys in the future fall to distance 0.
        offset = torch.zeros_like(relative_position)
        distance = (-relative_position).clamp(min=0)
    is_small = distance < max_exact
    # The logarithmic buckets (the `clamp` keeps $\log 0$ out of the positions that use the exact buckets)
    log_ratio = torch.log(distance.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return offset + torch.where(is_small, distance, large)


# ## The position bias
#
# $$B_{h,i,j} = b_{h,\,\text{bucket}(j - i)}$$
#
# A table of `num_buckets` scalars per head. The bias depends only on the query and key positions, not on the
# layer, so a stack computes it once and every layer adds the same `[1, heads, seq_q, seq_k]` tensor to its scores
# (Hugging Face keeps the table in the first layer's self-attention, and shares its output the same way).
# `offset` is the position of the first query, non-zero when earlier positions are in a cache.
class RelativePositionBias(nn.Module):
    """Learned scalar per head and relative position bucket, as a score bias `[1, heads, seq_q, seq_k]`."""

    def __init__(self, num_buckets: int, max_distance: int, heads: int, bidirectional: bool):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, seq_q: int, seq_k: int, offset: int = 0) -> torch.Tensor:
        device = self.relative_attention_bias.weight.device
        # $j - i$ for query positions `offset ... offset + seq_q - 1` and key positions `0 ... seq_k - 1`,
        # `[seq_q, seq_k]`
        relative = (torch.arange(seq_k, device=device)[None, :]
                    - torch.arange(offset, offset + seq_q, device=device)[:, None])
        buckets = relative_position_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        # `[seq_q, seq_k, heads]` to `[1, heads, seq_q, seq_k]`
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)


# ## The layer
#
# The package's [pre-norm layer](/transformers/models.md#TransformerLayer), built from T5's pieces:
#
# * attention without the $1/\sqrt{d_k}$ (`scale=1.0`), without biases, with `d_kv`-wide heads;
# * a feed-forward network without biases: ReLU (v1.0), or GELU's tanh approximation gating a second projection
#   (v1.1; Hugging Face's `gelu_new`, the first projection `wi_0` is the activated one and `wi_1` the gated value);
# * T5's layer norm in place of `nn.LayerNorm`.
#
# Dropout (`dropout_rate`) is on the attention weights, the feed-forward network's hidden layer and each
# sub-layer's output, as in T5.
class T5Layer(TransformerLayer):
    """An encoder layer (`cross_attention=False`) or a decoder layer of T5."""

    def __init__(self, config: T5Config, cross_attention: bool):
        def attention() -> MultiHeadAttention:
            return MultiHeadAttention(config.num_heads, config.d_model, config.dropout_rate, bias=False,
                                      d_head=config.d_kv, scale=1.0)

        gated = config.feed_forward_proj == "gated-gelu"
        feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout_rate,
                                   activation=nn.GELU(approximate="tanh") if gated else nn.ReLU(), is_gated=gated,
                                   bias1=False, bias2=False, bias_gate=False)
        super().__init__(config.d_model, attention(), attention() if cross_attention else None, feed_forward,
                         config.dropout_rate, pre_norm=True)
        self.norm_self_attn = T5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.norm_src_attn = T5LayerNorm(config.d_model, config.layer_norm_epsilon) if cross_attention else None
        self.norm_ff = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    # The same three residual sub-layers as the parent's `forward`. What differs: the self-attention gets the
    # position bias (with the masks already in it, as $-\infty$), the cross-attention gets the source's padding as a
    # bias of $0$ and $-\infty$ (`memory_bias`), and the encoder's keys and values already projected (`memory_kv`),
    # so that a generating decoder projects them once, not at every step.
    def forward(self, x: torch.Tensor, position_bias: torch.Tensor, *,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None, memory_bias: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """
        Arguments:
            x: `[batch, seq, d_model]`.
            position_bias: float, broadcastable to `[batch, heads, seq, seq_k]`, masked positions $-\\infty$.
            memory_kv: the cross-attention's keys and values `[batch, heads, src_seq, d_kv]` (decoder layers).
            memory_bias: $-\\infty$ at the source's padding and 0 elsewhere, `[batch, 1, 1, src_seq]`, or `None`.
            cache: the self-attention's key/value cache (generation).
        """
        if (memory_kv is None) != (self.src_attn is None):
            raise ValueError("memory_kv must be given exactly when the layer has cross-attention")
        x = self.residual(x, self.norm_self_attn,
                          lambda z: self.self_attn(z, z, z, cache=cache, attn_bias=position_bias))
        if self.src_attn is not None:
            x = self.residual(x, self.norm_src_attn,
                              lambda z: self.src_attn(z, None, None, kv=memory_kv, attn_bias=memory_bias))
        return self.residual(x, self.norm_ff, self.feed_forward)


# ## A stack
#
# The package's [`TransformerStack`](/transformers/models.md#TransformerStack) (copies of one layer, key/value
# caches for them) with T5's final norm and the position bias table of the stack. The stack folds the masks into
# the bias once, $B_{h,i,j} = -\infty$ where query $i$ may not see key $j$, so that every layer passes one float
# mask to the fused attention kernel, which would otherwise convert a boolean mask to such a tensor in every
# layer.
class T5Stack(TransformerStack):
    """The encoder (`decoder=False`: bidirectional buckets, no cross-attention) or the decoder of T5."""

    def __init__(self, config: T5Config, n_layers: int, decoder: bool):
        super().__init__(T5Layer(config, cross_attention=decoder), n_layers)
        self.is_decoder = decoder
        self.norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.relative_attention_bias = RelativePositionBias(
            config.relative_attention_num_buckets, config.relative_attention_max_distance, config.num_heads,
            bidirectional=not decoder)
        self.dropout = nn.Dropout(config.dropout_rate)

    # ### The bias with the masks in it
    #
    # `key_bias` is the padding as a bias, $-\infty$ at padded keys and 0 elsewhere, `[batch, 1, 1, seq_k]`. In the
    # decoder the causal mask joins it, aligned to the last `seq_q` of `seq_k` positions (the earlier ones are in the
    # cache).
    def masked_bias(self, bias: torch.Tensor, key_bias: torch.Tensor | None, seq_q: int, seq_k: int) -> torch.Tensor:
        if key_bias is not None:
            # `[batch, heads, seq_q, seq_k]`
            bias = bias + key_bias
        if self.is_decoder and seq_q > 1:
            bias = bias.masked_fill(~MultiHeadAttention.causal_mask(seq_q, seq_k, bias.device), float("-inf"))
        return bias

    # `x` is the embedded input `[batch, seq, d_model]`. Layer $i$ uses `caches[i]` (generation) and, in the
    # decoder, `memory_kv[i]`, the encoder's output projected by its cross-attention.
    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None = None, *,
                memory_kv: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
                memory_bias: torch.Tensor | None = None, caches: Sequence[KVCache] | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        """Returns `[batch, seq, d_model]`; `position_bias` (masks included) replaces the one computed here."""
        self.check_caches(caches)
        seq = x.shape[1]
        offset = caches[0].length if caches is not None else 0
        if position_bias is None:
            # `[1, heads, seq, offset + seq]`, then with the masks in it
            position_bias = self.relative_attention_bias(seq, offset + seq, offset)
            position_bias = self.masked_bias(position_bias, key_bias, seq, offset + seq)
        for i, layer in enumerate(self.layers):
            x = layer(x, position_bias, memory_kv=memory_kv[i] if memory_kv is not None else None,
                      memory_bias=memory_bias, cache=caches[i] if caches is not None else None)
        return self.dropout(self.norm(x))


# ## The model
#
# One embedding table serves both stacks (T5's vocabulary is shared by inputs and outputs). It is this package's
# [`Embeddings`](/transformers/models.md#Embeddings) with `scale=False`: T5 adds nothing to the embeddings, and
# relative positions put no limit on the length.
MAX_LENGTH = 2 ** 31 - 1


class T5(nn.Module):
    """T5 v1.0 or v1.1: `forward` gives the decoder's logits, `encode` the encoder's output, `generate` decodes greedily."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = Embeddings(config.d_model, config.vocab_size, MAX_LENGTH, config.dropout_rate, scale=False)
        self.encoder = T5Stack(config, config.num_layers, decoder=False)
        self.decoder = T5Stack(config, config.num_decoder_layers, decoder=True)
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.d_model, config.vocab_size,
                                                                         bias=False)
        self.init_weights()

    # ### Initialisation, and where $1/\sqrt{d_k}$ went
    #
    # Mesh TensorFlow's T5 initialises each matrix with $\mathcal{N}(0, 1/\text{fan-in})$, so that a unit-variance
    # input gives a unit-variance output, except for the queries, whose fan-in is multiplied by $d_{kv}$:
    #
    # $$W^Q \sim \mathcal{N}\big(0, \tfrac{1}{d_{model}\, d_{kv}}\big), \qquad
    #   W^K, W^V \sim \mathcal{N}\big(0, \tfrac{1}{d_{model}}\big)$$
    #
    # so that at the start $q$ is $\sqrt{d_{kv}}$ times smaller than with the usual initialisation, and
    # $q \cdot k$ has variance about 1: the scores start exactly as $QK^\top/\sqrt{d_k}$ would. The factor is then
    # a parameter like any other, so the model need not spend a multiplication on it, and with Adafactor, whose
    # updates are relative to a parameter's scale, $W^Q$ simply learns at a smaller absolute step. The checkpoints
    # hold $W^Q$ with the factor inside, which is why attention must not divide by $\sqrt{d_{kv}}$ again.
    #
    # The embeddings are $\mathcal{N}(0, 1)$: unit-variance inputs, as the pre-norm layers expect. A tied head
    # multiplies the decoder's output by $d_{model}^{-1/2}$ before the embedding matrix, which makes the logits'
    # variance about 1; an untied head gets $\mathcal{N}(0, 1/d_{model})$ for the same effect. (Hugging Face draws
    # the untied head from $\mathcal{N}(0, 1)$, which gives logits of standard deviation $\sqrt{d_{model}}$ at
    # the start; it makes no difference to a loaded checkpoint.) The position biases are
    # $\mathcal{N}(0, 1/d_{model})$ and the norms' gains one.
    @torch.no_grad()
    def init_weights(self) -> None:
        """T5's initialisation, by module type."""
        c = self.config
        nn.init.normal_(self.shared.embeddings.weight, std=1.0)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=c.d_model ** -0.5)
        for module in self.modules():
            if isinstance(module, MultiHeadAttention):
                nn.init.normal_(module.query.weight, std=(c.d_model * c.d_kv) ** -0.5)
                nn.init.normal_(module.key.weight, std=c.d_model ** -0.5)
                nn.init.normal_(module.value.weight, std=c.d_model ** -0.5)
                nn.init.normal_(module.output.weight, std=(c.num_heads * c.d_kv) ** -0.5)
            elif isinstance(module, FeedForward):
                for linear in (module.layer1, module.linear_v):
                    if linear is not None:
                        nn.init.normal_(linear.weight, std=c.d_model ** -0.5)
                nn.init.normal_(module.layer2.weight, std=c.d_ff ** -0.5)
            elif isinstance(module, RelativePositionBias):
                nn.init.normal_(module.relative_attention_bias.weight, std=c.d_model ** -0.5)
            elif isinstance(module, T5LayerNorm):
                nn.init.ones_(module.weight)

    # ### Checking the inputs
    #
    # The token ids are checked by the embeddings; a mask must have the ids' shape, `[batch, seq]`, with 1 or `True`
    # at real tokens. It becomes a bias on the scores that attention broadcasts, `[batch, 1, 1, seq]`: $-\infty$ at
    # padding, 0 elsewhere, in the model's precision.
    def key_bias(self, mask: torch.Tensor | None, ids: torch.Tensor, name: str) -> torch.Tensor | None:
        if mask is None:
            return None
        if mask.shape != ids.shape:
            raise ValueError(f"{name} must have the shape of its ids, [batch, seq] = {list(ids.shape)}, "
                             f"got {list(mask.shape)}")
        dtype = self.shared.embeddings.weight.dtype
        # `[batch, seq]` to `[batch, 1, 1, seq]`
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask == 0, float("-inf"))[:, None, None, :]

    # ### The encoder
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output `[batch, src_seq, d_model]` for `input_ids` `[batch, src_seq]`."""
        return self.encoder(self.shared(input_ids), self.key_bias(attention_mask, input_ids, "attention_mask"))

    # ### The output head
    #
    # $$\text{logits} = \big(d_{model}^{-1/2}\, h\big) E^\top \quad \text{(tied)}, \qquad h W^\top \quad \text{(v1.1)}$$
    #
    # With tied embeddings, the decoder's output $h$ (unit scale per feature after the final norm) meets a table
    # $E$ whose rows are unit-variance per feature; without the factor, logits would have a standard deviation of
    # $\sqrt{d_{model}}$. Mesh TensorFlow applies it, and v1.0 checkpoints were trained with it.
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """`[batch, seq, d_model]` to `[batch, seq, vocab_size]`."""
        if self.lm_head is None:
            return F.linear(hidden * self.config.d_model ** -0.5, self.shared.embeddings.weight)
        return self.lm_head(hidden)

    # The decoder's cross-attention keys and values, one pair per layer, each `[batch, heads, src_seq, d_kv]`.
    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.src_attn.project_kv(memory) for layer in self.decoder.layers]

    # ### Training and scoring
    #
    # Teacher forcing: the decoder reads the target shifted right behind `decoder_start_token_id` and predicts
    # every next token at once.
    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Arguments:
            input_ids: `[batch, src_seq]`.
            decoder_input_ids: `[batch, tgt_seq]`.
            attention_mask: `[batch, src_seq]`, 1 at real tokens, 0 at padding.
            decoder_attention_mask: `[batch, tgt_seq]`, 1 at real tokens (the causal mask is always applied).

        Returns:
            logits `[batch, tgt_seq, vocab_size]`.
        """
        if input_ids.dim() != 2 or decoder_input_ids.dim() != 2 or input_ids.shape[0] != decoder_input_ids.shape[0]:
            raise ValueError(f"input_ids and decoder_input_ids must be [batch, seq] with the same batch, got "
                             f"{list(input_ids.shape)} and {list(decoder_input_ids.shape)}")
        memory_bias = self.key_bias(attention_mask, input_ids, "attention_mask")
        memory = self.encoder(self.shared(input_ids), memory_bias)
        key_bias = self.key_bias(decoder_attention_mask, decoder_input_ids, "decoder_attention_mask")
        hidden = self.decoder(self.shared(decoder_input_ids), key_bias, memory_kv=self.memory_kv(memory),
                              memory_bias=memory_bias)
        return self.logits(hidden)

    # ### Greedy generation
    #
    # The encoder runs once, and so do the cross-attentions' projections of its output. The decoder then feeds one
    # token per step: its self-attention appends the new key and value to a [`KVCache`](/transformers/mha.md#KVCache)
    # per layer, and the position bias of every step is a row of one table computed up front,
    # `[1, heads, max_new_tokens, max_new_tokens]`: step $t$'s query sits at position $t$ and sees keys
    # $0 \dots t$ (so it needs no causal mask). A row that has written `eos_token_id` writes `pad_token_id` from
    # then on; generation stops early when every row has finished, the one point where it waits for the device.
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32) -> torch.Tensor:
        """Greedy decoding: `[batch, 1 + n]` token ids starting with `decoder_start_token_id`, `n <= max_new_tokens`."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        c = self.config
        was_training = self.training
        self.eval()
        memory_bias = self.key_bias(attention_mask, input_ids, "attention_mask")
        memory = self.encoder(self.shared(input_ids), memory_bias)
        memory_kv = self.memory_kv(memory)
        batch = input_ids.shape[0]
        caches = self.decoder.new_caches(batch, max_new_tokens, dtype=memory.dtype, device=memory.device)
        # `[1, heads, max_new_tokens, max_new_tokens]`
        bias_table = self.decoder.relative_attention_bias(max_new_tokens, max_new_tokens)
        # `[batch, 1]`
        tokens = torch.full((batch, 1), c.decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        generated = [tokens]
        for t in range(max_new_tokens):
            # Step $t$'s row of the bias, `[1, heads, 1, t + 1]`
            bias = bias_table[:, :, t:t + 1, :t + 1]
            hidden = self.decoder(self.shared(tokens, t), memory_kv=memory_kv, memory_bias=memory_bias,
                                  caches=caches, position_bias=bias)
            # The most likely next token, `[batch, 1]`
            tokens = self.logits(hidden[:, -1:]).argmax(dim=-1)
            tokens = tokens.masked_fill(finished[:, None], c.pad_token_id)
            generated.append(tokens)
            finished |= tokens[:, 0] == c.eos_token_id
            if finished.all():
                break
        self.train(was_training)
        # `[batch, 1 + steps]`
        return torch.cat(generated, dim=1)


# ## Loading Hugging Face checkpoints
#
# The name map, [walked strictly](/transformers/hf_checkpoints.md): every tensor of the file is used, every
# parameter filled, every shape checked. All matrices are `nn.Linear` weights on both sides, so no transform is
# needed except for a head that must be copied. Hugging Face keeps a stack's relative position table in its first
# block's self-attention; we keep it with the stack. For layer $i$:
#
# | ours | Hugging Face's |
# |---|---|
# | `shared.embeddings.weight` | `shared.weight` |
# | `encoder.relative_attention_bias.relative_attention_bias.weight` | `encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight` |
# | `encoder.layers.{i}.self_attn.{query,key,value,output}.weight` | `encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight` |
# | `encoder.layers.{i}.norm_self_attn.weight` | `encoder.block.{i}.layer.0.layer_norm.weight` |
# | `encoder.layers.{i}.feed_forward.{layer1,layer2}.weight` (v1.0) | `encoder.block.{i}.layer.1.DenseReluDense.{wi,wo}.weight` |
# | `encoder.layers.{i}.feed_forward.{layer1,linear_v,layer2}.weight` (v1.1) | `encoder.block.{i}.layer.1.DenseReluDense.{wi_0,wi_1,wo}.weight` |
# | `encoder.layers.{i}.norm_ff.weight` | `encoder.block.{i}.layer.1.layer_norm.weight` |
# | `encoder.norm.weight` | `encoder.final_layer_norm.weight` |
# | `decoder.relative_attention_bias.relative_attention_bias.weight` | `decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight` |
# | `decoder.layers.{i}.self_attn.*`, `norm_self_attn.weight` | `decoder.block.{i}.layer.0.SelfAttention.*`, `layer_norm.weight` |
# | `decoder.layers.{i}.src_attn.{query,key,value,output}.weight` | `decoder.block.{i}.layer.1.EncDecAttention.{q,k,v,o}.weight` |
# | `decoder.layers.{i}.norm_src_attn.weight` | `decoder.block.{i}.layer.1.layer_norm.weight` |
# | `decoder.layers.{i}.feed_forward.*`, `norm_ff.weight` | `decoder.block.{i}.layer.2.DenseReluDense.*`, `layer_norm.weight` |
# | `decoder.norm.weight` | `decoder.final_layer_norm.weight` |
# | `lm_head.weight` (v1.1) | `lm_head.weight`, or a copy of `shared.weight` when the file has none |
# | (not used) | `encoder.embed_tokens.weight`, `decoder.embed_tokens.weight`: copies of `shared.weight` some writers add |
# | (not used) | `decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight`: in some old files, unused by T5 |
def hf_name_map(config: T5Config, head_in_file: bool = True) -> list[Row]:
    """The rows that map a Hugging Face T5 checkpoint's tensors onto `T5(config)`."""
    attention = {"query": "q", "key": "k", "value": "v", "output": "o"}
    ff = ({"layer1": "wi_0", "linear_v": "wi_1", "layer2": "wo"} if config.feed_forward_proj == "gated-gelu"
          else {"layer1": "wi", "layer2": "wo"})
    same = "the same tensor as shared.weight, written again by some writers"
    rows = [Row("shared.embeddings.weight", "shared.weight") if config.tie_word_embeddings or head_in_file else
            Row(("shared.embeddings.weight", "lm_head.weight"), "shared.weight", lambda t: (t, t.clone()),
                note="the head is the embedding table, unscaled (transformers 5 writes a v1.1 head this way)"),
            Row((), "encoder.embed_tokens.weight", note=same, optional=True),
            Row((), "decoder.embed_tokens.weight", note=same, optional=True),
            Row((), "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
                note="a cross-attention position table that T5 never uses", optional=True)]
    for stack, n_layers in (("encoder", config.num_layers), ("decoder", config.num_decoder_layers)):
        rows.append(Row(f"{stack}.relative_attention_bias.relative_attention_bias.weight",
                        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"))
        sublayers = [("self_attn", "norm_self_attn", "SelfAttention")]
        if stack == "decoder":
            sublayers.append(("src_attn", "norm_src_attn", "EncDecAttention"))
        for i in range(n_layers):
            ours, theirs = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
            for j, (attn, norm, their_attn) in enumerate(sublayers):
                rows += [Row(f"{ours}.{attn}.{a}.weight", f"{theirs}.{j}.{their_attn}.{b}.weight")
                         for a, b in attention.items()]
                rows.append(Row(f"{ours}.{norm}.weight", f"{theirs}.{j}.layer_norm.weight"))
            j = len(sublayers)
            rows += [Row(f"{ours}.feed_forward.{a}.weight", f"{theirs}.{j}.DenseReluDense.{b}.weight")
                     for a, b in ff.items()]
            rows.append(Row(f"{ours}.norm_ff.weight", f"{theirs}.{j}.layer_norm.weight"))
        rows.append(Row(f"{stack}.norm.weight", f"{stack}.final_layer_norm.weight"))
    if not config.tie_word_embeddings and head_in_file:
        rows.append(Row("lm_head.weight", "lm_head.weight"))
    return rows


# `model_dir` holds `config.json` and `model.safetensors` (or `pytorch_model.bin`).
def load_hf(model_dir: str | Path) -> T5:
    """A `T5` with the configuration and weights of a Hugging Face T5 directory (v1.0 or v1.1), in eval mode."""
    raw, config_path = read_config(model_dir)
    config = T5Config._from_dict(raw, config_path)
    tensors, source = read_tensors(model_dir)
    model = T5(config)
    load_table(model, hf_name_map(config, head_in_file="lm_head.weight" in tensors), tensors, source)
    return model.eval()


# ## Span corruption
#
# T5's pretraining objective. About `noise_density` of the tokens are dropped, in spans of about
# `mean_noise_span_length`; each span is replaced in the input by a sentinel token, and the target lists each
# sentinel followed by the span it replaced:
#
# ```text
# original  Thank you for inviting me to your party last week .
# input     Thank you <X> me to your party <Y> week .
# target    <X> for inviting <Y> last
# ```
#
# The model learns to reconstruct text from context, as BERT's masked language model does, but the targets are
# short (only the dropped tokens, not the whole text), which makes pretraining cheaper, and one sentinel stands for
# a span of unknown length, which the decoder must work out.
#
# As in T5's `random_spans_noise_mask`: $N = \text{round}(L \cdot \text{noise\_density})$ noise tokens (at least
# one, at most $L - 1$) in $S = \text{round}(N / \text{mean\_noise\_span\_length})$ spans (at least one, at most
# the number of kept tokens). The $N$ noise tokens are cut into $S$ non-empty spans at $S - 1$ distinct random
# points, the $L - N$ kept tokens likewise, and the sequence alternates kept span, noise span, starting with a kept
# one.
def span_corruption(tokens: torch.Tensor, *, sentinel_ids: Sequence[int] | torch.Tensor, noise_density: float = 0.15,
                    mean_noise_span_length: float = 3.0, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """T5's span corruption of one sequence `[length]`: `(inputs, targets)`, 1-D, with `sentinel_ids[i]` for span `i`."""
    if tokens.dim() != 1 or tokens.shape[0] < 2:
        raise ValueError(f"tokens must be one sequence of at least 2 tokens, got shape {list(tokens.shape)}")
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density}")
    if not mean_noise_span_length >= 1.0:
        raise ValueError(f"mean_noise_span_length must be at least 1, got {mean_noise_span_length}")
    length = tokens.shape[0]
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = min(max(round(num_noise / mean_noise_span_length), 1), length - num_noise)
    sentinels = torch.as_tensor(sentinel_ids, dtype=tokens.dtype, device=tokens.device)
    if sentinels.dim() != 1 or sentinels.shape[0] < num_spans:
        raise ValueError(f"need at least {num_spans} sentinel ids for {num_spans} spans, got {sentinels.shape[0]}")

    # $n$ items cut into $k$ non-empty segments: the lengths, `[k]`
    def segment_lengths(n: int, k: int) -> torch.Tensor:
        cuts = torch.randperm(n - 1, generator=generator)[:k - 1].sort().values + 1
        return torch.cat([torch.tensor([0]), cuts, torch.tensor([n])]).diff()

    # Kept span, noise span, kept span, ...: `[2 * num_spans]` lengths, and `True` at noise tokens, `[length]`
    lengths = torch.stack([segment_lengths(length - num_noise, num_spans),
                           segment_lengths(num_noise, num_spans)], dim=1).flatten()
    noise = (torch.arange(2 * num_spans) % 2 == 1).repeat_interleave(lengths).to(tokens.device)
    # The first token of each noise span, and the last kept token before one; `[length]` each
    previous_noise = torch.cat([noise.new_zeros(1), noise[:-1]])
    next_noise = torch.cat([noise[1:], noise.new_zeros(1)])
    span_start = noise & ~previous_noise
    before_span = ~noise & next_noise
    # The number of each span: for a span's first token its own, for the token before it the next one
    span = span_start.long().cumsum(0) - 1
    # Input: kept tokens, with a sentinel in place of each span
    inputs = torch.where(span_start, sentinels[span.clamp(min=0)], tokens)[~noise | span_start]
    # Target: each span, after the sentinel that stands where the token before it was
    targets = torch.where(before_span, sentinels[(span + 1).clamp(max=num_spans - 1)], tokens)[noise | before_span]
    return inputs, targets


if __name__ == "__main__":
    from labml_nn.transformers.experiments.t5 import main

    main()

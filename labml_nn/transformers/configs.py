r"""
---
title: Transformer configurations
summary: One validated dataclass that describes a transformer (sizes, positional information, feed-forward activation, norm placement) and builds its parts.
---

# Transformer configurations

A transformer is described by a handful of numbers and a few choices. This module gathers them in one
dataclass, [`TransformerConfigs`](/transformers/configs.md#TransformerConfigs), that

* checks itself when it is created: a bad value is a `ValueError` that names the field, the value and what is
  allowed, instead of a shape error deep inside a forward pass;
* builds the parts of the [transformer](/transformers/models.md) and the whole encoder-decoder from them;
* round-trips through JSON (`to_dict` / `from_dict`), which is how the experiments save the configuration of a
  run next to its results;
* is the command line of the experiments: every field becomes an option (`--d-model 256`,
  `--positional rope`, `--ffn-activation swiglu`, `--no-pre-norm`), and its comment becomes the option's help.

There are no registries of named components: each choice is a `Literal` of names, and the `build_*` methods say
in plain code what each name builds.

The choices:

* `positional`: how the model knows where each token is.
  `fixed` adds the paper's [sinusoidal encodings](/transformers/positional_encoding.md) to the embeddings,
  `learned` adds learned position vectors (GPT-2), `rope` rotates the queries and keys of self-attention
  ([rotary embeddings](/transformers/rope/index.md)) and adds nothing to the embeddings, and `none` gives no
  position information at all (a causal model can still infer some from how much it can see).
* `ffn_activation`: the [feed-forward network](/transformers/feed_forward.md). `relu` (the paper), `gelu`
  (BERT) and `gelu_tanh` (GPT-2's tanh approximation of the GELU) are plain two-layer networks,
  $\text{FFN}(x) = f(x W_1 + b_1) W_2 + b_2$; `glu`, `geglu` and `swiglu` are gated,
  $\text{FFN}(x) = \big(f(x W_1) \odot x V\big) W_2$ with $f$ the sigmoid, GELU and Swish
  ([Shazeer, 2020](https://arxiv.org/abs/2002.05202)).
* `pre_norm`: where the layer normalisation goes ([pre-norm vs post-norm](/transformers/models.md#TransformerLayer)).
* `scale_embeddings`: whether the token embeddings are multiplied by $\sqrt{d_{model}}$ (the paper) or not (GPT-2);
  see [the embeddings](/transformers/models.md#Embeddings).
* `norm_eps`: the $\epsilon$ that every layer normalisation adds to the variance, PyTorch's $10^{-5}$ by default
  (also GPT-2's); a checkpoint trained with another value needs it to give the same outputs.

Run `python -m labml_nn.transformers.configs --help` to train whatever transformer the command line describes
([the experiment](/transformers/experiments/configs.md)).
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from torch import nn

from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.mha import MultiHeadAttention
from labml_nn.transformers.models import (Decoder, Embeddings, EmbeddingsWithLearnedPositionalEncoding,
                                          EmbeddingsWithPositionalEncoding, Encoder, EncoderDecoder, Generator,
                                          TransformerLayer, init_linear_xavier_)
from labml_nn.transformers.rope import RotaryPEMultiHeadAttention

# The names of the choices, one `Literal` each, so that the command line lists them and a type checker knows them.
Positional = Literal["fixed", "learned", "rope", "none"]
FFNActivation = Literal["relu", "gelu", "gelu_tanh", "glu", "geglu", "swiglu"]


# ## The configuration
#
# The defaults are the base model of "Attention Is All You Need", with pre-norm.
@dataclass
class TransformerConfigs:
    # Number of layers in each stack (encoder, decoder, or a decoder-only model's one stack).
    n_layers: int = 6
    # Width of the token vectors (d_model).
    d_model: int = 512
    # Number of attention heads; must divide `d_model`.
    n_heads: int = 8
    # Hidden width of the feed-forward network (of each of the two input projections when gated).
    d_ff: int = 2048
    # Dropout probability on embeddings, attention weights and sublayer outputs.
    dropout: float = 0.1
    # Size of the source vocabulary (the only vocabulary of a decoder-only model).
    n_src_vocab: int | None = None
    # Size of the target vocabulary.
    n_tgt_vocab: int | None = None
    # Longest sequence the embeddings accept.
    max_len: int = 5000
    # Position information: fixed sinusoids, learned vectors, rotary embeddings in attention, or none.
    positional: Positional = "fixed"
    # Feed-forward activation; gelu_tanh is GPT-2's tanh approximation of gelu; glu, geglu and swiglu are gated.
    ffn_activation: FFNActivation = "relu"
    # Layer norm before each sublayer (and at the end of each stack) rather than after the residual addition.
    pre_norm: bool = True
    # Multiply the token embeddings by sqrt(d_model), as the paper does; GPT-2 does not.
    scale_embeddings: bool = True
    # The epsilon of every layer normalisation, added to the variance before the square root.
    norm_eps: float = 1e-5

    # ### Validation
    #
    # Every field is checked on construction, and so on every path that makes a configuration: the command line,
    # `from_dict`, `dataclasses.replace`. Booleans are rejected where numbers are expected (`True` is an `int` in
    # Python, and `d_model=True` is certainly a mistake).
    def __post_init__(self):
        for name in ("n_layers", "d_model", "n_heads", "d_ff", "max_len"):
            check_positive_int(name, getattr(self, name))
        for name in ("n_src_vocab", "n_tgt_vocab"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name), "a positive integer or None")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) \
                or not 0.0 < self.norm_eps < 1.0:
            raise ValueError(f"norm_eps must be a number in (0, 1), got {self.norm_eps!r}")
        check_choice("positional", self.positional, Positional)
        check_choice("ffn_activation", self.ffn_activation, FFNActivation)
        for name in ("pre_norm", "scale_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        # Rotary attention rotates half of each head's features, in pairs: a head needs at least four.
        if self.positional == "rope" and self.d_model // self.n_heads < 4:
            raise ValueError(f"positional='rope' needs at least 4 features per head (d_model / n_heads), "
                             f"got d_model={self.d_model}, n_heads={self.n_heads}")

    # ### Attention
    #
    # Self-attention carries the rotary embeddings when `positional` is `rope`. Attention over the encoder's output
    # never does: a target position and a source position are in different sequences, and their distance means
    # nothing.
    def build_self_attention(self) -> MultiHeadAttention:
        if self.positional == "rope":
            return RotaryPEMultiHeadAttention(self.n_heads, self.d_model, dropout_prob=self.dropout)
        return MultiHeadAttention(self.n_heads, self.d_model, dropout_prob=self.dropout)

    def build_src_attention(self) -> MultiHeadAttention:
        return MultiHeadAttention(self.n_heads, self.d_model, dropout_prob=self.dropout)

    # ### Feed-forward network
    #
    # The gated variants follow Shazeer (2020): no biases, and `d_ff` is the width of each of the two input
    # projections ($W_1$ and $V$), so at the same `d_ff` a gated network has $3 d_{model} d_{ff}$ weights instead of
    # $2 d_{model} d_{ff}$. The paper compares them at equal cost by shrinking $d_{ff}$ to $\frac{2}{3}$ of the
    # ungated width; here that is the caller's choice, e.g. `--d-ff 1365` against `--d-ff 2048`.
    def build_feed_forward(self) -> FeedForward:
        match self.ffn_activation:
            case "relu":
                return FeedForward(self.d_model, self.d_ff, self.dropout, nn.ReLU())
            case "gelu":
                return FeedForward(self.d_model, self.d_ff, self.dropout, nn.GELU())
            # $\frac{z}{2}\Big(1 + \tanh\big(\sqrt{2/\pi}\,(z + 0.044715 z^3)\big)\Big)$, the GELU of GPT-2's
            # code (Hugging Face's `gelu_new`); it differs from the exact GELU by up to about $5 \cdot 10^{-4}$.
            case "gelu_tanh":
                return FeedForward(self.d_model, self.d_ff, self.dropout, nn.GELU(approximate="tanh"))
            case "glu":
                activation = nn.Sigmoid()
            case "geglu":
                activation = nn.GELU()
            case "swiglu":
                activation = nn.SiLU()
        return FeedForward(self.d_model, self.d_ff, self.dropout, activation, is_gated=True,
                           bias1=False, bias2=False, bias_gate=False)

    # ### Embeddings
    #
    # With `rope` the positions enter in the attention, and with `none` nowhere, so the embeddings carry tokens only.
    # `scale_embeddings` is the $\sqrt{d_{model}}$ factor ([why it matters](/transformers/models.md#Embeddings)).
    def build_embeddings(self, n_vocab: int) -> Embeddings:
        args = (self.d_model, n_vocab, self.max_len, self.dropout)
        match self.positional:
            case "fixed":
                return EmbeddingsWithPositionalEncoding(*args, scale=self.scale_embeddings)
            case "learned":
                return EmbeddingsWithLearnedPositionalEncoding(*args, scale=self.scale_embeddings)
        return Embeddings(*args, scale=self.scale_embeddings)

    def build_src_embed(self) -> Embeddings:
        return self.build_embeddings(self.require_vocab("n_src_vocab"))

    def build_tgt_embed(self) -> Embeddings:
        return self.build_embeddings(self.require_vocab("n_tgt_vocab"))

    # ### Stacks, head and the whole model
    #
    # An encoder layer has self-attention and the feed-forward network; a decoder layer also attends to the
    # encoder's output.
    def build_encoder(self) -> Encoder:
        layer = TransformerLayer(self.d_model, self.build_self_attention(), None, self.build_feed_forward(),
                                 self.dropout, self.pre_norm, norm_eps=self.norm_eps)
        return Encoder(layer, self.n_layers)

    def build_decoder(self) -> Decoder:
        layer = TransformerLayer(self.d_model, self.build_self_attention(), self.build_src_attention(),
                                 self.build_feed_forward(), self.dropout, self.pre_norm, norm_eps=self.norm_eps)
        return Decoder(layer, self.n_layers)

    def build_generator(self) -> Generator:
        return Generator(self.require_vocab("n_tgt_vocab"), self.d_model)

    # The encoder-decoder, with Glorot-initialised linear layers
    # ([initialisation](/transformers/models.md#init_linear_xavier_)).
    def build_encoder_decoder(self) -> EncoderDecoder:
        model = EncoderDecoder(self.build_encoder(), self.build_decoder(), self.build_src_embed(),
                               self.build_tgt_embed(), self.build_generator())
        init_linear_xavier_(model)
        return model

    def require_vocab(self, name: str) -> int:
        if getattr(self, name) is None:
            raise ValueError(f"{name} must be set (a positive integer) to build this part, got None")
        return getattr(self, name)

    # ### JSON
    #
    # Every field is an `int`, `float`, `bool`, `str` or `None`, so the dictionary is JSON as it is.
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # Unknown keys are an error rather than ignored: a misspelt `d_modle` would otherwise silently train the
    # default model. The values are validated by `__post_init__`.
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TransformerConfigs":
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown TransformerConfigs fields {unknown}; the fields are {known}")
        return cls(**values)


# ## Checks shared by the fields
def check_positive_int(name: str, value: Any, allowed: str = "a positive integer") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_choice(name: str, value: Any, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


if __name__ == "__main__":
    from labml_nn.transformers.experiments.configs import main

    main()

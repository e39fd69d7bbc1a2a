r"""
---
title: BERT
summary: The encoder-only transformer of BERT, built from this package's attention, feed-forward network and post-norm layers, with token types, the masked-language-model and next-sentence heads, a classification head, the 80/10/10 masking rule, Megatron's pre-norm variant, and a strict loader for Hugging Face checkpoints.
---

# BERT

[BERT](https://arxiv.org/abs/1810.04805) (Devlin et al., 2018) is the [transformer](/transformers/models.md)'s
**encoder** alone, trained to fill in blanks. A [GPT](/transformers/gpt/index.md) reads left to right, because it
must predict the next token without seeing it; BERT only has to *understand* its input, so every position sees
every other, before and after it. The price is that it cannot be trained to predict the next token (it would see
it); it learns instead by predicting tokens that were hidden from it, and then serves as the body of classifiers,
taggers and retrievers, fine-tuned with a small head on top.

## What changes

Against what the earlier pages built:

| | [Transformer](/transformers/models.md) (2017) | [GPT-2](/transformers/gpt/index.md) | BERT |
|---|---|---|---|
| stack | encoder and decoder | decoder alone, causal | encoder alone, bidirectional |
| attention mask | source padding; causal in the decoder | causal | padding only (Hugging Face's `attention_mask`) |
| norm placement | post-norm | pre-norm, final norm | post-norm, and a norm on the embeddings (`pre_norm`: Megatron's pre-norm, final norm, no embedding norm) |
| norm | LayerNorm | LayerNorm | LayerNorm, $\epsilon = 10^{-12}$ |
| positions | fixed sinusoids | learned | learned |
| token types | none | none | a learned vector per segment (A or B) added to every token |
| embedding scale | $\sqrt{d_{model}}$ | 1 | 1 |
| attention | $1/\sqrt{d_k}$, biases | $1/\sqrt{d_k}$, biases | $1/\sqrt{d_k}$, biases |
| feed-forward | ReLU | GELU, tanh form | GELU, exact (erf) form |
| tying | source, target and output embeddings shared | output = token embeddings | masked-LM output = token embeddings, with its own bias |
| output heads | next-token logits | next-token logits | masked-LM head (dense, GELU, LayerNorm, tied decoder); next-sentence head on the pooled $\texttt{[CLS]}$ vector |
| objective | translation | next token | masked tokens, and whether segment B follows segment A |

## The model

An input is one or two segments of text, $\texttt{[CLS]}\ A\ \texttt{[SEP]}\ B\ \texttt{[SEP]}$, padded to a common
length. With the token embedding table $W_E$, position vectors $P$ and token-type vectors $T$ (type 0 for the
$\texttt{[CLS]}$, $A$ and its separator, 1 for $B$ and its separator):

$$
\begin{aligned}
h^0_t &= \text{LN}\big(W_E[x_t] + P_t + T[\text{type}_t]\big) \\
a^l &= \text{LN}\big(h^{l-1} + \text{Attention}(h^{l-1})\big) \\
h^l &= \text{LN}\big(a^l + \text{FFN}(a^l)\big) \qquad l = 1 \dots L \\
\text{pooled} &= \tanh\big(W_p\, h^L_{\texttt{[CLS]}} + b_p\big)
\end{aligned}
$$

The layers are the paper's **post-norm** layers ([why it matters](/transformers/models.md#TransformerLayer)), and
since a post-norm layer's input is expected to be normalised, the embeddings are normalised too. The first token,
$\texttt{[CLS]}$, carries no text: its final vector is a summary of the whole input that the **pooler** (one
dense layer and a $\tanh$) turns into the input of sentence-level heads.

[Megatron-LM](https://arxiv.org/abs/1909.08053) (Shoeybi et al., 2019) found that with BERT's post-norm layers a
model of 1.3 billion parameters trained worse than one of 336 million, and that rearranging the normalisations into
**pre-norm** layers let accuracy keep growing with size; `pre_norm=True` builds its BERT:

$$
\begin{aligned}
h^0_t &= W_E[x_t] + P_t + T[\text{type}_t] \\
a^l &= h^{l-1} + \text{Attention}\big(\text{LN}(h^{l-1})\big) \\
h^l &= a^l + \text{FFN}\big(\text{LN}(a^l)\big) \\
\text{output} &= \text{LN}(h^L)
\end{aligned}
$$

## Pretraining

**Masked language model.** 15% of the positions are chosen; the model sees a corrupted input and must give back
the original token at each chosen position (the loss is the cross-entropy there and nowhere else). Of the chosen
positions, 80% are replaced by $\texttt{[MASK]}$, 10% by a random token, and 10% are left as they are. Only
$\texttt{[MASK]}$ would teach the model that a visible token never needs predicting, and $\texttt{[MASK]}$ never
appears in fine-tuning; the random and unchanged ones make it keep a useful representation of every token, since
any token might be a corrupted one. See [mask_tokens](#mask_tokens) for how the split is drawn.

**Next sentence.** Half of the time segment $B$ is the text that follows $A$, half of the time a random one; a
linear layer on the pooled vector says which. [RoBERTa](https://arxiv.org/abs/1907.11692) later found this
objective unnecessary, but it is what trains the pooler that the classification heads start from.

## Fine-tuning

[BertForSequenceClassification](#BertForSequenceClassification) puts dropout and a linear layer on the pooled
vector, and the whole model is trained on the labelled task for a few epochs at a small learning rate.

The experiment (`python -m labml_nn.transformers.bert`, see [its page](/transformers/experiments/bert.md))
pretrains a small BERT on the characters of Tiny Shakespeare and fine-tunes it to name the speaker of a speech,
against the same classifier trained from scratch. At the budget of its CPU preset the pretraining does not get far
past the characters' frequencies, and neither classifier beats always naming the most frequent speaker; the
experiment's page says why a masked model starts so much more slowly than a GPT.

## Built from the package's parts

The embeddings are the [learned-position embeddings](/transformers/models.md#EmbeddingsWithLearnedPositionalEncoding)
with token types and a layer normalisation added; each layer is the package's
[TransformerLayer](/transformers/models.md#TransformerLayer) with its
[MultiHeadAttention](/transformers/mha.md#MultiHeadAttention) (biases on, PyTorch's fused attention) and
[FeedForward](/transformers/feed_forward.md#FeedForward) network (without dropout on its hidden layer, which BERT
does not have); the stack is the package's [Encoder](/transformers/models.md#Encoder). Nothing of the attention
or the layer is written again here.

## Hugging Face checkpoints

[load_hf](#load_hf) reads a directory written by Hugging Face's `save_pretrained` (`config.json` and
`model.safetensors` or `pytorch_model.bin`) through [one table](#hf_name_map) of our names against theirs,
[strictly](/transformers/hf_checkpoints.md): the tests load a randomly initialised `BertForPreTraining` with every
bias and norm perturbed and reproduce its outputs to $10^{-5}$.

`load_hf(model_dir)` gives a `BertForPreTraining` in evaluation mode; `load_hf(model_dir, Bert)` the body alone,
`load_hf(model_dir, BertForSequenceClassification)` a fine-tuned classifier. A small model of one's own:

```python
import torch
from labml_nn.transformers.bert import BertConfig, BertForPreTraining, mask_tokens

config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=256, max_position_embeddings=32)
model = BertForPreTraining(config)
tokens = torch.randint(4, 100, (2, 16))                       # ids 0-3 are special: [PAD], [CLS], [SEP], [MASK]
inputs, labels = mask_tokens(tokens, mask_token_id=3, vocab_size=100, special_token_ids=[0, 1, 2])
attention_mask = torch.ones(2, 16, dtype=torch.long)          # Hugging Face's: 1 at real tokens
mlm_logits, sentence_logits = model(inputs, attention_mask=attention_mask)   # [2, 16, 100] and [2, 2]
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.hf_checkpoints import (Row, config_from_dict, load_table, read_config, read_json_object,
                                                  read_tensors)
from labml_nn.transformers.mha import MultiHeadAttention
from labml_nn.transformers.models import Encoder, EmbeddingsWithLearnedPositionalEncoding, TransformerLayer
from labml_nn.transformers.utils import padding_mask

__all__ = ["BertConfig", "Bert", "BertForPreTraining", "BertForSequenceClassification", "mask_tokens",
           "hf_name_map", "load_hf", "init_bert_"]


# ## Activations
#
# Hugging Face's names for BERT's activations. `gelu` is the exact $x\,\Phi(x)$ with the Gaussian's cumulative
# distribution written with $\operatorname{erf}$, as in the original BERT; `gelu_new` (GPT-2's) and
# `gelu_pytorch_tanh` are the same tanh approximation
# $\frac{x}{2}\big(1 + \tanh\big(\sqrt{2/\pi}\,(x + 0.044715 x^3)\big)\big)$.
ACTIVATIONS = {
    "gelu": lambda: nn.GELU(),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": lambda: nn.ReLU(),
}


# ## Configuration
#
# The fields carry the names of Hugging Face's `config.json`, so that a checkpoint's configuration loads as it is.
# The defaults are BERT-base's.
@dataclass
class BertConfig:
    """BERT's hyper-parameters, under Hugging Face's names, validated on construction."""
    vocab_size: int = 30522
    """Number of token ids."""
    hidden_size: int = 768
    """Width of the token vectors, $d_{model}$."""
    num_hidden_layers: int = 12
    """Number of layers $L$."""
    num_attention_heads: int = 12
    """Heads per attention."""
    intermediate_size: int = 3072
    """Width of the feed-forward network's hidden layer, $d_{ff}$."""
    hidden_act: str = "gelu"
    """Activation of the feed-forward network and masked-LM head: gelu (exact), gelu_new, gelu_pytorch_tanh, relu."""
    hidden_dropout_prob: float = 0.1
    """Dropout on the embeddings and on every sublayer's output."""
    attention_probs_dropout_prob: float = 0.1
    """Dropout on the attention weights."""
    max_position_embeddings: int = 512
    """Number of learned positions, the longest input."""
    type_vocab_size: int = 2
    """Number of token types (segments)."""
    layer_norm_eps: float = 1e-12
    """The $\\epsilon$ of every layer normalisation."""
    initializer_range: float = 0.02
    """The standard deviation of the initial weights (BERT's 0.02 suits its width, 768; see the experiment)."""
    pad_token_id: int = 0
    """Id of the padding token (used by data pipelines; the model reads padding from the attention mask)."""
    classifier_dropout: float | None = None
    """Dropout before the classification layer; None means hidden_dropout_prob."""
    pre_norm: bool = False
    """Megatron's pre-norm BERT: pre-norm layers, a final norm, no norm on the embeddings."""

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not self.initializer_range > 0:
            raise ValueError(f"initializer_range must be positive, got {self.initializer_range!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}")

    # ### From `config.json`
    #
    # Hugging Face's bookkeeping keys (`architectures`, `model_type`, `transformers_version`, ...) are dropped.
    # Keys that describe a
    # model we do not build are checked rather than dropped: relative position embeddings, a decoder, untied
    # output embeddings. Megatron's checkpoints (`model_type` `megatron-bert`) are pre-norm.
    @classmethod
    def from_dict(cls, config: dict, path: str | Path = "config.json") -> "BertConfig":
        """The configuration of a `config.json` dict; unknown keys and values we do not implement are a `ValueError`."""
        config = dict(config)
        required = {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
                    "tie_word_embeddings": True}
        for key, expected in required.items():
            value = config.pop(key, expected)
            if value != expected:
                raise ValueError(f"{path}: {key}={value!r} is not supported (only {expected!r})")
        pre_norm = config.get("model_type") == "megatron-bert"
        return config_from_dict(cls, config, path, ignored=("gradient_checkpointing", "num_labels"),
                                pre_norm=pre_norm)

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        """The configuration in the `config.json` file at `path`."""
        return cls.from_dict(read_json_object(path), path)


# ## Embeddings
#
# $$h^0_t = \text{LN}\big(W_E[x_t] + P_t + T[\text{type}_t]\big)$$
#
# The package's [learned-position embeddings](/transformers/models.md#EmbeddingsWithLearnedPositionalEncoding),
# unscaled, with the token-type table $T$ and the layer normalisation added (no normalisation in the pre-norm
# variant: there each layer normalises its own input). Dropout follows, as in every BERT.
class BertEmbeddings(EmbeddingsWithLearnedPositionalEncoding):
    """Token, learned position and token-type embeddings, summed, normalised (post-norm only), dropped out."""

    def __init__(self, config: BertConfig):
        super().__init__(config.hidden_size, config.vocab_size, config.max_position_embeddings,
                         config.hidden_dropout_prob, scale=False)
        self.type_vocab_size = config.type_vocab_size
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.Identity() if config.pre_norm else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    # Token types must match the tokens' shape and lie in `[0, type_vocab_size)`; checked like the token ids, without
    # waiting for an accelerator.
    def check_token_types(self, token_types: torch.Tensor, tokens: torch.Tensor) -> None:
        if token_types.shape != tokens.shape or token_types.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token_type_ids must be an integer tensor shaped like input_ids {list(tokens.shape)}, "
                             f"got shape {list(token_types.shape)} and dtype {token_types.dtype}")
        if token_types.numel() == 0:
            return
        message = f"token_type_ids must be in [0, type_vocab_size={self.type_vocab_size})"
        if token_types.device.type == "cpu":
            low, high = torch.aminmax(token_types)
            if low < 0 or high >= self.type_vocab_size:
                raise ValueError(f"{message}, got ids from {int(low)} to {int(high)}")
        else:
            torch._assert_async(((token_types >= 0) & (token_types < self.type_vocab_size)).all(), message)

    def forward(self, tokens: torch.Tensor, token_types: torch.Tensor | None = None) -> torch.Tensor:
        """`tokens` and `token_types` `[batch, seq]` (types default to 0); returns `[batch, seq, hidden]`."""
        self.check_tokens(tokens, 0)
        # $W_E[x_t] + T[\text{type}_t]$, `[batch, seq, hidden]`
        if token_types is None:
            x = self.embed_tokens(tokens) + self.token_type_embeddings.weight[0]
        else:
            self.check_token_types(token_types, tokens)
            x = self.embed_tokens(tokens) + self.token_type_embeddings(token_types)
        # $+ P_t$, broadcast over the batch
        x = x + self.positional_encodings[:tokens.shape[1]]
        return self.dropout(self.norm(x))


# ## Hugging Face's attention mask
#
# Hugging Face's `attention_mask` is `[batch, seq]` with 1 (or `True`) at real tokens and 0 at padding. That is a
# mask over the *keys*: the package's [padding mask](/transformers/utils.md#padding_mask) of the mask itself, with 0
# as the padding id, `[batch, 1, 1, seq]`, `True` = may attend. Padding positions still get outputs (their queries
# attend to the real tokens), which nothing should read. A sample with no real token at all has queries that may
# attend nothing: PyTorch's fused attention then returns zeros for them, not `NaN` (other implementations give
# other finite values there; what such a sample outputs is meaningless either way, but it must not poison a batch).
def key_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor | None:
    """Hugging Face's `attention_mask` `[batch, seq]` (1 = real token) as a boolean key mask `[batch, 1, 1, seq]`."""
    if attention_mask is None:
        return None
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must be [batch, seq] = {list(input_ids.shape)} like input_ids, "
                         f"got {list(attention_mask.shape)}")
    return padding_mask(attention_mask, pad_id=0)


# ## The encoder
#
# The package's [TransformerLayer](/transformers/models.md#TransformerLayer), post-norm unless `pre_norm`, with
# BERT's $\epsilon$ on its normalisations (PyTorch's `nn.LayerNorm` reads `eps` at every call), stacked by the
# package's [Encoder](/transformers/models.md#Encoder), which adds the final normalisation of a pre-norm stack.
# The feed-forward network has no dropout of its own: BERT's only dropout there is on the sublayer's output, which
# the layer applies.
def bert_encoder(config: BertConfig) -> Encoder:
    """`num_hidden_layers` BERT layers (weights to be initialised by [init_bert_](#init_bert_))."""
    attention = MultiHeadAttention(config.num_attention_heads, config.hidden_size,
                                   dropout_prob=config.attention_probs_dropout_prob, bias=True)
    feed_forward = FeedForward(config.hidden_size, config.intermediate_size, dropout=0.0,
                               activation=ACTIVATIONS[config.hidden_act]())
    layer = TransformerLayer(config.hidden_size, attention, None, feed_forward, config.hidden_dropout_prob,
                             pre_norm=config.pre_norm)
    encoder = Encoder(layer, config.num_hidden_layers)
    for module in encoder.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = config.layer_norm_eps
    return encoder


# ## Initialisation
#
# BERT's: every linear and embedding weight from $\mathcal{N}(0, \sigma^2)$ with $\sigma$ = `initializer_range`
# (0.02), the learned positions too, biases zero, normalisations at unit gain and zero bias. Chosen by module type.
# (The stack's layers are deep copies of one layer, so they must be initialised after they are copied.)
def init_bert_(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation of every module inside `module` (in place)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        if isinstance(m, BertEmbeddings):
            nn.init.normal_(m.positional_encodings, std=std)


# ## The BERT module
class Bert(nn.Module):
    """
    BERT's body: embeddings, encoder and pooler.

    `forward(input_ids, token_type_ids=None, attention_mask=None)` takes `[batch, seq]` tensors (`attention_mask` as
    Hugging Face's: 1 at real tokens, 0 at padding) and returns `(sequence_output [batch, seq, hidden],
    pooled_output [batch, hidden])`.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = bert_encoder(config)
        # $W_p$, $b_p$
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        init_bert_(self, config.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # $h^0$, `[batch, seq, hidden]`
        x = self.embeddings(input_ids, token_type_ids)
        # `[batch, 1, 1, seq]`, `True` at real tokens
        mask = key_mask(attention_mask, input_ids)
        # $h^L$ (normalised at the top of a pre-norm stack), `[batch, seq, hidden]`
        sequence_output = self.encoder(x, mask)
        # $\tanh(W_p h^L_{\texttt{[CLS]}} + b_p)$, `[batch, hidden]`
        pooled_output = torch.tanh(self.pooler(sequence_output[:, 0]))
        return sequence_output, pooled_output


# ## The masked-LM head
#
# A dense layer, the activation and a layer normalisation, then the **decoder**: logits against every token's
# embedding, $W_E^\top$ (one tensor with the input table, as in the [GPT](/transformers/gpt/index.md#tied-embeddings)),
# plus a bias of the head's own, one per token.
class MaskedLMHead(nn.Module):
    """`[batch, seq, hidden]` to `[batch, seq, vocab]` through dense, activation, LayerNorm and the tied decoder."""

    def __init__(self, config: BertConfig, embedding_weight: nn.Parameter):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight = embedding_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # `[batch, seq, hidden]` to `[batch, seq, vocab]`
        return self.decoder(self.norm(self.activation(self.dense(x))))


# ## BERT for pretraining
#
# The body, the masked-LM head on every position and the two-way next-sentence head on the pooled vector. The
# logits of every position are returned; the loss reads them at the chosen positions only.
class BertForPreTraining(nn.Module):
    """BERT with its pretraining heads.

    `forward` returns `(mlm_logits [batch, seq, vocab], sentence_logits [batch, 2])`."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(config)
        self.mlm_head = MaskedLMHead(config, self.bert.embeddings.embeddings.weight)
        self.sentence_head = nn.Linear(config.hidden_size, 2)
        # The heads' own parameters; the decoder's weight is the embedding table, initialised with the body.
        for module in (self.mlm_head.dense, self.mlm_head.norm, self.sentence_head):
            init_bert_(module, config.initializer_range)
        nn.init.zeros_(self.mlm_head.decoder.bias)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        sequence_output, pooled_output = self.bert(input_ids, token_type_ids, attention_mask)
        return self.mlm_head(sequence_output), self.sentence_head(pooled_output)


# ## BERT for sequence classification
#
# The pooled vector, dropout and one linear layer: the head of the fine-tuning tasks of the paper (GLUE).
class BertForSequenceClassification(nn.Module):
    """BERT with a classification head; `forward` returns logits `[batch, num_labels]`."""

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        self.config = config
        self.num_labels = num_labels
        self.bert = Bert(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_bert_(self.classifier, config.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        _, pooled_output = self.bert(input_ids, token_type_ids, attention_mask)
        # `[batch, hidden]` to `[batch, num_labels]`
        return self.classifier(self.dropout(pooled_output))


# ## Choosing the tokens to predict
#
# Each position that is not a special token ($\texttt{[CLS]}$, $\texttt{[SEP]}$, padding) is chosen with
# probability $p$ = `probability`. One uniform number $u$ per chosen position then splits them exactly 80/10/10:
# $u < 0.8$ becomes $\texttt{[MASK]}$, $0.8 \le u < 0.9$ a token drawn uniformly from the vocabulary (which may by
# chance be the original one), and the rest stay. The labels are the original tokens at the chosen positions and
# -100 elsewhere, the index that `F.cross_entropy` ignores by default.
#
# **Why not two independent draws.** Some implementations decide "random token" with probability 0.1 and,
# independently, "keep" with probability 0.1, and mask what is neither. Then a chosen position is masked with
# probability $0.9 \times 0.9 = 0.81$, replaced with $0.1$ (when "random" wins a tie), and kept with
# $0.1 \times 0.9 = 0.09$: 81/10/9, not 80/10/10. The fractions must be of the *chosen* positions and exclusive,
# which a single draw split into intervals gives. (Google's original code draws twice, but conditionally: 0.8,
# then 0.5 of the rest, which is also exact.)
def mask_tokens(input_ids: torch.Tensor, *, mask_token_id: int, vocab_size: int, special_token_ids,
                probability: float = 0.15, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """
    BERT's masking: returns `(inputs, labels)` shaped like `input_ids`; `labels` is the original token where a
    position was chosen and -100 elsewhere. Random replacements are drawn from `[0, vocab_size)` (the model's
    vocabulary, or a part of it such as the ordinary tokens when the special ones come last). Random numbers are
    drawn on `input_ids`'s device, from `generator` if given (it must be on that device).
    """
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must be an integer tensor, got dtype {input_ids.dtype}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int) or mask_token_id < 0:
        raise ValueError(f"mask_token_id must be a non-negative integer, got {mask_token_id!r}")
    device = input_ids.device
    special = torch.isin(input_ids, torch.as_tensor(list(special_token_ids), dtype=input_ids.dtype, device=device))
    # Positions to predict, `[batch, seq]`
    chosen = (torch.rand(input_ids.shape, generator=generator, device=device) < probability) & ~special
    # One draw splits the chosen positions into [MASK], random and unchanged.
    u = torch.rand(input_ids.shape, generator=generator, device=device)
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device,
                                  dtype=input_ids.dtype)
    inputs = torch.where(chosen & (u < 0.8), mask_token_id, input_ids)
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_tokens, inputs)
    labels = torch.where(chosen, input_ids, -100)
    return inputs, labels


# ## The name map of Hugging Face's BERT
#
# Our names against theirs. There is nothing to transpose or split: Hugging Face's BERT is written with
# `nn.Linear` layers, query, key and value separately, like ours. The differences are names, and the place of the
# norms: each layer's `attention.output.LayerNorm` normalises after the attention (post-norm), Megatron's
# `attention.ln` before it. Tied tensors are stored once: the masked-LM decoder's weight is the word-embedding
# table (checked equal if a file has both), and its bias is `cls.predictions.bias`.
def hf_name_map(config: BertConfig, model_class: type = BertForPreTraining) -> list[Row]:
    """The rows that fill `model_class` (Bert, BertForPreTraining or BertForSequenceClassification) from a
    checkpoint."""
    if model_class not in (Bert, BertForPreTraining, BertForSequenceClassification):
        raise ValueError(f"model_class must be Bert, BertForPreTraining or BertForSequenceClassification, "
                         f"got {model_class!r}")
    ours = "" if model_class is Bert else "bert."
    theirs = "" if model_class is Bert else "bert."
    rows = [
        Row(f"{ours}embeddings.embeddings.weight", f"{theirs}embeddings.word_embeddings.weight"),
        Row(f"{ours}embeddings.positional_encodings", f"{theirs}embeddings.position_embeddings.weight"),
        Row(f"{ours}embeddings.token_type_embeddings.weight", f"{theirs}embeddings.token_type_embeddings.weight"),
        Row((), f"{theirs}embeddings.position_ids", optional=True, note="the positions 0, 1, ...; recomputed"),
    ]
    if not config.pre_norm:
        rows += [Row(f"{ours}embeddings.norm.{p}", f"{theirs}embeddings.LayerNorm.{p}") for p in ("weight", "bias")]
    # One layer: our module against theirs, each with a weight and a bias.
    norm_self_attn, norm_ff = (("attention.ln", "ln") if config.pre_norm else
                               ("attention.output.LayerNorm", "output.LayerNorm"))
    layer = [
        ("self_attn.query", "attention.self.query"),
        ("self_attn.key", "attention.self.key"),
        ("self_attn.value", "attention.self.value"),
        ("self_attn.output", "attention.output.dense"),
        ("norm_self_attn", norm_self_attn),
        ("feed_forward.layer1", "intermediate.dense"),
        ("feed_forward.layer2", "output.dense"),
        ("norm_ff", norm_ff),
    ]
    for i in range(config.num_hidden_layers):
        rows += [Row(f"{ours}encoder.layers.{i}.{our}.{p}", f"{theirs}encoder.layer.{i}.{their}.{p}")
                 for our, their in layer for p in ("weight", "bias")]
    if config.pre_norm:
        rows += [Row(f"{ours}encoder.norm.{p}", f"{theirs}encoder.ln.{p}") for p in ("weight", "bias")]
    rows += [Row(f"{ours}pooler.{p}", f"{theirs}pooler.dense.{p}") for p in ("weight", "bias")]
    if model_class is BertForPreTraining:
        rows += [
            Row("mlm_head.dense.weight", "cls.predictions.transform.dense.weight"),
            Row("mlm_head.dense.bias", "cls.predictions.transform.dense.bias"),
            Row("mlm_head.norm.weight", "cls.predictions.transform.LayerNorm.weight"),
            Row("mlm_head.norm.bias", "cls.predictions.transform.LayerNorm.bias"),
            Row("mlm_head.decoder.bias", "cls.predictions.bias"),
            Row((), "cls.predictions.decoder.weight", optional=True, note="the word embeddings (tied)"),
            Row((), "cls.predictions.decoder.bias", optional=True, note="cls.predictions.bias (tied)"),
            Row("sentence_head.weight", "cls.seq_relationship.weight"),
            Row("sentence_head.bias", "cls.seq_relationship.bias"),
        ]
    if model_class is BertForSequenceClassification:
        rows += [Row(f"classifier.{p}", f"classifier.{p}") for p in ("weight", "bias")]
    return rows


# ## Loading a checkpoint
#
# The configuration from `config.json` (a classifier's number of labels from its `id2label`), the model built from
# it, the tensors read and walked through the table, strictly: a missing, unexpected or misshaped tensor is a
# `ValueError` naming the file and the key. Tied tensors that a file stores twice must agree. The model is returned
# in evaluation mode, as Hugging Face's `from_pretrained` returns it.
def load_hf(model_dir: str | Path, model_class: type = BertForPreTraining) -> nn.Module:
    """A `Bert`, `BertForPreTraining` (default) or `BertForSequenceClassification` with the weights of the Hugging
    Face checkpoint in `model_dir`."""
    raw, config_path = read_config(model_dir)
    config = BertConfig.from_dict(raw, config_path)
    rows = hf_name_map(config, model_class)
    if model_class is BertForSequenceClassification:
        num_labels = len(raw["id2label"]) if raw.get("id2label") else raw.get("num_labels", 2)
        model = model_class(config, num_labels)
    else:
        model = model_class(config)
    tensors, source = read_tensors(model_dir)
    for tied, table in (("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
                        ("cls.predictions.decoder.bias", "cls.predictions.bias")):
        if model_class is BertForPreTraining and tied in tensors and table in tensors:
            if not torch.equal(tensors[tied], tensors[table]):
                raise ValueError(f"{source}: {tied!r} differs from {table!r}; BERT ties them")
    load_table(model, rows, tensors, source)
    return model.eval()


if __name__ == "__main__":
    from labml_nn.transformers.experiments.bert import main

    main()

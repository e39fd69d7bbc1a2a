r"""
---
title: Transformer encoder and decoder
summary: The transformer of "Attention Is All You Need": embeddings, pre-norm and post-norm layers, encoder, decoder, output head, and greedy and beam-search decoding.
---

# Transformer encoder and decoder

This page puts the pieces together into the model of
[Attention Is All You Need](https://arxiv.org/abs/1706.03762) (Vaswani et al., 2017): an **encoder** reads the
source sentence, a **decoder** writes the target sentence one token at a time while looking back at what it
has written and across at the encoder's output.

* [Embeddings](/transformers/models.md#Embeddings) turn token ids into vectors, scaled by $\sqrt{d_{model}}$ in the paper,
  and add position information: [fixed sinusoids](/transformers/positional_encoding.md), learned vectors, or
  nothing at all when positions enter the attention itself ([rotary embeddings](/transformers/rope/index.md)).
* A [transformer layer](/transformers/models.md#TransformerLayer) is self-attention, then (in the decoder)
  attention over the encoder's output, then a [feed-forward network](/transformers/feed_forward.md); each of
  these *sublayers* sits in a residual connection with layer normalisation.
* The [encoder](/transformers/models.md#Encoder) and the [decoder](/transformers/models.md#Decoder) are stacks of
  identical layers.
* The [generator](/transformers/models.md#Generator) projects the decoder's output to one logit per word of the
  vocabulary.
* The [encoder-decoder](/transformers/models.md#EncoderDecoder) wires them together and decodes greedily or with
  beam search.

Tensors are batch-first, `[batch, seq, d_model]`. Masks are boolean with `True` meaning "may attend"
(see [masks](/transformers/utils.md)): the source mask is a padding mask `[batch, 1, 1, src_seq]`; the target
mask combines padding with the causal mask, e.g. `[batch, 1, tgt_seq, tgt_seq]`, so that position $t$ of the
decoder sees only positions $\le t$.

The experiment (`python -m labml_nn.transformers.models`, see [its page](/transformers/experiments/models.md))
trains this model on a synthetic sequence-to-sequence task and decodes with both methods.
"""

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.mha import KVCache, MultiHeadAttention
from labml_nn.transformers.positional_encoding import get_positional_encoding


# ## Token embeddings
#
# An `nn.Embedding` is a lookup table with one learned vector per token id. The paper multiplies the embeddings
# by $\sqrt{d_{model}}$. That only makes sense together with the initialisation: the original implementation
# ([tensor2tensor](https://github.com/tensorflow/tensor2tensor)) draws the table from
# $\mathcal{N}(0, 1/d_{model})$, so that after the scaling each feature has unit variance, the same scale as the
# sinusoidal positions (which lie in $[-1, 1]$) added to it. With PyTorch's default $\mathcal{N}(0, 1)$ the
# scaled embedding would drown the positions $\sqrt{d_{model}}$ times over.
#
# GPT-2 and most language models since do not scale (`scale=False`). The factor is not only a matter of
# initialisation: it multiplies the gradient that the table receives through the input by $\sqrt{d_{model}}$.
# When the table is also the output layer (tied embeddings, as in the [GPT](/transformers/gpt/index.md)), Adam
# normalises the sum of the two gradients, and the input's, $\sqrt{d_{model}}$ times larger, drowns the output's.
#
# This class has no position information; it is the embedding for models whose attention encodes positions
# (rotary embeddings), and the base of the two classes below.
class Embeddings(nn.Module):
    r"""
    Token embeddings scaled by $\sqrt{d_{model}}$ (unless `scale=False`), without positions.

    Arguments:
        d_model: width of the embeddings.
        n_vocab: number of token ids; valid ids are `0 ... n_vocab - 1`.
        max_len: the longest sequence (counting `offset`) the model accepts.
        dropout_prob: dropout on the output (the paper applies it to the sum of embeddings and positions).
        scale: multiply the embeddings by $\sqrt{d_{model}}$, as the paper does.
    """

    def __init__(self, d_model: int, n_vocab: int, max_len: int = 5000, dropout_prob: float = 0.0, *,
                 scale: bool = True):
        super().__init__()
        if d_model < 1 or n_vocab < 1 or max_len < 1:
            raise ValueError(f"d_model, n_vocab and max_len must be positive, "
                             f"got d_model={d_model}, n_vocab={n_vocab}, max_len={max_len}")
        self.d_model = d_model
        self.n_vocab = n_vocab
        self.max_len = max_len
        self.scale = scale
        self.embeddings = nn.Embedding(n_vocab, d_model)
        # Unit variance per feature either way: $\mathcal{N}(0, 1/d_{model})$ times $\sqrt{d_{model}}$, or $\mathcal{N}(0, 1)$.
        nn.init.normal_(self.embeddings.weight, std=d_model ** -0.5 if scale else 1.0)
        self.dropout = nn.Dropout(dropout_prob)

    # ### Checking the input
    #
    # `nn.Embedding` fails on an out-of-range id with an opaque index error on the CPU and a device-side assert
    # on a GPU; a too-long sequence would fail later with a shape error in the position table. We say what is
    # wrong instead. On the CPU the check is one cheap pass over the ids. On an accelerator, reading the ids back
    # to the host would stall the device at every step, so there we use `torch._assert_async`, which checks on the
    # device without waiting (a failure surfaces as a `RuntimeError` at a later synchronisation).
    def check_tokens(self, tokens: torch.Tensor, offset: int) -> None:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor [batch, seq], got shape {tuple(tokens.shape)} "
                             f"and dtype {tokens.dtype}")
        if offset < 0 or offset + tokens.shape[1] > self.max_len:
            raise ValueError(f"positions {offset} ... {offset + tokens.shape[1] - 1} (offset={offset}, "
                             f"seq={tokens.shape[1]}) do not fit in max_len={self.max_len}")
        if tokens.numel() == 0:
            return
        message = f"token ids must be in [0, n_vocab={self.n_vocab})"
        if tokens.device.type == "cpu":
            low, high = torch.aminmax(tokens)
            if low < 0 or high >= self.n_vocab:
                raise ValueError(f"{message}, got ids from {int(low)} to {int(high)}")
        else:
            torch._assert_async(((tokens >= 0) & (tokens < self.n_vocab)).all(), message)

    # ### Scaled token embeddings
    #
    # $$\text{Embed}(x) \cdot \sqrt{d_{model}}$$
    #
    # The lookup, scaled as in the paper (or not, with `scale=False`).
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        # `[batch, seq]` to `[batch, seq, d_model]`
        x = self.embeddings(tokens)
        return x * math.sqrt(self.d_model) if self.scale else x

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """
        Arguments:
            tokens: token ids `[batch, seq]`.
            offset: position of `tokens[:, 0]` (the number of earlier positions, e.g. in a key/value cache).

        Returns:
            `[batch, seq, d_model]`.
        """
        self.check_tokens(tokens, offset)
        return self.dropout(self.embed_tokens(tokens))


# ## Embeddings with fixed positional encodings
#
# $$\text{Embed}(x_t) \sqrt{d_{model}} + \mathrm{PE}_t$$
#
# The paper's choice: the [sinusoidal encoding](/transformers/positional_encoding.md) $\mathrm{PE}_t$ of position $t$ is
# added to the scaled token embedding. It has no parameters, so the table is a non-persistent buffer: it is not
# saved in checkpoints, and it moves with the module to the model's device and dtype.
class EmbeddingsWithPositionalEncoding(Embeddings):
    r"""Token embeddings scaled by $\sqrt{d_{model}}$ plus the fixed sinusoidal positional encoding."""

    def __init__(self, d_model: int, n_vocab: int, max_len: int = 5000, dropout_prob: float = 0.0, *,
                 scale: bool = True):
        super().__init__(d_model, n_vocab, max_len, dropout_prob, scale=scale)
        # `[max_len, d_model]`
        self.register_buffer("positional_encodings", get_positional_encoding(d_model, max_len), persistent=False)

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        self.check_tokens(tokens, offset)
        # The encodings of positions `offset ... offset + seq - 1`, `[seq, d_model]`, broadcast over the batch
        positions = self.positional_encodings[offset:offset + tokens.shape[1]]
        # `[batch, seq, d_model]`
        return self.dropout(self.embed_tokens(tokens) + positions)


# ## Embeddings with learned positions
#
# $$\text{Embed}(x_t) \sqrt{d_{model}} + P_t$$
#
# Here the position vectors $P_t$ are parameters, one per position up to `max_len`, learned like the token
# embeddings. The paper found them about as good as the sinusoids; GPT-2 and BERT use them. They cannot handle a
# position they were not trained on. They start small, $\mathcal{N}(0, 0.02^2)$ as in nanoGPT and Hugging Face's
# GPT-2 (OpenAI's GPT-2 code uses a standard deviation of 0.01), so that at first the model sees mostly the tokens.
class EmbeddingsWithLearnedPositionalEncoding(Embeddings):
    r"""Token embeddings scaled by $\sqrt{d_{model}}$ plus learned position vectors."""

    def __init__(self, d_model: int, n_vocab: int, max_len: int = 5000, dropout_prob: float = 0.0, *,
                 scale: bool = True):
        super().__init__(d_model, n_vocab, max_len, dropout_prob, scale=scale)
        # `[max_len, d_model]`
        self.positional_encodings = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.positional_encodings, std=0.02)

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        self.check_tokens(tokens, offset)
        # The vectors of positions `offset ... offset + seq - 1`, `[seq, d_model]`, broadcast over the batch
        positions = self.positional_encodings[offset:offset + tokens.shape[1]]
        # `[batch, seq, d_model]`
        return self.dropout(self.embed_tokens(tokens) + positions)


# ## Transformer layer
#
# A layer is two or three *sublayers*, each wrapped in a residual connection: self-attention; attention over the
# encoder's output (decoder layers only); and the position-wise feed-forward network. Where the layer
# normalisation goes is the one real design choice.
#
# **Post-norm**, the paper's layer, normalises after adding the residual:
#
# $$x \leftarrow \text{LayerNorm}\big(x + \text{Dropout}(\text{Sublayer}(x))\big)$$
#
# **Pre-norm**, used by GPT-2 and most models since, normalises the sublayer's input and leaves the residual
# stream untouched:
#
# $$x \leftarrow x + \text{Dropout}\big(\text{Sublayer}(\text{LayerNorm}(x))\big)$$
#
# Why pre-norm trains more stably: in a pre-norm stack the output is the input plus a sum of the sublayers'
# contributions, so the gradient reaches every layer through an identity path. In a post-norm stack every
# gradient passes through each layer normalisation above it, and
# [Xiong et al., 2020](https://arxiv.org/abs/2002.04745) show that at initialisation the gradients of the last
# layers are then large: the paper's model needs a learning-rate warm-up to survive its first steps, and deep
# post-norm stacks diverge without one. Pre-norm's residual stream is never normalised, so a pre-norm stack
# ends with a final layer normalisation (see [the stacks](/transformers/models.md#Encoder)). Post-norm, when it
# does train, often reaches a slightly better result; pre-norm is the safe default.
class TransformerLayer(nn.Module):
    """
    One encoder layer (`src_attn=None`) or decoder layer.

    Arguments:
        d_model: width of the token vectors.
        self_attn: the self-attention, a [`MultiHeadAttention`](/transformers/mha.md#MultiHeadAttention) (or a
            subclass such as rotary attention).
        src_attn: attention over the encoder's output (decoder layers), or `None`.
        feed_forward: the position-wise [`FeedForward`](/transformers/feed_forward.md#FeedForward) network.
        dropout_prob: dropout on each sublayer's output, before it is added to the residual.
        pre_norm: pre-norm (default) or the paper's post-norm.
        norm_eps: the epsilon of the layer normalisations (PyTorch's default $10^{-5}$); the stack's final
            normalisation takes the same.
    """

    def __init__(self, d_model: int, self_attn: MultiHeadAttention, src_attn: MultiHeadAttention | None,
                 feed_forward: FeedForward, dropout_prob: float, pre_norm: bool = True, *, norm_eps: float = 1e-5):
        super().__init__()
        self.d_model = d_model
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        self.dropout = nn.Dropout(dropout_prob)
        self.pre_norm = pre_norm
        self.norm_eps = norm_eps
        # One layer normalisation per sublayer
        self.norm_self_attn = nn.LayerNorm(d_model, eps=norm_eps)
        self.norm_src_attn = nn.LayerNorm(d_model, eps=norm_eps) if src_attn is not None else None
        self.norm_ff = nn.LayerNorm(d_model, eps=norm_eps)

    # ### The residual connection around a sublayer
    #
    # The two placements of the normalisation, as in the equations above.
    def residual(self, x: torch.Tensor, norm: nn.LayerNorm,
                 sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, src: torch.Tensor | None = None,
                src_mask: torch.Tensor | None = None, *, is_causal: bool = False,
                cache: KVCache | None = None) -> torch.Tensor:
        """
        Arguments:
            x: `[batch, seq, d_model]`.
            mask: self-attention mask, broadcastable to `[batch, heads, seq, seq]` (`True` = may attend).
            src: the encoder's output `[batch, src_seq, d_model]` (decoder layers only).
            src_mask: mask over `src`, e.g. the source padding mask `[batch, 1, 1, src_seq]`.
            is_causal: make the self-attention causal (combined with `mask`).
            cache: the self-attention's [`KVCache`](/transformers/mha.md#KVCache) for incremental decoding.

        Returns:
            `[batch, seq, d_model]`.
        """
        if (src is None) != (self.src_attn is None):
            raise ValueError("src must be given exactly when the layer has src_attn "
                             f"(src_attn is {'set' if self.src_attn is not None else 'None'}, "
                             f"src is {'given' if src is not None else 'None'})")
        # Self-attention: queries, keys and values all come from the layer's input, the same tensor
        # (which lets the attention project all three in one matrix product).
        x = self.residual(x, self.norm_self_attn,
                          lambda z: self.self_attn(z, z, z, mask, is_causal=is_causal, cache=cache))
        # Attention over the source: queries from the decoder, keys and values from the encoder's output.
        # The encoder's output was already normalised at the top of the encoder, so it is not normalised again.
        if self.src_attn is not None:
            x = self.residual(x, self.norm_src_attn, lambda z: self.src_attn(z, src, src, src_mask))
        # The feed-forward network
        return self.residual(x, self.norm_ff, self.feed_forward)


# ## Stacks of layers
#
# The encoder and the decoder are each `n_layers` copies of one layer (deep copies, so each has its own
# weights). A pre-norm stack adds a final layer normalisation: its residual stream has never been normalised,
# and its scale grows with depth. A post-norm stack's output is already the output of a layer normalisation.
class TransformerStack(nn.Module):
    """`n_layers` deep copies of `layer` and the final normalisation (the identity for post-norm)."""

    def __init__(self, layer: TransformerLayer, n_layers: int):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be positive, got {n_layers}")
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(layer.d_model, eps=layer.norm_eps) if layer.pre_norm else nn.Identity()

    # ### Key/value caches for incremental decoding
    #
    # One [`KVCache`](/transformers/mha.md#KVCache) per layer, sized for the layer's self-attention.
    def new_caches(self, batch_size: int, max_len: int, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> list[KVCache]:
        return [KVCache(batch_size, layer.self_attn.kv_heads, max_len, layer.self_attn.d_head, dtype=dtype,
                        device=device) for layer in self.layers]

    def check_caches(self, caches: list[KVCache] | None) -> None:
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(f"caches must have one KVCache per layer ({len(self.layers)}), got {len(caches)}")


# ### Encoder
#
# Self-attention over the source, each position seeing every non-padding position. With `is_causal` and
# caches the same stack is a decoder-only language model's body ([GPT](/transformers/gpt/index.md)).
class Encoder(TransformerStack):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, is_causal: bool = False,
                caches: list[KVCache] | None = None) -> torch.Tensor:
        """`x` `[batch, seq, d_model]`, `mask` broadcastable to `[batch, heads, seq, seq]`; one cache per layer."""
        self.check_caches(caches)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, is_causal=is_causal, cache=caches[i] if caches is not None else None)
        return self.norm(x)


# ### Decoder
#
# Causal self-attention over the target written so far, and attention over the encoder's output `memory`.
class Decoder(TransformerStack):
    def forward(self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None = None,
                tgt_mask: torch.Tensor | None = None, *, is_causal: bool = False,
                caches: list[KVCache] | None = None) -> torch.Tensor:
        """
        Arguments:
            x: embedded target `[batch, tgt_seq, d_model]`.
            memory: the encoder's output `[batch, src_seq, d_model]`.
            src_mask: source padding mask `[batch, 1, 1, src_seq]`.
            tgt_mask: target mask (padding and causal), broadcastable to `[batch, heads, tgt_seq, tgt_seq]`.
            is_causal: apply the causal mask without building it (combined with `tgt_mask`).
            caches: one self-attention [`KVCache`](/transformers/mha.md#KVCache) per layer.
        """
        self.check_caches(caches)
        for i, layer in enumerate(self.layers):
            x = layer(x, tgt_mask, memory, src_mask, is_causal=is_causal,
                      cache=caches[i] if caches is not None else None)
        return self.norm(x)


# ## Generator
#
# A linear projection from $d_{model}$ to one logit per word of the target vocabulary. It returns logits, not
# probabilities: the loss (`F.cross_entropy`, [label smoothing](/transformers/label_smoothing_loss.md)) applies
# the log-softmax itself, more accurately than a separate softmax followed by a logarithm.
class Generator(nn.Module):
    def __init__(self, n_vocab: int, d_model: int):
        super().__init__()
        self.projection = nn.Linear(d_model, n_vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # `[batch, seq, d_model]` to `[batch, seq, n_vocab]`
        return self.projection(x)


# ## Initialisation
#
# The linear layers get Glorot (Xavier) uniform weights, as in the Annotated Transformer, and zero biases;
# layer normalisations keep unit gain and zero bias; embeddings initialise themselves (above). The
# [configurations](/transformers/configs.md) apply this when they build a model; it is a separate function
# so that a model assembled by hand keeps whatever initialisation its parts came with.
def init_linear_xavier_(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every `nn.Linear` inside `module` (in place)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ## Encoder-decoder
#
# The whole model. Training feeds the target shifted right (starting with a start symbol) and predicts each next
# token, all positions at once thanks to the causal mask. Decoding writes one token at a time.
class EncoderDecoder(nn.Module):
    """
    Arguments:
        encoder: the [`Encoder`](/transformers/models.md#Encoder).
        decoder: the [`Decoder`](/transformers/models.md#Decoder).
        src_embed: embeddings of the source tokens (one of the classes above).
        tgt_embed: embeddings of the target tokens.
        generator: the [`Generator`](/transformers/models.md#Generator), to target-vocabulary logits.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, src_embed: Embeddings, tgt_embed: Embeddings,
                 generator: Generator):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.src_embed = src_embed
        self.tgt_embed = tgt_embed
        self.generator = generator

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None,
                tgt_mask: torch.Tensor | None) -> torch.Tensor:
        """
        Arguments:
            src: source token ids `[batch, src_seq]`.
            tgt: target token ids `[batch, tgt_seq]` (shifted right: they predict the next token).
            src_mask: source padding mask `[batch, 1, 1, src_seq]`.
            tgt_mask: target padding and causal mask, e.g. `[batch, 1, tgt_seq, tgt_seq]`.

        Returns:
            logits `[batch, tgt_seq, n_tgt_vocab]`.
        """
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(memory, src_mask, tgt, tgt_mask))

    # Encode the source into `memory`, `[batch, src_seq, d_model]`.
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        return self.encoder(self.src_embed(src), src_mask)

    # Decode the target given `memory`, to the decoder's output `[batch, tgt_seq, d_model]`.
    # With `caches`, `tgt` holds only the new tokens: the keys and values of the earlier ones are in the caches,
    # and the new tokens' positions start after them. The decoder must be causal: pass `tgt_mask`, or
    # `is_causal=True` (which also works with caches, where a mask would have to cover the cached positions too).
    def decode(self, memory: torch.Tensor, src_mask: torch.Tensor | None, tgt: torch.Tensor,
               tgt_mask: torch.Tensor | None, *, is_causal: bool = False,
               caches: list[KVCache] | None = None) -> torch.Tensor:
        offset = caches[0].length if caches is not None else 0
        x = self.tgt_embed(tgt, offset=offset)
        return self.decoder(x, memory, src_mask, tgt_mask, is_causal=is_causal, caches=caches)

    # ### One decoding step
    #
    # The logits of the token that follows `tokens` `[batch, new]`, whose predecessors are in `caches`:
    # `[batch, n_tgt_vocab]`. Only the new tokens pass through the decoder's self-attention. The attention over the
    # source still projects `memory` to keys and values at every step; they never change, so a cache for them
    # would save that work too, at the cost of a second kind of cache. The encoder's output is computed once.
    def next_token_logits(self, memory: torch.Tensor, src_mask: torch.Tensor | None, tokens: torch.Tensor,
                          caches: list[KVCache]) -> torch.Tensor:
        out = self.decode(memory, src_mask, tokens, None, is_causal=True, caches=caches)
        # The last position's logits, `[batch, n_tgt_vocab]`
        return self.generator(out[:, -1])

    # ### Greedy decoding
    #
    # $$y_t = \mathop{\text{argmax}}_w \; p(w \mid y_{<t}, x)$$
    #
    # Start with the start symbol and append the most likely next token, `max_len - 1` times. The encoder runs
    # once; the decoder sees each new token once, its earlier keys and values coming from the caches.
    #
    # With an `end_symbol`, a sequence that has produced it is finished: the rest of it is filled with
    # `end_symbol`, and decoding stops as soon as every sequence is finished. That check reads a flag from the
    # device once per step, the price of stopping early.
    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_mask: torch.Tensor | None, max_len: int, start_symbol: int,
                      end_symbol: int | None = None) -> torch.Tensor:
        """Greedy decoding: `[batch, max_len]` token ids, starting with `start_symbol`."""
        batch = src.shape[0]
        memory = self.encode(src, src_mask)
        caches = self.decoder.new_caches(batch, max_len, memory.dtype, memory.device)
        # `[batch, max_len]`
        tokens = torch.full((batch, max_len), start_symbol, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        for t in range(1, max_len):
            # Feed the last token, `[batch, 1]`, and take the most likely next one, `[batch]`
            next_token = self.next_token_logits(memory, src_mask, tokens[:, t - 1:t], caches).argmax(dim=-1)
            if end_symbol is not None:
                next_token = next_token.masked_fill(finished, end_symbol)
                finished = finished | (next_token == end_symbol)
            tokens[:, t] = next_token
            if end_symbol is not None and bool(finished.all()):
                tokens[:, t + 1:] = end_symbol
                break
        return tokens

    # ### Beam search
    #
    # Greedy decoding commits to the most likely token at each step, and a likely word now can force an unlikely
    # sentence later. Beam search keeps the `beam_size` best partial hypotheses of each sample; at each step every
    # hypothesis is extended by every word, and the best `beam_size` of these `beam_size × n_vocab` candidates
    # survive.
    #
    # **Finished hypotheses.** A hypothesis that has produced `end_symbol` is complete. We keep it in its beam,
    # frozen: its only continuation is `end_symbol` again, with probability one, so its score no longer changes,
    # and it competes with the unfinished hypotheses at every step. This is beam search over the model in which
    # `end_symbol` is absorbing, so `beam_size=1` is exactly greedy decoding with an end symbol. The search stops
    # when every hypothesis in every beam is finished, or after `max_len - 1` steps; the best hypothesis
    # is returned, padded after its end symbol with `end_symbol`.
    #
    # **Length normalisation.** The log-probability $\log p(y \mid x) = \sum_t \log p(y_t \mid y_{<t}, x)$ only
    # decreases as a hypothesis grows, so ranking by it prefers short outputs. We rank by
    #
    # $$\text{score}(y) = \frac{\log p(y \mid x)}{|y|^{\alpha}}$$
    #
    # where $|y|$ counts the generated tokens up to and including the end symbol (not the start symbol, nor the
    # padding after the end), and $\alpha$ is `length_penalty`: $\alpha = 1$ (the default) ranks by the mean
    # log-probability per token, $\alpha = 0$ by the plain log-probability. Unfinished candidates of one step all
    # have the same length, so among them the ranking is the same either way; the exponent matters when finished
    # and unfinished hypotheses compete.
    #
    # Everything is batched: the `batch × beam_size` hypotheses go through the decoder as one batch, and after each
    # step the key/value caches are reordered so that each surviving hypothesis carries its parent's cache.
    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, src_mask: torch.Tensor | None, max_len: int, start_symbol: int,
                    end_symbol: int, beam_size: int = 4, length_penalty: float = 1.0) -> torch.Tensor:
        """Beam search: the best hypothesis of each sample, `[batch, max_len]`, starting with `start_symbol`."""
        if beam_size < 1:
            raise ValueError(f"beam_size must be positive, got {beam_size}")
        batch, device = src.shape[0], src.device
        memory = self.encode(src, src_mask)
        # Every hypothesis of a sample reads that sample's memory:
        # `[batch, src_seq, d_model]` to `[batch * beam_size, src_seq, d_model]`
        memory = memory.repeat_interleave(beam_size, dim=0)
        if src_mask is not None and src_mask.shape[0] == batch:
            # `[batch, 1, 1, src_seq]` to `[batch * beam_size, 1, 1, src_seq]`
            src_mask = src_mask.repeat_interleave(beam_size, dim=0)
        caches = self.decoder.new_caches(batch * beam_size, max_len, memory.dtype, device)

        # The hypotheses, `[batch, beam_size, max_len]`
        tokens = torch.full((batch, beam_size, max_len), start_symbol, dtype=torch.long, device=device)
        # $\log p(y \mid x)$ of each hypothesis, `[batch, beam_size]`. At the start all hypotheses are the same
        # start symbol, so only the first is alive: otherwise the first step would pick `beam_size` copies of the
        # best word.
        scores = torch.full((batch, beam_size), float("-inf"), device=device)
        scores[:, 0] = 0.0
        # $|y|$ and whether the hypothesis has produced the end symbol, `[batch, beam_size]`
        lengths = torch.zeros(batch, beam_size, device=device)
        finished = torch.zeros(batch, beam_size, dtype=torch.bool, device=device)
        # The continuation of a finished hypothesis: the end symbol with probability one, `[n_vocab]`
        n_vocab = self.generator.projection.out_features
        frozen = torch.full((n_vocab,), float("-inf"), device=device)
        frozen[end_symbol] = 0.0
        # Index of each sample's first hypothesis in the flat `batch * beam_size` layout, `[batch, 1]`
        sample_start = torch.arange(batch, device=device)[:, None] * beam_size

        for t in range(1, max_len):
            last = tokens[:, :, t - 1].reshape(batch * beam_size, 1)
            logits = self.next_token_logits(memory, src_mask, last, caches)
            # `[batch * beam_size, n_vocab]` to `[batch, beam_size, n_vocab]`
            log_probs = F.log_softmax(logits.float(), dim=-1).view(batch, beam_size, n_vocab)
            log_probs = torch.where(finished[:, :, None], frozen, log_probs)

            # Every one-word extension of every hypothesis, `[batch, beam_size, n_vocab]`
            candidate_scores = scores[:, :, None] + log_probs
            # Only unfinished hypotheses grow, `[batch, beam_size]`
            candidate_lengths = lengths + (~finished).float()
            # $\log p(y \mid x) / |y|^\alpha$, `[batch, beam_size, n_vocab]`
            normalised = candidate_scores / candidate_lengths[:, :, None] ** length_penalty

            # The best `beam_size` candidates of each sample. `[batch, beam_size * n_vocab]` to `[batch, beam_size]`
            _, best = normalised.view(batch, beam_size * n_vocab).topk(beam_size, dim=-1)
            parent, word = best // n_vocab, best % n_vocab
            scores = candidate_scores.view(batch, beam_size * n_vocab).gather(1, best)
            lengths = candidate_lengths.gather(1, parent)
            # A hypothesis of probability zero (there were fewer than `beam_size` possible ones) counts as
            # finished: it can never win, and should not keep the search going.
            finished = finished.gather(1, parent) | (word == end_symbol) | scores.isneginf()
            # Each survivor copies its parent's tokens and appends its word; `[batch, beam_size, max_len]`
            tokens = tokens.gather(1, parent[:, :, None].expand(-1, -1, max_len))
            tokens[:, :, t] = word
            # Each survivor takes over its parent's keys and values.
            # `parent` `[batch, beam_size]` to positions in the flat batch `[batch * beam_size]`
            reorder = (sample_start + parent).view(-1)
            for cache in caches:
                cache.key[:, :, :cache.length] = cache.key[reorder, :, :cache.length]
                cache.value[:, :, :cache.length] = cache.value[reorder, :, :cache.length]

            if bool(finished.all()):
                tokens[:, :, t + 1:] = end_symbol
                break

        # `topk` sorts its output, so the first hypothesis of each sample has the best score.
        # A hypothesis that never finished (the search ran out of steps) is ranked by its score like any other.
        return tokens[:, 0]


if __name__ == "__main__":
    from labml_nn.transformers.experiments.models import main

    main()

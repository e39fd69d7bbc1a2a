r"""
---
title: GPT
summary: A decoder-only language model in the style of GPT-2 and nanoGPT, with tied input and output embeddings, GPT-2's initialisation, weight-decay groups, and cached sampling with temperature, top-k and nucleus filtering.
---

# GPT

A GPT is a language model: given tokens $x_1 \dots x_t$ it predicts a distribution over the next token
$x_{t+1}$. It is the decoder of the [transformer](/transformers/models.md) without the attention over an encoder:
a stack of causal self-attention layers, trained to predict every position's next token at once.
This is the architecture of GPT-2 ([Radford et al., 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf))
as Andrej Karpathy's [nanoGPT](https://github.com/karpathy/nanoGPT) writes it, built from this package's parts.

## The model

With token ids $x_1 \dots x_T$, the token embedding table $W_E \in \mathbb{R}^{V \times d_{model}}$ and the
position vectors $P$,

$$
\begin{aligned}
h^0_t &= s\, W_E[x_t] + P_t \\
a^l &= h^{l-1} + \text{Attention}\big(\text{LN}(h^{l-1})\big) \\
h^l &= a^l + \text{FFN}\big(\text{LN}(a^l)\big) \qquad l = 1 \dots L \\
\text{logits}_t &= \text{LN}(h^L_t)\, W_E^\top
\end{aligned}
$$

* The attention is **causal**: position $t$ attends to positions $\le t$ only, so that the prediction of
  $x_{t+1}$ never sees $x_{t+1}$. Training then scores all $T$ predictions of a sequence in one pass.
* The layers are **pre-norm** ([why](/transformers/models.md#TransformerLayer)), so the stack ends with a
  final layer normalisation. (`pre_norm=False` in the configuration gives post-norm layers, as in GPT-1.)
* **Positions** are whatever the [configuration](/transformers/configs.md) says: `learned` is GPT-2's choice;
  `fixed` adds the paper's sinusoids; `rope` rotates queries and keys
  ([rotary embeddings](/transformers/rope/index.md)) and adds nothing to $h^0$; `none` relies on the causal mask
  alone: a causal model can still infer positions, for instance by how many tokens it attends to
  ([Haviv et al., 2022](https://arxiv.org/abs/2203.16634)).
* The **embedding scale** $s$ is $\sqrt{d_{model}}$ in "Attention Is All You Need" and 1 in GPT-2; the
  configuration's `scale_embeddings` chooses ([the embeddings](/transformers/models.md#Embeddings)), and the
  experiment's presets take GPT-2's $s = 1$. With GPT-2's initialisation (below) the factor would make the tokens'
  part of $h^0$ $\sqrt{d_{model}}$ times larger than the positions' and than what each sublayer first adds to the
  residual stream, and it multiplies the gradient that the tied table gets through the input by the same factor,
  so that Adam's normalised step follows the input's gradient and hardly the output's. Trained with the
  experiment's `baby` recipe and GPT-2's $\sigma = 0.02$, the model with the factor ends about 0.1 nats worse.

## Tied embeddings

The output layer maps a $d_{model}$ vector to $V$ logits with the **same matrix** $W_E$ that maps tokens to
vectors ([Press & Wolf, 2017](https://arxiv.org/abs/1608.05859)): a token's logit is the dot product of the
final hidden state with that token's embedding. Two tokens that can replace each other in a sentence should have
similar input vectors and similar output vectors, so one matrix can serve both; the model has
$V \cdot d_{model}$ fewer parameters (a large share of a small model); and a rare token's embedding learns from
every step's output loss, not only from the steps where it appears in the input.
Here the tying is literal: `head.weight` *is* `embed.embeddings.weight`, one tensor.

## Initialisation

GPT-2 draws every linear and token-embedding weight from $\mathcal{N}(0, \sigma^2)$ with $\sigma = 0.02$, and
sets biases to zero. The residual stream $h^L = h^0 + \sum_{i=1}^{2L} f_i$ is a sum of $2L$ sublayer outputs;
if each adds variance $v$, the stream's variance grows like $2Lv$ with depth. So the two **residual
projections** of each layer, the attention's output projection $W^O$ and the feed-forward network's second
layer, start with standard deviation $\sigma / \sqrt{2L}$: each sublayer then adds variance $v / 2L$, and the
whole stack adds $v$, however deep it is. The initialisation is chosen by module type (every `nn.Linear`, every
`nn.Embedding`), and the residual projections are found by their place in the layer, not by the names of their
parameters.

**The scale $\sigma$ should follow the width.** A linear layer with $d$ inputs of unit variance and weights of
standard deviation $\sigma$ gives outputs of standard deviation $\sigma\sqrt{d}$. At GPT-2's width, 768,
$0.02\sqrt{768} = 0.55$: queries, keys and hidden features start at about half the scale of their inputs. At
$d_{model} = 128$ the same 0.02 gives 0.23, and what must grow in training starts very small: an attention
score $q \cdot k$ is the product of two such projections, so at first every query spreads its attention almost
evenly, and the gradient of each factor is proportional to the other, so both grow slowly. A rule that follows
the width is the "small init" of [Nguyen & Salazar (2019)](https://arxiv.org/abs/1910.05895), also GPT-NeoX's,
$\sigma = \sqrt{2 / (5\, d_{model})}$: at $d_{model} = 768$ it is 0.023, GPT-2's value, and at 128 it is
0.056. `init_std` sets $\sigma$ (GPT-2's 0.02 by default); the experiment's `baby` preset takes the small init,
which lowers its validation loss from 1.894 to 1.755 (means over seeds 0, 1 and 2; nanoGPT's model, with
0.02, gets 1.907). The optimum is broad: $\sigma$ = 0.06 and 0.08 give 1.750 and 1.752, $1/\sqrt{d_{model}}$
= 0.088 gives 1.769 and 0.04 gives 1.792, while 0.12 (1.840) and 0.01 (1.941, seed 0 only) are clearly worse.
The learned positions keep their own small start, $\mathcal{N}(0, 0.02^2)$
([the embeddings](/transformers/models.md#EmbeddingsWithLearnedPositionalEncoding)).

## Generating text

[`generate`](#GPT.generate) extends a prompt one token at a time, each sampled from the model's prediction.
Recomputing the whole prefix for every new token costs a forward pass over $t$ positions at step $t$; but in a
causal model the keys and values of earlier positions never change, so a
[key/value cache](/transformers/mha.md#KVCache) keeps them and each step only runs the new token through the
layers. Sampling is shaped by the temperature and by top-$k$ and nucleus (top-$p$) filtering, explained
[below](#sampling). With `eos_token_id` a row stops at its first stop token, and generation ends when every row
has stopped, as in [Llama's](/transformers/llama/generation.md#Llama.generate).

## GPT-2's weights

[`load_hf`](/transformers/gpt/hf.md#load_hf) loads Hugging Face's GPT-2 checkpoints (`gpt2`, `gpt2-medium`, ...,
or any `GPT2LMHeadModel.save_pretrained` directory) into this class, offline, where nanoGPT's
`GPT.from_pretrained('gpt2')` downloads them. GPT-2 is this model with learned positions, unscaled embeddings and
pre-norm layers, as above, and with biases on every linear layer except the tied output layer, which is what
the [attention](/transformers/mha.md#MultiHeadAttention) and the
[feed-forward network](/transformers/feed_forward.md#FeedForward) have by default. Two things differ and are
options of the configuration: GPT-2's feed-forward network uses the **tanh approximation of the GELU**
(Hugging Face's `gelu_new`, our `ffn_activation="gelu_tanh"`) rather than the exact GELU of `"gelu"`, which the
experiment trains with; and the layer norms' $\epsilon$ comes from the checkpoint (`norm_eps`).
[Its page](/transformers/gpt/hf.md) has the name map between their tensors and ours.

The experiment (`python -m labml_nn.transformers.gpt`, see [its page](/transformers/experiments/gpt.md)) trains
a small GPT on Tiny Shakespeare and samples from it.
"""

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.mha import KVCache
from labml_nn.transformers.models import TransformerLayer


# <a id="GPT"></a>
#
# ## The GPT module
class GPT(nn.Module):
    r"""
    A GPT-2 style language model built from a [`TransformerConfigs`](/transformers/configs.md#TransformerConfigs).

    The vocabulary size is `configs.n_src_vocab`; the context length is `configs.max_len`; positions are
    `configs.positional`; the feed-forward network is `configs.ffn_activation`. `init_std` is the $\sigma$ of
    [the initialisation](#init_gpt2_).
    """

    def __init__(self, configs: TransformerConfigs, init_std: float = 0.02):
        super().__init__()
        if configs.n_src_vocab is None:
            raise ValueError("configs.n_src_vocab must be set to the vocabulary size for a GPT, got None")
        check_init_std(init_std)
        self.n_vocab = configs.n_src_vocab
        self.max_len = configs.max_len
        self.n_layers = configs.n_layers

        # Token embeddings plus positions (as `configs.positional` says), followed by dropout.
        self.embed = configs.build_src_embed()
        # The stack of layers with its final layer normalisation. It is run with `is_causal=True`, so the
        # attention uses SDPA's causal kernel instead of a mask.
        self.encoder = configs.build_encoder()
        # The output layer, $W_E^\top$: no bias, and its weight is the token embedding table itself.
        self.head = nn.Linear(configs.d_model, self.n_vocab, bias=False)
        self.head.weight = self.embed.embeddings.weight

        init_gpt2_(self, self.encoder.layers, init_std)

    # ### The final hidden states
    #
    # $\text{LN}(h^L)$, `[batch, seq, d_model]`. With `caches` (one [`KVCache`](/transformers/mha.md#KVCache) per
    # layer), `tokens` are the new tokens only: their positions start after the cached ones, and their keys and
    # values are appended to the caches.
    def hidden_states(self, tokens: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        offset = caches[0].length if caches is not None else 0
        # $h^0$, `[batch, seq, d_model]`
        x = self.embed(tokens, offset=offset)
        # $\text{LN}(h^L)$, `[batch, seq, d_model]`
        return self.encoder(x, is_causal=True, caches=caches)

    def forward(self, tokens: torch.Tensor, *, caches: list[KVCache] | None = None) -> torch.Tensor:
        """
        Arguments:
            tokens: token ids `[batch, seq]`, `seq <= max_len` (counting cached positions).
            caches: optional, one [`KVCache`](/transformers/mha.md#KVCache) per layer (see
                [`new_caches`](#GPT.new_caches)); `tokens` then follow the cached positions.

        Returns:
            logits `[batch, seq, n_vocab]`: at position $t$, the unnormalised log-probabilities of token $t + 1$.
            The loss is `F.cross_entropy(logits.flatten(0, 1), targets.flatten())` with `targets` the tokens
            shifted left by one; the trainer computes it.
        """
        # $\text{LN}(h^L) W_E^\top$, `[batch, seq, n_vocab]`
        return self.head(self.hidden_states(tokens, caches))

    # <a id="GPT.new_caches"></a>
    #
    # ### Key/value caches
    #
    # One cache per layer for `length` positions. Under autocast the keys and values are computed in the
    # autocast dtype (e.g. bfloat16), so the cache is allocated in that dtype.
    def new_caches(self, batch_size: int, length: int, device: torch.device) -> list[KVCache]:
        dtype = self.head.weight.dtype
        if torch.is_autocast_enabled(device.type):
            dtype = torch.get_autocast_dtype(device.type)
        return self.encoder.new_caches(batch_size, length, dtype, device)

    # <a id="GPT.configure_optimizers"></a>
    #
    # ### Weight decay groups
    #
    # Weight decay pulls weights towards zero, a prior that the model should not rely on any one large weight.
    # It makes sense for the matrices that mix features (the weights of the `nn.Linear` layers). It does not for
    #
    # * biases and layer-norm gains, which shift and scale features: decaying a gain towards zero would shrink
    #   the features it normalises, against the very purpose of the normalisation;
    # * embeddings (tokens and learned positions): a rare token's vector gets a gradient only now and then, and
    #   decay at every step would erase what it learned.
    #
    # The head's weight is a `Linear` weight, but it is the token embedding, so it is not decayed.
    # `parameters()` yields the shared tensor once, so it lands in exactly one group.
    def configure_optimizers(self, weight_decay: float, lr: float, betas: tuple[float, float]
                             ) -> torch.optim.AdamW:
        """AdamW with `weight_decay` on the `nn.Linear` weights and none on embeddings, norms and biases."""
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        embedding_weights = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        linear_weights = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)} - embedding_weights
        parameters = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in parameters if id(p) in linear_weights]
        no_decay = [p for p in parameters if id(p) not in linear_weights]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        # The fused AdamW kernel updates each parameter in one pass instead of a dozen elementwise operations:
        # on CUDA that is a few kernel launches instead of several per tensor, and on the CPU it makes the step of
        # a small GPT's optimiser about three times faster. We ask for it on CUDA and the CPU, where it has been
        # measured; on other devices AdamW uses its default implementation.
        use_fused = all(p.device.type in ("cuda", "cpu") for p in parameters)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=use_fused or None)

    # <a id="GPT.generate"></a>
    #
    # ### Generation
    #
    # The prompt is cropped to the last `max_len` tokens and runs through the model once (the *prefill*),
    # filling the caches; then each sampled token runs through alone, attending to the cached keys and values.
    #
    # **Past the context length.** A model trained on `max_len` positions conditions on at most the last
    # `max_len` tokens: recomputing the prefix at step $t$ means running the window $x_{t-W+1} \dots x_t$,
    # $W$ = `max_len`, at positions $0 \dots W-1$. Once the window slides, nothing in the cache is valid any more,
    # whatever the kind of positions:
    #
    # * with learned or sinusoidal positions every token of the window moves to a new position, so its
    #   embedding, and everything computed from it, changes;
    # * with rotary or no positions the first layer's keys and values would stay valid (attention scores
    #   depend only on relative positions), but the deeper layers' would not: in the recomputed window the
    #   oldest token sees only itself, while its cached keys and values were computed when it saw the
    #   tokens before it. A rolling cache (as in Mistral's sliding-window attention) is a different model,
    #   whose receptive field grows by $W$ with every layer.
    #
    # So once the window is full, each step recomputes the window from scratch, exactly as the uncached
    # loop does; the cache saves work for the first `max_len` positions, which is where generation usually stays.
    #
    # **Stopping.** With `eos_token_id` (one id or several, the name Hugging Face uses), a row is finished once it
    # has generated one of them, as a row of [`Llama.generate`](/transformers/llama/generation.md#Llama.generate)
    # stops at its tokenizer's stop tokens. The stop token is kept; every later position of a finished row holds
    # `pad_token_id` (the first stop token unless given), and generation ends when every row has finished, so the
    # result may be shorter than `prompt + max_new_tokens`. A finished row still runs through the model with the
    # others (a batch moves together), but rows never attend to each other, so its padding changes nothing for the
    # rest. Stop tokens in the prompt do not count. Knowing whether every row has finished means reading a flag
    # back from the device, one synchronisation per step, which is paid only when there are stop tokens.
    #
    # Dropout would make the cached and uncached paths differ and has no place in sampling, so the model is put
    # in evaluation mode for the call and returned to its previous mode afterwards. The work runs under
    # `torch.inference_mode()`, which skips autograd's bookkeeping entirely; the result is copied out of it at the
    # end, because an inference-mode tensor can never enter a computation that autograd records (say, as
    # training data for the next step), and a few integers are cheap to copy.
    def generate(self, tokens: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, *,
                 eos_token_id: int | Sequence[int] | None = None, pad_token_id: int | None = None) -> torch.Tensor:
        """
        Sample `max_new_tokens` tokens after the prompt `tokens` `[batch, prompt]`.

        Arguments:
            tokens: the prompt, token ids `[batch, prompt]` with `prompt >= 1`.
            max_new_tokens: how many tokens to add.
            temperature: divides the logits; `0` picks the most likely token (greedy decoding).
            top_k: sample only among the `top_k` most likely tokens; at most the vocabulary size (`ValueError`
                otherwise).
            top_p: sample only among the smallest set of most likely tokens whose probability reaches `top_p`.
            eos_token_id: optional stop token id, or several: a row that generates one is finished.
            pad_token_id: what fills a finished row after its stop token; defaults to the (first) stop token.

        Returns:
            `[batch, prompt + new]`, the prompt followed by the new tokens: `new = max_new_tokens`, or fewer when every
            row has generated a stop token. Sampling uses torch's global random number generator, so
            `torch.manual_seed` makes it repeatable.
        """
        check_sampling_arguments(temperature, top_k, top_p, self.n_vocab)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        if tokens.dim() != 2 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must be [batch, prompt] with prompt >= 1, got shape {tuple(tokens.shape)}")
        stop_ids, pad = self.check_stop_tokens(eos_token_id, pad_token_id)

        batch, prompt = tokens.shape
        total = prompt + max_new_tokens
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                # `[batch, prompt + max_new_tokens]`, the prompt followed by the tokens generated so far
                out = torch.empty(batch, total, dtype=tokens.dtype, device=tokens.device)
                out[:, :prompt] = tokens
                end = prompt
                if max_new_tokens > 0:
                    eos = torch.tensor(stop_ids, dtype=tokens.dtype, device=tokens.device) if stop_ids else None
                    end = self.extend(out, prompt, temperature, top_k, top_p, eos, pad)
        finally:
            self.train(was_training)
        return out[:, :end].clone()

    # Stop and padding ids must be tokens of the vocabulary; padding without a stop token would never be used.
    def check_stop_tokens(self, eos_token_id: int | Sequence[int] | None, pad_token_id: int | None
                          ) -> tuple[list[int], int | None]:
        """The stop token ids as a list (empty without `eos_token_id`) and the padding id; `ValueError` if bad."""
        if eos_token_id is None:
            if pad_token_id is not None:
                raise ValueError(f"pad_token_id={pad_token_id!r} needs eos_token_id: only finished rows are padded")
            return [], None
        stop_ids = [eos_token_id] if not isinstance(eos_token_id, Sequence) else list(eos_token_id)
        if not stop_ids or not all(self.is_token_id(i) for i in stop_ids):
            raise ValueError(f"eos_token_id must be a token id in [0, {self.n_vocab}) or a non-empty list of them, "
                             f"got {eos_token_id!r}")
        if pad_token_id is not None and not self.is_token_id(pad_token_id):
            raise ValueError(f"pad_token_id must be a token id in [0, {self.n_vocab}), got {pad_token_id!r}")
        return stop_ids, stop_ids[0] if pad_token_id is None else pad_token_id

    def is_token_id(self, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < self.n_vocab

    # ### The decoding loop
    #
    # Fills `out[:, prompt:]` given the prompt in `out[:, :prompt]`, and returns where the tokens end: `total`, or
    # earlier when every row has generated one of the stop tokens `eos` (`[n_stop]`, or `None`).
    def extend(self, out: torch.Tensor, prompt: int, temperature: float, top_k: int | None,
               top_p: float | None, eos: torch.Tensor | None = None, pad: int | None = None) -> int:
        batch, total = out.shape
        caches = self.new_caches(batch, min(total, self.max_len), out.device)
        # Which rows have generated a stop token, `[batch]`
        finished = torch.zeros(batch, dtype=torch.bool, device=out.device)
        # Prefill: the last `max_len` tokens of the prompt; the last position's hidden state `[batch, d_model]`
        hidden = self.hidden_states(out[:, max(0, prompt - self.max_len):prompt], caches)[:, -1]
        for t in range(prompt, total):
            # The next token's logits `[batch, n_vocab]` and the token drawn from them, `[batch]`
            token = sample(self.head(hidden), temperature, top_k, top_p)
            if eos is not None:
                # Finished rows get padding; a row finishes with its first stop token.
                token = token.masked_fill(finished, pad)
                finished |= torch.isin(token, eos)
            out[:, t] = token
            if t + 1 == total:
                break
            if eos is not None and bool(finished.all()):
                return t + 1
            if caches is not None and caches[0].length < self.max_len:
                # The new token alone, after the cached positions, `[batch, 1]`
                hidden = self.hidden_states(out[:, t:t + 1], caches)[:, -1]
            else:
                # The window is full: recompute the last `max_len` tokens, `[batch, max_len]`
                caches = None
                hidden = self.hidden_states(out[:, t + 1 - self.max_len:t + 1])[:, -1]
        return total


# ## GPT-2's initialisation
#
# By module type: $\mathcal{N}(0, \sigma^2)$ for every linear and embedding weight, zero biases, unit gain and
# zero bias for every layer normalisation; then the residual projections of every layer (its attention's
# $W^O$, its feed-forward network's second layer) are drawn again with the smaller standard deviation
# $\sigma / \sqrt{2L}$. A tied head and embedding are one tensor, initialised (twice, harmlessly) from the
# same distribution. Parameters of other modules, such as learned positions, keep their own initialisation.
# It is a function of its own so that other language models made of these layers (the configurations'
# [`DecoderOnlyLM`](/transformers/experiments/configs.md#DecoderOnlyLM)) initialise the same way.
def init_gpt2_(model: nn.Module, layers: Iterable[TransformerLayer], std: float = 0.02) -> None:
    """Initialise `model` in place as GPT-2 does, with standard deviation `std` and `layers` its transformer layers."""
    check_init_std(std)
    layers = list(layers)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    # $$\sigma / \sqrt{2L}$$
    residual_std = std / math.sqrt(2 * len(layers))
    for layer in layers:
        nn.init.normal_(layer.self_attn.output.weight, mean=0.0, std=residual_std)
        nn.init.normal_(layer.feed_forward.layer2.weight, mean=0.0, std=residual_std)


# The "small init" standard deviation $\sqrt{2 / (5\, d_{model})}$ for a width $d_{model}$: Glorot's
# $\sqrt{2 / (\text{fan}_{in} + \text{fan}_{out})}$ for the feed-forward network's first layer, $d_{model}$ to
# $4 d_{model}$, applied to every weight.
def small_init_std(d_model: int) -> float:
    r"""$\sqrt{2 / (5\, d_{model})}$: GPT-2's 0.02 at `d_model` 768, larger for narrower models."""
    return math.sqrt(2 / (5 * d_model))


def check_init_std(std: float) -> None:
    """`ValueError` unless `std` is a positive, finite number."""
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 < std < math.inf:
        raise ValueError(f"init_std must be a positive number, got {std!r}")


# <a id="sampling"></a>
#
# ## Sampling
#
# The model gives logits $z_w$ for every token $w$ of the vocabulary. Three knobs shape the distribution the
# next token is drawn from.
#
# **Temperature** $\tau$ divides the logits:
#
# $$p(w) = \frac{\exp(z_w / \tau)}{\sum_{w'} \exp(z_{w'} / \tau)}$$
#
# $\tau < 1$ sharpens the distribution towards the likely tokens, $\tau > 1$ flattens it, and in the limit
# $\tau \to 0$ all the mass goes to the most likely token: greedy decoding, which is what $\tau = 0$ means here.
#
# **Top-$k$** ([Fan et al., 2018](https://arxiv.org/abs/1805.04833)) keeps the $k$ most likely tokens and
# renormalises: the long tail of unlikely tokens, each improbable but together likely enough to be drawn now
# and then, is cut off. Tokens tied with the $k$-th logit are kept too.
#
# **Nucleus (top-$p$) sampling** ([Holtzman et al., 2019](https://arxiv.org/abs/1904.09751)) keeps the smallest
# set of most likely tokens whose total probability reaches $p$. Unlike a fixed $k$, the set adapts: a few
# tokens when the model is sure, many when it is not. Top-$k$ is applied first, then top-$p$ on what is left,
# after the temperature.
#
# A `top_k` larger than the vocabulary is an error rather than silently "all tokens": it is almost always a
# value meant for another model (GPT-2's 50257 tokens against a character model's 65), and the caller should know
# that it filters nothing. `top_k` equal to the vocabulary keeps every token, as it says.
def check_sampling_arguments(temperature: float, top_k: int | None, top_p: float | None,
                             n_vocab: int | None = None) -> None:
    """`ValueError` for a bad temperature, `top_k` or `top_p`; with `n_vocab`, also for `top_k > n_vocab`."""
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    if top_k is not None and n_vocab is not None:
        check_top_k_fits(top_k, n_vocab)
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")


def check_top_k_fits(top_k: int, n_vocab: int) -> None:
    if top_k > n_vocab:
        raise ValueError(f"top_k ({top_k}) is larger than the vocabulary ({n_vocab} tokens); "
                         f"use top_k <= {n_vocab}, or None to keep every token")


# ### Top-k filtering
#
# Logits below the $k$-th largest become $-\infty$, so their probability is zero. `logits` is `[batch, n_vocab]`.
def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    check_top_k_fits(top_k, logits.shape[-1])
    if top_k == logits.shape[-1]:
        return logits
    # The $k$-th largest logit of each row, `[batch, 1]`
    kth = logits.topk(top_k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


# ### Nucleus filtering
#
# Sort the tokens by probability and keep a token while the tokens more likely than it have not yet reached
# `top_p` together. The most likely token is always kept, so the set is never empty.
def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    # `[batch, n_vocab]`, each row in decreasing order, and where each sorted entry came from
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # The probability of the tokens strictly more likely than each one, `[batch, n_vocab]`
    mass_before = probs.cumsum(dim=-1) - probs
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
    # Put the filtered logits back in vocabulary order
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


# ### Drawing the next token
#
# From logits `[batch, n_vocab]` to token ids `[batch]`, with torch's global random number generator.
def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None) -> torch.Tensor:
    """The next token `[batch]` drawn from `logits` `[batch, n_vocab]`; `temperature=0` is greedy."""
    if top_k is not None:
        check_top_k_fits(top_k, logits.shape[-1])
    if temperature == 0:
        return logits.argmax(dim=-1)
    # Filtering and the softmax in float32, whatever the model's dtype, so that small probabilities survive.
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    # `[batch, 1]` to `[batch]`
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1).squeeze(-1)



# ## GPT-2's weights
#
# [`load_hf`](/transformers/gpt/hf.md#load_hf) loads Hugging Face's GPT-2 checkpoints into this model; it lives on
# [its own page](/transformers/gpt/hf.md), which imports this one, so the name is looked up when first asked for
# ([PEP 562](https://peps.python.org/pep-0562/)): `from labml_nn.transformers.gpt import load_hf` works.
def __getattr__(name: str):
    if name == "load_hf":
        from labml_nn.transformers.gpt.hf import load_hf
        return load_hf
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

r"""
---
title: Llama 3.1
summary: An annotated Llama 3.1 that loads Meta's checkpoints: RMSNorm, SwiGLU, grouped-query attention, scaled rotary embeddings and a key/value cache.
---

# Llama 3.1

[The Llama 3 Herd of Models](https://arxiv.org/abs/2407.21783) (Meta, 2024) describes the model most people
now mean by "a transformer". It is the decoder of
[Attention Is All You Need](https://arxiv.org/abs/1706.03762) with a handful of changes, each explained
below or on its own page in this package:

| | The 2017 transformer | Llama 3.1 |
|---|---|---|
| Normalisation | LayerNorm after each sub-layer (post-norm) | [RMSNorm](#RMSNorm) before each sub-layer (pre-norm), and once at the end |
| Positions | sinusoids added to the embeddings | [rotary embeddings](/transformers/rope/index.md) applied to queries and keys in every layer, base $\theta = 500000$, low frequencies stretched by [Llama 3.1's scaling](#apply_scaling) |
| Attention | multi-head | [grouped-query](/transformers/mha.md): 8 key/value heads shared by 32 (8B) query heads |
| Feed-forward | $\max(0, xW_1)W_2$ | [SwiGLU](#FeedForward): $\big(\text{SiLU}(xW_1) \odot xW_3\big)W_2$ |
| Biases | everywhere | none |
| Output | tied to the embeddings | its own matrix |

One block computes, with $h$ the `[batch, seq, dim]` residual stream,

$$
\begin{aligned}
h &\leftarrow h + \text{Attention}\big(\text{RMSNorm}(h)\big) \\
h &\leftarrow h + \text{FeedForward}\big(\text{RMSNorm}(h)\big)
\end{aligned}
$$

and the model is `tok_embeddings`, `n_layers` blocks, a final `norm` and the `output` projection to the
vocabulary.

The parameter names are Meta's (`tok_embeddings`, `layers.{i}.attention.wq`, `feed_forward.w1`,
`attention_norm`, ...), and the configuration [`ModelArgs`](#ModelArgs) has the field names of Meta's
`params.json`, so Meta's `consolidated.00.pth` loads with `strict=True`:
[`Llama.build`](/transformers/llama/generation.md#Llama.build) does that and generates text with the key/value
cache, using Meta's [tokenizer](/transformers/llama/tokenizer.md).
Checkpoints in Hugging Face's layout load with [`load_hf`](#load_hf) ([how](/transformers/llama/hf.md)).

Layouts: the residual stream is `[batch, seq, dim]`; inside attention, `[batch, heads, seq, head_dim]`
(Meta's code keeps `[batch, seq, heads, head_dim]` there and transposes before the matrix products;
the numbers are the same).

The experiment (`python -m labml_nn.transformers.llama`, [page](/transformers/experiments/llama.md)) trains a
small Llama on Tiny Shakespeare and measures generation with and without the cache; with `--ckpt-dir` it
loads one of Meta's checkpoints and completes a prompt.
"""

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.hf_checkpoints import read_json_object


# ## Model arguments
#
# The fields are those of Meta's `params.json`, plus the two inference limits `max_batch_size` and
# `max_seq_len`, which size the key/value caches and are chosen when the model is built, not stored with
# the weights. For Llama 3.1 8B the file says `dim=4096, n_layers=32, n_heads=32, n_kv_heads=8,
# vocab_size=128256, multiple_of=1024, ffn_dim_multiplier=1.3, norm_eps=1e-5, rope_theta=500000,
# use_scaled_rope=true`.
@dataclass(kw_only=True)
class ModelArgs:
    r"""
    Arguments:
        dim: width of the residual stream.
        n_layers: number of transformer blocks.
        n_heads: number of query heads; the head width is `dim // n_heads`.
        n_kv_heads: number of key/value heads (grouped-query attention); `None` means `n_heads`.
        vocab_size: number of tokens.
        multiple_of: the feed-forward hidden size is rounded up to a multiple of this.
        ffn_dim_multiplier: scales the feed-forward hidden size before rounding; `None` means 1.
        norm_eps: the $\epsilon$ of RMSNorm.
        rope_theta: the base $\theta$ of the rotary frequencies.
        use_scaled_rope: apply Llama 3.1's long-context frequency scaling.
        rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor, rope_original_context: the
            constants of that scaling, $s$, $\alpha$, $\beta$ and $L$ of [`apply_scaling`](#apply_scaling);
            Meta's `params.json` does not hold them (its code fixes Llama 3.1's values, the defaults), Hugging
            Face's `config.json` does.
        ffn_hidden_dim: the feed-forward hidden width as it is; `None` derives it from `multiple_of` and
            `ffn_dim_multiplier` as Meta's code does. Hugging Face's `config.json` states it
            (`intermediate_size`).
        max_batch_size: the most sequences `forward_inference` keeps in its caches at once.
        max_seq_len: the longest sequence the model accepts (the length of the caches).
    """
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None
    vocab_size: int
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    use_scaled_rope: bool = False
    rope_scale_factor: float = 8.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_context: int = 8192
    ffn_hidden_dim: int | None = None
    max_batch_size: int = 32
    max_seq_len: int = 2048

    # Every field is checked for its type as well as its range: a `params.json` with `"dim": "4096"` or
    # `"use_scaled_rope": 1` should fail here with the field's name, not deep inside `nn.Linear`.
    def __post_init__(self):
        for name in ("dim", "n_layers", "n_heads", "vocab_size", "multiple_of", "max_batch_size", "max_seq_len"):
            _check_positive_int(name, getattr(self, name))
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        _check_positive_int("n_kv_heads", self.n_kv_heads)
        for name in ("norm_eps", "rope_theta", "rope_scale_factor", "rope_low_freq_factor", "rope_high_freq_factor"):
            setattr(self, name, _check_positive_float(name, getattr(self, name)))
        _check_positive_int("rope_original_context", self.rope_original_context)
        if self.rope_high_freq_factor <= self.rope_low_freq_factor:
            raise ValueError(f"rope_high_freq_factor ({self.rope_high_freq_factor}) must be larger than "
                             f"rope_low_freq_factor ({self.rope_low_freq_factor})")
        if self.ffn_hidden_dim is not None:
            _check_positive_int("ffn_hidden_dim", self.ffn_hidden_dim)
        if self.ffn_dim_multiplier is not None:
            self.ffn_dim_multiplier = _check_positive_float("ffn_dim_multiplier", self.ffn_dim_multiplier)
        if not isinstance(self.use_scaled_rope, bool):
            raise ValueError(f"use_scaled_rope must be true or false, got {self.use_scaled_rope!r} "
                             f"({type(self.use_scaled_rope).__name__})")
        if self.dim % self.n_heads != 0:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        # Rotary embeddings rotate pairs of features, so each head needs an even width.
        if (self.dim // self.n_heads) % 2 != 0:
            raise ValueError(f"the head width dim // n_heads = {self.dim // self.n_heads} must be even "
                             f"(rotary embeddings rotate pairs of features)")

    # The width of each attention head.
    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    # The feed-forward hidden width: given, or derived from `4 * dim` as in [Meta's code](#FeedForward.hidden_size).
    @property
    def hidden_dim(self) -> int:
        if self.ffn_hidden_dim is not None:
            return self.ffn_hidden_dim
        return FeedForward.hidden_size(4 * self.dim, self.multiple_of, self.ffn_dim_multiplier)

    # The constants of Llama 3.1's frequency scaling, as [`apply_scaling`](#apply_scaling) takes them.
    @property
    def rope_scaling(self) -> dict:
        return {"scale_factor": self.rope_scale_factor, "low_freq_factor": self.rope_low_freq_factor,
                "high_freq_factor": self.rope_high_freq_factor, "old_context_len": self.rope_original_context}

    # ### Reading `params.json`
    #
    # `overrides` sets fields that the file does not hold, such as `max_seq_len` and `max_batch_size`.
    # Every error names the file.
    @classmethod
    def from_json(cls, path: str | Path, **overrides) -> "ModelArgs":
        """Read Meta's `params.json` at `path`; unknown or missing fields and bad values raise `ValueError`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"params file not found: {path}")
        params = read_json_object(path)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {unknown}; ModelArgs has {known}")
        params = {**params, **overrides}
        if "vocab_size" not in params:
            raise ValueError(f"{path}: missing field 'vocab_size'")
        try:
            return cls(**params)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    # Write the fields that belong in `params.json`: the inference limits do not, nor the fields Meta's
    # format lacks while they hold their defaults (Meta's code assumes those values).
    def to_json(self, path: str | Path) -> None:
        """Write Meta's `params.json` to `path` (without `max_batch_size` and `max_seq_len`)."""
        params = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in ("max_batch_size", "max_seq_len")
                  and not (f.name in _NOT_IN_META_PARAMS and getattr(self, f.name) == f.default)}
        Path(path).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")


_NOT_IN_META_PARAMS = ("rope_scale_factor", "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_context",
                       "ffn_hidden_dim")


def _check_positive_int(name: str, value) -> None:
    # `bool` is a subclass of `int` in Python, but `"dim": true` is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")


def _check_positive_float(name: str, value) -> float:
    # JSON writes `500000.0` as `500000` when it likes; an integer is a fine float.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r} ({type(value).__name__})")
    return float(value)


# ## RMSNorm
#
# [Root mean square layer normalisation](https://arxiv.org/abs/1910.07467) (Zhang & Sennrich, 2019) drops
# LayerNorm's mean subtraction and bias and keeps only the rescaling:
#
# $$\text{RMSNorm}(x) = \frac{x}{\sqrt{\frac{1}{d}\sum_{i=1}^{d} x_i^2 + \epsilon}} \odot g$$
#
# It is cheaper than LayerNorm and works as well in practice: what matters is keeping the scale of
# the activations in check.
class RMSNorm(nn.Module):
    """RMSNorm over the last dimension, with a learned gain `weight` $g$ initialised to ones."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    # The mean of squares is taken in float32: in bfloat16 (8 bits of mantissa) a sum over thousands of
    # features loses most of its precision. The normalised vector is cast back to the input's type
    # *before* the gain is applied, exactly as in Meta's code, so that bfloat16 outputs match theirs bit
    # for bit.
    #
    # `F.rms_norm` without a weight computes $x / \sqrt{\frac{1}{d}\sum_i x_i^2 + \epsilon}$, the same
    # operations as writing it out (the tests compare the two), in one call instead of five: a decoding step
    # runs nine of these norms for a single position, where the calls, not the arithmetic, are the cost.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalized = F.rms_norm(x.float(), self.weight.shape, eps=self.eps)
        return normalized.type_as(x) * self.weight


# ## Rotary frequencies
#
# [Rotary embeddings](/transformers/rope/index.md) (RoPE) rotate each pair of query and key features by an
# angle proportional to the position $m$. Pair $i$ of a head of width $d$ turns with the frequency
#
# $$\theta_i = \theta^{-2i/d}, \quad i = 0, \dots, d/2 - 1$$
#
# so the first pairs turn fast (they tell nearby positions apart) and the last pairs slowly (a wavelength
# $\lambda_i = 2\pi / \theta_i$ of up to about $2\pi\theta$ tokens, for far-apart positions). Llama 3 uses
# the base $\theta = 500000$ where the RoPE paper used $10000$, to have more slow pairs for its long context.
def rope_frequencies(dim: int, theta: float, use_scaled: bool, device: torch.device | str | None = None,
                     **scaling) -> torch.Tensor:
    r"""The `dim // 2` rotary frequencies $\theta_i$ in float32, scaled as in Llama 3.1 when `use_scaled`
    (with `scaling`, the keyword arguments of `apply_scaling`, or its defaults)."""
    if dim < 2 or dim % 2 != 0:
        raise ValueError(f"dim must be a positive even integer, got {dim}")
    # $$\theta_i = \theta^{-2i/d}$$
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device)[: dim // 2].float() / dim))
    return apply_scaling(freqs, **scaling) if use_scaled else freqs


# ### Llama 3.1's frequency scaling
#
# Llama 3 was pre-trained with an 8192-token context; Llama 3.1 extends it to 128K by slowing down the
# pairs whose wavelength is long compared to that context, in the spirit of
# [YaRN](https://arxiv.org/abs/2309.00071)'s "NTK-by-parts" interpolation. With the original context
# $L = 8192$, the scale factor $s = 8$ and the low and high frequency factors $\alpha = 1$, $\beta = 4$:
#
# * pairs with a wavelength shorter than $L / \beta = 2048$ tokens are left alone: they complete many
#   turns within any context and carry local order, which does not change with the context length;
# * pairs with a wavelength longer than $L / \alpha = 8192$ tokens never completed a turn during
#   pre-training; they are slowed by $s$, so that positions up to $s L$ give the angles the model saw up to $L$;
# * in between, the frequency moves smoothly from one to the other:
#
# $$\theta_i' = (1 - \gamma_i)\frac{\theta_i}{s} + \gamma_i\,\theta_i, \quad \gamma_i = \frac{L / \lambda_i - \alpha}{\beta - \alpha}$$
#
# $\gamma_i$ is $1$ at $\lambda_i = L / \beta$ and $0$ at $\lambda_i = L / \alpha$, so the three pieces meet
# without jumps. Meta's code loops over the frequencies in Python; `torch.where` does the same for all
# of them at once.
def apply_scaling(freqs: torch.Tensor, scale_factor: float = 8.0, low_freq_factor: float = 1.0,
                  high_freq_factor: float = 4.0, old_context_len: int = 8192) -> torch.Tensor:
    """Llama 3.1's scaling of rotary frequencies `freqs` (any shape); the defaults are Llama 3.1's values."""
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    # $$\lambda_i = 2\pi / \theta_i$$
    wavelen = 2 * math.pi / freqs
    # $$\gamma_i = \frac{L / \lambda_i - \alpha}{\beta - \alpha}$$
    smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    # $$(1 - \gamma_i)\frac{\theta_i}{s} + \gamma_i\,\theta_i$$
    smoothed = (1 - smooth) * freqs / scale_factor + smooth * freqs
    return torch.where(wavelen < high_freq_wavelen, freqs,
                       torch.where(wavelen > low_freq_wavelen, freqs / scale_factor, smoothed))


# ### The rotations as complex numbers
#
# Position $m$ rotates pair $i$ by the angle $m\,\theta_i$. Meta stores the rotations as unit complex
# numbers, `freqs_cis` ("cos + i sin"),
#
# $$\text{freqs\_cis}[m, i] = e^{\,i\, m \theta_i} = \cos m\theta_i + i \sin m\theta_i,$$
#
# a complex `[end, dim / 2]` table.
def precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0, use_scaled: bool = False) -> torch.Tensor:
    r"""The complex64 rotations $e^{i m \theta_i}$ for positions `0 .. end - 1`, `[end, dim // 2]`."""
    return _freqs_cis(rope_frequencies(dim, theta, use_scaled), torch.arange(end, dtype=torch.float32))


def _freqs_cis(freqs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    # $m\,\theta_i$ for every position and pair, `[positions, dim / 2]`
    angles = torch.outer(positions.to(freqs.device, torch.float32), freqs)
    # $e^{\,i\, m \theta_i}$
    return torch.polar(torch.ones_like(angles), angles)


# ### Applying the rotations
#
# View the features of a head as $d / 2$ complex numbers, feature $2i$ the real part and $2i + 1$ the
# imaginary part of the $i$-th. Multiplying by $e^{\,i\, m \theta_i}$ rotates that pair by $m\theta_i$:
#
# $$
# \begin{pmatrix} x'_{2i} \\ x'_{2i+1} \end{pmatrix} =
# \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\ \sin m\theta_i & \cos m\theta_i \end{pmatrix}
# \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix}
# $$
#
# This is the *interleaved* pairing $(2i, 2i+1)$ of the RoFormer paper, the same computation as
# [`RotaryPositionalEmbeddings(d, base=theta, interleaved=True)`](/transformers/rope/index.md) from the
# rope page (without Llama 3.1's scaling, which that module does not have); the tests check that the two
# agree. The rope page's default pairs feature $i$ with $i + d/2$ ("rotate half", as in Hugging Face's
# Llama): equally good, but a checkpoint moves from one pairing to the other only by permuting the rows of
# $W^Q$ and $W^K$. Meta's weights were trained with this pairing, so this is the one to use with them.
#
# There are two ways to compute it. Meta multiplies complex tensors, and so do we when running eagerly: the
# product is one kernel, where the rotation written out with real numbers takes about ten (element products, a
# difference, a sum, a stack), and a decoding step of a small model is made of such tiny operations. Under
# `torch.compile` it is the other way round: the compiler fuses the real arithmetic into one kernel but cannot
# generate code for complex numbers, so there we use the real form. The tests check that the two agree.
# Either way the product is taken in float32, as in Meta's code, and cast back. `xq` and `xk` are
# `[batch, heads, seq, head_dim]` (their head counts may differ) and `freqs_cis` is `[seq, head_dim / 2]`.
def apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys `[batch, heads, seq, head_dim]` by `freqs_cis` `[seq, head_dim // 2]`."""
    if freqs_cis.shape != (xq.shape[-2], xq.shape[-1] // 2):
        raise ValueError(f"freqs_cis must be [seq, head_dim / 2] = [{xq.shape[-2]}, {xq.shape[-1] // 2}], "
                         f"got {list(freqs_cis.shape)}")
    rotate = rotate_pairs_real if torch.compiler.is_compiling() else rotate_pairs_complex
    return rotate(xq, freqs_cis), rotate(xk, freqs_cis)


# #### As a complex product
def rotate_pairs_complex(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs $(x_{2i}, x_{2i+1})$ of `x` `[..., seq, head_dim]` by multiplying complex numbers."""
    # `[..., seq, head_dim]` to `[..., seq, head_dim / 2]` complex numbers $x_{2i} + i\,x_{2i+1}$ (a view: the
    # pairs are adjacent in memory)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    # $$(x_{2i} + i\,x_{2i+1})\,e^{\,i\, m \theta_i}$$
    rotated = pairs * freqs_cis
    # `[..., seq, head_dim / 2]` complex back to `[..., seq, head_dim]` real
    return torch.view_as_real(rotated).flatten(-2).type_as(x)


# #### With real numbers
def rotate_pairs_real(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """The same rotation as `rotate_pairs_complex`, with the matrix product of the equation written out."""
    cos, sin = freqs_cis.real, freqs_cis.imag
    # `[..., seq, head_dim]` to `[..., seq, head_dim / 2, 2]`: the pairs $(x_{2i}, x_{2i+1})$
    pairs = x.float().unflatten(-1, (-1, 2))
    x_even, x_odd = pairs[..., 0], pairs[..., 1]
    # $$\begin{pmatrix} x_{2i} \cos m\theta_i - x_{2i+1} \sin m\theta_i \\ x_{2i} \sin m\theta_i + x_{2i+1} \cos m\theta_i \end{pmatrix}$$
    rotated = torch.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1)
    # `[..., seq, head_dim / 2, 2]` back to `[..., seq, head_dim]`
    return rotated.flatten(-2).type_as(x)


# ## Key/value cache
#
# When generating, each new token needs the keys and values of every earlier position; they do not
# change, so they are kept. The cache is preallocated for `seq_length` positions and written in place at
# `start_pos`, like Meta's, so a batch of sequences can be extended chunk by chunk. The layout is
# `[batch, n_kv_heads, seq, head_dim]`, ready for the attention kernel. Only the `n_kv_heads` key/value
# heads are stored, which is where grouped-query attention saves its memory: Llama 3.1 8B keeps 8 heads
# of 128 features per layer, 128 KiB per token in bfloat16 over its 32 layers, where 32 heads would take 512 KiB.
#
# (The [attention page's cache](/transformers/mha.md#KVCache) appends instead of writing at a position; this one
# keeps Meta's interface.)
class KVCache:
    """Keys and values of one layer: `cache_k`, `cache_v`, `[batch_size, n_kv_heads, seq_length, head_dim]`."""

    def __init__(self, batch_size: int, seq_length: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        self.cache_k = torch.zeros(batch_size, n_kv_heads, seq_length, head_dim, dtype=dtype, device=device)
        self.cache_v = torch.zeros_like(self.cache_k)

    # Write `xk` and `xv`, `[batch, n_kv_heads, seq, head_dim]`, at positions `start_pos ... start_pos + seq - 1`
    # and return all keys and values up to there. A batch smaller than the cache uses its first rows.
    def update(self, start_pos: int, xk: torch.Tensor, xv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, seq, _ = xk.shape
        max_batch, _, max_seq, _ = self.cache_k.shape
        if batch > max_batch:
            raise ValueError(f"KVCache holds {max_batch} sequences, got a batch of {batch}")
        if start_pos < 0 or start_pos + seq > max_seq:
            raise ValueError(f"KVCache holds {max_seq} positions, asked to write {start_pos} ... {start_pos + seq - 1}")
        self.cache_k[:batch, :, start_pos:start_pos + seq] = xk
        self.cache_v[:batch, :, start_pos:start_pos + seq] = xv
        # `[batch, n_kv_heads, start_pos + seq, head_dim]`
        return self.cache_k[:batch, :, :start_pos + seq], self.cache_v[:batch, :, :start_pos + seq]


# ## Grouped-query attention
#
# Attention as on the [attention page](/transformers/mha.md), with `n_heads` query heads sharing
# `n_kv_heads` key/value heads: query head $j$ reads key/value head $\lfloor j / (h / h_{kv}) \rfloor$
# (Meta's `repeat_kv` repeats each key/value head `n_heads // n_kv_heads` times in a row). No biases.
# Rotary embeddings are applied to queries and keys in every layer, after the projections and before the
# keys go into the cache.
#
# $$\text{softmax}\Big(\frac{Q K^\top}{\sqrt{d_{head}}} + M\Big)V$$
#
# with $M$ the causal mask. We hand it to `F.scaled_dot_product_attention`, whose fused kernels never
# store the attention matrix and which shares the key/value heads itself (`enable_gqa`); the tests check it
# against the explicit softmax with the key/value heads repeated.
class Attention(nn.Module):
    """Grouped-query self-attention with rotary embeddings: `wq`, `wk`, `wv`, `wo` without biases."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * self.head_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, cache: KVCache | None = None, start_pos: int = 0,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Arguments:
            x: `[batch, seq, dim]`, at positions `start_pos ... start_pos + seq - 1`.
            freqs_cis: the rotations of those positions, `[seq, head_dim // 2]`.
            cache: where the keys and values of earlier positions are, and the new ones go. Without one,
                `x` is a whole sequence and attention is causal.
            mask: with a cache, which keys each query may see (`True` = may attend),
                `[seq, start_pos + seq]`; `None` lets every query see every cached key.
        """
        batch, seq, _ = x.shape
        # `[batch, seq, heads * head_dim]` to `[batch, seq, heads, head_dim]` to `[batch, heads, seq, head_dim]`
        xq = self.wq(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        xk = self.wk(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        xv = self.wv(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)

        xq, xk = apply_rotary_emb(xq, xk, freqs_cis)

        gqa = self.n_kv_heads != self.n_heads
        if cache is None:
            # $$\text{softmax}\Big(\frac{Q K^\top}{\sqrt{d_{head}}} + M\Big)V$$
            #
            # `[batch, heads, seq, head_dim]`
            out = F.scaled_dot_product_attention(xq, xk, xv, is_causal=True, enable_gqa=gqa)
        else:
            # `[batch, n_kv_heads, start_pos + seq, head_dim]`
            keys, values = cache.update(start_pos, xk, xv)
            out = F.scaled_dot_product_attention(xq, keys, values, attn_mask=mask, enable_gqa=gqa)

        # `[batch, heads, seq, head_dim]` to `[batch, seq, heads * head_dim]`
        out = out.transpose(1, 2).reshape(batch, seq, self.n_heads * self.head_dim)
        return self.wo(out)


# ## SwiGLU feed-forward
#
# [GLU Variants Improve Transformer](https://arxiv.org/abs/2002.05202) (Shazeer, 2020): the hidden layer is
# the product of two projections, one passed through SiLU, $\text{SiLU}(z) = z\,\sigma(z)$, acting as a
# gate on the other:
#
# $$\text{FFN}(x) = \big(\text{SiLU}(x W_1) \odot x W_3\big) W_2$$
#
# It is [`FeedForward(dim, hidden, activation=nn.SiLU(), is_gated=True)`](/transformers/feed_forward.md) without
# biases, with `w1` its `layer1`, `w3` its `linear_v` and `w2` its `layer2`.
#
# `exact=True` takes `hidden_dim` as it is, for checkpoints whose configuration states the width (Hugging Face's
# `intermediate_size`) instead of Meta's rule below.
#
# ### The hidden size
#
# Three matrices instead of two would cost half again as many parameters at the same hidden width, so the
# hidden width is cut from $4 \cdot \text{dim}$ to $\frac{2}{3} \cdot 4 \cdot \text{dim}$; Llama 3 then multiplies
# by `ffn_dim_multiplier` and rounds up to a multiple of `multiple_of`, which keeps the matrix products
# well shaped for the hardware. For 8B: $\lfloor \frac{2}{3} \cdot 16384 \rfloor = 10922$,
# $\lfloor 1.3 \cdot 10922 \rfloor = 14198$, rounded up to a multiple of 1024: 14336.
class FeedForward(nn.Module):
    """SwiGLU with `w1` (gate), `w3` (value) and `w2` (output); `hidden_dim` is rounded as in Meta's code."""

    def __init__(self, dim: int, hidden_dim: int, multiple_of: int, ffn_dim_multiplier: float | None,
                 exact: bool = False):
        super().__init__()
        if not exact:
            hidden_dim = self.hidden_size(hidden_dim, multiple_of, ffn_dim_multiplier)
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    @staticmethod
    def hidden_size(hidden_dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
        """The hidden width Meta's code derives from `hidden_dim` (which is `4 * dim`)."""
        hidden_dim = int(2 * hidden_dim / 3)
        if ffn_dim_multiplier is not None:
            hidden_dim = int(ffn_dim_multiplier * hidden_dim)
        # Round up to a multiple of `multiple_of`.
        return multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)

    # $$\big(\text{SiLU}(x W_1) \odot x W_3\big) W_2$$
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


# ## Transformer block
#
# Pre-norm: each sub-layer reads a normalised copy of the residual stream and adds its output back, so
# the stream itself is never normalised and gradients flow through the additions unchanged.
#
# $$
# \begin{aligned}
# h &= x + \text{Attention}\big(\text{RMSNorm}(x)\big) \\
# \text{out} &= h + \text{FFN}\big(\text{RMSNorm}(h)\big)
# \end{aligned}
# $$
class TransformerBlock(nn.Module):
    """One Llama block: `attention_norm`, `attention`, `ffn_norm`, `feed_forward`."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.layer_id = layer_id
        self.attention = Attention(args)
        self.feed_forward = self.build_feed_forward(args)
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)

    # The feed-forward network; Mixtral's block overrides this one method to put a mixture of experts here.
    def build_feed_forward(self, args: ModelArgs) -> nn.Module:
        return FeedForward(dim=args.dim, hidden_dim=args.hidden_dim, multiple_of=args.multiple_of,
                           ffn_dim_multiplier=args.ffn_dim_multiplier, exact=True)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, cache: KVCache | None = None, start_pos: int = 0,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis, cache, start_pos, mask)
        return h + self.feed_forward(self.ffn_norm(h))


# ## The model
#
# Three ways in:
#
# * `forward(tokens)`: logits for whole sequences, causal, no cache; what training uses;
# * `forward_loss(inputs, targets)`: the cross-entropy of those logits against the next tokens;
# * `forward_inference(tokens, start_pos)`: Meta's generation interface. It continues the sequences held in
#   the model's key/value caches: `tokens` sit at positions `start_pos ...`, their keys and values are
#   written into the caches, and the next call continues from there. This is the one method that changes
#   state, by design: the caches (one per layer, `max_batch_size` sequences of `max_seq_len` positions) are
#   made on its first call, made anew if the weights have moved to another device or dtype, and released
#   by `free_caches()`. A model that is only trained never allocates them.
#
# The rotations are not a buffer: a complex table kept as a buffer would be cast to a real dtype, silently
# dropping its imaginary part, by `model.to(torch.bfloat16)`. `forward` computes them for its positions;
# `forward_inference` keeps a table for all positions beside its caches, made with them.
#
# `block` is the class of the blocks: a family that changes the block (Mixtral's
# [mixture-of-experts block](/transformers/moe/mixtral.md)) subclasses the model and sets it.
class Transformer(nn.Module):
    """Llama: `tok_embeddings`, `layers` (a list of [`TransformerBlock`](#TransformerBlock)), `norm`, `output`."""

    block = TransformerBlock

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.params = args
        self.vocab_size = args.vocab_size
        self.n_layers = args.n_layers
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(self.block(layer_id, args) for layer_id in range(args.n_layers))
        self.norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.caches: list[KVCache] | None = None
        self.freqs_cis: torch.Tensor | None = None
        self.init_weights()

    # ### Initialisation
    #
    # For training from scratch (a checkpoint overwrites all of it): every matrix and the embeddings
    # from $\mathcal{N}(0, 0.02^2)$, the norms' gains at one, and the two projections that write into the
    # residual stream in each block (`wo`, `w2`) scaled down by $\sqrt{2 \cdot n_{layers}}$, as in GPT-2, so that
    # the stream's variance does not grow with depth.
    def init_weights(self) -> None:
        std = 0.02
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        for layer in self.layers:
            for weight in self.residual_weights(layer):
                nn.init.normal_(weight, mean=0.0, std=std / math.sqrt(2 * self.n_layers))

    # The matrices of a block that write into the residual stream; a family whose block differs (a mixture of
    # experts) names its own.
    def residual_weights(self, layer: nn.Module) -> tuple[torch.Tensor, ...]:
        return layer.attention.wo.weight, layer.feed_forward.w2.weight

    # The rotations $e^{\,i\, m\theta_j}$ for positions $m$ = `start_pos ... start_pos + seq - 1`.
    def rotations(self, start_pos: int, seq: int, device: torch.device) -> torch.Tensor:
        freqs = rope_frequencies(self.params.head_dim, self.params.rope_theta, self.params.use_scaled_rope, device,
                                 **self.params.rope_scaling)
        positions = torch.arange(start_pos, start_pos + seq, device=device, dtype=torch.float32)
        # `[seq, head_dim / 2]`
        return _freqs_cis(freqs, positions)

    def _check_tokens(self, tokens: torch.Tensor, start_pos: int) -> None:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor [batch, seq], got {tokens.dtype} {list(tokens.shape)}")
        if start_pos < 0 or start_pos + tokens.shape[1] > self.params.max_seq_len:
            raise ValueError(f"positions {start_pos} ... {start_pos + tokens.shape[1] - 1} are beyond "
                             f"max_seq_len = {self.params.max_seq_len}")

    # ### Whole sequences
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits `[batch, seq, vocab_size]` for `tokens` `[batch, seq]`; each position sees itself and earlier ones."""
        self._check_tokens(tokens, 0)
        return self.run_blocks(self.tok_embeddings(tokens), tokens.shape[1])

    # ### Input vectors instead of tokens
    #
    # A model that puts other vectors into the sequence, such as [LLaVA](/transformers/llava/index.md)'s image
    # patches, gives the blocks its own `[batch, seq, dim]` input in place of the token embeddings.
    def forward_embeddings(self, h: torch.Tensor) -> torch.Tensor:
        """Logits `[batch, seq, vocab_size]` for input vectors `h` `[batch, seq, dim]`, causal."""
        self._check_embeddings(h, 0)
        return self.run_blocks(h, h.shape[1])

    # The blocks, the final norm and the head, for positions $0 \ldots$ `seq` - 1. The sequence length is passed
    # rather than read from `h`: under [sequence parallelism](/transformers/parallel/index.md) `h` holds only this
    # process's share of the positions, while the rotations are those of the whole sequence.
    def run_blocks(self, h: torch.Tensor, seq: int) -> torch.Tensor:
        """Logits `[batch, seq, vocab_size]` from the blocks' input `h` over `seq` positions."""
        freqs_cis = self.rotations(0, seq, h.device)
        for layer in self.layers:
            h = layer(h, freqs_cis)
        return self.output(self.norm(h))

    def _check_embeddings(self, h: torch.Tensor, start_pos: int) -> None:
        if h.dim() != 3 or h.shape[-1] != self.params.dim:
            raise ValueError(f"input vectors must be [batch, seq, dim={self.params.dim}], got {list(h.shape)}")
        if start_pos < 0 or start_pos + h.shape[1] > self.params.max_seq_len:
            raise ValueError(f"positions {start_pos} ... {start_pos + h.shape[1] - 1} are beyond "
                             f"max_seq_len = {self.params.max_seq_len}")

    # ### Training loss
    #
    # `targets` are the inputs shifted by one (the token after each position); positions whose target is
    # `ignore_index` do not count. The logits are cast to float32 for the softmax.
    def forward_loss(self, inputs: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token cross-entropy of `inputs` `[batch, seq]` against `targets` `[batch, seq]`."""
        if targets.shape != inputs.shape:
            raise ValueError(f"targets must have the shape of inputs {list(inputs.shape)}, got {list(targets.shape)}")
        logits = self(inputs)
        # `[batch, seq, vocab]` to `[batch * seq, vocab]`
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=ignore_index)

    # ### Generation with the cache
    #
    # With `start_pos` positions already in the caches, query $i$ of this call is at position
    # $\text{start\_pos} + i$ and may attend keys $0 \dots \text{start\_pos} + i$: a lower-triangular mask shifted
    # right by `start_pos`. A single new token may see every key, so it needs no mask, which is the common
    # case, one token per step.
    #
    # The rotations of all `max_seq_len` positions are computed once, with the caches, as in Meta's code, and
    # each call takes its rows: a decoding step is a few hundred tiny operations, and recomputing the table
    # would add a dozen more.
    #
    # No gradients are needed here. The generation loops run it under `torch.inference_mode()`, which also
    # skips autograd's bookkeeping of views and versions; it is decorated with `torch.no_grad()` only, because
    # `torch.compile` cannot run it in inference mode. The caches themselves are made outside inference mode,
    # so that either way can write into them.
    @torch.no_grad()
    def forward_inference(self, tokens: torch.Tensor, start_pos: int) -> torch.Tensor:
        """Logits (float32) `[batch, seq, vocab_size]` of `tokens` at positions `start_pos ...` of the cached sequences."""
        self._check_tokens(tokens, start_pos)
        return self.forward_inference_embeddings(self.tok_embeddings(tokens), start_pos)

    # The same with input vectors `[batch, seq, dim]` in place of tokens, as `forward_embeddings`.
    @torch.no_grad()
    def forward_inference_embeddings(self, h: torch.Tensor, start_pos: int) -> torch.Tensor:
        """Logits (float32) `[batch, seq, vocab_size]` of input vectors `h` at positions `start_pos ...`."""
        self._check_embeddings(h, start_pos)
        if h.shape[0] > self.params.max_batch_size:
            raise ValueError(f"batch of {h.shape[0]} is larger than max_batch_size = {self.params.max_batch_size}")
        caches = self._inference_caches(start_pos)
        seq = h.shape[1]
        # `[seq, head_dim / 2]`
        freqs_cis = self.freqs_cis[start_pos:start_pos + seq]
        mask = None
        if seq > 1:
            # `[seq, start_pos + seq]`
            mask = torch.ones(seq, start_pos + seq, dtype=torch.bool, device=h.device).tril(diagonal=start_pos)
        for layer, cache in zip(self.layers, caches):
            h = layer(h, freqs_cis, cache, start_pos, mask)
        return self.output(self.norm(h)).float()

    def _inference_caches(self, start_pos: int) -> list[KVCache]:
        weight = self.tok_embeddings.weight
        current = self.caches is not None and self.caches[0].cache_k.device == weight.device \
            and self.caches[0].cache_k.dtype == weight.dtype
        if not current:
            if start_pos != 0:
                raise ValueError(f"forward_inference was called with start_pos={start_pos}, but there are no caches "
                                 f"for this device and dtype yet: start the sequences at 0")
            with torch.inference_mode(False):
                self.caches = [KVCache(self.params.max_batch_size, self.params.max_seq_len, self.params.n_kv_heads,
                                       self.params.head_dim, dtype=weight.dtype, device=weight.device)
                               for _ in self.layers]
                # `[max_seq_len, head_dim / 2]`
                self.freqs_cis = self.rotations(0, self.params.max_seq_len, weight.device)
        return self.caches

    def free_caches(self) -> None:
        """Release the key/value caches (and the rotation table) of `forward_inference`."""
        self.caches = None
        self.freqs_cis = None


# ## Meta's import path
#
# Meta's reference code is used as `from llama import Llama`, and `Llama` lives in
# [`generation.py`](/transformers/llama/generation.md#Llama), which imports this module for `ModelArgs` and
# `Transformer`. Importing it here at the top would be circular, so the name is looked up when it is first asked
# for ([PEP 562](https://peps.python.org/pep-0562/)): `from labml_nn.transformers.llama import Llama` works, and
# importing the model alone does not load the tokenizer and generation code.
def __getattr__(name: str):
    if name == "Llama":
        from labml_nn.transformers.llama.generation import Llama
        return Llama
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ## Hugging Face checkpoints
#
# Checkpoints in Hugging Face's layout load with `load_hf(model_dir, max_batch_size=..., max_seq_len=...)`; the
# [page of that loader](/transformers/llama/hf.md) explains the permutation of the query and key weights that
# takes them from Hugging Face's rotate-half pairs back to Meta's interleaved ones.
def load_hf(model_dir: str | Path, **overrides) -> Transformer:
    """The `Transformer` of a Hugging Face `LlamaForCausalLM` directory; `overrides` set fields of `ModelArgs`."""
    from labml_nn.transformers.llama.hf import load_hf as load
    return load(model_dir, **overrides)

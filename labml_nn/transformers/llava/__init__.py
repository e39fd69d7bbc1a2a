r"""
---
title: LLaVA
summary: An annotated LLaVA, a CLIP vision transformer, a projector and the Llama, that reads images as tokens, trains on images it draws itself and loads Hugging Face checkpoints exactly.
---

# LLaVA

[Visual Instruction Tuning](https://arxiv.org/abs/2304.08485) (Liu et al., 2023, LLaVA) and
[Improved Baselines with Visual Instruction Tuning](https://arxiv.org/abs/2310.03744) (LLaVA 1.5) make a language
model read images with three parts this library already has:

1. a **vision transformer** (CLIP's, [Radford et al., 2021](https://arxiv.org/abs/2103.00020)) turns the image
   into one vector per patch;
2. a small **projector** maps each patch vector into the language model's embedding space;
3. the **language model** (here the [Llama](/transformers/llama/index.md)) reads those vectors where the prompt
   holds image tokens, as if they were the embeddings of words.

$$
\underbrace{\text{image}}_{3 \times H \times W}
\xrightarrow{\text{ViT}} \underbrace{Z}_{N \times d_{v}}
\xrightarrow{\text{projector}} \underbrace{H_v}_{N \times d}
\xrightarrow{\text{spliced into the prompt}} \text{Llama}
$$

Megatron-LM's `LLaVAModel` and Hugging Face's `LlavaForConditionalGeneration` are the same composition.

## Patches as tokens

A transformer reads a sequence of vectors. [Dosovitskiy et al., 2020](https://arxiv.org/abs/2010.11929) (ViT)
make an image into one by cutting it into $P \times P$ patches, flattening each patch's $3P^2$ numbers and
projecting them with one matrix to width $d_v$: a $224 \times 224$ image with $P = 14$ is $16 \times 16 = 256$
tokens. The projection of non-overlapping patches is a convolution with kernel and stride $P$. Where a patch
was is not in its pixels, so each token gets a learned position vector, and a learned *class token* is put
in front, whose final vector CLIP uses as the image's summary.

![A 32 x 32 image with two shapes cut into a 4 x 4 grid of 8 x 8 patches, and the class token followed by the 16 patches in reading order](/figures/llava_patches.png)

The figure shows one of the experiment's $32 \times 32$ images cut into $8 \times 8$ patches: the vision
transformer sees 16 tokens plus the class token.

## The vision transformer against the others

| | [The 2017 transformer](/transformers/models.md) | [Llama](/transformers/llama/index.md) | CLIP's vision tower |
|---|---|---|---|
| Input | token embeddings | token embeddings | patches through a convolution without bias, plus a class token |
| Positions | sinusoids | rotary, in attention | learned vectors, added once |
| Normalisation | LayerNorm, post-norm | RMSNorm, pre-norm | LayerNorm before the first layer (`pre_layrnorm`), pre-norm layers, LayerNorm at the end |
| Attention | causal in the decoder | causal | bidirectional: every patch sees every patch |
| Biases | yes | no | yes |
| Feed-forward | ReLU | SwiGLU | quick GELU, $x\,\sigma(1.702\,x)$ |

The layers are this package's [`TransformerLayer`](/transformers/models.md#TransformerLayer) with
[`MultiHeadAttention`](/transformers/mha.md) and [`FeedForward`](/transformers/feed_forward.md): nothing new.

## Splicing

The prompt holds one `image_token_id` per patch, `"<image><image>...<image>\nwhat colour is the square?"`.
The language model embeds the prompt's tokens and then replaces the $k$-th image token's vector by the $k$-th
projected patch. From there on it is an ordinary causal language model: the question's tokens attend to the
patches before them, and the loss is taken on the answer only.

The experiment (`python -m labml_nn.transformers.llava`, [page](/transformers/experiments/llava.md)) follows
LLaVA's recipe at toy scale on images it draws itself. Checkpoints in Hugging Face's layout load with
[`load_hf`](/transformers/llava/hf.md).
"""

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.llama import ModelArgs, Transformer
from labml_nn.transformers.mha import MultiHeadAttention
from labml_nn.transformers.models import TransformerLayer


# ## The vision configuration
#
# The field names are those of Hugging Face's `CLIPVisionConfig`, so that a checkpoint's `vision_config`
# maps field by field. The defaults are CLIP ViT-L/14 at 336 pixels, LLaVA 1.5's vision tower.
@dataclass(kw_only=True)
class VisionConfig:
    """
    Arguments:
        hidden_size: width $d_v$ of the patch vectors.
        intermediate_size: hidden width of the feed-forward networks.
        num_hidden_layers: number of layers.
        num_attention_heads: number of attention heads.
        image_size: height and width of the (square) images.
        patch_size: height and width $P$ of a patch; `image_size` must be a multiple of it.
        num_channels: colour channels of the images.
        layer_norm_eps: epsilon of the layer normalisations.
        hidden_act: `quick_gelu` (CLIP's) or `gelu`.
    """
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 336
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: Literal["quick_gelu", "gelu"] = "quick_gelu"

    def __post_init__(self):
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                     "patch_size", "num_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if isinstance(self.layer_norm_eps, bool) or not isinstance(self.layer_norm_eps, (int, float)) \
                or not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be a positive number, got {self.layer_norm_eps!r}")
        if self.hidden_act not in ("quick_gelu", "gelu"):
            raise ValueError(f"hidden_act must be 'quick_gelu' or 'gelu', got {self.hidden_act!r}")

    # The number of patches $N = (\text{image\_size} / P)^2$, the image's tokens besides the class token.
    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# ## Quick GELU
#
# $$\text{QuickGELU}(x) = x\,\sigma(1.702\,x) \quad\text{against}\quad \text{GELU}(x) = x\,\Phi(x)$$
#
# OpenAI's CLIP was trained with this sigmoid approximation of the GELU ($\Phi$ is the standard normal's
# distribution function; $\sigma(1.702\,x)$ is within $0.02$ of it everywhere). It is not the tanh approximation
# of GPT-2 either. The two differ by up to about $0.02$ in the output, far above the $10^{-5}$ at which a
# checkpoint's logits should agree, so a CLIP checkpoint must run with the activation it was trained with.
# It is passed to [`FeedForward`](/transformers/feed_forward.md) as its `activation`.
class QuickGELU(nn.Module):
    r"""$x\,\sigma(1.702\,x)$, CLIP's activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# ## The vision transformer
#
# CLIP's vision tower. The layers are pre-norm [`TransformerLayer`](/transformers/models.md#TransformerLayer)s
# with biased attention and a two-layer feed-forward network; what is CLIP's own is around them: the patch
# embedding, the class token, the learned positions and the layer normalisation *before* the first layer
# (Hugging Face keeps the original code's spelling, `pre_layrnorm`).
class VisionTransformer(nn.Module):
    """CLIP's vision transformer: `patch_embedding`, `class_embedding`, `position_embedding`, `pre_norm`,
    `layers` and `post_norm`."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        # The patch embedding: a convolution whose kernel and stride are the patch size, without bias (the
        # position vectors added next play the bias's part).
        self.patch_embedding = nn.Conv2d(config.num_channels, d, kernel_size=config.patch_size,
                                         stride=config.patch_size, bias=False)
        # The class token's vector and one position vector per token (the class token and the patches).
        self.class_embedding = nn.Parameter(torch.randn(d) * d ** -0.5)
        self.position_embedding = nn.Parameter(torch.randn(config.num_patches + 1, d) * 0.02)
        self.pre_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        activation = QuickGELU() if config.hidden_act == "quick_gelu" else nn.GELU()
        layer = TransformerLayer(d, MultiHeadAttention(config.num_attention_heads, d, bias=True), None,
                                 FeedForward(d, config.intermediate_size, 0.0, activation), 0.0, pre_norm=True,
                                 norm_eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(config.num_hidden_layers))
        # The final normalisation. CLIP applies it to the class token's output, the image's summary; LLaVA
        # does not use it (it reads a layer's patch vectors), but checkpoints hold it.
        self.post_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def check_pixels(self, pixel_values: torch.Tensor) -> None:
        c, size = self.config.num_channels, self.config.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (c, size, size):
            raise ValueError(f"pixel_values must be [batch, channels={c}, height={size}, width={size}], "
                             f"got {list(pixel_values.shape)}")

    # ### Patches to tokens
    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch = pixel_values.shape[0]
        # `[batch, channels, height, width]` to `[batch, d_v, height / P, width / P]`: each patch's $3P^2$
        # numbers times one matrix
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        # `[batch, d_v, rows, columns]` to `[batch, rows * columns, d_v]`, patches in reading order
        patches = patches.flatten(2).transpose(1, 2)
        # `[batch, 1, d_v]`
        cls = self.class_embedding.expand(batch, 1, -1)
        # `[batch, 1 + patches, d_v]`, plus the learned positions
        return torch.cat([cls, patches], dim=1) + self.position_embedding

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The hidden states, each `[batch, 1 + patches, hidden_size]`: the embeddings after the first norm,
        then each layer's output (Hugging Face's `hidden_states`)."""
        self.check_pixels(pixel_values)
        h = self.pre_norm(self.embed(pixel_values))
        states = [h]
        # No mask: every token attends to every token.
        for layer in self.layers:
            h = layer(h)
            states.append(h)
        return states

    # CLIP's image summary: the class token's last vector, normalised.
    def pooled(self, states: list[torch.Tensor]) -> torch.Tensor:
        """`[batch, hidden_size]`, from the output of `forward`."""
        return self.post_norm(states[-1][:, 0])


# ## The projector
#
# Maps patch vectors of width $d_v$ to the language model's width $d$. LLaVA 1.0 used one matrix, `'linear'`;
# LLaVA 1.5 found that a two-layer network with a GELU between, `'mlp2x_gelu'`, reads the image better.
# (Hugging Face's names, `linear_1` and `linear_2`.)
class Projector(nn.Module):
    """`linear_1` ($d_v \\to d$), then for `'mlp2x_gelu'` a GELU and `linear_2` ($d \\to d$)."""

    def __init__(self, vision_hidden: int, text_dim: int, kind: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"):
        super().__init__()
        if kind not in ("mlp2x_gelu", "linear"):
            raise ValueError(f"kind must be 'mlp2x_gelu' or 'linear', got {kind!r}")
        self.kind = kind
        self.linear_1 = nn.Linear(vision_hidden, text_dim)
        self.activation = nn.GELU() if kind == "mlp2x_gelu" else None
        self.linear_2 = nn.Linear(text_dim, text_dim) if kind == "mlp2x_gelu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[..., vision_hidden]` to `[..., text_dim]`."""
        x = self.linear_1(x)
        if self.linear_2 is not None:
            x = self.linear_2(self.activation(x))
        return x


# ## LLaVA
#
# The vision transformer, the projector and the Llama [`Transformer`](/transformers/llama/index.md#Transformer)
# (`language_model`).
class Llava(nn.Module):
    """
    Arguments:
        vision_config: the vision transformer's [`VisionConfig`](#VisionConfig).
        text_args: the Llama's [`ModelArgs`](/transformers/llama/index.md#ModelArgs).
        image_token_id: the token id that marks where the image's patch vectors go; one per patch.
        vision_feature_layer: which of the vision transformer's hidden states is read; LLaVA 1.5 takes the
            second to last, $-2$ (the last layer was trained for CLIP's contrastive objective, the one before
            it keeps more of the spatial detail).
        projector: the [`Projector`](#Projector)'s kind.
    """

    def __init__(self, vision_config: VisionConfig, text_args: ModelArgs, *, image_token_id: int,
                 vision_feature_layer: int = -2, projector: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"):
        super().__init__()
        if isinstance(image_token_id, bool) or not isinstance(image_token_id, int) \
                or not 0 <= image_token_id < text_args.vocab_size:
            raise ValueError(f"image_token_id must be a token id in [0, vocab_size={text_args.vocab_size}), "
                             f"got {image_token_id!r}")
        states = vision_config.num_hidden_layers + 1
        if not -states <= vision_feature_layer < states:
            raise ValueError(f"vision_feature_layer must index the {states} hidden states "
                             f"(-{states} ... {states - 1}), got {vision_feature_layer}")
        self.image_token_id = image_token_id
        self.vision_feature_layer = vision_feature_layer
        self.vision = VisionTransformer(vision_config)
        self.projector = Projector(vision_config.hidden_size, text_args.dim, projector)
        self.language_model = Transformer(text_args)

    # ### The image's vectors
    #
    # The hidden state of `vision_feature_layer`, without the class token (Hugging Face's
    # `vision_feature_select_strategy="default"`), projected: `[batch, patches, dim]`.
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        states = self.vision(pixel_values)
        return self.projector(states[self.vision_feature_layer][:, 1:])

    # ### Splicing
    #
    # Each row must hold exactly one image token per patch. A boolean mask picks the image positions in row-major
    # order, so `masked_scatter` writes row $b$'s patches, in order, into row $b$'s image positions: the $k$-th
    # image token of a row takes the $k$-th patch of that row's image, and every other position keeps its token's
    # embedding. On a CPU the counts are checked at once; on an accelerator the check runs on the device without
    # waiting for it (as [the embeddings](/transformers/models.md#Embeddings.check_tokens) do).
    def splice(self, input_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """Token embeddings of `input_ids` `[batch, seq]` with the image positions replaced by `image_features`
        `[batch, patches, dim]`; `[batch, seq, dim]`."""
        is_image = input_ids == self.image_token_id
        patches = image_features.shape[1]
        counts = is_image.sum(dim=1)
        if input_ids.device.type == "cpu":
            wrong = (counts != patches).nonzero().flatten().tolist()
            if wrong:
                row = wrong[0]
                raise ValueError(f"row {row} of input_ids holds {int(counts[row])} image tokens "
                                 f"(id {self.image_token_id}), but the image has {patches} patches")
        else:
            torch._assert_async((counts == patches).all(), f"every row must hold {patches} image tokens")
        h = self.language_model.tok_embeddings(input_ids)
        # `[batch, seq, dim]`
        return h.masked_scatter(is_image.unsqueeze(-1), image_features.to(h.dtype))

    def check_input_ids(self, input_ids: torch.Tensor) -> None:
        vocab = self.language_model.vocab_size
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be an integer tensor [batch, seq], got {input_ids.dtype} "
                             f"{list(input_ids.shape)}")
        if input_ids.device.type == "cpu" and input_ids.numel() > 0:
            low, high = torch.aminmax(input_ids)
            if low < 0 or high >= vocab:
                raise ValueError(f"token ids must be in [0, vocab_size={vocab}), got ids from {int(low)} to {int(high)}")

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        self.check_input_ids(input_ids)
        if pixel_values.shape[:1] != input_ids.shape[:1]:
            raise ValueError(f"one image per row: input_ids has {input_ids.shape[0]} rows, pixel_values "
                             f"{pixel_values.shape[0] if pixel_values.dim() else 0} images")
        return self.splice(input_ids, self.image_features(pixel_values))

    # ### Whole sequences
    #
    # Prompts of different lengths are padded on the right: the model is causal, so a row's real positions never
    # see its padding, and their logits are those of the unpadded prompt (the tests compare them with Hugging
    # Face's model given the attention mask).
    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits `[batch, seq, vocab]` of `input_ids` `[batch, seq]`, whose image tokens read `pixel_values`
        `[batch, channels, height, width]`."""
        return self.language_model.forward_embeddings(self.embed(input_ids, pixel_values))

    # ### The loss
    #
    # `labels` are `input_ids` with $-100$ at the positions that are not to be learnt: the image tokens and the
    # prompt. Position $t$'s logits predict the label of $t + 1$, as in the Llama's
    # [`forward_loss`](/transformers/llama/index.md#Transformer.forward_loss).
    def forward_loss(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next token over the positions whose label is not $-100$."""
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels must have the shape of input_ids {list(input_ids.shape)}, got {list(labels.shape)}")
        logits = self(input_ids, pixel_values)
        # `[batch, seq - 1, vocab]` against `[batch, seq - 1]`
        return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)

    # ### Generation
    #
    # The image is encoded once, spliced into the prompt, and the prompt's keys and values go into the Llama's
    # caches in one call ([`forward_inference_embeddings`](/transformers/llama/index.md#Transformer.forward_inference_embeddings)).
    # Each new token is then one position through the language model alone: the image's patches are in the
    # cache, never seen by the vision transformer again. Every row's prompt has the same length (it holds the
    # same number of image tokens, and the experiment's prompts are padded on the left with text).
    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, max_new_tokens: int,
                 temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """The `max_new_tokens` tokens `[batch, max_new_tokens]` that follow each prompt; greedy at
        `temperature=0`, else sampled from $\\text{softmax}(\\text{logits} / T)$."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        lm = self.language_model
        prompt = input_ids.shape[1]
        if prompt + max_new_tokens - 1 > lm.params.max_seq_len:
            raise ValueError(f"the prompt ({prompt}) and max_new_tokens ({max_new_tokens}) do not fit in "
                             f"max_seq_len = {lm.params.max_seq_len}")
        logits = lm.forward_inference_embeddings(self.embed(input_ids, pixel_values), 0)[:, -1]
        tokens = []
        for step in range(max_new_tokens):
            if temperature == 0:
                # `[batch, 1]`
                token = logits.argmax(dim=-1, keepdim=True)
            else:
                token = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)
            tokens.append(token)
            if step + 1 < max_new_tokens:
                logits = lm.forward_inference(token, prompt + step)[:, -1]
        # `[batch, max_new_tokens]`
        return torch.cat(tokens, dim=1)


# ## Hugging Face checkpoints
#
# `load_hf(model_dir)` reads a `LlavaForConditionalGeneration` directory; [its page](/transformers/llava/hf.md)
# shows the name map.
def load_hf(model_dir: str | Path, **overrides) -> Llava:
    """The [`Llava`](#Llava) of a Hugging Face `LlavaForConditionalGeneration` directory; `overrides` set fields
    of the Llama's `ModelArgs` (e.g. `max_batch_size`)."""
    from labml_nn.transformers.llava.hf import load_hf as load
    return load(model_dir, **overrides)

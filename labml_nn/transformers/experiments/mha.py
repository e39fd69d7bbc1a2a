r"""
---
title: What the attention heads of a small GPT look at
summary: A small autoregressive transformer trained on Tiny Shakespeare, then the attention weights of every head over a validation sample, drawn as heat maps, with how far back each head looks.
---

# What the attention heads of a small GPT look at

```bash
python -m labml_nn.transformers.mha --device cpu
python -m labml_nn.transformers.mha --head-layer 1 --head 2
```

The experiment trains a small [GPT](/transformers/gpt/index.md) (the baby size of the
[GPT experiment](/transformers/experiments/gpt.md)) on Tiny Shakespeare. Then it reads the first `context`
characters of the validation text and takes every head's attention weights, which the
[explicit path](/transformers/mha.md#MultiHeadAttention.attend_explicitly) of the attention returns with
`need_weights=True`:

* `attention.png`: the heat maps of all heads of all layers, query position down, key position across, each
  row summing to one, under the causal mask (nothing above the diagonal);
* `attention_head.png`: one head (`head_layer`, `head`), with the characters on the axes.

For each head the result has its **mean attention distance**, how far back its average query looks,
$\frac{1}{T}\sum_i \sum_j a_{ij}\,(i - j)$, and the weight it gives to the previous character. In this character
model the heads of the lower layers look at the last few characters, a narrow band along the diagonal (they
assemble the pieces of a word), while higher up the bands widen and some heads attend to a few chosen earlier
characters, such as the start of the word or of the line, at any distance (vertical stripes in their maps). The
result also has the largest difference
between the attention's output on the explicit path and on PyTorch's fused kernel for the same input (rounding
only).
"""

from dataclasses import dataclass, field

import torch

from labml_nn.experiments.char_lm import (baby_model, baby_trainer, check_context, tiny_model, tiny_trainer,
                                          train_char_lm)
from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.data import load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.experiments.gpt import GPT2_CHOICES, baby, build_model
from labml_nn.transformers.gpt import GPT, check_init_std


# ## Configuration
@dataclass
class MHAExperiment:
    """A small GPT on Tiny Shakespeare, then its attention weights over a validation sample."""
    model: TransformerConfigs = field(default_factory=lambda: baby_model(**GPT2_CHOICES))
    init_std: float = field(default_factory=lambda: baby().init_std)
    """Standard deviation of the initial weights, as in the GPT's baby preset (sqrt(2 / (5 d_model)))."""
    trainer: TrainerConfig = field(default_factory=baby_trainer)
    context: int = 64
    """Characters per training sequence and of the sample whose attention is drawn."""
    head_layer: int = 0
    """Layer of the head drawn with the characters on its axes."""
    head: int = 0
    """That head's index in its layer."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        check_init_std(self.init_std)
        if not 0 <= self.head_layer < self.model.n_layers:
            raise ValueError(f"head_layer must be in [0, n_layers={self.model.n_layers}), got {self.head_layer}")
        if not 0 <= self.head < self.model.n_heads:
            raise ValueError(f"head must be in [0, n_heads={self.model.n_heads}), got {self.head}")


# ## Presets
def default() -> MHAExperiment:
    """The baby GPT: 4 layers of 4 heads, 2,000 steps."""
    return MHAExperiment()


def tiny() -> MHAExperiment:
    """Seconds: a one-layer model, four steps (for tests)."""
    return MHAExperiment(model=tiny_model(**GPT2_CHOICES), trainer=tiny_trainer(), context=16)


# ## The attention weights
#
# The layers are run one by one on the sample. Each layer's self-attention is called once more, on the same
# (normalised) input it gets inside the layer, with `need_weights=True`, and once on the fast path, to compare their
# outputs. Returns the weights `[layers, heads, seq, seq]` and the largest difference of the outputs.
@torch.no_grad()
def attention_weights(model: GPT, tokens: torch.Tensor) -> tuple[torch.Tensor, float]:
    model.eval()
    # `[1, seq, d_model]`
    x = model.embed(tokens)
    weights, difference = [], 0.0
    for layer in model.encoder.layers:
        z = layer.norm_self_attn(x) if layer.pre_norm else x
        # `[1, seq, d_model]` and `[1, heads, seq, seq]`
        explicit, attention = layer.self_attn(z, z, z, need_weights=True, is_causal=True)
        fast = layer.self_attn(z, z, z, is_causal=True)
        difference = max(difference, (explicit - fast).abs().max().item())
        weights.append(attention[0])
        x = layer(x, is_causal=True)
    model.train()
    return torch.stack(weights), difference


# $\frac{1}{T}\sum_i \sum_j a_{ij}\,(i - j)$ for each head, `[layers, heads]`
def mean_attention_distance(weights: torch.Tensor) -> torch.Tensor:
    seq = weights.shape[-1]
    positions = torch.arange(seq, dtype=weights.dtype)
    # $i - j$, `[seq, seq]`
    distance = positions[:, None] - positions[None, :]
    return (weights * distance).sum(dim=-1).mean(dim=-1)


# $\frac{1}{T - 1}\sum_{i \ge 1} a_{i, i-1}$ for each head, `[layers, heads]`
def previous_token_weight(weights: torch.Tensor) -> torch.Tensor:
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)


# ## Drawing
#
# Newlines and spaces would be invisible as tick labels.
def visible(char: str) -> str:
    return {"\n": "⏎", " ": "␣"}.get(char, char)


# Every head of every layer, a row per layer, each titled with its mean attention distance.
def plot_all_heads(weights: torch.Tensor, distances: torch.Tensor, path) -> None:
    from matplotlib.figure import Figure

    layers, heads = weights.shape[:2]
    figure = Figure(figsize=(2.4 * heads, 2.4 * layers + 0.4), dpi=110)
    axes = figure.subplots(layers, heads, squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(weights[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {layer} head {head}: {distances[layer, head]:.1f} back", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    figure.suptitle("attention weights (query down, key across)")
    figure.tight_layout()
    figure.savefig(path)


# One head, with the characters of the sample on both axes.
def plot_head(weights: torch.Tensor, text: str, title: str, path) -> None:
    from matplotlib.figure import Figure

    labels = [visible(c) for c in text]
    figure = Figure(figsize=(9, 8.5), dpi=110)
    ax = figure.add_subplot()
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
#
# Train the GPT as the [GPT experiment](/transformers/experiments/gpt.md) does, then measure and draw its heads on
# the sample.
def train(config: MHAExperiment, run: Run) -> dict:
    model, tokenizer, result = train_char_lm(lambda n_vocab: build_model(config.model, n_vocab, config.init_std),
                                             config.trainer, run, config.context)
    data = load_tiny_shakespeare(run.data_dir)
    # The first characters of the validation text, `[1, context]`
    tokens = data.val[:config.context][None].to(run.device)
    weights, difference = attention_weights(model, tokens)
    weights = weights.float().cpu()
    distances = mean_attention_distance(weights)
    result["attention_distance"] = distances.tolist()
    result["previous_token_weight"] = previous_token_weight(weights).tolist()
    result["explicit_vs_fast_max_difference"] = difference
    if run.is_main:
        text = tokenizer.decode(tokens[0].cpu())
        plot_all_heads(weights, distances, run.path("attention.png"))
        plot_head(weights[config.head_layer, config.head], text,
                  f"layer {config.head_layer}, head {config.head}: "
                  f"{distances[config.head_layer, config.head]:.1f} characters back on average",
                  run.path("attention_head.png"))
    return result


# ## Reloading a run
#
# The model of a finished run (or of one of its variants), for [`load_run`](/experiments/char_lm.md#load_run):
# the configuration comes from the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[GPT, int]:
    """The untrained model of a run of this experiment, and its context."""
    config = config_from_dict(MHAExperiment, experiment)
    return build_model(config.model, n_vocab, config.init_std), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("mha", MHAExperiment, train, presets={"default": default, "tiny": tiny}, argv=argv,
                   description="Train a small GPT on Tiny Shakespeare and draw what its attention heads look at.")


if __name__ == "__main__":
    main()

r"""
---
title: A leak test for the causal mask
summary: With the causal mask the gradient of the prediction at position t with respect to every later input is exactly zero, without it it is not; and a language model trained without the mask learns to read the answer from its input.
---

# A leak test for the causal mask

```bash
python -m labml_nn.transformers.utils --device cpu
```

A language model predicts the character at position $t + 1$ from the characters up to $t$. All positions of a
block are trained at once, and the input at position $t + 1$ *is* the answer for position $t$, so attention must
not let position $t$ see anything after it: that is the [causal mask](/transformers/utils.md#subsequent_mask).
This experiment checks it in two ways, on one [decoder-only language model](/transformers/experiments/configs.md#DecoderOnlyLM)
whose attention gets `subsequent_mask` (or, for comparison, no mask at all).

**The gradients.** For the freshly initialised model, with $x_s$ the embedded input at position $s$ and
$\mathcal{L}_t$ the loss of the prediction at position $t$, it computes

$$G_{ts} = \Big\lVert \frac{\partial \mathcal{L}_t}{\partial x_s} \Big\rVert$$

for every pair of positions, by one backward pass per $t$. With the mask, the prediction at $t$ is a function of
$x_0 \dots x_t$ only, so $G_{ts} = 0$ exactly for $s > t$, not merely small: the masked scores are $-\infty$, their
weights exactly zero, and no gradient flows through them. Without the mask it is not. `gradients.png` draws
$G$ for both; `leak_with_mask` and `leak_without_mask` in the result are the largest $G_{ts}$ with $s > t$.

**The training.** Then the model is trained twice on Tiny Shakespeare ([comparing
variants](/experiments/compare.md)): `causal` with the mask and `unmasked` without. The unmasked model's
validation loss drops towards zero: it does not predict the next character, it copies it from the input at the
next position. `loss_by_position.png` shows where that breaks down. At the last position of a block the next
character is not in the input, and there the unmasked model must really predict; `last_position_loss` is the
loss there, and it is the loss of generating text, one character after the end of what is there. The result also
has a short sample of each model's text.
"""

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from labml_nn.experiments.char_lm import (baby_model, baby_trainer, check_context, generate_text, loss_by_position,
                                          tiny_model, tiny_trainer, train_char_lm)
from labml_nn.experiments.cli import run_experiment
from labml_nn.experiments.compare import train_variants
from labml_nn.experiments.data import load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.experiments.configs import DecoderOnlyLM
from labml_nn.transformers.utils import subsequent_mask


# ## The model, with or without the mask
#
# The decoder-only language model with its attention mask written out: `subsequent_mask(seq)` `[seq, seq]`, which
# broadcasts over the batch and the heads, or no mask at all.
class MaskedLM(DecoderOnlyLM):
    """[DecoderOnlyLM](/transformers/experiments/configs.md#DecoderOnlyLM) with the causal mask, or without it."""

    def __init__(self, configs: TransformerConfigs, causal: bool = True):
        super().__init__(configs)
        self.causal = causal

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embeddings(self.embed(tokens))

    # `[batch, seq, d_model]` embedded inputs to `[batch, seq, n_vocab]` logits
    def logits_from_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        mask = subsequent_mask(x.shape[1], x.device) if self.causal else None
        return self.generator(self.encoder(x, mask))


# ## The gradients
#
# $G_{ts}$ for one block of tokens `[1, seq]` (the input) and its next tokens `[1, seq]` (the targets):
# `[seq, seq]`, row $t$ the gradient norms of $\mathcal{L}_t$ with respect to each $x_s$.
def gradient_norms(model: MaskedLM, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    # `[1, seq, d_model]`, a leaf whose gradient we read
    x = model.embed(inputs).detach().requires_grad_(True)
    # $\mathcal{L}_t$ for every $t$, `[seq]`
    losses = F.cross_entropy(model.logits_from_embeddings(x)[0], targets[0], reduction="none")
    rows = []
    for t in range(inputs.shape[1]):
        # $\partial \mathcal{L}_t / \partial x$, `[1, seq, d_model]`, to its norm at each position `[seq]`
        (gradient,) = torch.autograd.grad(losses[t], x, retain_graph=True)
        rows.append(gradient[0].norm(dim=-1))
    model.train(was_training)
    # `[seq, seq]`
    return torch.stack(rows).detach()


# The largest gradient with respect to a later position: $\max_{s > t} G_{ts}$.
def largest_leak(gradients: torch.Tensor) -> float:
    later = torch.ones_like(gradients, dtype=torch.bool).triu(diagonal=1)
    return gradients[later].max().item()


# ## Drawing
#
# $G$ on a logarithmic colour scale, on which exact zeros have no colour: with the mask, everything above the
# diagonal stays white.
def plot_gradients(with_mask: torch.Tensor, without_mask: torch.Tensor, path) -> None:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.4), dpi=120)
    smallest = without_mask[without_mask > 0].min().item()
    norm = LogNorm(vmin=smallest, vmax=max(with_mask.max().item(), without_mask.max().item()))
    for ax, gradients, title in zip(figure.subplots(1, 2), (with_mask, without_mask),
                                    ("with subsequent_mask", "without a mask")):
        # Exact zeros are drawn white (masked out of the logarithmic colour scale)
        image = ax.imshow(torch.where(gradients > 0, gradients, torch.nan).numpy(), norm=norm, cmap="viridis")
        ax.set_title(f"{title}: max over s > t = {largest_leak(gradients):.2e}", fontsize=9)
        ax.set_xlabel("input position $s$")
        ax.set_ylabel("prediction at position $t$")
    figure.colorbar(image, ax=figure.axes, label=r"$\|\partial L_t / \partial x_s\|$ (white: exactly 0)")
    figure.savefig(path)


# The loss at each position of the validation blocks, for both models.
def plot_loss_by_position(curves: dict[str, list[float]], path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=120)
    ax = figure.add_subplot()
    for name, curve in curves.items():
        ax.plot(range(len(curve)), curve, "o-", markersize=2, label=name)
    ax.set_xlabel("position in the block")
    ax.set_ylabel("validation loss")
    ax.set_title("the unmasked model reads the next character, except at the last position")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path)


# ## Configuration
@dataclass
class LeakExperiment:
    """The causal mask's leak test: gradients with and without it, and a model trained with and without it."""
    model: TransformerConfigs = field(default_factory=baby_model)
    trainer: TrainerConfig = field(default_factory=lambda: baby_trainer(max_steps=500, eval_every=100))
    context: int = 64
    """Characters per training sequence (at most the model's max_len)."""
    eval_batches: int = 20
    """Validation batches (of the trainer's batch size) of the loss at each position."""
    sample_tokens: int = 200
    """Characters each model writes at the end (0 for none)."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        if self.eval_batches < 1:
            raise ValueError(f"eval_batches must be positive, got {self.eval_batches}")
        if self.sample_tokens < 0:
            raise ValueError(f"sample_tokens must be >= 0, got {self.sample_tokens}")


# ## Presets
def default() -> LeakExperiment:
    """The baby size, 500 steps with the mask and 500 without."""
    return LeakExperiment()


def tiny() -> LeakExperiment:
    """Seconds: a one-layer model, four steps per variant (for tests)."""
    return LeakExperiment(model=tiny_model(), trainer=tiny_trainer(), context=16, eval_batches=2, sample_tokens=10)


# ## The experiment
def train(config: LeakExperiment, run: Run) -> dict:
    data = load_tiny_shakespeare(run.data_dir)
    model_config = replace(config.model, n_src_vocab=data.tokenizer.n_vocab)

    # The gradients of one freshly initialised model on one validation block, with the mask and then without it:
    # the same weights both times, so that the mask is the only difference.
    torch.manual_seed(run.seed)
    model = MaskedLM(model_config)
    block = data.val[:config.context + 1][None]
    with_mask = gradient_norms(model, block[:, :-1], block[:, 1:])
    model.causal = False
    without_mask = gradient_norms(model, block[:, :-1], block[:, 1:])
    if run.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        plot_gradients(with_mask, without_mask, run.path("gradients.png"))

    # Variant name to its loss at each position, for the plot
    curves = {}

    # Train one model with the mask (`causal`) or without (`unmasked`); then its loss at every position of the
    # validation blocks, and a sample of its text.
    def train_one(name: str, sub: Run) -> dict:
        trained, tokenizer, result = train_char_lm(lambda n_vocab: MaskedLM(model_config, causal=name == "causal"),
                                                   config.trainer, sub, config.context)
        # `[context]`
        curve = loss_by_position(trained, data.val, config.context, config.eval_batches, config.trainer.batch_size,
                                 seed=run.seed)
        curves[name] = curve.tolist()
        result["last_position_loss"] = curve[-1].item()
        if config.sample_tokens and run.is_main:
            result["sample"] = generate_text(trained, tokenizer, "\n", config.sample_tokens, config.context,
                                             seed=run.seed)
        return result

    # The unmasked model's validation loss is a cheat, so the variants are ranked by the loss where nobody can
    # cheat, at the last position.
    summary = train_variants(run, ["causal", "unmasked"], train_one, figures=["last_position_loss", "sample"],
                             rank_by="last_position_loss")
    if run.is_main:
        plot_loss_by_position(curves, run.path("loss_by_position.png"))
    return {"leak_with_mask": largest_leak(with_mask), "leak_without_mask": largest_leak(without_mask), **summary}


def main(argv: list[str] | None = None) -> None:
    run_experiment("utils", LeakExperiment, train, presets={"default": default, "tiny": tiny}, argv=argv,
                   description="The causal mask's leak test: gradients and training with and without the mask.")


if __name__ == "__main__":
    main()

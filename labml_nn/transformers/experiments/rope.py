r"""
---
title: Rotary or sinusoidal positions
summary: The same small language model trained on Tiny Shakespeare with rotary embeddings and with the paper's sinusoids, validation losses side by side, and the loss at each position of blocks twice as long as the training context.
---

# Rotary or sinusoidal positions

```bash
python -m labml_nn.transformers.rope --device cpu
python -m labml_nn.transformers.rope --variants rope fixed learned
```

One [decoder-only language model](/transformers/experiments/configs.md#DecoderOnlyLM) at
[the baby size](/experiments/char_lm.md#baby_model), trained twice on Tiny Shakespeare ([comparing
variants](/experiments/compare.md)):

* `rope`: [rotary embeddings](/transformers/rope/index.md) rotate the queries and keys of every layer's attention,
  so that a score depends on how far apart two characters are, and nothing is added to the embeddings;
* `fixed`: the paper's [sinusoids](/transformers/positional_encoding.md) are added to the embeddings once, below
  the first layer.

The validation losses are in `result.json` (`val_loss`). Then both models read validation blocks of
`eval_context` characters, longer than the `context` they were trained on, and `loss_by_position.png` plots the
loss at each position:

* inside the training context the loss falls over the first positions, as each prediction has more characters to
  go on, and then stays level;
* past it, a model meets what it never saw in training: absolute positions (`fixed`), or distances between a
  query and a key (`rope`). `val_loss_beyond_context` in the result is the mean loss over those positions.

In our runs the rotary model ended ahead inside the context, and the difference past it was far larger. The
sinusoidal model's loss jumped as soon as the positions were new to it: its embeddings there are vectors its
layers never saw. The rotary model's barely rose, because what its attention sees depends only on distances, and
a character model attends mostly to the last few dozen characters, distances it knows from every position of its
training blocks; only towards the end of the longer blocks, where much of what it may attend to lies beyond the
distances it was trained on, does it begin to suffer. (Models that must read far longer texts than they were
trained on stretch RoPE's frequencies, as [Llama 3.1](/transformers/llama/index.md) does.)
"""

from dataclasses import dataclass, field, replace

from labml_nn.experiments.char_lm import (baby_model, baby_trainer, check_context, loss_by_position, tiny_model,
                                          tiny_trainer, train_char_lm)
from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.compare import check_variant, check_variants, train_variants
from labml_nn.experiments.data import load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import Positional, TransformerConfigs
from labml_nn.transformers.experiments.configs import DecoderOnlyLM


# ## Configuration
#
# The model accepts `max_len` positions, twice the training context, so that it can be evaluated on longer
# blocks.
@dataclass
class RoPEExperiment:
    """One language model trained with rotary and with sinusoidal positions."""
    model: TransformerConfigs = field(default_factory=lambda: baby_model(max_len=128))
    trainer: TrainerConfig = field(default_factory=baby_trainer)
    context: int = 64
    """Characters per training sequence (at most the model's max_len)."""
    eval_context: int = 128
    """Characters per validation block of the loss-by-position curve (from context to max_len)."""
    eval_batches: int = 20
    """Batches (of the trainer's batch size) of that curve."""
    variants: tuple[Positional, ...] = ("rope", "fixed")
    """The positional encodings to compare."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        if not self.context <= self.eval_context <= self.model.max_len:
            raise ValueError(f"eval_context must be in [context={self.context}, max_len={self.model.max_len}], "
                             f"got {self.eval_context}")
        if self.eval_batches < 1:
            raise ValueError(f"eval_batches must be positive, got {self.eval_batches}")
        check_variants("variants", self.variants)


# ## Presets
def default() -> RoPEExperiment:
    """The baby size and recipe, with rotary and with sinusoidal positions."""
    return RoPEExperiment()


def tiny() -> RoPEExperiment:
    """Seconds: a one-layer model, four steps per variant (for tests)."""
    return RoPEExperiment(model=tiny_model(max_len=32), trainer=tiny_trainer(), context=16, eval_context=32,
                          eval_batches=2)


# ## The loss at each position, drawn
#
# One curve per variant; the dashed line is where the training context ends.
def plot_loss_by_position(curves: dict[str, list[float]], context: int, path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=120)
    ax = figure.add_subplot()
    for name, curve in curves.items():
        ax.plot(range(len(curve)), curve, label=name)
    ax.axvline(context - 0.5, color="gray", linestyle="--", linewidth=1)
    ax.text(context, ax.get_ylim()[1], " beyond the training context", va="top", fontsize=8, color="gray")
    ax.set_xlabel("position in the block")
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
#
# A variant is the same configuration with another `positional`.
def variant_model(config: RoPEExperiment, positional: str, n_vocab: int) -> DecoderOnlyLM:
    return DecoderOnlyLM(replace(config.model, positional=positional, n_src_vocab=n_vocab))


# Each variant trains, then reads the same longer validation blocks.
def train(config: RoPEExperiment, run: Run) -> dict:
    data = load_tiny_shakespeare(run.data_dir)
    # Variant name to its loss at each position, for the plot
    curves = {}

    # The same configuration with another `positional`. After training, the loss at every position of blocks of
    # `eval_context` characters, split at the training context.
    def train_one(positional: str, sub: Run) -> dict:
        model, _, result = train_char_lm(lambda n_vocab: variant_model(config, positional, n_vocab),
                                         config.trainer, sub, config.context)
        # `[eval_context]`
        curve = loss_by_position(model, data.val, config.eval_context, config.eval_batches,
                                 config.trainer.batch_size, seed=run.seed)
        curves[positional] = curve.tolist()
        result["val_loss_within_context"] = curve[:config.context].mean().item()
        if config.eval_context > config.context:
            result["val_loss_beyond_context"] = curve[config.context:].mean().item()
        return result

    # Side by side in the result, beside the trainer's figures
    figures = ["val_loss_within_context"] + (["val_loss_beyond_context"] if config.eval_context > config.context
                                             else [])
    summary = train_variants(run, config.variants, train_one, figures=figures)
    if run.is_main:
        plot_loss_by_position(curves, config.context, run.path("loss_by_position.png"))
    return summary


# ## Reloading a run
#
# The model of a finished run (or of one of its variants), for [`load_run`](/experiments/char_lm.md#load_run):
# the configuration comes from the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[DecoderOnlyLM, int]:
    """The untrained model of a variant of a run of this experiment, and its context."""
    config = config_from_dict(RoPEExperiment, experiment)
    return variant_model(config, check_variant(variant, config.variants), n_vocab), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("rope", RoPEExperiment, train, presets={"default": default, "tiny": tiny}, argv=argv,
                   description="Train one language model with rotary and with sinusoidal positions.")


if __name__ == "__main__":
    main()

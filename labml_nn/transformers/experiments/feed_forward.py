r"""
---
title: Feed-forward networks compared
summary: The same small language model trained on Tiny Shakespeare with ReLU, GELU, GLU, GEGLU and SwiGLU feed-forward networks at equal parameter count, validation losses side by side.
---

# Feed-forward networks compared

```bash
python -m labml_nn.transformers.feed_forward --device cpu
python -m labml_nn.transformers.feed_forward --variants relu swiglu --no-equal-parameters
```

One [decoder-only language model](/transformers/experiments/configs.md#DecoderOnlyLM) at
[the baby size](/experiments/char_lm.md#baby_model), trained on Tiny Shakespeare once for each
[feed-forward network](/transformers/feed_forward.md) ([comparing variants](/experiments/compare.md)):

* `relu` and `gelu`: two linear layers with the activation between them, $f(x W_1 + b_1) W_2 + b_2$;
* `glu`, `geglu` and `swiglu`: gated, $\big(\sigma(x W_1) \otimes x V\big) W_2$, with $\sigma$ the sigmoid,
  GELU and Swish ([Shazeer, 2020](https://arxiv.org/abs/2002.05202)).

A gated network has three weight matrices instead of two, so with `equal_parameters` (the default) its hidden
width is $\frac{2}{3}$ of `d_ff`, rounded to a multiple of 8, as Shazeer compares them: the variants then have the
same number of parameters, within the biases (the `parameters` of the result). `activations.png` draws the four
activation functions.

Shazeer found the gated variants ahead, GEGLU and SwiGLU best, on T5 models trained for far longer than this. In
our runs at the baby size and budget they were not: ReLU ended first and the sigmoid-gated GLU clearly last, with
GEGLU, GELU and SwiGLU between, a few hundredths apart, about what another seed changes. A short training of a
small model on characters separates the sigmoid gate from the rest, and not much more; `--seed` and
`--max-steps` tell how far the order holds.
"""

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from labml_nn.experiments.char_lm import (baby_model, baby_trainer, check_context, tiny_model, tiny_trainer,
                                          train_char_lm)
from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.compare import check_variant, check_variants, train_variants
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import FFNActivation, TransformerConfigs
from labml_nn.transformers.experiments.configs import DecoderOnlyLM

GATED = ("glu", "geglu", "swiglu")


# ## Configuration
@dataclass
class FeedForwardExperiment:
    """One language model trained with each feed-forward network."""
    model: TransformerConfigs = field(default_factory=baby_model)
    trainer: TrainerConfig = field(default_factory=baby_trainer)
    context: int = 64
    """Characters per training sequence (at most the model's max_len)."""
    variants: tuple[FFNActivation, ...] = ("relu", "gelu", "glu", "geglu", "swiglu")
    """The feed-forward networks to compare."""
    equal_parameters: bool = True
    """Give the gated networks 2/3 of d_ff, so that every variant has about the same number of parameters."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        check_variants("variants", self.variants)


# ## Presets
def default() -> FeedForwardExperiment:
    """The baby size and recipe, for each feed-forward network."""
    return FeedForwardExperiment()


def tiny() -> FeedForwardExperiment:
    """Seconds: a one-layer model, four steps per variant (for tests)."""
    return FeedForwardExperiment(model=tiny_model(), trainer=tiny_trainer(), context=16)


# ## Equal parameter counts
#
# An ungated network has $2\, d_{model}\, d_{ff}$ weights and a gated one $3\, d_{model}\, d_{ff}'$; they are equal
# when $d_{ff}' = \frac{2}{3} d_{ff}$. A multiple of 8 keeps the matrix products on efficient sizes.
def gated_width(d_ff: int) -> int:
    """The hidden width that gives a gated network the weights of an ungated one of width `d_ff`."""
    return max(8, 8 * round(d_ff * 2 / 3 / 8))


# ## The activations, drawn
#
# ReLU cuts the negative half off; GELU, $z\,\Phi(z)$, and Swish, $z\,\text{sigmoid}(z)$, are smooth versions
# of it that let a little negative signal through; the sigmoid is GLU's gate.
def plot_activations(path) -> None:
    from matplotlib.figure import Figure

    z = torch.linspace(-4, 4, 401)
    figure = Figure(figsize=(6, 4), dpi=120)
    ax = figure.add_subplot()
    for name, f in (("ReLU", nn.ReLU()), ("GELU", nn.GELU()), ("Swish (SiLU)", nn.SiLU()),
                    ("sigmoid", nn.Sigmoid())):
        ax.plot(z.numpy(), f(z).numpy(), label=name)
    ax.set_xlabel("$z$")
    ax.set_title("the activations (of the gate, in the gated variants)")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
#
# A variant is the same configuration with another `ffn_activation`, and the gated networks narrowed to equal
# parameters.
def variant_d_ff(config: FeedForwardExperiment, activation: str) -> int:
    return gated_width(config.model.d_ff) if config.equal_parameters and activation in GATED else config.model.d_ff


def variant_model(config: FeedForwardExperiment, activation: str, n_vocab: int) -> DecoderOnlyLM:
    return DecoderOnlyLM(replace(config.model, ffn_activation=activation, d_ff=variant_d_ff(config, activation),
                                 n_src_vocab=n_vocab))


def train(config: FeedForwardExperiment, run: Run) -> dict:
    if run.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        plot_activations(run.path("activations.png"))

    # The width is in the result, so that the comparison says what it compared.
    def train_one(activation: str, sub: Run) -> dict:
        _, _, result = train_char_lm(lambda n_vocab: variant_model(config, activation, n_vocab),
                                     config.trainer, sub, config.context)
        result["d_ff"] = variant_d_ff(config, activation)
        return result

    return train_variants(run, config.variants, train_one, figures=["d_ff"])


# ## Reloading a run
#
# The model of a finished run (or of one of its variants), for [`load_run`](/experiments/char_lm.md#load_run):
# the configuration comes from the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[DecoderOnlyLM, int]:
    """The untrained model of a variant of a run of this experiment, and its context."""
    config = config_from_dict(FeedForwardExperiment, experiment)
    return variant_model(config, check_variant(variant, config.variants), n_vocab), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("feed_forward", FeedForwardExperiment, train, presets={"default": default, "tiny": tiny},
                   argv=argv, description="Train one language model with each feed-forward network.")


if __name__ == "__main__":
    main()

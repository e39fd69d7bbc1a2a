r"""
---
title: Any transformer from the command line
summary: Train the decoder-only language model that a TransformerConfigs describes, every field a command-line option, on Tiny Shakespeare.
---

# Any transformer from the command line

A [`TransformerConfigs`](/transformers/configs.md) describes a transformer: its sizes, how positions enter,
the feed-forward activation, where the norms go. This experiment builds the decoder-only language model it
describes from the configuration's own parts (`build_src_embed`, `build_encoder`) and trains it on
[Tiny Shakespeare](/experiments/data.md). Every field is a command-line option, so comparing two choices is
two commands:

```bash
python -m labml_nn.transformers.configs --device cpu
python -m labml_nn.transformers.configs --device cpu --positional rope --ffn-activation swiglu
python -m labml_nn.transformers.configs --device cpu --preset best
```

The `default` preset is the [baby GPT](/transformers/experiments/gpt.md)'s size and budget with the
configuration's default choices (the paper's sinusoidal positions and ReLU, pre-norm). The `best` preset is the
same size and budget with the choices that did best in our runs (see [its notes](#best)).

Compare `val_loss` in the runs' `result.json` (or their `loss.png`). Differences below a few hundredths are
within the noise of one seed; `--seed` repeats a run with another.
"""

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from labml_nn.experiments.char_lm import baby_model, baby_trainer, check_context, generate_text, train_char_lm
from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.gpt import check_init_std, init_gpt2_, small_init_std
from labml_nn.transformers.models import Generator, init_linear_xavier_


# ## A decoder-only language model from a configuration
#
# Token embeddings (with positions, as the configuration says), a stack of causal self-attention layers (with
# the final norm when pre-norm), and a linear layer to the vocabulary's logits. An encoder layer *is* a
# decoder-only model's layer: self-attention and a feed-forward network, without attention to another sequence;
# the causal mask is what makes it a language model.
class DecoderOnlyLM(nn.Module):
    """The language model `configs` describes; the vocabulary is `configs.n_src_vocab`."""

    def __init__(self, configs: TransformerConfigs, tie_embeddings: bool = True,
                 init: Literal["xavier", "gpt2"] = "gpt2", init_std: float = 0.02):
        super().__init__()
        self.embed = configs.build_src_embed()
        self.encoder = configs.build_encoder()
        self.generator = Generator(configs.n_src_vocab, configs.d_model)
        init_weights(self, init, init_std)
        # With tied embeddings the output layer's weight *is* the token embedding table (see the
        # [GPT](/transformers/gpt/index.md) for why this helps).
        if tie_embeddings:
            self.generator.projection.weight = self.embed.embeddings.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # `[batch, seq]` to `[batch, seq, d_model]`
        x = self.embed(tokens)
        # Each position attends to itself and earlier positions only
        x = self.encoder(x, is_causal=True)
        # `[batch, seq, n_vocab]`
        return self.generator(x)


# ## Initialisation
#
# * `xavier`: Glorot-uniform linear weights, as the encoder-decoder of the paper is built
#   ([`init_linear_xavier_`](/transformers/models.md#init_linear_xavier_)); embeddings keep their own.
# * `gpt2`: [GPT-2's](/transformers/gpt/index.md#init_gpt2_), $\mathcal{N}(0, \sigma^2)$ for linear and embedding
#   weights with $\sigma$ = `init_std`, and $\sigma / \sqrt{2L}$ for the layers' residual projections (the
#   attention's output and the feed-forward network's second layer), so that the residual stream's variance
#   does not grow with depth.
#
# Either way biases start at zero, and layer normalisations keep unit gain and zero bias.
def init_weights(model: "DecoderOnlyLM", init: str, init_std: float = 0.02) -> None:
    if init == "xavier":
        init_linear_xavier_(model)
    elif init == "gpt2":
        init_gpt2_(model, model.encoder.layers, init_std)
    else:
        raise ValueError(f"init must be 'xavier' or 'gpt2', got {init!r}")


# ## Configuration
@dataclass
class ConfigsExperiment:
    """The transformer described by the options, trained as a language model on Tiny Shakespeare."""
    model: TransformerConfigs = field(default_factory=baby_model)
    trainer: TrainerConfig = field(default_factory=baby_trainer)
    context: int = 64
    """Characters per training sequence (at most the model's max_len)."""
    tie_embeddings: bool = True
    """Share the token embedding table with the output layer."""
    init: Literal["xavier", "gpt2"] = "gpt2"
    """Weight initialisation."""
    init_std: float = 0.02
    """Standard deviation of the gpt2 initialisation (GPT-2's 0.02; the best preset takes sqrt(2 / (5 d_model)))."""
    sample_tokens: int = 300
    """Characters to sample after training (0 for none)."""
    temperature: float = 0.8
    """Sampling temperature (0 picks the most likely character)."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        if self.sample_tokens < 0:
            raise ValueError(f"sample_tokens must be >= 0, got {self.sample_tokens}")
        check_init_std(self.init_std)


# ## Presets
def default() -> ConfigsExperiment:
    """The baby GPT's size and budget with the configuration's default choices."""
    return ConfigsExperiment()


# <a id="best"></a>
#
# The best choices we found at the baby size and budget:
#
# * **rotary positions** (`rope`): attention scores depend on the distance between tokens, not on where the
#   block happens to start, so what the model learns at one offset holds at every other; learned or fixed
#   absolute positions must learn that invariance from data;
# * a **SwiGLU** feed-forward network, with `d_ff` shrunk to about $\frac{2}{3}$ (344 from 512) so that the model
#   keeps the baby's parameter count (a gated network has three matrices instead of two);
# * token embeddings **not multiplied by $\sqrt{d_{model}}$**: with the GPT-2 initialisation and tied embeddings
#   the factor lets the input's gradient drown the output's ([the embeddings](/transformers/models.md#Embeddings));
# * a **higher peak learning rate**: at this small size and short budget the run is limited by how far the
#   weights can move, not by stability;
# * initial weights **scaled to the width**, the "small init" $\sigma = \sqrt{2 / (5\, d_{model})}$ rather than
#   GPT-2's 0.02, which is right for GPT-2's width, 768, and too small at 128
#   ([the GPT's initialisation](/transformers/gpt/index.md#initialisation)).
def best() -> ConfigsExperiment:
    """The baby size, parameter count and budget with the best choices found."""
    config = ConfigsExperiment()
    return replace(config,
                   model=replace(config.model, positional="rope", ffn_activation="swiglu", d_ff=344,
                                 scale_embeddings=False),
                   trainer=replace(config.trainer, lr=2e-3), init_std=small_init_std(config.model.d_model))


# ## The experiment
def build_model(config: ConfigsExperiment, n_vocab: int) -> DecoderOnlyLM:
    """The experiment's model for a vocabulary of `n_vocab` characters."""
    if config.model.n_src_vocab is not None and config.model.n_src_vocab != n_vocab:
        raise ValueError(f"n_src_vocab must be the text's vocabulary size {n_vocab} (or unset), "
                         f"got {config.model.n_src_vocab}")
    return DecoderOnlyLM(replace(config.model, n_src_vocab=n_vocab), config.tie_embeddings, config.init,
                         config.init_std)


def train(config: ConfigsExperiment, run: Run) -> dict:
    model, tokenizer, result = train_char_lm(lambda n_vocab: build_model(config, n_vocab), config.trainer, run,
                                             config.context)
    if config.sample_tokens and run.is_main:
        sample = generate_text(model, tokenizer, "\n", config.sample_tokens, config.context, config.temperature,
                               seed=run.seed)
        run.write_text("sample.txt", sample)
        print(f"--- sample ---\n{sample}\n--------------")
        result["sample"] = sample
    return result


# ## Reloading a run
#
# The model of a finished run (or of one of its variants), for [`load_run`](/experiments/char_lm.md#load_run):
# the configuration comes from the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[DecoderOnlyLM, int]:
    """The untrained model of a run of this experiment, and its context."""
    config = config_from_dict(ConfigsExperiment, experiment)
    return build_model(config, n_vocab), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("configs", ConfigsExperiment, train, presets={"default": default, "best": best}, argv=argv,
                   description="Train the transformer the options describe as a language model on Tiny Shakespeare.")


if __name__ == "__main__":
    main()

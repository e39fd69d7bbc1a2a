r"""
---
title: Fixed, learned or no positional encodings
summary: The sinusoidal encodings drawn, then the same small language model trained on Tiny Shakespeare with fixed sinusoids, learned position vectors and no positions at all, validation losses side by side.
---

# Fixed, learned or no positional encodings

```bash
python -m labml_nn.transformers.positional_encoding --device cpu
python -m labml_nn.transformers.positional_encoding --variants fixed none --max-steps 500
```

The experiment first draws the [sinusoidal encodings](/transformers/positional_encoding.md) (`encoding.png`): the
table $\mathrm{PE}$ itself, and the dot products $\mathrm{PE}_p \cdot \mathrm{PE}_q$ of every pair of positions,
which depend only on $p - q$ (every diagonal of the matrix is constant), the property that makes relative
positions easy to attend to.

Then it trains one [decoder-only language model](/transformers/experiments/configs.md#DecoderOnlyLM) at
[the baby size](/experiments/char_lm.md#baby_model) three times, changing only how it learns where each character
is:

* `fixed`: the paper's sinusoids added to the token embeddings;
* `learned`: one learned vector per position added instead (GPT-2, BERT);
* `none`: nothing. The model is causal, so it is not completely blind to order: a query at position $t$ averages
  over $t + 1$ keys, and how diluted that average is tells it roughly how far into the block it is
  ([Haviv et al., 2022](https://arxiv.org/abs/2203.16634)).

The run directory holds one subdirectory per variant ([comparing variants](/experiments/compare.md)), and
`result.json` has the validation losses side by side. In our runs the sinusoids ended ahead, the learned vectors
next and `none` last, each by a few hundredths of a nat or more: in so short a training the learned vectors must
still be learned from the data, while the sinusoids come for free, and without positions the model spends capacity
on inferring them.
"""

from dataclasses import dataclass, field, replace

from labml_nn.experiments.char_lm import (baby_model, baby_trainer, check_context, tiny_model, tiny_trainer,
                                          train_char_lm)
from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.compare import check_variant, check_variants, train_variants
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import Positional, TransformerConfigs
from labml_nn.transformers.experiments.configs import DecoderOnlyLM
from labml_nn.transformers.positional_encoding import get_positional_encoding


# ## Configuration
@dataclass
class PositionalEncodingExperiment:
    """One language model trained with each way of giving it positions."""
    model: TransformerConfigs = field(default_factory=baby_model)
    trainer: TrainerConfig = field(default_factory=baby_trainer)
    context: int = 64
    """Characters per training sequence (at most the model's max_len)."""
    variants: tuple[Positional, ...] = ("fixed", "learned", "none")
    """The positional encodings to compare."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        check_variants("variants", self.variants)


# ## Presets
def default() -> PositionalEncodingExperiment:
    """The baby size and recipe, for each positional encoding."""
    return PositionalEncodingExperiment()


def tiny() -> PositionalEncodingExperiment:
    """Seconds: a one-layer model, four steps per variant (for tests)."""
    return PositionalEncodingExperiment(model=tiny_model(), trainer=tiny_trainer(), context=16)


# ## The encodings, drawn
#
# Left, $\mathrm{PE}$ `[positions, d_model]`; right, $\mathrm{PE}\, \mathrm{PE}^\top$ `[positions, positions]`,
# whose entry $(p, q)$ is $\sum_i \cos \omega_i (p - q)$.
def plot_encoding(d_model: int, positions: int, path) -> None:
    from matplotlib.figure import Figure

    # `[positions, d_model]`
    pe = get_positional_encoding(d_model, positions)
    # `[positions, positions]`
    similarity = pe @ pe.T
    figure = Figure(figsize=(10, 4), dpi=120)
    table, dots = figure.subplots(1, 2)
    image = table.imshow(pe.T.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    table.set_title(f"get_positional_encoding({d_model}, {positions})")
    table.set_xlabel("position $p$")
    table.set_ylabel("feature")
    figure.colorbar(image, ax=table)
    image = dots.imshow(similarity.numpy(), cmap="viridis")
    dots.set_title(r"$PE_p \cdot PE_q$: constant along each diagonal")
    dots.set_xlabel("position $q$")
    dots.set_ylabel("position $p$")
    figure.colorbar(image, ax=dots)
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
#
# A variant is the same configuration with another `positional`.
def variant_model(config: PositionalEncodingExperiment, positional: str, n_vocab: int) -> DecoderOnlyLM:
    return DecoderOnlyLM(replace(config.model, positional=positional, n_src_vocab=n_vocab))


# The encodings are drawn at the model's width and over the training context, the positions the model sees.
def train(config: PositionalEncodingExperiment, run: Run) -> dict:
    if run.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        plot_encoding(config.model.d_model, config.context, run.path("encoding.png"))

    # Each variant is the same configuration with another `positional`, trained on the same batches from the same
    # seed: the only difference between the runs is how positions enter.
    def train_one(positional: str, sub: Run) -> dict:
        _, _, result = train_char_lm(lambda n_vocab: variant_model(config, positional, n_vocab),
                                     config.trainer, sub, config.context)
        return result

    return train_variants(run, config.variants, train_one)


# ## Reloading a run
#
# The model of a finished run (or of one of its variants), for [`load_run`](/experiments/char_lm.md#load_run):
# the configuration comes from the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[DecoderOnlyLM, int]:
    """The untrained model of a variant of a run of this experiment, and its context."""
    config = config_from_dict(PositionalEncodingExperiment, experiment)
    return variant_model(config, check_variant(variant, config.variants), n_vocab), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("positional_encoding", PositionalEncodingExperiment, train,
                   presets={"default": default, "tiny": tiny}, argv=argv,
                   description="Train one language model with fixed, learned and no positional encodings.")


if __name__ == "__main__":
    main()

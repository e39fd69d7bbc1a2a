r"""
---
title: An encoder-decoder learns to reverse digits
summary: The transformer of "Attention Is All You Need" trained on a synthetic sequence-to-sequence task, reversing strings of digits generated on the fly, and scored by exact-match accuracy with greedy decoding and beam search.
---

# An encoder-decoder learns to reverse digits

```bash
python -m labml_nn.transformers.models --device cpu
python -m labml_nn.transformers.models --max-digits 16 --max-steps 3000
```

The [encoder-decoder](/transformers/models.md#EncoderDecoder) reads a string of digits and writes it backwards:

```text
source  3 1 4 1 5 9 2 6
target  6 2 9 5 1 4 1 3 <end>
```

The task needs every part of the model. The decoder must know where it is in its output (its positions) and find
the source digit at the mirrored position (attention over the encoder's output, with the encoder's positions); it
must stop after as many digits as the source has, and padding of the shorter strings in a batch must not
disturb the longer ones (the masks). Strings are drawn afresh for every batch, so there is nothing to memorise:
a model that does well has learned the rule.

Training minimises the cross-entropy of each next target token given the source and the target so far
(*teacher forcing*, all positions at once under the causal mask). At the end the model writes the targets itself,
one token at a time, for `eval_samples` new strings, by [greedy decoding](/transformers/models.md#EncoderDecoder.greedy_decode)
and by [beam search](/transformers/models.md#EncoderDecoder.beam_search). The result has the exact-match
accuracy of both (every digit and the end in the right place), overall and by length, and
`accuracy_by_length.png` draws it.

## Two learning-rate schedules

`--preset noam` trains the same model with the schedule of the paper ([Noam](/experiments/trainer.md#Noam):
linear warm-up, then decay with $1/\sqrt{t}$), its factor chosen so that its peak equals the default cosine
schedule's peak of $10^{-3}$ at step 100. Measured on this project's 2-core CPU (one thread each, seed 0):

| validation loss at step | 250 | 500 | 1000 | 1250 | 1500 | exact match, greedy / beam |
|---|---|---|---|---|---|---|
| warm-up + cosine (default) | 0.105 | 0.035 | 0.0050 | 0.0002 | 0.00005 | 100% / 100% |
| warm-up + $1/\sqrt{t}$ (noam) | 0.054 | 0.028 | 0.0102 | 0.0094 | 0.0018 | 99.3% / 99.4% |

The inverse square root falls fastest right after the warm-up (at step 250 its rate is $6.3 \cdot 10^{-4}$
against the cosine's $9.8 \cdot 10^{-4}$), which helps early; but it never anneals: at step 1,500 it is still
$2.6 \cdot 10^{-4}$, where the cosine has come down to $10^{-4}$, and the last few errors are not ironed out. The
paper trained for 100,000 steps, where $1/\sqrt{t}$ does come down; for a budget fixed in advance, a schedule
that reaches its minimum at the end fits better.
"""

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.cli import run_experiment
from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig
from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.models import EncoderDecoder
from labml_nn.transformers.utils import padding_mask, subsequent_mask

# ## The vocabulary
#
# Padding, the start and end symbols, then the ten digits.
PAD, START, END = 0, 1, 2
FIRST_DIGIT = 3
N_VOCAB = FIRST_DIGIT + 10


# ## The task
#
# A batch source ([the trainer's protocol](/experiments/trainer.md#BatchSource)): random strings of `min_digits`
# to `max_digits` digits and their reversals, padded to the longest possible length.
class ReversalTask:
    """Digit strings `src` `[batch, max_digits]`, the decoder's input `[batch, max_digits + 1]` (start symbol and
    the reversal) and its target `[batch, max_digits + 1]` (the reversal and the end symbol), padded with `PAD`."""

    def __init__(self, min_digits: int, max_digits: int):
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits} and {max_digits}")
        self.min_digits = min_digits
        self.max_digits = max_digits

    def sample(self, generator: torch.Generator, batch_size: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Lengths `[batch]` and digits `[batch, max_digits]`
        lengths = torch.randint(self.min_digits, self.max_digits + 1, (batch_size,), generator=generator)
        digits = torch.randint(FIRST_DIGIT, N_VOCAB, (batch_size, self.max_digits), generator=generator)
        positions = torch.arange(self.max_digits)
        # `True` at the real digits, `[batch, max_digits]`
        real = positions < lengths[:, None]
        src = torch.where(real, digits, PAD)
        # The reversal: position $i$ holds digit $L - 1 - i$ of a string of length $L$, `[batch, max_digits]`
        mirrored = (lengths[:, None] - 1 - positions).clamp(min=0)
        reversed_digits = torch.where(real, digits.gather(1, mirrored), PAD)
        # The target: the reversal, then the end symbol, `[batch, max_digits + 1]`
        target = torch.cat([reversed_digits, torch.full((batch_size, 1), PAD)], dim=1)
        target[torch.arange(batch_size), lengths] = END
        # The decoder's input is the target shifted right behind the start symbol
        decoder_input = torch.cat([torch.full((batch_size, 1), START), target[:, :-1]], dim=1)
        return src, decoder_input, target


# ## Masks
#
# The source mask hides the source's padding from every query, `[batch, 1, 1, src_seq]`; the target mask also
# hides later positions, `[batch, 1, tgt_seq, tgt_seq]` (see [masks](/transformers/utils.md)).
def masks(src: torch.Tensor, decoder_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    src_mask = padding_mask(src, PAD)
    tgt_mask = padding_mask(decoder_input, PAD) & subsequent_mask(decoder_input.shape[1], decoder_input.device)
    return src_mask, tgt_mask


# ## The loss
#
# Cross-entropy of every target token under teacher forcing; padding positions are ignored.
def reversal_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    src, decoder_input, target = batch
    src_mask, tgt_mask = masks(src, decoder_input)
    # `[batch, tgt_seq, n_vocab]`
    logits = model(src, decoder_input, src_mask, tgt_mask)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD)


# ## Configuration
@dataclass
class ModelsExperiment:
    """An encoder-decoder trained to reverse digit strings, scored by exact match with greedy and beam decoding."""
    model: TransformerConfigs = field(default_factory=lambda: TransformerConfigs(
        n_layers=2, d_model=128, n_heads=4, d_ff=512, dropout=0.0, max_len=32))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=1500, batch_size=64, lr=1e-3, min_lr=1e-4, warmup=100, eval_every=250, eval_iters=10,
        checkpoint_every=500))
    min_digits: int = 1
    """Shortest source string."""
    max_digits: int = 12
    """Longest source string."""
    eval_samples: int = 1000
    """New strings decoded at the end to measure exact-match accuracy."""
    beam_size: int = 4
    """Hypotheses kept by beam search."""

    def __post_init__(self):
        ReversalTask(self.min_digits, self.max_digits)
        if self.max_digits + 1 > self.model.max_len:
            raise ValueError(f"max_digits + 1 ({self.max_digits + 1}) must fit in the model's max_len "
                             f"({self.model.max_len})")
        for name in ("eval_samples", "beam_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.model.n_src_vocab not in (None, N_VOCAB) or self.model.n_tgt_vocab not in (None, N_VOCAB):
            raise ValueError(f"the vocabularies are the task's {N_VOCAB} symbols; leave n_src_vocab and "
                             f"n_tgt_vocab unset")


# ## Presets
def default() -> ModelsExperiment:
    """Two layers of width 128 on each side, strings of 1 to 12 digits, 1,500 steps of 64."""
    return ModelsExperiment()


# The same run with [the paper's schedule](/experiments/trainer.md#Noam), whose factor is chosen so that its peak,
# $\text{factor} / \sqrt{d_{model} T_{warm}}$, equals the cosine schedule's peak learning rate: the two runs then
# differ only in the shape of the schedule, not in its largest step.
def noam() -> ModelsExperiment:
    """The default run with the Transformer paper's warm-up and inverse-square-root decay, at the same peak."""
    config = default()
    peak, warmup = config.trainer.lr, config.trainer.warmup
    return replace(config, trainer=replace(config.trainer, schedule="noam",
                                           lr=peak * math.sqrt(config.model.d_model * warmup)))


def tiny() -> ModelsExperiment:
    """Seconds: one layer of width 32, a few steps, a few strings (for tests)."""
    return ModelsExperiment(model=TransformerConfigs(n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0,
                                                     max_len=8),
                            trainer=TrainerConfig(max_steps=4, batch_size=8, warmup=1, eval_every=0, eval_iters=2,
                                                  log_every=2, checkpoint_every=0),
                            max_digits=4, eval_samples=16, beam_size=2)


# ## Exact match
#
# Decode `samples` new strings (the same ones for every run with the same seed) greedily and with beam search.
# An output is right when it has every digit of the reversal in place, then the end symbol; what the decoder
# writes after its end symbol does not count.
@torch.no_grad()
def exact_match(model: EncoderDecoder, task: ReversalTask, samples: int, beam_size: int, seed: int,
                device: torch.device) -> dict:
    model.eval()
    src, _, target = (t.to(device) for t in task.sample(torch.Generator().manual_seed(seed), samples))
    src_mask = padding_mask(src, PAD)
    # Positions up to and including the end symbol, `[samples, max_digits + 1]`
    counted = target != PAD
    lengths = (src != PAD).sum(dim=1)
    result = {}
    for name, decode in (("greedy", lambda: model.greedy_decode(src, src_mask, target.shape[1] + 1, START, END)),
                         ("beam", lambda: model.beam_search(src, src_mask, target.shape[1] + 1, START, END,
                                                            beam_size=beam_size))):
        # Drop the start symbol: `[samples, max_digits + 1]`
        output = decode()[:, 1:]
        correct = ((output == target) | ~counted).all(dim=1)
        result[f"{name}_accuracy"] = correct.float().mean().item()
        result[f"{name}_accuracy_by_length"] = {int(n): correct[lengths == n].float().mean().item()
                                                for n in lengths.unique()}
    return result


# Accuracy against the length of the source, one line per decoding method.
def plot_accuracy_by_length(result: dict, path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    ax = figure.add_subplot()
    for name in ("greedy", "beam"):
        by_length = result[f"{name}_accuracy_by_length"]
        ax.plot(list(by_length), list(by_length.values()), "o-", label=f"{name} ({result[f'{name}_accuracy']:.1%})")
    ax.set_xlabel("digits in the source")
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
#
# The model is the configuration's encoder-decoder for the task's vocabulary on both sides
# ([`build_encoder_decoder`](/transformers/configs.md#TransformerConfigs.build_encoder_decoder)).
#
# The same task object is the training and the validation source: the trainer draws its batches with its own
# generator and the validation batches with another, fixed one, and the strings of the final measurement come from
# a third seed. There are $10^L$ strings of $L$ digits, so the three hardly overlap, except in the shortest
# strings, of which there are few.
#
# With `--schedule noam` the schedule's $d_{model}$ is the model's.
def train(config: ModelsExperiment, run: Run) -> dict:
    model = replace(config.model, n_src_vocab=N_VOCAB, n_tgt_vocab=N_VOCAB).build_encoder_decoder()
    task = ReversalTask(config.min_digits, config.max_digits)
    trainer_config = replace(config.trainer, noam_d_model=config.model.d_model)
    trainer = Trainer(model, trainer_config, run, loss_fn=reversal_loss)
    result = trainer.fit(task, task)
    result.update(exact_match(trainer.model, task, config.eval_samples, config.beam_size, seed=run.seed + 3,
                              device=run.device))
    if run.is_main:
        plot_accuracy_by_length(result, run.path("accuracy_by_length.png"))
    return result


def main(argv: list[str] | None = None) -> None:
    run_experiment("models", ModelsExperiment, train, presets={"default": default, "noam": noam, "tiny": tiny},
                   argv=argv, description="Train an encoder-decoder to reverse digit strings; decode greedily and with beams.")


if __name__ == "__main__":
    main()

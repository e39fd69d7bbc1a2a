r"""
---
title: Label smoothing, accuracy and calibration
summary: The same small language model trained on Tiny Shakespeare with and without label smoothing, compared by accuracy, cross-entropy and expected calibration error, with a reliability diagram.
---

# Label smoothing, accuracy and calibration

```bash
python -m labml_nn.transformers.label_smoothing_loss --device cpu
python -m labml_nn.transformers.label_smoothing_loss --smoothings 0.0 0.1 0.3
```

One [decoder-only language model](/transformers/experiments/configs.md#DecoderOnlyLM) at
[the baby size](/experiments/char_lm.md#baby_model), trained on Tiny Shakespeare with the
[label-smoothing loss](/transformers/label_smoothing_loss.md) for each $\epsilon$ in `smoothings`
([comparing variants](/experiments/compare.md)). The trainer's losses are each variant's own training objective,
so they do not compare across $\epsilon$; at the end every model is measured the same way, on the same
validation blocks:

* `val_accuracy`: how often the most probable next character is the right one;
* `val_nll`: the plain cross-entropy of the right character, in nats;
* `val_ece`, the **expected calibration error**. Predictions are put in `bins` bins by their confidence (the
  largest probability) and in each bin the mean confidence is compared with the accuracy:

$$\text{ECE} = \sum_b \frac{n_b}{N}\, \big|\,\text{accuracy}_b - \text{confidence}_b\,\big|$$

A calibrated model that says 70% is right 70% of the time, and its ECE is 0.

`reliability.png` draws accuracy against confidence bin by bin (on the diagonal is calibrated, below it
overconfident, above it underconfident), and how many predictions fall in each bin.

Smoothing caps what a model can be rewarded for: against the target $q$, the best prediction puts
$1 - \epsilon + \epsilon / C$ on the right class, so a smoothed model learns to be less sure. Whether that
improves calibration depends on whether the unsmoothed model was overconfident in the first place. Large models
trained long on one-hot targets are ([Müller et al., 2019](https://arxiv.org/abs/1906.02629)); a small model after
a short training, like this one, is close to calibrated already, and then smoothing makes it underconfident. That
is what our runs showed: the smoothed model's curve lies above the diagonal and stops short of the highest
confidences, its calibration error and cross-entropy are worse, and its accuracy is a little better, as
"Attention Is All You Need" found for perplexity and BLEU.
"""

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from labml_nn.experiments.char_lm import (baby_model, baby_trainer, check_context, tiny_model, tiny_trainer,
                                          train_char_lm)
from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.compare import check_variant, check_variants, train_variants
from labml_nn.experiments.data import BlockSource, load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.experiments.configs import DecoderOnlyLM
from labml_nn.transformers.label_smoothing_loss import LabelSmoothingLoss

FIGURES = ("val_accuracy", "val_nll", "val_ece", "val_confidence")


# ## Configuration
@dataclass
class LabelSmoothingExperiment:
    """One language model trained with each amount of label smoothing, compared by accuracy and calibration."""
    model: TransformerConfigs = field(default_factory=baby_model)
    trainer: TrainerConfig = field(default_factory=baby_trainer)
    context: int = 64
    """Characters per training sequence (at most the model's max_len)."""
    smoothings: tuple[float, ...] = (0.0, 0.1)
    """The label smoothings epsilon to compare."""
    bins: int = 15
    """Confidence bins of the calibration error and the reliability diagram."""
    eval_batches: int = 50
    """Validation batches (of the trainer's batch size) of the final measurements."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        check_variants("smoothings", self.smoothings)
        for smoothing in self.smoothings:
            if not 0.0 <= smoothing < 1.0:
                raise ValueError(f"every smoothing must be in [0, 1), got {smoothing}")
        for name in ("bins", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


# ## Presets
def default() -> LabelSmoothingExperiment:
    """The baby size and recipe, without smoothing and with 0.1."""
    return LabelSmoothingExperiment()


def tiny() -> LabelSmoothingExperiment:
    """Seconds: a one-layer model, four steps per variant (for tests)."""
    return LabelSmoothingExperiment(model=tiny_model(), trainer=tiny_trainer(), context=16, eval_batches=2)


# ## The training objective
#
# The [loss](/transformers/label_smoothing_loss.md#LabelSmoothingLoss) of every next character, the positions
# flattened into the batch.
def smoothed_language_model_loss(criterion: LabelSmoothingLoss):
    def loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        inputs, targets = batch
        # `[batch, seq, vocab]` to `[batch * seq, vocab]`, against `[batch * seq]`
        return criterion(model(inputs).flatten(0, 1), targets.flatten())
    return loss


# ## Calibration
#
# Every prediction of `batches` validation blocks: its confidence $\max_c p_c$, whether its most probable class is
# the target, and the log-probability of the target. The bins are equal-width intervals of confidence.
@torch.no_grad()
def calibration(model: nn.Module, tokens: torch.Tensor, context: int, batches: int, batch_size: int, bins: int,
                seed: int) -> dict:
    device = next(model.parameters()).device
    source = BlockSource(tokens, context)
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    confidences, correct, log_likelihoods = [], [], []
    for _ in range(batches):
        inputs, targets = (t.to(device) for t in source.sample(generator, batch_size))
        # `[batch * context, vocab]`
        log_probs = model(inputs).float().log_softmax(dim=-1).flatten(0, 1)
        targets = targets.flatten()
        confidence, prediction = log_probs.exp().max(dim=-1)
        confidences.append(confidence)
        correct.append((prediction == targets).float())
        log_likelihoods.append(log_probs.gather(1, targets[:, None])[:, 0])
    model.train()
    # `[N]` each
    confidence, correct, log_likelihood = torch.cat(confidences), torch.cat(correct), torch.cat(log_likelihoods)
    # Counting per bin is one `bincount` each, with the values to sum as weights: no loop over the bins.
    # Bin of each prediction, `[N]`: confidence 1.0 goes in the last bin
    bin_index = (confidence * bins).long().clamp(max=bins - 1)
    count = torch.bincount(bin_index, minlength=bins).float()
    # Mean confidence and accuracy in each bin, `[bins]` (zero in empty bins, which have no weight)
    bin_confidence = torch.bincount(bin_index, confidence, minlength=bins) / count.clamp(min=1)
    bin_accuracy = torch.bincount(bin_index, correct, minlength=bins) / count.clamp(min=1)
    # $$\text{ECE} = \sum_b \frac{n_b}{N} |\text{accuracy}_b - \text{confidence}_b|$$
    ece = (count / count.sum() * (bin_accuracy - bin_confidence).abs()).sum()
    return {
        "val_accuracy": correct.mean().item(),
        "val_nll": -log_likelihood.mean().item(),
        "val_ece": ece.item(),
        "val_confidence": confidence.mean().item(),
        "reliability": {"count": count.tolist(), "confidence": bin_confidence.tolist(),
                        "accuracy": bin_accuracy.tolist()},
    }


# ## The reliability diagram
#
# Left, each bin's accuracy against its mean confidence (empty bins are left out); right, the share of
# predictions in each bin, which says how much each point of the left panel weighs in the ECE.
def plot_reliability(results: dict[str, dict], bins: int, path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=120)
    diagram, histogram = figure.subplots(1, 2)
    diagram.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
    edges = torch.linspace(0, 1, bins + 1)
    for i, (name, result) in enumerate(results.items()):
        reliability = result["reliability"]
        used = [b for b in range(bins) if reliability["count"][b] > 0]
        diagram.plot([reliability["confidence"][b] for b in used], [reliability["accuracy"][b] for b in used],
                     "o-", color=f"C{i}", markersize=3, label=f"{name} (ECE {result['val_ece']:.3f})")
        histogram.stairs(torch.tensor(reliability["count"]) / sum(reliability["count"]), edges.numpy(),
                         color=f"C{i}", label=name)
    diagram.set_xlabel("confidence (largest probability)")
    diagram.set_ylabel("accuracy")
    diagram.set_title("reliability: below the diagonal is overconfident")
    diagram.legend()
    diagram.grid(alpha=0.3)
    histogram.set_xlabel("confidence")
    histogram.set_ylabel("share of predictions")
    histogram.legend()
    histogram.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
def train(config: LabelSmoothingExperiment, run: Run) -> dict:
    data = load_tiny_shakespeare(run.data_dir)
    results = {}

    # Variant names, which are also the runs' directories: `smoothing_0`, `smoothing_0.1`, ...
    smoothings = {f"smoothing_{smoothing:g}": smoothing for smoothing in config.smoothings}

    # The same model and batches with another loss; then the measurements that compare across smoothings.
    def train_one(name: str, sub: Run) -> dict:
        criterion = LabelSmoothingLoss(data.tokenizer.n_vocab, smoothing=smoothings[name])
        model, _, result = train_char_lm(lambda n_vocab: DecoderOnlyLM(replace(config.model, n_src_vocab=n_vocab)),
                                         config.trainer, sub, config.context,
                                         loss_fn=smoothed_language_model_loss(criterion))
        result.update(calibration(model, data.val, config.context, config.eval_batches, config.trainer.batch_size,
                                  config.bins, seed=run.seed))
        results[name] = result
        return result

    # Each variant's validation loss is its own objective, so none is declared the best.
    summary = train_variants(run, smoothings, train_one, figures=FIGURES, rank_by=None)
    if run.is_main:
        plot_reliability(results, config.bins, run.path("reliability.png"))
    return summary


# ## Reloading a run
#
# The model of a finished run (or of one of its variants), for [`load_run`](/experiments/char_lm.md#load_run):
# the configuration comes from the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[DecoderOnlyLM, int]:
    """The untrained model of a variant (`smoothing_0`, ...) of a run of this experiment, and its context."""
    config = config_from_dict(LabelSmoothingExperiment, experiment)
    check_variant(variant, [f"smoothing_{smoothing:g}" for smoothing in config.smoothings])
    return DecoderOnlyLM(replace(config.model, n_src_vocab=n_vocab)), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("label_smoothing_loss", LabelSmoothingExperiment, train, presets={"default": default, "tiny": tiny},
                   argv=argv, description="Train one language model with and without label smoothing; compare "
                                          "accuracy and calibration.")


if __name__ == "__main__":
    main()

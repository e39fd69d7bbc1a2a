r"""
---
title: Label smoothing
summary: Cross-entropy against a softened target distribution, derived from the equations, equal to PyTorch's label_smoothing, and how the Annotated Transformer's variant differs.
---

# Label smoothing

A classifier trained with cross-entropy against one-hot targets is rewarded for pushing the probability of the
right class towards one, which it can only do by making its logits ever larger. **Label smoothing**
([Szegedy et al., 2016](https://arxiv.org/abs/1512.00567)) trains against a softer target instead: most of the
mass on the right class, a little spread over all classes. "Attention Is All You Need" uses it with
$\epsilon = 0.1$ and notes that it hurts perplexity, since the model learns to be less sure, but improves
accuracy and BLEU.

With $C$ classes, target class $y$ and smoothing $\epsilon$, the smoothed target distribution is

$$q_c = (1 - \epsilon)\,[c = y] + \frac{\epsilon}{C}$$

(a mixture of the one-hot target and the uniform distribution; the right class gets
$1 - \epsilon + \epsilon / C$), and the loss is the cross-entropy between $q$ and the model's prediction
$p = \text{softmax}(z)$:

$$\mathcal{L} = -\sum_c q_c \log p_c
= (1 - \epsilon)\big(-\log p_y\big) + \epsilon \Big(-\frac{1}{C}\sum_c \log p_c\Big)$$

The second form is how it is computed: the usual negative log-likelihood, mixed with the mean negative
log-probability over all classes. It never builds the `[N, C]` target matrix. Samples whose target is
`ignore_index` (padding) contribute nothing, and the loss is the mean over the others. This is exactly
what `F.cross_entropy(logits, targets, label_smoothing=smoothing, ignore_index=ignore_index)` computes, and the
tests check that it agrees, gradients included.

![Target distributions with and without smoothing, and the Annotated Transformer's variant](/figures/label_smoothing.png)

## The Annotated Transformer's variant

[The Annotated Transformer](https://nlp.seas.harvard.edu/annotated-transformer/) smooths differently:

* the right class gets $1 - \epsilon$ exactly, and the other $\epsilon$ is spread over the $C - 2$ classes that
  are neither the target nor the padding class, $\epsilon / (C - 2)$ each;
* the padding class gets no mass;
* the loss is the KL divergence $\sum_c q_c \log (q_c / p_c)$, summed rather than averaged.

The KL divergence differs from the cross-entropy only by the entropy of $q$, a constant, so the gradients are
the same for the same $q$; but $q$ is not the same, so neither the values nor the gradients match
`F.cross_entropy(label_smoothing=...)`. The function
[`annotated_transformer_target_distribution`](/transformers/label_smoothing_loss.md#annotated_transformer_target_distribution)
builds that $q$ for comparison.

The experiment (`python -m labml_nn.transformers.label_smoothing_loss`, see
[its page](/transformers/experiments/label_smoothing_loss.md)) trains the same model with and without smoothing
and compares accuracy and calibration.
"""

import torch
import torch.nn.functional as F
from torch import nn


# ## The smoothed targets
#
# $$q_c = (1 - \epsilon)\,[c = y] + \frac{\epsilon}{C}$$
#
# The target distribution written out, `[N, C]`, for looking at (the figure above) and for the tests; the loss
# below does not need it.
def smoothed_target_distribution(targets: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    """$q$ `[N, n_classes]` for targets `[N]` (all must be valid class ids)."""
    # `[N]` to `[N, C]`
    one_hot = F.one_hot(targets, n_classes).float()
    return (1 - smoothing) * one_hot + smoothing / n_classes


# ## The Annotated Transformer's targets
#
# $1 - \epsilon$ on the target, $\epsilon / (C - 2)$ on every class that is neither the target nor padding,
# zero on padding, and an all-zero row for a padding target (it is ignored).
def annotated_transformer_target_distribution(targets: torch.Tensor, n_classes: int, smoothing: float,
                                              padding_idx: int) -> torch.Tensor:
    """The Annotated Transformer's target distribution `[N, n_classes]` for targets `[N]`."""
    if n_classes < 3:
        raise ValueError(f"n_classes must be at least 3 (target, padding and one more), got {n_classes}")
    # `[N, C]`
    q = torch.full((targets.shape[0], n_classes), smoothing / (n_classes - 2), device=targets.device)
    q.scatter_(1, targets[:, None], 1 - smoothing)
    q[:, padding_idx] = 0.0
    q[targets == padding_idx] = 0.0
    return q


# ## The loss
class LabelSmoothingLoss(nn.Module):
    r"""
    Cross-entropy against targets smoothed with $\epsilon$ = `smoothing`, averaged over the samples whose
    target is not `ignore_index`.

    Arguments:
        n_classes: number of classes $C$.
        smoothing: $\epsilon \in [0, 1)$; zero is the plain cross-entropy.
        ignore_index: target value of samples to leave out (padding).
    """

    def __init__(self, n_classes: int, smoothing: float = 0.0, ignore_index: int = -100):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {n_classes}")
        # $\epsilon = 1$ would be a uniform target, from which nothing can be learned.
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.n_classes = n_classes
        self.smoothing = smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """`logits` `[N, C]` and `targets` `[N]` to the mean loss (a scalar)."""
        if logits.dim() != 2 or logits.shape[1] != self.n_classes or targets.shape != logits.shape[:1]:
            raise ValueError(f"logits must be [N, n_classes={self.n_classes}] and targets [N], "
                             f"got {tuple(logits.shape)} and {tuple(targets.shape)}")
        # $\log p_c$, `[N, C]`. `log_softmax` subtracts the largest logit first, so it neither overflows nor
        # loses the small probabilities, as $\log(\text{softmax}(z))$ would.
        log_probs = F.log_softmax(logits, dim=-1)
        # Samples that count, `[N]`
        valid = targets != self.ignore_index
        # $-\log p_y$, `[N]`. Ignored targets are replaced by class 0 so that `gather` reads a valid column; they are
        # zeroed below.
        nll = -log_probs.gather(1, torch.where(valid, targets, 0)[:, None])[:, 0]
        # $-\frac{1}{C}\sum_c \log p_c$, `[N]`
        uniform = -log_probs.mean(dim=-1)
        # $$(1 - \epsilon)\big(-\log p_y\big) + \epsilon \Big(-\frac{1}{C}\sum_c \log p_c\Big)$$
        #
        # The loss of each sample, `[N]`.
        loss = (1 - self.smoothing) * nll + self.smoothing * uniform
        # The mean over the valid samples. With none, this is $0 / 0$, `nan`, as for `F.cross_entropy`.
        return torch.where(valid, loss, 0.0).sum() / valid.sum()


if __name__ == "__main__":
    from labml_nn.transformers.experiments.label_smoothing_loss import main

    main()

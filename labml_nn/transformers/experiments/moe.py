r"""
---
title: Mixture of experts on Tiny Shakespeare
summary: A dense baby GPT against the same GPT with a mixture of experts in every layer; the experts' load with and without the balancing loss; a sweep of the capacity factor.
---

# Mixture of experts on Tiny Shakespeare

```bash
python -m labml_nn.transformers.moe --device cpu                      # every variant, the baby recipe
python -m labml_nn.transformers.moe --preset short --device cpu       # the same, 600 steps each
python -m labml_nn.transformers.moe --variants dense moe --n-experts 4
```

The [GPT](/transformers/gpt/index.md) at [the baby size](/experiments/char_lm.md#baby_model) (GPT-2's
architecture: learned positions, GELU feed-forward networks of width 512), trained on Tiny Shakespeare once per
variant ([comparing variants](/experiments/compare.md)):

* `dense`: the GPT as it is;
* `moe`: the same GPT with every feed-forward network replaced by an [`MoE`](/transformers/moe/index.md#MoE) of
  `n_experts` = 8 GELU experts, top-2, dropless, with the load-balancing loss;
* `moe-no-aux`: the same without the load-balancing loss;
* `capacity-1.0`, `capacity-1.25`, `capacity-2.0`: `moe` with that capacity factor (the highest-weighted slots
  kept).

**The experts' width.** "8 experts, top-2, the same compute per token and about 4x the feed-forward parameters"
fixes each expert at *half* the dense network's width: two experts of width $d_{ff}/2$ per token cost what one
network of width $d_{ff}$ does, and eight of them hold four times its weights. (Experts of the full width would
be twice the compute and eight times the weights: `--expert-d-ff 512`.) `expert_d_ff` is that width; by default
$d_{ff} / k$.

The GPT itself is not changed: [`MoEGPT`](#MoEGPT) builds it and puts a [`MoEFeedForward`](#MoEFeedForward),
which holds the `MoE` and passes its output on, in the place of each layer's `feed_forward`. The statistics of
every layer reach [the loss](#moe_loss) through forward hooks that the loss function holds for one call, so the
layers keep nothing between calls. In training the loss is the cross-entropy plus the layers' auxiliary losses
(the logged training loss includes them); in evaluation it is the cross-entropy alone, so that the validation
losses of all variants compare.

Results, besides the [comparison's files](/experiments/compare.md):

* `val_loss`, `tokens_per_s`, `parameters` and `active_parameters` (per token: the router, the attention, the
  embeddings and $k$ of the $E$ experts) per variant, and `dropped_fraction` (the share of the slots dropped, over
  the last tenth of training, averaged over layers);
* `expert_load.png`: for `moe` and `moe-no-aux`, the share of slots each expert receives in each layer over
  training. Without the balancing loss a router is free to send most tokens to a few experts, and the others
  stop learning; with it the shares stay near $1/E$.

## Results

`--preset short` (the baby GPT and recipe, 600 steps of 12 sequences of 64 characters per variant), seed 0, on
a CPU shared with other jobs, one thread; 39 minutes for the six variants:

| variant | validation loss | parameters | active per token | slots dropped |
|---|---|---|---|---|
| `dense` | 2.161 | 809,856 | 809,856 | |
| `moe` | 2.098 | 2,384,256 | 811,392 | 0 |
| `moe-no-aux` | 2.099 | 2,384,256 | 811,392 | 0 |
| `capacity-1.0` | 2.097 | 2,384,256 | 811,392 | 5.3% |
| `capacity-1.25` | 2.098 | 2,384,256 | 811,392 | 0.2% |
| `capacity-2.0` | 2.097 | 2,384,256 | 811,392 | 0 |

* At the same compute per token (the routers add 0.2% of the parameters) and 2.9 times the parameters, the
  mixture of experts ends 0.06 nats below the dense GPT. Early in training the two are close; the experts
  pull ahead in the second half.
* The balancing loss changed the loss by nothing measurable at this size and length, but it changed the load
  completely:

![The share of slots each expert receives, by layer (rows) over training (across), with the load-balancing loss (left) and without (right)](/figures/moe_expert_load.png)

  Without it (right), within the first hundred steps each of the deeper layers settles on one or two experts
  that take 30 to 40% of the slots, where a fair share is 12.5%, and two or three that get almost none: their
  parameters are dead weight, and on several devices the busiest expert would set everyone's pace. With it
  (left) every share stays near $1/8$.
* With the balancing loss the load is even enough that a capacity factor of 1.25 drops only 0.2% of the slots
  and 1.0 drops 5%, at no measurable cost in loss here: the residual connection carries a dropped token on.
* The tokens per second of the runs (1,000 to 2,000) are not comparable with each other on a shared machine;
  `benchmarks/moe.py` measures the layer instead, interleaved with a dense network of the same active
  parameters: 1.07 times its time for forward and backward at 4,096 tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.char_lm import baby_model, baby_trainer, check_context, tiny_model, tiny_trainer, \
    train_char_lm
from labml_nn.experiments.cli import run_experiment
from labml_nn.experiments.compare import check_variants, train_variants
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.experiments.gpt import GPT2_CHOICES, build_model
from labml_nn.transformers.gpt import GPT, small_init_std
from labml_nn.transformers.moe import MoE, MoEStats
from labml_nn.transformers.utils import count_parameters

# The variants: their layer options, `None` for the dense GPT.
VARIANTS = {"dense": None, "moe": {}, "moe-no-aux": {"aux_loss_coeff": 0.0},
            "capacity-1.0": {"capacity_factor": 1.0}, "capacity-1.25": {"capacity_factor": 1.25},
            "capacity-2.0": {"capacity_factor": 2.0}}


# ## Configuration
@dataclass
class MoEExperiment:
    """A dense GPT and the same GPT with mixtures of experts, trained on Tiny Shakespeare."""
    model: TransformerConfigs = field(default_factory=lambda: baby_model(**GPT2_CHOICES))
    trainer: TrainerConfig = field(default_factory=baby_trainer)
    init_std: float = field(default_factory=lambda: small_init_std(128))
    """Standard deviation of the initial weights (the baby GPT's small init)."""
    context: int = 64
    """Characters per training sequence (at most the model's max_len)."""
    variants: tuple[str, ...] = tuple(VARIANTS)
    """Variants to train: dense, moe, moe-no-aux, capacity-1.0, capacity-1.25, capacity-2.0."""
    n_experts: int = 8
    """Experts per layer."""
    top_k: int = 2
    """Experts per token."""
    expert_d_ff: int | None = None
    """Hidden width of each expert; None: the dense d_ff divided by top_k (the dense network's compute per token)."""
    aux_loss_coeff: float = 1e-2
    """Coefficient of each layer's load-balancing loss."""
    z_loss_coeff: float = 0.0
    """Coefficient of each layer's router z-loss."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        check_variants("variants", self.variants)
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}: expected some of {list(VARIANTS)}")
        if self.model.ffn_activation not in ("relu", "gelu", "glu", "geglu", "swiglu"):
            raise ValueError(f"unknown ffn_activation {self.model.ffn_activation!r}")
        if self.expert_d_ff is not None and (isinstance(self.expert_d_ff, bool) or self.expert_d_ff < 1):
            raise ValueError(f"expert_d_ff must be a positive integer or None, got {self.expert_d_ff!r}")
        # Build one layer to check the experts' settings (top_k, n_experts, coefficients) now, not after training.
        MoE(8, 8, self.n_experts, self.top_k, aux_loss_coeff=self.aux_loss_coeff, z_loss_coeff=self.z_loss_coeff)

    @property
    def d_expert(self) -> int:
        return self.expert_d_ff if self.expert_d_ff is not None else max(1, self.model.d_ff // self.top_k)


# ## Presets
def default() -> MoEExperiment:
    """The baby GPT and recipe (2,000 steps), every variant."""
    return MoEExperiment()


def short() -> MoEExperiment:
    """The baby GPT, 600 steps per variant."""
    return MoEExperiment(trainer=baby_trainer(max_steps=600, eval_every=100, eval_iters=50))


def tiny() -> MoEExperiment:
    """Seconds: a one-layer model, four steps per variant, 4 experts (for tests)."""
    return MoEExperiment(model=tiny_model(**GPT2_CHOICES), trainer=tiny_trainer(), context=16,
                         init_std=small_init_std(32), n_experts=4)


# ## The GPT with experts
#
# [`TransformerLayer`](/transformers/models.md#TransformerLayer) calls its `feed_forward` on the normalised
# residual stream and adds what it returns. An `MoE` returns its output *and* its statistics, so it goes in
# wrapped: this module returns the output, and the statistics leave through the `MoE`'s forward hooks (see
# [the loss](#moe_loss)).
class MoEFeedForward(nn.Module):
    """An `MoE` in the place of a `FeedForward`: returns `y` `[batch, seq, d_model]` and drops the statistics."""

    def __init__(self, moe: MoE):
        super().__init__()
        self.moe = moe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.moe(x)[0]


# The GPT built as usual (GPT-2's initialisation), then each layer's feed-forward network replaced by an `MoE`
# initialised the same way: the router and the experts' input matrices from $\mathcal{N}(0, \sigma^2)$, their
# output matrices, which write into the residual stream, from $\mathcal{N}(0, \sigma^2 / 2L)$.
#
# The GPT's optimiser decays the `nn.Linear` weights only; the experts' stacked weights are matrices of the
# same kind, so they join the decayed group.
class MoEGPT(GPT):
    """The GPT with an `MoE` as every layer's feed-forward network."""

    def __init__(self, configs: TransformerConfigs, init_std: float, n_experts: int, top_k: int, d_expert: int,
                 **moe_options):
        super().__init__(configs, init_std)
        for layer in self.encoder.layers:
            moe = MoE(configs.d_model, d_expert, n_experts, top_k, activation=configs.ffn_activation, **moe_options)
            nn.init.normal_(moe.router.gate.weight, std=init_std)
            for weight in (moe.experts.w1, moe.experts.w3):
                if weight is not None:
                    nn.init.normal_(weight, std=init_std)
            nn.init.normal_(moe.experts.w2, std=init_std / math.sqrt(2 * self.n_layers))
            layer.feed_forward = MoEFeedForward(moe)

    def configure_optimizers(self, weight_decay: float, lr: float, betas: tuple[float, float]
                             ) -> torch.optim.AdamW:
        optimizer = super().configure_optimizers(weight_decay, lr, betas)
        experts = {id(p) for m in self.modules() if isinstance(m, MoE) for p in m.experts.parameters()}
        decay, no_decay = optimizer.param_groups
        decay["params"] += [p for p in no_decay["params"] if id(p) in experts]
        no_decay["params"] = [p for p in no_decay["params"] if id(p) not in experts]
        return optimizer


# Parameters used per token: all but the $E - k$ experts a token does not visit, in every layer.
def active_parameters(model: nn.Module) -> int:
    total = count_parameters(model)
    for moe in (m for m in model.modules() if isinstance(m, MoE)):
        per_expert = sum(p.numel() for p in moe.experts.parameters()) // moe.n_experts
        total -= (moe.n_experts - moe.top_k) * per_expert
    return total


# ## The loss
#
# For one call of the model, a forward hook on every `MoE` catches its [statistics](/transformers/moe/index.md#MoEStats);
# the hooks are removed when the call returns. In training, the layers' auxiliary losses join the cross-entropy
# and the load of every layer is kept in `history` (a `[layers, experts]` tensor of slot counts and a `[layers]`
# tensor of dropped fractions per micro-batch, left on the device). In evaluation the loss is the cross-entropy.
def moe_loss(history: list[tuple[torch.Tensor, torch.Tensor]]):
    """A loss function for the trainer that adds the auxiliary losses and records the experts' load in `history`."""
    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        inputs, targets = batch
        stats: list[MoEStats] = []
        hooks = [m.register_forward_hook(lambda module, args, output: stats.append(output[1]))
                 for m in model.modules() if isinstance(m, MoE)]
        try:
            logits = model(inputs)
        finally:
            for hook in hooks:
                hook.remove()
        # `[batch, seq, vocab]` to `[batch * seq, vocab]`
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        if not model.training or not stats:
            return loss
        history.append((torch.stack([s.tokens_per_expert for s in stats]),
                        torch.stack([s.dropped_fraction for s in stats])))
        return loss + sum(s.aux_loss + s.z_loss for s in stats)
    return loss_fn


# ## The experts' load, drawn
#
# One panel per layer and variant: experts down, training steps across (in `bins` bins), colour the share of the
# layer's slots that the expert received. $1/E$ everywhere is a perfectly balanced layer.
def plot_expert_load(loads: dict[str, torch.Tensor], path, bins: int = 50) -> None:
    """`loads[variant]` is `[steps, layers, experts]` of slot counts."""
    from matplotlib.figure import Figure

    n_layers = next(iter(loads.values())).shape[1]
    figure = Figure(figsize=(4.5 * len(loads), 1.6 * n_layers + 0.8), dpi=110, layout="constrained")
    axes = figure.subplots(n_layers, len(loads), squeeze=False)
    for column, (name, load) in enumerate(loads.items()):
        steps, _, n_experts = load.shape
        # `[steps, layers, experts]` to `[bins, steps / bins, layers, experts]`, summed within each bin
        width = max(1, steps // bins)
        binned = load[: steps // width * width].reshape(-1, width, n_layers, n_experts).sum(1)
        share = binned / binned.sum(-1, keepdim=True).clamp(min=1)
        for layer in range(n_layers):
            ax = axes[layer, column]
            image = ax.imshow(share[:, layer].T.numpy(), aspect="auto", cmap="viridis", vmin=0,
                              vmax=max(0.5, float(share.max())), extent=(0, steps, n_experts - 0.5, -0.5),
                              interpolation="nearest")
            ax.set_ylabel(f"layer {layer}\nexpert", fontsize=8)
            if layer == 0:
                ax.set_title(f"{name}: share of slots per expert", fontsize=9)
            if layer == n_layers - 1:
                ax.set_xlabel("micro-batch (training)")
        figure.colorbar(image, ax=axes[:, column].tolist(), shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


# ## The experiment
def train(config: MoEExperiment, run: Run) -> dict:
    loads: dict[str, torch.Tensor] = {}

    def train_one(name: str, sub: Run) -> dict:
        options = VARIANTS[name]
        if options is None:
            _, _, result = train_char_lm(lambda n_vocab: build_model(config.model, n_vocab, config.init_std),
                                         config.trainer, sub, config.context)
            result.update(active_parameters=result["parameters"], dropped_fraction=None)
            return result
        history: list[tuple[torch.Tensor, torch.Tensor]] = []
        options = {"aux_loss_coeff": config.aux_loss_coeff, "z_loss_coeff": config.z_loss_coeff, **options}
        model, _, result = train_char_lm(
            lambda n_vocab: MoEGPT(replace(config.model, n_src_vocab=n_vocab), config.init_std, config.n_experts,
                                   config.top_k, config.d_expert, **options),
            config.trainer, sub, config.context, loss_fn=moe_loss(history))
        result["active_parameters"] = active_parameters(model)
        result["dropped_fraction"] = None
        if history:
            load = torch.stack([h[0] for h in history]).cpu()
            dropped = torch.stack([h[1] for h in history]).cpu()
            result["dropped_fraction"] = dropped[-max(1, len(history) // 10):].mean().item()
            loads[name] = load
        return result

    summary = train_variants(run, config.variants, train_one, figures=["active_parameters", "dropped_fraction"])
    shown = {name: loads[name] for name in ("moe", "moe-no-aux") if name in loads}
    if shown and run.is_main:
        plot_expert_load(shown, run.path("expert_load.png"))
    return summary


def main(argv: list[str] | None = None) -> None:
    run_experiment("moe", MoEExperiment, train, presets={"default": default, "short": short, "tiny": tiny},
                   argv=argv, description="A dense GPT against the same GPT with mixtures of experts.")


if __name__ == "__main__":
    main()

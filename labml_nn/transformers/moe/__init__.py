r"""
---
title: Mixture of experts
summary: Routers (top-k then softmax, softmax then top-k, sigmoid), the load-balancing and z losses, capacity and token dropping, shared experts, and experts run as grouped matrix products over tokens sorted by expert.
---

# Mixture of experts

A mixture-of-experts (MoE) layer replaces the [feed-forward network](/transformers/feed_forward.md) of a
transformer block with $E$ of them, the *experts*, and a *router* that sends each token to $k$ of them. The
parameters grow $E$ times; the computation per token grows $k$ times (less, when each expert is made smaller).
This is how [Switch Transformer](https://arxiv.org/abs/2101.03961) ($k = 1$),
[Mixtral](https://arxiv.org/abs/2401.04088) ($E = 8$, $k = 2$), DeepSeek-V3 and Qwen-MoE grow.

| | A dense block | An MoE block |
|---|---|---|
| Feed-forward | one FFN, every token | $E$ FFNs, each token through $k$ of them, their outputs weighted by the router |
| Extra parameters | | the router, $W_r \in \mathbb{R}^{E \times d_{model}}$ |
| Extra losses | | the [load-balancing loss](#load_balancing_loss) and the [z-loss](#router_z_loss), added to the training loss |
| Computation | matrix products over all tokens | tokens [sorted by expert](#MoE), one matrix product per expert, unsorted |
| Optional | | [capacity](#capacity): a cap on the tokens per expert (the rest dropped); [shared experts](#MoE) every token goes through |

For a token $x$ with router logits $z = x W_r^\top$ and chosen experts $\mathcal{T}(x)$,

$$y = \sum_{i \in \mathcal{T}(x)} g_i(x)\, \text{FFN}_i(x)$$

and the block adds $y$ to the residual stream as usual. The choices that implementations make differently, how
$g$ is computed from $z$, how the loss that keeps the experts busy is scaled, and what happens to tokens an expert
has no room for, are each stated and tested here.

Layouts: the layer takes `[batch, seq, d_model]` and flattens it to `[tokens, d_model]`; a token's $k$ choices
are its *slots*, `[tokens, top_k]`, flattened to `tokens * top_k` slots in token order.

The experts can also be spread over processes, [expert parallelism](/transformers/moe/expert_parallel.md), and
[Mixtral](/transformers/moe/mixtral.md) is the [Llama](/transformers/llama/index.md) block with this layer. The
experiment (`python -m labml_nn.transformers.moe`, [page](/transformers/experiments/moe.md)) compares a dense
GPT with the same GPT made of MoE layers on Tiny Shakespeare, shows the experts' load with and without the
balancing loss, and sweeps the capacity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward

__all__ = ["Router", "RouterOutput", "load_balancing_loss", "router_z_loss", "Experts", "MoE", "MoEStats", "Dispatch", "dispatch",
           "ACTIVATIONS", "expert_capacity"]


# ## The router
#
# The router is one linear map to a logit per expert, $z = x W_r^\top$, followed by a choice of $k$ experts and
# their weights $g$. Three orders are in use:
#
# **`pre_softmax=False` (the default): top-$k$, then softmax.** Take the $k$ largest logits and softmax over
# those $k$ alone:
#
# $$g_i = \frac{e^{z_i}}{\sum_{j \in \mathcal{T}} e^{z_j}}, \quad \mathcal{T} = \text{top}_k(z).$$
#
# Mixtral (and Hugging Face's `MixtralSparseMoeBlock`) writes it the other way: softmax over all $E$ experts, top
# $k$ of the probabilities, renormalised to sum to one. It is the same thing: softmax is monotonic, so the top $k$
# probabilities are those of the top $k$ logits, and renormalising $p_i = e^{z_i} / Z$ over $\mathcal{T}$ cancels
# $Z$, leaving the softmax over $\mathcal{T}$. The tests check it.
#
# **`pre_softmax=True`: softmax, then top-$k$.** $p = \text{softmax}(z)$ over all experts, $g_i = p_i$ for the top
# $k$, *not* renormalised unless `normalize` (renormalised it is Mixtral's order again). With $k = 1$ and without
# renormalising this is the Switch Transformer's router, $y = p_i(x)\,\text{FFN}_i(x)$.
#
# Why Switch needs that order: with $k = 1$ the default order gives $g_i = e^{z_i} / e^{z_i} = 1$, a constant.
# The output no longer depends on the router's logits, so the router gets no gradient from the task loss and
# never learns (only the auxiliary losses would move it). Softmax first keeps $g_i = p_i(x) < 1$, which depends on
# all the logits. (Renormalising the single weight would make it 1 again.)
#
# **`scoring='sigmoid'`**: DeepSeek-V3 scores each expert independently, $s_i = \sigma(z_i)$, takes the top
# $k$ and normalises them, $g_i = s_i / \sum_{j \in \mathcal{T}} s_j$ (unless `normalize=False`). Experts do not
# compete inside a softmax.
#
# The router also returns the full scores, $p = \text{softmax}(z)$ or $\sigma(z)$ over all experts, for the
# load-balancing loss, and its logits, for the z-loss.
@dataclass
class RouterOutput:
    """What the router decides for `tokens` inputs: `logits` and `scores` `[tokens, n_experts]`, `weights` and
    `indices` `[tokens, top_k]` (the weights in float32)."""
    logits: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor


class Router(nn.Module):
    r"""
    Top-$k$ router.

    Arguments:
        d_model: width of the tokens.
        n_experts: number of experts $E$.
        top_k: experts per token, $k$.
        scoring: `'softmax'` or `'sigmoid'`.
        pre_softmax: with softmax scoring, softmax over all experts before choosing (see above).
        normalize: renormalise the chosen weights to sum to one (with `pre_softmax=True` or sigmoid scoring; the
            default order is normalised by construction).
        jitter: in training, multiply the router's input by noise uniform in $[1 - \epsilon, 1 + \epsilon]$
            (Switch Transformer), to explore other experts; `0` turns it off.
    """

    def __init__(self, d_model: int, n_experts: int, top_k: int = 2, *, scoring: str = "softmax",
                 pre_softmax: bool = False, normalize: bool = True, jitter: float = 0.0):
        super().__init__()
        for name, value in (("d_model", d_model), ("n_experts", n_experts), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if top_k > n_experts:
            raise ValueError(f"top_k ({top_k}) must be at most n_experts ({n_experts})")
        if scoring not in ("softmax", "sigmoid"):
            raise ValueError(f"unknown scoring {scoring!r}: expected 'softmax' or 'sigmoid'")
        if scoring == "sigmoid" and pre_softmax:
            raise ValueError("pre_softmax=True applies to softmax scoring only")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.n_experts, self.top_k = n_experts, top_k
        self.scoring, self.pre_softmax, self.normalize, self.jitter = scoring, pre_softmax, normalize, jitter
        # $W_r$, `[n_experts, d_model]`
        self.gate = nn.Linear(d_model, n_experts, bias=False)

    def forward(self, x: torch.Tensor) -> RouterOutput:
        """`x` is `[tokens, d_model]`."""
        if self.training and self.jitter > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        # $z = x W_r^\top$, in float32 for the softmax: `[tokens, n_experts]`
        logits = self.gate(x).float()
        if self.scoring == "sigmoid":
            scores = torch.sigmoid(logits)
            weights, indices = scores.topk(self.top_k, dim=-1)
        elif self.pre_softmax:
            scores = logits.softmax(dim=-1)
            weights, indices = scores.topk(self.top_k, dim=-1)
        else:
            scores = logits.softmax(dim=-1)
            top_logits, indices = logits.topk(self.top_k, dim=-1)
            # $$g = \text{softmax}\big(z_{\mathcal{T}}\big)$$
            return RouterOutput(logits, scores, top_logits.softmax(dim=-1), indices)
        if self.normalize:
            # $$g_i = s_i / \sum_{j \in \mathcal{T}} s_j$$
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return RouterOutput(logits, scores, weights, indices)


# ## The load-balancing loss
#
# Left alone, a router collapses: the experts that happen to be chosen early get trained, become better, and are
# chosen more. The auxiliary loss of the Switch Transformer pushes towards a uniform load. With $T$ tokens, $k$
# slots each, $c_i$ the number of slots routed to expert $i$ and $p_i(x)$ its score,
#
# $$\mathcal{L}_{aux} = \frac{E}{k T^2} \sum_{i=1}^{E} \Big(\sum_x p_i(x)\Big)\, c_i = E \sum_i f_i P_i,
# \qquad f_i = \frac{c_i}{kT},\ P_i = \frac{1}{T}\sum_x p_i(x),$$
#
# Megatron-LM's form: $f_i$ is the fraction of the slots that expert $i$ receives, $P_i$ its mean score. Both are
# $1/E$ under a uniform load, where the loss is $1$, its minimum for a given spread of scores. $c_i$ counts
# discrete choices and has no gradient; the gradient reaches the router through $P_i$ and lowers the scores of
# the overloaded experts.
#
# * With $k = 1$ it is the Switch Transformer's loss, $E \sum_i f_i P_i$ with $f_i$ the fraction of tokens.
# * Hugging Face's Mixtral (`load_balancing_loss_func`) divides the counts by $T$ instead of $kT$: its $f_i$ sum to
#   $k$, and its loss is $k$ times this one (a uniform load gives $k$). With the same coefficient, Hugging Face's
#   Mixtral balances $k$ times harder than Megatron-LM's.
def load_balancing_loss(scores: torch.Tensor, indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    r"""$\frac{E}{k T^2} \sum_i (\sum_x p_i(x))\, c_i$ for `scores` `[tokens, n_experts]` and chosen `indices`
    `[tokens, top_k]`."""
    tokens, top_k = indices.shape
    # $c_i$, counted without leaving the device: `[n_experts]`
    counts = torch.zeros(n_experts, device=scores.device, dtype=scores.dtype).scatter_add_(
        0, indices.flatten(), torch.ones(indices.numel(), device=scores.device, dtype=scores.dtype))
    # $$\frac{E}{k T^2} \sum_i \Big(\sum_x p_i(x)\Big)\, c_i$$
    return n_experts / (top_k * tokens * tokens) * (scores.sum(dim=0) * counts).sum()


# ## The router z-loss
#
# [ST-MoE](https://arxiv.org/abs/2202.08906) adds a penalty on the size of the logits, which keeps them small
# enough for the router's softmax to stay accurate in low precision, and improves stability:
#
# $$\mathcal{L}_z = \frac{1}{T} \sum_x \Big(\log \sum_{j=1}^{E} e^{z_j(x)}\Big)^2$$
def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    r"""$\text{mean}_x (\log\sum_j e^{z_j(x)})^2$ of router `logits` `[tokens, n_experts]`."""
    return logits.float().logsumexp(dim=-1).square().mean()


# ## Capacity
#
# With a capacity factor each expert processes at most
#
# $$C = \Big\lceil \frac{kT}{E} \cdot \text{capacity\_factor} \Big\rceil$$
#
# slots: the fair share $kT/E$ with some slack. The work per expert is then bounded and known in advance, so the
# experts can run as one batched matrix product over a `[E, C, d_model]` buffer with static shapes, which is what
# accelerators and expert parallelism like. The price: slots routed to a full expert are *dropped*. A dropped slot
# contributes nothing; if all of a token's slots are dropped the layer outputs zero for it and the residual
# connection around the layer carries the token on unchanged. Which slots an expert keeps is the `drop_policy`:
# `'probs'` keeps those with the highest router weights, `'position'` the first ones in the batch.
def expert_capacity(tokens: int, top_k: int, n_experts: int, capacity_factor: float) -> int:
    r"""$\lceil kT/E \cdot \text{capacity\_factor} \rceil$."""
    return math.ceil(top_k * tokens / n_experts * capacity_factor)


# ## The experts
#
# All $E$ experts' weights are stacked, `w1` and `w3` `[E, d_ff, d_model]` and `w2` `[E, d_model, d_ff]` (Meta's
# and Mixtral's names and `nn.Linear`'s orientation), so that they can run as one batched product. A gated expert
# (`swiglu`, `geglu`, `glu`) computes $\big(f(x W_1^\top) \odot x W_3^\top\big) W_2^\top$, a plain one
# $f(x W_1^\top) W_2^\top$; the names are those of the [configurations](/transformers/configs.md). They are
# initialised like `nn.Linear`, uniform in $\pm 1/\sqrt{\text{fan-in}}$.
ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {
    "relu": (F.relu, False), "gelu": (F.gelu, False), "glu": (torch.sigmoid, True), "geglu": (F.gelu, True),
    "swiglu": (F.silu, True)}


class Experts(nn.Module):
    """`n_experts` feed-forward networks with stacked weights `w1`, `w3` (gated only) and `w2`."""

    def __init__(self, d_model: int, d_ff: int, n_experts: int, activation: str = "swiglu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: expected one of {sorted(ACTIVATIONS)}")
        self.activation, gated = ACTIVATIONS[activation]
        self.n_experts = n_experts
        self.w1 = nn.Parameter(torch.empty(n_experts, d_ff, d_model))
        self.w3 = nn.Parameter(torch.empty(n_experts, d_ff, d_model)) if gated else None
        self.w2 = nn.Parameter(torch.empty(n_experts, d_model, d_ff))
        for weight in (self.w1, self.w3, self.w2):
            if weight is not None:
                bound = 1 / math.sqrt(weight.shape[-1])
                nn.init.uniform_(weight, -bound, bound)

    # ### Grouped: one product per expert over its contiguous rows
    #
    # `x` is `[slots, d_model]` sorted by expert, `counts[e]` rows for expert $e$. The loop is over the $E$ experts,
    # never over tokens: each iteration is three matrix products of `[counts[e], d_model]` rows. Cutting the rows
    # needs the counts on the host, the one synchronisation of the dropless layer. (`torch.nn.functional.grouped_mm`
    # takes the offsets on the device and is the way on recent CUDA GPUs; in torch 2.13 on the CPU its backward
    # fails, so the loop is what runs here.)
    def forward_grouped(self, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """`x` `[slots, d_model]` sorted by expert, `counts` its rows per expert; returns `[slots, d_model]`."""
        outputs = []
        # `unbind` gives every expert's matrices as views in one operation, whose gradient is one stacked tensor;
        # indexing `w1[e]` in the loop would make each expert's gradient a full-size `[E, ...]` tensor of zeros.
        w1, w2 = self.w1.unbind(0), self.w2.unbind(0)
        w3 = self.w3.unbind(0) if self.w3 is not None else None
        # An expert with no rows multiplies an empty `[0, d_model]` block: nothing to compute, and its weights still
        # get a (zero) gradient.
        for e, rows in enumerate(x.split(counts)):
            hidden = self.activation(F.linear(rows, w1[e]))
            if w3 is not None:
                hidden = hidden * F.linear(rows, w3[e])
            outputs.append(F.linear(hidden, w2[e]))
        return torch.cat(outputs)

    # ### Padded: one batched product over `[E, C, d_model]`
    #
    # With a capacity every expert has a buffer of $C$ rows (zeros where it received fewer), and `bmm` multiplies
    # all of them at once, with no host synchronisation.
    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """`x` `[n_experts, capacity, d_model]`; returns the same shape."""
        # `[E, C, d_model] @ [E, d_model, d_ff]` is `[E, C, d_ff]`
        hidden = self.activation(torch.bmm(x, self.w1.transpose(1, 2)))
        if self.w3 is not None:
            hidden = hidden * torch.bmm(x, self.w3.transpose(1, 2))
        # `[E, C, d_ff] @ [E, d_ff, d_model]` is `[E, C, d_model]`
        return torch.bmm(hidden, self.w2.transpose(1, 2))


# ## The layer
#
# What `forward` returns besides the output: the two auxiliary losses, already multiplied by their coefficients,
# differentiable, to be added to the training loss by the caller (the layer keeps nothing between calls), and two
# statistics without gradient: `tokens_per_expert`, the slots each expert processed, and `dropped_fraction`, the
# share of the $kT$ slots dropped for lack of capacity.
@dataclass
class MoEStats:
    """The auxiliary losses and load of one `MoE` call."""
    aux_loss: torch.Tensor
    z_loss: torch.Tensor
    tokens_per_expert: torch.Tensor
    dropped_fraction: torch.Tensor


# ### Sorting tokens by expert, and back
#
# A token's $k$ slots go to $k$ different experts. To run each expert once over all its slots, the slots are
# sorted by expert: flatten the chosen experts to `[T * k]` (slot $s = t k + j$ is token $t$'s $j$-th choice), take
# the stable `argsort`, the permutation $\pi$ with expert$(\pi_0) \le$ expert$(\pi_1) \le \dots$, and gather the
# token rows in that order, row $r$ being token $\lfloor \pi_r / k \rfloor$. The experts' outputs come back in the
# sorted order; the inverse permutation $\pi^{-1}$ (row $\pi_r$ of the result is row $r$) puts them back in slot
# order, `[T, k, d_model]`, where each token's $k$ slots are weighted and summed.
#
# With a capacity the slots are sorted by expert and, within an expert, by priority (weight or position); a slot's
# rank within its expert is its sorted index minus where its expert starts, and the slots of rank $\ge C$ are
# dropped. The kept ones are scattered into the `[E, C, d_model]` buffer at row (expert, rank); a dropped one points
# at an extra zero row, so that gathering it back gives zero, without any data-dependent shapes.
@dataclass
class Dispatch:
    """How slots travel: `order` `[slots]` ($\\pi$), `tokens` `[slots]` (the token of each sorted row), `counts`
    `[n_experts]` (slots routed per expert) and, with a capacity, `destination` `[slots]` (buffer row of each sorted
    slot, `n_experts * capacity` if dropped) and `capacity`."""
    order: torch.Tensor
    tokens: torch.Tensor
    counts: torch.Tensor
    destination: torch.Tensor | None = None
    capacity: int | None = None


def dispatch(indices: torch.Tensor, weights: torch.Tensor, n_experts: int, capacity: int | None = None,
             drop_policy: str = "probs") -> Dispatch:
    """Sort the slots of `indices` `[tokens, top_k]` by expert (and by priority within an expert with a capacity)."""
    tokens, top_k = indices.shape
    experts = indices.flatten()
    # $c_i$: `[n_experts]`
    counts = torch.zeros(n_experts, dtype=torch.long, device=indices.device).scatter_add_(
        0, experts, torch.ones_like(experts))
    if capacity is not None and drop_policy == "probs":
        # Highest weight first, then (stably) by expert: within an expert, by descending weight.
        by_weight = weights.flatten().argsort(descending=True, stable=True)
        order = by_weight[experts[by_weight].argsort(stable=True)]
    else:
        # By expert; within an expert, slots stay in token order.
        order = experts.argsort(stable=True)
    result = Dispatch(order=order, tokens=order // top_k, counts=counts)
    if capacity is not None:
        sorted_experts = experts[order]
        # where each expert's rows start in the sorted order: `[n_experts]`
        starts = counts.cumsum(0) - counts
        rank = torch.arange(order.numel(), device=order.device) - starts[sorted_experts]
        result.destination = torch.where(rank < capacity, sorted_experts * capacity + rank, n_experts * capacity)
        result.capacity = capacity
    return result


# ### The layer
#
# `MoE(d_model, d_ff, n_experts, top_k)` with `d_ff` the hidden width of each expert. `n_shared_experts` adds
# dense experts that every token goes through (DeepSeek, Qwen-MoE), their output added to the routed one: they hold
# what all tokens need, so the routed experts can specialise. $n$ shared experts of width $d_{ff}$ are one
# [`FeedForward`](/transformers/feed_forward.md) of width $n\,d_{ff}$ (its hidden units are independent, so the
# sum of $n$ networks is one wider network). The remaining keywords go to the [`Router`](#Router).
class MoE(nn.Module):
    r"""
    Mixture-of-experts feed-forward layer.

    Arguments:
        d_model: width of the tokens.
        d_ff: hidden width of each expert.
        n_experts: number of routed experts $E$.
        top_k: experts per token $k$.
        activation: `'swiglu'` (default), `'geglu'`, `'glu'`, `'gelu'` or `'relu'`.
        capacity_factor: `None` (dropless) or a positive factor of the fair share, see [capacity](#capacity).
        drop_policy: with a capacity, which slots an expert keeps: `'probs'` or `'position'`.
        n_shared_experts: dense experts of width `d_ff` that every token goes through.
        aux_loss_coeff: coefficient of the [load-balancing loss](#load_balancing_loss).
        z_loss_coeff: coefficient of the [z-loss](#router_z_loss).
        router_options: `scoring`, `pre_softmax`, `normalize`, `jitter` of the [router](#Router).
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int = 2, *, activation: str = "swiglu",
                 capacity_factor: float | None = None, drop_policy: str = "probs", n_shared_experts: int = 0,
                 aux_loss_coeff: float = 1e-2, z_loss_coeff: float = 0.0, **router_options):
        super().__init__()
        if isinstance(d_ff, bool) or not isinstance(d_ff, int) or d_ff < 1:
            raise ValueError(f"d_ff must be a positive integer, got {d_ff!r}")
        if capacity_factor is not None and (isinstance(capacity_factor, bool) or
                                            not isinstance(capacity_factor, (int, float)) or
                                            not math.isfinite(capacity_factor) or capacity_factor <= 0):
            raise ValueError(f"capacity_factor must be a positive number or None (dropless), got {capacity_factor!r}")
        if drop_policy not in ("probs", "position"):
            raise ValueError(f"unknown drop_policy {drop_policy!r}: expected 'probs' or 'position'")
        if isinstance(n_shared_experts, bool) or not isinstance(n_shared_experts, int) or n_shared_experts < 0:
            raise ValueError(f"n_shared_experts must be a non-negative integer, got {n_shared_experts!r}")
        for name, value in (("aux_loss_coeff", aux_loss_coeff), ("z_loss_coeff", z_loss_coeff)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        unknown = sorted(set(router_options) - {"scoring", "pre_softmax", "normalize", "jitter"})
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}: the router takes scoring, pre_softmax, normalize, jitter")
        self.d_model, self.n_experts, self.top_k = d_model, n_experts, top_k
        self.capacity_factor, self.drop_policy = capacity_factor, drop_policy
        self.aux_loss_coeff, self.z_loss_coeff = aux_loss_coeff, z_loss_coeff
        self.router = Router(d_model, n_experts, top_k, **router_options)
        self.experts = self.build_experts(d_model, d_ff, n_experts, activation)
        self.shared_experts = None
        if n_shared_experts > 0:
            function, gated = ACTIVATIONS[activation]
            self.shared_experts = FeedForward(d_model, n_shared_experts * d_ff, dropout=0.0, activation=function,
                                              is_gated=gated, bias1=False, bias2=False, bias_gate=False)

    # The experts this layer computes; [expert parallelism](/transformers/moe/expert_parallel.md) overrides it to
    # hold only its share.
    def build_experts(self, d_model: int, d_ff: int, n_experts: int, activation: str) -> Experts:
        return Experts(d_model, d_ff, n_experts, activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MoEStats]:
        """`x` `[batch, seq, d_model]` to `y` `[batch, seq, d_model]` and the [statistics](#MoEStats)."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be [batch, seq, {self.d_model}], got {list(x.shape)}")
        batch, seq, d_model = x.shape
        # `[batch, seq, d_model]` to `[tokens, d_model]`
        flat = x.reshape(batch * seq, d_model)
        route = self.router(flat)
        tokens = flat.shape[0]
        capacity = None
        if self.capacity_factor is not None:
            capacity = expert_capacity(tokens, self.top_k, self.n_experts, self.capacity_factor)
        plan = dispatch(route.indices, route.weights, self.n_experts, capacity, self.drop_policy)
        # The token rows in sorted order, $x_{\lfloor \pi_r / k \rfloor}$: `[tokens * top_k, d_model]`
        sorted_x = flat[plan.tokens]
        sorted_y = self.run_experts(sorted_x, plan)
        # $\pi^{-1}$: row $\pi_r$ of the slots is row $r$ of the sorted outputs, `[tokens * top_k, d_model]`
        slots = torch.empty_like(sorted_y).index_copy_(0, plan.order, sorted_y)
        # $$y = \sum_{j} g_j(x)\, \text{FFN}_{\mathcal{T}_j(x)}(x)$$
        #
        # `[tokens, top_k, d_model]` weighted by `[tokens, top_k, 1]` and summed over the slots: `[tokens, d_model]`.
        # (A batched product of `[1, top_k]` by `[top_k, d_model]` per token would compute the same, but its
        # backward on the CPU loops over the tokens.)
        y = (slots.view(tokens, self.top_k, d_model) * route.weights.to(x.dtype).unsqueeze(-1)).sum(dim=1)
        if self.shared_experts is not None:
            y = y + self.shared_experts(flat)
        return y.view(batch, seq, d_model), self.stats(route, plan)

    # ### The readable path
    #
    # What the sorting computes, written as the sum in the formula: every expert runs on every token, and a token
    # keeps expert $e$'s output weighted by $g_e(x)$, its router weight for $e$ (zero where $e$ is not among its
    # $k$ choices). It does $E/k$ times the work of the fast path, so it is for reading and for checking
    # (dropless only: a capacity's drops depend on the other tokens); a test proves the two agree.
    def forward_explicit(self, x: torch.Tensor) -> torch.Tensor:
        """The dropless layer's output `[batch, seq, d_model]`, computed densely: every expert on every token."""
        if self.capacity_factor is not None:
            raise ValueError("forward_explicit computes the dropless layer; this one has a capacity")
        batch, seq, d_model = x.shape
        flat = x.reshape(batch * seq, d_model)
        route = self.router(flat)
        # $g_e(x)$ for every expert, zero for the unchosen: `[tokens, n_experts]`
        gates = flat.new_zeros(flat.shape[0], self.n_experts).scatter_add_(1, route.indices,
                                                                           route.weights.to(flat.dtype))
        y = torch.zeros_like(flat)
        for e in range(self.n_experts):
            # Expert $e$ on all the tokens: `[tokens, d_model]`
            hidden = self.experts.activation(F.linear(flat, self.experts.w1[e]))
            if self.experts.w3 is not None:
                hidden = hidden * F.linear(flat, self.experts.w3[e])
            y = y + gates[:, e:e + 1] * F.linear(hidden, self.experts.w2[e])
        if self.shared_experts is not None:
            y = y + self.shared_experts(flat)
        return y.view(batch, seq, d_model)

    # ### Running the experts on the sorted rows
    #
    # Dropless: [grouped](#Experts.forward_grouped), one product per expert on its rows. With a capacity: the kept
    # rows go into the `[E, C, d_model]` buffer (through the extra zero row, as explained [above](#dispatch)), the
    # [padded](#Experts.forward_padded) product runs, and each sorted row gathers its result back, zero if dropped.
    def run_experts(self, sorted_x: torch.Tensor, plan: Dispatch) -> torch.Tensor:
        """The experts' outputs for `sorted_x` `[slots, d_model]`, in the same order."""
        if plan.capacity is None:
            return self.experts.forward_grouped(sorted_x, plan.counts.tolist())
        n_rows = self.n_experts * plan.capacity
        d_model = sorted_x.shape[-1]
        slots = sorted_x.shape[0]
        # For each buffer row, the sorted row it holds, or `slots` (a zero row) if it stays empty: `[E * C + 1]`
        source = torch.full((n_rows + 1,), slots, dtype=torch.long, device=sorted_x.device)
        source.scatter_(0, plan.destination, torch.arange(slots, device=sorted_x.device))
        padded_x = torch.cat([sorted_x, sorted_x.new_zeros(1, d_model)])
        # `[E * C, d_model]` to `[E, C, d_model]`
        buffer = padded_x[source[:n_rows]].view(self.n_experts, plan.capacity, d_model)
        # `[E, C, d_model]` to `[E * C, d_model]`, and an extra zero row for the dropped slots
        out = self.experts.forward_padded(buffer).reshape(n_rows, d_model)
        out = torch.cat([out, out.new_zeros(1, d_model)])
        # `[slots, d_model]`
        return out[plan.destination]

    # ### The statistics
    #
    # The load-balancing loss counts the slots the router chose, before any were dropped: it is about the router's
    # preferences. `tokens_per_expert` counts the slots the experts processed.
    def stats(self, route: RouterOutput, plan: Dispatch) -> MoEStats:
        zero = route.logits.new_zeros(())
        aux = self.aux_loss_coeff * load_balancing_loss(route.scores, route.indices, self.n_experts) \
            if self.aux_loss_coeff > 0 else zero
        z = self.z_loss_coeff * router_z_loss(route.logits) if self.z_loss_coeff > 0 else zero
        processed = plan.counts if plan.capacity is None else plan.counts.clamp(max=plan.capacity)
        slots = route.indices.numel()
        dropped = 1 - processed.sum().float() / max(slots, 1)
        return MoEStats(aux_loss=aux, z_loss=z, tokens_per_expert=processed.float(), dropped_fraction=dropped)

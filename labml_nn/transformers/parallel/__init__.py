r"""
---
title: Tensor and sequence parallelism (Megatron-LM), written out
summary: The Megatron-LM split of a transformer over several processes, written out with torch.distributed - the conjugate operators f and g, column- and row-parallel linear layers, attention split by heads, the feed-forward network split by hidden units, and sequence parallelism - applied to this package's GPT and Llama and proved equal to one process.
---

# Tensor and sequence parallelism, written out

A Llama 3.1 8B has 8 billion parameters: 16 GB in bfloat16, and with gradients and Adam's two moments in
float32 about 128 GB, before a single activation is stored. It does not fit on one GPU. Data parallelism
(one copy of the model per GPU, [DDP](/experiments/distributed.md)) does not help: every GPU holds all of it.
[Megatron-LM](https://arxiv.org/abs/1909.08053) (Shoeybi et al., 2019) splits each layer's matrices across
$t$ GPUs instead, so that each holds and computes $1/t$ of every layer. This page writes that split out on
`torch.distributed`, applies it to this package's [GPT](/transformers/gpt/index.md) and
[Llama](/transformers/llama/index.md), and the tests prove that $t$ processes compute the same logits, loss
and gradients as one. The production path, the same split with PyTorch's DTensor, is
[`tensor_parallelize`](/transformers/parallel/dtensor.md); [the plan](/transformers/parallel/plan.md)
computes what fits for 8B to 405B models.

Layouts: the residual stream is `[batch, seq, d_model]`; inside attention `[batch, heads, seq, d_head]`.
$t$ is the tensor-parallel size, $r$ this process's rank in its tensor-parallel group.

## The split of one sublayer

Both sublayers of a transformer layer are "a matrix that widens, something per hidden unit, a matrix that
narrows". The feed-forward network is $Y = \sigma(X A) B$ with $X$ `[tokens, d_model]`, $A$ `[d_model, d_ff]`,
$B$ `[d_ff, d_model]`. Cut $A$ **by columns** and $B$ **by rows**, into $t$ blocks:

$$A = [A_1, \dots, A_t], \quad A_r \in \mathbb{R}^{d_{model} \times d_{ff}/t} \qquad
B = \begin{bmatrix} B_1 \\ \vdots \\ B_t \end{bmatrix}, \quad B_r \in \mathbb{R}^{d_{ff}/t \times d_{model}}$$

Process $r$ holds $A_r$ and $B_r$ and computes $Y_r = \sigma(X A_r) B_r$, `[tokens, d_model]`. Because
$\sigma$ acts on each hidden unit alone, $\sigma(XA) = [\sigma(XA_1), \dots, \sigma(XA_t)]$, and the block
product gives

$$Y = \sigma(X A) B = \sum_{r=1}^{t} \sigma(X A_r) B_r = \sum_r Y_r$$

So the only communication of the forward pass is **one all-reduce** of `[tokens, d_model]` at the end.
Cutting $A$ by rows instead would need the sum *before* the non-linearity ($\sigma(\sum_r X_r A_r) \ne
\sum_r \sigma(X_r A_r)$), a second synchronisation. The gated feed-forward ($\sigma(XW_1) \otimes XV$, Llama's
SwiGLU) cuts $W_1$ and $V$ the same way, so that each process gates its own hidden units.

Attention is split **by heads**, which are independent until the output projection: $W^Q$, $W^K$, $W^V$
`[d_model, heads * d_head]` are cut by columns, head-aligned, so process $r$ computes heads
$r h / t, \dots, (r+1) h/t - 1$ entirely by itself (their softmax included), and $W^O$ `[heads * d_head, d_model]`
is cut by rows, giving again one all-reduce per sublayer. With grouped-query attention the key/value heads are
cut the same way: query head $i$ reads key/value head $\lfloor i / (h / h_{kv}) \rfloor$, and with $t$ dividing
$h_{kv}$ the query heads of process $r$ read exactly its key/value heads.

| matrix | shape (full) | cut along | shape on process $r$ | called |
|---|---|---|---|---|
| $W^Q$, $W^K$, $W^V$ (`query`/`wq`, ...) | `[d_model, heads * d_head]` | output dim (heads) | `[d_model, heads / t * d_head]` | column-parallel |
| $W^O$ (`output`/`wo`) | `[heads * d_head, d_model]` | input dim (heads) | `[heads / t * d_head, d_model]` | row-parallel |
| $W_1$, $V$ (`layer1`, `linear_v`/`w1`, `w3`) | `[d_model, d_ff]` | output dim (hidden units) | `[d_model, d_ff / t]` | column-parallel |
| $W_2$ (`layer2`/`w2`) | `[d_ff, d_model]` | input dim (hidden units) | `[d_ff / t, d_model]` | row-parallel |
| norms, embeddings, output head | | not cut (replicated) | | |

(PyTorch's `nn.Linear` stores the transpose, `weight` `[out, in]`: column-parallel cuts `weight` by rows.)
The embeddings and the output head stay whole here; Megatron also cuts them by vocabulary, which saves memory
but not communication, and is left to [DTensor's path](/transformers/parallel/dtensor.md).

## The conjugate operators $f$ and $g$

What happens in the backward pass? The input $X$ of a sublayer is the same on every process. Each process's
$Y_r$ depends on $X$, so the gradient of the loss with respect to $X$ is the sum of the processes' partial
gradients $\partial Y_r / \partial X$: an all-reduce, in the backward pass, at the *start* of the sublayer.
At the *end*, $Y = \sum_r Y_r$ is the same on every process, and so is its gradient: nothing to do. Megatron
writes these two as a pair of conjugate operators:

* $f$: the identity forward, an all-reduce backward; placed where the sublayer's input enters;
* $g$: an all-reduce forward, the identity backward; placed where the sublayer's output leaves.

So a layer costs two all-reduces forward and two backward, each of `[batch, seq, d_model]`. Everything
outside the sublayers (the norms, the dropout, the residual additions) is computed identically, redundantly,
on every process.

## Sequence parallelism

That redundancy costs memory: the norms' and dropouts' activations, `[batch, seq, d_model]` each, are stored
$t$ times. [Korthikanti et al. (2022)](https://arxiv.org/abs/2205.05198) notice that these operations act on
each position alone, so they can be split along the **sequence** instead: each process normalises and drops
out $seq / t$ positions. An all-reduce is a reduce-scatter followed by an all-gather, and that is exactly the
change of layout needed: the sublayer's output is **reduce-scattered** along the sequence (each process keeps
the sum of its $seq/t$ positions), and before the next sublayer the normalised shard is **all-gathered**. The
pair replaces $g$ and $f$:

* $\bar g$: reduce-scatter forward, all-gather backward (replaces $g$ at a sublayer's output);
* $\bar f$: all-gather forward, reduce-scatter backward (replaces $f$ at a sublayer's input).

The communication volume is the same as with $f$ and $g$ (a ring all-reduce *is* a reduce-scatter plus an
all-gather), and the activations outside the sublayers shrink by $t$. One thing changes for the parameters
that act on a shard of the sequence (the norms' gains and biases, and the row-parallel biases added after the
reduce-scatter): each process sees only its positions, so their gradients are partial sums, all-reduced over
the group after the backward pass.

gloo on CPU has `reduce_scatter` and `all_gather` in torch 2.13, so every operator is the collective its name
says, on CPU as on GPUs.

**Dropout.** Inside a sublayer each process owns different heads and hidden units (and under sequence parallelism
different positions), so their dropout masks must differ; a replicated tensor (the residual stream of the plain
split, the embeddings' output) needs the same mask on every process of the group. As in Megatron-LM there are two
random streams: the processes of a group seed their default generator alike, and the sublayers' dropout (and the
residual dropout on sequence shards) draws from a second, per-process stream ([below](#ModelParallelRNG)). The
tests train with dropout on two processes and check that the residual stream stays identical on both, that the
masks on the sharded heads and hidden units differ between them, and that a rerun with the same seed draws the same
masks.

## What it costs, counted

The benchmark `benchmarks/parallel.py` wraps `torch.distributed`'s collectives and counts one training step of the baby GPT (4 layers, $d_{model} = 128$,
a batch of 12 x 64 tokens, float32) split over 2 processes. The counts equal the formulas above exactly:

| split | collective | calls | payload | formula |
|---|---|---|---|---|
| $f$, $g$ | all-reduce | 16 | 6.29 MB | $4L$ all-reduces of $bsd \cdot 4$ bytes |
| sequence parallel | all-gather | 18 | 7.08 MB | $4L$, plus the final norm's output and the embeddings' gradient |
| | reduce-scatter | 16 | 6.29 MB | $4L$ |
| | all-reduce | 26 | 0.013 MB | gradients of the norms and row-parallel biases, which act on sequence shards |

Each process sends $2\frac{t-1}{t}$ of an all-reduce's payload and $\frac{t-1}{t}$ of an all-gather's or
reduce-scatter's, so both splits send the same bytes. On two CPU cores shared with other jobs, a step of TP = 2 took
0.86 to 1.39 times as long as one process (medians of 20 interleaved rounds, in two runs): the step's 16
all-reduces alone took 24 ms of about 150 ms through loopback TCP, and the embeddings, the output layer, the norms,
the loss and their optimizer updates are computed whole on both processes, while the matrices split in two were
small to begin with. Tensor parallelism pays where one layer's matrices are large and the link is NVLink, within
one server, which is where Megatron-LM keeps it.

The tests (`tests/test_parallel.py`) run this in 2 and 4 processes on gloo and compare logits, loss and the
gradients, gathered back to full size, with one process's, to $10^{-5}$ in float32.
[Training at scale](/transformers/parallel/training.md) combines the DTensor version with FSDP2, activation
checkpointing and sharded checkpoints, which the trainer's `--tp`, `--fsdp` and `--activation-checkpointing` use.
"""

import copy
import functools
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.mha import MultiHeadAttention


# ## Collectives along the sequence
#
# All-gather and reduce-scatter along `dim` of a `[batch, seq, d_model]` tensor. The collectives work on whole
# contiguous tensors, so the sequence shards are cut with `chunk` and joined with `cat`.
def _all_gather(x: torch.Tensor, dim: int, group) -> torch.Tensor:
    parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    # $t$ shards `[batch, seq / t, d_model]` to `[batch, seq, d_model]`
    return torch.cat(parts, dim=dim)


def _reduce_scatter(x: torch.Tensor, dim: int, group) -> torch.Tensor:
    parts = [p.contiguous() for p in x.chunk(dist.get_world_size(group), dim=dim)]
    out = torch.empty_like(parts[0])
    # `[batch, seq, d_model]` summed over processes, this process's shard `[batch, seq / t, d_model]`
    dist.reduce_scatter(out, parts, group=group)
    return out


def _split(x: torch.Tensor, dim: int, group) -> torch.Tensor:
    tp = dist.get_world_size(group)
    if x.shape[dim] % tp != 0:
        raise ValueError(f"sequence parallelism needs the sequence length ({x.shape[dim]}) to be divisible by "
                         f"the tensor-parallel size ({tp})")
    # this process's shard `[batch, seq / t, d_model]`
    return x.chunk(tp, dim=dim)[dist.get_rank(group)].contiguous()


def _all_reduce(x: torch.Tensor, group) -> torch.Tensor:
    x = x.clone(memory_format=torch.contiguous_format)
    dist.all_reduce(x, group=group)
    return x


# ## $f$: identity forward, all-reduce backward
#
# At a sublayer's input: every process receives the same $X$, and $\partial L / \partial X$ is the sum of the
# processes' partial gradients.
class CopyToTensorParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _all_reduce(grad, ctx.group), None


# ## $g$: all-reduce forward, identity backward
#
# At a sublayer's output: $Y = \sum_r Y_r$, the same on every process, and so is its gradient.
class ReduceFromTensorParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        return _all_reduce(x, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


# ## $\bar f$: all-gather forward, reduce-scatter backward (sequence parallel)
#
# At a sublayer's input under sequence parallelism: the normalised shards `[batch, seq / t, d_model]` are joined
# into the whole sequence for the column-parallel matrices; in the backward pass each position's partial
# gradients are summed over processes and each process keeps its own positions.
class GatherFromSequenceParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        return _all_gather(x, 1, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _reduce_scatter(grad, 1, ctx.group), None


# ## $\bar g$: reduce-scatter forward, all-gather backward (sequence parallel)
#
# At a sublayer's output under sequence parallelism: the partial sums $Y_r$ `[batch, seq, d_model]` are summed
# and each process keeps its $seq / t$ positions for the dropout, the residual and the next norm.
class ReduceScatterToSequenceParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        return _reduce_scatter(x, 1, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _all_gather(grad, 1, ctx.group), None


# ## Entering and leaving the sequence-parallel region
#
# The embeddings and the output head are replicated, so every process computes the whole embedded sequence and
# keeps its shard (split forward; the whole gradient is gathered backward), and at the top of the stack the
# shards are gathered for the head, whose gradient is again the same on every process (gather forward, split
# backward).
class ScatterToSequenceParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        return _split(x, 1, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _all_gather(grad, 1, ctx.group), None


class GatherToReplicated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        return _all_gather(x, 1, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _split(grad, 1, ctx.group), None


# ## Column-parallel linear layer
#
# $Y_r = X A_r + b_r$: the rows `r * out / t ... (r + 1) * out / t - 1` of `nn.Linear`'s `weight` `[out, in]` and
# of its bias. It is an `nn.Linear` with fewer outputs, so the attention's fused $[W^Q; W^K; W^V]$ product reads
# its weights as it does a plain layer's. Its input conjugate ($f$, or $\bar f$ under sequence parallelism) is not
# inside it: the query, key and value projections (and the gated network's $W_1$ and $V$) share one input, and the
# operator is applied once to it, at the output of the norm before the sublayer
# ([`shard_gpt`](#shard_gpt)); three $f$s would be right too, with three all-reduces where one suffices.
class ColumnParallelLinear(nn.Linear):
    """The rows of `linear` (its outputs) owned by `rank` of `tp`; `weight` `[out / tp, in]`."""

    def __init__(self, linear: nn.Linear, rank: int, tp: int):
        out_features, in_features = linear.weight.shape
        if out_features % tp != 0:
            raise ValueError(f"a column-parallel layer needs its {out_features} outputs to be divisible by "
                             f"the tensor-parallel size {tp}")
        super().__init__(in_features, out_features // tp, bias=linear.bias is not None,
                         device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(linear.weight.chunk(tp, dim=0)[rank])
            if linear.bias is not None:
                self.bias.copy_(linear.bias.chunk(tp, dim=0)[rank])


# ## Row-parallel linear layer
#
# $Y = \sum_r X_r B_r + b$: the columns `r * in / t ...` of `weight` `[out, in]`, a local product, then $g$ (or
# $\bar g$) sums the processes' parts. The bias is added once, after the sum; added before, it would be counted
# $t$ times.
class RowParallelLinear(nn.Linear):
    """The columns of `linear` (its inputs) owned by `rank` of `tp`; `weight` `[out, in / tp]`, bias whole."""

    def __init__(self, linear: nn.Linear, rank: int, tp: int, group, sequence_parallel: bool = False):
        out_features, in_features = linear.weight.shape
        if in_features % tp != 0:
            raise ValueError(f"a row-parallel layer needs its {in_features} inputs to be divisible by "
                             f"the tensor-parallel size {tp}")
        super().__init__(in_features // tp, out_features, bias=linear.bias is not None,
                         device=linear.weight.device, dtype=linear.weight.dtype)
        self.group = group
        self.sequence_parallel = sequence_parallel
        with torch.no_grad():
            self.weight.copy_(linear.weight.chunk(tp, dim=1)[rank])
            if linear.bias is not None:
                self.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # $X_r B_r$, `[batch, seq, out]`, this process's partial sum
        partial = F.linear(x, self.weight)
        if self.sequence_parallel:
            # $\bar g$: summed, and this process's positions kept, `[batch, seq / t, out]`
            out = ReduceScatterToSequenceParallel.apply(partial, self.group)
        else:
            # $g$: summed, `[batch, seq, out]` on every process
            out = ReduceFromTensorParallel.apply(partial, self.group)
        return out if self.bias is None else out + self.bias


# ## Dropout: two random streams
#
# A tensor that is the same on every process of the group (the residual stream of the plain split, the embeddings'
# output) must be dropped out with the same mask everywhere, or the copies drift apart and the gradients of the
# replicated parameters disagree. So every process of a tensor-parallel group seeds its default generator alike. A
# tensor of which each process holds a different part (its own heads' attention weights, its own hidden units, its
# own positions under sequence parallelism) needs masks that differ between processes, as a single process's mask
# differs between heads: identical masks on heads $i$ and $i + h/t$ would tie them together. Megatron-LM keeps a
# second generator state for this, the "model-parallel" stream, seeded with $seed + 2718 + r$
# (`model_parallel_cuda_manual_seed`), and `CudaRNGStatesTracker.fork()` swaps it in around the dropout of the
# sublayers.
#
# Here the second stream is derived instead of kept: on entering the fork, a seed is drawn from the default stream
# (the same draw on every process of the group) and $2718 + r$ is added; the sublayer's dropout draws from a
# generator seeded with that, and the default generator's state is put back on leaving. The masks differ between the
# processes of a group, and a rerun with the same seed draws them again. Because the seed comes from the default
# stream, two things need nothing more: a checkpointed layer recomputed in the backward pass
# (`torch.utils.checkpoint` restores the default generator's state) draws the same masks again, and a run resumed
# from a checkpoint (which saves the default generator's state) continues the same streams. Megatron, whose
# model-parallel stream is a state of its own, carries that state through its own activation checkpointing and its
# checkpoints. On the CPU the generator is torch's default CPU generator; on an accelerator, its own generator.
class ModelParallelRNG:
    """The model-parallel random stream of process `tp_rank` of a tensor-parallel group: `fork()` runs a block
    drawing from it."""

    def __init__(self, tp_rank: int, device: torch.device | str = "cpu", offset: int = 2718):
        self.tp_rank = tp_rank
        self.device = torch.device(device)
        self.offset = offset

    @contextmanager
    def fork(self) -> Iterator[None]:
        # From the CPU default generator, identical on every process of the group; no wait for an accelerator
        seed = int(torch.randint(0, 2 ** 62, (1,)).item()) + self.offset + self.tp_rank
        accelerator = self.device.type != "cpu"
        devices = [self.device] if accelerator else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type if accelerator else "cuda"):
            torch.random.default_generator.manual_seed(seed)
            if accelerator:
                torch.get_device_module(self.device.type).manual_seed(seed)
            yield

    # A module whose forward pass draws (while training) from the model-parallel stream. Only modules that drop
    # something out are wrapped, so that a model trained without dropout draws nothing.
    def wrap(self, module: nn.Module) -> None:
        if not _drops_out(module):
            return
        forward = module.forward

        @functools.wraps(forward)
        def forked(*args, **kwargs):
            if not module.training:
                return forward(*args, **kwargs)
            with self.fork():
                return forward(*args, **kwargs)

        module.forward = forked


def _drops_out(module: nn.Module) -> bool:
    """Whether `module` has a dropout with a non-zero probability (an `nn.Dropout`, or attention's own)."""
    return any((isinstance(m, nn.Dropout) and m.p > 0) or getattr(m, "dropout_prob", 0.0) > 0
               for m in module.modules())


# ## A model's shard
#
# The conversion takes a built single-process model and returns process $r$'s shard: a copy in which each
# attention and feed-forward network holds its slices, and the norms before the sublayers end with the input
# conjugate. The parameter names do not change, so that [`gather_parameters`](#gather_parameters) can put the
# slices back together under the single-process model's names. The boundary operators are forward hooks on the
# norms and embeddings (a hook may replace a module's output), which leaves the model's code untouched.
class _Sharder:
    def __init__(self, group, sequence_parallel: bool):
        self.group = group
        self.rank = dist.get_rank(group)
        self.tp = dist.get_world_size(group)
        self.sequence_parallel = sequence_parallel
        # Parameters that act on a shard of the sequence: their gradients are partial sums
        self.sequence_sharded: list[nn.Parameter] = []
        self.rng: ModelParallelRNG | None = None

    # The sublayers' dropout (on this process's heads and hidden units) draws from the model-parallel stream, and so
    # does the residual dropout under sequence parallelism (on this process's positions); without it the residual
    # stream is replicated and its dropout draws from the default stream, like the embeddings' dropout (which acts
    # before the sequence is split).
    def fork_random_streams(self, device: torch.device, sublayers: list[nn.Module],
                            residual_dropout: nn.Module | None) -> None:
        if self.rng is None:
            self.rng = ModelParallelRNG(self.rank, device)
        for module in sublayers:
            self.rng.wrap(module)
        if self.sequence_parallel and residual_dropout is not None:
            self.rng.wrap(residual_dropout)

    def check_divisible(self, what: str, count: int) -> None:
        if count % self.tp != 0:
            raise ValueError(f"{what} ({count}) must be divisible by the tensor-parallel size ({self.tp})")

    def column(self, linear: nn.Linear) -> ColumnParallelLinear:
        return ColumnParallelLinear(linear, self.rank, self.tp)

    def row(self, linear: nn.Linear) -> RowParallelLinear:
        row = RowParallelLinear(linear, self.rank, self.tp, self.group, self.sequence_parallel)
        if self.sequence_parallel and row.bias is not None:
            self.sequence_sharded.append(row.bias)
        return row

    # The norm before a sublayer: its output enters the sublayer through $f$ (or $\bar f$).
    def sublayer_input(self, norm: nn.Module) -> None:
        operator = GatherFromSequenceParallel if self.sequence_parallel else CopyToTensorParallel
        norm.register_forward_hook(lambda module, args, out: operator.apply(out, self.group))
        if self.sequence_parallel:
            self.sequence_sharded.extend(norm.parameters())

    # The embeddings' output is cut along the sequence, and the final norm's output joined again.
    def sequence_boundaries(self, embed: nn.Module, final_norm: nn.Module) -> None:
        if not self.sequence_parallel:
            return
        embed.register_forward_hook(lambda module, args, out: ScatterToSequenceParallel.apply(out, self.group))
        final_norm.register_forward_hook(lambda module, args, out: GatherToReplicated.apply(out, self.group))
        self.sequence_sharded.extend(final_norm.parameters())

    # The gradients of the sequence-sharded parameters are summed over the group as soon as they are accumulated.
    def finish(self, model: nn.Module) -> nn.Module:
        for parameter in self.sequence_sharded:
            parameter.register_post_accumulate_grad_hook(lambda p: dist.all_reduce(p.grad, group=self.group))
        return model


# ### The GPT's shard
#
# [`MultiHeadAttention`](/transformers/mha.md#MultiHeadAttention) keeps its code: it is told it has
# `heads / t` query heads and `kv_heads / t` key/value heads, and its four projections are replaced by their
# slices. [`FeedForward`](/transformers/feed_forward.md#FeedForward) likewise. The stack must be pre-norm, where
# each sublayer's input is a norm's output.
def shard_gpt(model: nn.Module, group=None, sequence_parallel: bool = False) -> nn.Module:
    """This process's tensor-parallel shard of a [`GPT`](/transformers/gpt/index.md#GPT) (a copy; `model` is left as it is)."""
    sharder = _Sharder(group, sequence_parallel)
    model = copy.deepcopy(model)
    for layer in model.encoder.layers:
        if not layer.pre_norm:
            raise ValueError("tensor parallelism here needs pre-norm layers (each sublayer's input is a norm's output)")
        attention: MultiHeadAttention = layer.self_attn
        sharder.check_divisible("the number of attention heads", attention.heads)
        sharder.check_divisible("the number of key/value heads", attention.kv_heads)
        attention.heads //= sharder.tp
        attention.kv_heads //= sharder.tp
        attention.query, attention.key, attention.value = (
            sharder.column(attention.query), sharder.column(attention.key), sharder.column(attention.value))
        attention.output = sharder.row(attention.output)

        ffn: FeedForward = layer.feed_forward
        sharder.check_divisible("the feed-forward hidden size d_ff", ffn.layer1.out_features)
        ffn.layer1 = sharder.column(ffn.layer1)
        if ffn.linear_v is not None:
            ffn.linear_v = sharder.column(ffn.linear_v)
        ffn.layer2 = sharder.row(ffn.layer2)

        sharder.sublayer_input(layer.norm_self_attn)
        sharder.sublayer_input(layer.norm_ff)
        sharder.fork_random_streams(ffn.layer2.weight.device, [attention, ffn], layer.dropout)
    sharder.sequence_boundaries(model.embed, model.encoder.norm)
    return sharder.finish(model)


# ### The Llama's shard
#
# The same cuts on [Llama's](/transformers/llama/index.md) own names: `wq`, `wk`, `wv` and `w1`, `w3` by columns,
# `wo` and `w2` by rows; RMSNorm takes LayerNorm's place.
def shard_llama(model: nn.Module, group=None, sequence_parallel: bool = False) -> nn.Module:
    """This process's tensor-parallel shard of a [Llama `Transformer`](/transformers/llama/index.md#Transformer) (a copy)."""
    sharder = _Sharder(group, sequence_parallel)
    model = copy.deepcopy(model)
    for block in model.layers:
        attention = block.attention
        sharder.check_divisible("the number of attention heads", attention.n_heads)
        sharder.check_divisible("the number of key/value heads", attention.n_kv_heads)
        attention.n_heads //= sharder.tp
        attention.n_kv_heads //= sharder.tp
        attention.wq, attention.wk, attention.wv = (
            sharder.column(attention.wq), sharder.column(attention.wk), sharder.column(attention.wv))
        attention.wo = sharder.row(attention.wo)

        ffn = block.feed_forward
        sharder.check_divisible("the feed-forward hidden size", ffn.w1.out_features)
        ffn.w1, ffn.w3 = sharder.column(ffn.w1), sharder.column(ffn.w3)
        ffn.w2 = sharder.row(ffn.w2)

        sharder.sublayer_input(block.attention_norm)
        sharder.sublayer_input(block.ffn_norm)
    sharder.sequence_boundaries(model.tok_embeddings, model.norm)
    return sharder.finish(model)


# ## Back to full size
#
# The slices of every process, joined along the dimension they were cut: a column-parallel layer's along the
# outputs (`weight` dim 0, and its bias), a row-parallel layer's `weight` along the inputs (dim 1). Replicated
# parameters are the same everywhere and taken as they are. With `grads=True` the gradients are gathered instead,
# which is how the tests compare a shard's gradients with one process's.
def gather_parameters(shard: nn.Module, group=None, grads: bool = False) -> dict[str, torch.Tensor]:
    """`{name: full tensor}` of a shard's parameters (or their gradients), under the single-process names."""
    cut_dims = {}
    for name, module in shard.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, ColumnParallelLinear):
            cut_dims[prefix + "weight"] = 0
            cut_dims[prefix + "bias"] = 0
        elif isinstance(module, RowParallelLinear):
            cut_dims[prefix + "weight"] = 1
    full = {}
    for name, parameter in shard.named_parameters():
        tensor = parameter.grad if grads else parameter.detach()
        if tensor is None:
            raise ValueError(f"parameter {name} has no gradient to gather")
        full[name] = _all_gather(tensor, cut_dims[name], group) if name in cut_dims else tensor.clone()
    return full

r"""
---
title: Tensor parallelism with DTensor
summary: The Megatron split of the GPT and the Llama applied with PyTorch's DTensor - parallelize_module with ColwiseParallel, RowwiseParallel, SequenceParallel - as torchtitan does, and proved equal to the split written out.
---

# Tensor parallelism with DTensor

[The written-out split](/transformers/parallel/index.md) shows every collective. In production the same split
is declared, not written: PyTorch's [DTensor](https://pytorch.org/docs/stable/distributed.tensor.html) is a
tensor that knows how it is laid out over a [device mesh](https://pytorch.org/docs/stable/distributed.html#devicemesh)
(`Shard(dim)`, `Replicate()`, or `Partial()` for a sum not yet taken), and
[`parallelize_module`](https://pytorch.org/docs/stable/distributed.tensor.parallel.html) turns a module's
parameters into DTensors according to a plan, as [torchtitan](https://github.com/pytorch/torchtitan) does for
Llama:

| written out | DTensor plan | what it does |
|---|---|---|
| [`ColumnParallelLinear`](/transformers/parallel/index.md#ColumnParallelLinear) | `ColwiseParallel()` | `weight` `Shard(0)`; output `Shard(-1)`, handed on as the local tensor |
| [`RowParallelLinear`](/transformers/parallel/index.md#RowParallelLinear) and $g$ | `RowwiseParallel()` | `weight` `Shard(1)`; output `Partial` made `Replicate()` (an all-reduce) |
| $\bar g$ (reduce-scatter) | `RowwiseParallel(output_layouts=Shard(1))` | `Partial` made `Shard(1)`: a reduce-scatter |
| norms on a sequence shard | `SequenceParallel()` | the norm's parameters `Replicate()`, its input and output `Shard(1)` |
| $\bar f$ (all-gather) | `PrepareModuleInput(Shard(1) → Replicate())` on the attention and the feed-forward network | an all-gather before the sublayer |
| entering and leaving | `PrepareModuleOutput` on the embeddings (`Replicate()` → `Shard(1)`) and on the final norm (`Shard(1)` → `Replicate()`) | split, and gather |

The backward pass follows from the layouts: the gradient of a `Replicate()` input whose use was sharded arrives
`Partial` and is all-reduced ($f$), and the norms' gains, `Replicate()` parameters used on `Shard(1)` inputs, get
their gradients summed over the group, which the written-out version did with a hook.

Two things the plan needs from the model. Attention is told its local number of heads, as in the written-out
version and in torchtitan, since the projections hand on local tensors of `heads / t` heads. And this package's
[attention](/transformers/mha.md#MultiHeadAttention) normally stacks $W^Q$, $W^K$, $W^V$ into one product; a
DTensor weight must go through its module's `forward`, where the plan's hooks lay out the input and output, so
`fuse_projections` is turned off.

**Dropout.** What DTensor does with random numbers (torch 2.13, `torch.distributed.tensor._random`): a random
operation on a DTensor goes through an `OffsetBasedRNGTracker`, created at the first such operation, which makes
every process start from rank 0's generator state (a broadcast) and gives each shard its own offset into that one
Philox stream, so that a sharded tensor gets the mask one device would draw for the whole tensor and a replicated
one the same mask everywhere. That tracker exists only for CUDA-like devices: on a CPU mesh `is_rng_supported_mesh`
is false (`torch.cpu` has no `set_rng_state`) and the tracker refuses to be built, so a random operation on a
DTensor runs on each process's local tensor with its own default generator. And most of this model's dropout never
sees a DTensor: the plan hands on local tensors inside the sublayers (attention weights of the local heads, hidden
units), and without sequence parallelism the residual stream is a plain tensor too; only the residual dropout under
sequence parallelism acts on a DTensor (`Shard(1)`). So `tensor_parallelize` uses the written-out split's
[two random streams](/transformers/parallel/index.md#ModelParallelRNG): the sublayers (and, under sequence
parallelism, the residual dropout) draw from the model-parallel stream, the rest from the default generator, which
the processes of a group seed alike (the trainer does). On CUDA the tracker's per-shard offsets then apply within
each process's model-parallel stream (not run here: these tests have no GPU).

The test (`tests/test_parallel.py`) runs both versions in 2 processes on gloo and compares logits, loss and
gradients with each other and with one process, and checks the dropout masks of both.
"""

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, PrepareModuleOutput,
                                               RowwiseParallel, SequenceParallel, parallelize_module)

from labml_nn.transformers.parallel import ModelParallelRNG


# ## The plan of one layer
#
# `attention`, `wq`... are the names of the layer's modules; the plan is the same for both families, with their own
# names. Under sequence parallelism the residual stream is a `Shard(1)` DTensor between sublayers, so the row-parallel
# outputs stay DTensors (`use_local_output=False`) to be added to it.
def _layer_plan(attention: str, columns: list[str], row: str, ffn: str, ffn_columns: list[str], ffn_row: str,
                norms: list[str], attention_inputs: tuple[bool, ...], sequence_parallel: bool) -> dict:
    if not sequence_parallel:
        plan = {f"{attention}.{name}": ColwiseParallel() for name in columns}
        plan[f"{attention}.{row}"] = RowwiseParallel()
        plan.update({f"{ffn}.{name}": ColwiseParallel() for name in ffn_columns})
        plan[f"{ffn}.{ffn_row}"] = RowwiseParallel()
        return plan
    plan = {name: SequenceParallel() for name in norms}
    # The attention's positional arguments that carry the stream (`True`) are gathered; the others pass as they are.
    plan[attention] = PrepareModuleInput(input_layouts=tuple(Shard(1) if x else None for x in attention_inputs),
                                         desired_input_layouts=tuple(Replicate() if x else None for x in attention_inputs))
    plan.update({f"{attention}.{name}": ColwiseParallel() for name in columns})
    plan[f"{attention}.{row}"] = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
    plan[ffn] = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))
    plan.update({f"{ffn}.{name}": ColwiseParallel() for name in ffn_columns})
    plan[f"{ffn}.{ffn_row}"] = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
    return plan


# The embeddings' output enters the sequence-parallel region (split). The final norm is both on a sequence shard
# (`SequenceParallel`, its parameters replicated) and the exit of the region (its output gathered for the replicated
# head); `parallelize_module` takes one style per module and call, so the exit is a second call.
def _sequence_boundaries(model: nn.Module, mesh: DeviceMesh, embed: str, final_norm: str) -> None:
    parallelize_module(model, mesh, {
        embed: PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=Shard(1),
                                   use_local_output=False),
        final_norm: SequenceParallel()})
    parallelize_module(model, mesh, {
        final_norm: PrepareModuleOutput(output_layouts=Shard(1), desired_output_layouts=Replicate(),
                                        use_local_output=True)})


def _check_divisible(what: str, count: int, tp: int) -> None:
    if count % tp != 0:
        raise ValueError(f"{what} ({count}) must be divisible by the tensor-parallel size ({tp})")


# ## Parallelizing a model
#
# In place, as `parallelize_module` works. The GPT's layers are [`TransformerLayer`](/transformers/models.md#TransformerLayer)s
# (attention `self_attn` called with `(z, z, z, mask)`: three inputs to lay out), the Llama's are
# `TransformerBlock`s (attention called with `(x, freqs_cis, cache, start_pos, mask)`: one).
def tensor_parallelize(model: nn.Module, mesh: DeviceMesh, sequence_parallel: bool = False) -> nn.Module:
    """Apply the Megatron split to a [`GPT`](/transformers/gpt/index.md#GPT) or a
    [Llama `Transformer`](/transformers/llama/index.md#Transformer) over the 1-D `mesh`; returns `model`."""
    from labml_nn.transformers.gpt import GPT
    from labml_nn.transformers.llama import Transformer as Llama

    tp = mesh.size()
    # The two random streams of the written-out split (the Llama has no dropout)
    rng = ModelParallelRNG(mesh.get_local_rank(), mesh.device_type)
    if isinstance(model, GPT):
        layers, embed, final_norm = model.encoder.layers, "embed", "encoder.norm"
        for layer in layers:
            if not layer.pre_norm:
                raise ValueError("tensor parallelism here needs pre-norm layers (each sublayer's input is a norm's output)")
            attention = layer.self_attn
            _check_divisible("the number of attention heads", attention.heads, tp)
            _check_divisible("the number of key/value heads", attention.kv_heads, tp)
            _check_divisible("the feed-forward hidden size d_ff", layer.feed_forward.layer1.out_features, tp)
            attention.heads //= tp
            attention.kv_heads //= tp
            attention.fuse_projections = False
            ffn_columns = ["layer1"] + (["linear_v"] if layer.feed_forward.linear_v is not None else [])
            plan = _layer_plan("self_attn", ["query", "key", "value"], "output", "feed_forward", ffn_columns,
                               "layer2", ["norm_self_attn", "norm_ff"], (True, True, True, False), sequence_parallel)
            parallelize_module(layer, mesh, plan)
            rng.wrap(layer.self_attn)
            rng.wrap(layer.feed_forward)
            if sequence_parallel:
                rng.wrap(layer.dropout)
    elif isinstance(model, Llama):
        embed, final_norm = "tok_embeddings", "norm"
        for block in model.layers:
            attention = block.attention
            _check_divisible("the number of attention heads", attention.n_heads, tp)
            _check_divisible("the number of key/value heads", attention.n_kv_heads, tp)
            _check_divisible("the feed-forward hidden size", block.feed_forward.w1.out_features, tp)
            attention.n_heads //= tp
            attention.n_kv_heads //= tp
            plan = _layer_plan("attention", ["wq", "wk", "wv"], "wo", "feed_forward", ["w1", "w3"], "w2",
                               ["attention_norm", "ffn_norm"], (True, False, False, False, False),
                               sequence_parallel)
            parallelize_module(block, mesh, plan)
    else:
        raise ValueError(f"tensor_parallelize knows the GPT and the Llama, got {type(model).__name__}")
    if sequence_parallel:
        _sequence_boundaries(model, mesh, embed, final_norm)
    return model


# ## Back to full size
#
# A DTensor parameter's gradient is a DTensor; `full_tensor()` gathers it. Plain (replicated) parameters are whole.
def full_gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    """`{name: full gradient}` of a model parallelized by `tensor_parallelize`."""
    return {name: p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad.clone()
            for name, p in model.named_parameters()}

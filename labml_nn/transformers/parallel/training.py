r"""
---
title: Training at scale - FSDP2, tensor parallelism on a 2-D mesh, activation checkpointing, sharded checkpoints
summary: The pieces a trainer needs to train the GPT and the Llama over many processes with PyTorch's own engine - a device mesh, FSDP2's fully_shard combined with tensor parallelism, activation checkpointing, and torch.distributed.checkpoint checkpoints that resume at another world size.
---

# Training at scale

[Tensor parallelism](/transformers/parallel/dtensor.md) splits each layer over a few GPUs of one server. To go further
the model states must be split over the data-parallel processes too: **fully sharded data parallelism**
(FSDP, [ZeRO-3](https://arxiv.org/abs/1910.02054)). Each of $d$ processes keeps $1/d$ of every parameter,
gradient and optimizer state; before a layer runs, its parameters are all-gathered, and after its backward pass its
gradients are reduce-scattered, each process keeping the sum of its own shard. PyTorch's FSDP2
([`fully_shard`](https://pytorch.org/docs/stable/distributed.fsdp.fully_shard.html)) represents each shard as a DTensor
`Shard(0)`, so it composes with tensor parallelism on a **2-D device mesh**: `tp` processes in a row share the data
and split the matrices; the `dp` rows see different data and shard the states.

```
mesh (dp = 2, tp = 2):   [[0, 1],     row: a tensor-parallel group (same batch)
                          [2, 3]]     column: a data-parallel group (FSDP shards, different batches)
```

**Activation checkpointing** keeps only each layer's input during the forward pass and recomputes the layer in the
backward pass: memory falls from $L$ layers' activations to $L$ inputs and one layer's activations, for one more
forward pass ([the plan](/transformers/parallel/plan.md) has the numbers).

**Sharded checkpoints.** A checkpoint of a sharded model written by one process would first gather everything on it.
[`torch.distributed.checkpoint`](https://pytorch.org/docs/stable/distributed.checkpoint.html) (DCP) writes each
process's shards in parallel with a description of the whole tensors, and on loading each process reads the pieces
that overlap its own shards, whatever the layout that wrote them: a checkpoint saved by 2 processes loads on 1 or on
4. [`get_state_dict`](https://pytorch.org/docs/stable/distributed.checkpoint.html#torch.distributed.checkpoint.state_dict.get_state_dict)
names the optimizer's states by parameter names (not by their index in the optimizer), which is what makes them
movable between layouts. The trainer never writes into the shard directory its `checkpoint.pt` names: each save
writes a new one and replaces `checkpoint.pt` (atomically) before removing the old one, so that a crash in the middle
of a save leaves the previous checkpoint whole ([the trainer](/experiments/trainer.md#sharded_checkpoint_dir)).

**Gradient accumulation.** Summing the gradients of several micro-batches before a step must not communicate for
each of them: FSDP2's `set_requires_gradient_sync(False)` makes every FSDP unit keep its unsharded gradients across
micro-batches and reduce-scatter the sum once, after the last. With tensor parallelism but without FSDP, the
data-parallel rows average their gradients [once per step](#all_reduce_gradients).

The tests run ten steps of FSDP2 on 2 processes and of FSDP2 with tensor parallelism on a 2 x 2 mesh against
one process on the same global batch, save a checkpoint with 2 processes that is loaded by 1 and by 4, and run one
trainer step with gradient accumulation under FSDP2, FSDP2 with tensor parallelism, and tensor parallelism over two
data-parallel rows, against one process, counting the collectives before each micro-batch.
"""

import functools
from pathlib import Path

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.utils.checkpoint import checkpoint


def layers_of(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a [`GPT`](/transformers/gpt/index.md#GPT) or a Llama `Transformer`."""
    if hasattr(model, "encoder") and hasattr(model.encoder, "layers"):
        return model.encoder.layers
    if isinstance(getattr(model, "layers", None), nn.ModuleList):
        return model.layers
    raise ValueError(f"expected a GPT or a Llama Transformer, got {type(model).__name__}")


# ## The device mesh
#
# `world_size` processes as `dp` rows of `tp`; a set-up that cannot be laid out is a clear error, before any
# collective would hang.
def device_mesh(world_size: int, tp: int = 1, fsdp: bool = False, device_type: str = "cpu") -> DeviceMesh:
    """A `("dp", "tp")` mesh of `world_size` processes."""
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ValueError(f"--tp must be a positive integer, got {tp!r}")
    if tp > world_size:
        raise ValueError(f"--tp {tp} is larger than the number of processes ({world_size}); "
                         f"start {tp} processes or more with torchrun --nproc_per_node")
    if world_size % tp:
        raise ValueError(f"the number of processes ({world_size}) must be a multiple of --tp ({tp})")
    if fsdp and world_size // tp < 2:
        raise ValueError(f"--fsdp shards over the data-parallel processes, and there is only one "
                         f"({world_size} processes / --tp {tp}); start several processes with torchrun")
    return init_device_mesh(device_type, (world_size // tp, tp), mesh_dim_names=("dp", "tp"))


# ## Activation checkpointing
#
# Each layer's `forward` becomes a checkpointed call of itself. The layers stay where they are, so parameter names
# (and checkpoints) do not change. `use_reentrant=False` is PyTorch's recommended implementation: it works with
# keyword arguments, with inputs that need no gradient, and with FSDP2.
def checkpoint_layers(model: nn.Module) -> nn.Module:
    """Recompute every transformer layer of `model` in the backward pass; returns `model`."""
    for layer in layers_of(model):
        layer.forward = functools.partial(_checkpointed, layer.forward)
    return model


def _checkpointed(forward, *args, **kwargs):
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


# ## Putting it together
#
# The order matters, as in torchtitan: tensor parallelism first (it turns the weights into DTensors on the `tp`
# mesh), then activation checkpointing, then FSDP2 on the `dp` mesh: each layer one FSDP unit (its all-gather
# overlaps the previous layer's compute), and the root for what is left (embeddings, final norm, head).
def parallelize(model: nn.Module, mesh: DeviceMesh, *, fsdp: bool = False, sequence_parallel: bool = False,
                activation_checkpointing: bool = False) -> nn.Module:
    """Apply tensor parallelism (if the mesh's `tp` > 1), activation checkpointing and FSDP2, in place."""
    from torch.distributed.fsdp import fully_shard
    from labml_nn.transformers.parallel.dtensor import tensor_parallelize

    if mesh["tp"].size() > 1:
        tensor_parallelize(model, mesh["tp"], sequence_parallel)
    if activation_checkpointing:
        checkpoint_layers(model)
    if fsdp:
        for layer in layers_of(model):
            fully_shard(layer, mesh=mesh["dp"])
        fully_shard(model, mesh=mesh["dp"])
    return model


# ## Sharded checkpoints
#
# The state is the model's and the optimizer's state dictionaries as DCP sees them (DTensors stay sharded) and the
# step. Before loading, the names and full shapes the checkpoint describes are compared with the model's, so that a
# checkpoint of another model is a clear error naming the first difference, not a failure deep inside DCP.
def save_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Write model, optimizer and `step` to the directory `path` (every process calls it)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state, "step": torch.tensor(step)},
             checkpoint_id=str(path))


def _full_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)  # a DTensor's shape is its full (global) shape


def check_checkpoint(path: str | Path, model: nn.Module) -> None:
    """`ValueError` unless the checkpoint at `path` holds exactly `model`'s parameters with their shapes."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    path = Path(path)
    if not (path / ".metadata").is_file():
        raise ValueError(f"{path} is not a sharded checkpoint (no .metadata file)")
    saved = {key[len("model."):]: tuple(meta.size) for key, meta in
             dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata.items()
             if key.startswith("model.") and isinstance(meta, TensorStorageMetadata)}
    expected = {key: _full_shape(value) for key, value in get_model_state_dict(model).items()}
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} is a checkpoint of another model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    for key, shape in expected.items():
        if saved[key] != shape:
            raise ValueError(f"{path} is a checkpoint of another model: {key} has shape {list(saved[key])} there, "
                             f"{list(shape)} here")


def load_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load what [`save_sharded`](#save_sharded) wrote, resharded to this run's layout; returns the step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    check_checkpoint(path, model)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state, "step": torch.tensor(0)}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return int(state["step"])


# The model alone, for using a trained model: [`load_run`](/experiments/char_lm.md#load_run) of a sharded run.
def load_sharded_model(path: str | Path, model: nn.Module) -> None:
    """Load the model's weights from a checkpoint written by [`save_sharded`](#save_sharded), in any layout."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    check_checkpoint(path, model)
    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])


# ## Data parallelism beside tensor parallelism, without FSDP
#
# `--tp` over more processes than `tp` makes `dp` rows that see different data; without `--fsdp`, each row holds the
# whole (tensor-parallel) model, and the gradients must be averaged over the rows before each optimizer step. DDP
# handles plain tensors (PyTorch's bridge to it, the private `torch.distributed.tensor.parallel.ddp`, swaps the
# DTensor parameters for local tensors and back around every forward pass, "for now" and untested on nested
# modules), so it is done here, once per step after the last micro-batch: the gradients of this process's shards (a
# DTensor's local tensor, of which the processes with the same `tp` rank in the other rows hold the same slice)
# flattened into one buffer, one all-reduce over the `dp` group, divided by `dp`. That is DDP's bucketing with a
# single bucket and without its overlap with the backward pass.
def all_reduce_gradients(model: nn.Module, dp_mesh: DeviceMesh) -> None:
    """Average the gradients of `model` over the data-parallel processes of `dp_mesh`, in place."""
    import torch.distributed as dist

    grads = [p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
             for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    # all gradients, flattened and concatenated, `[total numel]`
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=dp_mesh.get_group())
    flat /= dp_mesh.size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


# ## The optimizer
#
# Under tensor parallelism alone the embeddings, norms (without sequence parallelism) and output head stay plain
# tensors beside the DTensor weights. AdamW's fused and multi-tensor kernels take lists of one kind, so such an
# optimizer updates one parameter at a time (FSDP2 makes every parameter a DTensor, and keeps the fast kernels).
def unfuse_if_mixed(optimizer: torch.optim.Optimizer) -> None:
    kinds = {hasattr(p, "to_local") for group in optimizer.param_groups for p in group["params"]}
    if len(kinds) > 1:
        for group in optimizer.param_groups:
            group["fused"], group["foreach"] = False, False


# ## Gradient clipping
#
# The global norm $\sqrt{\sum_i \lVert g_i \rVert^2}$ over parameters that may be DTensors on different meshes
# (tensor-parallel weights on the 2-D mesh, the embeddings on the `dp` mesh only), which
# `torch.nn.utils.clip_grad_norm_` cannot stack together: each norm is taken as a full tensor first.
def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = [g.norm() for g in grads]
    norms = [n.full_tensor() if hasattr(n, "full_tensor") else n for n in norms]
    total = torch.stack(norms).norm()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)
    return total


# ## Back to full size
def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """`{name: full tensor}` of the parameters, DTensors gathered (every process calls it)."""
    return {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
            for name, p in model.named_parameters()}

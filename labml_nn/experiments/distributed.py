r"""
---
title: Training on several processes
summary: The same experiment commands under torchrun with DistributedDataParallel: one process per GPU (or CPU worker), gloo or NCCL, only rank 0 writes.
---

# Training on several processes

Every experiment runs unchanged under
[`torchrun`](https://pytorch.org/docs/stable/elastic/run.html), one process per GPU:

```bash
torchrun --standalone --nproc_per_node=8 -m labml_nn.transformers.experiments.gpt --preset default
```

`torchrun` starts the processes and tells each its `RANK`, `LOCAL_RANK` and `WORLD_SIZE` through the
environment. Each process builds the same model (the same seed), wraps it in
[DistributedDataParallel](https://pytorch.org/docs/stable/notes/ddp.html), which copies rank 0's weights to
the others and averages the gradients across processes during the backward pass, so every process takes
the same optimizer step and the models stay identical. The processes talk over
[NCCL](https://developer.nvidia.com/nccl) on CUDA and over gloo on CPU (which is how the tests run two
processes on a laptop).

**How the work is split.** `batch_size` in the [trainer's configuration](/experiments/trainer.md#TrainerConfig)
is the *global* batch of one optimizer step. Every process draws the same global batch from an identically
seeded data generator (drawing offsets is nearly free) and keeps only its own slice, so the processes see
different data, and a run gives the same result on one process or eight, up to floating-point rounding.
Everything else that is random (dropout) is seeded per rank, so that processes do not drop the same units.

**Who writes.** Only rank 0 shows a progress bar, writes files and checkpoints; the training loss that it
logs is averaged over all processes.

**Beyond copies of the model.** With `--tp N` (tensor parallelism) or `--fsdp` (FSDP2, parameters, gradients and
optimizer states sharded) the trainer lays the processes out as a (data-parallel, tensor-parallel) mesh instead of
wrapping the model in DDP; `--activation-checkpointing` recomputes each layer in the backward pass. Such runs write
sharded checkpoints that resume on another number of processes. See
[training at scale](/transformers/parallel/training.md):

```bash
torchrun --standalone --nproc_per_node=4 -m labml_nn.transformers.experiments.gpt --tp 2 --fsdp
```
"""

import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from labml_nn.transformers.utils import get_device


# ## Where this process stands
#
# A plain run is the special case `rank = 0`, `world_size = 1`, so the trainer has one code path.
@dataclass(frozen=True)
class DistributedContext:
    """This process's rank among `world_size` processes, and the device it trains on."""
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes files (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


# ## Joining the process group
#
# Under `torchrun` the environment holds `WORLD_SIZE`; without it this is a single process and nothing
# is initialised. Each CUDA process takes the GPU numbered by its `LOCAL_RANK` on its machine.
def setup(device_name: str = "auto") -> DistributedContext:
    """Join the process group when started by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext(0, 1, 0, get_device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = get_device(device_name)
    if device.type == "mps":
        raise ValueError("distributed training is not supported on device 'mps'; use --device cpu or cuda")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return DistributedContext(rank, world_size, local_rank, device)


def teardown(ctx: DistributedContext) -> None:
    """Leave the process group (a no-op for a single process)."""
    if ctx.is_distributed and dist.is_initialized():
        leave_process_group()


# Two races end a gloo run with "terminate called without an active exception" (SIGABRT) now and then, after all
# its work is done. One: a process whose peer tears the group down while it is still in a collective aborts, so
# every process first waits for the others at a barrier. Two: gloo's worker thread releases a finished collective's
# tensors *after* the caller has seen it complete, and releasing a tensor that Python knew takes the GIL; if the
# interpreter is shutting down by then, the thread is killed inside a destructor, which aborts the process (seen in
# a core dump of this project's tests, in `ProcessGroupGloo::runLoop`; pytorch/pytorch#179291). Sleeping briefly
# after leaving releases the GIL, so the thread finishes while the interpreter is whole.
def leave_process_group() -> None:
    """Wait for every process, leave the default process group, and let gloo's threads finish."""
    dist.barrier()
    dist.destroy_process_group()
    time.sleep(0.2)


# ## Wrapping the model
#
# DistributedDataParallel broadcasts rank 0's parameters and buffers when it is built, and all-reduces
# (averages) gradients in buckets while the backward pass is still running, overlapping communication
# with computation.
def wrap_model(model: nn.Module, ctx: DistributedContext) -> nn.Module:
    """`model` wrapped in DistributedDataParallel when there are several processes, else `model` itself."""
    if not ctx.is_distributed:
        return model
    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


# ## Collectives the trainer needs
#
# The mean of a tensor over all processes (losses for logging and evaluation). It is called at logging
# steps only, where the trainer reads the value anyway.
def all_reduce_mean(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Mean of `tensor` over processes (a copy; the tensor itself for a single process)."""
    if not ctx.is_distributed:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / ctx.world_size


# Whether any process has `flag` set. A Ctrl-C reaches every process of a terminal at slightly different
# times; stopping only once all agree keeps them from waiting forever on each other's collectives.
def any_process(flag: bool, ctx: DistributedContext) -> bool:
    """`flag` or-ed over processes."""
    if not ctx.is_distributed:
        return flag
    tensor = torch.tensor(float(flag), device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


# Every process's copy of a small picklable object, in rank order (random-number-generator states for checkpoints).
def gather_objects(obj: object, ctx: DistributedContext) -> list:
    """`[obj of rank 0, obj of rank 1, ...]`, on every process."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


# Rank 0's value of a small picklable object on every process (the run directory, named by rank 0's clock).
def broadcast_object(obj: object, ctx: DistributedContext) -> object:
    """Rank 0's `obj`, on every process."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]

r"""
---
title: The trainer
summary: One training loop for every experiment: AdamW with weight-decay groups, warm-up and cosine decay, clipping, accumulation, mixed precision, evaluation, atomic checkpoints, exact resume, a Ctrl-C checkpoint and a NaN guard.
---

# The trainer

Every experiment hands its model, its data and its loss to this loop, so that what a person expects from
training (a schedule, checkpoints that can be resumed, a progress bar, plots) is written once.

**Optimisation.** [AdamW](https://arxiv.org/abs/1711.05101) with weight decay on the weights of linear layers
only: decaying embeddings, norms' gains and biases towards zero only hurts. A model may choose its own groups
with a `configure_optimizers(weight_decay, lr, betas)` method (the [GPT](/transformers/gpt/index.md) does).
The learning rate rises linearly for `warmup` steps (Adam's second-moment estimates are poor at first, so
large early steps are unstable) and then follows a cosine down to `min_lr` at `max_steps`:

$$
\eta_t = \begin{cases}
\eta \,\dfrac{t + 1}{T_{warm}} & t < T_{warm} \\[1ex]
\eta_{min} + \tfrac{1}{2} (\eta - \eta_{min}) \Big(1 + \cos\big(\pi \tfrac{t - T_{warm}}{T - T_{warm}}\big)\Big) & t \ge T_{warm}
\end{cases}
$$

`--schedule noam` takes instead [the Transformer paper's schedule](#Noam), warm-up then decay with the inverse
square root of the step. The gradient's global norm is clipped to `clip`. A step may accumulate the gradients of `grad_accum`
micro-batches; each micro-batch loss is divided by `grad_accum`, so the gradient is that of the mean loss
over the whole batch, whatever the split.

**Speed.** Nothing inside a step waits for the device: losses are summed on the device and read only at
logging steps. On CUDA the forward pass runs under bfloat16 autocast (float16 with a gradient scaler on GPUs
without bfloat16), float32 matrix products use TF32, batches are copied from pinned memory without blocking,
and `--compile` compiles the model with `torch.compile`.

**Outputs.** In the run directory: `metrics.jsonl` (one line per logging step: step, train loss, validation
loss at evaluation steps, tokens/s, learning rate), `loss.png` (the curves), and `checkpoint.pt`; with
`--tensorboard`, the same metrics for TensorBoard in `tensorboard/`.
The [command line](/experiments/cli.md) adds `config.json` and `result.json`.

**Checkpoints** hold the model, the optimizer, the schedule, the gradient scaler, the step, every random
generator's state (PyTorch's on each process, Python's, NumPy's and the data sampler's) and the configuration
as plain data, so that they load with `torch.load(..., weights_only=True)` (which refuses to run arbitrary
pickled code) and a resumed run continues *exactly* as the uninterrupted one would have on CPU. They are written
atomically (a temporary file, then a rename) every `checkpoint_every` steps and at the end. A sharded run (`--tp`,
`--fsdp`) writes its weights and optimizer states into a new shard directory beside it each time, which
`checkpoint.pt` names; the previous one is removed only once `checkpoint.pt` has been replaced
([sharded checkpoints](#sharded_checkpoint_dir)).

**When things go wrong.** Ctrl-C (or SIGTERM, as a cluster sends before pre-empting a job) stops the run within
seconds wherever it is: a training step in flight completes, an evaluation or sampling is abandoned, and the
checkpoint of the last completed step is written ([stopping](#StopRequest)); a second signal exits at once. A loss that is not finite stops the
run with a message; the state is checked before every checkpoint, so the last good checkpoint is never
overwritten by a broken one.
"""

import copy
import json
import math
import random
import secrets
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.data import atomic_write_bytes, write_atomically
from labml_nn.experiments.distributed import (DistributedContext, all_reduce_mean, any_process, broadcast_object,
                                              gather_objects, wrap_model)
from labml_nn.transformers.utils import count_parameters


# ## Configuration
#
# Every field is a command-line option of every experiment (`--lr 3e-4`, `--max-steps 500`, ...).
@dataclass
class TrainerConfig:
    """How to train: optimizer, schedule, batch, evaluation, logging, checkpoints and precision."""
    max_steps: int = 5000
    """Number of optimizer steps."""
    batch_size: int = 64
    """Sequences per optimizer step, over all gradient-accumulation steps and processes."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (each process's micro-batch is batch_size / (grad_accum * processes))."""
    lr: float = 1e-3
    """Peak learning rate, reached at the end of the warm-up."""
    min_lr: float = 1e-4
    """Learning rate at the end of the cosine decay."""
    warmup: int = 100
    """Steps of linear warm-up."""
    schedule: Literal["cosine", "noam"] = "cosine"
    """Learning-rate schedule: warm-up then cosine decay to min_lr, or the Transformer paper's warm-up then inverse
    square root ("noam", where lr is the factor and noam_d_model the width)."""
    noam_d_model: int = 512
    """The width d_model in the noam schedule's d_model^-1/2."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW's beta1 and beta2."""
    weight_decay: float = 0.1
    """AdamW's decoupled weight decay, on linear layers' weights only."""
    clip: float = 1.0
    """Maximum global gradient norm; 0 turns clipping off."""
    eval_every: int = 250
    """Steps between evaluations on the validation data; 0 evaluates only at the end."""
    eval_iters: int = 100
    """Batches per evaluation (the same batches every time, so that evaluations are comparable); a run of fewer
    steps evaluates on max_steps batches."""
    log_every: int = 10
    """Steps between logged metrics (the only points where the loop waits for the device)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints; 0 writes one only at the end."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Autocast precision; auto is bfloat16 on CUDA GPUs that support it, float16 on older ones, float32 elsewhere."""
    compile: bool = False
    """Compile the model with torch.compile."""
    tensorboard: bool = False
    """Also write the metrics for TensorBoard, in the run's tensorboard/ (needs pip install 'labml_nn[tensorboard]')."""
    tp: int = 1
    """Tensor-parallel size: each layer's matrices split over this many processes, with sequence parallelism
    (Megatron-LM; see labml_nn.transformers.parallel). The processes are a (dp, tp) mesh."""
    fsdp: bool = False
    """Shard parameters, gradients and optimizer states over the data-parallel processes (FSDP2) instead of DDP;
    with tp > 1 on a 2-D mesh. Checkpoints are then sharded (torch.distributed.checkpoint)."""
    activation_checkpointing: bool = False
    """Recompute each transformer layer in the backward pass instead of storing its activations."""

    def __post_init__(self):
        self.betas = tuple(self.betas)
        for name in ("max_steps", "batch_size", "grad_accum", "eval_iters", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.schedule not in ("cosine", "noam"):
            raise ValueError(f"schedule must be cosine or noam, got {self.schedule!r}")
        if self.schedule == "noam" and (self.warmup < 1 or self.noam_d_model < 1):
            raise ValueError(f"the noam schedule needs warmup >= 1 and noam_d_model >= 1, got warmup={self.warmup}, "
                             f"noam_d_model={self.noam_d_model}")
        for name in ("warmup", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.clip < 0:
            raise ValueError(f"clip must be non-negative (0 turns clipping off), got {self.clip}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by grad_accum ({self.grad_accum})")
        if isinstance(self.tp, bool) or not isinstance(self.tp, int) or self.tp < 1:
            raise ValueError(f"tp must be a positive integer, got {self.tp!r}")
        for name in ("compile", "tensorboard", "fsdp", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be one of auto, float32, bfloat16, float16, got {self.dtype!r}")


# ## The learning-rate schedule
#
# A callable object rather than a closure, so that `LambdaLR` can save its fields in the checkpoint.
# `step` counts the optimizer steps already taken; the factor multiplies the peak learning rate.
class WarmupCosine:
    """Linear warm-up to 1, then a cosine from 1 down to `min_ratio` at `max_steps`."""

    def __init__(self, warmup: int, max_steps: int, min_ratio: float):
        self.warmup = warmup
        self.max_steps = max_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.max_steps - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# The schedule of [Attention Is All You Need](https://arxiv.org/abs/1706.03762) (section 5.3), named after
# Noam Shazeer in the [Annotated Transformer](https://nlp.seas.harvard.edu/annotated-transformer/):
#
# $$\eta_t = \text{factor} \cdot d_{model}^{-1/2} \min\big((t+1)^{-1/2},\ (t+1)\, T_{warm}^{-3/2}\big)$$
#
# It rises linearly for $T_{warm}$ steps and then decays as $1/\sqrt{t}$, never reaching zero: the two branches
# meet at $t + 1 = T_{warm}$, the peak, $\text{factor} / \sqrt{d_{model} T_{warm}}$. The factor is the
# configuration's `lr` (the optimizer's base rate, which this multiplies); the paper's is 1. The $d_{model}^{-1/2}$
# makes wider models take smaller steps.
class Noam:
    r"""$d_{model}^{-1/2} \min((t+1)^{-1/2}, (t+1) T_{warm}^{-3/2})$, the factor by which the schedule multiplies `lr`."""

    def __init__(self, warmup: int, d_model: int):
        self.warmup = warmup
        self.d_model = d_model

    def __call__(self, step: int) -> float:
        t = step + 1
        return self.d_model ** -0.5 * min(t ** -0.5, t * self.warmup ** -1.5)


# ## TF32
#
# TensorFloat-32 matrix products keep float32's range with a 10-bit mantissa: several times faster on Ampere
# and newer GPUs, and far more precise than training needs. (PyTorch 2.9 replaced the `allow_tf32` flags by
# `fp32_precision`; the two must not be mixed.)
def enable_tf32() -> None:
    """Let float32 matrix products and convolutions on CUDA use TF32."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# ## Weight-decay groups
#
# A model with its own `configure_optimizers` decides; otherwise only the weights of `nn.Linear` layers
# decay. A tensor shared by two modules (tied weights) is listed once.
def build_optimizer(model: nn.Module, config: TrainerConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over `model`'s parameters with decay on linear layers' weights only."""
    if hasattr(model, "configure_optimizers"):
        return model.configure_optimizers(weight_decay=config.weight_decay, lr=config.lr, betas=config.betas)
    decay = {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Linear) and m.weight.requires_grad}
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) not in decay]
    groups = [{"params": list(decay.values()), "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates all parameters in one pass. It exists for CUDA, CPU and MPS, among other devices,
    # but we ask for it only on CUDA and CPU; on any other device AdamW uses its default implementation.
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=device.type in ("cuda", "cpu"))


# ## Losses
#
# A loss function takes the model (possibly wrapped for several processes) and one micro-batch, the tuple a
# batch source returned, already on the device. The language-model loss is the cross-entropy of the next
# token at every position.
def language_model_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean next-token cross-entropy of `model(inputs)` `[batch, seq, vocab]` against `targets` `[batch, seq]`."""
    inputs, targets = batch
    logits = model(inputs)
    # `[batch, seq, vocab]` to `[batch * seq, vocab]`, against `[batch * seq]`
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


LossFunction = Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]


class BatchSource(Protocol):
    """Anything that draws a batch (a tuple of CPU tensors, batch first) with a given generator."""

    def sample(self, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]: ...


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(Exception):
    """Training stopped on Ctrl-C (SIGINT) or SIGTERM after writing a checkpoint."""


class StopRequested(BaseException):
    """A SIGINT or SIGTERM arrived outside a training step. A `BaseException`, like `KeyboardInterrupt`, so that
    no `except Exception` on the way swallows it."""


# ## Stopping on a signal
#
# A cluster that pre-empts a job sends SIGTERM and, some 30 seconds later, SIGKILL; a person presses Ctrl-C.
# Either must be honoured within seconds, wherever the run is, and must not lose the work done so far:
#
# * **inside a training step** (and while a checkpoint is written) the first signal only raises a flag: the
#   step completes, so that the model, the optimizer and the data generator agree, and the loop then writes
#   the checkpoint and stops. A step takes seconds, not minutes;
# * **anywhere else** (an evaluation, sampling after training, loading data) there is nothing half-done to
#   finish, so the signal raises `StopRequested` at once; the trainer then writes the checkpoint of the last
#   completed step, if it has not yet been written;
# * a **second** signal of either kind quits at once (`KeyboardInterrupt`), without a checkpoint; one being
#   written is abandoned, and [the atomic write](/experiments/data.md#write_atomically) keeps the previous file.
#
# A launcher such as torchrun forwards the terminal's Ctrl-C, so one key press may arrive twice within moments;
# only a signal a second or more after the first counts as the second. Handlers can be set only in the main
# thread; elsewhere the default behaviour stays. The command line installs them around the whole experiment,
# and [`Trainer.fit`](#Trainer.fit) around itself when used on its own.
class StopRequest:
    """Whether a stop was asked for by SIGINT or SIGTERM, and what a signal does now."""

    def __init__(self):
        self.requested = False
        self._first_signal_time = 0.0
        self._deferring = False
        self._installed = False

    @contextmanager
    def handle_signals(self, announce: bool = True) -> Iterator[None]:
        """Catch SIGINT and SIGTERM while in the block (a no-op if already caught, or outside the main thread)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum, frame):
            now = time.monotonic()
            if self.requested:
                if now - self._first_signal_time > 1.0:
                    if announce:
                        print("\nSecond signal: quitting at once, without a checkpoint.", file=sys.stderr, flush=True)
                    raise KeyboardInterrupt
                return
            self.requested, self._first_signal_time = True, now
            if self._deferring:
                if announce:
                    print(f"\n{signal.Signals(signum).name}: stopping after this step to write a checkpoint "
                          f"(a second signal quits at once)...", file=sys.stderr, flush=True)
                return
            raise StopRequested

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._installed = True
        try:
            yield
        finally:
            self._installed = False
            for s, handler in previous.items():
                signal.signal(s, handler)

    # Inside this block the first signal waits for the block to finish (the caller checks `requested`).
    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Let the work in the block complete when a first signal arrives."""
        outer, self._deferring = self._deferring, True
        try:
            yield
        finally:
            self._deferring = outer

    def check(self) -> None:
        """Raise `StopRequested` if a stop was asked for."""
        if self.requested:
            raise StopRequested


# ## A run
#
# Where a training writes and what it was asked to do: its directory, this process's place among the
# processes, the seed, the whole experiment configuration (saved in every checkpoint), and whether to
# continue from the checkpoint in the directory, and whether a stop was asked for. `sub(name)` gives a run in a
# subdirectory, for experiments that train several models (each resumes on its own; they share the stop).
@dataclass
class Run:
    """The output directory and context of one training run."""
    out_dir: Path
    ctx: DistributedContext
    seed: int = 0
    config: dict = field(default_factory=dict)
    resume: bool = False
    data_dir: Path | None = None
    stop: StopRequest = field(default_factory=StopRequest)

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    def sub(self, name: str) -> "Run":
        """The same run writing to the subdirectory `name`."""
        return replace(self, out_dir=self.out_dir / name)

    def path(self, name: str) -> Path:
        return self.out_dir / name

    # Only rank 0 writes; every file is written whole (temporary file and rename).
    def write_text(self, name: str, text: str) -> None:
        """Write `text` to `name` in the run directory (rank 0 only)."""
        if self.is_main:
            atomic_write_bytes(self.path(name), text.encode("utf-8"))

    def write_json(self, name: str, obj: object) -> None:
        """Write `obj` as indented JSON to `name` in the run directory (rank 0 only)."""
        self.write_text(name, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# ## Saving and loading checkpoints
#
# `torch.save` into a temporary file next to the target, flushed to disk, then renamed over it (see
# [writing atomically](/experiments/data.md#write_atomically)).
def atomic_torch_save(obj: object, path: Path) -> None:
    """`torch.save(obj, path)` such that `path` is always either the old or the complete new file."""
    write_atomically(path, lambda f: torch.save(obj, f))


CHECKPOINT = "checkpoint.pt"


# ### Sharded checkpoints
#
# The weights and optimizer states of a sharded run (`--tp`, `--fsdp`) are a torch.distributed.checkpoint
# directory that every process writes its shards into; `checkpoint.pt` holds the rest and names the directory. No
# save writes into the directory that `checkpoint.pt` names: each writes a new one, `checkpoint-<step>-<token>.dcp`
# (rank 0 draws the token, so that a second save at the same step, or a fresh run in an old run's directory, cannot
# collide with it either), then `checkpoint.pt` is replaced atomically, and only then are the other shard
# directories removed. At every instant `checkpoint.pt` and the directory it names are a complete, consistent pair;
# a save cut short leaves the previous pair and a stray directory, which the next save removes. Runs written before
# this layout kept their shards in `checkpoint.dcp` (their `checkpoint.pt` names none), and still resume.
SHARDED_CHECKPOINT_PREFIX, SHARDED_CHECKPOINT_SUFFIX = "checkpoint-", ".dcp"
LEGACY_SHARDED_CHECKPOINT = "checkpoint.dcp"


def sharded_checkpoint_dir(state: dict, run_dir: Path) -> Path:
    """The shard directory that the sharded checkpoint `state` (a loaded `checkpoint.pt` of `run_dir`) belongs to."""
    return Path(run_dir) / (state.get("shards") or LEGACY_SHARDED_CHECKPOINT)


def _new_shard_directory_name(step: int, ctx: DistributedContext) -> str:
    # `secrets`, not `random`: the run's random streams, which the checkpoint saves, stay untouched
    return broadcast_object(f"{SHARDED_CHECKPOINT_PREFIX}{step}-{secrets.token_hex(4)}{SHARDED_CHECKPOINT_SUFFIX}", ctx)


def _remove_other_shard_directories(run_dir: Path, keep: str | None) -> None:
    for path in run_dir.iterdir():
        stray = path.name == LEGACY_SHARDED_CHECKPOINT or (
            path.name.startswith(SHARDED_CHECKPOINT_PREFIX) and path.name.endswith(SHARDED_CHECKPOINT_SUFFIX))
        if stray and path.name != keep and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file named by `path`: the file itself, or `checkpoint.pt` in a run directory."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


# `weights_only=True` unpickles only tensors and plain containers: loading a checkpoint from elsewhere
# cannot run code.
#
# A file that is not a checkpoint of this trainer (truncated by a full disk, copied half-way, or something
# else altogether) is a `CheckpointError` that says what was found and what to do. torch's own message for a
# file it refuses suggests loading it with `weights_only=False`, which would run whatever code the file holds:
# that advice is not passed on.
class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or is not a checkpoint of this trainer."""


CHECKPOINT_KEYS = ("step", "model", "optimizer", "scheduler", "data_generator", "rng", "trainer", "config")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """A checkpoint (file or run directory) loaded safely with `weights_only=True`; `CheckpointError` if the file
    is damaged, unsafe or not a checkpoint of this trainer. `mmap` maps the tensors instead of reading them (a
    cheap check of the whole file)."""
    file = checkpoint_path(path)
    if not file.is_file():
        raise CheckpointError(f"There is no checkpoint at {file}.")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a bad file
        kind = "damaged or truncated" if "central directory" in str(error) or isinstance(error, EOFError) \
            else "not a checkpoint that can be loaded safely (it holds more than tensors and plain data)"
        raise CheckpointError(
            f"{file} ({file.stat().st_size:,} bytes) could not be read: the file is {kind}. It was left as it "
            f"is. If the run has no other copy, start afresh with a new --out directory; a checkpoint written "
            f"by this trainer is replaced atomically, so an interrupted write never leaves such a file behind. "
            f"(torch said: {str(error).splitlines()[0][:200]})") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{file} is not a checkpoint of the labml_nn trainer: it has no {', '.join(missing)}. "
                              f"It was left as it is.")
    return state


# The local shard of a DTensor parameter; a plain tensor itself.
def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


# The random state of this process, as tensors and tuples of numbers that `weights_only` accepts.
def _rng_state(device: torch.device) -> dict:
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": (torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
    }


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))


# ## Plotting the losses
#
# Matplotlib's object-oriented `Figure` draws with the Agg backend without touching global state (no
# `pyplot`), so it works on machines without a display.
def plot_losses(records: list[dict], path: Path, title: str = "") -> None:
    """Training and validation loss against step, saved as a PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=120)
    ax = figure.add_subplot()
    for key, label, style in (("train_loss", "train", "-"), ("val_loss", "validation", "o-")):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


# ## The Trainer class
class Trainer:
    """
    Trains `model` on batches drawn from a batch source, minimising `loss_fn(model, batch)`.

    Arguments:
        model: the model, on any device (it is moved to the run's device).
        config: the [TrainerConfig](#TrainerConfig).
        run: the [Run](#Run): directory, processes, seed, configuration to save, whether to resume.
        loss_fn: `loss_fn(model, batch) -> scalar loss`, [language_model_loss](#language_model_loss) by default.
        extra_state: plain data saved in every checkpoint (a tokenizer, say), so that a checkpoint alone
            is enough to use the model.

    After [fit](#Trainer.fit), `trainer.model` is the trained model (never wrapped or compiled).
    """

    def __init__(self, model: nn.Module, config: TrainerConfig, run: Run, *,
                 loss_fn: LossFunction = language_model_loss,
                 extra_state: dict | None = None):
        self.config = config
        self.run = run
        self.ctx = run.ctx
        self.device = run.device
        self.loss_fn = loss_fn
        self.extra_state = extra_state or {}
        # Tensor parallelism or FSDP2 ("sharded" training) lay the processes out as a (dp, tp) mesh: the `tp`
        # processes of a row share a batch, the `dp` rows split it. Otherwise every process is a data-parallel one.
        self.sharded = config.tp > 1 or config.fsdp
        world, self.dp_rank = self.ctx.world_size, self.ctx.rank
        mesh = self.mesh = None
        if self.sharded:
            from labml_nn.transformers.parallel.training import device_mesh
            mesh = self.mesh = device_mesh(self.ctx.world_size, config.tp, config.fsdp, self.device.type)
            world, self.dp_rank = mesh["dp"].size(), mesh["dp"].get_local_rank()
        self.dp = world
        if config.batch_size % (config.grad_accum * world):
            raise ValueError(f"batch_size ({config.batch_size}) must be divisible by grad_accum ({config.grad_accum}) "
                             f"times the number of {'data-parallel ' if self.sharded else ''}processes ({world})")
        # Sequences per process and per micro-batch.
        self.micro_batch = config.batch_size // (config.grad_accum * world)

        self.model = model.to(self.device)
        # A sharded model is gathered back into a copy of the plain one at the end of training (`trainer.model`).
        self._plain_model = copy.deepcopy(self.model) if self.sharded else None
        if self.sharded:
            from labml_nn.transformers.parallel.training import parallelize
            parallelize(self.model, mesh, fsdp=config.fsdp, sequence_parallel=config.tp > 1,
                        activation_checkpointing=config.activation_checkpointing)
        elif config.activation_checkpointing:
            from labml_nn.transformers.parallel.training import checkpoint_layers
            checkpoint_layers(self.model)
        self.autocast_dtype = self._autocast_dtype()
        if self.device.type == "cuda":
            enable_tf32()
        # The model that computes: compiled if asked; then wrapped for several processes.
        self.forward_model = torch.compile(self.model) if config.compile else self.model
        self.train_model = self.forward_model if self.sharded else wrap_model(self.forward_model, self.ctx)

        self.optimizer = build_optimizer(self.model, config, self.device)
        if self.sharded:
            from labml_nn.transformers.parallel.training import unfuse_if_mixed
            unfuse_if_mixed(self.optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._schedule())
        # The scaler multiplies the float16 loss so that small gradients do not flush to zero; it is a no-op
        # in every other precision.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)

        # Offsets of training batches come from this generator, seeded identically on every process.
        self.data_generator = torch.Generator().manual_seed(run.seed)
        # Dropout and any other randomness: different on every data-parallel process, and the same on the processes
        # of a tensor-parallel group, which must drop out their replicated activations alike (their sublayers draw
        # from a stream of their own: see [dropout under tensor parallelism](/transformers/parallel/index.md#ModelParallelRNG)).
        torch.manual_seed(run.seed + self.dp_rank)

        self.step = 0
        # The sum of the micro-batch losses since the last logging step, kept on the device, and their count.
        self.loss_sum = torch.zeros((), device=self.device)
        self.loss_count = 0
        self.tokens = 0
        self.train_time = 0.0
        self.elapsed = 0.0
        self.records: list[dict] = []
        self.last_lr = config.lr
        self.stop = run.stop
        self._saved_step = 0
        # The record of a logging step whose evaluation a stop signal cut short (see the loop).
        self._pending_record: dict | None = None
        self._tensorboard = None

    # The one place where the schedule is chosen.
    def _schedule(self) -> WarmupCosine | Noam:
        c = self.config
        if c.schedule == "noam":
            return Noam(c.warmup, c.noam_d_model)
        return WarmupCosine(c.warmup, c.max_steps, c.min_lr / c.lr)

    def _autocast_dtype(self) -> torch.dtype:
        name = self.config.dtype
        if name == "auto":
            if self.device.type != "cuda":
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return getattr(torch, name)

    def _autocast(self):
        if self.autocast_dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ### Moving a batch to the device
    #
    # On CUDA the tensors are copied into page-locked (pinned) host memory first: the copy to the GPU can then
    # run asynchronously, overlapping the previous step's computation.
    def _to_device(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self.device.type == "cuda":
            return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in tensors)
        return tuple(t.to(self.device) for t in tensors)

    # This process's micro-batches of a global batch: its slice of the batch, cut into `grad_accum` pieces.
    def _micro_batches(self, batch: tuple[torch.Tensor, ...]) -> Iterator[tuple[torch.Tensor, ...]]:
        per_process = self.micro_batch * self.config.grad_accum
        start = self.dp_rank * per_process
        for i in range(self.config.grad_accum):
            lo = start + i * self.micro_batch
            yield self._to_device(tuple(t[lo:lo + self.micro_batch] for t in batch))

    # ### Synchronising gradients once per step
    #
    # With several data-parallel processes, gradients are averaged across them only on the last micro-batch; the
    # others only accumulate. DDP has `no_sync`. FSDP2's switch is `set_requires_gradient_sync`, which must reach the
    # root and every layer sharded on its own (each is an FSDP unit with its own reduce-scatter): with it off, each
    # unit keeps its unsharded gradients and adds the next micro-batch's to them, and the last micro-batch
    # reduce-scatters the sum, once per unit. (The parameters are still all-gathered for every micro-batch's forward
    # and backward passes: FSDP2 reshards them after each, to keep their memory at $1/d$.) Tensor parallelism over
    # several data-parallel rows without FSDP has no wrapper to do it, so the gradients are
    # [all-reduced over the rows](/transformers/parallel/training.md#all_reduce_gradients) after the last micro-batch.
    # The tensor-parallel collectives inside each micro-batch's passes are part of its computation and stay.
    @contextmanager
    def _gradient_sync(self, last: bool) -> Iterator[None]:
        if not self.ctx.is_distributed or self.dp == 1:
            yield
        elif self.config.fsdp:
            self.model.set_requires_gradient_sync(last)
            yield
        elif self.sharded:
            yield
            if last:
                from labml_nn.transformers.parallel.training import all_reduce_gradients
                all_reduce_gradients(self.model, self.mesh["dp"])
        else:
            with nullcontext() if last else self.train_model.no_sync():
                yield

    # ### One optimizer step
    #
    # Nothing here reads a value back from the device.
    def _train_step(self, source: BatchSource) -> None:
        accum = self.config.grad_accum
        batch = source.sample(self.data_generator, self.config.batch_size)
        for i, micro in enumerate(self._micro_batches(batch)):
            with self._gradient_sync(last=i == accum - 1):
                with self._autocast():
                    loss = self.loss_fn(self.train_model, micro)
                # $\nabla \frac{1}{A} \sum_a L_a$: each of the $A$ micro-batch losses is scaled by $1/A$.
                self.scaler.scale(loss / accum).backward()
            self.loss_sum += loss.detach().float() / accum
            self.tokens += micro[0].numel() * self.dp
        self.loss_count += 1
        if self.config.clip > 0:
            # Gradients must be unscaled (float16) before their norm is compared with `clip`.
            self.scaler.unscale_(self.optimizer)
            if self.sharded:
                from labml_nn.transformers.parallel.training import clip_grad_norm_
                clip_grad_norm_(self.model.parameters(), self.config.clip)
            else:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()

    # ### Evaluation
    #
    # The mean loss over `eval_iters` batches drawn with a generator seeded afresh each time: every
    # evaluation of a run sees the same batches, so the curve moves only because the model does. The batches
    # are the size of a training batch and are split like one, so the figure does not depend on
    # `grad_accum` or on the number of processes.
    #
    # **Short runs.** A run of fewer than `eval_iters` steps evaluates on `max_steps` batches: an evaluation is a
    # forward pass per batch, so it then costs at most about a third of the training, and a smoke run such as
    # `--max-steps 3` of a GPU-sized preset spends its time training, not evaluating. (Its loss estimate is
    # noisier, which does not matter for a run that short.)
    #
    # An evaluation shows its own progress bar (it can take minutes on a CPU), and a stop signal interrupts it
    # at once. With several processes the signal is checked after every batch by all of them together, so
    # that they stop at the same batch.
    @property
    def eval_batches(self) -> int:
        """Batches per evaluation: `eval_iters`, or `max_steps` if the run is shorter."""
        return min(self.config.eval_iters, self.config.max_steps)

    @torch.no_grad()
    def evaluate(self, source: BatchSource, seed_offset: int = 1, desc: str = "evaluating") -> float:
        """Mean loss of the model over `eval_batches` fixed batches of `source`, averaged over processes."""
        from tqdm.auto import tqdm

        generator = torch.Generator().manual_seed(self.run.seed + seed_offset)
        total = torch.zeros((), device=self.device)
        batches = self.eval_batches
        self.model.eval()
        try:
            with (self.stop.deferred() if self.ctx.is_distributed else nullcontext()), \
                    tqdm(total=batches, desc=desc, unit="batch", leave=False, disable=not self.ctx.is_main,
                         dynamic_ncols=True, mininterval=0.5) as bar:
                for _ in range(batches):
                    for micro in self._micro_batches(source.sample(generator, self.config.batch_size)):
                        with self._autocast():
                            total += self.loss_fn(self.forward_model, micro).float()
                    bar.update(1)
                    if self.ctx.is_distributed and any_process(self.stop.requested, self.ctx):
                        raise StopRequested
        finally:
            self.model.train()
        return all_reduce_mean(total / (batches * self.config.grad_accum), self.ctx).item()

    # ### Checkpoints
    def _state_is_finite(self) -> bool:
        parameters_finite = torch.stack([_local(p).isfinite().all() for p in self.model.parameters()]).all()
        finite = torch.isfinite(self.loss_sum) & parameters_finite
        return not any_process(not bool(finite), self.ctx)

    def save_checkpoint(self) -> None:
        """Write the complete training state to `checkpoint.pt` (all processes call it; rank 0 writes)."""
        # Every process's random state goes into the checkpoint, so that each one resumes its own stream.
        # A sharded model's weights and optimizer states go to a new shard directory, written by every process
        # ([sharded checkpoints](#sharded_checkpoint_dir)); `dcp.save` returns on every process once the directory
        # is complete, its metadata written last.
        shards = None
        if self.sharded:
            from labml_nn.transformers.parallel.training import save_sharded
            shards = _new_shard_directory_name(self.step, self.ctx)
            save_sharded(self.run.path(shards), self.model, self.optimizer, self.step)
        rng = gather_objects(_rng_state(self.device), self.ctx)
        if not self.ctx.is_main:
            return
        state = {
            "step": self.step,
            "model": {} if self.sharded else self.model.state_dict(),
            "optimizer": {} if self.sharded else self.optimizer.state_dict(),
            "sharded": self.sharded,
            "shards": shards,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data_generator": self.data_generator.get_state(),
            "rng": rng,
            "loss_sum": self.loss_sum.detach().cpu(),
            "loss_count": self.loss_count,
            "tokens": self.tokens,
            "train_time": self.train_time,
            "elapsed": self.elapsed,
            "world_size": self.ctx.world_size,
            "trainer": asdict(self.config),
            "config": self.run.config,
            "extra": self.extra_state,
            "pending_record": self._pending_record,
        }
        atomic_torch_save(state, self.run.path(CHECKPOINT))
        # Only now is the previous shard directory (and any left by a save cut short) no longer needed.
        _remove_other_shard_directories(self.run.out_dir, keep=shards)

    def _load_checkpoint(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state.get("sharded", False):
            # Resharded to this run's layout, whatever the number of processes that wrote it.
            from labml_nn.transformers.parallel.training import load_sharded
            shards = sharded_checkpoint_dir(state, path.parent)
            sharded_step = load_sharded(shards, self.model, self.optimizer)
            # Only a run of the old layout (one `checkpoint.dcp` written in place) can get here: its save was cut short
            if sharded_step != state["step"]:
                raise CheckpointError(f"{path} is at step {state['step']} but {shards.name} at step "
                                      f"{sharded_step}: the last save was interrupted; the run cannot resume exactly")
        elif self.sharded:
            raise CheckpointError(f"{path} was written without --tp or --fsdp; resume it without them")
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # The shape of the schedule follows the current configuration, so that `--max-steps` can extend a run.
        schedule = self._schedule()
        self.scheduler.lr_lambdas = [schedule] * len(self.optimizer.param_groups)
        for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base_lr * schedule(self.scheduler.last_epoch)
        self.scaler.load_state_dict(state["scaler"])
        self.data_generator.set_state(state["data_generator"])
        if len(state["rng"]) == self.ctx.world_size:
            _set_rng_state(state["rng"][self.ctx.rank], self.device)
        self.step = state["step"]
        self.loss_sum = state["loss_sum"].to(self.device)
        self.loss_count = state["loss_count"]
        self.tokens = state["tokens"]
        self.train_time = state["train_time"]
        self.elapsed = state["elapsed"]
        self._pending_record = state.get("pending_record")
        # The metrics of steps after the checkpoint are dropped: they are about to be recomputed.
        metrics = self.run.path("metrics.jsonl")
        if metrics.exists():
            self.records = [r for r in map(json.loads, metrics.read_text().splitlines()) if r["step"] <= self.step]
            self.run.write_text("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.records))

    # ### Logging
    #
    # Adds the time since the interval started to the training time and returns it.
    def _end_interval(self) -> float:
        now = time.perf_counter()
        interval, self._interval_start = now - self._interval_start, now
        self.train_time += interval
        return interval

    def _append_record(self, record: dict) -> None:
        self.records.append(record)
        if self.ctx.is_main:
            with open(self.run.path("metrics.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        self._write_tensorboard(record)

    # The one place where the loop waits for the device: the mean training loss since the last logging
    # step, averaged over processes.
    def _log(self, bar, interval_tokens: int, interval_time: float) -> dict:
        loss = all_reduce_mean(self.loss_sum / max(1, self.loss_count), self.ctx).item()
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"The training loss became {loss} between steps {self.step - self.loss_count} and {self.step}; "
                f"training stopped. The last good checkpoint ({self.run.path(CHECKPOINT)}) was kept. "
                f"Try a lower learning rate (--lr), a longer warm-up (--warmup), gradient clipping (--clip) "
                f"or float32 (--dtype float32).")
        self.loss_sum.zero_()
        self.loss_count = 0
        record = {"step": self.step, "train_loss": loss, "lr": self.last_lr,
                  "tokens_per_s": interval_tokens / max(interval_time, 1e-9)}
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
        return record

    # ### TensorBoard
    #
    # Every number of every record, under its name, at its step; only rank 0 writes. `torch.utils.tensorboard`
    # needs the `tensorboard` package, an extra.
    def _open_tensorboard(self) -> None:
        if not (self.config.tensorboard and self.ctx.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError("--tensorboard needs the tensorboard package: "
                              "pip install 'labml_nn[tensorboard]'") from error
        self._tensorboard = SummaryWriter(str(self.run.path("tensorboard")))

    def _write_tensorboard(self, record: dict) -> None:
        if self._tensorboard is None:
            return
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self._tensorboard.add_scalar(key, value, record["step"])
        self._tensorboard.flush()

    def _close_tensorboard(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    # With several processes, they agree on stopping at the next logging step (a collective at every step
    # would make each step wait for the device).
    def _should_stop(self, logged: bool) -> bool:
        if not self.ctx.is_distributed:
            return self.stop.requested
        return logged and any_process(self.stop.requested, self.ctx)

    # <a id="Trainer.fit"></a>
    #
    # ### The loop
    def fit(self, train: BatchSource, val: BatchSource | None = None) -> dict:
        """
        Train for `max_steps` (continuing from `checkpoint.pt` when the run resumes) and return the result:
        `val_loss`, `train_loss` (both evaluated at the end on `eval_batches` batches), `steps`, `wall_s`,
        `tokens_per_s`, `ms_per_step`, `parameters`.

        Raises `TrainingInterrupted` after a stop signal, once the checkpoint of the last completed step is written.
        """
        with self.stop.handle_signals(announce=self.ctx.is_main):
            try:
                return self._fit(train, val)
            except StopRequested:
                # The checkpoint of the last completed step, unless the file already holds it.
                self._end_interval()
                with self.stop.deferred():
                    if self.step > self._saved_step:
                        self._checkpoint_if_finite(plot=False)
                if self.step == 0:
                    raise TrainingInterrupted("Interrupted before the first step.")
                raise TrainingInterrupted(f"Interrupted at step {self.step}; checkpoint written to "
                                          f"{self.run.path(CHECKPOINT)}.")
            finally:
                self._close_tensorboard()

    def _fit(self, train: BatchSource, val: BatchSource | None) -> dict:
        # The progress bar is an extra (`pip install 'labml_nn[experiments]'`), imported only when training.
        from tqdm.auto import tqdm

        c = self.config
        if self.ctx.is_main:
            self.run.out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = self.run.path(CHECKPOINT)
        self._saved_step = 0
        if self.run.resume and checkpoint.exists():
            self._load_checkpoint(checkpoint)
            self._saved_step = self.step
        elif self.ctx.is_main:
            self.run.path("metrics.jsonl").unlink(missing_ok=True)
        self._open_tensorboard()

        def is_due(every: int) -> bool:
            return every > 0 and self.step % every == 0

        # Wall-clock time continues from where a resumed run stopped. The interval clock starts before the
        # first evaluation, so that a stop during it has an interval to end.
        self._clock_start = time.perf_counter() - self.elapsed
        self._interval_start = time.perf_counter()
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not self.ctx.is_main, unit="step",
                   desc=self.run.out_dir.name, dynamic_ncols=True, mininterval=0.5)
        with bar:
            # A run stopped during an evaluation evaluates again before it goes on, so that its metrics are an
            # uninterrupted run's.
            if self._pending_record is not None and val is not None:
                val_loss = self.evaluate(val)
                with self.stop.deferred():
                    record, self._pending_record = {**self._pending_record, "val_loss": val_loss}, None
                    self._append_record(record)
            if self.step == 0 and val is not None and c.eval_every > 0:
                self._append_record({"step": 0, "val_loss": self.evaluate(val)})
            steps_before = self.step
            # Training time and tokens are counted per interval between logging steps, which is when the
            # device has caught up; evaluation and checkpoints fall outside the intervals, and outside the
            # progress bar's time per step (`unpause` restarts its clock).
            self._interval_start, interval_tokens = time.perf_counter(), self.tokens
            bar.unpause()
            while self.step < c.max_steps:
                # A signal during the step, its logging or its checkpoint lets them complete.
                with self.stop.deferred():
                    self._train_step(train)
                    self.step += 1
                    bar.update(1)
                    # Evaluate every `eval_every` steps and after the last step.
                    evaluate = val is not None and (is_due(c.eval_every) or self.step == c.max_steps)
                    save = is_due(c.checkpoint_every) and self.step < c.max_steps
                    logged = is_due(c.log_every) or evaluate or save or self.step == c.max_steps
                    if logged:
                        interval_time = self._end_interval()
                        record = self._log(bar, self.tokens - interval_tokens, interval_time)
                        # A record waiting for its evaluation is pending: a stop signal during the evaluation
                        # writes it into the checkpoint, and the resumed run evaluates it.
                        if evaluate:
                            self._pending_record = record
                        else:
                            self._append_record(record)
                if logged and evaluate:
                    val_loss = self.evaluate(val)
                    # Recording it must not be cut short either: the record is in the metrics or still pending.
                    with self.stop.deferred():
                        record, self._pending_record = {**record, "val_loss": val_loss}, None
                        self._append_record(record)
                    bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_loss']:.3f}",
                                    tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
                if save:
                    with self.stop.deferred():
                        self._checkpoint_if_finite()
                if self._should_stop(logged):
                    raise StopRequested
                if logged:
                    self._interval_start, interval_tokens = time.perf_counter(), self.tokens
                    bar.unpause()
            if self.step > steps_before:
                with self.stop.deferred():
                    self._checkpoint_if_finite()
                self.stop.check()

        # ### The result
        #
        # Both losses are measured the same way at the end, on fixed batches with the model in evaluation mode
        # (the validation loss is the last step's evaluation).
        val_loss = self.records[-1].get("val_loss") if self.records else None
        if val is not None and (val_loss is None or self.records[-1]["step"] != self.step):
            val_loss = self.evaluate(val, desc="final validation loss")
        train_loss = self.evaluate(train, seed_offset=2, desc="final training loss")
        self.elapsed = time.perf_counter() - self._clock_start
        if self.ctx.is_main:
            plot_losses(self.records, self.run.path("loss.png"), title=str(self.run.out_dir))
        parameters = count_parameters(self.model)
        if self.sharded:
            self.model = self._gathered_model()
        return {
            "val_loss": val_loss,
            "train_loss": train_loss,
            "steps": self.step,
            "wall_s": self.elapsed,
            "tokens_per_s": self.tokens / max(self.train_time, 1e-9),
            "ms_per_step": 1000 * self.train_time / max(self.step, 1),
            "parameters": parameters,
        }

    # The trained weights of a sharded model, gathered (every process takes part) into the plain model's copy, so
    # that what follows training (sampling, saving) sees an ordinary model.
    def _gathered_model(self) -> nn.Module:
        from labml_nn.transformers.parallel.training import full_state
        trained = full_state(self.model)
        with torch.no_grad():
            for name, parameter in self._plain_model.named_parameters():
                parameter.copy_(trained[name])
        return self._plain_model.train(self.model.training)

    # A checkpoint replaces the previous one only if the state is sound; a broken state is never saved.
    # The loss plot is redrawn with every checkpoint, except on the way out after a stop signal, when only the
    # checkpoint is urgent (drawing takes seconds on a busy machine; a resumed run redraws it).
    def _checkpoint_if_finite(self, plot: bool = True) -> None:
        self.elapsed = time.perf_counter() - self._clock_start
        if not self._state_is_finite():
            raise NonFiniteLossError(
                f"The training state became non-finite by step {self.step}; training stopped. The last good "
                f"checkpoint ({self.run.path(CHECKPOINT)}) was kept.")
        self.save_checkpoint()
        self._saved_step = self.step
        if plot and self.ctx.is_main:
            plot_losses(self.records, self.run.path("loss.png"), title=str(self.run.out_dir))

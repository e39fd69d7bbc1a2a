r"""
---
title: The memory that FlashAttention saves
summary: Peak memory and time of a forward and backward pass of attention, for the explicit softmax(QK^T)V path, the plain-PyTorch FlashAttention and PyTorch's fused kernel, at growing sequence lengths, each point measured in its own process.
---

# The memory that FlashAttention saves

```bash
python -m labml_nn.transformers.flash_attention --device cpu
python -m labml_nn.transformers.flash_attention --seq-lens 1024 2048 --heads 8 --no-is-causal
```

For each sequence length this measures one forward and backward pass of causal self-attention on random
queries, keys and values `[batch, heads, seq, d_head]` by three methods:

* `explicit`: the [explicit path](/transformers/mha.md#MultiHeadAttention.attend_explicitly) of
  `MultiHeadAttention`, $\operatorname{softmax}(QK^\top / \sqrt{d_k})V$ written out, with its causal mask;
* `flash`: [`flash_attention`](/transformers/flash_attention/index.md), the same algorithm as FlashAttention,
  blocks in a Python loop;
* `sdpa`: `F.scaled_dot_product_attention`, PyTorch's fused kernel (on a CPU, its own flash-attention kernel in
  C++).

**Memory is measured, not estimated.** Each point (method, length) runs in a fresh Python process. It imports
everything, runs the method once at a small size (so that the code paths and their buffers are loaded), creates
the inputs and reads its resident-set high-water mark (`ru_maxrss`, the most physical memory the process has
ever held); then it runs the forward and backward pass once and reads it again. The difference is the most
memory the pass needed above the inputs, everything it allocated included (the outputs and the gradients, which
are the same for all three). On CUDA it is `torch.cuda.max_memory_allocated` over the same pass. Then the same
process times `repeats` more passes and reports the median.

`memory.png` draws the memory and the time on log-log axes, where a power law is a straight line whose slope is
its exponent: the explicit path stores `[batch, heads, seq, seq]` matrices (the scores, their softmax, the
gradients of both), so its memory grows with slope 2, four times for each doubling of the length; the other two
store $O(\text{seq})$, slope 1. `memory_slope` in the result is that exponent, measured between the two longest
sequences of each method. The explicit path stops at `explicit_max_seq`, or where its process fails (out of
memory). The time of all three grows with slope 2 (attention does $O(\text{seq}^2)$ arithmetic whichever way it is
computed); the result says how much slower the Python loop is than the fused kernel. The result also holds
`max_difference`, the largest difference of the outputs and gradients of `flash` and `explicit` against `sdpa`
at the shortest length, and the block counts of the causal mask at the longest
([`causal_block_counts`](/transformers/flash_attention/index.md#causal_block_counts)).
"""

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from labml_nn.experiments.cli import run_experiment
from labml_nn.experiments.trainer import Run
from labml_nn.transformers.flash_attention import causal_block_counts, flash_attention
from labml_nn.transformers.mha import MultiHeadAttention

METHODS = ("explicit", "flash", "sdpa")


# ## Configuration
@dataclass
class FlashAttentionExperiment:
    """Peak memory and time of attention's forward and backward pass against the sequence length."""
    seq_lens: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)
    """Sequence lengths to measure, in increasing order."""
    batch: int = 1
    heads: int = 4
    d_head: int = 64
    block_q: int = 64
    """Rows of `flash_attention`'s query blocks."""
    block_k: int = 64
    """Rows of `flash_attention`'s key/value blocks."""
    is_causal: bool = True
    """Causal self-attention (the explicit path with its mask, the others with their causal flags)."""
    explicit_max_seq: int = 8192
    """The longest sequence the explicit path is run for (its memory grows with the square of the length)."""
    repeats: int = 3
    """Timed passes per point, after the one whose memory is measured."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    point_timeout_s: float = 900.0
    """Time limit of the process that measures one point."""

    def __post_init__(self):
        self.seq_lens = tuple(self.seq_lens)
        if not self.seq_lens or any(s < 1 for s in self.seq_lens) or list(self.seq_lens) != sorted(set(self.seq_lens)):
            raise ValueError(f"seq_lens must be positive, distinct and increasing, got {self.seq_lens}")
        for name in ("batch", "heads", "d_head", "block_q", "block_k", "explicit_max_seq", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.point_timeout_s <= 0:
            raise ValueError(f"point_timeout_s must be positive, got {self.point_timeout_s}")


# ## Presets
def default() -> FlashAttentionExperiment:
    """Lengths 256 to 8,192, 4 heads of 64: minutes on a CPU, and up to 6 GiB of memory for the explicit path."""
    return FlashAttentionExperiment()


def tiny() -> FlashAttentionExperiment:
    """Seconds: two short lengths, small heads (for tests)."""
    return FlashAttentionExperiment(seq_lens=(16, 32), heads=2, d_head=8, block_q=8, block_k=8, repeats=1,
                                    explicit_max_seq=32, point_timeout_s=120.0)


# ## The three methods
#
# Each takes `q`, `k`, `v` `[batch, heads, seq, d_head]` and returns the attention output. The explicit path is
# `MultiHeadAttention`'s own, with the causal mask built as its `forward` builds it (part of its memory).
def attention_method(name: str, config: FlashAttentionExperiment) -> Callable[..., torch.Tensor]:
    if name == "explicit":
        mha = MultiHeadAttention(config.heads, config.heads * config.d_head)

        def explicit(q, k, v):
            mask = mha.causal_mask(q.shape[2], k.shape[2], q.device) if config.is_causal else None
            return mha.attend_explicitly(q, k, v, mask)[0]
        return explicit
    if name == "flash":
        return lambda q, k, v: flash_attention(q, k, v, is_causal=config.is_causal, block_q=config.block_q,
                                               block_k=config.block_k)
    if name == "sdpa":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=config.is_causal)
    raise ValueError(f"unknown method {name!r}; one of {METHODS}")


# Random queries, keys, values (with gradients) and the gradient of the output, `[batch, heads, seq, d_head]`.
def make_inputs(config: FlashAttentionExperiment, seq: int, device: torch.device, dtype: torch.dtype
                ) -> tuple[torch.Tensor, ...]:
    shape = (config.batch, config.heads, seq, config.d_head)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    return q, k, v, torch.randn(shape, device=device, dtype=dtype)


# One forward and backward pass; the gradients land in `q.grad`, `k.grad`, `v.grad`.
def forward_backward(method: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> None:
    q, k, v, grad_out = inputs
    for x in (q, k, v):
        x.grad = None
    method(q, k, v).backward(grad_out)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The process's resident-set high-water mark in bytes (Linux reports kibibytes, macOS bytes).
def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


# ## One point, in its own process
#
# The memory is the high-water mark during the pass minus the mark before it, with the inputs already
# allocated; a fresh process, so that no earlier, larger point has raised the mark.
def measure_point(method_name: str, seq: int, config: FlashAttentionExperiment, device: torch.device) -> dict:
    dtype = getattr(torch, config.dtype)
    method = attention_method(method_name, config)
    forward_backward(method, make_inputs(config, min(seq, 2 * config.block_q), device, dtype))
    inputs = make_inputs(config, seq, device, dtype)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        forward_backward(method, inputs)
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        before = max_rss_bytes()
        forward_backward(method, inputs)
        peak = max_rss_bytes() - before

    times = []
    for _ in range(config.repeats):
        synchronize(device)
        start = time.perf_counter()
        forward_backward(method, inputs)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"peak_memory_mib": peak / 2 ** 20, "time_ms": statistics.median(times) * 1e3}


# The entry point of that process: the point's arguments as JSON in `argv`, its result as JSON on stdout.
def measure_point_main(argv: list[str] | None = None) -> None:
    args = json.loads((sys.argv[1:] if argv is None else argv)[0])
    config = FlashAttentionExperiment(**args["config"])
    print(json.dumps(measure_point(args["method"], args["seq"], config, torch.device(args["device"]))))


def run_point(method_name: str, seq: int, config: FlashAttentionExperiment, device: torch.device) -> dict:
    args = json.dumps({"method": method_name, "seq": seq, "config": asdict(config), "device": str(device)})
    code = "from labml_nn.transformers.experiments.flash_attention import measure_point_main; measure_point_main()"
    # The child imports this same copy of the package.
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        done = subprocess.run([sys.executable, "-c", code, args], env=env, capture_output=True, text=True,
                              timeout=config.point_timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {config.point_timeout_s} s"}
    if done.returncode != 0:
        # A process killed for memory exits with -9 and no traceback.
        return {"error": f"exit status {done.returncode}: {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ## Do the three agree?
#
# The largest difference of the outputs and the gradients of `q`, `k`, `v` of each method against SDPA's.
def max_difference(config: FlashAttentionExperiment, seq: int, device: torch.device) -> dict[str, float]:
    inputs = make_inputs(config, seq, device, getattr(torch, config.dtype))
    results = {}
    for name in METHODS:
        q, k, v, grad_out = inputs
        out = attention_method(name, config)(q, k, v)
        results[name] = (out, *torch.autograd.grad(out, (q, k, v), grad_out))
    return {name: max((a - b).abs().max().item() for a, b in zip(results[name], results["sdpa"]))
            for name in ("explicit", "flash")}


# Slope of $\log(\text{memory})$ against $\log(\text{seq})$ between the two longest measured lengths.
def memory_slope(seq_lens: tuple[int, ...], memory: list[float | None]) -> float | None:
    points = [(s, m) for s, m in zip(seq_lens, memory) if m is not None and m > 0]
    if len(points) < 2:
        return None
    (s0, m0), (s1, m1) = points[-2:]
    return math.log(m1 / m0) / math.log(s1 / s0)


# ## Drawing
def plot(seq_lens: tuple[int, ...], memory: dict, times: dict, matrix_mib: list[float], title: str, path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=110)
    ax_memory, ax_time = figure.subplots(1, 2)
    for name in METHODS:
        for ax, values in ((ax_memory, memory[name]), (ax_time, times[name])):
            points = [(s, x) for s, x in zip(seq_lens, values) if x is not None and x > 0]
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
    ax_memory.plot(seq_lens, matrix_mib, linestyle=":", color="gray", label="one [batch, heads, seq, seq] matrix")
    ax_memory.set_ylabel("peak memory of forward + backward (MiB)")
    ax_time.set_ylabel("forward + backward (ms)")
    for ax in (ax_memory, ax_time):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
#
# The lengths in the outer loop, the methods in the inner, so that a change in the machine's speed during the
# run hits all three at each length alike.
def measure(config: FlashAttentionExperiment, run: Run) -> dict:
    start = time.perf_counter()
    device = run.device
    memory = {name: [] for name in METHODS}
    times = {name: [] for name in METHODS}
    errors = {}
    for seq in config.seq_lens:
        for name in METHODS:
            point = {} if name == "explicit" and seq > config.explicit_max_seq else run_point(name, seq, config, device)
            if "error" in point:
                errors[f"{name} {seq}"] = point["error"]
            memory[name].append(point.get("peak_memory_mib"))
            times[name].append(point.get("time_ms"))

    element_bytes = torch.tensor([], dtype=getattr(torch, config.dtype)).element_size()
    matrix_mib = [config.batch * config.heads * s * s * element_bytes / 2 ** 20 for s in config.seq_lens]
    longest = config.seq_lens[-1]
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seq_lens": list(config.seq_lens),
        "peak_memory_mib": memory,
        "time_ms": times,
        "attention_matrix_mib": matrix_mib,
        "memory_slope": {name: memory_slope(config.seq_lens, memory[name]) for name in METHODS},
        "max_difference": max_difference(config, config.seq_lens[0], device),
        "causal_blocks": causal_block_counts(longest, longest, config.block_q, config.block_k),
        "errors": errors,
    }
    if run.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        what = "causal " if config.is_causal else ""
        plot(config.seq_lens, memory, times, matrix_mib,
             f"{what}attention, batch {config.batch}, {config.heads} heads of {config.d_head}, {config.dtype} "
             f"on {device}", run.path("memory.png"))
    result["wall_s"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> None:
    run_experiment("flash_attention", FlashAttentionExperiment, measure, presets={"default": default, "tiny": tiny},
                   argv=argv, description="Peak memory and time of explicit attention, FlashAttention and SDPA.")


if __name__ == "__main__":
    main()

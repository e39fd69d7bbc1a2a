r"""
---
title: The plan on paper - memory and communication of 8B to 405B models
summary: A calculator of the memory (parameters, gradients, optimizer states, activations with and without recomputation) and the communication per step of tensor, pipeline and (fully sharded) data parallelism for Llama 3.1 8B, 70B and 405B, set beside the Llama 3 paper's 405B layout and Megatron-LM's figures.
---

# The plan on paper

Before renting a thousand GPUs one should know what fits. This calculator adds up, per GPU, the memory of the
model states and of the activations for a layout $(t, p, d)$ of tensor-, pipeline- and data-parallel sizes,
$t \cdot p \cdot d$ GPUs, and the bytes each kind of parallelism sends per step:

```bash
python -m labml_nn.transformers.parallel --plan llama-3.1-8b --gpus 16 --gpu-memory 80
python -m labml_nn.transformers.parallel --plan llama-3.1-405b --gpus 16384 --gpu-memory 80
```

## Model states

$N$ parameters trained in mixed precision with Adam take, per parameter
([ZeRO](https://arxiv.org/abs/1910.02054), Rajbhandari et al., 2020):

| what | bytes |
|---|---|
| bfloat16 weights, used in the forward and backward passes | 2 |
| bfloat16 gradients | 2 |
| float32 master weights (the optimizer updates these; bfloat16 cannot hold a small update to a large weight) | 4 |
| Adam's two moments, float32 | 4 + 4 |
| total | 16 |

Megatron-LM accumulates gradients in float32 (18 bytes); FSDP2 with a bfloat16 `MixedPrecisionPolicy` keeps float32
sharded parameters as the master and reduces gradients in float32 (16 bytes, sharded). The tensor- and
pipeline-parallel splits divide all of it by $t \cdot p$; plain data parallelism copies it $d$ times, and
FSDP (ZeRO-3) divides it by $d$ too, at the price of gathering the weights before each layer is used.

## Activations

[Korthikanti et al. (2022)](https://arxiv.org/abs/2205.05198), section 4, count the bytes one GPT layer stores for
the backward pass, for a sequence of $s$ tokens, micro-batch $b$, width $h$ and $a$ heads, in 16-bit with 1-byte
dropout masks:

$$\begin{aligned}
&sbh\Big(34 + 5\frac{a s}{h}\Big) && \text{one GPU,} \\
&sbh\Big(10 + \frac{24}{t} + 5\frac{a s}{h t}\Big) && \text{tensor parallel,} \\
&\frac{sbh}{t}\Big(34 + 5\frac{a s}{h}\Big) && \text{and sequence parallel}
\end{aligned}$$

The $5as/h$ term is the attention matrix (scores, softmax, dropout mask); the 10 of the tensor-parallel form are
the norms' and dropouts' tensors that tensor parallelism leaves whole on every GPU, and that sequence parallelism
splits. Llama differs in ways that change the count, so [`layer_activation_bytes`](#layer_activation_bytes) counts
Llama's tensors one by one the same way: no dropout; FlashAttention keeps no $s \times s$ matrix (its output and a
log-sum-exp per row instead); grouped-query attention has $h_{kv} < h$ key and value features; SwiGLU keeps three
`[s, b, d_ff]` tensors. Checked against the formula: for a GPT-shaped layer (`d_ff` $= 4h$, dropout, no
FlashAttention) the function gives exactly $sbh(34 + 5as/h)$ (`tests/test_parallel.py`).

**Recomputation.** With full activation checkpointing a layer keeps only its input, $2sbh$ bytes ($/t$ with
sequence parallelism), and recomputes the rest in the backward pass (one layer's activations at a time, added
once), for about a third more compute. Korthikanti et al.'s *selective* recomputation recomputes only the attention
matrix; FlashAttention does that already.

**Pipelines.** With the 1F1B schedule the first of $p$ stages holds the activations of $p$ micro-batches of its
$L/p$ layers: $L$ layers' worth, whatever $p$ is (Korthikanti et al., section 4.2.3). So pipelining divides the
model states by $p$ but not the activations of the first stage.

**The output layer.** The logits, `[s, b, vocab]`, in bfloat16 and again in float32 for the loss, are big with
Llama 3's 128,256 tokens: 6 GB for one 8,192-token sequence. Megatron splits the output layer by vocabulary over
the tensor-parallel group, so they count $/t$ here.

## Communication per step

Per GPU, bytes sent, ring algorithms (an all-reduce of $M$ bytes over $n$ GPUs sends $2\frac{n-1}{n}M$,
an all-gather or reduce-scatter $\frac{n-1}{n}M$):

* **tensor parallel**: per layer and micro-batch, two all-reduces forward and two backward of the
  `[s, b, h]` activations, $4 \cdot 2\frac{t-1}{t} \cdot 2sbh$; the same with sequence parallelism (a reduce-scatter
  plus an all-gather is an all-reduce); full recomputation repeats the forward's two;
* **data parallel**: one all-reduce of the bfloat16 gradients, $2\frac{d-1}{d} \cdot 2N/(tp)$;
  FSDP: an all-gather of the weights forward and again backward, and a reduce-scatter of the gradients in
  float32, $\frac{d-1}{d}(2 + 2 + 4)N/(tp)$;
* **pipeline parallel**: each stage boundary sends the `[s, b, h]` activation forward and its gradient back,
  $2 \cdot 2sbh$ per micro-batch.

## Beside the published figures

**Llama 3 405B** ([The Llama 3 Herd of Models](https://arxiv.org/abs/2407.21783), Table 4): on 16,384 H100s
(80 GB), $t = 8$, $p = 16$, $d = 128$, sequences of 8,192 tokens, 16M tokens per batch, at 400 TFLOP/s per GPU,
41% MFU (43% on 8,192 GPUs with $d = 64$). The calculator puts that layout
(`python -m labml_nn.transformers.parallel --plan llama-3.1-405b --gpus 16384 --all`, the rows with $t = 8$,
$p = 16$) at 118.6 GB per GPU with plain data parallelism, which does not fit: 50.7 GB of model states
($16 \cdot 405.85 \cdot 10^9 / (8 \cdot 16)$ bytes) and 67.9 GB of activations (1F1B's 126 layers' worth of one
8,192-token sequence, with sequence parallelism). Sharding the states over $d$ (0.4 GB) brings it to 68.3 GB, and full
recomputation instead to 56.3 GB; both fit. Meta's layout differs in details the calculator does not model: they
shard gradients and optimizer states but keep the weights gathered between forward and backward (ZeRO-2-like,
between the two rows above, with less communication than FSDP), use an interleaved pipeline schedule with a tuned
number of micro-batches, and balance the first and last stages (which hold the embeddings and the
output layer) by giving them one layer fewer. MFU is a measurement and not on paper: the calculator gives the
communication volume per step, which is what decides whether the GPUs wait.

**Megatron-LM** ([Narayanan et al., 2021](https://arxiv.org/abs/2104.04473)): a 1-trillion-parameter GPT on
3,072 A100s with $t = 8$ and $p = 64$ at 502 PFLOP/s, 163 TFLOP/s per GPU, 52% of the peak; tensor parallelism
stays within one 8-GPU server, because its four all-reduces per layer per micro-batch need NVLink's bandwidth,
while pipeline parallelism, which sends one activation per stage boundary, crosses servers. The calculator's
communication column shows the same ordering: for any of these models the tensor-parallel bytes per step are
one to two orders of magnitude above the pipeline's. Korthikanti et al. report for a 530B model on 2,240 A100s
that sequence parallelism with selective recomputation reaches 54.2% MFU against 42.1% with full recomputation:
the price of recomputing every layer, the extra forward pass whose memory saving the calculator's `recompute`
rows show.
"""

import argparse
from dataclasses import dataclass

GB = 1e9


# ## The shape of a model
#
# What the counts need: width $h$, layers $L$, heads $a$, key/value heads, the feed-forward hidden size, the
# vocabulary, and whether input and output embeddings are one matrix.
@dataclass(frozen=True)
class ModelShape:
    name: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab: int
    gated: bool = True
    tied: bool = False
    biases: bool = False

    def __post_init__(self):
        for name in ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "vocab"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}), "
                             f"and n_heads by n_kv_heads ({self.n_kv_heads})")

    @property
    def kv_width(self) -> int:
        return self.n_kv_heads * self.d_model // self.n_heads

    # $N$: per layer $h(h + 2h_{kv}) + h^2$ for attention, $3 h\, d_{ff}$ (gated) or $2 h\, d_{ff}$ for the
    # feed-forward network, $2h$ for the norms (twice that with LayerNorm's biases); the embeddings $V h$, the output
    # layer another $Vh$ unless tied, and the final norm.
    def parameters(self) -> int:
        h, f = self.d_model, self.d_ff
        attention = h * (h + 2 * self.kv_width) + h * h
        ffn = (3 if self.gated else 2) * h * f
        norms = 2 * h
        if self.biases:
            attention += h + 2 * self.kv_width + h
            ffn += f + h
            norms *= 2
        layer = attention + ffn + norms
        embeddings = self.vocab * h * (1 if self.tied else 2)
        return self.n_layers * layer + embeddings + h * (2 if self.biases else 1)


# Llama 3.1's published shapes (Meta's `params.json`; `d_ff` as Meta's code rounds it).
MODELS = {
    "llama-3.1-8b": ModelShape("llama-3.1-8b", 4096, 32, 32, 8, 14336, 128256),
    "llama-3.1-70b": ModelShape("llama-3.1-70b", 8192, 80, 64, 8, 28672, 128256),
    "llama-3.1-405b": ModelShape("llama-3.1-405b", 16384, 126, 128, 8, 53248, 128256),
}


# ## Bytes per parameter
#
# The table above, one field per kind of state.
@dataclass(frozen=True)
class Precision:
    weight: int = 2
    gradient: int = 2
    master: int = 4
    optimizer: int = 8

    @property
    def per_parameter(self) -> int:
        return self.weight + self.gradient + self.master + self.optimizer


# ## Activations of one layer
#
# Bytes stored for the backward pass by one layer, for `tokens` $= sb$, tensor-parallel size $t$. Each term is one
# saved tensor (2 bytes per element, 1 for a dropout mask), and is split by $t$ when it is inside a sublayer (after
# $f$, before $g$) or when sequence parallelism splits the rest. `flash`: the attention matrix is not stored;
# `dropout`: GPT's dropout masks and outputs (Llama has none).
def layer_activation_bytes(shape: ModelShape, seq: int, batch: int, tp: int = 1, sequence_parallel: bool = False,
                           flash: bool = True, dropout: bool = False) -> float:
    tokens = seq * batch
    h, kv, f, a = shape.d_model, shape.kv_width, shape.d_ff, shape.n_heads
    # Outside the sublayers: each norm's input and output (the output is the sublayer's input)
    outside = 2 * (2 + 2) * tokens * h
    # Attention: $Q$, $K$, $V$, and the input of the output projection
    inside = (2 * h + 2 * 2 * kv + 2 * h) * tokens
    if flash:
        # FlashAttention keeps its output (the same tensor as $W^O$'s input) and a log-sum-exp per row: nothing more
        pass
    else:
        # scores' softmax, its dropout mask and dropout output, `[b, a, s, s]`: $5as^2b$
        inside += (2 + (1 + 2 if dropout else 0)) * a * seq * tokens
    if dropout:
        # The dropout masks of the two sublayers' outputs (the attention weights' dropout is counted above)
        outside += 2 * 1 * tokens * h
    # Feed-forward: the activation's input, (gated) the value, and $W_2$'s input
    inside += (3 if shape.gated else 2) * 2 * tokens * f
    return (outside + inside) / tp if sequence_parallel else outside + inside / tp


# ## One layout
#
# The memory of one GPU and the bytes it sends per step, for `tp`, `pp`, `dp` GPUs, with or without FSDP and full
# recomputation, a micro-batch of `micro_batch` sequences of `seq` tokens and `global_batch` sequences per step.
@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    dp: int
    fsdp: bool
    recompute: bool


def model_state_bytes(shape: ModelShape, layout: Layout, precision: Precision = Precision()) -> float:
    """Bytes of weights, gradients, master weights and optimizer states on one GPU."""
    per_gpu = shape.parameters() / (layout.tp * layout.pp)
    return per_gpu * precision.per_parameter / (layout.dp if layout.fsdp else 1)


def activation_bytes(shape: ModelShape, layout: Layout, seq: int, micro_batch: int) -> float:
    """Activations of the first pipeline stage under 1F1B: $L$ layers' worth of one micro-batch, plus the logits."""
    layer = layer_activation_bytes(shape, seq, micro_batch, layout.tp, sequence_parallel=layout.tp > 1)
    if layout.recompute:
        stored = shape.n_layers * 2 * seq * micro_batch * shape.d_model / layout.tp + layer
    else:
        stored = shape.n_layers * layer
    logits = (2 + 4) * seq * micro_batch * shape.vocab / layout.tp
    return stored + logits


def communication_bytes(shape: ModelShape, layout: Layout, seq: int, micro_batch: int, global_batch: int,
                        precision: Precision = Precision()) -> dict[str, float]:
    """Bytes one GPU sends per optimizer step, per kind of parallelism."""
    micro_batches = global_batch // (micro_batch * layout.dp)
    activation = 2 * seq * micro_batch * shape.d_model
    t, d = layout.tp, layout.dp
    layers_here = shape.n_layers / layout.pp
    all_reduces = 4 + (2 if layout.recompute else 0)
    tp = all_reduces * 2 * (t - 1) / t * activation * layers_here * micro_batches
    parameters = shape.parameters() / (layout.tp * layout.pp)
    if layout.fsdp:
        dp = (d - 1) / d * (precision.weight + precision.weight + 4) * parameters
    else:
        dp = 2 * (d - 1) / d * precision.gradient * parameters
    pp = 2 * activation * micro_batches if layout.pp > 1 else 0.0
    return {"tp": tp, "pp": pp, "dp": dp}


# ## Which layouts fit
#
# Every $(t, p, d)$ with $t \cdot p \cdot d$ = `gpus`, $t$ a power of two up to 8 (one server's NVLink domain)
# dividing the heads, key/value heads and hidden units, $p$ dividing the layers; with and without FSDP and full
# recomputation.
def layouts(shape: ModelShape, gpus: int) -> list[Layout]:
    found = []
    for tp in (1, 2, 4, 8):
        if gpus % tp or shape.n_kv_heads % tp or shape.d_ff % tp:
            continue
        for pp in range(1, gpus // tp + 1):
            if (gpus // tp) % pp or pp > shape.n_layers:
                continue
            dp = gpus // (tp * pp)
            for fsdp in ((False, True) if dp > 1 else (False,)):
                for recompute in (False, True):
                    found.append(Layout(tp, pp, dp, fsdp, recompute))
    return found


def plan(shape: ModelShape, gpus: int, gpu_memory_gb: float, seq: int, micro_batch: int, global_batch: int,
         precision: Precision = Precision()) -> list[dict]:
    """One row per layout: memory per GPU (GB), whether it fits, and the bytes sent per step (GB)."""
    rows = []
    for layout in layouts(shape, gpus):
        if global_batch % (micro_batch * layout.dp):
            continue
        states = model_state_bytes(shape, layout, precision)
        activations = activation_bytes(shape, layout, seq, micro_batch)
        total = states + activations
        communication = communication_bytes(shape, layout, seq, micro_batch, global_batch, precision)
        rows.append({"layout": layout, "states_gb": states / GB, "activations_gb": activations / GB,
                     "total_gb": total / GB, "fits": total <= gpu_memory_gb * GB,
                     **{f"{k}_gb": v / GB for k, v in communication.items()}})
    return rows


def format_plan(shape: ModelShape, rows: list[dict], gpus: int, gpu_memory_gb: float, only_fitting: bool) -> str:
    lines = [f"{shape.name}: {shape.parameters() / 1e9:.2f}B parameters, {gpus} GPUs of {gpu_memory_gb:g} GB",
             f"{'tp':>3} {'pp':>4} {'dp':>6} {'fsdp':>5} {'recompute':>9} {'states GB':>10} {'activ. GB':>10} "
             f"{'total GB':>9} {'fits':>5} {'TP GB/step':>11} {'PP GB/step':>11} {'DP GB/step':>11}"]
    for row in rows:
        if only_fitting and not row["fits"]:
            continue
        layout = row["layout"]
        lines.append(f"{layout.tp:>3} {layout.pp:>4} {layout.dp:>6} {str(layout.fsdp):>5} {str(layout.recompute):>9} "
                     f"{row['states_gb']:>10.1f} {row['activations_gb']:>10.1f} {row['total_gb']:>9.1f} "
                     f"{'yes' if row['fits'] else 'no':>5} {row['tp_gb']:>11.1f} {row['pp_gb']:>11.2f} "
                     f"{row['dp_gb']:>11.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labml_nn.transformers.parallel",
                                     description="Memory and communication of parallel layouts for Llama 3.1.")
    parser.add_argument("--plan", required=True, choices=sorted(MODELS), help="the model")
    parser.add_argument("--gpus", type=int, required=True, help="number of GPUs")
    parser.add_argument("--gpu-memory", type=float, default=80.0, help="memory of one GPU, GB (default 80)")
    parser.add_argument("--seq-len", type=int, default=8192, help="tokens per sequence (default 8192)")
    parser.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch (default 1)")
    parser.add_argument("--global-batch", type=int, default=2048,
                        help="sequences per optimizer step (default 2048: 16M tokens of 8192, as Llama 3 405B)")
    parser.add_argument("--all", action="store_true", help="also list the layouts that do not fit")
    args = parser.parse_args(argv)
    for name in ("gpus", "seq_len", "micro_batch", "global_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.gpu_memory <= 0:
        parser.error("--gpu-memory must be positive")
    shape = MODELS[args.plan]
    rows = plan(shape, args.gpus, args.gpu_memory, args.seq_len, args.micro_batch, args.global_batch)
    if not rows:
        parser.error(f"no layout of {args.gpus} GPUs divides the global batch of {args.global_batch} sequences")
    print(format_plan(shape, rows, args.gpus, args.gpu_memory, only_fitting=not args.all))
    if not any(row["fits"] for row in rows):
        print("no layout fits: add GPUs, or shorten --seq-len")

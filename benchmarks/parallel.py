"""Tensor parallelism on CPU with gloo: the bytes each collective moves per step, counted against the formula, and
the time per training step of the baby GPT split over 2 processes against 1.

Two processes are spawned. Every collective of the written-out split (`labml_nn.transformers.parallel`) goes through
`torch.distributed`'s functions, which the benchmark wraps to count calls and payload bytes during one training step,
with and without sequence parallelism; the formula is the page's: per layer, the forward pass has two all-reduces of
the `[batch, seq, d_model]` activation (or two reduce-scatters and two all-gathers with sequence parallelism), and
the backward pass as many again. Then the step times are measured interleaved, round by round: a step of the
tensor-parallel model on both processes, and a step of the plain model on process 0 alone (process 1 waits).

    python benchmarks/parallel.py                  # baby GPT, batch 12 x 64 tokens, 20 rounds
    python benchmarks/parallel.py --rounds 1 --batch 2 --seq 8 --json out.json   # a smoke run, the figures saved
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(seq: int):
    from labml_nn.experiments.char_lm import baby_model
    from labml_nn.transformers.gpt import GPT
    torch.manual_seed(0)
    return GPT(baby_model(n_src_vocab=65, positional="learned", ffn_activation="gelu", scale_embeddings=False,
                          max_len=seq))


def step(model, optimizer, tokens, targets) -> None:
    logits = model(tokens)
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# Counting wrappers around the three collectives the split uses: calls and payload bytes (the full tensor a
# reduce-scatter reduces, the full tensor an all-gather produces, the tensor an all-reduce reduces).
COUNTS: dict[str, list[int]] = defaultdict(lambda: [0, 0])


def counting(name, function, payload):
    def wrapped(*args, **kwargs):
        COUNTS[name][0] += 1
        COUNTS[name][1] += payload(*args)
        return function(*args, **kwargs)
    return wrapped


def bytes_of(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def install_counters() -> None:
    dist.all_reduce = counting("all_reduce", dist.all_reduce, lambda t, *a: bytes_of([t]))
    dist.all_gather = counting("all_gather", dist.all_gather, lambda out, t, *a: bytes_of(out))
    dist.reduce_scatter = counting("reduce_scatter", dist.reduce_scatter, lambda out, parts, *a: bytes_of(parts))


def formula(model, batch: int, seq: int, tp: int, sequence_parallel: bool) -> dict[str, list[int]]:
    """The page's count of one step (forward and backward) of the written-out split."""
    layers, d = len(model.encoder.layers), model.encoder.layers[0].d_model
    activation = batch * seq * d * 4
    if not sequence_parallel:
        # $g$ twice forward, $f$ twice backward, per layer
        return {"all_reduce": [4 * layers, 4 * layers * activation]}
    # $\bar f$ (all-gather) twice forward and $\bar g$'s backward (all-gather) twice; the gather of the final norm's
    # output forward and of the embeddings' gradient backward
    gathers = 4 * layers + 2
    # $\bar g$ (reduce-scatter) twice forward and $\bar f$'s backward twice
    scatters = 4 * layers
    # The gradients of parameters on a sequence shard: each layer's two norms (gain and bias) and two row-parallel
    # biases, and the final norm
    sharded = [p for layer in model.encoder.layers for p in (*layer.norm_self_attn.parameters(),
                                                             *layer.norm_ff.parameters(),
                                                             layer.self_attn.output.bias, layer.feed_forward.layer2.bias)]
    sharded += list(model.encoder.norm.parameters())
    return {"all_gather": [gathers, gathers * activation], "reduce_scatter": [scatters, scatters * activation],
            "all_reduce": [len(sharded), sum(p.numel() * 4 for p in sharded)]}


def worker(rank: int, world_size: int, port: int, args, out: str) -> None:
    from labml_nn.experiments.distributed import leave_process_group
    from labml_nn.transformers.parallel import shard_gpt
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    install_counters()
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 65, (args.batch, args.seq), generator=generator)
    targets = torch.randint(0, 65, (args.batch, args.seq), generator=generator)
    result = {}
    for sequence_parallel in (False, True):
        model = build(args.seq)
        shard = shard_gpt(model, None, sequence_parallel)
        optimizer = torch.optim.AdamW(shard.parameters(), lr=1e-3)
        COUNTS.clear()
        step(shard, optimizer, tokens, targets)
        result[f"sp={sequence_parallel}"] = {"counted": {k: list(v) for k, v in COUNTS.items()},
                                             "formula": formula(model, args.batch, args.seq, world_size,
                                                                sequence_parallel)}
    # Interleaved timing: TP=2 on both processes, then one process alone
    model = build(args.seq)
    shard = shard_gpt(model, None, False)
    tp_optimizer = torch.optim.AdamW(shard.parameters(), lr=1e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = {"tp2": [], "one": [], "comm": []}
    # The communication alone: the step's 4 all-reduces per layer of the `[batch, seq, d_model]` activation
    activation = torch.zeros(args.batch, args.seq, model.encoder.layers[0].d_model)
    all_reduces = 4 * len(model.encoder.layers)
    for round_ in range(args.rounds + 1):
        dist.barrier()
        start = time.perf_counter()
        step(shard, tp_optimizer, tokens, targets)
        dist.barrier()
        elapsed_tp = time.perf_counter() - start
        if rank == 0:
            start = time.perf_counter()
            step(model, optimizer, tokens, targets)
            elapsed_one = time.perf_counter() - start
        dist.barrier()
        start = time.perf_counter()
        for _ in range(all_reduces):
            dist.all_reduce(activation)
        elapsed_comm = time.perf_counter() - start
        if round_ > 0 and rank == 0:  # the first round warms up
            times["tp2"].append(elapsed_tp)
            times["one"].append(elapsed_one)
            times["comm"].append(elapsed_comm)
    if rank == 0:
        result["times"] = times
        Path(out).write_text(json.dumps(result))
    leave_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the counts, the formula's and the times to this file")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp, "result.json"))
        mp.spawn(worker, args=(2, port, args, out), nprocs=2)
        result = json.loads(Path(out).read_text())
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    print(f"baby GPT, batch {args.batch} x {args.seq} tokens, float32, gloo on CPU, 2 processes")
    print(f"{'split':<8} {'collective':<15} {'calls':>6} {'formula':>8} {'payload MB':>11} {'formula MB':>11}")
    for split in ("sp=False", "sp=True"):
        counted, expected = result[split]["counted"], result[split]["formula"]
        for name in sorted(set(counted) | set(expected)):
            c, e = counted.get(name, [0, 0]), expected.get(name, [0, 0])
            print(f"{split:<8} {name:<15} {c[0]:>6} {e[0]:>8} {c[1] / 1e6:>11.3f} {e[1] / 1e6:>11.3f}")
    print("bytes sent per process: all-reduce 2(t-1)/t x payload, all-gather and reduce-scatter (t-1)/t x payload")
    one, tp2 = statistics.median(result["times"]["one"]), statistics.median(result["times"]["tp2"])
    comm = statistics.median(result["times"]["comm"])
    print(f"time per training step, median of {args.rounds} interleaved rounds: 1 process {1000 * one:.1f} ms, "
          f"TP=2 {1000 * tp2:.1f} ms, ratio TP=2 / 1 = {tp2 / one:.2f}; the step's all-reduces alone "
          f"{1000 * comm:.1f} ms")


if __name__ == "__main__":
    main()

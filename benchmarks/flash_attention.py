"""Attention forward + backward: `flash_attention` (blocks in a Python loop) against PyTorch's fused SDPA kernel.

Causal self-attention on random `[batch, heads, seq, d_head]` inputs. The candidates run in the same process,
interleaved round by round so that drift in the machine's speed hits them alike; we print the median time per
iteration, the ratio to SDPA, and the number of blocks the Python loops visit (forward and backward), with the time
per visited block. `flash_attention` is expected to be slower: every block is several PyTorch calls dispatched from
Python on small matrices, each reading and writing main memory, where SDPA's kernel is one call with the loop in
C++ (on a GPU, in on-chip memory). Larger blocks mean fewer calls; the `block 128` row shows how much of the gap
is the per-block overhead.

    python benchmarks/flash_attention.py                 # three lengths, float32, on the CPU
    python benchmarks/flash_attention.py --device cuda --dtype bfloat16   # also the Triton kernel's forward pass

On a GPU with Triton installed it also times the forward pass of the
Triton kernel (`labml_nn/transformers/flash_attention/triton_forward.py`) against SDPA's flash backend.
"""
import argparse

import torch
import torch.nn.functional as F

from labml_nn.transformers.flash_attention import causal_block_counts, flash_attention
from timing import interleaved_medians


def forward_backward(fn, inputs) -> None:
    q, k, v, grad_out = inputs
    for x in (q, k, v):
        x.grad = None
    fn(q, k, v).backward(grad_out)


def run(batch: int, heads: int, seq: int, d_head: int, device: torch.device, dtype: torch.dtype, rounds: int,
        warmup: int) -> dict[str, float]:
    candidates = {
        "SDPA": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "flash_attention, block 64": lambda q, k, v: flash_attention(q, k, v, is_causal=True),
        "flash_attention, block 128": lambda q, k, v: flash_attention(q, k, v, is_causal=True, block_q=128,
                                                                      block_k=128),
    }
    shape = (batch, heads, seq, d_head)
    inputs = [torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3)]
    inputs.append(torch.randn(shape, device=device, dtype=dtype))
    steps = {name: (lambda fn=fn: forward_backward(fn, inputs)) for name, fn in candidates.items()}
    return interleaved_medians(steps, device, rounds, warmup)


def run_triton_forward(batch: int, heads: int, seq: int, d_head: int, dtype: torch.dtype, rounds: int,
                       warmup: int) -> dict[str, float]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from labml_nn.transformers.flash_attention.triton_forward import flash_attention_triton

    def sdpa_flash(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    candidates = {"SDPA flash backend": sdpa_flash,
                  "Triton kernel": lambda q, k, v: flash_attention_triton(q, k, v, is_causal=True)[0]}
    q, k, v = (torch.randn(batch, heads, seq, d_head, device="cuda", dtype=dtype) for _ in range(3))
    forwards = {name: (lambda fn=fn: fn(q, k, v)) for name, fn in candidates.items()}
    with torch.no_grad():
        return interleaved_medians(forwards, q.device, rounds, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    configs = [(1, 4, 256, 64), (1, 4, 1024, 64), (1, 4, 2048, 64)] if not args.tiny else [(1, 2, 32, 8)]
    print(f"causal attention forward+backward, {args.dtype} on {device} "
          f"({torch.get_num_threads()} threads), median of {args.rounds}")
    for batch, heads, seq, d_head in configs:
        medians = run(batch, heads, seq, d_head, device, dtype, args.rounds, args.warmup)
        sdpa = medians["SDPA"]
        print(f"\nB={batch} heads={heads} T={seq} d_head={d_head}")
        for name, median in medians.items():
            line = f"  {name:28s} {median * 1e3:9.2f} ms  {median / sdpa:6.1f}x SDPA"
            if name.startswith("flash_attention"):
                block = int(name.rsplit(" ", 1)[1])
                counts = causal_block_counts(seq, seq, block, block)
                # the forward and the backward pass each visit the blocks that are not skipped
                visited = 2 * (counts["full"] + counts["masked"])
                line += f"  ({visited} blocks visited, {median / visited * 1e6:.0f} us per block)"
            print(line)

    from labml_nn.transformers.flash_attention.triton_forward import triton_available

    if device.type == "cuda" and triton_available() and dtype != torch.float32:
        print(f"\ncausal attention forward only, {args.dtype}, Triton kernel against SDPA's flash backend")
        for batch, heads, seq, d_head in [(8, 16, 1024, 64), (4, 16, 4096, 64), (2, 16, 8192, 128)]:
            medians = run_triton_forward(batch, heads, seq, d_head, dtype, args.rounds, args.warmup)
            sdpa = medians["SDPA flash backend"]
            print(f"B={batch} heads={heads} T={seq} d_head={d_head}: " + ", ".join(
                f"{name} {median * 1e3:.3f} ms ({median / sdpa:.2f}x)" for name, median in medians.items()))


if __name__ == "__main__":
    main()

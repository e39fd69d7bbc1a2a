"""Attention forward + backward: `MultiHeadAttention` against the bare lower bound and `nn.MultiheadAttention`.

The lower bound is the least a causal self-attention layer can do: one fused qkv `nn.Linear`, SDPA, and the
output `nn.Linear`. All three run in the same process, interleaved round by round so that drift in the
machine's speed hits them alike; we print the median time per iteration and the ratio to the bound.

    python benchmarks/attention.py               # the two issue configurations, float32, on CPU
    python benchmarks/attention.py --device cuda --dtype bfloat16
"""
import argparse

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.mha import MultiHeadAttention
from timing import interleaved_medians


class BareAttention(nn.Module):
    """The lower bound: fused qkv projection, SDPA with its causal kernel, output projection."""

    def __init__(self, heads: int, d_model: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.heads, d_model // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, seq, d_model))


def run(batch: int, seq: int, d_model: int, heads: int, device: torch.device, dtype: torch.dtype,
        rounds: int, warmup: int) -> dict[str, float]:
    causal_mask = ~torch.ones(seq, seq, dtype=torch.bool, device=device).tril()
    ours = MultiHeadAttention(heads, d_model).to(device, dtype)
    bare = BareAttention(heads, d_model).to(device, dtype)
    torch_mha = nn.MultiheadAttention(d_model, heads, batch_first=True).to(device, dtype)
    candidates = {
        "bare bound": bare,
        "labml_nn MultiHeadAttention": lambda x: ours(x, x, x, is_causal=True),
        "torch.nn.MultiheadAttention": lambda x: torch_mha(x, x, x, attn_mask=causal_mask, is_causal=True,
                                                           need_weights=False)[0],
    }
    x = torch.randn(batch, seq, d_model, device=device, dtype=dtype, requires_grad=True)
    return forward_backward_medians(candidates, x, device, rounds, warmup)


# The MoE benchmark times its layers this way too.
def forward_backward_medians(candidates: dict, x: torch.Tensor, device: torch.device, rounds: int,
                             warmup: int) -> dict[str, float]:
    """Median seconds of a forward and backward pass of each candidate (a function of `x`) on `x`."""
    steps = {name: (lambda fn=fn: fn(x).sum().backward()) for name, fn in candidates.items()}
    return interleaved_medians(steps, device, rounds, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    configs = [(8, 256, 384, 6), (4, 1024, 256, 4)] if not args.tiny else [(2, 16, 32, 4)]
    print(f"attention forward+backward, causal, {args.dtype} on {device} "
          f"({torch.get_num_threads()} threads), median of {args.rounds}")
    for batch, seq, d_model, heads in configs:
        medians = run(batch, seq, d_model, heads, device, dtype, args.rounds, args.warmup)
        bound = medians["bare bound"]
        print(f"\nB={batch} T={seq} d_model={d_model} heads={heads}")
        for name, median in medians.items():
            print(f"  {name:30s} {median * 1e3:8.2f} ms  {median / bound:5.2f}x the bound")


if __name__ == "__main__":
    main()

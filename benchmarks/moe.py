"""Mixture of experts forward + backward: `MoE` against Hugging Face's `MixtralSparseMoeBlock` with the same
weights, and against a dense SwiGLU feed-forward network with the same active parameters (hidden width
`top_k * d_ff`), the cost a token pays without routing.

All three run in the same process, interleaved round by round so that drift in the machine's speed hits them
alike; we print the median time per iteration and the ratios. A second `MoE` row runs with a capacity factor
(the padded batched product).

    python benchmarks/moe.py                       # 8 experts, top-2, 4096 tokens, float32, on the CPU
    python benchmarks/moe.py --device cuda --dtype bfloat16

Measured on a 2-core CPU shared with other jobs, one thread, transformers 5.25 (medians of 12 interleaved rounds):
at d_model 256 and experts of width 512, the dropless `MoE` took 1.06x the dense network's time, the capacity
layer 1.45x, and Hugging Face's block 1.17x (1.11x the `MoE`); at d_model 64, 1.11x, 1.77x and 1.22x. Hugging
Face's block of transformers 5.x already sorts its work by expert (it loops over the experts that received
tokens, with fused gate and up projections), so it is no longer several times the dense network: being twice
as fast as it would mean beating the dense network with the same arithmetic.
"""
import argparse

import torch

# The timing loop of the attention benchmark (`python benchmarks/moe.py` runs with `benchmarks/` on the path).
from attention import forward_backward_medians
from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.moe import MoE


def hugging_face_block(moe: MoE, d_model: int, d_ff: int, n_experts: int, top_k: int):
    """`MixtralSparseMoeBlock` with `moe`'s weights, or `None` without `transformers`."""
    try:
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    except ImportError:
        return None
    config = MixtralConfig(hidden_size=d_model, intermediate_size=d_ff, num_local_experts=n_experts,
                           num_experts_per_tok=top_k)
    block = MixtralSparseMoeBlock(config)
    with torch.no_grad():
        block.gate.weight.copy_(moe.router.gate.weight)
        block.experts.gate_up_proj.copy_(torch.cat([moe.experts.w1, moe.experts.w3], dim=1))
        block.experts.down_proj.copy_(moe.experts.w2)
    return block


def run(tokens: int, d_model: int, d_ff: int, n_experts: int, top_k: int, device: torch.device, dtype: torch.dtype,
        rounds: int, warmup: int) -> dict[str, float]:
    torch.manual_seed(0)
    ours = MoE(d_model, d_ff, n_experts, top_k, aux_loss_coeff=1e-2)
    capacity = MoE(d_model, d_ff, n_experts, top_k, capacity_factor=1.25)
    capacity.load_state_dict(ours.state_dict())
    dense = FeedForward(d_model, top_k * d_ff, dropout=0.0, activation=torch.nn.SiLU(), is_gated=True,
                        bias1=False, bias2=False, bias_gate=False)
    theirs = hugging_face_block(ours, d_model, d_ff, n_experts, top_k)
    candidates = {"dense SwiGLU (same active parameters)": dense.to(device, dtype),
                  "labml_nn MoE (dropless)": lambda x: (lambda y, s: y + s.aux_loss)(*ours.to(device, dtype)(x)),
                  "labml_nn MoE (capacity 1.25)": lambda x: capacity.to(device, dtype)(x)[0]}
    if theirs is not None:
        candidates["HF MixtralSparseMoeBlock"] = theirs.to(device, dtype)
    x = torch.randn(1, tokens, d_model, device=device, dtype=dtype, requires_grad=True)
    return forward_backward_medians(candidates, x, device, rounds, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-ff", type=int, default=512)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args()
    if args.tiny:
        args.tokens, args.d_model, args.d_ff = 64, 16, 32
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    print(f"{args.tokens} tokens, d_model {args.d_model}, {args.experts} experts of d_ff {args.d_ff}, "
          f"top-{args.top_k}, {args.dtype} on {device}, {torch.get_num_threads()} thread(s), "
          f"median of {args.rounds} interleaved rounds (forward + backward)")
    medians = run(args.tokens, args.d_model, args.d_ff, args.experts, args.top_k, device, dtype, args.rounds,
                  args.warmup)
    dense = medians["dense SwiGLU (same active parameters)"]
    ours = medians["labml_nn MoE (dropless)"]
    for name, median in medians.items():
        print(f"  {name:40s} {median * 1e3:8.2f} ms   {median / dense:5.2f}x the dense FFN")
    if "HF MixtralSparseMoeBlock" in medians:
        print(f"  HF MixtralSparseMoeBlock / labml_nn MoE: {medians['HF MixtralSparseMoeBlock'] / ours:.2f}x")


if __name__ == "__main__":
    main()

"""`GPT.generate` with its key/value cache against recomputing the whole prefix for every new token.

Both decode greedily from the same one-token prompt, so they must produce the same tokens (checked); the cache
turns each step's forward pass over the whole prefix into a forward pass over one token. The context
(`max_len`) is larger than the generated text, so the cache is used all the way. We print the median wall time
of each over a few repeats, tokens per second, and the speed-up.

    python benchmarks/gpt_generate.py             # baby configuration with a 1024-token context, 500 new tokens
    python benchmarks/gpt_generate.py --device cuda
"""
import argparse
from dataclasses import replace

import torch

from labml_nn.transformers.experiments.gpt import baby
from labml_nn.transformers.gpt import GPT
from timing import interleaved_medians


@torch.inference_mode()
def generate_without_cache(model: GPT, tokens: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding that runs the whole prefix (its last `max_len` tokens) through the model at every step."""
    for _ in range(max_new_tokens):
        logits = model(tokens[:, -model.max_len:])[:, -1]
        tokens = torch.cat([tokens, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args()
    device = torch.device(args.device)
    # The GPT experiment's baby model, with room for the whole generation in its context
    configs = replace(baby().model, n_src_vocab=65, max_len=1024)
    if args.tiny:
        configs = replace(configs, n_layers=2, d_model=32, d_ff=128, max_len=64)
    torch.manual_seed(0)
    model = GPT(configs).to(device).eval()
    prompt = torch.zeros(args.batch, 1, dtype=torch.long, device=device)

    candidates = {
        "recompute prefix": lambda: generate_without_cache(model, prompt, args.new_tokens),
        "GPT.generate (cache)": lambda: model.generate(prompt, args.new_tokens, temperature=0.0),
    }
    outputs = {name: fn() for name, fn in candidates.items()}
    if not torch.equal(*outputs.values()):
        raise RuntimeError("cached and uncached greedy decoding produced different tokens")
    medians = interleaved_medians(candidates, device, args.rounds)

    print(f"generate {args.new_tokens} tokens, batch {args.batch}, float32 on {device} "
          f"({torch.get_num_threads()} threads), {configs.n_layers} layers, d_model {configs.d_model}, "
          f"max_len {configs.max_len}; median of {args.rounds}")
    for name, median in medians.items():
        print(f"  {name:22s} {median * 1e3:9.1f} ms  {args.batch * args.new_tokens / median:8.0f} tokens/s")
    print(f"  speed-up of the cache: {medians['recompute prefix'] / medians['GPT.generate (cache)']:.2f}x")


if __name__ == "__main__":
    main()

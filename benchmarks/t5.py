"""Greedy generation of 64 tokens: our `T5.generate` against Hugging Face's `T5ForConditionalGeneration.generate`.

One random Hugging Face T5 (v1.1: gated GELU, untied head) is saved with `save_pretrained` and loaded with our
`load_hf`, so both models hold the same weights and configuration. Both decode the same padded batch greedily;
the tokens must agree (checked). The rounds alternate between the two, and we print the median wall time of each
and the ratio, and the same for the fastest rounds. `transformers` is needed (the `test` extra).

    python benchmarks/t5.py        # d_model 128, 4 heads of 32, d_ff 512, 2 + 2 layers, vocabulary 4096, batch 4
    python benchmarks/t5.py --d-model 256 --heads 4 --d-kv 64 --d-ff 1024 --layers 4 --vocab 8192
    python benchmarks/t5.py --device cuda
"""
import argparse
import statistics
import tempfile

import torch

from labml_nn.transformers.t5 import load_hf
from timing import interleaved_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--input-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-kv", type=int, default=32)
    parser.add_argument("--d-ff", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2, help="in the encoder and in the decoder")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args()
    import transformers

    device = torch.device(args.device)
    size = (dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2) if args.tiny else
            dict(vocab_size=args.vocab, d_model=args.d_model, d_kv=args.d_kv, d_ff=args.d_ff, num_layers=args.layers,
                 num_heads=args.heads))
    # An end id that random weights are unlikely to pick, so that both run all the steps
    config = transformers.T5Config(**size, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   decoder_start_token_id=0, eos_token_id=size["vocab_size"] - 1)
    torch.manual_seed(0)
    reference = transformers.T5ForConditionalGeneration(config).eval()
    with tempfile.TemporaryDirectory() as model_dir:
        reference.save_pretrained(model_dir)
        ours = load_hf(model_dir).to(device)
    reference = reference.to(device)

    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, size["vocab_size"] - 1, (args.batch, args.input_length), generator=generator).to(device)
    mask = torch.ones_like(ids)
    # The last row is padded to half the length
    mask[-1, args.input_length // 2:] = 0

    candidates = {
        "Hugging Face generate": lambda: reference.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                                            num_beams=1, max_new_tokens=args.new_tokens),
        "T5.generate": lambda: ours.generate(ids, mask, max_new_tokens=args.new_tokens),
    }
    outputs = {name: fn() for name, fn in candidates.items()}
    first, second = outputs.values()
    if not torch.equal(first, second):
        raise RuntimeError("the two generations differ")
    times = interleaved_times(candidates, device, args.rounds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    # On a shared machine every round is slowed by whatever else runs; the fastest round is the least disturbed.
    fastest = {name: min(t) for name, t in times.items()}

    new = first.shape[1] - 1
    print(f"greedy generation of {new} tokens, batch {args.batch}, inputs of {args.input_length} tokens, float32 on "
          f"{device} ({torch.get_num_threads()} threads); T5 v1.1 with d_model {config.d_model}, {config.num_heads} "
          f"heads of {config.d_kv}, d_ff {config.d_ff}, {config.num_layers} + {config.num_decoder_layers} layers, "
          f"vocabulary {config.vocab_size}; transformers {transformers.__version__}; median of {args.rounds} "
          f"interleaved rounds")
    for name, median in medians.items():
        print(f"  {name:22s} {median * 1e3:9.1f} ms  {args.batch * new / median:8.0f} tokens/s  "
              f"(fastest round {fastest[name] * 1e3:.1f} ms)")
    ratio = medians["Hugging Face generate"] / medians["T5.generate"]
    print(f"  T5.generate is {ratio:.2f}x as fast as Hugging Face's generate (target: at least 1.5x); "
          f"fastest rounds: {fastest['Hugging Face generate'] / fastest['T5.generate']:.2f}x")


if __name__ == "__main__":
    main()

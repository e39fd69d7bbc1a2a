"""Llama generation speed: the KV cache against recomputing the prefix, and prefill/decode tokens/s of a ~100M model.

1. **Cache speedup.** The experiment's model (`labml_nn/transformers/experiments/llama.py`, random weights,
   a 65-character vocabulary) completes a prompt with `--new-tokens` greedy tokens, once with `Llama.generate`
   (KV cache) and once with `generate_without_cache` (the whole sequence through the model at every step).
   Both must give the same tokens. Rounds alternate between the two; we print the medians, the minimums and
   the ratios of each. The two paths react differently to a shared machine: recomputation is a few large
   matrix products per token and its time hardly moves, while a cached step is some 200 calls of a few
   microseconds each, whose time grows with every interruption, so its rounds spread widely (on this
   project's 2-core machine, 0.43 to 0.97 s for the same work) and its minimum is the better estimate of
   what it costs. On a machine with more than one core, the comparison runs twice: with torch's threads, and
   with one thread, per core. Recomputation's larger matrix products spread over the cores, while a cached
   step's are too small to split, so the first ratio is the wall-clock gain on this machine and the second the
   work the cache saves.
2. **Prefill and decode.** A random Llama of about 100M parameters (dim 768, 8 layers, 12 heads, 4 kv heads,
   vocabulary 32000) reads a `--prompt-len` prompt in one forward pass (prefill) and then generates
   `--decode-tokens` tokens one at a time with the cache (decode). With `--compile`, the same after
   `torch.compile(model.forward_inference, dynamic=True)` (slow to compile on a small CPU).

    python benchmarks/llama_generate.py                           # CPU, float32
    python benchmarks/llama_generate.py --threads 1               # on a machine shared with other jobs
    python benchmarks/llama_generate.py --device cuda --dtype bfloat16 --compile
"""
import argparse
import statistics

import torch

from labml_nn.transformers.experiments.llama import LlamaExperiment, model_args
from labml_nn.transformers.llama import ModelArgs, Transformer
from labml_nn.transformers.llama.generation import Llama, generate_without_cache
from labml_nn.transformers.utils import count_parameters
from timing import timed

# Tiny Shakespeare's character vocabulary.
CHAR_VOCAB = 65
PROMPT_LEN = 12


def random_model(args: ModelArgs, device: torch.device, dtype: torch.dtype) -> Transformer:
    return Transformer(args).to(device=device, dtype=dtype).eval()


# ## 1. Cache against recomputation
def cache_speedup(new_tokens: int, rounds: int, device: torch.device, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    config = LlamaExperiment(gen_tokens=new_tokens, prompt="x" * PROMPT_LEN)
    llama = Llama(random_model(model_args(config, CHAR_VOCAB), device, dtype))
    prompt = torch.randint(0, CHAR_VOCAB, (PROMPT_LEN,)).tolist()
    times = {"cached": [], "recomputed": []}
    for _ in range(rounds):
        cached, t_cached = timed(lambda: llama.generate([prompt], new_tokens, temperature=0.0)[0], device)
        recomputed, t_recomputed = timed(lambda: generate_without_cache(llama.model, [prompt], new_tokens)[0], device)
        if cached != recomputed:
            raise AssertionError("cached and recomputed greedy generations differ")
        times["cached"].append(t_cached)
        times["recomputed"].append(t_recomputed)
    params = count_parameters(llama.model)
    print(f"\n1. the experiment's model ({params / 1e6:.2f}M parameters), prompt {PROMPT_LEN}, "
          f"{new_tokens} new tokens, greedy, {torch.get_num_threads()} thread(s), {rounds} rounds: median (minimum)")
    for label, statistic in (("median", statistics.median), ("minimum", min)):
        cached_s, recomputed_s = statistic(times["cached"]), statistic(times["recomputed"])
        if label == "median":
            print(f"  KV cache              {cached_s:8.3f} s  {new_tokens / cached_s:9.1f} tokens/s   "
                  f"({min(times['cached']):.3f} s)")
            print(f"  recomputing prefix    {recomputed_s:8.3f} s  {new_tokens / recomputed_s:9.1f} tokens/s   "
                  f"({min(times['recomputed']):.3f} s)")
        print(f"  speedup of the cache  {recomputed_s / cached_s:8.1f}x   ({label}s)")


# ## 2. Prefill and decode of a ~100M model
def prefill_decode(model: Transformer, prompt_len: int, decode_tokens: int, rounds: int, compile_model: bool,
                   device: torch.device) -> None:
    forward = torch.compile(model.forward_inference, dynamic=True) if compile_model else model.forward_inference
    prompt = torch.randint(0, model.vocab_size, (1, prompt_len), device=device)

    def generate():
        logits, t_prefill = timed(lambda: forward(prompt, 0), device)
        token = logits[:, -1:].argmax(-1)

        def decode():
            nonlocal token
            for pos in range(prompt_len, prompt_len + decode_tokens):
                token = forward(token, pos)[:, -1:].argmax(-1)
            return token

        _, t_decode = timed(decode, device)
        return t_prefill, t_decode

    # One warm-up round (for torch.compile, the compilation: prefill, then decode shapes).
    _, compile_s = timed(generate, device)
    results = [generate() for _ in range(rounds)]
    prefill_s = statistics.median(r[0] for r in results)
    decode_s = statistics.median(r[1] for r in results)
    label = "torch.compile" if compile_model else "eager"
    print(f"  {label:14s} prefill {prompt_len / prefill_s:9.1f} tokens/s ({prefill_s * 1e3:8.1f} ms)   "
          f"decode {decode_tokens / decode_s:8.1f} tokens/s ({decode_s / decode_tokens * 1e3:7.2f} ms/token)"
          + (f"   [warm-up incl. compilation {compile_s:.0f} s]" if compile_model else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--new-tokens", type=int, default=500, help="tokens for the cache comparison")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the ~100M model under torch.compile")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)

    if args.tiny:
        large = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=256, multiple_of=32,
                          max_seq_len=64, max_batch_size=1)
        args.new_tokens, args.prompt_len, args.decode_tokens = 16, 8, 4
    else:
        large = ModelArgs(dim=768, n_layers=8, n_heads=12, n_kv_heads=4, vocab_size=32000, multiple_of=256,
                          max_seq_len=args.prompt_len + args.decode_tokens, max_batch_size=1)
    print(f"Llama generation, {args.dtype} on {device} ({torch.get_num_threads()} threads)")
    cache_speedup(args.new_tokens, args.rounds, device, dtype)
    threads = torch.get_num_threads()
    if device.type == "cpu" and args.threads is None and threads > 1:
        torch.set_num_threads(1)
        cache_speedup(args.new_tokens, args.rounds, device, dtype)
        torch.set_num_threads(threads)

    model = random_model(large, device, dtype)
    params = count_parameters(model)
    print(f"\n2. random Llama, {params / 1e6:.1f}M parameters (dim {large.dim}, {large.n_layers} layers, "
          f"{large.n_heads} heads, {large.n_kv_heads} kv heads, vocabulary {large.vocab_size}), batch 1, "
          f"prompt {args.prompt_len}, {args.decode_tokens} decoded tokens, median of {args.rounds}")
    prefill_decode(model, args.prompt_len, args.decode_tokens, args.rounds, False, device)
    if args.compile:
        prefill_decode(model, args.prompt_len, args.decode_tokens, args.rounds, True, device)


if __name__ == "__main__":
    main()

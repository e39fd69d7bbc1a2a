"""LLaVA generation: `Llava.generate` against Hugging Face's `LlavaForConditionalGeneration.generate`, same weights.

A random tiny LLaVA (CLIP tower of 2 layers, width 64, 32x32 images in 8x8 patches = 16 image tokens; a Llama of
2 layers, width 64, vocabulary 100) is saved by Hugging Face with `save_pretrained` and loaded with our `load_hf`.
Both complete the same batch of prompts (16 image tokens and some text) greedily for `--new-tokens` tokens; the
tokens must agree. Rounds alternate between the two; we print medians and minimums, and their ratio. The vision
tower's forward calls are counted with a forward hook during one of our generations and one of Hugging Face's:
the image is encoded once per prompt (one call for the whole batch).

`transformers` is needed (test-only dependency of this package).

    python benchmarks/llava.py
    python benchmarks/llava.py --tiny --rounds 1   # seconds (the smoke test)
"""
import argparse
import statistics
import tempfile

import torch

from labml_nn.transformers.llava import load_hf
from timing import interleaved_times


def build(directory: str, layers: int, width: int):
    import transformers
    torch.manual_seed(0)
    vision = transformers.CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                                           num_attention_heads=4, image_size=32, patch_size=8)
    text = transformers.LlamaConfig(vocab_size=100, hidden_size=width, intermediate_size=2 * width,
                                    num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                    max_position_embeddings=256)
    reference = transformers.LlavaForConditionalGeneration(
        transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_id=99)).eval()
    reference.save_pretrained(directory)
    return reference, load_hf(directory, max_batch_size=8)


def count_calls(module: torch.nn.Module, fn) -> int:
    calls = 0

    def hook(*_):
        nonlocal calls
        calls += 1
    handle = module.register_forward_hook(hook)
    try:
        fn()
    finally:
        handle.remove()
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="one layer, width 32, 8 new tokens")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers, width, new_tokens = (1, 32, 8) if args.tiny else (2, 64, args.new_tokens)
    with tempfile.TemporaryDirectory() as directory:
        reference, ours = build(directory, layers, width)
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, 99, (args.batch, 8), generator=g)
    input_ids = torch.cat([text[:, :2], torch.full((args.batch, 16), 99), text[:, 2:]], dim=1)
    pixels = torch.randn(args.batch, 3, 32, 32, generator=g)

    def run_ours():
        return ours.generate(input_ids, pixels, new_tokens)

    def run_theirs():
        with torch.inference_mode():
            out = reference.generate(input_ids=input_ids, pixel_values=pixels, max_new_tokens=new_tokens,
                                     do_sample=False, eos_token_id=None, pad_token_id=0)
        return out[:, input_ids.shape[1]:]

    # Warm-up, and the tokens must agree.
    if not torch.equal(run_ours(), run_theirs()):
        raise AssertionError("our greedy tokens differ from Hugging Face's")
    times = interleaved_times({"ours": run_ours, "hf": run_theirs}, torch.device("cpu"), args.rounds)
    print(f"LLaVA generate: batch {args.batch}, prompt {input_ids.shape[1]} (16 image tokens), {new_tokens} new "
          f"tokens, greedy, {torch.get_num_threads()} thread(s), {args.rounds} rounds: median (minimum)")
    for name, label in (("ours", "Llava.generate"), ("hf", "HF generate")):
        print(f"  {label:16s} {statistics.median(times[name]) * 1e3:9.1f} ms  ({min(times[name]) * 1e3:.1f} ms)")
    print(f"  speedup          {statistics.median(times['hf']) / statistics.median(times['ours']):9.2f}x (medians), "
          f"{min(times['hf']) / min(times['ours']):.2f}x (minimums)")
    print(f"  vision tower calls per generation: ours {count_calls(ours.vision, run_ours)}, "
          f"HF {count_calls(reference.model.vision_tower, run_theirs)} (batch of {args.batch} prompts)")


if __name__ == "__main__":
    main()

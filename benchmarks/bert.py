"""BERT forward: our `Bert` against Hugging Face's `BertModel` with its SDPA attention, the same weights.

A base-like BERT scaled to a CPU (6 layers of width 384, 6 heads, feed-forward 1536), batch 8 of 128 tokens,
evaluation mode, float32, no gradients. Hugging Face's model is written with `save_pretrained` and read back with
our `load_hf`, and the outputs are checked equal before timing. The two run interleaved round by round, so that drift
in the machine's speed hits them alike; the script prints the medians and the ratio, of the wall-clock time and (on
the CPU) of the process's CPU time, the steadier of the two on a shared machine. Two inputs: without padding
(no attention mask) and with a padded batch (Hugging Face's attention mask, lengths 128 down to 72).

    python benchmarks/bert.py
    python benchmarks/bert.py --device cuda
"""
import argparse
import statistics
import tempfile
import time

import torch

from labml_nn.transformers.bert import Bert, load_hf
from timing import synchronize


# Wall-clock time, and on the CPU also the process's CPU time: on a shared machine the wall clock counts the time
# other processes held the core, the CPU time only the work done (with one thread, the two agree on an idle machine).
def timed(fn, device: torch.device) -> tuple[float, float]:
    synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args(argv)
    import transformers

    device = torch.device(args.device)
    if args.tiny:
        sizes = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
        batch, seq = 2, 16
    else:
        sizes = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536)
        batch, seq = 8, 128
    hf_config = transformers.BertConfig(vocab_size=30522, max_position_embeddings=512, **sizes)
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    theirs = transformers.BertModel(hf_config).eval()
    with tempfile.TemporaryDirectory() as directory:
        theirs.save_pretrained(directory)
        ours = load_hf(directory, Bert)
    theirs, ours = theirs.to(device), ours.to(device)

    input_ids = torch.randint(1000, 30000, (batch, seq), device=device)
    lengths = torch.linspace(seq, seq * 9 // 16, batch).long().to(device)
    padded_mask = (torch.arange(seq, device=device)[None] < lengths[:, None]).long()
    print(f"BERT forward, {sizes['num_hidden_layers']} layers of width {sizes['hidden_size']}, batch {batch} of "
          f"{seq} tokens, float32 on {device} ({torch.get_num_threads()} threads), median of {args.rounds} "
          f"interleaved rounds; Hugging Face transformers {transformers.__version__}, attention "
          f"{theirs.config._attn_implementation}")
    for label, mask in (("no padding", None), ("padded batch", padded_mask)):
        with torch.inference_mode():
            expected = theirs(input_ids=input_ids, attention_mask=mask).last_hidden_state
            got = ours(input_ids, attention_mask=mask)[0]
            real = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
            difference = (got[real] - expected[real]).abs().max().item()
            assert difference < 1e-4, difference
            candidates = {
                "labml_nn Bert": lambda: ours(input_ids, attention_mask=mask),
                "HF BertModel (sdpa)": lambda: theirs(input_ids=input_ids, attention_mask=mask),
            }
            times = {name: [] for name in candidates}
            for round_ in range(args.warmup + args.rounds):
                for name, fn in candidates.items():
                    elapsed = timed(fn, device)
                    if round_ >= args.warmup:
                        times[name].append(elapsed)
        print(f"\n{label} (largest difference of the outputs {difference:.1e})")
        for clock, index in (("wall", 0), ("cpu", 1)):
            if clock == "cpu" and device.type != "cpu":
                continue
            medians = {name: statistics.median(t[index] for t in ts) for name, ts in times.items()}
            reference = medians["HF BertModel (sdpa)"]
            for name, median in medians.items():
                print(f"  {clock:4s} {name:22s} {median * 1e3:8.2f} ms  {median / reference:5.3f}x Hugging Face's time")


if __name__ == "__main__":
    main()

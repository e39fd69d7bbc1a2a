"""One GPT training step (forward, backward, AdamW step): `labml_nn`'s `GPT` against a minimal reference GPT.

The reference is a single-file GPT in the style of nanoGPT, written below: one fused qkv `nn.Linear` per layer,
`F.scaled_dot_product_attention(is_causal=True)`, pre-norm blocks, a final LayerNorm and an output head tied to
the token embedding. It has the same sizes, the same parameter count and the same optimiser (fused AdamW with
the same weight-decay groups) as the `GPT` built from the "baby" configuration. Both run in the same process,
interleaved step by step so that drift in the machine's speed hits them alike; we print the median time per
step and the ratio.

With `--preset gpt2` the models are GPT-2 small (124M parameters, context 1024, the vocabulary padded to 50,304
as nanoGPT pads it), and the script also prints tokens per second and the model FLOPs utilisation (MFU): the
FLOPs a step needs, by nanoGPT's count (Chowdhery et al., 2022, appendix B): $6N + 12 L d T$ per token, with
$N$ the parameters without the position table, $L$ layers, width $d$ and context $T$, per second, over the
device's peak (`--peak-tflops`; the bfloat16 dense peak of an A100, H100 or H200 is filled in from the device's
name). nanoGPT reports about 40% on an A100 for this model with `torch.compile` and bfloat16.

    python benchmarks/gpt_step.py                 # baby configuration, float32, on CPU
    python benchmarks/gpt_step.py --device cuda --preset gpt2 --dtype bfloat16 --compile
"""
import argparse
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.experiments.gpt import baby
from labml_nn.transformers.gpt import GPT
from timing import interleaved_medians


class ReferenceBlock(nn.Module):
    """Pre-norm block: fused qkv projection and SDPA's causal kernel, then a GELU MLP."""

    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d_model)
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.c_fc = nn.Linear(d_model, d_ff)
        self.gelu = nn.GELU()
        self.mlp_proj = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).view(batch, seq, 3, self.heads, d_model // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(batch, seq, d_model))
        return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))


class ReferenceGPT(nn.Module):
    """nanoGPT's model, reduced to what a training step needs."""

    def __init__(self, n_vocab: int, max_len: int, n_layers: int, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.wte = nn.Embedding(n_vocab, d_model)
        self.wpe = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList([ReferenceBlock(d_model, heads, d_ff) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def configure_optimizers(self, weight_decay: float, lr: float, betas: tuple[float, float]):
        params = list(self.parameters())
        decay = [p for p in params if p.dim() >= 2 and p is not self.wte.weight and p is not self.wpe.weight]
        no_decay = [p for p in params if not any(p is d for d in decay)]
        return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas,
                                 fused=all(p.device.type in ("cuda", "cpu") for p in params) or None)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               dtype: torch.dtype) -> None:
    # Mixed precision as nanoGPT trains: the matrix products in `dtype`, the weights and AdamW in float32.
    autocast = torch.autocast(x.device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    with autocast:
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def run(configs: TransformerConfigs, batch: int, device: torch.device, rounds: int, warmup: int,
        dtype: torch.dtype = torch.float32, compile: bool = False) -> dict[str, float]:
    ours = GPT(configs).to(device)
    reference = ReferenceGPT(configs.n_src_vocab, configs.max_len, configs.n_layers, configs.d_model,
                             configs.n_heads, configs.d_ff).to(device)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_reference = sum(p.numel() for p in reference.parameters())
    if n_ours != n_reference:
        raise RuntimeError(f"the models differ in size: GPT {n_ours} parameters, reference {n_reference}")
    candidates = {
        "reference GPT": (reference, reference.configure_optimizers(0.1, 1e-3, (0.9, 0.99))),
        "labml_nn GPT": (ours, ours.configure_optimizers(0.1, 1e-3, (0.9, 0.99))),
    }
    x = torch.randint(configs.n_src_vocab, (batch, configs.max_len), device=device)
    y = torch.randint(configs.n_src_vocab, (batch, configs.max_len), device=device)
    # Compiled after the optimizers took the parameters (compiling wraps the module, not its parameters).
    forwards = {name: torch.compile(model) if compile else model for name, (model, _) in candidates.items()}
    steps = {name: (lambda name=name, optimizer=optimizer: train_step(forwards[name], optimizer, x, y, dtype))
             for name, (_, optimizer) in candidates.items()}
    print(f"parameters: {n_ours:,} each")
    return interleaved_medians(steps, device, rounds, warmup)


def flops_per_token(configs: TransformerConfigs) -> float:
    """nanoGPT's `estimate_mfu` count: $6N$ for the matrix products of the forward and backward pass over the
    weights ($N$ without the position table, which is looked up, not multiplied), and $12 L d T$ for the
    attention scores and their weighted sums."""
    d, layers, context, vocab = configs.d_model, configs.n_layers, configs.max_len, configs.n_src_vocab
    per_layer = 4 * d * d + 4 * d + 2 * d * configs.d_ff + configs.d_ff + d + 4 * d  # attention, FFN, two norms
    weights = layers * per_layer + vocab * d + 2 * d  # the blocks, the (tied) embedding and head, the final norm
    return 6 * weights + 12 * layers * d * context


# The bfloat16 dense peak of a device, in TFLOP/s, from its name (NVIDIA's data sheets, SXM parts).
PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0, "H200": 989.0}


def gpt2_configs() -> tuple[TransformerConfigs, int]:
    """GPT-2 small (124M), with nanoGPT's batch of 12 sequences of 1,024 tokens and its vocabulary of 50,304."""
    return replace(baby().model, n_layers=12, d_model=768, n_heads=12, d_ff=3072, max_len=1024,
                   n_src_vocab=50304), 12


def baby_configs(tiny: bool) -> tuple[TransformerConfigs, int]:
    """The GPT experiment's "baby" model and batch (4 layers, 4 heads, d_model 128, context 64, batch 12), or a
    tiny one."""
    preset = baby()
    if tiny:
        return replace(preset.model, n_layers=2, d_model=32, d_ff=128, max_len=16, n_src_vocab=65), 2
    return replace(preset.model, n_src_vocab=65), preset.trainer.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--preset", default="baby", choices=["baby", "gpt2"])
    parser.add_argument("--batch", type=int, help="sequences per step (default: the preset's)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="the autocast type of the matrix products")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, for the MFU (default: from its name)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    configs, batch = gpt2_configs() if args.preset == "gpt2" else baby_configs(args.tiny)
    batch = args.batch or batch
    peak = args.peak_tflops
    if peak is None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((value for key, value in PEAK_TFLOPS.items() if key in name), None)
    torch.manual_seed(0)
    print(f"GPT training step (forward, backward, AdamW), {args.dtype} on {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})"
          f"{', compiled' if args.compile else ''}, batch {batch}, context {configs.max_len}, {configs.n_layers} "
          f"layers, d_model {configs.d_model}; median of {args.rounds}")
    medians = run(configs, batch, device, args.rounds, args.warmup, dtype, args.compile)
    bound = medians["reference GPT"]
    tokens = batch * configs.max_len
    for name, median in medians.items():
        line = f"  {name:16s} {median * 1e3:8.2f} ms  {median / bound:5.3f}x the reference  {tokens / median:10,.0f} tokens/s"
        if peak:
            line += f"  MFU {flops_per_token(configs) * tokens / median / (peak * 1e12):6.1%} of {peak:g} TFLOP/s"
        print(line)


if __name__ == "__main__":
    main()

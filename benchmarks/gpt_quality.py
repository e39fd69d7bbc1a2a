"""Validation loss of the baby GPT against nanoGPT's model, trained the same way over several seeds.

The GPT experiment's `baby` preset is nanoGPT's recipe for a CPU. A single run's validation loss moves by a
hundredth or two with the seed, so one number says little about a model. This script trains, for each seed, the
`labml_nn` GPT of the `baby` preset (GPT-2's initialisation with the standard deviation scaled to the width,
1/sqrt(d_model)) and a replica of nanoGPT's model (`model.py` with `bias=False`, its default: no biases in the
linear layers and layer norms, GPT-2's initialisation with 0.02, weight decay on every matrix including the
embeddings) with the same trainer, data, batches and schedule, and prints both validation losses, their means
and the paired differences.

    python benchmarks/gpt_quality.py                    # seeds 0, 1, 2: about 10 minutes on 2 CPU cores
    python benchmarks/gpt_quality.py --seeds 0 1 2 3 4
"""
import argparse
import math
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.char_lm import train_char_lm
from labml_nn.experiments.distributed import setup
from labml_nn.experiments.trainer import Run
from labml_nn.transformers.experiments.gpt import baby, build_model


class BiasFreeLayerNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class NanoBlock(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = BiasFreeLayerNorm(d_model)
        self.c_attn = nn.Linear(d_model, 3 * d_model, bias=False)
        self.c_proj = nn.Linear(d_model, d_model, bias=False)
        self.ln_2 = BiasFreeLayerNorm(d_model)
        self.c_fc = nn.Linear(d_model, d_ff, bias=False)
        self.mlp_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).view(batch, seq, 3, self.heads, d_model // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(batch, seq, d_model))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    """nanoGPT's `GPT` with `bias=False`, initialised and grouped for weight decay as its `model.py` does."""

    def __init__(self, n_vocab: int, max_len: int, n_layers: int, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.wte = nn.Embedding(n_vocab, d_model)
        self.wpe = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList([NanoBlock(d_model, heads, d_ff) for _ in range(n_layers)])
        self.ln_f = BiasFreeLayerNorm(d_model)
        self.head = nn.Linear(d_model, n_vocab, bias=False)
        self.head.weight = self.wte.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        for block in self.blocks:
            for projection in (block.c_proj, block.mlp_proj):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def configure_optimizers(self, weight_decay: float, lr: float, betas: tuple[float, float]):
        parameters = list(self.parameters())
        groups = [{"params": [p for p in parameters if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)


def validation_loss(build, trainer_config, context: int, seed: int, out: Path) -> float:
    torch.manual_seed(seed)
    run = Run(out, setup("cpu"), seed=seed)
    _, _, result = train_char_lm(build, trainer_config, run, context)
    return result["val_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tiny", action="store_true", help="a few steps of a tiny model, for the smoke test")
    args = parser.parse_args()
    preset = baby()
    model, trainer = preset.model, replace(preset.trainer, eval_every=0)
    if args.tiny:
        model = replace(model, n_layers=1, d_model=32, d_ff=128, max_len=16)
        trainer = replace(trainer, max_steps=3, batch_size=4, warmup=1, eval_iters=2, checkpoint_every=0)
    context = model.max_len
    candidates = {
        "labml_nn GPT": lambda n_vocab: build_model(model, n_vocab, preset.init_std),
        "nanoGPT": lambda n_vocab: NanoGPT(n_vocab, model.max_len, model.n_layers, model.d_model, model.n_heads,
                                           model.d_ff),
    }
    losses = {name: [] for name in candidates}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name, build in candidates.items():
                out = Path(tmp) / f"{name.split()[0]}-{seed}"
                losses[name].append(validation_loss(build, trainer, context, seed, out))
            print(f"seed {seed}: " + ", ".join(f"{name} {values[-1]:.4f}" for name, values in losses.items()),
                  flush=True)
    ours, reference = losses["labml_nn GPT"], losses["nanoGPT"]
    differences = [a - b for a, b in zip(ours, reference)]
    print(f"validation loss over {len(args.seeds)} seeds, {trainer.max_steps} steps:")
    for name, values in losses.items():
        print(f"  {name:14s} mean {statistics.mean(values):.4f}  ({', '.join(f'{v:.4f}' for v in values)})")
    print(f"  labml_nn GPT - nanoGPT, paired: mean {statistics.mean(differences):+.4f} "
          f"({', '.join(f'{d:+.4f}' for d in differences)})")


if __name__ == "__main__":
    main()

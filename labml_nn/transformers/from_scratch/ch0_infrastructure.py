r"""
---
title: "0. The infrastructure"
summary: "What every chapter of the track reuses: the character tokenizer, the train/validation split, random batches, a training loop with AdamW, the loss averaged over many batches, and sampling."
---

# 0. The infrastructure

Every later chapter changes only the model. What stays the same is here, kept to what the
[bigram](/transformers/from_scratch/ch1_bigram.md) needs:

* a **character tokenizer**: the vocabulary is the set of characters in the text, each one an integer;
* the **train/validation split**: the first 90% of the text to learn from, the last 10% to measure on;
* **random batches**: `batch_size` windows of `block_size + 1` characters, each giving `block_size` inputs and
  their `block_size` next characters;
* a **training loop** with [AdamW](https://arxiv.org/abs/1711.05101);
* the **loss estimate**: the mean loss over `eval_iters` batches of each split, since one batch is too noisy to
  compare models by;
* **sampling**: extend a prompt one character at a time, each drawn from the model's prediction.

To check the loop end to end, this chapter trains the smallest model it can: one learned vector of logits
that ignores its input, so it learns how often each character occurs (a *unigram* model). Its loss is the
entropy of the characters' frequencies, the bar every later chapter must beat.

**Why not the library's trainer.** The library's [trainer](/experiments/trainer.md) is this loop grown up:
warm-up and cosine schedule, gradient clipping and accumulation, mixed precision, checkpoints that resume
exactly, a Ctrl-C checkpoint and a NaN guard, distributed data parallel. Each is worth having for a long run,
and each would hide the five lines that are the point here. The track keeps its loop small on purpose, with
a constant learning rate as the original does; the [GPT experiment](/transformers/experiments/gpt.md) trains
the library's GPT, which [chapter 5](/transformers/from_scratch/ch5_gpt.md)'s model equals, through the trainer.

The code column has a second tab, **JAX/Flax**: the same chapter in JAX with Flax, with the same structure and
names (choose it once and every chapter shows it).
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.data import tiny_shakespeare_path
from labml_nn.transformers.utils import get_device


# ## The configuration
#
# The original's small recipe, shared by chapters 0 to 4. Chapter 5 scales it up with presets.
# The model fields are read only by the chapters whose models have them.
@dataclass
class Config:
    batch_size: int = 32
    block_size: int = 8
    max_steps: int = 5000
    eval_interval: int = 500
    eval_iters: int = 200
    lr: float = 1e-3
    # AdamW's decoupled weight decay, torch's default, on every parameter as `AdamW(model.parameters())` does
    weight_decay: float = 0.01
    n_embd: int = 32
    n_head: int = 4
    n_layer: int = 3
    dropout: float = 0.0
    seed: int = 1337
    sample_chars: int = 500

    def __post_init__(self):
        for name in ("batch_size", "block_size", "eval_interval", "eval_iters", "n_embd", "n_head", "n_layer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_steps", "sample_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


# ## The tokenizer
#
# Characters are the tokens: the vocabulary is every character of the text, sorted, and a character's id is
# its place in that list. A small vocabulary (65 characters for Tiny Shakespeare) means long sequences for a
# given text, the price of needing no learned tokenizer.
class Tokenizer:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def n_vocab(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"characters {''.join(unknown)!r} are not in the vocabulary of "
                             f"{self.n_vocab} characters of the training text")
        return [self.stoi[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


# ## The data
#
# The whole text as one sequence of ids, split at 90%: the validation text comes after the training text,
# so the model is measured on lines it has never seen.
@dataclass
class Data:
    tokenizer: Tokenizer
    train: torch.Tensor
    val: torch.Tensor


def load_data(text: str, block_size: int, val_fraction: float = 0.1) -> Data:
    tokenizer = Tokenizer(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    n = int((1 - val_fraction) * len(ids))
    data = Data(tokenizer, ids[:n], ids[n:])
    # A batch needs `block_size + 1` characters from each split.
    shortest = min(len(data.train), len(data.val))
    if block_size >= shortest:
        raise ValueError(f"block_size ({block_size}) must be smaller than the shorter split of the text "
                         f"({shortest} characters of {len(ids)}): the text is too short for this block size")
    return data


def read_text() -> str:
    """Tiny Shakespeare, from `$LABML_NN_DATA` or the cache ([where it is found](/experiments/data.md))."""
    return tiny_shakespeare_path().read_text(encoding="utf-8")


# ## Random batches
#
# `batch_size` windows at random offsets. In each window of `block_size + 1` characters the input is the
# first `block_size` and the target of position $t$ is character $t + 1$: one window gives `block_size`
# training examples, with contexts of every length from 1 to `block_size`.
#
# The windows are gathered with one indexing operation, `[batch, block_size + 1]`, not a loop over the batch.
def get_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # `[batch]`
    offsets = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    # `[batch, block_size + 1]`
    windows = data[offsets[:, None] + torch.arange(block_size + 1)]
    # inputs and targets, `[batch, block_size]` each
    return windows[:, :-1].to(device), windows[:, 1:].to(device)


# ## The loss
#
# Every model of the track returns logits `[batch, seq, n_vocab]`; the loss is the cross-entropy of every
# position's prediction with the next character, averaged over all of them.
def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# ## The loss estimate
#
# The mean loss over `eval_iters` batches of each split, in evaluation mode (no dropout) and without
# gradients. The batches come from their own generator, seeded the same way every time, so every estimate
# of a run, and of every chapter, is taken on the same batches: the curves differ by the model only.
@torch.no_grad()
def estimate_loss(model: nn.Module, data: Data, config: Config, device: torch.device) -> dict[str, float]:
    was_training = model.training
    model.eval()
    result = {}
    for split, tokens in (("train", data.train), ("val", data.val)):
        generator = torch.Generator().manual_seed(config.seed + 1)
        # `[eval_iters]`, kept on the device and read once
        losses = torch.stack([loss_fn(model(x), y) for x, y in
                              (get_batch(tokens, config.batch_size, config.block_size, generator, device)
                               for _ in range(config.eval_iters))])
        result[split] = losses.mean().item()
    model.train(was_training)
    return result


# ## The training loop
#
# AdamW at a constant learning rate: draw a batch, compute the loss, backpropagate, step. The loss is
# estimated every `eval_interval` steps and at the end; nothing else reads the loss, so the steps in between
# never wait for the device.
#
# AdamW is torch's default: $\beta = (0.9, 0.999)$, $\epsilon = 10^{-8}$ added to $\sqrt{\hat v}$ after the bias
# correction, and weight decay `config.weight_decay` decoupled from the gradient and applied to every parameter.
# The JAX version (the **JAX/Flax** tab) sets Optax's `adamw` to the same and takes the same steps.
def make_optimizer(model: nn.Module, config: Config) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=config.weight_decay)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
               ) -> torch.Tensor:
    loss = loss_fn(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def train(model: nn.Module, data: Data, config: Config, device: torch.device) -> list[dict]:
    """Train `model` for `config.max_steps` steps; returns the loss estimates `{"step", "train", "val"}`."""
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for step in range(config.max_steps):
        if step % config.eval_interval == 0:
            history.append({"step": step, **estimate_loss(model, data, config, device)})
            print(f"step {step}: train loss {history[-1]['train']:.4f}, val loss {history[-1]['val']:.4f}")
        x, y = get_batch(data.train, config.batch_size, config.block_size, generator, device)
        train_step(model, optimizer, x, y)
    history.append({"step": config.max_steps, **estimate_loss(model, data, config, device)})
    print(f"step {config.max_steps}: train loss {history[-1]['train']:.4f}, val loss {history[-1]['val']:.4f}")
    return history


# ## Sampling
#
# Extend `ids` `[batch, seq]` by `max_new_tokens` ids. A model sees at most `block_size` characters (its
# position table has no more rows), so each step looks at the last `block_size` only. The next id is drawn
# from the softmax of the last position's logits.
@torch.no_grad()
def generate(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, block_size: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        # The last position's logits, `[batch, n_vocab]`
        logits = model(ids[:, -block_size:])[:, -1]
        probs = F.softmax(logits, dim=-1)
        # `[batch, 1]`
        next_id = torch.multinomial(probs.cpu(), num_samples=1, generator=generator).to(ids.device)
        ids = torch.cat([ids, next_id], dim=1)
    model.train(was_training)
    return ids


# ## This chapter's model: the unigram
#
# One vector of logits, $p(x_{t+1}) = \text{softmax}(z)$ whatever came before. The best such $z$ gives each
# character its frequency in the text, and its loss is the entropy of those frequencies.
class UnigramLanguageModel(nn.Module):
    def __init__(self, n_vocab: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_vocab))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # `[batch, seq, n_vocab]`
        return self.logits.expand(*ids.shape, -1)


def build_model(config: Config, n_vocab: int) -> nn.Module:
    return UnigramLanguageModel(n_vocab)


# ## The command line
#
# Every chapter takes the same options and writes the same files into `--out` (by default
# `runs/from_scratch/<chapter>/<time>`): `metrics.jsonl` (the loss estimates), `sample.txt` and `result.json`.
# A chapter may offer presets (chapters 1 and 5 do); `--max-steps`, `--seed`, `--eval-iters` and `--sample-chars`
# override them.
def parse_args(chapter: str, argv: list[str] | None, presets: dict[str, Config]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m labml_nn.transformers.from_scratch.{chapter}",
                                     description=f"Train the model of chapter {chapter} on Tiny Shakespeare.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--max-steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    parser.add_argument("--eval-iters", type=int, help="batches per loss estimate (default: the preset's)")
    parser.add_argument("--out", help="output directory (default: runs/from_scratch/<chapter>/<time>)")
    parser.add_argument("--prompt", default="\n", help="the text the sample starts from")
    parser.add_argument("--sample-chars", type=int, help="characters to sample (default: the preset's)")
    parser.add_argument("--preset", choices=sorted(presets), default=next(iter(presets)),
                        help="the recipe (default: %(default)s)")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace, presets: dict[str, Config]) -> Config:
    config = presets[args.preset]
    overrides = {f.name: getattr(args, f.name) for f in fields(Config)
                 if getattr(args, f.name, None) is not None}
    return replace(config, **overrides)


def output_dir(chapter: str, out: str | None) -> Path:
    path = Path(out) if out else Path("runs") / "from_scratch" / chapter / time.strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(out: Path, chapter: str, framework: str, config: Config, history: list[dict], sample: str,
                  parameters: int, seconds: float) -> dict:
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    (out / "sample.txt").write_text(sample, encoding="utf-8")
    result = {"chapter": chapter, "framework": framework, "train_loss": history[-1]["train"],
              "val_loss": history[-1]["val"], "steps": config.max_steps, "parameters": parameters,
              "wall_s": round(seconds, 1), "config": asdict(config)}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


# ## Running a chapter
#
# Each chapter's `main` calls this with its name, its model factory and its presets: read the text, build the
# model, train it, sample from it, write the results.
def run_chapter(chapter: str, build: Callable[[Config, int], nn.Module], argv: list[str] | None = None,
                presets: dict[str, Config] | None = None) -> dict:
    presets = presets or {"small": Config()}
    args = parse_args(chapter, argv, presets)
    config = configure(args, presets)
    device = get_device(args.device)
    data = load_data(read_text(), config.block_size)
    if not args.prompt:
        raise ValueError("prompt must hold at least one character")
    prompt = torch.tensor([data.tokenizer.encode(args.prompt)], dtype=torch.long, device=device)
    out = output_dir(chapter, args.out)

    torch.manual_seed(config.seed)
    model = build(config, data.tokenizer.n_vocab).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{chapter}: {parameters:,} parameters on {device}")
    start = time.perf_counter()
    history = train(model, data, config, device)
    seconds = time.perf_counter() - start
    ids = generate(model, prompt, config.sample_chars, config.block_size,
                   torch.Generator().manual_seed(config.seed))
    sample = data.tokenizer.decode(ids[0].tolist())
    print(sample)
    result = write_results(out, chapter, "pytorch", config, history, sample, parameters, seconds)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}))
    return result


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch0_infrastructure", build_model, argv)


if __name__ == "__main__":
    main()

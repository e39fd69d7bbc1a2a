r"""
---
title: Character language models on Tiny Shakespeare
summary: The common core of the language-model experiments: build a model for the data's vocabulary, train it on random blocks, sample text from it.
---

# Character language models on Tiny Shakespeare

Several experiments train a model to predict the next character of
[Tiny Shakespeare](/experiments/data.md): the GPT, the transformer described by a configuration, the
comparisons of positional encodings. They differ in the model only, so the rest is here:
[train_char_lm](#train_char_lm) loads the data, builds the model for its vocabulary, saves the tokenizer
with the run (`tokenizer.json`, and inside every checkpoint) and trains; [generate_text](#generate_text)
samples from the trained model.

The experiments that compare choices (positional encodings, feed-forward networks, label smoothing, ...) all
train at [the baby size](#baby_model) with [the baby recipe](#baby_trainer), so that their results compare with
each other and with the [GPT](/transformers/experiments/gpt.md)'s `baby` preset.

A validation loss is a cross-entropy in nats per character; $e^{-\text{loss}}$ is the probability the model
gives the right next character on average (per-character perplexity $e^{\text{loss}}$). A model that knew
only the characters' frequencies would score about 3.3; samples begin to look like Shakespeare below 2,
and words are mostly spelled right below 1.6.
"""

import importlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.data import BlockSource, CharTokenizer, load_tiny_shakespeare
from labml_nn.experiments.trainer import (LossFunction, Run, Trainer, TrainerConfig, checkpoint_path,
                                          language_model_loss, load_checkpoint, sharded_checkpoint_dir)
from labml_nn.transformers.configs import TransformerConfigs


# ## The baby size and recipe
#
# [nanoGPT](https://github.com/karpathy/nanoGPT)'s language model for a laptop CPU: small enough that a few
# thousand steps take minutes, without dropout because it is too small to overfit in so few steps. `choices` are
# the other fields of the [configuration](/transformers/configs.md) (positions, activation, ...), which the
# experiments vary.
def baby_model(**choices) -> TransformerConfigs:
    """4 layers of width 128 with 4 heads, a 512-wide feed-forward network, no dropout, 64 positions."""
    return TransformerConfigs(**{"n_layers": 4, "d_model": 128, "n_heads": 4, "d_ff": 4 * 128, "dropout": 0.0,
                                 "max_len": 64, **choices})


# AdamW with nanoGPT's settings, a short warm-up and a cosine decay over 2,000 steps of 12 blocks.
def baby_trainer(**changes) -> TrainerConfig:
    """2,000 steps of 12 sequences, AdamW at 1e-3 with betas (0.9, 0.99), warm-up 100, cosine to 1e-4."""
    return replace(TrainerConfig(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup=100, betas=(0.9, 0.99),
                                 weight_decay=0.1, clip=1.0, eval_every=250, eval_iters=100), **changes)


# A model and a run that take seconds, for smoke tests (`--preset tiny` of the experiments).
def tiny_model(**choices) -> TransformerConfigs:
    """One layer of width 32 with 2 heads, 16 positions."""
    return TransformerConfigs(**{"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64, "dropout": 0.0,
                                 "max_len": 16, **choices})


def tiny_trainer(**changes) -> TrainerConfig:
    """Four steps of 4 sequences, evaluated on 2 batches at the end."""
    return replace(TrainerConfig(max_steps=4, batch_size=4, warmup=1, eval_every=0, eval_iters=2, log_every=2,
                                 checkpoint_every=0), **changes)


# The training sequences must fit in the model's positions.
def check_context(context: int, max_len: int) -> None:
    """`ValueError` unless `1 <= context <= max_len`."""
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= max_len:
        raise ValueError(f"context must be in [1, max_len={max_len}], got {context!r}")


# ## Training
#
# `build_model(n_vocab)` makes the model once the vocabulary is known (it comes from the text). The
# training batches are random blocks of `context` characters from the first 90% of the text; the
# validation batches come from the last 10%. The loss is the next character's cross-entropy unless the
# experiment brings its own.
def train_char_lm(build_model: Callable[[int], nn.Module], trainer_config: TrainerConfig, run: Run,
                  context: int, loss_fn: LossFunction = language_model_loss) -> tuple[nn.Module, CharTokenizer, dict]:
    """Train `build_model(n_vocab)` on Tiny Shakespeare; returns the trained model, the tokenizer and the result."""
    data = load_tiny_shakespeare(run.data_dir)
    model = build_model(data.tokenizer.n_vocab)
    run.write_json("tokenizer.json", data.tokenizer.to_dict())
    trainer = Trainer(model, trainer_config, run, loss_fn=loss_fn, extra_state={"tokenizer": data.tokenizer.to_dict()})
    result = trainer.fit(BlockSource(data.train, context), BlockSource(data.val, context))
    return trainer.model, data.tokenizer, result


# ## The loss at each position
#
# The trainer's validation loss averages over all positions of a block. Position $t$ predicts from $t + 1$
# characters, so the loss falls along the block; and a block longer than the training context shows how a model
# copes with positions (or distances) it never saw. This is the mean loss at each position over `batches` random
# blocks of `context` tokens, `[context]`, the same blocks for every model with the same `seed`.
@torch.no_grad()
def loss_by_position(model: nn.Module, tokens: torch.Tensor, context: int, batches: int, batch_size: int,
                     seed: int = 0) -> torch.Tensor:
    """Mean next-token cross-entropy at each position of random blocks of `tokens`, `[context]`."""
    device = next(model.parameters()).device
    source = BlockSource(tokens, context)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    total = torch.zeros(context, device=device)
    for _ in range(batches):
        inputs, targets = (t.to(device) for t in source.sample(generator, batch_size))
        # `[batch, context, vocab]` to `[batch, vocab, context]`, the layout `cross_entropy` takes for sequences
        logits = model(inputs).float().transpose(1, 2)
        # `[batch, context]`, averaged over the batch
        total += F.cross_entropy(logits, targets, reduction="none").mean(dim=0)
    model.train(was_training)
    return (total / batches).cpu()


# ## Sampling
#
# A model with a `generate` method (the [GPT](/transformers/gpt/index.md), with its key/value cache) uses
# it. Any other model that maps tokens `[batch, seq]` to logits `[batch, seq, vocab]` is run on the last
# `context` characters for every new one, and the next character is drawn from the softmax of the last
# position's logits divided by the temperature (0 picks the most likely character).
@torch.no_grad()
def generate_text(model: nn.Module, tokenizer: CharTokenizer, prompt: str, max_new_tokens: int, context: int,
                  temperature: float = 0.8, seed: int = 0) -> str:
    """`prompt` followed by `max_new_tokens` sampled characters, repeatably for a given `seed`."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    # `[1, prompt]`
    tokens = tokenizer.encode(prompt)[None].to(device)
    if hasattr(model, "generate"):
        return tokenizer.decode(model.generate(tokens, max_new_tokens, temperature=temperature)[0])
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        # The last position's logits, `[1, vocab]`
        logits = model(tokens[:, -context:])[:, -1].float()
        if temperature == 0:
            next_token = logits.argmax(dim=-1, keepdim=True)
        else:
            next_token = torch.multinomial((logits / temperature).softmax(dim=-1), num_samples=1)
        # `[1, seq + 1]`
        tokens = torch.cat([tokens, next_token], dim=1)
    model.train(was_training)
    return tokenizer.decode(tokens[0])


# ## Reloading a trained run
#
# A run directory holds everything needed to use the model again: `config.json` (the experiment and its
# configuration) and `checkpoint.pt` (the weights, and the tokenizer among the extra state). `load_run` rebuilds
# the experiment's model with the `rebuild` function of its experiment module, fills it with the checkpoint's
# weights and returns it in evaluation mode with its tokenizer:
#
# ```python
# from labml_nn.experiments.char_lm import load_run
#
# trained = load_run("runs/gpt/20261205-101500")       # or a variant's subdirectory: runs/rope/.../rope
# print(trained.generate("ROMEO:", max_new_tokens=200))
# logits = trained.model(trained.tokenizer.encode("ROMEO:")[None])   # [1, 6, n_vocab]
# ```
#
# The language-model experiments (`gpt`, `mha`, `configs`, `rope`, `positional_encoding`, `feed_forward`,
# `label_smoothing_loss`, `llama`) can be reloaded; an experiment that trains several variants keeps one model
# per variant, in the subdirectory named after it.
@dataclass
class TrainedModel:
    """A trained character language model, its tokenizer and the context it was trained on."""
    model: nn.Module
    tokenizer: CharTokenizer
    context: int
    step: int

    def generate(self, prompt: str = "\n", max_new_tokens: int = 200, temperature: float = 0.8, seed: int = 0) -> str:
        """`prompt` and `max_new_tokens` characters sampled after it (see [generate_text](#generate_text))."""
        return generate_text(self.model, self.tokenizer, prompt, max_new_tokens, self.context, temperature, seed)


def load_run(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The trained model of a run directory (or of a variant's subdirectory, or of their `checkpoint.pt`)."""
    run_dir = checkpoint_path(path).parent
    # A variant's directory has no `config.json`: its run's is one level up.
    if (run_dir / "config.json").is_file():
        config_file, variant = run_dir / "config.json", None
    elif (run_dir.parent / "config.json").is_file():
        config_file, variant = run_dir.parent / "config.json", run_dir.name
    else:
        raise ValueError(f"{path} is not a run directory: no config.json in {run_dir} or its parent")
    config = json.loads(config_file.read_text())
    experiment = importlib.import_module(f"labml_nn.transformers.experiments.{config['module']}")
    if not hasattr(experiment, "rebuild"):
        raise ValueError(f"runs of the {config['module']!r} experiment do not hold a character language model "
                         f"that load_run can rebuild")
    if not checkpoint_path(run_dir).is_file():
        raise ValueError(f"{run_dir} has no checkpoint.pt"
                         + (": this run trained several variants; load one of their subdirectories"
                            if variant is None and any(run_dir.glob("*/checkpoint.pt")) else ""))
    state = load_checkpoint(run_dir, map_location=device)
    tokenizer = CharTokenizer.from_dict(state["extra"]["tokenizer"])
    model, context = experiment.rebuild(config["experiment"], tokenizer.n_vocab, variant)
    if state.get("sharded", False):
        # A run trained with --tp or --fsdp keeps its weights in the torch.distributed.checkpoint directory that
        # its checkpoint names
        from labml_nn.transformers.parallel.training import load_sharded_model
        load_sharded_model(sharded_checkpoint_dir(state, run_dir), model)
    else:
        model.load_state_dict(state["model"])
    return TrainedModel(model.to(device).eval(), tokenizer, context, state["step"])

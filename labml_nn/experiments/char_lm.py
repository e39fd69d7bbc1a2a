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

A validation loss is a cross-entropy in nats per character; $e^{-\text{loss}}$ is the probability the model
gives the right next character on average (per-character perplexity $e^{\text{loss}}$). A model that knew
only the characters' frequencies would score about 3.3; samples begin to look like Shakespeare below 2,
and words are mostly spelled right below 1.6.
"""

from typing import Callable

import torch
from torch import nn

from labml_nn.experiments.data import BlockSource, CharTokenizer, load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig


# ## Training
#
# `build_model(n_vocab)` makes the model once the vocabulary is known (it comes from the text). The
# training batches are random blocks of `context` characters from the first 90% of the text; the
# validation batches come from the last 10%.
def train_char_lm(build_model: Callable[[int], nn.Module], trainer_config: TrainerConfig, run: Run,
                  context: int) -> tuple[nn.Module, CharTokenizer, dict]:
    """Train `build_model(n_vocab)` on Tiny Shakespeare; returns the trained model, the tokenizer and the result."""
    data = load_tiny_shakespeare(run.data_dir)
    model = build_model(data.tokenizer.n_vocab)
    run.write_json("tokenizer.json", data.tokenizer.to_dict())
    trainer = Trainer(model, trainer_config, run, extra_state={"tokenizer": data.tokenizer.to_dict()})
    result = trainer.fit(BlockSource(data.train, context), BlockSource(data.val, context))
    return trainer.model, data.tokenizer, result


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

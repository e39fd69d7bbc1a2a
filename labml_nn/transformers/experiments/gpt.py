r"""
---
title: GPT on Tiny Shakespeare
summary: Train the annotated GPT to predict Tiny Shakespeare one character at a time, then sample a scene from it.
---

# GPT on Tiny Shakespeare

This experiment trains the [GPT](/transformers/gpt/index.md) as a character-level language model on
[Tiny Shakespeare](/experiments/data.md), then samples text from it: at first noise, then words, names
and line breaks, finally something with the shape of a play.

```bash
# a few minutes on a laptop CPU
python -m labml_nn.transformers.gpt --preset baby --device cpu
# the full model, for a GPU
python -m labml_nn.transformers.gpt
# any option of the model, the trainer or the sampling
python -m labml_nn.transformers.gpt --preset baby --positional rope --lr 2e-3 --temperature 1.0
```

Two presets (all the numbers live in them, below):

* `default` is the character-level Shakespeare model of [nanoGPT](https://github.com/karpathy/nanoGPT)
  (`config/train_shakespeare_char.py`), a GPU-sized model with dropout, because at this size it would otherwise
  memorise the million characters;
* `baby` is nanoGPT's recipe for a CPU ([the baby size and recipe](/experiments/char_lm.md#baby_model)): a
  model small enough that a few thousand steps take minutes, and no dropout, because it is too small to overfit in
  so few steps.

Both are GPT-2's architecture: learned positions, GELU (the exact one; GPT-2's code computes its tanh
approximation, `--ffn-activation gelu_tanh`), and token embeddings that are not multiplied by
$\sqrt{d_{model}}$ ([why](/transformers/models.md#Embeddings)). They differ in the scale of the initial
weights: `default` keeps GPT-2's $\sigma = 0.02$, as nanoGPT does; `baby`, whose width is 128 rather than
GPT-2's 768 or more, takes the "small init" $\sigma = \sqrt{2 / (5\, d_{model})}$, which is GPT-2's 0.02 at
GPT-2's width ([why](/transformers/gpt/index.md#initialisation)).

The run directory gets the [trainer's files](/experiments/trainer.md) (metrics, loss plot, checkpoint),
`tokenizer.json`, `sample.txt` and `result.json`. The options are described in
[the command line](/experiments/cli.md); `--help` lists them all.

The trained model comes back from its run directory with [`load_run`](/experiments/char_lm.md#load_run):

```python
from labml_nn.experiments.char_lm import load_run

trained = load_run("runs/gpt/20261205-101500")   # the run's directory
print(trained.generate("ROMEO:", max_new_tokens=200, temperature=0.8))
```

## OpenAI's GPT-2 instead

The same `GPT` class runs OpenAI's trained GPT-2 ([loading it](/transformers/gpt/hf.md)). Download Hugging Face's
files once, `huggingface-cli download gpt2 config.json model.safetensors --local-dir gpt2`, and then, offline:

```python
import torch
from labml_nn.transformers.gpt import load_hf

model = load_hf("gpt2")
# "Hello, my dog is" in GPT-2's tokens; tiktoken.get_encoding("gpt2") encodes and decodes text
tokens = torch.tensor([[15496, 11, 616, 3290, 318]])
out = model.generate(tokens, 20, temperature=0.8, top_k=50, eos_token_id=50256)
```

GPT-2 has no character vocabulary, so it does not take this experiment's `tokenizer.json`: its text goes through
its own byte-pair encoding, and 50256 is its `<|endoftext|>`.
"""

from dataclasses import dataclass, field, replace

from labml_nn.experiments.char_lm import baby_model, baby_trainer, check_context, generate_text, train_char_lm
from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.trainer import Run, TrainerConfig
from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.gpt import GPT, check_init_std, small_init_std


# ## Configuration
#
# GPT-2's choices among those of the [configuration](/transformers/configs.md).
GPT2_CHOICES = {"positional": "learned", "ffn_activation": "gelu", "scale_embeddings": False}


# The model (a [`TransformerConfigs`](/transformers/configs.md)), the training, the length of the training
# sequences, and how to sample at the end. The vocabulary size is left out: it comes from the text.
@dataclass
class GPTExperiment:
    """A GPT trained on Tiny Shakespeare, sampled at the end."""
    model: TransformerConfigs = field(default_factory=lambda: TransformerConfigs(
        n_layers=6, d_model=384, n_heads=6, d_ff=4 * 384, dropout=0.2, max_len=256, **GPT2_CHOICES))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup=100, betas=(0.9, 0.99), weight_decay=0.1,
        clip=1.0, eval_every=250, eval_iters=200))
    init_std: float = 0.02
    """Standard deviation of the initial weights (GPT-2's 0.02; the baby preset takes sqrt(2 / (5 d_model)))."""
    context: int = 256
    """Characters per training sequence (at most the model's max_len)."""
    sample_tokens: int = 500
    """Characters to sample after training (0 for none)."""
    temperature: float = 0.8
    """Sampling temperature (0 picks the most likely character)."""
    prompt: str = "\n"
    """Text the sample starts from."""

    def __post_init__(self):
        check_context(self.context, self.model.max_len)
        check_init_std(self.init_std)
        if self.sample_tokens < 0:
            raise ValueError(f"sample_tokens must be >= 0, got {self.sample_tokens}")
        if not self.prompt:
            raise ValueError("prompt must not be empty")


# ## Presets
def default() -> GPTExperiment:
    """nanoGPT's character-level Shakespeare model (for a GPU)."""
    return GPTExperiment()


def baby() -> GPTExperiment:
    """nanoGPT's CPU recipe: 4 layers of width 128, context 64, 2,000 steps; initial weights scaled to the width."""
    model = baby_model(**GPT2_CHOICES)
    return GPTExperiment(model=model, init_std=small_init_std(model.d_model), trainer=baby_trainer(), context=64)


# ## The model
#
# The configuration with the vocabulary of the text filled in.
def build_model(config: TransformerConfigs, n_vocab: int, init_std: float = 0.02) -> GPT:
    if config.n_src_vocab is not None and config.n_src_vocab != n_vocab:
        raise ValueError(f"n_src_vocab must be the text's vocabulary size {n_vocab} (or unset), "
                         f"got {config.n_src_vocab}")
    return GPT(replace(config, n_src_vocab=n_vocab), init_std)


# ## The experiment
#
# Train, then sample from the trained model with the key/value cache of
# [`GPT.generate`](/transformers/gpt/index.md#GPT.generate).
def train(config: GPTExperiment, run: Run) -> dict:
    model, tokenizer, result = train_char_lm(lambda n_vocab: build_model(config.model, n_vocab, config.init_std),
                                             config.trainer, run, config.context)
    if config.sample_tokens and run.is_main:
        sample = generate_text(model, tokenizer, config.prompt, config.sample_tokens, config.context,
                               config.temperature, seed=run.seed)
        run.write_text("sample.txt", sample)
        print(f"--- sample ---\n{sample}\n--------------")
        result["sample"] = sample
    return result


# ## Reloading a run
#
# The model of a finished run, for [`load_run`](/experiments/char_lm.md#load_run): the configuration comes from
# the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[GPT, int]:
    """The untrained model of a run of this experiment, and its context."""
    config = config_from_dict(GPTExperiment, experiment)
    return build_model(config.model, n_vocab, config.init_std), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("gpt", GPTExperiment, train, presets={"default": default, "baby": baby}, argv=argv,
                   description="Train a GPT on Tiny Shakespeare and sample from it.", gpu_presets={"default": "baby"})


if __name__ == "__main__":
    main()

r"""
---
title: Training a small Llama on Tiny Shakespeare
summary: A small Llama 3.1 (RMSNorm, SwiGLU, grouped-query attention, RoPE) trained on Tiny Shakespeare characters, saved in Meta's format, reloaded, and sampled with and without the key/value cache; or one of Meta's checkpoints completing a prompt.
---

# Training a small Llama on Tiny Shakespeare

```bash
python -m labml_nn.transformers.llama                 # train, then generate
python -m labml_nn.transformers.llama --preset small  # a couple of minutes on a laptop CPU
python -m labml_nn.transformers.llama --ckpt-dir ~/Meta-Llama-3.1-8B/original --prompt "The capital of France is"
```

The model is the [Llama 3.1 architecture](/transformers/llama/index.md) at a small size, with one token per
character of [Tiny Shakespeare](/experiments/data.md). It trains with the shared [trainer](/experiments/trainer.md)
(AdamW, warm-up and cosine decay, gradient clipping), which reports the validation loss. Then:

1. the trained model is saved in Meta's format (`params.json` and `consolidated.00.pth` in
   `meta_checkpoint/` of the run directory) and loaded back with
   [`Llama.build`](/transformers/llama/generation.md#Llama.build), the same strict loader that reads Meta's
   checkpoints;
2. it completes a prompt greedily with the [key/value cache](/transformers/llama/index.md#KVCache) and by
   [recomputing the whole prefix](/transformers/llama/generation.md#generate_without_cache) at every step: one
   untimed warm-up (first calls pay for memory allocation and kernel selection), then 3 rounds alternating the
   two, so that drifts in the machine's speed hit both alike. `result["generation"]` has the speeds of the
   fastest rounds as `cached_tokens_per_s` and `uncached_tokens_per_s`, their ratio `cache_speedup`,
   `greedy_outputs_equal`, whether the two gave the same tokens (they should), and `cpu_threads`, torch's
   thread count (on a CPU, recomputation's larger matrix products spread over the threads and a cached step's
   are too small to split, so the ratio is lower with more threads);
3. it samples a longer text with temperature and nucleus sampling, written to `sample.txt`.

With `--ckpt-dir` nothing is trained: the checkpoint (and the `tokenizer.model` beside it, or `--tokenizer-path`)
is loaded and completes `--prompt`.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from labml_nn.experiments.cli import config_from_dict, run_experiment
from labml_nn.experiments.data import BlockSource, load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig
from labml_nn.transformers.llama import ModelArgs, Transformer
from labml_nn.transformers.llama.generation import Llama, generate_without_cache, save_checkpoint


# ## Configuration
@dataclass
class LlamaExperiment:
    """A small Llama on Tiny Shakespeare characters, then generation with and without the cache."""
    dim: int = 128
    """Width of the residual stream."""
    n_layers: int = 4
    """Number of transformer blocks."""
    n_heads: int = 4
    """Query heads."""
    n_kv_heads: int = 2
    """Key/value heads (grouped-query attention)."""
    multiple_of: int = 32
    """The SwiGLU hidden width is rounded up to a multiple of this."""
    rope_theta: float = 10000.0
    """RoPE base; Llama 3 uses 500000 for its long contexts, the RoPE paper's 10000 suits a short character context."""
    context: int = 256
    """Training sequence length, in characters."""
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=2000, batch_size=32, lr=2e-3, min_lr=2e-4, warmup=100, eval_every=250, eval_iters=50,
        checkpoint_every=500))
    prompt: str = "ROMEO:\n"
    """Prompt to complete."""
    gen_tokens: int = 500
    """Tokens to generate (for each timing, and for the sample)."""
    temperature: float = 0.8
    """Sampling temperature of the sample (the timings decode greedily)."""
    top_p: float = 0.95
    """Nucleus of the sample."""
    ckpt_dir: str | None = None
    """A directory with Meta's params.json and consolidated.00.pth: complete the prompt with it instead of training."""
    tokenizer_path: str | None = None
    """Meta's tokenizer.model for --ckpt-dir (default: the one inside the checkpoint directory)."""

    def __post_init__(self):
        for name in ("context", "gen_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.prompt:
            raise ValueError("prompt must not be empty")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        # The model's fields are checked by ModelArgs itself, here with a placeholder vocabulary.
        model_args(self, vocab_size=1)


# The model for a vocabulary of `vocab_size`; it takes the training context and the prompt plus the
# generated tokens.
def model_args(config: LlamaExperiment, vocab_size: int) -> ModelArgs:
    """The [ModelArgs](/transformers/llama/index.md#ModelArgs) of the experiment's model."""
    return ModelArgs(dim=config.dim, n_layers=config.n_layers, n_heads=config.n_heads, n_kv_heads=config.n_kv_heads,
                     vocab_size=vocab_size, multiple_of=config.multiple_of, rope_theta=config.rope_theta,
                     max_seq_len=max(config.context, len(config.prompt) + config.gen_tokens), max_batch_size=1)


# ## Presets
def default() -> LlamaExperiment:
    """4 layers of width 128, 2000 steps of 32 x 256 characters."""
    return LlamaExperiment()


def small() -> LlamaExperiment:
    """The same model, 200 steps of 16 x 128 characters: a couple of minutes on a laptop CPU."""
    return LlamaExperiment(context=128, trainer=TrainerConfig(max_steps=200, batch_size=16, lr=3e-3, min_lr=3e-4,
                                                              warmup=20, eval_every=100, eval_iters=10,
                                                              checkpoint_every=0))


def tiny() -> LlamaExperiment:
    """Seconds: a 2-layer model, a few steps, short generations (for tests)."""
    return LlamaExperiment(dim=32, n_layers=2, context=32, gen_tokens=20,
                           trainer=TrainerConfig(max_steps=4, batch_size=4, warmup=1, eval_every=0, eval_iters=2,
                                                 log_every=2, checkpoint_every=0))


# ## Timing generation
#
# Greedy decoding, with and without the cache, from the same prompt; the device is synchronised around each
# so that the times are the work's and not just its launch. One untimed generation first (the caches and the
# rotation table are allocated then), then `rounds` of each, alternating so that both see the same machine.
# The fastest round of each is reported: on a shared machine a cached step, a couple of hundred calls of a few
# microseconds, is slowed by every interruption and its rounds spread widely, while recomputation, a few large
# matrix products per token, hardly moves; the fastest round is the best estimate of what each costs.
def time_generation(llama: Llama, prompt_tokens: list[int], gen_tokens: int, rounds: int = 3) -> dict:
    def timed(generate):
        synchronize(llama.model.tok_embeddings.weight.device)
        start = time.perf_counter()
        tokens = generate()
        synchronize(llama.model.tok_embeddings.weight.device)
        return tokens, time.perf_counter() - start

    def cached_generation():
        return llama.generate([prompt_tokens], gen_tokens, temperature=0.0)[0]

    def uncached_generation():
        return generate_without_cache(llama.model, [prompt_tokens], gen_tokens)[0]

    cached_generation()
    cached_times, uncached_times = [], []
    for _ in range(rounds):
        cached, seconds = timed(cached_generation)
        cached_times.append(seconds)
        uncached, seconds = timed(uncached_generation)
        uncached_times.append(seconds)
    cached_s, uncached_s = min(cached_times), min(uncached_times)
    return {
        "tokens": gen_tokens,
        "cached_tokens_per_s": gen_tokens / cached_s,
        "uncached_tokens_per_s": gen_tokens / uncached_s,
        "cache_speedup": uncached_s / cached_s,
        "greedy_outputs_equal": cached == uncached,
        "cpu_threads": torch.get_num_threads(),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ## Training and generating
#
# The [shared trainer](/experiments/trainer.md) fits the model to random blocks of `context` characters, with the
# tokenizer kept in its checkpoints so that a resumed run decodes the same way. Only the main process of a
# multi-process run goes on to save, time and sample.
def train(config: LlamaExperiment, run: Run) -> dict:
    if config.ckpt_dir is not None:
        return complete_with_checkpoint(config, run)
    data = load_tiny_shakespeare(run.data_dir)
    tokenizer = data.tokenizer
    model = Transformer(model_args(config, tokenizer.n_vocab))
    trainer = Trainer(model, config.trainer, run, extra_state={"tokenizer": tokenizer.to_dict()})
    result = trainer.fit(BlockSource(data.train, config.context), BlockSource(data.val, config.context))
    if not run.is_main:
        return result

    # Save in Meta's format and load it back with the loader of Meta's checkpoints.
    ckpt_dir = run.path("meta_checkpoint")
    save_checkpoint(trainer.model, ckpt_dir)
    llama = Llama.build(ckpt_dir, max_seq_len=trainer.model.params.max_seq_len, max_batch_size=1, device=run.device)

    # Greedy generation timed with and without the cache, then a sample with temperature and nucleus sampling.
    prompt_tokens = tokenizer.encode(config.prompt).tolist()
    result["generation"] = time_generation(llama, prompt_tokens, config.gen_tokens)
    sample = llama.generate([prompt_tokens], config.gen_tokens, temperature=config.temperature, top_p=config.top_p)[0]
    text = config.prompt + tokenizer.decode(sample)
    run.write_text("sample.txt", text + "\n")
    print(f"\n{text}\n")
    return result


# ### Meta's checkpoints
#
# Load, complete the prompt (with `<|begin_of_text|>` in front, as Meta's `text_completion` does) and report the
# speed of the whole generation, prompt included.
def complete_with_checkpoint(config: LlamaExperiment, run: Run) -> dict:
    tokenizer_path = config.tokenizer_path or Path(config.ckpt_dir) / "tokenizer.model"
    llama = Llama.build(config.ckpt_dir, tokenizer_path=tokenizer_path, max_batch_size=1, device=run.device)
    prompt_tokens = llama.tokenizer.encode(config.prompt, bos=True, eos=False)
    synchronize(run.device)
    start = time.perf_counter()
    generated = llama.generate([prompt_tokens], config.gen_tokens, temperature=config.temperature,
                               top_p=config.top_p)[0]
    synchronize(run.device)
    elapsed = time.perf_counter() - start
    completion = llama.tokenizer.decode(generated)
    print(f"\n{config.prompt}{completion}\n")
    return {"prompt": config.prompt, "completion": completion, "generated_tokens": len(generated),
            "tokens_per_s": len(generated) / elapsed}


# ## Reloading a run
#
# The model of a finished run (or of one of its variants), for [`load_run`](/experiments/char_lm.md#load_run):
# the configuration comes from the run's `config.json`, the vocabulary size from its tokenizer.
def rebuild(experiment: dict, n_vocab: int, variant: str | None = None) -> tuple[Transformer, int]:
    """The untrained model of a run of this experiment, and its context."""
    config = config_from_dict(LlamaExperiment, experiment)
    if config.ckpt_dir is not None:
        raise ValueError(f"this run completed Meta's checkpoint {config.ckpt_dir} and trained nothing: load that "
                         f"with Llama.build")
    return Transformer(model_args(config, n_vocab)), config.context


def main(argv: list[str] | None = None) -> None:
    run_experiment("llama", LlamaExperiment, train, presets={"default": default, "small": small, "tiny": tiny},
                   argv=argv, description="Train a small Llama 3.1 on Tiny Shakespeare and generate with a KV cache.",
                   gpu_presets={"default": "small"})


if __name__ == "__main__":
    main()

r"""
---
title: From a bigram to a GPT
summary: "A learning track of six runnable chapters, from a bigram to the library's GPT, one idea at a time, in PyTorch and in JAX/Flax, the two proved to compute the same thing, with the loss of every chapter measured."
---

# From a bigram to a GPT

The library's other pages explain finished modules. This track is the road to them, the one Andrej Karpathy
takes in ["Let's build GPT: from scratch, in code, spelled out"](https://www.youtube.com/watch?v=kCc8FmEb1nY)
([code](https://github.com/karpathy/ng-video-lecture)): a character-level language model on Tiny Shakespeare,
grown one idea at a time from a table of bigram counts to a GPT. Each chapter is one short file that reads top to
bottom, adds one idea to the chapter before, and runs:

| chapter | what it adds | command |
|---|---|---|
| 0. [The infrastructure](/transformers/from_scratch/ch0_infrastructure.md) | tokenizer, split, batches, the AdamW loop, the loss estimate, sampling; a unigram model | `python -m labml_nn.transformers.from_scratch.ch0_infrastructure` |
| 1. [The bigram](/transformers/from_scratch/ch1_bigram.md) | the embedding table as next-character logits | `... .ch1_bigram` |
| 2. [Self-attention](/transformers/from_scratch/ch2_self_attention.md) | the averaging trick; one head of scaled self-attention; positions | `... .ch2_self_attention` |
| 3. [Multi-head self-attention](/transformers/from_scratch/ch3_multi_head.md) | heads in parallel, concatenated and projected | `... .ch3_multi_head` |
| 4. [The transformer block](/transformers/from_scratch/ch4_block.md) | feed-forward network, residual connections, pre-norm layer norm, stacked | `... .ch4_block` |
| 5. [Scaling up: the GPT](/transformers/from_scratch/ch5_gpt.md) | dropout, tied output layer, biased heads: the library's [GPT](/transformers/gpt/index.md) | `... .ch5_gpt --preset cpu` |

Every chapter takes the same options (`--device`, `--max-steps`, `--seed`, `--out`, and `--eval-iters`,
`--sample-chars`, `--prompt`, `--preset`) and writes `metrics.jsonl` (the loss estimates), `sample.txt` and
`result.json` into `runs/from_scratch/<chapter>/<time>`. Each chapter's page shows its JAX/Flax version in a
second tab of the code column: choose **JAX/Flax** above any block of code, and every block of every chapter
switches (the choice is remembered). The JAX/Flax chapters run the same way,
`python -m labml_nn.transformers.from_scratch.flax.<chapter>`, after `pip install 'labml_nn[jax]'`.

## The loss, chapter by chapter

The recipe is the original's small one: embedding width 32, blocks of 8 characters, batches of 32, AdamW at a
learning rate of $10^{-3}$ for 5,000 steps (chapter 4: 3 blocks of 4 heads). The loss is in nats per character,
averaged over the same 200 batches of each split at every estimate. Measured with each chapter's command,
PyTorch 2.13 on the CPU, one thread, seed 1337; the wall times were taken on a shared, heavily loaded 2-core
machine and say little. The JAX/Flax column is the same commands under
`labml_nn.transformers.from_scratch.flax` (JAX 0.10.2, Flax 0.12.8, Optax 0.2.8): a model of its own, from other
random numbers, so the two columns differ by what a change of seed does, and by the initial weights (Flax draws
an embedding table with standard deviation $1/\sqrt{d}$, PyTorch with 1, which is why the JAX bigram starts lower
and gets further in 5,000 steps).

| chapter | parameters | train loss | validation loss | JAX/Flax: train, validation | the original reports |
|---|---|---|---|---|
| 0. unigram | 65 | 3.313 | 3.360 | 3.309, 3.340 | |
| 1. bigram | 4,225 | 2.561 | 2.567 (still falling) | 2.527, 2.526 | |
| 1. bigram, `--preset original` (learning rate $10^{-2}$, 3,000 steps) | 4,225 | 2.465 | 2.487 | | about 2.49 |
| 2. one head of self-attention | 7,553 | 2.391 | 2.403 | 2.394, 2.389 | |
| 3. four heads | 8,609 | 2.255 | 2.273 | 2.265, 2.281 | |
| 4. three pre-norm blocks | 42,369 | 1.980 | 2.067 | 1.996, 2.056 | about 2.08 with residual blocks |
| 5. GPT, `--preset cpu` (4 blocks of 4 heads, width 64, context 64, batches of 16, dropout 0.1, 2,000 steps) | 208,320 | 1.931 | 2.015 | 1.920, 2.014 | 1.48 for the GPU model (`--preset gpu`) |

![The validation loss of every chapter during training, with the original's published figures as dotted lines](/figures/from_scratch_curves.png)

Each idea pays: reading the past at all (chapter 2) takes 0.16 off the bigram, several heads another 0.13, and the
blocks with their feed-forward networks, residual connections and norms another 0.21, for five times the
parameters. Chapter 4 is also the first whose training loss drops clearly below its validation loss: it starts to
learn the training text itself, which is what chapter 5's dropout is for. The bigram at the track's learning rate
has not converged after 5,000 steps; at the original's ten times larger rate it reaches the original's 2.49.
Chapter 5's `cpu` preset is a small version of the GPU model, so its loss is between chapter 4's and the
original's 1.48; `--preset gpu` is the original's model, which needs a GPU.

## PyTorch and JAX, proved equal

Every chapter also exists in JAX, with [Flax's NNX API](https://flax.readthedocs.io) for the modules and
[Optax](https://optax.readthedocs.io) for AdamW, in [`flax/`](/transformers/from_scratch/flax/index.md): one file per chapter, the same
classes, names and structure, shown on each chapter's page in the code column's **JAX/Flax** tab, with notes
where the code differs. What differs overall is explained on the [JAX/Flax page](/transformers/from_scratch/flax/index.md): explicit
random keys, pure functions compiled with `jit`, and where the parameters live. The tests (`tests/test_from_scratch.py`) copy the PyTorch weights of every chapter into the Flax model and
check that

* the logits and the loss agree to $10^{-5}$ in float32;
* one AdamW step from the same weights on the same batch gives the same updated weights to $10^{-5}$.

AdamW agrees when both are configured alike: $\beta = (0.9, 0.999)$; $\epsilon = 10^{-8}$ added to
$\sqrt{\hat v}$ *after* the bias correction (Optax's `eps`, with `eps_root = 0`); both moments bias-corrected
(both libraries' default); the decoupled weight decay set to the same value (torch's default is $10^{-2}$,
Optax's $10^{-4}$) and applied to the same parameters (here all of them: no Optax `mask`, one torch parameter
group). Flax's layer norm must also be told PyTorch's $\epsilon = 10^{-5}$ and exact variance
([chapter 4](/transformers/from_scratch/ch4_block.md), JAX/Flax tab).

The two frameworks do not draw the same random numbers, so the same command trains a different model in each
(different initial weights, batches and dropout masks); only the computation from the same weights is the same.

**Speed** (`python benchmarks/from_scratch.py`): training steps per second of each chapter at the small recipe.
At this size a step is a few hundred thousand floating-point operations at most, microseconds of arithmetic; what
a step costs is the framework's work per operation. PyTorch runs each of the step's operations as its own call from
Python, and chapters 2 to 5 keep every head a module of its own. A compiled JAX step is one call, but Flax's `nnx.jit`
walks the module graph in Python at every call to split it into arrays and back; compiling a pure function of the
split arrays with `jax.jit` removes that too. The benchmark prints all three.

Measured with one thread on a shared 2-core machine under heavy load (other jobs used most of both cores), 5
interleaved rounds of 100 steps, medians; the absolute rates are far below what an idle core gives, the ratios
are the figures to read:

| chapter | PyTorch steps/s | `nnx.jit` steps/s | `jax.jit` steps/s | `nnx.jit` / PyTorch | `jax.jit` / PyTorch |
|---|---|---|---|---|
| 0. unigram | 497 | 303 | 2,661 | 0.61x | 5.4x |
| 1. bigram | 223 | 137 | 1,033 | 0.62x | 4.6x |
| 2. one head | 53 | 69 | 901 | 1.30x | 17x |
| 3. four heads | 28 | 17 | 130 | 0.61x | 4.7x |
| 4. three blocks | 9 | 4 | 16 | 0.50x | 1.9x |
| 5. GPT (small recipe) | 6 | 3 | 12 | 0.46x | 2.0x |

The arithmetic does not explain these rates: chapter 4's step is 62 million floating-point operations, which
PyTorch ran at 0.5 GFLOP/s, a small fraction of what one core computes. The compiled pure step is the fastest
everywhere, by the most where a step is a few operations and its arithmetic nothing (chapters 0 to 2): the cost
is the work around each operation (PyTorch's dispatch from Python, `nnx.jit`'s graph walk), not the operations.

## Tests

Besides the parity above: chapter 2's demonstrations against independent computations (the triangular-matrix mean
against a loop in float64; the variance of $q \cdot k$ against its value $d_k$ and a NumPy sample, with and without
the scale); causality in chapters 2 to 5 in both frameworks (changing a later character never changes an
earlier prediction); chapter 5 against the library's GPT with the same weights (biases and gains perturbed first,
so that a dropped or swapped one would show); every chapter run for a few steps in both frameworks, as its command
and as its notebook; and clear errors for a block size longer than the text, an unknown device and a prompt with
characters outside the vocabulary.

## How this relates to the library

Chapter 5's model *is* the library's [`GPT`](/transformers/gpt/index.md#GPT) with a ReLU feed-forward network:
[`to_library_gpt`](/transformers/from_scratch/ch5_gpt.md#to_library_gpt) loads its weights into one. The library's version is the one to
train at scale: its attention computes all heads with one projection and PyTorch's fused kernel, and its
[experiment](/transformers/experiments/gpt.md) trains it with the library's [trainer](/experiments/trainer.md),
which adds to this track's loop a learning-rate schedule, gradient clipping, mixed precision and checkpoints.
"""

r"""
---
title: The track in JAX/Flax
summary: "The from-scratch chapters in JAX with Flax NNX and Optax: the same files, classes and names as the PyTorch chapters, and what differs: explicit random keys, pure functions and jit, where the parameters live."
---

# The track in JAX/Flax

Each [chapter](/transformers/from_scratch/index.md) of the track again, in [JAX](https://docs.jax.dev) with
[Flax's NNX API](https://flax.readthedocs.io) and [Optax](https://optax.readthedocs.io): one file per chapter with
the PyTorch file's structure, classes and names, so that the two read side by side: each chapter's page shows
this version in the **JAX/Flax** tab of its code column. Install with `pip install 'labml_nn[jax]'` (JAX's CPU
wheels; nothing else in the library imports JAX) and run `python -m labml_nn.transformers.from_scratch.flax.<chapter>` with the same options as the PyTorch chapters.

| chapter | JAX/Flax source | page (JAX/Flax tab) |
|---|---|---|
| 0. The infrastructure | [`flax/ch0_infrastructure.py`](/transformers/from_scratch/flax/ch0_infrastructure.py) | [ch0_infrastructure](/transformers/from_scratch/ch0_infrastructure.md) |
| 1. The bigram | [`flax/ch1_bigram.py`](/transformers/from_scratch/flax/ch1_bigram.py) | [ch1_bigram](/transformers/from_scratch/ch1_bigram.md) |
| 2. Self-attention | [`flax/ch2_self_attention.py`](/transformers/from_scratch/flax/ch2_self_attention.py) | [ch2_self_attention](/transformers/from_scratch/ch2_self_attention.md) |
| 3. Multi-head self-attention | [`flax/ch3_multi_head.py`](/transformers/from_scratch/flax/ch3_multi_head.py) | [ch3_multi_head](/transformers/from_scratch/ch3_multi_head.md) |
| 4. The transformer block | [`flax/ch4_block.py`](/transformers/from_scratch/flax/ch4_block.py) | [ch4_block](/transformers/from_scratch/ch4_block.md) |
| 5. Scaling up: the GPT | [`flax/ch5_gpt.py`](/transformers/from_scratch/flax/ch5_gpt.py) | [ch5_gpt](/transformers/from_scratch/ch5_gpt.md) |

## What differs from PyTorch

* **Explicit random keys.** JAX has no hidden global generator. A random function takes a key, and a key is used
  once: to draw again, split it (`key, sub = jax.random.split(key)`). The batches of a run come from
  `jax.random.key(seed)`; a model's initial weights and its dropout masks come from the `nnx.Rngs` it is built
  with, a small generator object that NNX advances for us.
* **Pure functions and `jit`.** `jax.jit` traces a function once per input shape and compiles it with XLA into
  one program; afterwards a call runs that program, not Python. A traced function must be pure: no side effects
  other than its outputs. NNX's `nnx.jit` and `nnx.value_and_grad` accept modules, which are mutable Python
  objects, by splitting them into a static structure and a tree of arrays at the boundary and merging them back
  after. So the whole training step (forward, backward, AdamW) is one compiled program, and a new input shape is a
  new compilation, which is why sampling pads its window to one shape.
* **Where the parameters live.** As in PyTorch, on the module, as `nnx.Param` attributes; a Flax linear layer
  calls its weight `kernel` and stores it `[in, out]` (PyTorch: `weight`, `[out, in]`), an embedding `embedding`,
  a layer norm's gain `scale`. The gradient is a tree of the same shape as the parameters, and `nnx.Optimizer`
  holds AdamW's moments in another such tree. [`copy_from_torch`](/transformers/from_scratch/ch0_infrastructure.md#flax-copy_from_torch) walks
  PyTorch's parameter names through the Flax model, which is how the tests give both the same weights.

The tests check that, from the same weights, every chapter's logits and loss, and one AdamW step, agree with
PyTorch's to $10^{-5}$; the [track's page](/transformers/from_scratch/index.md#pytorch-and-jax-proved-equal) says which settings make
AdamW agree.
"""

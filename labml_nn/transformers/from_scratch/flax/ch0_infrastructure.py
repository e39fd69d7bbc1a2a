r"""
---
title: "0. The infrastructure (JAX/Flax)"
summary: "The track's infrastructure in JAX with Flax NNX and Optax: random batches from explicit keys, a jit-compiled training step, the loss estimate, sampling, and copying PyTorch weights in."
---

# 0. The infrastructure (JAX/Flax)

The PyTorch chapter in JAX, with [Flax](https://flax.readthedocs.io)'s NNX API
for the modules and [Optax](https://optax.readthedocs.io) for AdamW. The tokenizer, the split, the
configuration and the command line are the PyTorch chapter's, imported: they have nothing to do with the
framework. What differs is explained where the code differs:

* **Explicit random keys.** JAX has no global random state. Every random draw takes a key, and a key is split
  into new keys rather than reused: the batches of a run come from `jax.random.key(seed)`, and the model's
  initial weights and dropout masks from the `nnx.Rngs` it is built with.
* **Pure functions and `jit`.** `jax.jit` traces a function once per input shape into one XLA program and
  compiles it; later calls run the compiled program, with no Python per operation. So the training step is a
  function of the model, the optimizer and the batch, compiled whole: forward, backward and AdamW.
  `nnx.jit` lets such a function take and update NNX modules, which are ordinary Python objects.
* **Where the parameters live.** An NNX module holds its parameters as `nnx.Param` attributes, like PyTorch.
  Inside `nnx.jit` and `nnx.value_and_grad` the module is split into a static graph and a tree of arrays; the
  gradient is a tree of the same shape, and `nnx.Optimizer` keeps AdamW's moments in another such tree and
  updates the model's parameters in place.

Run it with `python -m labml_nn.transformers.from_scratch.flax.ch0_infrastructure`; JAX is an extra,
`pip install 'labml_nn[jax]'`.
"""

import json
import time
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from labml_nn.transformers.from_scratch import ch0_infrastructure as torch_chapter
from labml_nn.transformers.from_scratch.ch0_infrastructure import (Config, Tokenizer, configure, output_dir,
                                                                   parse_args, read_text, write_results)


# ## The data
#
# The [PyTorch chapter](/transformers/from_scratch/ch0_infrastructure.md#the-data)'s split (and its checks), as JAX arrays.
@dataclass
class Data:
    tokenizer: Tokenizer
    train: jax.Array
    val: jax.Array


def load_data(text: str, block_size: int, val_fraction: float = 0.1) -> Data:
    data = torch_chapter.load_data(text, block_size, val_fraction)
    return Data(data.tokenizer, jnp.asarray(data.train.numpy()), jnp.asarray(data.val.numpy()))


# ## Random batches
#
# The same windows as the PyTorch chapter, drawn with the key `key`. Compiled once per batch shape: the sizes are
# static arguments, so they are Python numbers inside the trace.
@jax.jit(static_argnames=("batch_size", "block_size"))
def get_batch(data: jax.Array, batch_size: int, block_size: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    # `[batch]`
    offsets = jax.random.randint(key, (batch_size,), 0, len(data) - block_size)
    # `[batch, block_size + 1]`
    windows = data[offsets[:, None] + jnp.arange(block_size + 1)]
    # inputs and targets, `[batch, block_size]` each
    return windows[:, :-1], windows[:, 1:]


# ## The loss
#
# The cross-entropy of every position's logits `[batch, seq, n_vocab]` with the next character, averaged.
def loss_fn(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


@nnx.jit
def eval_step(model: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
    return loss_fn(model(x), y)


# ## The loss estimate
#
# `model.eval()` switches dropout off, as in PyTorch. The batches come from the same key every time.
def estimate_loss(model: nnx.Module, data: Data, config: Config) -> dict[str, float]:
    model.eval()
    result = {}
    for split, tokens in (("train", data.train), ("val", data.val)):
        keys = jax.random.split(jax.random.key(config.seed + 1), config.eval_iters)
        # `[eval_iters]`, read once
        losses = jnp.stack([eval_step(model, *get_batch(tokens, config.batch_size, config.block_size, key))
                            for key in keys])
        result[split] = float(losses.mean())
    model.train()
    return result


# ## The training loop
#
# Optax's `adamw` set as torch's `AdamW`: $\beta = (0.9, 0.999)$, $\epsilon = 10^{-8}$ added to $\sqrt{\hat v}$ after
# the bias correction (Optax's `eps`, with `eps_root` 0), both moments bias-corrected, and the decoupled weight
# decay on every parameter (no `mask`). Optax adds $\lambda\theta$ to the Adam direction before scaling by the
# learning rate, torch multiplies $\theta$ by $1 - \eta\lambda$ first: both take
# $\theta \leftarrow \theta - \eta\big(\hat m / (\sqrt{\hat v} + \epsilon) + \lambda\theta\big)$, and the tests check
# that one step from the same weights lands on the same weights. (Optax's default decay is $10^{-4}$, torch's
# $10^{-2}$: they must be set alike.)
def make_optimizer(model: nnx.Module, config: Config) -> nnx.Optimizer:
    tx = optax.adamw(config.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=config.weight_decay)
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


# One compiled program: the loss, its gradient with respect to the model's parameters, and AdamW's update.
@nnx.jit
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    def loss_of(model: nnx.Module) -> jax.Array:
        return loss_fn(model(x), y)

    loss, grads = nnx.value_and_grad(loss_of)(model)
    optimizer.update(model, grads)
    return loss


def train(model: nnx.Module, data: Data, config: Config) -> list[dict]:
    """Train `model` for `config.max_steps` steps; returns the loss estimates `{"step", "train", "val"}`."""
    optimizer = make_optimizer(model, config)
    key = jax.random.key(config.seed)
    history = []
    for step in range(config.max_steps):
        if step % config.eval_interval == 0:
            history.append({"step": step, **estimate_loss(model, data, config)})
            print(f"step {step}: train loss {history[-1]['train']:.4f}, val loss {history[-1]['val']:.4f}")
        key, batch_key = jax.random.split(key)
        x, y = get_batch(data.train, config.batch_size, config.block_size, batch_key)
        train_step(model, optimizer, x, y)
    history.append({"step": config.max_steps, **estimate_loss(model, data, config)})
    print(f"step {config.max_steps}: train loss {history[-1]['train']:.4f}, val loss {history[-1]['val']:.4f}")
    return history


# ## Sampling
#
# As in PyTorch, but each draw takes a key of its own: `jax.random.categorical` samples from logits directly.
# `jit` compiles once per input shape, and a growing prompt would have a new shape at every step. So the window
# of the last (at most) `block_size` ids is padded on the right to `block_size`, one shape for the whole loop,
# and the logits are read at the window's last real position: the models are causal, so the padding after it
# changes nothing there.
@nnx.jit
def window_logits(model: nnx.Module, window: jax.Array) -> jax.Array:
    return model(window)


def generate(model: nnx.Module, ids: jax.Array, max_new_tokens: int, block_size: int, key: jax.Array
             ) -> jax.Array:
    model.eval()
    for _ in range(max_new_tokens):
        length = min(ids.shape[1], block_size)
        # `[batch, block_size]`
        window = jnp.pad(ids[:, -length:], ((0, 0), (0, block_size - length)))
        key, draw = jax.random.split(key)
        # `[batch, 1]`
        next_id = jax.random.categorical(draw, window_logits(model, window)[:, length - 1])[:, None]
        ids = jnp.concatenate([ids, next_id.astype(ids.dtype)], axis=1)
    model.train()
    return ids


# ## This chapter's model: the unigram
#
# The parameter is an `nnx.Param`: NNX finds the parameters of a module by this type.
class UnigramLanguageModel(nnx.Module):
    def __init__(self, n_vocab: int):
        self.logits = nnx.Param(jnp.zeros(n_vocab))

    def __call__(self, ids: jax.Array) -> jax.Array:
        # `[batch, seq, n_vocab]`
        return jnp.broadcast_to(self.logits[...], (*ids.shape, self.logits.shape[0]))


def build_model(config: Config, n_vocab: int, rngs: nnx.Rngs) -> nnx.Module:
    return UnigramLanguageModel(n_vocab)


# ## Copying PyTorch weights in
#
# A PyTorch parameter's name is a path to a module and a field: `blocks.0.sa.heads.1.key.weight`. The same path
# walks the Flax model, whose modules have the same names (an `nnx.Sequential`'s members are in its `layers`).
# The fields differ: a linear layer's weight is `kernel`, stored transposed (`[in, out]`, where PyTorch has
# `[out, in]`: Flax computes $x W$, PyTorch $x W^\top$); an embedding's is `embedding`; a layer norm's is
# `scale`. Every parameter of the Flax model must be given.
def copy_from_torch(model: nnx.Module, torch_model) -> None:
    given = 0
    for name, tensor in torch_model.named_parameters():
        *path, field = name.split(".")
        module = model
        for part in path:
            if part.isdigit():
                module = (module.layers if isinstance(module, nnx.Sequential) else module)[int(part)]
            else:
                module = getattr(module, part)
        # Through a copy: `numpy()` shares the tensor's memory, and JAX may read it asynchronously, after PyTorch
        # has changed the tensor in place (an optimizer step), taking a half-updated value.
        value = jnp.asarray(tensor.detach().cpu().numpy().copy())
        if isinstance(module, nnx.Linear) and field == "weight":
            module.kernel[...] = value.T
        elif isinstance(module, nnx.Embed) and field == "weight":
            module.embedding[...] = value
        elif isinstance(module, nnx.LayerNorm) and field == "weight":
            module.scale[...] = value
        else:
            getattr(module, field)[...] = value
        given += value.size
    expected = count_parameters(model)
    if given != expected:
        raise ValueError(f"the PyTorch model has {given} parameter values, the Flax model {expected}")


def count_parameters(model: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ## The device
#
# `auto` is JAX's default device; `cpu`, `cuda` (or `gpu`) ask for one of that kind.
def get_device(name: str) -> jax.Device:
    if name == "auto":
        return jax.devices()[0]
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "gpu") or (index and not index.isdigit()):
        raise ValueError(f"device must be one of auto, cpu, cuda, gpu (optionally cuda:N), got {name!r}")
    try:
        return jax.devices("gpu" if kind == "cuda" else kind)[int(index or 0)]
    except (RuntimeError, IndexError) as e:
        raise ValueError(f"device {name!r} was asked for, but JAX has no such device: {e}") from e


# ## Running a chapter
#
# As in PyTorch; the model is built inside `jax.default_device`, so its parameters live on the chosen device.
def run_chapter(chapter: str, build: Callable[[Config, int, nnx.Rngs], nnx.Module], argv: list[str] | None = None,
                presets: dict[str, Config] | None = None) -> dict:
    presets = presets or {"small": Config()}
    args = parse_args(f"flax.{chapter}", argv, presets)
    config = configure(args, presets)
    device = get_device(args.device)
    data = load_data(read_text(), config.block_size)
    if not args.prompt:
        raise ValueError("prompt must hold at least one character")
    prompt = jnp.asarray([data.tokenizer.encode(args.prompt)], dtype=jnp.int32)
    out = output_dir(f"flax/{chapter}", args.out)

    with jax.default_device(device):
        model = build(config, data.tokenizer.n_vocab, nnx.Rngs(config.seed))
        parameters = count_parameters(model)
        print(f"{chapter} (JAX): {parameters:,} parameters on {device}")
        start = time.perf_counter()
        history = train(model, data, config)
        seconds = time.perf_counter() - start
        ids = generate(model, prompt, config.sample_chars, config.block_size, jax.random.key(config.seed))
    sample = data.tokenizer.decode([int(i) for i in ids[0]])
    print(sample)
    result = write_results(out, chapter, "jax", config, history, sample, parameters, seconds)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}))
    return result


def main(argv: list[str] | None = None) -> dict:
    return run_chapter("ch0_infrastructure", build_model, argv)


if __name__ == "__main__":
    main()

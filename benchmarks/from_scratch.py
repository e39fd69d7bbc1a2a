"""Training steps per second of every chapter of the from-scratch track, PyTorch (eager) against JAX (`jit`).

Each chapter's model is built in PyTorch, copied into its Flax twin (the same weights), and both train on the
same batches (the small recipe: batch 32, block 8, width 32, AdamW at 1e-3) in the same process, interleaved
round by round so that drift in the machine's speed hits them alike. A round times `--steps` training steps of
one framework (forward, backward, AdamW; JAX waits for the result at the end of the round). JAX runs twice: the
chapters' own `nnx.jit` step, which walks the NNX module graph in Python at every call to split it into arrays
and merge it back, and the same step compiled with plain `jax.jit` on the split state (`nnx.split` once, a pure
function of arrays), which is what a tight JAX loop does. We print the median steps per second over the rounds,
the ratios, and the arithmetic each step does (6 flops per matrix-multiply parameter per token, plus the attention
scores), to show how far from the arithmetic's cost a step runs.

    python benchmarks/from_scratch.py                  # the small recipe, on the CPU
    python benchmarks/from_scratch.py --tiny --rounds 2 --steps 2    # smoke test
"""
import argparse
import importlib
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402
from torch import nn  # noqa: E402

from labml_nn.transformers.from_scratch import ch0_infrastructure as torch_ch0  # noqa: E402
from labml_nn.transformers.from_scratch.ch0_infrastructure import Config  # noqa: E402
from labml_nn.transformers.from_scratch.flax import ch0_infrastructure as flax_ch0  # noqa: E402

CHAPTERS = ["ch0_infrastructure", "ch1_bigram", "ch2_self_attention", "ch3_multi_head", "ch4_block", "ch5_gpt"]
N_VOCAB = 65


def step_flops(model: nn.Module, config: Config) -> float:
    """Flops of one training step: 6 per matrix-multiply weight per token (forward 2, backward 4), plus the
    attention scores and the weighted values (2 products of seq x seq x width, forward and backward)."""
    tokens = config.batch_size * config.block_size
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    heads = [m for m in model.modules() if type(m).__name__ == "Head"]
    attention = sum(2 * 2 * config.block_size * m.key.out_features for m in heads) * tokens
    return 6 * weights * tokens + 3 * attention


def pure_step_function(flax_model, flax_optimizer):
    """The training step as a pure function of the model's and optimizer's arrays, compiled with `jax.jit`."""
    graphdef, state = nnx.split((flax_model, flax_optimizer))

    @jax.jit
    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(lambda m: flax_ch0.loss_fn(m(x), y))(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    return step, state


def measure(config: Config, rounds: int, steps: int) -> None:
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(N_VOCAB, (100_000,), generator=generator)
    batches = [torch_ch0.get_batch(data, config.batch_size, config.block_size, generator, torch.device("cpu"))
               for _ in range(steps)]
    jax_batches = [(jnp.asarray(x.numpy()), jnp.asarray(y.numpy())) for x, y in batches]
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__} "
          f"({jax.devices()[0].platform}); {rounds} rounds of {steps} steps, medians")
    print(f"{'chapter':20s} {'params':>8s} {'MFLOP/step':>10s} {'PyTorch':>8s} {'nnx.jit':>8s} {'jax.jit':>8s} "
          f"{'nnx.jit/PyTorch':>15s} {'jax.jit/PyTorch':>15s} {'PyTorch GFLOP/s':>15s}   (steps/s)")
    for name in CHAPTERS:
        torch_model = importlib.import_module(f"labml_nn.transformers.from_scratch.{name}").build_model(
            config, N_VOCAB)
        flax_model = importlib.import_module(f"labml_nn.transformers.from_scratch.flax.{name}").build_model(
            config, N_VOCAB, nnx.Rngs(0))
        flax_ch0.copy_from_torch(flax_model, torch_model)
        torch_optimizer = torch_ch0.make_optimizer(torch_model, config)
        flax_optimizer = flax_ch0.make_optimizer(flax_model, config)
        pure_step, state = pure_step_function(flax_model, flax_optimizer)
        state, loss = pure_step(state, *jax_batches[0])
        # Compile (JAX) and warm up (both) before timing.
        flax_ch0.train_step(flax_model, flax_optimizer, *jax_batches[0]).block_until_ready()
        torch_ch0.train_step(torch_model, torch_optimizer, *batches[0])
        times = {"pytorch": [], "jax": [], "pure": []}
        for _ in range(rounds):
            start = time.perf_counter()
            for x, y in batches:
                loss = torch_ch0.train_step(torch_model, torch_optimizer, x, y)
            loss.item()
            times["pytorch"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for x, y in jax_batches:
                loss = flax_ch0.train_step(flax_model, flax_optimizer, x, y)
            loss.block_until_ready()
            times["jax"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for x, y in jax_batches:
                state, loss = pure_step(state, x, y)
            loss.block_until_ready()
            times["pure"].append(time.perf_counter() - start)
        rate = {k: steps / statistics.median(v) for k, v in times.items()}
        flops = step_flops(torch_model, config)
        parameters = sum(p.numel() for p in torch_model.parameters())
        print(f"{name:20s} {parameters:8,d} {flops / 1e6:10.2f} {rate['pytorch']:8.0f} {rate['jax']:8.0f} "
              f"{rate['pure']:8.0f} {rate['jax'] / rate['pytorch']:14.2f}x {rate['pure'] / rate['pytorch']:14.2f}x "
              f"{flops * rate['pytorch'] / 1e9:15.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed round")
    parser.add_argument("--tiny", action="store_true", help="a tiny configuration, for a smoke test")
    args = parser.parse_args()
    config = Config(batch_size=4, n_embd=16, n_head=2, n_layer=1) if args.tiny else Config()
    measure(config, args.rounds, args.steps)


if __name__ == "__main__":
    main()

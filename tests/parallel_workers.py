"""Worker functions for tests/test_parallel.py, run in processes spawned by the tests (gloo on CPU).

Each worker joins a process group, runs its check and writes what it measured to `out_dir/<name>.<rank>.json`;
the test process reads the files and asserts. `spawn` bounds the time of every spawned process.
"""
import json
import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, nprocs: int, *args, timeout: float = 90.0) -> None:
    """Run `fn(rank, nprocs, port, *args)` in `nprocs` processes; kill them all and fail after `timeout` seconds."""
    context = mp.start_processes(fn, args=(nprocs, free_port(), *args), nprocs=nprocs, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(0.1, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            raise TimeoutError(f"{fn.__name__} with {nprocs} processes did not finish in {timeout} s")


def init(rank: int, world_size: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)


def write(out_dir: str, name: str, rank: int, result: dict) -> None:
    Path(out_dir, f"{name}.{rank}.json").write_text(json.dumps(result))


def tiny_gpt(seed: int = 0):
    from labml_nn.transformers.configs import TransformerConfigs
    from labml_nn.transformers.gpt import GPT
    torch.manual_seed(seed)
    configs = TransformerConfigs(n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0, n_src_vocab=23,
                                 max_len=16, positional="learned", ffn_activation="gelu", scale_embeddings=False)
    model = GPT(configs)
    # Non-zero biases and norm gains, so that a bias added t times or a norm gain's gradient left partial shows
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def tiny_llama(seed: int = 0):
    from labml_nn.transformers.llama import ModelArgs, Transformer
    torch.manual_seed(seed)
    model = Transformer(ModelArgs(dim=64, n_layers=2, n_heads=8, n_kv_heads=4, vocab_size=29, multiple_of=16,
                                  max_seq_len=16))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def loss_of(model, tokens: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(tokens)
    return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def max_differences(model, other, tokens, targets, gather) -> dict:
    """Max |difference| of logits, loss and every gathered gradient between `model` and the shard `other`."""
    logits, loss = loss_of(model, tokens, targets)
    loss.backward()
    shard_logits, shard_loss = loss_of(other, tokens, targets)
    shard_loss.backward()
    grads = gather(other)
    reference = {name: p.grad for name, p in model.named_parameters()}
    if set(grads) != set(reference):
        raise AssertionError(f"gathered names differ: {sorted(set(grads) ^ set(reference))}")
    shapes_ok = all(grads[name].shape == reference[name].shape for name in reference)
    return {"logits": (logits - shard_logits).abs().max().item(), "loss": abs(loss.item() - shard_loss.item()),
            "grads": max((grads[name] - reference[name]).abs().max().item() for name in reference),
            "shapes": shapes_ok, "n_grads": len(grads)}


def tensor_parallel_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """The written-out split against one process, for the GPT and the Llama, with and without sequence parallelism."""
    from labml_nn.transformers.parallel import gather_parameters, shard_gpt, shard_llama
    init(rank, world_size, port)
    torch.manual_seed(123)
    result = {}
    for name, build, shard, vocab in (("gpt", tiny_gpt, shard_gpt, 23), ("llama", tiny_llama, shard_llama, 29)):
        tokens = torch.randint(0, vocab, (3, 8))
        targets = torch.randint(0, vocab, (3, 8))
        for sequence_parallel in (False, True):
            model = build()
            sharded = shard(model, None, sequence_parallel)
            result[f"{name}/sp={sequence_parallel}"] = max_differences(
                model, sharded, tokens, targets, lambda m: gather_parameters(m, grads=True))
    write(out_dir, "tp", rank, result)
    dist.destroy_process_group()


def dtensor_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """`tensor_parallelize` (DTensor) against the written-out split and one process."""
    import copy
    from torch.distributed.device_mesh import init_device_mesh
    from labml_nn.transformers.parallel import gather_parameters, shard_gpt, shard_llama
    from labml_nn.transformers.parallel.dtensor import full_gradients, tensor_parallelize
    init(rank, world_size, port)
    mesh = init_device_mesh("cpu", (world_size,))
    torch.manual_seed(123)
    result = {}
    for name, build, shard, vocab in (("gpt", tiny_gpt, shard_gpt, 23), ("llama", tiny_llama, shard_llama, 29)):
        tokens = torch.randint(0, vocab, (3, 8))
        targets = torch.randint(0, vocab, (3, 8))
        for sequence_parallel in (False, True):
            model = build()
            written = shard(model, None, sequence_parallel)
            logits, loss = loss_of(written, tokens, targets)
            loss.backward()
            written_grads = gather_parameters(written, grads=True)
            parallel = tensor_parallelize(copy.deepcopy(model), mesh, sequence_parallel)
            result[f"{name}/sp={sequence_parallel}/one process"] = max_differences(
                model, parallel, tokens, targets, full_gradients)
            with torch.no_grad():
                parallel_logits, parallel_loss = loss_of(parallel, tokens, targets)
            grads = full_gradients(parallel)
            result[f"{name}/sp={sequence_parallel}/written out"] = {
                "logits": (logits - parallel_logits).abs().max().item(),
                "loss": abs(loss.item() - parallel_loss.item()),
                # the gradients of the one backward pass `max_differences` ran
                "grads": max((grads[k] - written_grads[k]).abs().max().item() for k in written_grads),
                "shapes": set(grads) == set(written_grads), "n_grads": len(grads)}
    write(out_dir, "dtensor", rank, result)
    dist.destroy_process_group()

"""Worker functions for tests/test_parallel.py, run in processes spawned by the tests (gloo on CPU).

Each worker joins a process group, runs its check and writes what it measured to `out_dir/<name>.<rank>.json`;
the test process reads the files and asserts. `spawn` bounds the time of every spawned process.
"""
import json
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from labml_nn.experiments.distributed import leave_process_group


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


def finish() -> None:
    """Leave the group once every process is done, as the trainer does."""
    leave_process_group()


def write(out_dir: str, name: str, rank: int, result: dict) -> None:
    Path(out_dir, f"{name}.{rank}.json").write_text(json.dumps(result))


def tiny_gpt(seed: int = 0, dropout: float = 0.0):
    from labml_nn.transformers.configs import TransformerConfigs
    from labml_nn.transformers.gpt import GPT
    torch.manual_seed(seed)
    configs = TransformerConfigs(n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=dropout, n_src_vocab=23,
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
    """The written-out split against one process, for the GPT and the Llama, with and without sequence parallelism;
    with 2 processes also `tensor_parallelize` (DTensor) against one process and against the written-out split, and
    the dropout streams of both."""
    import copy
    from torch.distributed.device_mesh import init_device_mesh
    from labml_nn.transformers.parallel import gather_parameters, shard_gpt, shard_llama
    from labml_nn.transformers.parallel.dtensor import full_gradients, tensor_parallelize
    init(rank, world_size, port)
    mesh = init_device_mesh("cpu", (world_size,)) if world_size == 2 else None
    torch.manual_seed(123)
    result = {}
    for name, build, shard, vocab in (("gpt", tiny_gpt, shard_gpt, 23), ("llama", tiny_llama, shard_llama, 29)):
        tokens = torch.randint(0, vocab, (3, 8))
        targets = torch.randint(0, vocab, (3, 8))
        for sequence_parallel in (False, True):
            model = build()
            written = shard(model, None, sequence_parallel)
            case = f"{name}/sp={sequence_parallel}"
            result[case] = max_differences(model, written, tokens, targets,
                                           lambda m: gather_parameters(m, grads=True))
            if mesh is None:
                continue
            written_grads = gather_parameters(written, grads=True)
            with torch.no_grad():
                logits, loss = loss_of(written, tokens, targets)
            model.zero_grad()
            parallel = tensor_parallelize(copy.deepcopy(model), mesh, sequence_parallel)
            result[f"{case}/dtensor vs one process"] = max_differences(model, parallel, tokens, targets,
                                                                       full_gradients)
            with torch.no_grad():
                parallel_logits, parallel_loss = loss_of(parallel, tokens, targets)
            grads = full_gradients(parallel)
            result[f"{case}/dtensor vs written out"] = {
                "logits": (logits - parallel_logits).abs().max().item(),
                "loss": abs(loss.item() - parallel_loss.item()),
                # the gradients of the one backward pass `max_differences` ran
                "grads": max((grads[k] - written_grads[k]).abs().max().item() for k in written_grads),
                "shapes": set(grads) == set(written_grads), "n_grads": len(grads)}
    if mesh is not None:
        for sequence_parallel in (False, True):
            result[f"dropout/written out/sp={sequence_parallel}"] = dropout_streams(
                lambda model: shard_gpt(model, None, sequence_parallel), sequence_parallel)
            result[f"dropout/dtensor/sp={sequence_parallel}"] = dropout_streams(
                lambda model: tensor_parallelize(model, mesh, sequence_parallel), sequence_parallel)
    write(out_dir, "tp", rank, result)
    finish()


# ## Dropout under tensor parallelism
#
# A GPT with dropout 0.3, split over the group, runs a forward and backward pass in training mode with the same seed
# on every process. Recorded: each layer's output (the residual stream), the masks of the embeddings' dropout, of the
# feed-forward networks' hidden units (their own units on each process) and of the residual dropout, and the state of
# the generator that the attention kernel's dropout on the local heads draws from; then what is recorded is compared
# between the processes, and with a rerun with the same seed.
def _local(x: torch.Tensor) -> torch.Tensor:
    return x.to_local() if hasattr(x, "to_local") else x


def _dropped(module, args, out, into: list) -> None:
    into.append((_local(out) == 0) & (_local(args[0]) != 0))


def dropout_pass(parallelize, seed: int, activation_checkpointing: bool = False) -> dict[str, list[torch.Tensor]]:
    from labml_nn.transformers.parallel.training import checkpoint_layers
    model = parallelize(tiny_gpt(dropout=0.3)).train()
    if activation_checkpointing:
        checkpoint_layers(model)
    seen = {"residual": [], "embedding": [], "hidden": [], "residual_dropout": [], "attention_rng": []}
    model.embed.dropout.register_forward_hook(lambda m, a, out: _dropped(m, a, out, seen["embedding"]))
    for layer in model.encoder.layers:
        layer.register_forward_hook(lambda m, a, out: seen["residual"].append(_local(out).detach().clone()))
        layer.feed_forward.dropout.register_forward_hook(lambda m, a, out: _dropped(m, a, out, seen["hidden"]))
        layer.dropout.register_forward_hook(lambda m, a, out: _dropped(m, a, out, seen["residual_dropout"]))
    attention = F.scaled_dot_product_attention

    def recording_attention(*args, **kwargs):
        seen["attention_rng"].append(torch.get_rng_state())
        return attention(*args, **kwargs)

    tokens = torch.randint(0, 23, (3, 8), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(seed)
    F.scaled_dot_product_attention = recording_attention
    try:
        _, loss = loss_of(model, tokens, tokens)
    finally:
        F.scaled_dot_product_attention = attention
    loss.backward()
    seen["embedding_grad"] = [_local(model.embed.embeddings.weight.grad).clone()]
    seen["grads"] = [_local(p.grad).clone() for p in model.parameters()]
    return seen


def dropout_streams(parallelize, sequence_parallel: bool) -> dict:
    first, again = dropout_pass(parallelize, seed=5), dropout_pass(parallelize, seed=5)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, first)
    other = gathered[(dist.get_rank() + 1) % len(gathered)]

    def differences(a: dict, b: dict, key: str) -> float:
        """The largest difference between two recordings of `key` (the fraction of elements that differ, for masks)."""
        return max(((x != y).float().mean() if x.dtype == torch.bool else (x - y).abs().max()).item()
                   if x.dtype != torch.uint8 else float(not torch.equal(x, y))
                   for x, y in zip(a[key], b[key]))

    keys = ("residual", "embedding", "hidden", "residual_dropout", "attention_rng", "embedding_grad")
    return {"other process": {key: differences(first, other, key) for key in keys},
            "rerun": {key: differences(first, again, key) for key in keys},
            "dropped": first["hidden"][0].float().mean().item(), "sequence_parallel": sequence_parallel,
            # recomputed in the backward pass, each layer draws its masks again: the same gradients
            "recomputed": differences(first, dropout_pass(parallelize, seed=5, activation_checkpointing=True), "grads")}


# ## FSDP2, FSDP2 with tensor parallelism, sharded checkpoints

GLOBAL_BATCH, SEQ, STEPS, SAVE_AT = 8, 8, 10, 5


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of `step`, the same in every process and in the reference run."""
    tokens = torch.randint(0, 23, (GLOBAL_BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1000 + step))
    return tokens[:, :-1], tokens[:, 1:]


def train(model, optimizer, steps: range, dp_rank: int = 0, dp: int = 1, group=None) -> list[float]:
    """Steps of AdamW on this data-parallel rank's slice of each global batch; the losses averaged over `dp`."""
    losses = []
    per_rank = GLOBAL_BATCH // dp
    for step in steps:
        tokens, targets = batch(step)
        rows = slice(dp_rank * per_rank, (dp_rank + 1) * per_rank)
        _, loss = loss_of(model, tokens[rows], targets[rows])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss = loss.detach().clone()
        if dp > 1:
            dist.all_reduce(loss, group=group)
        losses.append(loss.item() / dp)
    return losses


def adam(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)


def reference_run() -> tuple[list[float], dict, dict]:
    """One process, the whole batch: losses, and the full state (model and optimizer) at SAVE_AT and at the end."""
    from labml_nn.transformers.parallel.training import full_state
    model = tiny_gpt()
    optimizer = adam(model)
    losses = train(model, optimizer, range(SAVE_AT))
    at_save = full_optimizer_state(model, optimizer)
    losses += train(model, optimizer, range(SAVE_AT, STEPS))
    return losses, at_save, full_state(model)


def full_optimizer_state(model, optimizer) -> dict[str, torch.Tensor]:
    """`{"<param>/<state>": full tensor}` of the parameters and Adam's moments, by parameter name."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
    from labml_nn.transformers.parallel.training import full_state
    _, optimizer_state = get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
    out = {f"{name}/param": value for name, value in full_state(model).items()}
    for name, state in optimizer_state["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            value = state[key]
            out[f"{name}/{key}"] = (value.full_tensor() if hasattr(value, "full_tensor") else value).clone()
    return out


def max_difference(a: dict, b: dict) -> float:
    if set(a) != set(b):
        raise AssertionError(f"names differ: {sorted(set(a) ^ set(b))[:5]}")
    return max((a[k] - b[k]).abs().max().item() for k in a)


def fsdp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """FSDP2 over 2 processes: ten steps against one process; a sharded checkpoint at step SAVE_AT."""
    from labml_nn.transformers.parallel.training import device_mesh, full_state, parallelize, save_sharded
    init(rank, world_size, port)
    losses, at_save, final = reference_run()
    if rank == 0:
        torch.save({"losses": losses, "at_save": at_save, "final": final}, Path(out_dir, "reference.pt"))
    mesh = device_mesh(world_size, tp=1, fsdp=True)
    model = parallelize(tiny_gpt(), mesh, fsdp=True)
    optimizer = adam(model)
    group = mesh["dp"].get_group()
    parallel = train(model, optimizer, range(SAVE_AT), rank, world_size, group)
    save_sharded(Path(out_dir, "checkpoint"), model, optimizer, SAVE_AT)
    saved = full_optimizer_state(model, optimizer)
    if rank == 0:
        torch.save(saved, Path(out_dir, "saved.pt"))
    parallel += train(model, optimizer, range(SAVE_AT, STEPS), rank, world_size, group)
    write(out_dir, "fsdp", rank, {"losses": parallel, "reference": losses,
                                  "params": max_difference(full_state(model), final)})
    finish()


def resume_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Load the 2-process checkpoint with `world_size` processes (FSDP over all of them, or one plain process),
    compare model and optimizer state with the reference's at SAVE_AT, and continue to STEPS."""
    from labml_nn.transformers.parallel.training import device_mesh, full_state, load_sharded, parallelize
    init(rank, world_size, port)
    reference = torch.load(Path(out_dir, "reference.pt"), weights_only=True)
    fsdp = world_size > 1
    mesh = device_mesh(world_size, tp=1, fsdp=fsdp)
    model = parallelize(tiny_gpt(seed=99), mesh, fsdp=fsdp)
    optimizer = adam(model)
    step = load_sharded(Path(out_dir, "checkpoint"), model, optimizer)
    # against what the 2 processes held when they saved, and against the one-process run at that step
    saved = torch.load(Path(out_dir, "saved.pt"), weights_only=True)
    state = max_difference(full_optimizer_state(model, optimizer), saved)
    state_vs_reference = max_difference(saved, reference["at_save"])
    losses = train(model, optimizer, range(step, STEPS), rank, world_size, mesh["dp"].get_group())
    result = {"step": step, "state": state, "state_vs_reference": state_vs_reference, "losses": losses, "reference": reference["losses"][step:],
              "params": max_difference(full_state(model), reference["final"])}
    if world_size > 1:
        result.update(tp_errors(world_size, out_dir))
        result.update(fsdp_tp_run(rank, world_size, reference, out_dir))
        result["accumulation"] = {name: accumulation_step(rank, world_size, out_dir, tp, fsdp, accum)
                                  for name, tp, fsdp, accum in (("fsdp", 1, True, 4), ("tp+dp", 2, False, 2),
                                                                ("tp+fsdp", 2, True, 2))}
    write(out_dir, f"resume{world_size}", rank, result)
    finish()


def tp_errors(world_size: int, out_dir: str) -> dict:
    """The messages of bad set-ups (raised before any collective)."""
    from labml_nn.transformers.configs import TransformerConfigs
    from labml_nn.transformers.gpt import GPT
    from labml_nn.transformers.parallel.dtensor import tensor_parallelize
    from labml_nn.transformers.parallel.training import device_mesh, load_sharded
    two_heads = GPT(TransformerConfigs(n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0, n_src_vocab=23,
                                       max_len=16, positional="learned"))
    tp_mesh = device_mesh(world_size, tp=world_size)["tp"]
    errors = {}
    for name, call in (("tp too large", lambda: device_mesh(world_size, tp=2 * world_size)),
                       ("tp not dividing", lambda: device_mesh(world_size, tp=3)),
                       ("fsdp alone", lambda: device_mesh(world_size, tp=world_size, fsdp=True)),
                       ("heads", lambda: tensor_parallelize(two_heads, tp_mesh)),
                       ("other model", lambda: load_sharded(Path(out_dir, "checkpoint"), tiny_llama(),
                                                            adam(tiny_llama())))):
        try:
            call()
            errors[name] = None
        except ValueError as error:
            errors[name] = str(error)
    return {"errors": errors}


def fsdp_tp_run(rank: int, world_size: int, reference: dict, out_dir: str) -> dict:
    """FSDP2 with tensor and sequence parallelism on a (2, 2) mesh, ten steps, against one process."""
    from labml_nn.transformers.parallel.training import device_mesh, full_state, parallelize
    mesh = device_mesh(world_size, tp=2, fsdp=True)
    model = parallelize(tiny_gpt(), mesh, fsdp=True, sequence_parallel=True)
    optimizer = adam(model)
    losses = train(model, optimizer, range(STEPS), mesh["dp"].get_local_rank(), mesh["dp"].size(),
                   mesh["dp"].get_group())
    return {"fsdp_tp_losses": losses, "fsdp_tp_params": max_difference(full_state(model), reference["final"])}


# ## Gradient accumulation in the trainer
#
# One optimizer step of the trainer with `grad_accum` micro-batches per process, against one process's step on the
# whole batch: the gradients the optimizer sees (full size) and the parameters after its step. The collectives that
# synchronise gradients over the data-parallel processes are counted before every micro-batch and after the step:
# FSDP2's reduce-scatters and the all-reduces over the `dp` group.
class FixedBatch:
    """A batch source that always returns the same global batch."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def sample(self, generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        assert batch_size == len(self.tensors[0])
        return self.tensors


def accumulation_step(rank: int, world_size: int, out_dir: str, tp: int, fsdp: bool, grad_accum: int) -> dict:
    from torch.distributed.fsdp import FSDPModule
    from labml_nn.experiments.distributed import DistributedContext
    from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig, language_model_loss
    from labml_nn.transformers.parallel.training import full_state
    tokens = torch.randint(0, 23, (16, SEQ + 1), generator=torch.Generator().manual_seed(7))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    config = TrainerConfig(max_steps=1, batch_size=16, grad_accum=grad_accum, lr=1e-3, warmup=0, clip=0.5, tp=tp,
                           fsdp=fsdp)
    run = Run(Path(out_dir, "accumulation"), DistributedContext(rank, world_size, rank, torch.device("cpu")))
    trainer = Trainer(tiny_gpt(), config, run)
    dp_group = trainer.mesh["dp"].get_group()
    counts, before_each = {"reduce_scatter": 0, "dp_all_reduce": 0}, []
    reduce_scatter, all_reduce = dist.reduce_scatter_single, dist.all_reduce

    def counting_reduce_scatter(*args, **kwargs):
        counts["reduce_scatter"] += 1
        return reduce_scatter(*args, **kwargs)

    def counting_all_reduce(tensor, *args, **kwargs):
        counts["dp_all_reduce"] += kwargs.get("group", args[1] if len(args) > 1 else None) is dp_group
        return all_reduce(tensor, *args, **kwargs)

    def loss_fn(model, micro):
        before_each.append(dict(counts))
        return language_model_loss(model, micro)

    seen = {}

    def capture_gradients(optimizer, args, kwargs):
        seen.update({name: p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad.clone()
                     for name, p in trainer.model.named_parameters()})

    trainer.loss_fn = loss_fn
    trainer.optimizer.register_step_pre_hook(capture_gradients)
    dist.reduce_scatter_single, dist.all_reduce = counting_reduce_scatter, counting_all_reduce
    try:
        trainer._train_step(FixedBatch(inputs, targets))
    finally:
        dist.reduce_scatter_single, dist.all_reduce = reduce_scatter, all_reduce
    # One process, the whole batch, clipped as the trainer clips, AdamW as the GPT configures it
    model = tiny_gpt()
    _, loss = loss_of(model, inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
    reference_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    optimizer = model.configure_optimizers(config.weight_decay, config.lr, config.betas)
    optimizer.step()
    return {"grads": max_difference(seen, reference_grads),
            "params": max_difference(full_state(trainer.model), full_state(model)),
            "before_each_micro_batch": before_each, "after_step": dict(counts),
            "fsdp_units": sum(isinstance(m, FSDPModule) for m in trainer.model.modules())}


# ## Activation checkpointing's memory, measured

def peak_memory_increase(activation_checkpointing: bool) -> int:
    """Bytes by which the process's peak resident memory grows over one forward and backward pass of a Llama whose
    activations dominate (run in a fresh process: the peak only ever grows)."""
    import resource
    from labml_nn.transformers.llama import ModelArgs, Transformer
    from labml_nn.transformers.parallel.training import checkpoint_layers
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Transformer(ModelArgs(dim=128, n_layers=16, n_heads=4, vocab_size=64, multiple_of=16, max_seq_len=1024))
    if activation_checkpointing:
        checkpoint_layers(model)
    tokens = torch.randint(0, 64, (2, 1024))
    # A first small pass, so that one-off allocations (kernels' workspaces, the autograd engine) are in the baseline
    loss_of(model, tokens[:, :16], tokens[:, :16])[1].backward()
    model.zero_grad()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss_of(model, tokens, tokens)[1].backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024


def saved_activation_bytes(activation_checkpointing: bool) -> int:
    """Bytes of the tensors that autograd keeps for the backward pass of the same model and batch, counted as they
    are saved (each storage once): what activation checkpointing is meant to shrink."""
    from labml_nn.transformers.llama import ModelArgs, Transformer
    from labml_nn.transformers.parallel.training import checkpoint_layers
    torch.manual_seed(0)
    model = Transformer(ModelArgs(dim=128, n_layers=16, n_heads=4, vocab_size=64, multiple_of=16, max_seq_len=1024))
    if activation_checkpointing:
        checkpoint_layers(model)
    tokens = torch.randint(0, 64, (2, 1024))
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_of(model, tokens, tokens)[1]
    loss.backward()
    return sum(storages.values())


# ## A save cut short
#
# `python -m parallel_workers crash-on-save N MODULE ARGS...` runs `python -m MODULE ARGS...` (under torchrun, in
# every process) such that each process dies abruptly in the middle of its N-th sharded save, as under a `kill -9`:
# its shard files are written, the directory's metadata is not, and `checkpoint.pt` is not replaced.
def crash_on_save(n: int, module: str, args: list[str]) -> None:
    import os
    import runpy
    import sys
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    write_data, saves = FileSystemWriter.write_data, []

    def crashing(self, plan, planner):
        written = write_data(self, plan, planner)
        saves.append(self.path)
        if len(saves) == n:
            written.wait()
            os._exit(17)
        return written

    FileSystemWriter.write_data = crashing
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    import sys
    if sys.argv[1] != "crash-on-save":
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
    crash_on_save(int(sys.argv[2]), sys.argv[3], sys.argv[4:])

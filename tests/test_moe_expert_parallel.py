"""Expert parallelism: two gloo processes on the CPU, spawned by the test (each bounded in time), against a
single-process `MoE` with the same weights; outputs, input gradients, expert and router gradients. This file is
also the worker: `python tests/test_moe_expert_parallel.py RANK PORT`.

The same, with an expert count not divisible by the world size: a `ValueError`."""
import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labml_nn.experiments.distributed import leave_process_group
from labml_nn.transformers.moe import MoE
from labml_nn.transformers.moe.expert_parallel import ExpertParallelMoE

REPO = Path(__file__).resolve().parents[1]
D_MODEL, D_FF, N_EXPERTS, WORLD = 10, 14, 4, 2


def reference_and_inputs(case: str):
    """The single-process layer and each rank's tokens (different numbers per rank); in the `idle` case expert 3
    receives no token: its router row scores against a feature that is positive for every token."""
    torch.manual_seed(0)
    reference = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=2, aux_loss_coeff=0.0).double()
    inputs = [torch.randn(1, 5, D_MODEL, dtype=torch.float64), torch.randn(1, 9, D_MODEL, dtype=torch.float64)]
    if case == "idle":
        for x in inputs:
            x[..., 0] = x[..., 0].abs() + 1
        with torch.no_grad():
            reference.router.gate.weight[3] = 0
            reference.router.gate.weight[3, 0] = -50
    targets = [torch.randn_like(x) for x in inputs]
    return reference, inputs, targets


def worker(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    for case in ("uneven", "idle"):
        reference, inputs, targets = reference_and_inputs(case)
        # Single process: all tokens of both ranks at once.
        everything = torch.cat(inputs, dim=1).requires_grad_()
        y_reference, stats = reference(everything)
        (y_reference * torch.cat(targets, dim=1)).sum().backward()
        if case == "idle":
            assert stats.tokens_per_expert[3].item() == 0, stats.tokens_per_expert

        # Expert parallel: this rank's tokens, this rank's two experts.
        layer = ExpertParallelMoE(D_MODEL, D_FF, N_EXPERTS, top_k=2, aux_loss_coeff=0.0).double()
        local = slice(rank * 2, rank * 2 + 2)
        with torch.no_grad():
            layer.router.gate.weight.copy_(reference.router.gate.weight)
            for name in ("w1", "w2", "w3"):
                getattr(layer.experts, name).copy_(getattr(reference.experts, name)[local])
        x = inputs[rank].clone().requires_grad_()
        y, _ = layer(x)
        (y * targets[rank]).sum().backward()

        mine = slice(0, 5) if rank == 0 else slice(5, 14)
        torch.testing.assert_close(y, y_reference[:, mine], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(x.grad, everything.grad[:, mine], atol=1e-6, rtol=1e-6)
        for name in ("w1", "w2", "w3"):
            torch.testing.assert_close(getattr(layer.experts, name).grad,
                                       getattr(reference.experts, name).grad[local], atol=1e-6, rtol=1e-6)
        # The router is replicated: the sum of its per-process gradients is the single process's.
        router_grad = layer.router.gate.weight.grad.clone()
        torch.distributed.all_reduce(router_grad)
        torch.testing.assert_close(router_grad, reference.router.gate.weight.grad, atol=1e-6, rtol=1e-6)
        print(f"rank {rank} {case}: ok", flush=True)
    # Three experts cannot be divided among two processes.
    try:
        ExpertParallelMoE(D_MODEL, D_FF, 3)
    except ValueError as error:
        assert "divisible by the expert-parallel world size (2)" in str(error)
        print(f"rank {rank} indivisible: ok", flush=True)
    leave_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen([sys.executable, __file__, str(rank), str(port)], env=env, cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(WORLD)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=120)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{output}"
        assert f"rank {rank} idle: ok" in output and f"rank {rank} indivisible: ok" in output


def test_single_process_is_the_plain_layer():
    reference, inputs, _ = reference_and_inputs("uneven")
    layer = ExpertParallelMoE(D_MODEL, D_FF, N_EXPERTS, top_k=2, aux_loss_coeff=0.0).double()
    layer.load_state_dict(reference.state_dict())
    torch.testing.assert_close(layer(inputs[1])[0], reference(inputs[1])[0])


def test_capacity_is_rejected():
    with pytest.raises(ValueError, match="dropless"):
        ExpertParallelMoE(D_MODEL, D_FF, N_EXPERTS, capacity_factor=1.0)


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]))

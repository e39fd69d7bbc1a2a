"""Tensor and sequence parallelism (labml_nn.transformers.parallel) against one process, in 2 and 4 gloo processes."""
import json

import pytest
import torch

import parallel_workers as workers


def read(out_dir, name: str, world_size: int) -> list[dict]:
    return [json.loads((out_dir / f"{name}.{rank}.json").read_text()) for rank in range(world_size)]


@pytest.mark.parametrize("world_size", [2, 4])
def test_written_out_split_equals_one_process(tmp_path, world_size):
    workers.spawn(workers.tensor_parallel_worker, world_size, str(tmp_path))
    for rank, result in enumerate(read(tmp_path, "tp", world_size)):
        assert set(result) == {"gpt/sp=False", "gpt/sp=True", "llama/sp=False", "llama/sp=True"}
        for case, diff in result.items():
            assert diff["shapes"], (rank, case)
            for key in ("logits", "loss", "grads"):
                assert diff[key] < 1e-5, (rank, case, key, diff)


def test_bad_splits_are_clear_errors():
    import torch.distributed as dist
    from labml_nn.transformers.parallel import ColumnParallelLinear, RowParallelLinear

    with pytest.raises(ValueError, match="divisible by the tensor-parallel size 3"):
        ColumnParallelLinear(torch.nn.Linear(4, 8), 0, 3)
    with pytest.raises(ValueError, match="divisible by the tensor-parallel size 3"):
        RowParallelLinear(torch.nn.Linear(8, 4), 0, 3, None)
    assert not dist.is_initialized()


def test_dtensor_tensor_parallelize_equals_written_out():
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as out_dir:
        workers.spawn(workers.dtensor_worker, 2, out_dir, timeout=120)
        results = read(Path(out_dir), "dtensor", 2)
    for rank, result in enumerate(results):
        assert len(result) == 8
        for case, diff in result.items():
            assert diff["shapes"], (rank, case)
            for key in ("logits", "loss", "grads"):
                assert diff[key] < 1e-5, (rank, case, key, diff)

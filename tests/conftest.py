"""Shared fixtures: deterministic seeds, the local Tiny Shakespeare copy, and the CUDA skip."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    # Tests never touch the network: the data loader reads the shared local copy.
    if "LABML_NN_DATA" not in os.environ and (SHARED_DATA / "tiny_shakespeare.txt").exists():
        os.environ["LABML_NN_DATA"] = str(SHARED_DATA)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny tensors: one thread is fastest, and on a shared machine several threads per process
    spin against each other (the copy task trains ~8x slower with two threads under load). It also makes the
    trained models independent of the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data_dir() -> Path:
    path = Path(os.environ["LABML_NN_DATA"])
    assert (path / "tiny_shakespeare.txt").exists(), f"Tiny Shakespeare copy missing under {path}"
    return path

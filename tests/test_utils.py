"""Masks and helpers against brute-force definitions."""
import random

import numpy as np
import pytest
import torch
from torch import nn

from labml_nn.transformers.utils import count_parameters, get_device, padding_mask, seed_everything, subsequent_mask


def test_subsequent_mask_matches_definition():
    n = 7
    mask = subsequent_mask(n)
    assert mask.dtype == torch.bool and mask.shape == (n, n)
    for i in range(n):
        for j in range(n):
            assert mask[i, j].item() == (j <= i)


def test_subsequent_mask_agrees_with_sdpa_is_causal():
    q, k, v = torch.randn(3, 2, 2, 6, 8).unbind(0)
    masked = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=subsequent_mask(6))
    flagged = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(masked, flagged)


def test_subsequent_mask_rejects_empty():
    with pytest.raises(ValueError, match="seq_len"):
        subsequent_mask(0)


def test_padding_mask_shape_and_values():
    tokens = torch.tensor([[5, 6, 0, 0], [1, 2, 3, 4]])
    mask = padding_mask(tokens, pad_id=0)
    assert mask.shape == (2, 1, 1, 4)
    expected = [[True, True, False, False], [True, True, True, True]]
    assert mask[:, 0, 0].tolist() == expected
    with pytest.raises(ValueError, match="batch, seq"):
        padding_mask(tokens[0], pad_id=0)


def test_get_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device must be one of"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            get_device("cuda")


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()
    seed_everything(3)
    first = draw()
    seed_everything(3)
    assert draw() == first


def test_count_parameters_counts_tied_weights_once():
    embed = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    model = nn.ModuleDict({"embed": embed, "head": head, "norm": nn.LayerNorm(4)})
    assert count_parameters(model) == 10 * 4 + 4 + 4
    model["norm"].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 10 * 4 + 4

"""Sinusoidal positional encodings against the paper's formula, evaluated in float64 by a plain loop."""
import math

import pytest
import torch

from labml_nn.transformers.positional_encoding import PositionalEncoding, get_positional_encoding


def paper_formula(d_model: int, max_len: int) -> torch.Tensor:
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)), one entry at a time."""
    table = [[0.0] * d_model for _ in range(max_len)]
    for p in range(max_len):
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            table[p][2 * i] = math.sin(angle)
            table[p][2 * i + 1] = math.cos(angle)
    return torch.tensor(table, dtype=torch.float64)


@pytest.mark.parametrize("d_model,max_len", [(2, 7), (16, 300), (64, 2000)])
def test_matches_paper_formula(d_model, max_len):
    pe = get_positional_encoding(d_model, max_len)
    assert pe.shape == (max_len, d_model)
    assert pe.dtype == torch.float32
    # float32 rounding of values in [-1, 1] is below 6e-8; a float32 angle computation would be off by ~1e-4.
    torch.testing.assert_close(pe.double(), paper_formula(d_model, max_len), rtol=0, atol=1e-7)


def test_relative_offset_is_a_linear_map():
    """PE[p + k] = M_k PE[p] with one block-diagonal rotation M_k for every p."""
    d_model, k = 8, 5
    pe = get_positional_encoding(d_model, 100).double()
    omega = torch.tensor([10000 ** (-2 * i / d_model) for i in range(d_model // 2)], dtype=torch.float64)
    m_k = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i, w in enumerate(omega.tolist()):
        c, s = math.cos(w * k), math.sin(w * k)
        m_k[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, s], [-s, c]])
    torch.testing.assert_close(pe[k:], pe[:-k] @ m_k.T, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", [0, 7, -2])
def test_odd_or_nonpositive_d_model_raises(bad):
    with pytest.raises(ValueError, match="d_model"):
        get_positional_encoding(bad)
    with pytest.raises(ValueError, match="d_model"):
        PositionalEncoding(bad, 0.0)


def test_module_adds_rows_at_offset():
    d_model, max_len = 12, 50
    module = PositionalEncoding(d_model, dropout_prob=0.0, max_len=max_len)
    x = torch.randn(3, 10, d_model)
    expected = x.double() + paper_formula(d_model, max_len)[7:17]
    torch.testing.assert_close(module(x, offset=7).double(), expected, rtol=0, atol=1e-6)
    # offset = slicing the encoding of a longer sequence
    long = torch.randn(2, 20, d_model)
    torch.testing.assert_close(module(long)[:, 5:9], module(long[:, 5:9], offset=5))


def test_buffer_is_not_persistent_and_follows_dtype():
    module = PositionalEncoding(8, dropout_prob=0.0, max_len=16)
    assert "positional_encodings" not in module.state_dict()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    assert module(x).dtype == torch.float64
    y = torch.randn(2, 4, 8).bfloat16()
    assert module(y).dtype == torch.bfloat16


def test_too_long_or_negative_offset_raises():
    module = PositionalEncoding(8, dropout_prob=0.0, max_len=16)
    module(torch.zeros(1, 16, 8))
    with pytest.raises(ValueError, match="max_len"):
        module(torch.zeros(1, 17, 8))
    with pytest.raises(ValueError, match="offset"):
        module(torch.zeros(1, 4, 8), offset=13)
    with pytest.raises(ValueError, match="offset"):
        module(torch.zeros(1, 4, 8), offset=-1)
    with pytest.raises(ValueError, match="d_model"):
        module(torch.zeros(1, 4, 6))


def test_dropout_applied_only_in_training():
    module = PositionalEncoding(8, dropout_prob=0.5, max_len=16)
    x = torch.randn(4, 16, 8)
    module.train()
    out = module(x)
    assert (out == 0).float().mean() > 0.3
    module.eval()
    torch.testing.assert_close(module(x), x + get_positional_encoding(8, 16))

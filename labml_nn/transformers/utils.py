r"""
---
title: Masks and small helpers
summary: Causal and padding masks with the True-means-attend convention, device choice, seeding and parameter counting.
---

# Masks and small helpers

Attention lets every query look at every key. Two things restrict that, and both are written
as **boolean masks where `True` means "may attend"**, the convention of PyTorch's
`F.scaled_dot_product_attention`:

* the **causal (subsequent) mask** of a language model: query $i$ may see key $j$ only when $j \le i$,
  so that predicting token $i + 1$ never peeks at it;
* the **padding mask** of a batch of sequences of different lengths: no query may attend to a
  padding token.

Masks broadcast against the attention scores, which are laid out `[batch, heads, seq_q, seq_k]`.
A padding mask is `[batch, 1, 1, seq_k]` (the same for every head and every query); a causal mask is
`[seq_q, seq_k]` (the same for every sample and head); combining them is a logical `&`.

![Three 8 by 8 grids of True and False, query position down, key position across: the causal mask is lower-triangular, the padding mask is False in the last three columns, and their combination is both](/figures/masks.png)

!!! warning "Two conventions"
    `torch.nn.MultiheadAttention` takes the opposite convention for its boolean `attn_mask` and
    `key_padding_mask`: there `True` means *ignore*. Convert with `~mask`.

The experiment (`python -m labml_nn.transformers.utils`) is a leak test: it measures the gradient of
the output at position $t$ with respect to later inputs, with and without the causal mask.
"""

import random

import numpy as np
import torch
from torch import nn


# ## Causal mask
#
# $$\text{mask}_{ij} = [\,j \le i\,]$$
#
# A lower-triangular matrix of `True`: row $i$ (a query) may attend to columns $0 \dots i$ (keys).
# It is built on the device where it will be used, so that no copy is needed in the forward pass.
def subsequent_mask(seq_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Causal mask `[seq_len, seq_len]`, `True` where query `i` may attend key `j` (`j <= i`)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len}")
    # `[seq_len, seq_len]`
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()


# ## Padding mask
#
# Sequences of different lengths are padded to a common length with a `pad_id` token. Keys at padding
# positions carry no information, so no query may attend to them. The mask has singleton head and query
# dimensions so that it broadcasts against scores `[batch, heads, seq_q, seq_k]`.
def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Padding mask `[batch, 1, 1, seq]` from `tokens` `[batch, seq]`, `True` at real (non-padding) tokens."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [batch, seq], got shape {tuple(tokens.shape)}")
    # `[batch, seq]` to `[batch, 1, 1, seq]`
    return (tokens != pad_id)[:, None, None, :]


# ## Device choice
#
# The fastest available device: a CUDA GPU, then Apple's Metal (MPS), then the CPU.
# `name` may force one; asking for a device that is not there is an error rather than a silent fallback.
def get_device(name: str = "auto") -> torch.device:
    """The device called `name` (`auto`, `cpu`, `cuda`, `cuda:1`, `mps`); `auto` picks cuda > mps > cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of auto, cpu, cuda, mps (optionally cuda:N), got {name!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch.cuda.is_available() is False")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but torch.backends.mps.is_available() is False")
    return torch.device(name)


# ## Seeding
#
# One seed for Python's, NumPy's and PyTorch's generators (all devices), so that a run can be repeated.
def seed_everything(seed: int) -> None:
    """Seed `random`, NumPy and PyTorch (CPU and every CUDA device) with `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ## Counting parameters
#
# `module.parameters()` yields each tensor once, even when it is shared (a tied embedding and output
# layer), so summing over it counts tied weights once, as they should be.
def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters in `module`; shared tensors are counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


if __name__ == "__main__":
    from labml_nn.transformers.experiments.utils import main

    main()

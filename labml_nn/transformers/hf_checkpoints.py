r"""
---
title: Loading Hugging Face checkpoints, strictly
summary: One idiom for every family's load_hf, an explicit table of our parameter names against the checkpoint's, with the transforms between them, walked strictly.
---

# Loading Hugging Face checkpoints, strictly

The checkpoints people already have are mostly in Hugging Face's layout: a directory with `config.json`
(the model's hyper-parameters) and `model.safetensors` (its tensors, by name; large models split them
over several files listed in `model.safetensors.index.json`; older ones use `pytorch_model.bin`).

Their names are not ours: GPT-2 calls the query, key and value projections of layer 3 one matrix,
`h.3.attn.c_attn.weight`, stored transposed; BERT calls its feed-forward network's first layer
`encoder.layer.3.intermediate.dense`. A loader is therefore a **name map**: one table of rows

| our name(s) | their name(s) | transform |
|---|---|---|
| `encoder.layers.3.self_attn.query.weight`, `...key.weight`, `...value.weight` | `h.3.attn.c_attn.weight` | transpose, then split in three |

and each family's `load_hf` is that table and nothing else: its page shows it, and this module walks it.

## Strict, because "close" is wrong

A loader that silently skips what it does not recognise produces a model that runs and is wrong: a
missing norm gain stays at its initial one, a dropped bias at zero, and the logits are merely close. So
the walk is strict:

* every tensor of the file is used by some row (or named by a row that says why it is not needed, such as
  a buffer we recompute);
* every parameter and persistent buffer of our model is filled by exactly one row (tied parameters are
  one tensor and are filled once);
* every shape is checked after the transform;

and each failure is a `ValueError` that names the file and the key.

The file is read with `safetensors` (the `hf` extra), which maps tensors without running any code;
`pytorch_model.bin` is read with `torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["Row", "transpose", "split", "concat", "read_json_object", "read_config", "read_tensors", "load_table",
           "config_from_dict", "HF_BOOKKEEPING_KEYS"]


# ## A row of the name map
#
# `ours` and `theirs` are one name or a tuple of names. `transform` takes their tensors (in the order of
# `theirs`) and returns ours (one tensor, or a tuple in the order of `ours`); without one, the tensor is
# copied as it is. A row with no `ours` reads a tensor of theirs on purpose and drops it: `note` says why.
# `optional` marks a tensor that some writers leave out, such as an output matrix tied to the embeddings.
@dataclass(frozen=True)
class Row:
    """One line of a name map: which of our tensors come from which of theirs, and how."""
    ours: str | tuple[str, ...]
    theirs: str | tuple[str, ...]
    transform: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]] | None = None
    note: str = ""
    optional: bool = False

    @property
    def our_names(self) -> tuple[str, ...]:
        return (self.ours,) if isinstance(self.ours, str) else tuple(self.ours)

    @property
    def their_names(self) -> tuple[str, ...]:
        return (self.theirs,) if isinstance(self.theirs, str) else tuple(self.theirs)


# ## The transforms
#
# PyTorch's `nn.Linear` stores $W$ as `[out, in]` and computes $x W^\top$. GPT-2's `Conv1D` stores
# `[in, out]` and computes $x W$, so its matrices arrive transposed.
def transpose(tensor: torch.Tensor) -> torch.Tensor:
    """`[in, out]` to `[out, in]`."""
    return tensor.t()


# One of theirs holds several of ours side by side (GPT-2's `c_attn` is $[W^Q W^K W^V]$), or the reverse.
def split(*sizes: int, dim: int = 0) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """A transform that cuts one tensor into pieces of `sizes` along `dim`."""
    def cut(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if tensor.shape[dim] != sum(sizes):
            raise ValueError(f"cannot split dimension {dim} of size {tensor.shape[dim]} into {list(sizes)}")
        return tuple(torch.split(tensor, list(sizes), dim=dim))
    return cut


def concat(dim: int = 0) -> Callable[..., torch.Tensor]:
    """A transform that joins several tensors along `dim`."""
    return lambda *tensors: torch.cat(tensors, dim=dim)


# ## Reading the directory
#
# `config.json` is a JSON object of hyper-parameters (as is Meta's `params.json`). Every error names the file.
def read_json_object(path: str | Path) -> dict:
    """The JSON object in the file at `path`; `ValueError` naming the file when it holds anything else."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def read_config(model_dir: str | Path) -> tuple[dict, Path]:
    """`config.json` of a Hugging Face model directory, as a dict, and its path."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {model_dir}: expected a Hugging Face model directory "
                                f"(config.json and model.safetensors)")
    return read_json_object(path), path


# The tensors come from `model.safetensors`, from the shards that `model.safetensors.index.json` lists, or
# from `pytorch_model.bin`, in that order of preference. The result also says which file(s) they came from,
# for the error messages.
def read_tensors(model_dir: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of a Hugging Face model directory by name, and a description of their source file(s)."""
    model_dir = Path(model_dir)
    single, index, pickled = (model_dir / "model.safetensors", model_dir / "model.safetensors.index.json",
                              model_dir / "pytorch_model.bin")
    if single.is_file():
        return _read_safetensors([single]), str(single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{index} is not a safetensors index (a JSON object with a 'weight_map')") from error
        shards = sorted({model_dir / name for name in weight_map.values()})
        return _read_safetensors(shards), str(index)
    if pickled.is_file():
        try:
            state = torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several kinds for a damaged or unsafe file
            raise ValueError(f"{pickled} could not be read as a state dict of tensors: {error}") from error
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise ValueError(f"{pickled} must hold a dict of tensor name to tensor")
        return state, str(pickled)
    raise FileNotFoundError(f"no model.safetensors, model.safetensors.index.json or pytorch_model.bin in {model_dir}")


def _read_safetensors(paths: Sequence[Path]) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        raise ImportError("reading model.safetensors needs the safetensors package: "
                          "pip install 'labml_nn[hf]'") from error
    tensors: dict[str, torch.Tensor] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in the safetensors index but does not exist")
        try:
            part = load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own error type for a damaged header
            raise ValueError(f"{path} could not be read as safetensors: {error}") from error
        tensors.update(part)
    return tensors


# ## The configuration
#
# A `config.json` written by `save_pretrained` holds the model's fields and Hugging Face's bookkeeping
# (which class wrote it, which library version, the dtype it was saved in). The bookkeeping is dropped; any
# other key that our dataclass does not have is an error, since silently ignoring, say, a position-embedding
# kind we do not implement would give a model that loads and is wrong. A family lists the keys it knows to be
# harmless for it (such as `initializer_range`) in `ignored`.
HF_BOOKKEEPING_KEYS = frozenset({
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
    "id2label", "label2id", "output_hidden_states", "output_attentions", "return_dict", "use_cache",
    "is_encoder_decoder", "problem_type", "tokenizer_class", "bos_token_id", "eos_token_id",
    "_attn_implementation_autoset", "chunk_size_feed_forward", "tie_encoder_decoder",
})


def config_from_dict(cls, config: dict, path: str | Path, *, ignored: Iterable[str] = (), **overrides):
    """Build the dataclass `cls` from a `config.json` dict: bookkeeping and `ignored` keys dropped, unknown keys
    and invalid values a `ValueError` naming `path`."""
    known = {f.name for f in fields(cls)}
    dropped = (HF_BOOKKEEPING_KEYS | set(ignored)) - known
    kept = {key: value for key, value in config.items() if key not in dropped}
    unknown = sorted(set(kept) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown} for {cls.__name__}; it has {sorted(known)}")
    try:
        return cls(**{**kept, **overrides})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


# ## Walking the table
#
# Our side is the model's `state_dict`: its parameters and persistent buffers. Tied parameters appear there
# under several names but are one tensor, so they are grouped by identity and must be filled once, by any
# one of their names.
def load_table(model: nn.Module, table: Iterable[Row], tensors: dict[str, torch.Tensor], source: str) -> None:
    """Fill every parameter and persistent buffer of `model` from `tensors` by `table`, strictly.

    Raises `ValueError` naming `source` and the key for a missing, unused, doubly filled or misshaped tensor."""
    ours = model.state_dict(keep_vars=True)
    group_of = {}  # our name -> the first name of its tensor's group (tied names share one)
    first_name_of_tensor: dict[int, str] = {}
    for name, tensor in ours.items():
        group_of[name] = first_name_of_tensor.setdefault(id(tensor), name)
    filled: dict[str, str] = {}  # group -> their name(s) that filled it
    used: set[str] = set()
    for row in table:
        present = [name for name in row.their_names if name in tensors]
        if len(present) < len(row.their_names):
            if row.optional and not present:
                continue
            missing = [name for name in row.their_names if name not in tensors]
            needed = f" (for our {', '.join(row.our_names)})" if row.our_names else ""
            raise ValueError(f"{source} has no tensor {missing[0]!r}{needed}")
        used.update(row.their_names)
        if not row.our_names:
            continue
        theirs = [tensors[name] for name in row.their_names]
        try:
            result = row.transform(*theirs) if row.transform is not None else theirs[0]
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"{source}: cannot convert {', '.join(row.their_names)}: {error}") from error
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(row.our_names):
            raise ValueError(f"the name map's row for {row.their_names} gives {len(results)} tensor(s) "
                             f"for {len(row.our_names)} name(s)")
        for our_name, value in zip(row.our_names, results):
            _fill(ours, group_of, filled, our_name, value, row, source)
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{source} has {len(unused)} tensor(s) that the model does not use: {_first(unused)}")
    unfilled = sorted({group for group in group_of.values() if group not in filled})
    if unfilled:
        raise ValueError(f"{source} does not fill {len(unfilled)} tensor(s) of the model: {_first(unfilled)}")


def _fill(ours: dict[str, torch.Tensor], group_of: dict[str, str], filled: dict[str, str], our_name: str,
          value: torch.Tensor, row: Row, source: str) -> None:
    their = ", ".join(row.their_names)
    if our_name not in ours:
        raise ValueError(f"the name map fills {our_name!r} (from {source}'s {their}), which the model does not have")
    group = group_of[our_name]
    if group in filled:
        raise ValueError(f"{source}: our {our_name!r} is filled twice, from {filled[group]} and from {their}")
    target = ours[our_name]
    if value.shape != target.shape:
        raise ValueError(f"{source}: tensor {their} gives shape {list(value.shape)} for our {our_name!r}, "
                         f"which has shape {list(target.shape)}: does config.json match the file?")
    if target.is_floating_point() and not value.is_floating_point():
        raise ValueError(f"{source}: tensor {their} has dtype {value.dtype}, expected floating point")
    with torch.no_grad():
        target.copy_(value)
    filled[group] = their


def _first(names: list[str], count: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


# ## Looking inside a checkpoint
#
# `python -m labml_nn.transformers.hf_checkpoints DIR` prints each tensor's name, shape and dtype: the
# other column of the name map, when writing one.
def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    parser = argparse.ArgumentParser(description="List the tensors of a Hugging Face model directory.")
    parser.add_argument("model_dir", type=Path)
    args = parser.parse_args(argv)
    tensors, source = read_tensors(args.model_dir)
    print(f"{source}: {len(tensors)} tensors, {sum(t.numel() for t in tensors.values()):,} values")
    for name in sorted(tensors):
        print(f"  {name:60s} {str(list(tensors[name].shape)):20s} {str(tensors[name].dtype)}")


if __name__ == "__main__":
    main()

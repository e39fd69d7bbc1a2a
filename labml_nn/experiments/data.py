r"""
---
title: Tiny Shakespeare and a character tokenizer
summary: The data of the experiments: Tiny Shakespeare downloaded once and checked, a character tokenizer, a 90/10 split, and random contiguous blocks as batches.
---

# Tiny Shakespeare and a character tokenizer

The language-model experiments train on
[Tiny Shakespeare](https://github.com/karpathy/char-rnn/tree/master/data/tinyshakespeare), about a
million characters of Shakespeare's plays collected by Andrej Karpathy for
[char-rnn](https://karpathy.github.io/2015/05/21/rnn-effectiveness/). It is small enough to train on a laptop
CPU in minutes and structured enough (names, verse, dialogue) that you can watch a model learn it.

**Where the file comes from.** In this order:

1. a directory given with `--data-dir DIR` (or the environment variable `LABML_NN_DATA=DIR`) holding
   `tiny_shakespeare.txt`, or that file itself, used as is: no download, no check, so any text file can
   stand in for it;
2. the cache directory (`~/.cache/labml_nn`, or `$LABML_NN_CACHE`, or `$XDG_CACHE_HOME/labml_nn`), where
   the file is downloaded once from the char-rnn repository, checked against its size and SHA-256, and
   written atomically so that an interrupted download never leaves a truncated file behind.

With no network and no copy, loading fails at once with a message that says which file to put where.

**Tokens.** Each distinct character is a token, numbered in sorted order, so the vocabulary (65 characters)
comes from the text itself. The first 90% of the text is for training, the last 10% for validation.

**Batches.** A batch is `batch_size` blocks of `context + 1` consecutive tokens starting at random offsets;
the input is the first `context` tokens and the target the same block shifted by one. Offsets come from a
`torch.Generator` owned by the [trainer](/experiments/trainer.md), which saves its state in checkpoints so that
a resumed run draws exactly the batches an uninterrupted one would.
"""

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import torch

# ## Where the text lives
#
# The raw file in the char-rnn repository, and what it must be.
TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SIZE = 1_115_394
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
FILE_NAME = "tiny_shakespeare.txt"


class DataUnavailableError(RuntimeError):
    """The data file is neither present locally nor downloadable (or the download was corrupt)."""


# The cache directory: `$LABML_NN_CACHE`, else `$XDG_CACHE_HOME/labml_nn`, else `~/.cache/labml_nn`.
def default_cache_dir() -> Path:
    """Directory where downloaded data is kept."""
    if os.environ.get("LABML_NN_CACHE"):
        return Path(os.environ["LABML_NN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "labml_nn"


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 digest of `data`."""
    return hashlib.sha256(data).hexdigest()


# ## Writing atomically
#
# Write to a temporary file in the same directory, then `os.replace` it onto the target name. The rename
# is atomic on POSIX and Windows, so a reader sees either the old file or the complete new one, never a
# half-written file, even if the process is killed in the middle. The trainer's checkpoints go through it too.
def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a binary file that becomes `path` only once it is complete and on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is never seen half-written."""
    write_atomically(path, lambda f: f.write(data))


# ## Finding the file
#
# A local copy named explicitly wins; then the cache, which is filled by one checked download.
def tiny_shakespeare_path(data_dir: str | Path | None = None, *, cache_dir: str | Path | None = None,
                          url: str = TINY_SHAKESPEARE_URL, timeout: float = 20.0) -> Path:
    """Path of `tiny_shakespeare.txt`: from `data_dir` (or `$LABML_NN_DATA`) as is, else the checked cache copy."""
    if data_dir is None and os.environ.get("LABML_NN_DATA"):
        data_dir = os.environ["LABML_NN_DATA"]
    if data_dir is not None:
        given = Path(data_dir).expanduser()
        # The file itself is accepted too: `LABML_NN_DATA=~/data/tiny_shakespeare.txt` means what it says.
        if given.is_file():
            return given
        path = given / FILE_NAME
        if not path.is_file():
            what = "does not exist" if not given.exists() else f"has no {FILE_NAME}"
            raise DataUnavailableError(
                f"The data directory {given} (given by --data-dir or LABML_NN_DATA) {what}, so {path} was not "
                f"found. Point it at a directory holding {FILE_NAME}, or at the file itself; Tiny Shakespeare can "
                f"be downloaded from {TINY_SHAKESPEARE_URL}")
        return path

    path = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / FILE_NAME
    # A cached copy is checked every time (it takes milliseconds): a corrupt one is downloaded again.
    if path.is_file() and sha256_of(path.read_bytes()) == TINY_SHAKESPEARE_SHA256:
        return path
    atomic_write_bytes(path, _download(url, path, timeout))
    return path


# The download itself. It is checked before anything is written, so a bad or truncated download never
# reaches the cache; any failure names the file to put in place by hand.
def _download(url: str, path: Path, timeout: float) -> bytes:
    by_hand = (f"Put a copy of {TINY_SHAKESPEARE_URL} at {path}, or save it as {FILE_NAME} in a directory "
               f"of your choice and pass --data-dir DIR (or set LABML_NN_DATA=DIR).")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataUnavailableError(f"Could not download Tiny Shakespeare from {url}: {e}. {by_hand}") from e
    digest = sha256_of(data)
    if len(data) != TINY_SHAKESPEARE_SIZE or digest != TINY_SHAKESPEARE_SHA256:
        raise DataUnavailableError(
            f"The download from {url} is not Tiny Shakespeare: {len(data):,} bytes with SHA-256 {digest}, "
            f"expected {TINY_SHAKESPEARE_SIZE:,} bytes with SHA-256 {TINY_SHAKESPEARE_SHA256}. Nothing was saved. "
            f"{by_hand}")
    return data


# ## Character tokenizer
#
# The vocabulary is the sorted set of characters of the text; a token is a character's index in it.
# It is saved with a run (`tokenizer.json` and inside checkpoints) because a model is useless without the
# exact numbering it was trained with.
class CharTokenizer:
    """Characters to token ids and back; the vocabulary is the string `chars`, one token per character."""

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars) or not chars:
            raise ValueError(f"chars must be a non-empty string of distinct characters, got {chars!r}")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose vocabulary is the distinct characters of `text`, sorted."""
        return cls("".join(sorted(set(text))))

    @property
    def n_vocab(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of `text`, a 1-D `int64` tensor."""
        unknown = set(text) - self.index.keys()
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {sorted(unknown)!r}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, tokens: torch.Tensor | list[int]) -> str:
        """The text of a 1-D sequence of token ids."""
        ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if d.get("type") != "char" or "chars" not in d:
            raise ValueError(f"not a character tokenizer: {d!r}")
        return cls(d["chars"])

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(Path(path), json.dumps(self.to_dict(), ensure_ascii=False).encode())

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ## Text as tokens, split for training and validation
#
# The validation text is the *end* of the file rather than random blocks of it, so that no validation
# block overlaps a training block.
@dataclass
class TextData:
    """A tokenizer and the token ids of the training and validation parts of a text."""
    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor


def load_text(path: str | Path, val_fraction: float = 0.1) -> TextData:
    """Tokenize the text at `path` with a character tokenizer and split it, the last `val_fraction` for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = Path(path).read_text(encoding="utf-8")
    tokenizer = CharTokenizer.from_text(text)
    tokens = tokenizer.encode(text)
    n_train = int(len(tokens) * (1 - val_fraction))
    return TextData(tokenizer, tokens[:n_train], tokens[n_train:])


def load_tiny_shakespeare(data_dir: str | Path | None = None, val_fraction: float = 0.1) -> TextData:
    """Tiny Shakespeare, tokenized and split 90/10 (see [tiny_shakespeare_path](#tiny_shakespeare_path))."""
    return load_text(tiny_shakespeare_path(data_dir), val_fraction)


# ## Random contiguous blocks
#
# A *batch source* is anything with `sample(generator, batch_size)` returning a tuple of CPU tensors whose
# first dimension is the batch; the [trainer](/experiments/trainer.md) owns the generator, moves the tensors
# to the device and splits them across gradient-accumulation steps and processes. This one cuts blocks out
# of a long token sequence: the model sees every part of the text at every position of its context.
class BlockSource:
    """Random blocks of `context + 1` tokens from `tokens`, as (input, target) `[batch, context]` pairs."""

    def __init__(self, tokens: torch.Tensor, context: int):
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
        if not 1 <= context < len(tokens):
            raise ValueError(f"context must be in [1, {len(tokens) - 1}] for {len(tokens)} tokens, got {context}")
        self.tokens = tokens
        self.context = context
        # Offsets of `context + 1` consecutive positions, gathered in one indexing operation.
        self.positions = torch.arange(context + 1)

    def sample(self, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Start offsets, `[batch]`; the last block ends at the last token.
        starts = torch.randint(len(self.tokens) - self.context, (batch_size,), generator=generator)
        # `[batch, context + 1]`
        blocks = self.tokens[starts[:, None] + self.positions]
        # Input tokens and the next token at each position, both `[batch, context]`
        return blocks[:, :-1], blocks[:, 1:]

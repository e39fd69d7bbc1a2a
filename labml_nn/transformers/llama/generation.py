r"""
---
title: Llama 3.1 checkpoints and generation
summary: Loading Meta's Llama 3.1 checkpoints strictly, and batched generation with a key/value cache, temperature and nucleus sampling.
---

# Llama 3.1 checkpoints and generation

[`Llama.build`](#Llama.build) loads a checkpoint in Meta's format, a directory with

* `params.json`, the [model arguments](/transformers/llama/index.md#ModelArgs),
* `consolidated.00.pth`, the weights, a `state_dict` with Meta's names
  (`tok_embeddings.weight`, `layers.0.attention.wq.weight`, ...),
* and usually `tokenizer.model`, the [tokenizer](/transformers/llama/tokenizer.md)

(Meta's download of Llama 3.1 8B has them under `original/`). Loading is strict: every tensor in the file
must be a parameter of the model with the same shape, and every parameter must be in the file. A
mismatch is an error that names the file and the tensor, rather than a model that runs with random weights
in a corner.

[`Llama.generate`](#Llama.generate) completes a batch of prompts with the
[key/value cache](/transformers/llama/index.md#KVCache): one forward pass over the prompts, then one token per step.
"""

import time
from pathlib import Path
from typing import Sequence, TypedDict

import torch

from labml_nn.transformers.llama import ModelArgs, Transformer
from labml_nn.transformers.llama.tokenizer import ChatFormat, Dialog, Message, Tokenizer
from labml_nn.transformers.utils import get_device


class CompletionPrediction(TypedDict):
    generation: str


class ChatPrediction(TypedDict):
    generation: Message


# ## Nucleus sampling
#
# [Top-p sampling](https://arxiv.org/abs/1904.09751) (Holtzman et al., 2019) samples from the smallest set of
# most likely tokens whose probabilities add up to at least $p$, renormalised. It cuts off the long tail of
# unlikely tokens, each improbable but together likely enough to derail a long generation, while keeping as
# many candidates as the model is unsure between. A token is kept when the tokens ranked above it hold
# at most $p$ of the probability, so the most likely token is always kept.
def sample_top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Sample one token per row of `probs` `[batch, vocab]` from its top-`p` nucleus; returns `[batch]`."""
    # `[batch, vocab]`, most likely first
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    # The probability held by the tokens ranked strictly above each token
    mass_above = torch.cumsum(probs_sort, dim=-1) - probs_sort
    probs_sort = probs_sort.masked_fill(mass_above > p, 0.0)
    # `torch.multinomial` normalises the weights itself. `[batch, 1]`
    choice = torch.multinomial(probs_sort, num_samples=1)
    # Back from rank to token id. `[batch, 1]` to `[batch]`
    return torch.gather(probs_idx, -1, choice).squeeze(-1)


# ## Generation without a cache
#
# The loop the cache saves us from: every step runs the whole sequence so far through the model and keeps
# only the last position's logits. Step $t$ costs as much as a forward pass over $t$ tokens, so $n$ new tokens
# cost $O(n^2)$ token-passes where the cache needs $O(n)$. It is here to measure that (the experiment and
# `benchmarks/llama_generate.py` compare the two) and as the plain definition of what `Llama.generate` computes.
@torch.inference_mode()
def generate_without_cache(model: Transformer, prompt_tokens: Sequence[Sequence[int]], max_gen_len: int,
                           temperature: float = 0.0, top_p: float = 0.9) -> list[list[int]]:
    """Complete prompts of equal length with exactly `max_gen_len` tokens each, recomputing the prefix every step."""
    if len({len(prompt) for prompt in prompt_tokens}) != 1:
        raise ValueError("generate_without_cache needs prompts of equal length (no padding)")
    device = model.tok_embeddings.weight.device
    # `[batch, prompt_len]`
    tokens = torch.tensor([list(prompt) for prompt in prompt_tokens], dtype=torch.long, device=device)
    for _ in range(max_gen_len):
        # `[batch, vocab]`
        logits = model(tokens)[:, -1].float()
        if temperature > 0:
            next_token = sample_top_p(torch.softmax(logits / temperature, dim=-1), top_p)
        else:
            next_token = logits.argmax(dim=-1)
        # `[batch, seq + 1]`
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
    return tokens[:, len(prompt_tokens[0]):].tolist()


# ## Writing a checkpoint in Meta's format
#
# The experiment saves the model it trains this way, so that the same `Llama.build` loads it.
def save_checkpoint(model: Transformer, ckpt_dir: str | Path) -> None:
    """Write `params.json` and `consolidated.00.pth` for `model` into `ckpt_dir`."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model.params.to_json(ckpt_dir / "params.json")
    torch.save({name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
               ckpt_dir / "consolidated.00.pth")


# ## The Llama class: loading and generating
#
# A model and its tokenizer, with Meta's interface: `Llama.build` loads a checkpoint, `generate` works on
# token ids with a key/value cache, and `text_completion` and `chat_completion` on text.
class Llama:
    """
    A [`Transformer`](/transformers/llama/index.md#Transformer), `.model`, and an optional
    [`Tokenizer`](/transformers/llama/tokenizer.md#Tokenizer), `.tokenizer`.
    """

    def __init__(self, model: Transformer, tokenizer: Tokenizer | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.formatter = ChatFormat(tokenizer) if tokenizer is not None else None

    # ### Loading a checkpoint
    #
    # * The weights are read with `torch.load(weights_only=True)`, which unpickles only tensors and plain
    #   containers, never arbitrary objects, so a checkpoint from elsewhere cannot run code; and with
    #   `mmap=True`, so that the file is paged in as it is used instead of read into memory in one go.
    # * The model is first made on PyTorch's `meta` device, where tensors have shapes but no storage: no
    #   memory and no time are spent initialising eight billion random weights that the checkpoint replaces.
    #   `load_state_dict(assign=True)` then makes the checkpoint's tensors the parameters.
    # * Meta's weights are bfloat16. On a GPU that supports bfloat16 they stay so (float16 on older
    #   GPUs, as in Meta's code); on the CPU they become float32, because many processors have no fast
    #   bfloat16 arithmetic. `dtype` overrides this.
    @staticmethod
    def build(ckpt_dir: str | Path, tokenizer_path: str | Path | None = None, max_seq_len: int = 2048,
              max_batch_size: int = 4, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> "Llama":
        """
        Load Meta's `params.json` and `consolidated.00.pth` from `ckpt_dir`, and the tokenizer from
        `tokenizer_path` if given. `device` defaults to the best available (see
        [`get_device`](/transformers/utils.md#get_device)). Raises `FileNotFoundError` for missing files and
        `ValueError`, naming the file and the field or tensor, for anything that does not match.
        """
        start_time = time.perf_counter()
        ckpt_dir = Path(ckpt_dir)
        if not ckpt_dir.is_dir():
            raise FileNotFoundError(f"checkpoint directory not found: {ckpt_dir}")
        ckpt_path = ckpt_dir / "consolidated.00.pth"
        shards = sorted(ckpt_dir.glob("consolidated.*.pth"))
        if len(shards) > 1:
            raise ValueError(f"{ckpt_dir} holds {len(shards)} model-parallel shards ({shards[0].name} ...); "
                             f"only single-file checkpoints (consolidated.00.pth) are supported")
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {ckpt_path}")
        args = ModelArgs.from_json(ckpt_dir / "params.json", max_seq_len=max_seq_len, max_batch_size=max_batch_size)

        tokenizer = None
        if tokenizer_path is not None:
            tokenizer = Tokenizer(tokenizer_path)
            if tokenizer.n_words != args.vocab_size:
                raise ValueError(f"the tokenizer {tokenizer_path} has {tokenizer.n_words} tokens but "
                                 f"{ckpt_dir / 'params.json'} says vocab_size = {args.vocab_size}")

        device = get_device("auto") if device is None else torch.device(device)
        if dtype is None:
            dtype = Llama.default_dtype(device)

        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        with torch.device("meta"):
            model = Transformer(args)
        state = Llama.check_state_dict(checkpoint, model, ckpt_path)
        # Move each tensor to the target device and dtype. When both already match this is no copy at all: the
        # parameter reads the memory-mapped file, copy-on-write, so the file on disk is never changed.
        state = {name: tensor.to(device=device, dtype=dtype) for name, tensor in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        model.eval()
        print(f"Loaded {ckpt_path} in {time.perf_counter() - start_time:.2f} s ({dtype}, {device})")
        return Llama(model, tokenizer)

    # Bfloat16 on GPUs that have it, float16 on those that do not, float32 on the CPU.
    @staticmethod
    def default_dtype(device: torch.device) -> torch.dtype:
        if device.type == "cpu":
            return torch.float32
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    # #### Matching the checkpoint against the model
    #
    # `load_state_dict(strict=True)` would catch these mismatches too, but its message names neither the file
    # nor the likely culprit; so we check first and say which tensor is wrong, and which fields of
    # `params.json` decide its shape.
    # Llama 1 and 2 checkpoints also carry `rope.freqs`, the rotary frequencies, which we recompute; it is dropped.
    @staticmethod
    def check_state_dict(checkpoint, model: Transformer, ckpt_path: Path) -> dict[str, torch.Tensor]:
        if not isinstance(checkpoint, dict) or not all(isinstance(t, torch.Tensor) for t in checkpoint.values()):
            raise ValueError(f"{ckpt_path} must hold a state_dict (a dict of tensor name to tensor)")
        state = {name: tensor for name, tensor in checkpoint.items() if name != "rope.freqs"}
        expected = model.state_dict()
        missing = [name for name in expected if name not in state]
        unexpected = [name for name in state if name not in expected]
        if missing:
            raise ValueError(f"{ckpt_path} is missing {len(missing)} tensor(s) of the model: {_first(missing)} "
                             f"(params.json's n_layers = {model.params.n_layers})")
        if unexpected:
            raise ValueError(f"{ckpt_path} has {len(unexpected)} tensor(s) that the model does not: "
                             f"{_first(unexpected)} (params.json's n_layers = {model.params.n_layers})")
        for name, parameter in expected.items():
            if state[name].shape != parameter.shape:
                raise ValueError(f"{ckpt_path}: tensor {name!r} has shape {list(state[name].shape)} but "
                                 f"params.json gives {list(parameter.shape)} (check dim, n_heads, n_kv_heads, "
                                 f"vocab_size, multiple_of and ffn_dim_multiplier)")
            if not state[name].is_floating_point():
                raise ValueError(f"{ckpt_path}: tensor {name!r} has dtype {state[name].dtype}, expected floating point")
        return state

    # ### Generation
    #
    # The prompts have different lengths. As in Meta's code they are laid out left-aligned in one
    # `[batch, total_len]` tensor, and decoding starts at the end of the *shortest* prompt: the first call runs
    # all prompts up to that length through the model at once (filling the caches), then each step feeds one
    # column. In a row whose prompt is longer, the step's sampled token is thrown away and the prompt's own
    # token is written instead, so that row is still reading its prompt, one token per step, and needs no
    # padding mask: every position a row attends to holds a real token of that row.
    #
    # Each row stops after `max_gen_len` new tokens; with a tokenizer it also stops at the first of its
    # `stop_tokens`, and the loop ends when every row has stopped.
    @torch.inference_mode()
    def generate(self, prompt_tokens: Sequence[Sequence[int]], max_gen_len: int, temperature: float = 0.6,
                 top_p: float = 0.9, echo: bool = False) -> list[list[int]]:
        """
        Complete each prompt (a list of token ids) with up to `max_gen_len` tokens.

        `temperature = 0` is greedy decoding; otherwise tokens are sampled from the softmax of logits / temperature,
        restricted to its top-`top_p` nucleus. Returns one list of token ids per prompt: the new tokens (the
        prompt first if `echo`), cut before the first stop token when there is a tokenizer, and exactly
        `max_gen_len` of them when there is not.
        """
        params = self.model.params
        self._check_generate_args(prompt_tokens, max_gen_len, temperature, top_p)
        batch = len(prompt_tokens)
        prompt_lens = [len(prompt) for prompt in prompt_tokens]
        min_prompt_len, max_prompt_len = min(prompt_lens), max(prompt_lens)
        total_len = max_prompt_len + max_gen_len
        if total_len > params.max_seq_len:
            raise ValueError(f"the longest prompt ({max_prompt_len} tokens) plus max_gen_len ({max_gen_len}) is "
                             f"{total_len}, more than max_seq_len = {params.max_seq_len}")

        device = self.model.tok_embeddings.weight.device
        # `[batch, total_len]`, each prompt left-aligned; the rest is overwritten before it is read.
        tokens = torch.zeros(batch, total_len, dtype=torch.long)
        is_prompt = torch.zeros(batch, total_len, dtype=torch.bool)
        for row, prompt in enumerate(prompt_tokens):
            tokens[row, :len(prompt)] = torch.tensor(prompt, dtype=torch.long)
            is_prompt[row, :len(prompt)] = True
        tokens, is_prompt = tokens.to(device), is_prompt.to(device)

        stop_tokens = None
        if self.tokenizer is not None:
            stop_tokens = torch.tensor(self.tokenizer.stop_tokens, device=device)
        stopped = torch.zeros(batch, dtype=torch.bool, device=device)

        prev_pos = 0
        for cur_pos in range(min_prompt_len, total_len):
            # The logits of the last position fed, `[batch, vocab]`
            logits = self.model.forward_inference(tokens[:, prev_pos:cur_pos], prev_pos)[:, -1]
            if temperature > 0:
                next_token = sample_top_p(torch.softmax(logits / temperature, dim=-1), top_p)
            else:
                next_token = logits.argmax(dim=-1)
            # Rows still reading their prompt keep the prompt's token (once the longest prompt is read, none is).
            if cur_pos < max_prompt_len:
                next_token = torch.where(is_prompt[:, cur_pos], tokens[:, cur_pos], next_token)
            tokens[:, cur_pos] = next_token
            prev_pos = cur_pos
            if stop_tokens is not None:
                stopped |= ~is_prompt[:, cur_pos] & torch.isin(next_token, stop_tokens)
                # One host sync per step, only when there is something to stop at.
                if bool(stopped.all()):
                    break

        out = []
        for row, row_tokens in enumerate(tokens.tolist()):
            generated = row_tokens[prompt_lens[row]:prompt_lens[row] + max_gen_len]
            if self.tokenizer is not None:
                for position, token in enumerate(generated):
                    if token in self.tokenizer.stop_tokens:
                        generated = generated[:position]
                        break
            out.append(list(prompt_tokens[row]) + generated if echo else generated)
        return out

    def _check_generate_args(self, prompt_tokens, max_gen_len, temperature, top_p) -> None:
        params = self.model.params
        if not isinstance(max_gen_len, int) or isinstance(max_gen_len, bool) or max_gen_len < 1:
            raise ValueError(f"max_gen_len must be a positive integer, got {max_gen_len!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if not 1 <= len(prompt_tokens) <= params.max_batch_size:
            raise ValueError(f"between 1 and max_batch_size = {params.max_batch_size} prompts are allowed, "
                             f"got {len(prompt_tokens)}")
        for row, prompt in enumerate(prompt_tokens):
            if len(prompt) == 0:
                raise ValueError(f"prompt {row} is empty; start it with a token (e.g. <|begin_of_text|>)")
            if not all(isinstance(t, int) and 0 <= t < params.vocab_size for t in prompt):
                raise ValueError(f"prompt {row} must be a list of token ids in [0, {params.vocab_size}), "
                                 f"got {prompt!r}")

    # ### Text in, text out
    #
    # With a tokenizer, prompts are encoded with `<|begin_of_text|>` first, and the completions decoded.
    # `max_gen_len` defaults to as many tokens as fit in `max_seq_len` after the longest prompt.
    def text_completion(self, prompts: Sequence[str], temperature: float = 0.6, top_p: float = 0.9,
                        max_gen_len: int | None = None, echo: bool = False) -> list[CompletionPrediction]:
        """Complete each text prompt; returns `[{"generation": text}, ...]` as Meta's code does."""
        tokenizer = self._require_tokenizer()
        prompt_tokens = [tokenizer.encode(prompt, bos=True, eos=False) for prompt in prompts]
        if max_gen_len is None:
            max_gen_len = self.model.params.max_seq_len - max(len(t) for t in prompt_tokens)
        generations = self.generate(prompt_tokens, max_gen_len, temperature=temperature, top_p=top_p, echo=echo)
        return [{"generation": tokenizer.decode(tokens)} for tokens in generations]

    # For instruct checkpoints: each dialog is encoded in the [chat format](/transformers/llama/tokenizer.md#ChatFormat)
    # and the model writes the assistant's next turn.
    def chat_completion(self, dialogs: Sequence[Dialog], temperature: float = 0.6, top_p: float = 0.9,
                        max_gen_len: int | None = None) -> list[ChatPrediction]:
        """The assistant's reply to each dialog, as `[{"generation": {"role": "assistant", "content": text}}]`."""
        tokenizer = self._require_tokenizer()
        prompt_tokens = [self.formatter.encode_dialog_prompt(dialog) for dialog in dialogs]
        if max_gen_len is None:
            max_gen_len = self.model.params.max_seq_len - max(len(t) for t in prompt_tokens)
        generations = self.generate(prompt_tokens, max_gen_len, temperature=temperature, top_p=top_p)
        return [{"generation": {"role": "assistant", "content": tokenizer.decode(tokens)}} for tokens in generations]

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ValueError("text in and out needs a tokenizer: pass tokenizer_path to Llama.build")
        return self.tokenizer


def _first(names: list[str], count: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


if __name__ == "__main__":
    from labml_nn.transformers.experiments.llama import main

    main()

r"""
---
title: Llama 3 tokenizer
summary: Meta's tiktoken-based byte-pair-encoding tokenizer for Llama 3 and 3.1, its special tokens, and the chat format.
---

# Llama 3 tokenizer

Llama 3 reads text as tokens of a byte-level [byte-pair encoding](https://arxiv.org/abs/1508.07909):
the text is first split into pieces by a regular expression (words with their leading space, runs of up to
three digits, punctuation, whitespace), then the UTF-8 bytes of each piece are merged pairwise, most
frequent merges first, into tokens of a 128,000-entry vocabulary. Any byte string can be encoded, so there
is no "unknown" token. After the ordinary tokens come 256 special tokens (128,256 in all, the `vocab_size`
of [`ModelArgs`](/transformers/llama/index.md#ModelArgs)), among them:

* `<|begin_of_text|>`, put before every prompt, and `<|end_of_text|>`, where a base model's text ends;
* `<|start_header_id|>`, `<|end_header_id|>` around the speaker's role in a chat, and `<|eot_id|>` at the
  end of each turn; `<|eom_id|>` ends a message in the middle of a turn (Llama 3.1's tool calls);
* `<|finetune_right_pad_id|>` for padding, and reserved tokens for later use.

Meta ships the merges as `tokenizer.model`: one line per token, the token's bytes in base64 and its rank
(its id, and the order of the merges). The encoder itself is OpenAI's
[`tiktoken`](https://github.com/openai/tiktoken), an optional dependency: `pip install labml_nn[llama]`.
It is imported only when a `Tokenizer` is made, so the rest of the package works without it.

The [generation page](/transformers/llama/generation.md) uses the tokenizer for text in and out and stops at
its `stop_tokens`.
"""

import base64
from pathlib import Path
from typing import Iterator, Literal, Sequence, TypedDict


# ## The tokenizer
class Tokenizer:
    """
    Meta's Llama 3.1 tokenizer, read from the `tokenizer.model` file at `model_path`.

    Attributes: `n_words` (the vocabulary size, special tokens included), `bos_id`, `eos_id`, `eot_id`,
    `eom_id`, `pad_id`, `special_tokens` (name to id) and `stop_tokens` (the ids that end a generation).
    """

    # The number of special tokens after the ordinary ones.
    num_reserved_special_tokens = 256

    # How text is split before byte-pair merging: contractions, words (letters with an optional leading
    # non-letter), numbers of one to three digits, runs of punctuation, newlines, and other whitespace.
    # Merges never cross these boundaries.
    pat_str = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

    # The named special tokens of Llama 3.1, in id order after the ordinary tokens; the rest of the 256 are
    # `<|reserved_special_token_{i}|>`.
    named_special_tokens = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ]

    def __init__(self, model_path: str | Path):
        try:
            import tiktoken
        except ImportError as error:
            raise ImportError("the Llama tokenizer needs the tiktoken package: "
                              "pip install tiktoken (or labml_nn[llama])") from error
        model_path = Path(model_path)
        mergeable_ranks = self.load_ranks(model_path)
        num_base_tokens = len(mergeable_ranks)
        reserved = [f"<|reserved_special_token_{2 + i}|>"
                    for i in range(self.num_reserved_special_tokens - len(self.named_special_tokens))]
        self.special_tokens = {token: num_base_tokens + i
                               for i, token in enumerate(self.named_special_tokens + reserved)}
        self.model = tiktoken.Encoding(name=model_path.name, pat_str=self.pat_str,
                                       mergeable_ranks=mergeable_ranks, special_tokens=self.special_tokens)

        self.n_words = num_base_tokens + len(self.special_tokens)
        self.bos_id = self.special_tokens["<|begin_of_text|>"]
        self.eos_id = self.special_tokens["<|end_of_text|>"]
        self.eot_id = self.special_tokens["<|eot_id|>"]
        self.eom_id = self.special_tokens["<|eom_id|>"]
        self.pad_id = self.special_tokens["<|finetune_right_pad_id|>"]
        # A base model ends its text with `<|end_of_text|>`, an instruct model its turn with `<|eot_id|>`
        # (or `<|eom_id|>` to hand over to a tool). Meta's Llama 3 code stops at the first two, its Llama 3.1
        # code at the last two; we stop at any of the three, which suits both kinds of checkpoint.
        self.stop_tokens = [self.eos_id, self.eom_id, self.eot_id]

    # ### Reading `tokenizer.model`
    #
    # Each line is `<base64 of the token's bytes> <rank>`. We read it ourselves rather than with
    # `tiktoken.load.load_tiktoken_bpe`, which caches files by path in a temporary directory and would
    # return a stale vocabulary if the file at that path changed.
    @staticmethod
    def load_ranks(model_path: Path) -> dict[bytes, int]:
        """The byte-pair ranks in `model_path`, token bytes to rank."""
        if not model_path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {model_path}")
        ranks = {}
        for line_number, line in enumerate(model_path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError as error:
                raise ValueError(f"{model_path}, line {line_number}: expected '<base64 token> <rank>', "
                                 f"got {line[:80]!r}") from error
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise ValueError(f"{model_path}: the ranks must be 0 ... {len(ranks) - 1}, each once")
        return ranks

    # ### Encoding
    #
    # Text that looks like a special token (say a user typing `<|eot_id|>`) is encoded as ordinary text
    # unless `allowed_special` lists it, so that user input cannot forge the structure of a chat.
    def encode(self, s: str, *, bos: bool, eos: bool,
               allowed_special: Literal["all"] | set[str] = frozenset(),
               disallowed_special: Literal["all"] | Sequence[str] = ()) -> list[int]:
        """Token ids of `s`, with `<|begin_of_text|>` first if `bos` and `<|end_of_text|>` last if `eos`."""
        if not isinstance(s, str):
            raise ValueError(f"expected a str to encode, got {type(s).__name__}")
        tokens = []
        for piece in self._pieces(s):
            tokens.extend(self.model.encode(piece, allowed_special=allowed_special,
                                            disallowed_special=disallowed_special))
        if bos:
            tokens.insert(0, self.bos_id)
        if eos:
            tokens.append(self.eos_id)
        return tokens

    def decode(self, tokens: Sequence[int]) -> str:
        """The text of `tokens`; byte sequences that are not valid UTF-8 become U+FFFD."""
        return self.model.decode(list(tokens))

    # ### Long inputs
    #
    # tiktoken's Rust encoder can fail on very long inputs (more than about 400,000 characters, or long runs
    # of only whitespace or only non-whitespace; see [tiktoken#195](https://github.com/openai/tiktoken/issues/195)).
    # As in Meta's code, the text is cut into pieces first; the cuts are at changes between whitespace and
    # non-whitespace where possible, so they rarely fall inside a token.
    max_encode_chars = 400_000
    max_no_whitespace_chars = 25_000

    def _pieces(self, s: str) -> Iterator[str]:
        for start in range(0, len(s), self.max_encode_chars):
            yield from self._split_long_runs(s[start:start + self.max_encode_chars], self.max_no_whitespace_chars)

    @staticmethod
    def _split_long_runs(s: str, max_run: int) -> Iterator[str]:
        # Cut `s` so that no piece has more than `max_run` consecutive whitespace or non-whitespace characters.
        run_length = 0
        run_is_space = s[0].isspace() if s else False
        piece_start = 0
        for i, char in enumerate(s):
            is_space = char.isspace()
            if is_space != run_is_space:
                run_length, run_is_space = 1, is_space
            else:
                run_length += 1
                if run_length > max_run:
                    yield s[piece_start:i]
                    piece_start, run_length = i, 1
        yield s[piece_start:]


# ## The chat format
#
# Llama 3's instruct models read a dialog as
#
# ```
# <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are ...<|eot_id|>
# <|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>
# <|start_header_id|>assistant<|end_header_id|>\n\n
# ```
#
# (without the line breaks between turns), and complete the assistant's turn, ending it with `<|eot_id|>`.
class Message(TypedDict):
    role: Literal["system", "user", "assistant", "ipython"]
    content: str


Dialog = Sequence[Message]


class ChatFormat:
    """Encodes dialogs for Llama 3's instruct models."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    # `<|start_header_id|>role<|end_header_id|>\n\n`
    def encode_header(self, message: Message) -> list[int]:
        return [self.tokenizer.special_tokens["<|start_header_id|>"],
                *self.tokenizer.encode(message["role"], bos=False, eos=False),
                self.tokenizer.special_tokens["<|end_header_id|>"],
                *self.tokenizer.encode("\n\n", bos=False, eos=False)]

    # The header, the content without surrounding whitespace, and `<|eot_id|>`.
    def encode_message(self, message: Message) -> list[int]:
        return [*self.encode_header(message),
                *self.tokenizer.encode(message["content"].strip(), bos=False, eos=False),
                self.tokenizer.eot_id]

    # `<|begin_of_text|>`, every message, and the header of the assistant's turn, for the model to complete.
    def encode_dialog_prompt(self, dialog: Dialog) -> list[int]:
        tokens = [self.tokenizer.bos_id]
        for message in dialog:
            tokens.extend(self.encode_message(message))
        tokens.extend(self.encode_header({"role": "assistant", "content": ""}))
        return tokens


if __name__ == "__main__":
    from labml_nn.transformers.experiments.llama import main

    main()

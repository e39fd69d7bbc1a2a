r"""
---
title: T5 pretrained by span corruption on Tiny Shakespeare
summary: A small T5 pretrained on Tiny Shakespeare characters by span corruption, the spans it fills in, the accuracy of span tokens, and relative position biases against learned absolute positions on inputs longer than the training texts.
---

# T5 pretrained by span corruption

```bash
python -m labml_nn.transformers.t5 --device cpu
python -m labml_nn.transformers.t5 --preset gpu
```

A small [T5](/transformers/t5/index.md) learns to fill in the gaps of Shakespeare. Each training example is a
random block of `length` characters of Tiny Shakespeare, corrupted by [span corruption](/transformers/t5/index.md#span_corruption):
about 15% of the characters, in spans of about 3, are cut out and replaced by sentinel tokens; the decoder writes
each sentinel followed by the characters it stands for. Sentinels are extra token ids past the characters, after
a padding id (also the decoder's start) and an end id, as in T5's vocabulary:

```text
input   " i⟨0⟩m'd you two outright.\n\nBAPTISTA⟨1⟩ow, in good sadness, ⟨2⟩"
target  "⟨0⟩t mai⟨1⟩:\nN⟨2⟩so"
```

The model is trained twice ([comparing variants](/experiments/compare.md)):

* `relative`: T5 as it is, with a [bias per relative position bucket](/transformers/t5/index.md#RelativePositionBias)
  on the attention scores and nothing added to the embeddings;
* `absolute`: the same model with learned absolute position vectors added to the embeddings (as in BERT and
  GPT-2) and no position bias.

The result holds, for each variant, the validation loss (the trainer's, at the training length), the accuracy of
the span characters under teacher forcing (`span_accuracy`: how often the most likely next character is the
right one, sentinels and the end excluded), and both again on blocks of `eval_length` characters, longer than any
text either model was trained on, with as many characters cut out as from a training text (`val_loss_long`,
`span_accuracy_long`); `long_inputs.png` draws them. Then the
relative model fills in the spans of a few validation texts by [greedy decoding](/transformers/t5/index.md#T5.generate),
printed with the truth beside them (and kept in `examples.txt`).

The learned positions beyond the training length were never trained: they are the random vectors they started
as. The relative model meets longer distances, but no new buckets: the presets set
`relative_attention_max_distance` to the training length, so that every distance beyond it falls into the last
bucket, which training filled with the longest distances it saw.

In our CPU run the absolute model was ahead at the training length (lower loss, more span characters right),
and behind on the longer texts: its loss rose there, while the relative model's hardly moved. Neither model, at
this size and budget, has learned to fill a span from its context: both mostly write the likeliest characters
(a space, "the"), whatever the input, which is why the span accuracy is low. The position biases start small
($\mathcal{N}(0, 1/d_{model})$) and AdamW moves them slowly: at the end of the CPU run the encoder's table had
hardly left its initial spread, so its attention made little use of positions at all. The GPU preset is larger
and trains longer.
"""

import sys
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.cli import run_experiment
from labml_nn.experiments.compare import check_variants, train_variants
from labml_nn.experiments.data import CharTokenizer, load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig
from labml_nn.transformers.models import EmbeddingsWithLearnedPositionalEncoding
from labml_nn.transformers.t5 import T5, T5Config, span_corruption


# ## The vocabulary
#
# The characters of the text are ids `0 ... n_chars - 1`; then padding (also the decoder's start, as in T5), the
# end of a sequence, and the sentinels.
@dataclass(frozen=True)
class Vocabulary:
    n_chars: int
    n_sentinels: int

    @property
    def pad(self) -> int:
        return self.n_chars

    @property
    def eos(self) -> int:
        return self.n_chars + 1

    @property
    def sentinels(self) -> list[int]:
        return list(range(self.n_chars + 2, self.n_chars + 2 + self.n_sentinels))

    @property
    def size(self) -> int:
        return self.n_chars + 2 + self.n_sentinels

    # Text for people: characters as they are, sentinel $i$ as ⟨i⟩, padding and the end dropped.
    def decode(self, tokenizer: CharTokenizer, ids: torch.Tensor) -> str:
        out = []
        for i in ids.tolist():
            if i < self.n_chars:
                out.append(tokenizer.decode([i]))
            elif i >= self.n_chars + 2:
                out.append(f"⟨{i - self.n_chars - 2}⟩")
        return "".join(out)


# The numbers of noise tokens and of spans in a text of `length` tokens, as
# [span_corruption](/transformers/t5/index.md#span_corruption) counts them.
def noise_and_spans(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    noise = min(max(round(length * noise_density), 1), length - 1)
    return noise, min(max(round(noise / mean_noise_span_length), 1), length - noise)


# ## The task
#
# A batch source ([the trainer's protocol](/experiments/trainer.md#BatchSource)): random blocks of `length`
# characters, each corrupted with the batch's generator. Every block of one length has the same number of noise
# characters and spans, so inputs and targets stack without padding. The encoder reads the input and the end id;
# the decoder reads the start id and the target, and predicts the target and the end id.
class SpanCorruptionTask:
    """`(inputs [batch, src], decoder_inputs [batch, tgt], labels [batch, tgt])` from blocks of `tokens`."""

    def __init__(self, tokens: torch.Tensor, length: int, vocab: Vocabulary, noise_density: float,
                 mean_noise_span_length: float):
        if not 2 <= length < tokens.shape[0]:
            raise ValueError(f"length must be in [2, {tokens.shape[0]}), got {length}")
        self.tokens = tokens
        self.length = length
        self.vocab = vocab
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length

    def sample(self, generator: torch.Generator, batch_size: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, self.tokens.shape[0] - self.length, (batch_size,), generator=generator)
        inputs, targets = zip(*(span_corruption(self.tokens[s:s + self.length], sentinel_ids=self.vocab.sentinels,
                                                noise_density=self.noise_density,
                                                mean_noise_span_length=self.mean_noise_span_length,
                                                generator=generator) for s in starts.tolist()))
        # `[batch, 1]` columns of the end and the start ids
        eos = torch.full((batch_size, 1), self.vocab.eos)
        start = torch.full((batch_size, 1), self.vocab.pad)
        targets = torch.stack(targets)
        return (torch.cat([torch.stack(inputs), eos], dim=1), torch.cat([start, targets], dim=1),
                torch.cat([targets, eos], dim=1))


# ## The loss
#
# Cross-entropy of every target token under teacher forcing.
def span_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    inputs, decoder_inputs, labels = batch
    # `[batch, tgt, vocab]`
    logits = model(inputs, decoder_inputs)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


# ## Learned absolute positions, for comparison
#
# The same T5 with this package's [learned position vectors](/transformers/models.md#EmbeddingsWithLearnedPositionalEncoding)
# added to the embeddings of both stacks, and a zero position bias. The position vectors start at the scale of the
# token embeddings ($\mathcal{N}(0, 1)$), so that from the first step they have as much say.
class NoPositionBias(nn.Module):
    """A position bias of zeros, `[1, heads, seq_q, seq_k]`."""

    def __init__(self, heads: int):
        super().__init__()
        self.heads = heads
        # A zero that follows the model's device and dtype
        self.register_buffer("zero", torch.zeros(()), persistent=False)

    def forward(self, seq_q: int, seq_k: int, offset: int = 0) -> torch.Tensor:
        return self.zero.expand(1, self.heads, seq_q, seq_k)


class AbsolutePositionT5(T5):
    """T5 with learned absolute positions for `max_len` tokens instead of relative position biases."""

    def __init__(self, config: T5Config, max_len: int):
        super().__init__(config)
        self.shared = EmbeddingsWithLearnedPositionalEncoding(config.d_model, config.vocab_size, max_len,
                                                              config.dropout_rate, scale=False)
        nn.init.normal_(self.shared.embeddings.weight, std=1.0)
        nn.init.normal_(self.shared.positional_encodings, std=1.0)
        self.encoder.relative_attention_bias = NoPositionBias(config.num_heads)
        self.decoder.relative_attention_bias = NoPositionBias(config.num_heads)


# ## Configuration
#
# The model's `vocab_size`, `pad_token_id`, `eos_token_id` and `decoder_start_token_id` are set by the experiment
# from the text's characters ([the vocabulary](#Vocabulary)); the values given for them are replaced.
@dataclass
class T5Experiment:
    """A small T5 pretrained by span corruption with relative and with absolute positions."""
    model: T5Config = field(default_factory=lambda: T5Config(
        vocab_size=128, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4, relative_attention_num_buckets=32,
        relative_attention_max_distance=64, dropout_rate=0.0, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=1000, batch_size=16, lr=1e-3, min_lr=1e-4, warmup=100, eval_every=250, eval_iters=20,
        checkpoint_every=500))
    length: int = 64
    """Characters per training text (before corruption)."""
    eval_length: int = 128
    """Characters per text of the longer validation texts."""
    noise_density: float = 0.15
    """Fraction of the characters cut out."""
    mean_noise_span_length: float = 3.0
    """Mean length of a cut-out span."""
    eval_batches: int = 20
    """Batches (of the trainer's batch size) of the span accuracy and the long-text loss."""
    examples: int = 4
    """Validation texts whose spans the relative model fills in, printed."""
    variants: tuple[str, ...] = ("relative", "absolute")
    """Position schemes to compare: relative (T5's biases), absolute (learned vectors)."""

    def __post_init__(self):
        if not 2 <= self.length <= self.eval_length:
            raise ValueError(f"need 2 <= length <= eval_length, got {self.length} and {self.eval_length}")
        if not 0.0 < self.noise_density < 1.0 or not self.mean_noise_span_length >= 1.0:
            raise ValueError(f"noise_density must be in (0, 1) and mean_noise_span_length at least 1, got "
                             f"{self.noise_density} and {self.mean_noise_span_length}")
        for name in ("eval_batches", "examples"):
            if getattr(self, name) < 0 or (name == "eval_batches" and self.eval_batches < 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        check_variants("variants", self.variants)
        unknown = set(self.variants) - {"relative", "absolute"}
        if unknown:
            raise ValueError(f"variants must be relative and/or absolute, got {sorted(unknown)}")


# ## Presets
def default() -> T5Experiment:
    """CPU, minutes: 2 + 2 layers of width 128, texts of 64 characters, 1,000 steps of 16."""
    return T5Experiment()


def gpu() -> T5Experiment:
    """A GPU: 6 + 6 layers of width 512 (8 heads of 64), texts of 256 characters, 5,000 steps of 64."""
    return T5Experiment(
        model=T5Config(vocab_size=128, d_model=512, d_kv=64, d_ff=1024, num_layers=6, num_heads=8,
                       relative_attention_max_distance=256, dropout_rate=0.1, feed_forward_proj="gated-gelu",
                       tie_word_embeddings=False),
        trainer=TrainerConfig(max_steps=5000, batch_size=64, lr=5e-4, min_lr=5e-5, warmup=200, eval_every=500,
                              eval_iters=50, checkpoint_every=1000),
        length=256, eval_length=512)


def tiny() -> T5Experiment:
    """Seconds: 1 + 1 layers of width 32, a few steps (for tests)."""
    return T5Experiment(
        model=T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                       relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
                       feed_forward_proj="gated-gelu", tie_word_embeddings=False),
        trainer=TrainerConfig(max_steps=4, batch_size=4, warmup=1, eval_every=0, eval_iters=2, log_every=2,
                              checkpoint_every=0),
        length=24, eval_length=48, eval_batches=2, examples=2)


# ## Measurements
#
# Loss over all target tokens, and the teacher-forced accuracy at the span characters only (the sentinels are
# given away by the input, and the end id by the count of sentinels), over `batches` batches of one task.
@torch.no_grad()
def score(model: T5, task: SpanCorruptionTask, batches: int, batch_size: int, seed: int,
          device: torch.device) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    loss, correct, counted = 0.0, 0, 0
    for _ in range(batches):
        inputs, decoder_inputs, labels = (t.to(device) for t in task.sample(generator, batch_size))
        # `[batch, tgt, vocab]`
        logits = model(inputs, decoder_inputs).float()
        loss += F.cross_entropy(logits.flatten(0, 1), labels.flatten()).item()
        chars = labels < task.vocab.n_chars
        correct += ((logits.argmax(dim=-1) == labels) & chars).sum().item()
        counted += chars.sum().item()
    return loss / batches, correct / max(counted, 1)


# The relative model's own fills of a few validation texts, decoded greedily, beside the truth.
@torch.no_grad()
def fill_in(model: T5, task: SpanCorruptionTask, tokenizer: CharTokenizer, count: int, seed: int,
            device: torch.device) -> list[dict]:
    inputs, _, labels = (t.to(device) for t in task.sample(torch.Generator().manual_seed(seed), count))
    output = model.generate(inputs, max_new_tokens=labels.shape[1] + 1)
    return [{"input": task.vocab.decode(tokenizer, inputs[i]), "truth": task.vocab.decode(tokenizer, labels[i]),
             "model": task.vocab.decode(tokenizer, output[i])} for i in range(count)]


# Grouped bars: each variant's loss and span accuracy at the training length and on the longer texts.
def plot_long_inputs(result: dict, length: int, eval_length: int, path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), dpi=120)
    axes = figure.subplots(1, 2)
    variants = list(result["val_loss"])
    for ax, (short, long, label) in zip(axes, (("val_loss", "val_loss_long", "validation loss"),
                                               ("span_accuracy", "span_accuracy_long", "span character accuracy"))):
        for k, (key, name) in enumerate(((short, f"{length} characters"), (long, f"{eval_length} characters"))):
            values = [result[key][v] for v in variants]
            bars = ax.bar([i + 0.4 * k for i in range(len(variants))], values, width=0.4, label=name)
            ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_xticks([i + 0.2 for i in range(len(variants))], variants)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


# ## The experiment
#
# The longer texts keep the training texts' number of noise characters and spans (a lower noise density): the
# decoder then writes targets as long as in training, with the same sentinels, and only the encoder's input is
# longer. Otherwise the longer texts would also bring sentinels that training never used, and decoder positions it
# never reached, and the comparison would no longer be about the input's length.
def train(config: T5Experiment, run: Run) -> dict:
    data = load_tiny_shakespeare(run.data_dir)
    noise, spans = noise_and_spans(config.length, config.noise_density, config.mean_noise_span_length)
    vocab = Vocabulary(data.tokenizer.n_vocab, spans)
    model_config = replace(config.model, vocab_size=vocab.size, pad_token_id=vocab.pad,
                           decoder_start_token_id=vocab.pad, eos_token_id=vocab.eos)

    def task(tokens: torch.Tensor, length: int) -> SpanCorruptionTask:
        density = config.noise_density if length == config.length else noise / length
        return SpanCorruptionTask(tokens, length, vocab, density, config.mean_noise_span_length)

    examples = []

    def train_one(variant: str, sub: Run) -> dict:
        # Longest input the absolute model must place: the long texts, less the noise, plus sentinels and the end
        model = (T5(model_config) if variant == "relative"
                 else AbsolutePositionT5(model_config, max_len=config.eval_length + 1))
        trainer = Trainer(model, config.trainer, sub, loss_fn=span_loss,
                          extra_state={"tokenizer": data.tokenizer.to_dict()})
        result = trainer.fit(task(data.train, config.length), task(data.val, config.length))
        for suffix, length in (("", config.length), ("_long", config.eval_length)):
            loss, accuracy = score(trainer.model, task(data.val, length), config.eval_batches,
                                   config.trainer.batch_size, seed=run.seed + 3, device=run.device)
            result[f"span_accuracy{suffix}"] = accuracy
            if suffix:
                result[f"val_loss{suffix}"] = loss
        if variant == "relative" and config.examples:
            examples.extend(fill_in(trainer.model, task(data.val, config.length), data.tokenizer, config.examples,
                                    seed=run.seed + 4, device=run.device))
        return result

    summary = train_variants(run, config.variants, train_one,
                             figures=["span_accuracy", "val_loss_long", "span_accuracy_long"])
    if examples:
        summary["examples"] = examples
    if run.is_main:
        plot_long_inputs(summary, config.length, config.eval_length, run.path("long_inputs.png"))
        text = "\n\n".join(f"input  {e['input']!r}\ntruth  {e['truth']!r}\nmodel  {e['model']!r}" for e in examples)
        if text:
            run.write_text("examples.txt", text + "\n")
            print(text, file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> None:
    run_experiment("t5", T5Experiment, train, presets={"default": default, "gpu": gpu, "tiny": tiny}, argv=argv,
                   description="Pretrain a small T5 by span corruption; relative against absolute positions.")


if __name__ == "__main__":
    main()

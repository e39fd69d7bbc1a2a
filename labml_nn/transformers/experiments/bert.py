r"""
---
title: BERT on Tiny Shakespeare, and who is speaking
summary: Pretrain a small BERT on the characters of Tiny Shakespeare with masked tokens and next sentences, then fine-tune it to name the speaker of a speech, against the same classifier trained from scratch.
---

# BERT on Tiny Shakespeare, and who is speaking

```bash
python -m labml_nn.transformers.bert --device cpu      # a few minutes on a CPU
python -m labml_nn.transformers.bert --preset gpu      # a wider, deeper model, longer
```

Does pretraining help? This experiment asks it of a small [BERT](/transformers/bert/index.md) on
[Tiny Shakespeare](/experiments/data.md), one token per character.

**The task.** Tiny Shakespeare is a series of speeches, each under its speaker's name:

```text
ROMEO:
Is the day so young?
```

The speeches of the `num_speakers` most frequent speakers make a labelled data set: the text of the speech (without
the name) and who said it. It is built deterministically from the file: the speeches of each speaker in order, every
fifth one held out for testing. A speech is read as $\texttt{[CLS]}$, its first `context - 2` characters,
$\texttt{[SEP]}$, padding.

**Pretraining** sees no labels. It reads the rest of the text, every part of the file except the held-out speeches
(so that the test speeches are never seen before testing), as BERT reads its corpus: two segments $A$ and $B$ of
about `context / 2` characters each, $B$ the continuation of $A$ half of the time and a random piece of text
otherwise; 15% of the characters chosen by [mask_tokens](/transformers/bert/index.md#mask_tokens). The loss is the
masked-LM cross-entropy plus the next-sentence cross-entropy. Its validation text is the held-out speeches.

**Fine-tuning** trains [BertForSequenceClassification](/transformers/bert/index.md#BertForSequenceClassification)
twice with the same recipe and seed: starting from the pretrained body (`pretrained`), and from a fresh one
(`scratch`). Both curves (the validation loss on the held-out speeches) are drawn in the run's `loss.png`; the
pretraining's curve is in `pretrain/loss.png`.

**What it reports.** `mlm_accuracy`: the fraction of the chosen characters of the held-out text that the
pretrained model gives back (those replaced by $\texttt{[MASK]}$, by a random character or left alone, all counted);
`next_sentence_accuracy`; and `speaker_accuracy` of both classifiers on every held-out speech, beside
`majority_baseline` (always the most frequent speaker) and `chance`.

**What we saw: at this budget, nothing transfers.** On the CPU preset (seed 0; one thread on a shared machine) the
pretrained model gave back 28.2% of the chosen held-out characters (always guessing the space, the most frequent
character, would give 15.2%) and guessed the next sentence no better than a coin (51.4%). Its masked-LM loss ended
near 2.75 nats (the validation loss, 3.45, less about $\ln 2$ for the next sentence), not far below the 3.31 nats of
the character frequencies alone (the baby GPT, 4 layers of width 128, reaches 1.75 for the next character). On the
255 held-out speeches of 8 speakers, the classifier fine-tuned from it named 14.5% correctly and the one trained from
scratch 16.5%, which is the majority baseline (always GLOUCESTER); chance is 12.5%. The pretrained one fits its
training speeches a little (22.9% of them against 16.4%) without that carrying over; with 255 test speeches a
difference of about 5 points is within two standard errors. (An earlier run of the same recipe with 600 pretraining
steps gave 22.3% masked characters, and 19.2% against 16.5% for the speakers. Megatron's pre-norm layers with twice
the learning rate, `--pre-norm --lr 2e-3`, got a little further in the same 1,600 steps: 31.3% of the masked
characters, a masked-LM loss near 2.58, and 19.2% against 16.5% for the speakers; the same conclusion.)

Why pretraining stalls here, when the [GPT](/transformers/experiments/gpt.md) learns words within a few hundred
steps: a GPT's prediction at position $t$ can use the character at $t$ itself, which the residual stream
carries straight to the output, so bigram statistics come for free before attention has learnt anything. A masked
position's own input is $\texttt{[MASK]}$: everything must come through attention, and attending to the neighbours
means first learning, from randomly initialised absolute positions, which positions are neighbours. Until then the
best guess is the character frequencies. On top of that, only 15% of the positions give a gradient, against all of a
GPT's. The `gpu` preset (a wider, deeper model, 10,000 steps of 64 inputs of 256 characters, about 65 times the
characters) is meant to get past the plateau; no GPU was available to run it. Naming a speaker from a few dozen
characters is hard in any case: speakers of the same play share their topics and their words.
"""

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.cli import run_experiment
from labml_nn.experiments.compare import plot_variants, read_metrics, train_variants
from labml_nn.experiments.data import CharTokenizer, tiny_shakespeare_path
from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig
from labml_nn.transformers.bert import BertConfig, BertForPreTraining, BertForSequenceClassification, mask_tokens


# ## Configuration
#
# The model's `vocab_size` and `pad_token_id` are set from the text (its characters, then four special tokens), and
# its `max_position_embeddings` must hold `context`. The pretraining runs with `trainer`; the fine-tuning with the same
# trainer settings except those of its own fields.
@dataclass
class BertExperiment:
    """Pretrain a BERT with masked characters and next sentences, then fine-tune it to name speakers."""
    model: BertConfig = field(default_factory=lambda: BertConfig(
        hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=384,
        max_position_embeddings=96))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=1600, batch_size=16, lr=1e-3, min_lr=1e-4, warmup=100, eval_every=400, eval_iters=10,
        checkpoint_every=0))
    context: int = 96
    """Tokens per input, [CLS] and [SEP] included."""
    mask_probability: float = 0.15
    """Fraction of the characters chosen for the masked-LM loss."""
    num_speakers: int = 8
    """The most frequent speakers, whose speeches make the classification task."""
    finetune_steps: int = 250
    """Optimizer steps of each fine-tuning."""
    finetune_batch_size: int = 16
    """Speeches per fine-tuning step."""
    finetune_lr: float = 3e-4
    """Peak learning rate of the fine-tuning (decaying to a tenth)."""
    finetune_warmup: int = 30
    """Warm-up steps of the fine-tuning."""
    finetune_eval_every: int = 25
    """Fine-tuning steps between evaluations (the points of the fine-tuning curves)."""
    finetune_eval_iters: int = 8
    """Batches of held-out speeches per evaluation during fine-tuning."""
    eval_batches: int = 40
    """Batches of held-out text for the masked-LM and next-sentence accuracies."""

    def __post_init__(self):
        if not 8 <= self.context <= self.model.max_position_embeddings:
            raise ValueError(f"context must be in [8, max_position_embeddings={self.model.max_position_embeddings}], "
                             f"got {self.context}")
        if not 0 < self.mask_probability < 1:
            raise ValueError(f"mask_probability must be in (0, 1), got {self.mask_probability}")
        for name in ("num_speakers", "finetune_steps", "finetune_batch_size", "finetune_eval_iters", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_speakers < 2:
            raise ValueError(f"num_speakers must be at least 2, got {self.num_speakers}")
        if self.finetune_warmup < 0 or self.finetune_eval_every < 0 or not self.finetune_lr > 0:
            raise ValueError("finetune_warmup and finetune_eval_every must be >= 0 and finetune_lr > 0")


# ## Presets
def default() -> BertExperiment:
    """CPU, a few minutes: 3 layers of width 96, 1,600 pretraining steps, 250 fine-tuning steps per classifier."""
    return BertExperiment()


def gpu() -> BertExperiment:
    """A GPU: 6 layers of width 256, inputs of 256 characters, 10,000 pretraining steps of 64."""
    return BertExperiment(
        model=BertConfig(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=1024,
                         max_position_embeddings=256),
        trainer=TrainerConfig(max_steps=10000, batch_size=64, lr=5e-4, min_lr=5e-5, warmup=500, eval_every=1000,
                              eval_iters=50, checkpoint_every=2000),
        context=256, finetune_steps=1000, finetune_batch_size=32, finetune_lr=1e-4, finetune_warmup=100,
        finetune_eval_every=50)


def tiny() -> BertExperiment:
    """Seconds, for tests: one layer of width 32, four steps of everything."""
    return BertExperiment(
        model=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=32),
        trainer=TrainerConfig(max_steps=4, batch_size=4, warmup=1, eval_every=0, eval_iters=2, log_every=2,
                              checkpoint_every=0),
        context=32, finetune_steps=4, finetune_batch_size=4, finetune_warmup=1, finetune_eval_every=2,
        finetune_eval_iters=2, eval_batches=2)


# ## Tokens
#
# The characters of the text, then the four special tokens. Random replacements in the masked-LM are drawn from
# the characters only (`vocab_size=n_chars` in `mask_tokens`), since the specials come last.
@dataclass
class Vocabulary:
    tokenizer: CharTokenizer

    @property
    def n_chars(self) -> int:
        return self.tokenizer.n_vocab

    @property
    def pad(self) -> int:
        return self.n_chars

    @property
    def cls(self) -> int:
        return self.n_chars + 1

    @property
    def sep(self) -> int:
        return self.n_chars + 2

    @property
    def mask(self) -> int:
        return self.n_chars + 3

    @property
    def size(self) -> int:
        return self.n_chars + 4


# ## The speeches
#
# The text is a series of blocks separated by blank lines; a speech is a block whose first line is a name followed
# by a colon and which has at least one line after it. Blocks that are not speeches (a name alone) are kept in the
# pretraining text.
SPEAKER_LINE = re.compile(r"[^\n:]+:")


@dataclass
class SpeakerData:
    """The classification task and the text to pretrain on, all from one file, deterministically."""
    speakers: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    pretrain_text: str
    heldout_text: str


def speaker_data(text: str, num_speakers: int, test_every: int = 5) -> SpeakerData:
    """The speeches of the `num_speakers` most frequent speakers, every `test_every`-th of each held out."""
    blocks = text.split("\n\n")
    # (block index, speaker, speech) for every speech
    speeches = []
    for i, block in enumerate(blocks):
        first, _, rest = block.strip("\n").partition("\n")
        if SPEAKER_LINE.fullmatch(first) and rest.strip():
            speeches.append((i, first[:-1], rest))
    counts = Counter(speaker for _, speaker, _ in speeches)
    # The most frequent first; ties by name, so the choice never depends on anything but the text
    speakers = sorted(counts, key=lambda s: (-counts[s], s))[:num_speakers]
    label = {speaker: k for k, speaker in enumerate(speakers)}
    seen = Counter()
    train, test, heldout_blocks = [], [], set()
    for i, speaker, speech in speeches:
        if speaker not in label:
            continue
        seen[speaker] += 1
        if seen[speaker] % test_every == 0:
            test.append((speech, label[speaker]))
            heldout_blocks.add(i)
        else:
            train.append((speech, label[speaker]))
    pretrain = "\n\n".join(b for i, b in enumerate(blocks) if i not in heldout_blocks)
    heldout = "\n\n".join(blocks[i] for i in sorted(heldout_blocks))
    return SpeakerData(speakers, train, test, pretrain, heldout)


# A speech as `[CLS] text [SEP]` padded to `context`, with Hugging Face's attention mask (1 at real tokens).
def encode_speeches(examples: list[tuple[str, int]], vocab: Vocabulary, context: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(input_ids [n, context], attention_mask [n, context], labels [n])`."""
    input_ids = torch.full((len(examples), context), vocab.pad, dtype=torch.long)
    for row, (speech, _) in enumerate(examples):
        tokens = vocab.tokenizer.encode(speech[:context - 2])
        input_ids[row, 0] = vocab.cls
        input_ids[row, 1:1 + len(tokens)] = tokens
        input_ids[row, 1 + len(tokens)] = vocab.sep
    attention_mask = (input_ids != vocab.pad).long()
    labels = torch.tensor([label for _, label in examples], dtype=torch.long)
    return input_ids, attention_mask, labels


# ## Pretraining batches
#
# $\texttt{[CLS]}\ A\ \texttt{[SEP]}\ B\ \texttt{[SEP]}$ with token types 0 up to the first separator and 1 after it.
# The next-sentence label follows Hugging Face's convention: 0 when $B$ continues $A$, 1 when it is random. The
# masking draws from the trainer's generator, so a resumed run sees the same batches.
class PretrainingSource:
    """Random segment pairs of `tokens` with masked characters: `(inputs, token_types, mlm_labels, next_labels)`."""

    def __init__(self, tokens: torch.Tensor, vocab: Vocabulary, context: int, mask_probability: float):
        self.tokens = tokens
        self.vocab = vocab
        self.mask_probability = mask_probability
        self.len_a = (context - 3) // 2
        self.len_b = context - 3 - self.len_a
        if len(tokens) <= self.len_a + self.len_b:
            raise ValueError(f"the text ({len(tokens)} tokens) is shorter than one input ({context})")
        types = [0] * (self.len_a + 2) + [1] * (self.len_b + 1)
        self.token_types = torch.tensor(types, dtype=torch.long)

    def sample(self, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        n, la, lb = len(self.tokens), self.len_a, self.len_b
        starts = torch.randint(n - la - lb, (batch_size,), generator=generator)
        is_random = torch.rand(batch_size, generator=generator) < 0.5
        random_starts = torch.randint(n - lb, (batch_size,), generator=generator)
        b_starts = torch.where(is_random, random_starts, starts + la)
        # `[batch, la]` and `[batch, lb]`
        a = self.tokens[starts[:, None] + torch.arange(la)]
        b = self.tokens[b_starts[:, None] + torch.arange(lb)]
        column = lambda token: torch.full((batch_size, 1), token, dtype=torch.long)  # noqa: E731
        # `[batch, context]`
        input_ids = torch.cat([column(self.vocab.cls), a, column(self.vocab.sep), b, column(self.vocab.sep)], dim=1)
        inputs, labels = mask_tokens(input_ids, mask_token_id=self.vocab.mask, vocab_size=self.vocab.n_chars,
                                     special_token_ids=[self.vocab.cls, self.vocab.sep, self.vocab.pad],
                                     probability=self.mask_probability, generator=generator)
        return inputs, self.token_types.expand(batch_size, -1), labels, is_random.long()


def pretraining_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Masked-LM cross-entropy at the chosen positions plus the next-sentence cross-entropy."""
    inputs, token_types, labels, next_labels = batch
    mlm_logits, sentence_logits = model(inputs, token_types)
    # `[batch * seq, vocab]` against `[batch * seq]`; -100 (not chosen) is ignored
    mlm = F.cross_entropy(mlm_logits.flatten(0, 1).float(), labels.flatten())
    return mlm + F.cross_entropy(sentence_logits.float(), next_labels)


# ## Accuracy at the masked positions
#
# Over `batches` fixed batches of held-out text: the fraction of chosen characters predicted exactly, and of
# next-sentence labels.
@torch.no_grad()
def pretraining_accuracy(model: BertForPreTraining, source: PretrainingSource, batches: int, batch_size: int,
                         seed: int) -> dict:
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    correct = total = next_correct = next_total = 0
    for _ in range(batches):
        inputs, token_types, labels, next_labels = (t.to(device) for t in source.sample(generator, batch_size))
        mlm_logits, sentence_logits = model(inputs, token_types)
        chosen = labels != -100
        correct += (mlm_logits.argmax(-1)[chosen] == labels[chosen]).sum().item()
        total += chosen.sum().item()
        next_correct += (sentence_logits.argmax(-1) == next_labels).sum().item()
        next_total += len(next_labels)
    model.train(was_training)
    return {"mlm_accuracy": correct / max(total, 1), "next_sentence_accuracy": next_correct / next_total}


# ## Fine-tuning batches
#
# Random speeches of the training set (with replacement), as `(input_ids, attention_mask, labels)`. Most speeches
# are shorter than `context`, so the batch is cut after its longest speech: the columns after it are padding in
# every row, and dropping them changes no output (the tests check that padding changes nothing).
class SpeechSource:
    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        self.tensors = (input_ids, attention_mask, labels)

    def sample(self, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        input_ids, attention_mask, labels = self.tensors
        index = torch.randint(len(labels), (batch_size,), generator=generator)
        length = int(attention_mask[index].sum(dim=1).max())
        return input_ids[index, :length], attention_mask[index, :length], labels[index]


def classification_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    input_ids, attention_mask, labels = batch
    return F.cross_entropy(model(input_ids, attention_mask=attention_mask).float(), labels)


# The accuracy on every held-out speech, once each.
@torch.no_grad()
def speaker_accuracy(model: nn.Module, tensors: tuple[torch.Tensor, ...], batch_size: int = 64) -> float:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    input_ids, attention_mask, labels = tensors
    for start in range(0, len(labels), batch_size):
        part = slice(start, start + batch_size)
        logits = model(input_ids[part].to(device), attention_mask=attention_mask[part].to(device))
        correct += (logits.argmax(-1).cpu() == labels[part]).sum().item()
    model.train(was_training)
    return correct / len(labels)


# ## The experiment
def train(config: BertExperiment, run: Run) -> dict:
    text = tiny_shakespeare_path(run.data_dir).read_text(encoding="utf-8")
    vocab = Vocabulary(CharTokenizer.from_text(text))
    data = speaker_data(text, config.num_speakers)
    model_config = replace(config.model, vocab_size=vocab.size, pad_token_id=vocab.pad)
    run.write_json("dataset.json", {"speakers": data.speakers, "train": len(data.train), "test": len(data.test),
                                    "tokenizer": vocab.tokenizer.to_dict()})
    if run.is_main:
        print(f"speakers: {', '.join(data.speakers)}; {len(data.train)} training and {len(data.test)} held-out "
              f"speeches; pretraining on {len(data.pretrain_text):,} characters", file=sys.stderr)

    # ### Pretraining
    pretrain_run = run.sub("pretrain")
    pretraining = Trainer(BertForPreTraining(model_config), config.trainer, pretrain_run, loss_fn=pretraining_loss)
    train_source = PretrainingSource(vocab.tokenizer.encode(data.pretrain_text), vocab, config.context,
                                     config.mask_probability)
    val_source = PretrainingSource(vocab.tokenizer.encode(data.heldout_text), vocab, config.context,
                                   config.mask_probability)
    pretrain_result = pretraining.fit(train_source, val_source)
    pretrained = pretraining.model
    pretrain_result.update(pretraining_accuracy(pretrained, val_source, config.eval_batches,
                                                config.trainer.batch_size, seed=run.seed))
    pretrain_run.write_json("result.json", pretrain_result)

    # ### Fine-tuning, from the pretrained body and from scratch
    finetune_config = replace(config.trainer, max_steps=config.finetune_steps, batch_size=config.finetune_batch_size,
                              lr=config.finetune_lr, min_lr=config.finetune_lr / 10, warmup=config.finetune_warmup,
                              eval_every=config.finetune_eval_every, eval_iters=config.finetune_eval_iters,
                              checkpoint_every=0)
    train_tensors = encode_speeches(data.train, vocab, config.context)
    test_tensors = encode_speeches(data.test, vocab, config.context)

    def train_one(name: str, sub: Run) -> dict:
        model = BertForSequenceClassification(model_config, num_labels=len(data.speakers))
        if name == "pretrained":
            model.bert.load_state_dict(pretrained.bert.state_dict())
        trainer = Trainer(model, finetune_config, sub, loss_fn=classification_loss)
        result = trainer.fit(SpeechSource(*train_tensors), SpeechSource(*test_tensors))
        result["speaker_accuracy"] = speaker_accuracy(trainer.model, test_tensors)
        result["speaker_train_accuracy"] = speaker_accuracy(trainer.model, train_tensors)
        return result

    finetune_run = run.sub("finetune")
    summary = train_variants(finetune_run, ["pretrained", "scratch"], train_one,
                             figures=["speaker_accuracy", "speaker_train_accuracy"], rank_by=None)
    # The run's own `metrics.jsonl` holds every record of both stages, and its `loss.png` the fine-tuning curves of
    # both classifiers (the pretraining curve is in `pretrain/loss.png`).
    if run.is_main:
        records = {name: read_metrics(finetune_run.sub(name).path("metrics.jsonl"))
                   for name in ("pretrained", "scratch")}
        lines = [{"stage": "pretrain", **r} for r in read_metrics(pretrain_run.path("metrics.jsonl"))]
        lines += [{"stage": "finetune", "variant": name, **r} for name, rows in records.items() for r in rows]
        run.write_text("metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
        plot_variants(records, run.path("loss.png"), title="fine-tuning: speaker classification")

    test_labels = test_tensors[2]
    majority = Counter(label for _, label in data.train).most_common(1)[0][0]
    return {
        "mlm_accuracy": pretrain_result["mlm_accuracy"],
        "next_sentence_accuracy": pretrain_result["next_sentence_accuracy"],
        "speaker_accuracy": summary["speaker_accuracy"],
        "speaker_train_accuracy": summary["speaker_train_accuracy"],
        "majority_baseline": (test_labels == majority).float().mean().item(),
        "chance": 1 / len(data.speakers),
        "speakers": data.speakers,
        "train_speeches": len(data.train),
        "test_speeches": len(data.test),
        "pretrain": pretrain_result,
        "finetune": summary,
        "wall_s": pretrain_result["wall_s"] + summary["wall_s"],
    }


def main(argv: list[str] | None = None) -> None:
    run_experiment("bert", BertExperiment, train, presets={"default": default, "gpu": gpu, "tiny": tiny}, argv=argv,
                   description="Pretrain a small BERT on Tiny Shakespeare, then fine-tune it to name speakers.")


if __name__ == "__main__":
    main()

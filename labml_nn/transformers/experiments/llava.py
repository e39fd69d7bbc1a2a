r"""
---
title: LLaVA on shapes it draws itself
summary: LLaVA's recipe at toy scale on a CPU: a vision transformer learns shapes, a character Llama learns Shakespeare and captions, a projector learns to connect them, then projector and Llama learn to answer questions; held-out colour-shape pairs test what generalises.
---

# LLaVA on shapes it draws itself

```bash
python -m labml_nn.transformers.llava               # minutes on a laptop CPU
python -m labml_nn.transformers.llava --preset tiny # seconds, for tests
```

No downloads besides Tiny Shakespeare: the images are drawn here, deterministic by seed. Each is $32 \times 32$
RGB with one or two shapes (circle, square, triangle) in four colours at four positions (the quadrants), with a
caption, `"a red circle at the top left and a blue square at the bottom right"`, and questions,
`"what colour is the square?"` `"blue"`, `"where is the circle?"` `"top left"`,
`"what shape is at the top left?"` `"circle"`. Some colour-shape pairs (`held_out`) never appear in a training
image: the test images are split into those with only *seen* pairs and those with an *unseen* one.

The [LLaVA model](/transformers/llava/index.md) is trained in LLaVA's stages, each in its own subdirectory of the
run with its own metrics and checkpoint:

* **stage 0** (a stand-in for CLIP's pretraining): the vision transformer alone learns, at every patch, the shape
  and the colour in the patch's quadrant;
* **lm**: a character [Llama](/transformers/llama/index.md) learns Tiny Shakespeare and the captions' texts (without
  images);
* **stage 1**: the projector alone learns to caption, with the vision transformer and the Llama frozen: it must
  find the vectors that make a frozen language model say what is in the image;
* **stage 2**: the projector and the Llama learn to answer questions.

After each stage the result has, on held-out images, the exact-match rate of greedy captions and the accuracy of
greedy answers, for seen and unseen pairs (after stage 0, the vision transformer's accuracy on the attributes),
and `answers.png` shows held-out images with the model's answers.

A colour-shape pair that was never seen can still be described if the model has learnt colour and shape as
separate things: the attribute targets of stage 0 are factored that way, and the unseen column measures how much of
it survives the projector and the language model.

## What we measured

On held-out images (100 with only seen pairs, 100 with an unseen pair), default preset, one thread on a busy
2-core machine (about 10 minutes; 18 in a busier hour). Attributes are the vision transformer's: the share of
scenes whose every shape it named right (shape and colour). Captions count exact matches, answers exact answers.

| after | attributes, seen | unseen | captions, seen | unseen | answers, seen | unseen |
|---|---|---|---|---|---|---|
| stage 0 | 0.99 | 1.00 | | | | |
| lm | | | 0.00 | 0.00 | 0.00 | 0.00 |
| stage 1 | | | 0.14 | 0.00 | 0.00 | 0.00 |
| stage 2 | | | 0.00 | 0.00 | 1.00 | 0.72 |

Stage 1 taught a frozen language model, through the projector alone, to caption a seventh of the seen images word
for word and no image with an unseen pair. Stage 2, trained on questions only, forgot how to caption, answered
every question about seen pairs and 72% of those on images with an unseen pair. Split by what was asked (a check on
the stage 2 checkpoint), about the unseen pair itself: where it is, 108 of 114; its shape, 91 of 114; its colour,
12 of 114. The vision transformer knew the colours (stage 0); the language model, fine-tuned on answers in which a
triangle was never red, had learnt which colours go with which shape, and asked the colour of a red triangle it
answers "blue" (the figure shows it).

With `--no-vision-sees-all-pairs` the vision transformer never sees the held-out pairs either (in our run, stage 0
trained on the LLaVA training images). It named every seen scene right and *no* scene with an unseen pair: its
colours were right, its shapes not (a blue square called a circle, a green circle a square, a red triangle a square
or a circle). With colour and shape correlated in its training images, the shape head leant on colour, a shortcut
that breaks only on the pairs it never saw; this is why the default pretrains on every pair, as CLIP's pretraining
saw far more of the world than LLaVA's instruction data. That run ended with captions 0.20 / 0.00 after stage 1 and
answers 0.99 / 0.49 after stage 2.
"""

import sys
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.experiments.cli import run_experiment
from labml_nn.experiments.compare import train_variants
from labml_nn.experiments.data import BlockSource, CharTokenizer, load_tiny_shakespeare
from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig
from labml_nn.transformers.llama import ModelArgs
from labml_nn.transformers.llava import Llava, VisionConfig, VisionTransformer

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (0.95, 0.15, 0.1), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.35, 1.0), "yellow": (0.95, 0.85, 0.1)}
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
IMAGE_SIZE = 32
STAGES = ("stage0", "lm", "stage1", "stage2")


# ## Drawing
#
# A shape of radius about 5 pixels near the centre of its $16 \times 16$ quadrant, on a dark, slightly noisy
# background; pixel values are scaled to $[-1, 1]$.
def draw(scene: list[tuple[str, str, int]], rng: np.random.Generator) -> np.ndarray:
    """A `[3, 32, 32]` float32 image of `scene`, a list of (shape, colour, quadrant)."""
    image = rng.uniform(0.0, 0.08, size=(3, IMAGE_SIZE, IMAGE_SIZE))
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    for shape, colour, quadrant in scene:
        cy = 8 + 16 * (quadrant // 2) + rng.integers(-1, 2)
        cx = 8 + 16 * (quadrant % 2) + rng.integers(-1, 2)
        r = rng.integers(4, 7)
        if shape == "circle":
            inside = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
        elif shape == "square":
            inside = (abs(y - cy) <= r - 1) & (abs(x - cx) <= r - 1)
        else:
            # Pointing up: half as wide as it is far below the apex.
            inside = (y >= cy - r) & (y <= cy + r) & (2 * abs(x - cx) <= y - cy + r)
        image[:, inside] = np.array(COLOURS[colour])[:, None]
    return (image * 2 - 1).astype(np.float32)


def caption(scene: list[tuple[str, str, int]]) -> str:
    return " and ".join(f"a {colour} {shape} at the {POSITIONS[q]}" for shape, colour, q in sorted(scene, key=lambda s: s[2]))


def questions(scene: list[tuple[str, str, int]]) -> list[tuple[str, str]]:
    """(question, answer) pairs about `scene`."""
    pairs = []
    for shape, colour, q in scene:
        pairs += [(f"what colour is the {shape}?", colour), (f"where is the {shape}?", POSITIONS[q]),
                  (f"what shape is at the {POSITIONS[q]}?", shape)]
    return pairs


# ## The image set
#
# Scenes of one or two different shapes in different quadrants. Training scenes avoid the held-out pairs; the test
# scenes are half with an unseen pair (`unseen[i]`) and half without.
@dataclass
class Shapes:
    pixels: torch.Tensor  # `[n, 3, 32, 32]`
    scenes: list
    unseen: torch.Tensor  # `[n]` bool


def make_shapes(n: int, seed: int, held_out: tuple[tuple[str, str], ...], test: bool) -> Shapes:
    rng = np.random.default_rng(seed)
    pixels, scenes, unseen = [], [], []
    while len(scenes) < n:
        count = rng.integers(1, 3)
        shapes = rng.choice(len(SHAPES), count, replace=False)
        quadrants = rng.choice(4, count, replace=False)
        colours = list(COLOURS)
        scene = [(SHAPES[s], colours[rng.integers(len(colours))], int(q)) for s, q in zip(shapes, quadrants)]
        has_unseen = any((colour, shape) in held_out for shape, colour, _ in scene)
        # Training: only seen pairs. Test: alternate seen and unseen scenes.
        if has_unseen != (test and len(scenes) % 2 == 1):
            continue
        pixels.append(draw(scene, rng))
        scenes.append(scene)
        unseen.append(has_unseen)
    return Shapes(torch.from_numpy(np.stack(pixels)), scenes, torch.tensor(unseen))


# ## Stage 0's targets
#
# Each of the $4 \times 4$ patches predicts the shape (or none) and the colour (or none) of its quadrant.
def attribute_targets(scenes: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape and colour class per quadrant, `[n, 4]` each (0 = empty)."""
    shape = torch.zeros(len(scenes), 4, dtype=torch.long)
    colour = torch.zeros(len(scenes), 4, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for s, c, q in scene:
            shape[i, q] = 1 + SHAPES.index(s)
            colour[i, q] = 1 + list(COLOURS).index(c)
    return shape, colour


class AttributeModel(nn.Module):
    """The vision transformer and a linear head on its normalised last patch vectors."""

    def __init__(self, vision: VisionTransformer):
        super().__init__()
        self.vision = vision
        self.head = nn.Linear(vision.config.hidden_size, 1 + len(SHAPES) + 1 + len(COLOURS))
        grid = vision.config.image_size // vision.config.patch_size
        rows = torch.arange(grid) // (grid // 2)
        # The quadrant of each patch, in reading order, `[patches]`
        self.register_buffer("quadrant", (rows[:, None] * 2 + rows[None, :]).flatten(), persistent=False)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # `[batch, patches, classes]`
        logits = self.head(self.vision.post_norm(self.vision(pixels)[-1][:, 1:]))
        return logits[..., :1 + len(SHAPES)], logits[..., 1 + len(SHAPES):]


def attribute_loss(model: AttributeModel, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    shape, colour, pixels = batch
    shape_logits, colour_logits = model(pixels)
    q = model.quadrant
    return F.cross_entropy(shape_logits.flatten(0, 1), shape[:, q].flatten()) + \
        F.cross_entropy(colour_logits.flatten(0, 1), colour[:, q].flatten())


class PoolSource:
    """Random rows of fixed tensors (the first dimension is the example)."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def sample(self, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        index = torch.randint(len(self.tensors[0]), (batch_size,), generator=generator)
        return tuple(t[index] for t in self.tensors)


# ## Sequences
#
# `[image tokens] prompt answer\n`, labelled on the answer and its end of line only, padded on the right (padding
# unlabelled). Returns `(input_ids, labels, image_index)`.
def sequences(examples: list[tuple[int, str, str]], tokenizer: CharTokenizer, image_token: int, patches: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = [(torch.cat([torch.full((patches,), image_token), tokenizer.encode(p)]), tokenizer.encode(a + "\n"))
            for _, p, a in examples]
    length = max(len(p) + len(a) for p, a in rows)
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        input_ids[i, :len(p) + len(a)] = torch.cat([p, a])
        labels[i, len(p):len(p) + len(a)] = a
    return input_ids, labels, torch.tensor([i for i, _, _ in examples])


def caption_examples(data: Shapes) -> list[tuple[int, str, str]]:
    return [(i, "describe:\n", caption(scene)) for i, scene in enumerate(data.scenes)]


def qa_examples(data: Shapes) -> list[tuple[int, str, str]]:
    return [(i, q + "\n", a) for i, scene in enumerate(data.scenes) for q, a in questions(scene)]


def llava_loss(model: Llava, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    input_ids, labels, pixels = batch
    return model.forward_loss(input_ids, pixels, labels)


# ## Freezing
#
# Stage 1 trains the projector alone, stage 2 the projector and the language model; the vision transformer stays
# as stage 0 left it. The trainer's optimiser takes only parameters that require gradients.
def freeze_for(model: Llava, stage: str) -> None:
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    if stage == "stage2":
        model.language_model.requires_grad_(True)


# ## Configuration
@dataclass
class LlavaExperiment:
    """LLaVA's stages on the synthetic shapes."""
    vision_hidden: int = 64
    """Width of the vision transformer."""
    vision_layers: int = 3
    """Layers of the vision transformer."""
    patch_size: int = 8
    """Patch size: (32 / patch_size)^2 image tokens."""
    dim: int = 96
    """Width of the Llama."""
    n_layers: int = 3
    """Blocks of the Llama."""
    n_heads: int = 4
    """Query heads of the Llama."""
    context: int = 64
    """Characters per block when pretraining the Llama."""
    n_train: int = 4000
    """Training images."""
    n_test: int = 200
    """Held-out test images (half with an unseen colour-shape pair)."""
    held_out: tuple[str, ...] = ("red triangle", "green circle", "blue square")
    """Colour-shape pairs never in a training image."""
    vision_sees_all_pairs: bool = True
    """Stage 0 trains on images of every colour-shape pair, as CLIP was pretrained on the whole web; the held-out
    pairs are held out of the LLaVA stages only. Off, the vision transformer never sees them either."""
    shakespeare_chars: int = 300000
    """Characters of Tiny Shakespeare mixed with the captions' texts for the Llama."""
    stage0_steps: int = 400
    """Steps of stage 0 (the vision transformer on the attributes)."""
    lm_steps: int = 800
    """Steps of the Llama's pretraining."""
    stage1_steps: int = 400
    """Steps of stage 1 (the projector on captions)."""
    stage2_steps: int = 800
    """Steps of stage 2 (the projector and the Llama on questions)."""
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=100000, batch_size=32, lr=2e-3, min_lr=2e-4, warmup=40, eval_every=0, eval_iters=10,
        checkpoint_every=0))
    """Every stage's optimiser and schedule; its max_steps caps each stage's steps."""

    def __post_init__(self):
        for name in ("n_train", "n_test", "context", "shakespeare_chars", "stage0_steps", "lm_steps", "stage1_steps",
                     "stage2_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {getattr(self, name)!r}")
        for pair in self.held_out:
            colour, _, shape = pair.partition(" ")
            if colour not in COLOURS or shape not in SHAPES:
                raise ValueError(f"held_out pairs are 'colour shape' with colours {list(COLOURS)} and shapes "
                                 f"{list(SHAPES)}, got {pair!r}")
        self.vision_config()

    def vision_config(self) -> VisionConfig:
        return VisionConfig(hidden_size=self.vision_hidden, intermediate_size=2 * self.vision_hidden,
                            num_hidden_layers=self.vision_layers, num_attention_heads=4, image_size=IMAGE_SIZE,
                            patch_size=self.patch_size)

    def stage_trainer(self, stage: str) -> TrainerConfig:
        steps = min(getattr(self, f"{stage}_steps"), self.trainer.max_steps)
        return replace(self.trainer, max_steps=steps, warmup=min(self.trainer.warmup, steps))

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(tuple(pair.split(" ")) for pair in self.held_out)


# ## Presets
def default() -> LlavaExperiment:
    """A few minutes on a laptop CPU."""
    return LlavaExperiment()


def tiny() -> LlavaExperiment:
    """Seconds: tiny models, a few steps each (for tests)."""
    return LlavaExperiment(vision_hidden=16, vision_layers=2, dim=32, n_layers=1, context=16, n_train=40, n_test=8,
                           shakespeare_chars=5000, stage0_steps=3, lm_steps=3, stage1_steps=3, stage2_steps=3,
                           trainer=TrainerConfig(max_steps=3, batch_size=4, warmup=1, eval_every=0, eval_iters=2,
                                                 log_every=2, checkpoint_every=0))


# ## Evaluation
#
# Greedy generation, prompts of equal length batched together (the cache has one length for all rows), the answer
# read up to its end of line.
def answers(model: Llava, tokenizer: CharTokenizer, data: Shapes, examples: list, device: torch.device) -> list[str]:
    image_token = model.image_token_id
    patches = model.vision.config.num_patches
    out = [""] * len(examples)
    by_length: dict[int, list[int]] = {}
    for k, (_, prompt, _) in enumerate(examples):
        by_length.setdefault(len(prompt), []).append(k)
    longest = max(len(a) for _, _, a in examples) + 1
    batch = model.language_model.params.max_batch_size
    for ks in by_length.values():
        for start in range(0, len(ks), batch):
            chunk = ks[start:start + batch]
            ids = torch.stack([torch.cat([torch.full((patches,), image_token), tokenizer.encode(examples[k][1])])
                               for k in chunk]).to(device)
            pixels = data.pixels[[examples[k][0] for k in chunk]].to(device)
            tokens = model.generate(ids, pixels, longest).cpu()
            for k, row in zip(chunk, tokens):
                out[k] = tokenizer.decode([t for t in row.tolist() if t < tokenizer.n_vocab]).split("\n")[0]
    return out


def accuracy(model: Llava, tokenizer: CharTokenizer, data: Shapes, device: torch.device) -> dict:
    """Caption exact match and answer accuracy, for test images with seen and with unseen pairs."""
    model.eval()
    result = {}
    for name, examples in (("caption_exact", caption_examples(data)), ("answer_accuracy", qa_examples(data))):
        got = answers(model, tokenizer, data, examples, device)
        right = torch.tensor([g == a for g, (_, _, a) in zip(got, examples)])
        unseen = data.unseen[[i for i, _, _ in examples]]
        result[name] = {"seen": float(right[~unseen].float().mean()), "unseen": float(right[unseen].float().mean())}
    return result


def attribute_accuracy(model: AttributeModel, data: Shapes, device: torch.device) -> dict:
    """Share of shapes whose patches' majority names both their shape and colour, seen and unseen images."""
    model.eval()
    shape, colour = attribute_targets(data.scenes)
    with torch.no_grad():
        shape_logits, colour_logits = model(data.pixels.to(device))
    q = model.quadrant.cpu()
    # Votes of each quadrant's patches, `[n, 4]`
    shape_vote = torch.stack([shape_logits.cpu()[:, q == k].argmax(-1).mode(-1).values for k in range(4)], 1)
    colour_vote = torch.stack([colour_logits.cpu()[:, q == k].argmax(-1).mode(-1).values for k in range(4)], 1)
    right = ((shape_vote == shape) & (colour_vote == colour)).all(1)
    return {"seen": float(right[~data.unseen].float().mean()), "unseen": float(right[data.unseen].float().mean())}


# ## The figure
def plot_answers(model: Llava, tokenizer: CharTokenizer, data: Shapes, device: torch.device, path) -> None:
    from matplotlib.figure import Figure
    shown = list(range(min(8, len(data.scenes))))
    examples = [(i, q + "\n", a) for i in shown for q, a in questions(data.scenes[i])[:1]]
    got = answers(model, tokenizer, data, examples, device)
    figure = Figure(figsize=(2.2 * len(shown), 2.8), dpi=100)
    for ax, (i, q, a), g in zip(figure.subplots(1, len(shown), squeeze=False)[0], examples, got):
        ax.imshow(((data.pixels[i].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())
        ax.set_title(f"{q.strip()}\n{g!r}" + ("" if g == a else f" ({a})"), fontsize=7,
                     color="green" if g == a else "red")
        ax.set_xlabel("unseen pair" if data.unseen[i] else "seen pairs", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    figure.savefig(path)


# ## The stages
def train(config: LlavaExperiment, run: Run) -> dict:
    device = run.device
    shakespeare = load_tiny_shakespeare(run.data_dir)
    train_data = make_shapes(config.n_train, run.seed, config.pairs(), test=False)
    test_data = make_shapes(config.n_test, run.seed + 1, config.pairs(), test=True)
    texts = [c for _, _, c in caption_examples(train_data)]
    # One character vocabulary for Shakespeare and the shapes' texts, and one more id for the image token.
    corpus = shakespeare.tokenizer.decode(shakespeare.train[:config.shakespeare_chars])
    tokenizer = CharTokenizer.from_text(shakespeare.tokenizer.chars + "".join(
        p + a + "\n" for _, p, a in caption_examples(train_data) + qa_examples(train_data)))
    image_token = tokenizer.n_vocab
    vision = config.vision_config()
    patches = vision.num_patches
    text_args = ModelArgs(dim=config.dim, n_layers=config.n_layers, n_heads=config.n_heads, n_kv_heads=2,
                          vocab_size=image_token + 1, multiple_of=32, rope_theta=10000.0,
                          max_seq_len=max(config.context, 128), max_batch_size=64)
    model = Llava(vision, text_args, image_token_id=image_token)
    results = {}

    def train_stage(stage: str, sub: Run) -> dict:
        if stage == "stage0":
            vision_data = make_shapes(config.n_train, run.seed + 2, () if config.vision_sees_all_pairs
                                      else config.pairs(), test=False)
            shape, colour = attribute_targets(vision_data.scenes)
            test_shape, test_colour = attribute_targets(test_data.scenes)
            attributes = AttributeModel(model.vision)
            trainer = Trainer(attributes, config.stage_trainer(stage), sub, loss_fn=attribute_loss)
            result = trainer.fit(PoolSource(shape, colour, vision_data.pixels),
                                 PoolSource(test_shape, test_colour, test_data.pixels))
            result["attribute_accuracy"] = attribute_accuracy(attributes, test_data, device)
        elif stage == "lm":
            captions = tokenizer.encode("".join("describe:\n" + t + "\n" for t in texts))
            tokens = torch.cat([tokenizer.encode(corpus), captions])
            val = tokenizer.encode(shakespeare.tokenizer.decode(shakespeare.val[:20000]))
            trainer = Trainer(model.language_model, config.stage_trainer(stage), sub)
            result = trainer.fit(BlockSource(tokens, config.context), BlockSource(val, config.context))
            result.update(accuracy(model, tokenizer, test_data, device))
        else:
            examples = caption_examples if stage == "stage1" else qa_examples
            ids, labels, index = sequences(examples(train_data), tokenizer, image_token, patches)
            test_ids, test_labels, test_index = sequences(examples(test_data), tokenizer, image_token, patches)
            freeze_for(model, stage)
            trainer = Trainer(model, config.stage_trainer(stage), sub, loss_fn=llava_loss)
            result = trainer.fit(PoolSource(ids, labels, train_data.pixels[index]),
                                 PoolSource(test_ids, test_labels, test_data.pixels[test_index]))
            model.requires_grad_(True)
            result.update(accuracy(model, tokenizer, test_data, device))
        results[stage] = {key: result[key] for key in ("attribute_accuracy", "caption_exact", "answer_accuracy")
                          if key in result}
        if run.is_main:
            print(f"{stage}: {results[stage]}", file=sys.stderr, flush=True)
        return result

    summary = train_variants(run, STAGES, train_stage, rank_by=None)
    summary["accuracy"] = results
    if run.is_main:
        plot_answers(model, tokenizer, test_data, device, run.path("answers.png"))
    return summary


def main(argv: list[str] | None = None) -> None:
    run_experiment("llava", LlavaExperiment, train, presets={"default": default, "tiny": tiny}, argv=argv,
                   description="LLaVA's training stages on synthetic shapes, with held-out colour-shape pairs.")


if __name__ == "__main__":
    main()

"""The site's figures, drawn at build time by the library's own functions (so they never drift from the code).

Each figure is a function returning PNG bytes; `FIGURES` maps the file name under `/figures/` to it. A figure whose
module does not exist yet is skipped (`build_all` reports it), so that the site builds while modules are written.

Run `python -m site_src.figures OUT_DIR` to write them to a folder and look at them.
"""
from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

FIGURE_SIZE = (9.0, 3.2)
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": DPI, "savefig.dpi": DPI,
                         "image.cmap": "viridis", "svg.hashsalt": "labml_nn"})
    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    # No timestamps or software tags: the same code draws the same bytes.
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def masks() -> bytes:
    """The causal mask, a padding mask, and both combined, as `F.scaled_dot_product_attention` sees them."""
    import torch

    from labml_nn.transformers.utils import padding_mask, subsequent_mask

    plt = _pyplot()
    seq = 8
    tokens = torch.tensor([[5, 3, 9, 4, 7, 0, 0, 0]])
    causal = subsequent_mask(seq)
    # `[1, 1, 1, seq]` to `[seq_q, seq_k]`: the same row for every query
    padding = padding_mask(tokens, pad_id=0)[0, 0].expand(seq, seq)
    combined = causal & padding
    fig, axes = plt.subplots(1, 3, figsize=FIGURE_SIZE)
    titles = ["causal: subsequent_mask(8)", "padding: padding_mask(tokens, 0)", "combined: causal & padding"]
    for ax, mask, title in zip(axes, [causal, padding, combined], titles):
        ax.imshow(mask.numpy(), cmap="Greens", vmin=-0.3, vmax=1.2)
        ax.set_title(title)
        ax.set_xlabel("key position $j$")
        ax.set_xticks(range(seq))
        ax.set_yticks(range(seq))
        for i in range(seq):
            for j in range(seq):
                ax.text(j, i, "T" if mask[i, j] else "F", ha="center", va="center", fontsize=7,
                        color="white" if mask[i, j] else "#555")
    axes[0].set_ylabel("query position $i$")
    fig.suptitle("True = may attend; the last three tokens are padding", y=1.02)
    return _png(fig)


def attention() -> bytes:
    """One head's attention weights when queries and keys are sinusoidal position encodings: nearby keys score
    highest, and the causal mask hides the future."""
    import torch

    from labml_nn.transformers.mha import MultiHeadAttention
    from labml_nn.transformers.positional_encoding import get_positional_encoding

    plt = _pyplot()
    seq, d_model = 24, 32
    attention_layer = MultiHeadAttention(heads=1, d_model=d_model, bias=False)
    with torch.no_grad():
        # Projections set to the identity, so the scores are dot products of the position encodings themselves.
        for projection in (attention_layer.query, attention_layer.key, attention_layer.value, attention_layer.output):
            projection.weight.copy_(torch.eye(d_model))
        # `[1, seq, d_model]`, scaled up so that the softmax is sharp enough to see
        x = 3 * get_positional_encoding(d_model, max_len=seq)[None]
        _, full = attention_layer(x, x, x, need_weights=True)
        _, causal = attention_layer(x, x, x, need_weights=True, is_causal=True)
    fig, axes = plt.subplots(1, 2, figsize=FIGURE_SIZE)
    for ax, weights, title in zip(axes, [full, causal], ["no mask", "is_causal=True"]):
        image = ax.imshow(weights[0, 0].numpy(), vmin=0)
        ax.set_title(f"attention weights, {title}")
        ax.set_xlabel("key position $j$")
        ax.set_ylabel("query position $i$")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("One head attending over sinusoidal position encodings: every row sums to one", y=1.02)
    return _png(fig)


def positional_encoding() -> bytes:
    """Heat map of `get_positional_encoding`, and a few of its dimensions as functions of the position."""
    from labml_nn.transformers.positional_encoding import get_positional_encoding

    plt = _pyplot()
    d_model, max_len = 64, 100
    # `[max_len, d_model]`
    pe = get_positional_encoding(d_model, max_len=max_len).numpy()
    fig, axes = plt.subplots(1, 2, figsize=FIGURE_SIZE, gridspec_kw={"width_ratios": [1.3, 1]})
    image = axes[0].imshow(pe.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    axes[0].set_title(f"get_positional_encoding({d_model}, max_len={max_len})")
    axes[0].set_xlabel("position")
    axes[0].set_ylabel("dimension")
    fig.colorbar(image, ax=axes[0], fraction=0.046, pad=0.04)
    # Even dimensions are sines whose wavelength grows geometrically with the dimension.
    for dim in (6, 12, 20, 32):
        axes[1].plot(pe[:, dim], label=f"dim {dim}")
    axes[1].set_title("a few dimensions")
    axes[1].set_xlabel("position")
    axes[1].legend(loc="lower left", fontsize=8)
    return _png(fig)


def rope_rotation() -> bytes:
    """RoPE rotates each pair of features by an angle proportional to the position; a query-key score then depends
    only on the distance between them."""
    import torch

    from labml_nn.transformers.rope import RotaryPositionalEmbeddings

    plt = _pyplot()
    d, seq = 16, 48
    rope = RotaryPositionalEmbeddings(d)
    half = d // 2
    pairs = [(1, 1.0, "C0"), (2, 0.7, "C1"), (3, 0.4, "C2")]
    # The same vector at every position, `[1, 1, seq, d]`; pair `i` (features i and i + d/2, "rotate half")
    # has length `radius`, so that the pairs draw separate circles.
    vector = torch.zeros(1, 1, seq, d)
    for pair, radius, _ in pairs:
        vector[..., pair] = radius
    rotated = rope(vector)[0, 0]
    fig, axes = plt.subplots(1, 2, figsize=FIGURE_SIZE, gridspec_kw={"wspace": 0.9})
    for pair, radius, colour in pairs:
        xs, ys = rotated[:, pair].numpy(), rotated[:, pair + half].numpy()
        axes[0].plot(xs, ys, "-o", markersize=2.5, linewidth=0.8, color=colour,
                     label=f"pair {pair}: $\\theta_{{{pair}}} = {rope_theta(d, pair):.3g}$ per position")
        axes[0].plot([0, xs[0]], [0, ys[0]], color=colour, linewidth=1.5)
    axes[0].set_aspect("equal")
    axes[0].set_xlim(-1.15, 1.15)
    axes[0].set_ylim(-1.15, 1.15)
    axes[0].set_title(f"feature pairs of one vector at positions 0..{seq - 1}")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(d, generator=generator), torch.randn(d, generator=generator)
    key_index = seq // 2
    distances = torch.arange(seq) - key_index
    for start, style in zip([0, 100, 1000], ["-", "--", ":"]):
        # The same query (and key) at positions start .. start + seq - 1, `[seq, d]`
        queries = rope(q.expand(1, 1, seq, d), offset=start)[0, 0]
        keys = rope(k.expand(1, 1, seq, d), offset=start)[0, 0]
        # Every query against the key at position start + seq // 2
        scores = queries @ keys[key_index]
        axes[1].plot(distances.numpy(), scores.numpy(), linestyle=style, linewidth=2 if start == 0 else 1.5,
                     label=f"key at position {start + key_index}")
    axes[1].set_title("score $q_m \\cdot k_n$ against $m - n$")
    axes[1].set_xlabel("relative position $m - n$")
    axes[1].legend(loc="lower left", fontsize=8)
    return _png(fig)


def rope_theta(d: int, pair: int, base: float = 10_000.0) -> float:
    """$\\theta_i = base^{-2i/d}$, the angle pair `i` turns per position (for the legend)."""
    return base ** (-2 * pair / d)


def label_smoothing() -> bytes:
    """Target distributions: one-hot, smoothed as `F.cross_entropy(label_smoothing=...)`, and the Annotated
    Transformer's variant."""
    import torch

    from labml_nn.transformers.label_smoothing_loss import (annotated_transformer_target_distribution,
                                                            smoothed_target_distribution)

    plt = _pyplot()
    n_classes, smoothing, target, padding = 8, 0.2, 3, 0
    targets = torch.tensor([target])
    distributions = [
        ("one-hot ($\\epsilon = 0$)", smoothed_target_distribution(targets, n_classes, 0.0)[0]),
        (f"smoothed, $\\epsilon = {smoothing}$", smoothed_target_distribution(targets, n_classes, smoothing)[0]),
        (f"Annotated Transformer\n(padding class {padding})",
         annotated_transformer_target_distribution(targets, n_classes, smoothing, padding)[0]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=FIGURE_SIZE, sharey=True)
    for ax, (title, q) in zip(axes, distributions):
        colours = ["C1" if c == target else "C0" for c in range(n_classes)]
        ax.bar(range(n_classes), q.numpy(), color=colours)
        ax.set_title(title)
        ax.set_xlabel("class $c$")
        ax.set_xticks(range(n_classes))
        # The value on the target's bar and on one other class's bar (class 5) is enough to read the rest.
        for c in (target, 5):
            value = float(q[c])
            ax.text(c, value + 0.015, f"{value:.3g}", ha="center", fontsize=8)
    axes[0].set_ylabel("target probability $q_c$")
    fig.suptitle(f"{n_classes} classes, target class {target}", y=1.08)
    return _png(fig)


def t5_buckets() -> bytes:
    """T5's relative position buckets against the relative position $j - i$: exact near zero, logarithmic up to
    `max_distance`, one bucket beyond; bidirectional in the encoder, causal in the decoder."""
    import torch

    from labml_nn.transformers.t5 import relative_position_bucket

    plt = _pyplot()
    num_buckets, max_distance = 32, 128
    relative = torch.arange(-200, 201)
    fig, axes = plt.subplots(1, 2, figsize=FIGURE_SIZE, sharey=True)
    for ax, bidirectional, title in ((axes[0], True, "encoder: bidirectional"), (axes[1], False, "decoder: causal")):
        buckets = relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
        ax.step(relative.numpy(), buckets.numpy(), where="mid", linewidth=1.2)
        for edge in (-max_distance, max_distance):
            ax.axvline(edge, color="gray", linestyle="--", linewidth=0.8)
        ax.set_title(f"{title} ({num_buckets} buckets, max_distance {max_distance})")
        ax.set_xlabel("relative position $j - i$ (key minus query)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bucket")
    return _png(fig)


def llava_patches() -> bytes:
    """One of the LLaVA experiment's images cut into its 8 x 8 patches, and the patches as a sequence of tokens."""
    import numpy as np

    from labml_nn.transformers.experiments.llava import draw

    plt = _pyplot()
    image = (draw([("circle", "red", 0), ("triangle", "blue", 3)], np.random.default_rng(1)).transpose(1, 2, 0) + 1) / 2
    size, patch = image.shape[0], 8
    grid = size // patch
    fig = plt.figure(figsize=FIGURE_SIZE)
    left = fig.add_axes((0.0, 0.1, 0.25, 0.8))
    left.imshow(image.clip(0, 1))
    for k in range(1, grid):
        left.axhline(k * patch - 0.5, color="white", linewidth=1)
        left.axvline(k * patch - 0.5, color="white", linewidth=1)
    left.set_title(f"{size} x {size} image, {patch} x {patch} patches")
    left.set_xticks([])
    left.set_yticks([])
    tokens = grid * grid + 1
    for t in range(tokens):
        ax = fig.add_axes((0.3 + t * 0.68 / tokens, 0.4, 0.68 / tokens * 0.9, 0.2))
        if t == 0:
            ax.text(0.5, 0.5, "CLS", ha="center", va="center", fontsize=7)
        else:
            r, c = divmod(t - 1, grid)
            ax.imshow(image[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch].clip(0, 1))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.text(0.64, 0.7, f"the sequence the vision transformer reads: a class token and {grid * grid} patches",
             ha="center")
    fig.text(0.64, 0.3, "each patch: its 3 x 8 x 8 numbers times one matrix, plus its position vector", ha="center")
    return _png(fig)


def from_scratch_curves() -> bytes:
    """The validation loss of every chapter of the from-scratch track during training, as measured by the chapters'
    own commands (stored in `labml_nn/transformers/from_scratch/measured.json`), and the original's figures."""
    import json

    from labml_nn.transformers import from_scratch

    measured = json.loads((Path(from_scratch.__file__).parent / "measured.json").read_text(encoding="utf-8"))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 4.0))
    for run in measured["runs"]:
        steps, losses = zip(*run["val_curve"])
        ax.plot(steps, losses, label=f"{run['label']}: {run['val_loss']:.3f}",
                linestyle="--" if run["framework"] == "jax" else "-", color=f"C{run['chapter'][2]}")
    for value, label in measured["published"]:
        ax.axhline(value, color="#999", linewidth=0.8, linestyle=":")
        ax.text(ax.get_xlim()[1], value, f" {label}", va="center", fontsize=7, color="#666")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title("Tiny Shakespeare, one colour per chapter: PyTorch solid, JAX/Flax dashed; dotted: the original's figures")
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


FIGURES: dict[str, Callable[[], bytes]] = {
    "masks.png": masks,
    "attention.png": attention,
    "positional_encoding.png": positional_encoding,
    "rope_rotation.png": rope_rotation,
    "label_smoothing.png": label_smoothing,
    "t5_buckets.png": t5_buckets,
    "llava_patches.png": llava_patches,
    "from_scratch_curves.png": from_scratch_curves,
}


def build_all() -> tuple[dict[str, bytes], dict[str, str]]:
    """Every figure that can be drawn: `(name -> PNG bytes, name -> why it was skipped)`.

    Only a module that does not exist yet is a reason to skip; any other error is a bug and propagates.
    """
    drawn, skipped = {}, {}
    for name, draw in FIGURES.items():
        try:
            drawn[name] = draw()
        except ModuleNotFoundError as error:
            if not (error.name or "").startswith("labml_nn"):
                raise
            skipped[name] = f"{error.name} does not exist yet"
        except ImportError as error:
            if "labml_nn" not in str(error):
                raise
            skipped[name] = str(error)
    return drawn, skipped


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "test-artifacts/figures")
    out.mkdir(parents=True, exist_ok=True)
    figures, missing = build_all()
    for figure_name, png in figures.items():
        (out / figure_name).write_bytes(png)
        print(f"{out / figure_name}: {len(png) / 1024:.0f} KiB")
    for figure_name, reason in missing.items():
        print(f"skipped {figure_name}: {reason}")

r"""
---
title: Comparing variants
summary: Train several variants of an experiment one after the other, each in its own resumable run, and put their losses side by side in one table, one metrics file and one plot.
---

# Comparing variants

Several experiments ask which of a few choices works better: fixed, learned or no positional encodings; rotary
or sinusoidal positions; five feed-forward networks; label smoothing or none. [train_variants](#train_variants)
trains each variant in a subdirectory of the run, `<run>/<variant>/`, with its own metrics, plot, checkpoint and
`result.json`. So `--resume` continues the variant that was interrupted, and finds the ones that had finished
already done (their checkpoints are at the last step). Then it gathers them into the run directory:

* `metrics.jsonl`: the records of every variant, each with a `variant` field;
* `loss.png`: the validation curves of all variants on one plot, with their training curves fainter;
* the result: `val_loss`, `train_loss`, `steps`, `tokens_per_s`, `parameters` and the experiment's own figures
  keyed by variant, the `best` variant (by validation loss, unless the experiment says otherwise) and the total
  `wall_s`; a table of them is printed.

At these sizes, differences of a few hundredths of a nat are within what another seed changes: `--seed` repeats
a comparison with another initialisation and other batches.
"""

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from labml_nn.experiments.trainer import Run
from labml_nn.transformers.utils import seed_everything

SUMMARY_KEYS = ("val_loss", "train_loss", "steps", "tokens_per_s", "parameters")


# ## Training the variants
#
# `train_one(name, run)` trains the variant `name` in the run it is given (a subdirectory's) and returns its
# result: the trainer's, plus any figures of its own. Every variant starts from the run's seed, so that they are
# initialised alike where their shapes agree, and a resumed comparison builds the variants it had not reached
# exactly as the uninterrupted one would. Everything is trained on every process; only rank 0 writes.
def train_variants(run: Run, names: Sequence[str], train_one: Callable[[str, Run], dict],
                   figures: Sequence[str] = (), rank_by: str | None = "val_loss") -> dict:
    """
    Train `train_one(name, run.sub(name))` for each name; returns the summary of the comparison, with the
    experiment's own `figures` (keys of the variants' results) keyed by variant beside the trainer's, and the
    `best` variant by the figure `rank_by` (lowest wins; `None` when the variants' losses do not compare).
    """
    names = list(names)
    if not names:
        raise ValueError("at least one variant is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    results = {}
    for name in names:
        if run.is_main:
            print(f"--- {name} ---", file=sys.stderr)
        sub = run.sub(name)
        seed_everything(run.seed)
        results[name] = train_one(name, sub)
        sub.write_json("result.json", results[name])

    if run.is_main:
        records = {name: read_metrics(run.sub(name).path("metrics.jsonl")) for name in names}
        run.write_text("metrics.jsonl", "".join(json.dumps({"variant": name, **record}) + "\n"
                                                for name in names for record in records[name]))
        plot_variants(records, run.path("loss.png"), title=str(run.out_dir))
        print(format_table(results), file=sys.stderr)
    return summarise(results, figures, rank_by)


# A configuration's list of variants: at least one, none twice.
def check_variants(name: str, variants: Sequence) -> None:
    """`ValueError` naming the field `name` unless `variants` is non-empty and has no repeats."""
    if not variants or len(set(variants)) != len(variants):
        raise ValueError(f"{name} must be distinct and at least one, got {tuple(variants)}")


# A variant named when one run of several is reloaded.
def check_variant(variant: str | None, variants: Sequence) -> str:
    """`variant` if it is one of `variants`, else a `ValueError` listing them."""
    if variant not in [str(v) for v in variants]:
        raise ValueError(f"this run trained the variants {', '.join(map(str, variants))}, each in its own "
                         f"subdirectory: load one of them (the run directory / the variant), not {variant!r}")
    return variant


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ## The summary
#
# Each figure as a table keyed by variant, so that `result["val_loss"]` reads as the comparison itself.
def summarise(results: dict[str, dict], figures: Sequence[str] = (), rank_by: str | None = "val_loss") -> dict:
    """Figures keyed by variant, the best variant by `rank_by`, and the total wall time."""
    summary = {key: {name: result.get(key) for name, result in results.items()}
               for key in (*SUMMARY_KEYS, *figures)}
    if rank_by is not None:
        scores = {name: result[rank_by] for name, result in results.items() if result.get(rank_by) is not None}
        summary["best"] = min(scores, key=scores.get) if scores else None
    summary["wall_s"] = sum(result.get("wall_s", 0.0) for result in results.values())
    return summary


def format_table(results: dict[str, dict]) -> str:
    """The variants' losses, sizes and speeds as a text table."""
    width = max(len("variant"), *map(len, results))
    lines = [f"{'variant':<{width}}  {'val_loss':>8}  {'train_loss':>10}  {'parameters':>10}  {'tokens/s':>9}"]
    for name, r in results.items():
        val = f"{r['val_loss']:.4f}" if r.get("val_loss") is not None else "-"
        lines.append(f"{name:<{width}}  {val:>8}  {r['train_loss']:>10.4f}  {r['parameters']:>10,}  "
                     f"{r['tokens_per_s']:>9,.0f}")
    return "\n".join(lines)


# ## The plot
#
# One colour per variant: validation losses as lines with markers, training losses as faint lines. The first steps
# fall from the loss of a uniform guess, so a second panel zooms in on the second half of training, where the
# variants part.
def plot_variants(records: dict[str, list[dict]], path: Path, title: str = "") -> None:
    """Validation (and training) loss against step for every variant, saved as a PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=120)
    whole, zoom = figure.subplots(1, 2)
    last_step = max((r["step"] for rows in records.values() for r in rows), default=0)
    for ax, first_step in ((whole, 0), (zoom, last_step // 2)):
        for i, (name, rows) in enumerate(records.items()):
            color = f"C{i % 10}"
            rows = [r for r in rows if r["step"] >= first_step]
            train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
            val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
            if train:
                ax.plot(*zip(*train), "-", color=color, alpha=0.3, linewidth=0.8)
            if val:
                ax.plot(*zip(*val), "o-", color=color, markersize=3, label=name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    whole.set_ylabel("loss (validation; faint: training)")
    whole.set_title(title, fontsize=8)
    zoom.set_title(f"from step {last_step // 2}", fontsize=8)
    whole.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)

"""
---
title: Experiment machinery
summary: The data, trainer, command line and multi-process support shared by every experiment.
---

# Experiment machinery

Every module of [`labml_nn.transformers`](/transformers/index.md) runs as an experiment,
`python -m labml_nn.transformers.<module>`. What they have in common lives here, so that each
experiment file is short: a configuration dataclass, a model factory, and a `main`.

* [Data](/experiments/data.md): Tiny Shakespeare, downloaded once and checked, a character tokenizer,
  random contiguous blocks as batches.
* [Trainer](/experiments/trainer.md): AdamW with warm-up and cosine decay, clipping, gradient accumulation,
  mixed precision, evaluation, metrics and plots, atomic checkpoints that resume exactly, a Ctrl-C checkpoint
  and a guard against non-finite losses.
* [Command line](/experiments/cli.md): one set of options for every experiment, generated from the
  configuration dataclasses, with presets and `--resume`; how to write a new experiment.
* [Several processes](/experiments/distributed.md): the same commands under `torchrun` with
  DistributedDataParallel.

The command line, the progress bar and the plots need extra packages:

```bash
pip install 'labml_nn[experiments]'
```

A run on a laptop CPU, then its files:

```bash
python -m labml_nn.transformers.gpt --preset baby --device cpu
ls runs/gpt/*/   # config.json  metrics.jsonl  loss.png  checkpoint.pt  result.json  ...
```

Continue an interrupted run, exactly where it stopped:

```bash
python -m labml_nn.transformers.gpt --resume runs/gpt/20250101-120000
```

Train on eight GPUs of one machine:

```bash
torchrun --standalone --nproc_per_node=8 -m labml_nn.transformers.experiments.gpt
```
"""

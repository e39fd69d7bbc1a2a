"""
---
title: Experiments
summary: One runnable experiment per module, built on the shared trainer in labml_nn.experiments.
---

# Experiments

Each module of [`labml_nn.transformers`](../index.md) runs as an experiment with
`python -m labml_nn.transformers.<module>`; the experiment itself lives here.
"""

"""
---
title: Experiments
summary: One runnable experiment per module, built on the shared trainer in labml_nn.experiments, each ending with a result a person can judge.
---

# Experiments

Each module of [`labml_nn.transformers`](/transformers/index.md) runs as an experiment with
`python -m labml_nn.transformers.<module>`; the experiment itself lives here. They run on a laptop CPU in
minutes (the language models at [the baby size](/experiments/char_lm.md#baby_model)) and on a GPU as they are.

| command | what it shows |
|---|---|
| [`python -m labml_nn.transformers.utils`](/transformers/experiments/utils.md) | the causal mask's leak test: zero gradient from later positions with it, and a model that copies the answer without it |
| [`python -m labml_nn.transformers.mha`](/transformers/experiments/mha.md) | what the attention heads of a small GPT look at, as heat maps |
| [`python -m labml_nn.transformers.positional_encoding`](/transformers/experiments/positional_encoding.md) | the sinusoids drawn; fixed, learned and no positions compared |
| [`python -m labml_nn.transformers.rope`](/transformers/experiments/rope.md) | rotary against sinusoidal positions, inside and beyond the training context |
| [`python -m labml_nn.transformers.feed_forward`](/transformers/experiments/feed_forward.md) | ReLU, GELU, GLU, GEGLU and SwiGLU at equal parameter count |
| [`python -m labml_nn.transformers.models`](/transformers/experiments/models.md) | an encoder-decoder learns to reverse digit strings, decoded greedily and with beam search |
| [`python -m labml_nn.transformers.configs`](/transformers/experiments/configs.md) | any transformer the command line describes, as a language model |
| [`python -m labml_nn.transformers.gpt`](/transformers/experiments/gpt.md) | a GPT trained on Tiny Shakespeare, and its samples |
| [`python -m labml_nn.transformers.label_smoothing_loss`](/transformers/experiments/label_smoothing_loss.md) | label smoothing's effect on accuracy and calibration |
| [`python -m labml_nn.transformers.llama`](/transformers/experiments/llama.md) | a small Llama 3.1, generation with and without the key/value cache; or one of Meta's checkpoints |
| [`python -m labml_nn.transformers.from_scratch.<chapter>`](/transformers/from_scratch/index.md) | the learning track from a bigram to a GPT, six chapters, each its own experiment with its own small loop, in PyTorch and in JAX/Flax |

Every experiment takes the same options (`--device`, `--max-steps`, `--seed`, `--out`, `--preset`, `--resume`,
`--help` and the fields of its configuration, see [the command line](/experiments/cli.md)) and writes
`config.json`, `metrics.jsonl`, `loss.png` and `result.json` into its run directory, `runs/<module>/<timestamp>`.
Those that compare variants train each in a subdirectory of the run ([comparing variants](/experiments/compare.md)).
"""

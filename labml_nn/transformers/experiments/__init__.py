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
| [`python -m labml_nn.transformers.bert`](/transformers/experiments/bert.md) | a small BERT pretrained on masked characters, then fine-tuned to name the speaker of a speech, against the same classifier from scratch |
| [`python -m labml_nn.transformers.llama`](/transformers/experiments/llama.md) | a small Llama 3.1, generation with and without the key/value cache; or one of Meta's checkpoints |
| [`python -m labml_nn.transformers.flash_attention`](/transformers/experiments/flash_attention.md) | peak memory and time of attention's forward and backward pass: the explicit path (quadratic memory), FlashAttention in plain PyTorch and SDPA (linear) |
| [`python -m labml_nn.transformers.t5`](/transformers/experiments/t5.md) | a small T5 pretrained by span corruption, the spans it fills in, and relative position biases against learned absolute positions on longer texts |
| [`python -m labml_nn.transformers.moe`](/transformers/experiments/moe.md) | a dense GPT against the same GPT with mixtures of experts; the experts' load with and without the balancing loss; a capacity sweep |
| [`python -m labml_nn.transformers.llava`](/transformers/experiments/llava.md) | LLaVA's training stages on shapes it draws itself: caption exact-match and answer accuracy on held-out images, for seen and unseen colour-shape pairs |
| [`python -m labml_nn.transformers.from_scratch.<chapter>`](/transformers/from_scratch/index.md) | the learning track from a bigram to a GPT, six chapters, each its own experiment with its own small loop, in PyTorch and in JAX/Flax |

Every experiment takes the same options (`--device`, `--max-steps`, `--seed`, `--out`, `--preset`, `--resume`,
`--help` and the fields of its configuration, see [the command line](/experiments/cli.md)) and writes
`config.json`, `metrics.jsonl`, `loss.png` and `result.json` into its run directory, `runs/<module>/<timestamp>`.
Those that compare variants train each in a subdirectory of the run ([comparing variants](/experiments/compare.md)).

## Using a trained model

[`load_run`](/experiments/char_lm.md#load_run) rebuilds the model of a finished language-model run from its
directory (or from a variant's subdirectory, such as `runs/rope/<timestamp>/rope`), with the trained weights and
the run's tokenizer, ready to generate:

```python
from labml_nn.experiments.char_lm import load_run

trained = load_run("runs/gpt/20261205-101500")
print(trained.generate("ROMEO:", max_new_tokens=200, temperature=0.8))
logits = trained.model(trained.tokenizer.encode("ROMEO:")[None])  # [1, 6, n_vocab]
```

A run stopped by Ctrl-C or SIGTERM continues with `--resume <run directory>`, and `--tensorboard` also writes
its metrics for TensorBoard (`pip install 'labml_nn[tensorboard]'`, then `tensorboard --logdir runs`).
"""

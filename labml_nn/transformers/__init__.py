r"""
---
title: Transformers
summary: A tour of the annotated transformer modules in reading order, from attention masks to GPT and Llama.
---

# Transformers

A transformer is a stack of two alternating operations on a sequence of vectors: **attention**, in which
every position gathers information from the positions it may see, and a **position-wise feed-forward
network**, which transforms each position on its own. Everything else (embeddings, positional
information, normalisation, residual connections, the output head) is there to make that stack
trainable and to tell it where each token sits.

The modules below build one up from its parts. Each page is the source file itself: the notes and
equations on the left, the code they describe on the right. If you are new to transformers, start with
[From a bigram to a GPT](/transformers/from_scratch/index.md), six short chapters (in PyTorch and in
JAX/Flax) that add one idea at a time. Then read the modules in this order:

1. [Masks and helpers](/transformers/utils.md): which positions may attend to which, with `True`
   meaning "may attend".
2. [Multi-head attention](/transformers/mha.md):
   $\text{softmax}\big(QK^\top/\sqrt{d_k}\big)V$, several heads at once, grouped-query attention, a
   key/value cache, and PyTorch's fused kernels beside the explicit computation.
3. [Sinusoidal positional encodings](/transformers/positional_encoding.md): attention is blind to order,
   so "Attention Is All You Need" adds $\sin$ and $\cos$ waves of different frequencies to the embeddings.
4. [Rotary positional embeddings](/transformers/rope/index.md): instead of adding positions, rotate
   queries and keys so that their dot product depends only on the relative position.
5. [Feed-forward networks](/transformers/feed_forward.md): the position-wise MLP and its gated variants
   (GLU, GEGLU, SwiGLU).
6. [The transformer](/transformers/models.md): embeddings, pre-norm and post-norm layers, the encoder,
   the decoder, and greedy and beam-search decoding.
7. [Configurations](/transformers/configs.md): one validated dataclass that builds any of these models and
   generates the experiments' command line.
8. [GPT](/transformers/gpt/index.md): a decoder-only language model with tied embeddings, GPT-2
   initialisation and cached generation.
9. [Label smoothing](/transformers/label_smoothing_loss.md): cross-entropy against softened targets, and
   how the Annotated Transformer's variant differs.
10. [Llama 3.1](/transformers/llama/index.md): how the classic transformer became a modern one: RMSNorm,
    SwiGLU, grouped-query attention, scaled rotary embeddings, and a key/value cache, loading Meta's
    checkpoints.
11. [Loading Hugging Face checkpoints](/transformers/hf_checkpoints.md): one strict name map behind every
    family's `load_hf`.
12. [BERT](/transformers/bert/index.md): the encoder alone, masked-language-model pretraining, token types and a
    classification head.
13. [T5](/transformers/t5/index.md): an encoder-decoder with relative position biases, a scale-only layer norm,
    attention without $1/\sqrt{d}$, and span corruption.
14. [Mixture of experts](/transformers/moe/index.md): routers, the load-balancing loss, capacity and
    dropped tokens, shared experts, expert parallelism over `torch.distributed`, and
    [Mixtral](/transformers/moe/mixtral.md), loading Hugging Face's checkpoints.
15. [LLaVA](/transformers/llava/index.md): a vision transformer, a projector and the Llama: how an image becomes
    tokens that a language model reads.
16. [FlashAttention](/transformers/flash_attention/index.md): exact attention in tiles with the online softmax,
    and a backward pass that recomputes instead of storing the attention matrix.
17. [Scaling out](/transformers/parallel/index.md): Megatron-LM's tensor and sequence parallelism written out
    on `torch.distributed`, the same with DTensor, FSDP2, activation checkpointing, sharded checkpoints, and the
    memory plan of Llama 3.1 8B to 405B.

## Running the experiments

Every module runs as an experiment that trains or measures something and writes its results, metrics and
plots to `runs/<module>/<timestamp>/`:

```bash
python -m labml_nn.transformers.gpt --preset baby
python -m labml_nn.transformers.configs --positional rope --ffn-activation swiglu
python -m labml_nn.transformers.mha --help
```

The experiments share one [trainer](/experiments/trainer.md) and one [data loader](/experiments/data.md).

## Conventions

* Tensors are batch-first, `[batch, seq, d_model]`; inside attention they are
  `[batch, heads, seq, d_head]`.
* Masks are boolean and `True` means "may attend", as in `F.scaled_dot_product_attention`.
* Every module is tested against an independent reference: PyTorch's own modules, the paper's formula
  computed another way, or a plain loop in float64.
"""

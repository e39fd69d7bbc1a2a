"""
---
title: labml_nn
summary: Annotated PyTorch implementations of neural networks, starting with transformers.
---

# labml_nn

Annotated PyTorch implementations: every module reads as a chapter, with the
notes and equations beside the code that computes them.
See [`labml_nn.transformers`](transformers/index.md).
"""

__version__ = "0.5.0"

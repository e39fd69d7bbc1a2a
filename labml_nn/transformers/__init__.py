"""
---
title: Transformers
summary: A tour of the annotated transformer modules, in reading order.
---

# Transformers

The modules of this section, in reading order.
"""

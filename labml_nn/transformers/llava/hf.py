r"""
---
title: LLaVA from Hugging Face checkpoints
summary: Load Hugging Face's LlavaForConditionalGeneration and CLIPVisionModel checkpoints strictly, reusing the Llama loader's rows and its rotate-half permutation.
---

# LLaVA from Hugging Face checkpoints

A Hugging Face LLaVA directory holds `config.json`, with a `vision_config` (CLIP's field names, which
[`VisionConfig`](/transformers/llava/index.md#VisionConfig) has too), a `text_config` (a Llama's) and a few fields
of its own, and `model.safetensors`. The loader is three tables walked strictly by
[`hf_checkpoints`](/transformers/hf_checkpoints.md):

* the vision tower's rows, [`vision_rows`](#vision_rows), below;
* the projector's, two linear layers under the same names;
* the language model's, [the Llama loader's own rows](/transformers/llama/hf.md#llama_rows) with their names
  moved under the language model's prefix. They carry the permutation of the query and key weights from
  Hugging Face's rotate-half pairs to Meta's interleaved ones, shared with the Llama and Mixtral loaders.

| ours | theirs (CLIP) |
|---|---|
| `patch_embedding.weight` | `embeddings.patch_embedding.weight` |
| `class_embedding` | `embeddings.class_embedding` |
| `position_embedding` | `embeddings.position_embedding.weight` |
| `pre_norm` | `pre_layrnorm` |
| `layers.{i}.self_attn.query`, `key`, `value`, `output` | `encoder.layers.{i}.self_attn.q_proj`, `k_proj`, `v_proj`, `out_proj` |
| `layers.{i}.norm_self_attn`, `norm_ff` | `encoder.layers.{i}.layer_norm1`, `layer_norm2` |
| `layers.{i}.feed_forward.layer1`, `layer2` | `encoder.layers.{i}.mlp.fc1`, `fc2` |
| `post_norm` | `post_layernorm` |

## Where the tensors are

The prefixes have moved between versions of `transformers`. Checkpoints on the Hub (written by version 4) and
files written by version 5's `save_pretrained` name them `vision_tower.` (or `vision_tower.vision_model.`),
`multi_modal_projector.`, `language_model.model.` and `language_model.lm_head.`; version 5's model holds them as
`model.vision_tower.`, `model.multi_modal_projector.`, `model.language_model.` and `lm_head.`. The loader finds
which layout a file uses from where its class token is, and then requires every other name in the same layout.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from labml_nn.transformers.hf_checkpoints import (HF_BOOKKEEPING_KEYS, Row, config_from_dict, load_table,
                                                  read_config, read_tensors)
from labml_nn.transformers.llama.hf import args_from_hf, llama_rows

__all__ = ["vision_rows", "vision_config_from_hf", "load_clip_vision_hf", "load_hf"]


# ## The vision tower's rows
#
# `ours` and `theirs` are the prefixes of our [`VisionTransformer`](/transformers/llava/index.md#VisionTransformer)
# and of their CLIP vision model. The position ids that some files hold are recomputed, read and dropped.
def vision_rows(n_layers: int, ours: str = "", theirs: str = "vision_model.") -> list[Row]:
    """The name map of CLIP's vision transformer."""
    rows = [Row(f"{ours}patch_embedding.weight", f"{theirs}embeddings.patch_embedding.weight"),
            Row(f"{ours}class_embedding", f"{theirs}embeddings.class_embedding"),
            Row(f"{ours}position_embedding", f"{theirs}embeddings.position_embedding.weight"),
            Row((), f"{theirs}embeddings.position_ids", note="the positions 0 ... patches", optional=True)]
    for norm, their_norm in (("pre_norm", "pre_layrnorm"), ("post_norm", "post_layernorm")):
        rows += [Row(f"{ours}{norm}.{p}", f"{theirs}{their_norm}.{p}") for p in ("weight", "bias")]
    pairs = [("self_attn.query", "self_attn.q_proj"), ("self_attn.key", "self_attn.k_proj"),
             ("self_attn.value", "self_attn.v_proj"), ("self_attn.output", "self_attn.out_proj"),
             ("norm_self_attn", "layer_norm1"), ("norm_ff", "layer_norm2"),
             ("feed_forward.layer1", "mlp.fc1"), ("feed_forward.layer2", "mlp.fc2")]
    for i in range(n_layers):
        for our, their in pairs:
            rows += [Row(f"{ours}layers.{i}.{our}.{p}", f"{theirs}encoder.layers.{i}.{their}.{p}")
                     for p in ("weight", "bias")]
    return rows


# ## The vision configuration
#
# `CLIPVisionConfig`'s fields are ours; the projection to CLIP's joint text-image space (`projection_dim`) is not
# part of the vision tower, and the dropouts and initialisation do not change the forward pass in evaluation.
def vision_config_from_hf(config: dict, path: str | Path):
    from labml_nn.transformers.llava import VisionConfig
    return config_from_dict(VisionConfig, config, path, ignored=("projection_dim", "attention_dropout", "dropout",
                                                                 "initializer_range", "initializer_factor"))


def load_clip_vision_hf(model_dir: str | Path):
    """The [`VisionTransformer`](/transformers/llava/index.md#VisionTransformer) of a Hugging Face
    `CLIPVisionModel` directory."""
    from labml_nn.transformers.llava import VisionTransformer
    config, path = read_config(model_dir)
    model = VisionTransformer(vision_config_from_hf(config, path))
    tensors, source = read_tensors(model_dir)
    # Version 4 of `transformers` writes the tower under `vision_model.`, version 5 at the top level.
    theirs = "vision_model." if "vision_model.embeddings.class_embedding" in tensors else ""
    load_table(model, vision_rows(model.config.num_hidden_layers, "", theirs), tensors, source)
    return model.eval()


# ## Moving the Llama's rows
#
# The Llama loader's rows name the Hugging Face tensors `model.*` and `lm_head.weight` and ours at the top level;
# here both sides move under their prefixes.
def _moved(rows: list[Row], ours: str, text: str, head: str) -> list[Row]:
    def theirs(name: str) -> str:
        return head + name[len("lm_head."):] if name.startswith("lm_head.") else text + name[len("model."):]
    return [dataclasses.replace(row, ours=tuple(ours + name for name in row.our_names),
                                theirs=tuple(theirs(name) for name in row.their_names)) for row in rows]


# The layouts: (vision, projector, language model, output head) prefixes.
LAYOUTS = [("vision_tower.", "multi_modal_projector.", "language_model.model.", "language_model.lm_head."),
           ("vision_tower.vision_model.", "multi_modal_projector.", "language_model.model.", "language_model.lm_head."),
           ("model.vision_tower.", "model.multi_modal_projector.", "model.language_model.", "lm_head."),
           ("model.vision_tower.vision_model.", "model.multi_modal_projector.", "model.language_model.", "lm_head.")]

# Fields of `LlavaConfig` that do not change the model: the processor's count of image tokens and the
# ids of padding.
HARMLESS = frozenset({"image_seq_length", "pad_token_id", "ignore_index"})


# ## Loading
def load_hf(model_dir: str | Path, **overrides):
    """The [`Llava`](/transformers/llava/index.md#Llava) of a Hugging Face `LlavaForConditionalGeneration`
    directory (`config.json` and `model.safetensors`), in float32."""
    from labml_nn.transformers.llama import ModelArgs
    from labml_nn.transformers.llava import Llava
    config, path = read_config(model_dir)
    config = {key: value for key, value in config.items() if key not in HF_BOOKKEEPING_KEYS | HARMLESS}

    def expect(name: str, allowed, meaning: str):
        value = config.pop(name, allowed[0])
        if value not in allowed:
            raise ValueError(f"{path}: {name}={value!r} is not supported: {meaning}")

    for name in ("vision_config", "text_config"):
        if not isinstance(config.get(name), dict):
            raise ValueError(f"{path}: missing field {name!r}")
    vision = vision_config_from_hf(config.pop("vision_config"), f"{path} (vision_config)")
    text, tied, rest = args_from_hf(config.pop("text_config"), f"{path} (text_config)")
    if rest:
        raise ValueError(f"{path}: unknown field(s) {sorted(rest)} in text_config")
    image_token_id = config.pop("image_token_id", config.pop("image_token_index", None))
    if image_token_id is None:
        raise ValueError(f"{path}: missing field 'image_token_index'")
    config.pop("image_token_index", None)
    feature_layer = config.pop("vision_feature_layer", -2)
    if not isinstance(feature_layer, int):
        raise ValueError(f"{path}: vision_feature_layer={feature_layer!r} is not supported: one layer's features")
    expect("vision_feature_select_strategy", ["default"], "the class token is dropped ('full' keeps it)")
    expect("projector_hidden_act", ["gelu"], "the projector is linear, GELU, linear")
    expect("multimodal_projector_bias", [True], "the projector's layers have biases")
    tied = config.pop("tie_word_embeddings", tied) or tied
    if config:
        raise ValueError(f"{path}: unknown field(s) {sorted(config)} for a LLaVA checkpoint")
    try:
        model = Llava(vision, ModelArgs(**{**text, **overrides}), image_token_id=image_token_id,
                      vision_feature_layer=feature_layer)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error
    lm = model.language_model
    if tied:
        lm.output.weight = lm.tok_embeddings.weight
    tensors, source = read_tensors(model_dir)
    layout = next((layout for layout in LAYOUTS if f"{layout[0]}embeddings.class_embedding" in tensors), LAYOUTS[0])
    vision_prefix, projector_prefix, text_prefix, head_prefix = layout
    rows = vision_rows(vision.num_hidden_layers, "vision.", vision_prefix)
    rows += [Row(f"projector.{layer}.{p}", f"{projector_prefix}{layer}.{p}")
             for layer in ("linear_1", "linear_2") for p in ("weight", "bias")]
    rows += _moved(llama_rows(lm.params.n_layers, lm.params.n_heads, lm.params.n_kv_heads, tied=tied),
                   "language_model.", text_prefix, head_prefix)
    load_table(model, rows, tensors, source)
    return model.eval()

"""The Llama package's Hugging Face loader against Hugging Face's own `LlamaForCausalLM` (test-only reference):
tiny random models saved with `save_pretrained`, every 1-D parameter perturbed, logits compared in float32."""
import json

import pytest
import torch

from labml_nn.transformers.llama import load_hf
from labml_nn.transformers.llama.hf import unpermute_rotate_half

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

CONFIG = dict(vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5)
LLAMA3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def save_tiny_llama(directory, seed=0, **config):
    """A random `LlamaForCausalLM` with its norm gains perturbed, saved; returns the reference model."""
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**CONFIG, **config})).float().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.3 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    return model


def compare_logits(reference, ours):
    # Two sequences, the second right-padded: Hugging Face masks its padding, ours is causal, and the logits of
    # the real tokens must agree.
    tokens = torch.randint(0, CONFIG["vocab_size"], (2, 11), generator=torch.Generator().manual_seed(3))
    attention_mask = torch.ones_like(tokens)
    attention_mask[1, 7:] = 0
    with torch.no_grad():
        expected = reference(input_ids=tokens, attention_mask=attention_mask).logits
        got = ours(tokens)
    keep = attention_mask.bool()
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [{}, {"rope_parameters": LLAMA3}, {"tie_word_embeddings": True},
                                    {"num_key_value_heads": 4, "rope_parameters": {"rope_type": "default",
                                                                                   "rope_theta": 500000.0}}],
                         ids=["default", "llama3-scaling", "tied", "mha-theta"])
def test_load_hf_matches_transformers(tmp_path, config):
    reference = save_tiny_llama(tmp_path, **config)
    ours = load_hf(tmp_path, max_batch_size=2)
    assert ours.params.max_seq_len == CONFIG["max_position_embeddings"]
    if config.get("rope_parameters", {}).get("rope_type") == "llama3":
        assert ours.params.use_scaled_rope and ours.params.rope_original_context == 64
    if config.get("tie_word_embeddings"):
        assert ours.output.weight is ours.tok_embeddings.weight
    compare_logits(reference, ours)


def test_load_hf_cached_generation_matches_full_forward(tmp_path):
    save_tiny_llama(tmp_path, rope_parameters=LLAMA3)
    model = load_hf(tmp_path, max_batch_size=2, max_seq_len=16)
    tokens = torch.randint(0, CONFIG["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(tokens)
    steps = [model.forward_inference(tokens[:, :4], 0)] + \
        [model.forward_inference(tokens[:, i:i + 1], i) for i in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_unpermute_against_conversion_script_permutation():
    # The permutation of Hugging Face's conversion script (Meta to Hugging Face), written as it is there; ours
    # must invert it.
    n_heads, head_dim, dim = 3, 8, 5
    meta = torch.randn(n_heads * head_dim, dim)
    hf = meta.view(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(n_heads * head_dim, dim)
    torch.testing.assert_close(unpermute_rotate_half(n_heads)(hf), meta, rtol=0, atol=0)


def edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("changes, message", [
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}}, "'yarn' is not implemented"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4, "factor": 2.0}}, "low_freq_factor"),
    ({"head_dim": 16}, "head_dim"),
    ({"some_new_field": 1}, "some_new_field"),
    ({"intermediate_size": 48}, "shape"),
])
def test_load_hf_rejects_unsupported(tmp_path, changes, message):
    save_tiny_llama(tmp_path)
    edit_config(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        load_hf(tmp_path)


def test_load_hf_is_strict_about_tensors(tmp_path):
    from safetensors.torch import load_file, save_file
    save_tiny_llama(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    save_file({**tensors, "model.layers.0.extra.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="model.layers.0.extra.weight"):
        load_hf(tmp_path)
    del tensors["model.layers.1.post_attention_layernorm.weight"]
    save_file(tensors, path)
    with pytest.raises(ValueError, match="post_attention_layernorm"):
        load_hf(tmp_path)

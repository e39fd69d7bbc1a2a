"""Mixtral against Hugging Face's `MixtralForCausalLM` (test-only reference): tiny random models, every 1-D parameter
perturbed, saved with `save_pretrained` and loaded with `load_hf`; cached generation; the training loss."""
import json

import pytest
import torch
import torch.nn.functional as F

from labml_nn.transformers.llama import TransformerBlock
from labml_nn.transformers.moe import load_balancing_loss
from labml_nn.transformers.moe.mixtral import Mixtral, MixtralArgs, MixtralBlock, load_hf

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

CONFIG = dict(vocab_size=53, hidden_size=32, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=32,
              rms_norm_eps=1e-5, router_aux_loss_coef=0.02)


def save_tiny_mixtral(directory, **config):
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(transformers.MixtralConfig(**{**CONFIG, **config})).float().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.3 * torch.randn_like(parameter))
            else:
                # Larger router logits than the default initialisation, so that the choice of experts matters.
                parameter.mul_(3.0 if parameter.dim() == 2 and parameter.shape[0] == CONFIG["num_local_experts"]
                               else 1.0)
    model.save_pretrained(directory)
    return model


@pytest.mark.parametrize("config", [{}, {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}])
def test_load_hf_matches_transformers(tmp_path, config):
    reference = save_tiny_mixtral(tmp_path, **config)
    ours = load_hf(tmp_path, max_batch_size=2)
    assert isinstance(ours.layers[0], MixtralBlock) and isinstance(ours.layers[0], TransformerBlock)
    assert ours.params.n_experts == 4 and ours.params.aux_loss_coeff == pytest.approx(0.04)
    tokens = torch.randint(0, CONFIG["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones_like(tokens)
    attention_mask[1, 8:] = 0
    with torch.no_grad():
        expected = reference(input_ids=tokens, attention_mask=attention_mask).logits
        got = ours(tokens)
    keep = attention_mask.bool()
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=1e-5)


def test_cached_generation_equals_full_forward(tmp_path):
    save_tiny_mixtral(tmp_path)
    model = load_hf(tmp_path, max_batch_size=2, max_seq_len=16)
    tokens = torch.randint(0, CONFIG["vocab_size"], (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(tokens)
    steps = [model.forward_inference(tokens[:, :3], 0)] + \
        [model.forward_inference(tokens[:, i:i + 1], i) for i in range(3, 10)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_forward_loss_adds_each_layers_aux_loss():
    torch.manual_seed(3)
    args = MixtralArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=40, ffn_hidden_dim=24, n_experts=4,
                       top_k=2, aux_loss_coeff=0.1, z_loss_coeff=0.01, max_seq_len=16)
    model = Mixtral(args)
    inputs = torch.randint(0, 40, (2, 9))
    targets = torch.randint(0, 40, (2, 9))
    # The router inputs of each layer, caught on their way in, to compute the losses from the formulas here.
    router_inputs = []
    hooks = [layer.feed_forward.router.register_forward_hook(lambda m, a, out: router_inputs.append(out))
             for layer in model.layers]
    loss = model.forward_loss(inputs, targets)
    for hook in hooks:
        hook.remove()
    cross_entropy = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
    expected = cross_entropy
    for route in router_inputs:
        z = torch.log(torch.exp(route.logits.double()).sum(-1)).square().mean()
        expected = expected + 0.1 * load_balancing_loss(route.scores, route.indices, 4) + 0.01 * z
    torch.testing.assert_close(loss.double(), expected.double(), atol=1e-6, rtol=1e-6)
    loss.backward()
    assert model.layers[0].feed_forward.router.gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("changes, message", [({"sliding_window": 8}, "sliding_window"),
                                              ({"num_experts_per_tok": 5}, "top_k"),
                                              ({"hidden_act": "gelu"}, "hidden_act"),
                                              ({"num_local_experts": 3}, "gate.weight gives shape")])
def test_load_hf_rejects(tmp_path, changes, message):
    save_tiny_mixtral(tmp_path)
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        load_hf(tmp_path)

"""LLaVA against Hugging Face's `CLIPVisionModel` and `LlavaForConditionalGeneration` (test-only references: tiny
random models saved with `save_pretrained`, every 1-D parameter perturbed, float32), and its splicing, loss and
errors against hand-computed references."""

import pytest
import torch
import torch.nn.functional as F

from labml_nn.transformers.llama import ModelArgs
from labml_nn.transformers.llava import Llava, QuickGELU, VisionConfig, load_hf
from labml_nn.transformers.llava.hf import load_clip_vision_hf

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=16,
              patch_size=4, layer_norm_eps=1e-5)
TEXT = dict(vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5)
IMAGE = 63
PATCHES = 16


def perturb_and_save(model, directory):
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.3 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    return model.float().eval()


def save_tiny_llava(directory, seed=0, vision=None, text=None):
    torch.manual_seed(seed)
    config = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**{**VISION, **(vision or {})}),
                                      text_config=transformers.LlamaConfig(**{**TEXT, **(text or {})}),
                                      image_token_id=IMAGE)
    return perturb_and_save(transformers.LlavaForConditionalGeneration(config), directory)


def prompt(text_before, text_after, generator):
    before = torch.randint(0, IMAGE, (text_before,), generator=generator)
    after = torch.randint(0, IMAGE, (text_after,), generator=generator)
    return torch.cat([before, torch.full((PATCHES,), IMAGE), after])


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_vision_transformer_matches_clip(tmp_path, act):
    torch.manual_seed(0)
    reference = perturb_and_save(transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**VISION, hidden_act=act)),
                                 tmp_path)
    ours = load_clip_vision_hf(tmp_path)
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = reference(pixel_values=pixels, output_hidden_states=True)
        states = ours(pixels)
    assert len(states) == len(expected.hidden_states) == VISION["num_hidden_layers"] + 1
    for got, want in zip(states, expected.hidden_states):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.pooled(states), expected.pooler_output, atol=1e-5, rtol=1e-5)


def test_quick_gelu_is_not_gelu():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(QuickGELU()(x), x / (1 + torch.exp(-1.702 * x)))
    assert (QuickGELU()(x) - F.gelu(x)).abs().max() > 1e-2


def test_llava_logits_match_hf_with_padding(tmp_path):
    reference = save_tiny_llava(tmp_path)
    ours = load_hf(tmp_path, max_batch_size=2)
    g = torch.Generator().manual_seed(1)
    # Two prompts of different lengths, the shorter right-padded; Hugging Face masks the padding.
    first, second = prompt(3, 6, g), prompt(1, 2, g)
    input_ids = torch.zeros(2, len(first), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    input_ids[0], attention_mask[0] = first, 1
    input_ids[1, :len(second)], attention_mask[1, :len(second)] = second, 1
    pixels = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        expected = reference(input_ids=input_ids, pixel_values=pixels, attention_mask=attention_mask).logits
        got = ours(input_ids, pixels)
    keep = attention_mask.bool()
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=1e-5)


def test_greedy_generate_matches_hf(tmp_path):
    reference = save_tiny_llava(tmp_path, seed=2)
    ours = load_hf(tmp_path, max_batch_size=2)
    g = torch.Generator().manual_seed(4)
    input_ids = torch.stack([prompt(2, 3, g), prompt(2, 3, g)])
    pixels = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        expected = reference.generate(input_ids=input_ids, pixel_values=pixels, max_new_tokens=12, do_sample=False,
                                      eos_token_id=None, pad_token_id=0)
    got = ours.generate(input_ids, pixels, max_new_tokens=12)
    assert torch.equal(got, expected[:, input_ids.shape[1]:])


def tiny_llava(**kwargs):
    torch.manual_seed(0)
    vision = VisionConfig(**{**VISION, "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 2})
    text = ModelArgs(dim=16, n_layers=1, n_heads=2, vocab_size=20, max_seq_len=64, max_batch_size=2)
    return Llava(vision, text, image_token_id=19, **kwargs).eval()


def test_splice_places_every_patch_in_order():
    model = tiny_llava()
    input_ids = torch.tensor([[1] + [19] * 16 + [2, 3], [4, 5, 6] + [19] * 16])
    features = torch.randn(2, 16, 16)
    spliced = model.splice(input_ids, features)
    embeddings = model.language_model.tok_embeddings.weight
    for row in range(2):
        k = 0
        for position, token in enumerate(input_ids[row].tolist()):
            if token == 19:
                assert torch.equal(spliced[row, position], features[row, k])
                k += 1
            else:
                assert torch.equal(spliced[row, position], embeddings[token])
        assert k == 16


def test_splice_count_mismatch_names_both_numbers():
    model = tiny_llava()
    input_ids = torch.tensor([[1] + [19] * 16, [2] + [19] * 15 + [3]])
    with pytest.raises(ValueError, match=r"row 1 .* 15 image tokens .* 16 patches"):
        model(input_ids, torch.randn(2, 3, 16, 16))


def test_loss_ignores_image_and_prompt_positions():
    model = tiny_llava(projector="linear")
    input_ids = torch.tensor([[1] + [19] * 16 + [2, 3, 4, 5]])
    labels = input_ids.clone()
    labels[0, :19] = -100
    pixels = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        logits = model(input_ids, pixels)[0].double()
        # The answer tokens 4 and 5, at positions 19 and 20, are predicted by positions 18 and 19.
        expected = -(torch.log_softmax(logits[18], -1)[4] + torch.log_softmax(logits[19], -1)[5]) / 2
        got = model.forward_loss(input_ids, pixels, labels)
    torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=1e-6)


def test_bad_inputs():
    model = tiny_llava()
    input_ids = torch.tensor([[1] + [19] * 16])
    with pytest.raises(ValueError, match=r"height=16, width=16"):
        model(input_ids, torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"channels=3"):
        model(input_ids, torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"vocab_size=20"):
        model(torch.tensor([[25] + [19] * 16]), torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"image_token_id .* vocab_size=20"):
        Llava(model.vision.config, model.language_model.params, image_token_id=20)


def test_load_hf_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file
    save_tiny_llava(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    name = next(name for name in tensors if name.endswith("multi_modal_projector.linear_2.bias"))
    del tensors[name]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"no tensor '.*multi_modal_projector\.linear_2\.bias'"):
        load_hf(tmp_path)


def test_generate_encodes_the_image_once_and_matches_full_forward():
    model = tiny_llava()
    calls = []
    model.vision.register_forward_hook(lambda *_: calls.append(1))
    input_ids = torch.tensor([[1] + [19] * 16 + [2, 3]] * 2)
    pixels = torch.randn(2, 3, 16, 16)
    tokens = model.generate(input_ids, pixels, max_new_tokens=6)
    assert len(calls) == 1
    # The same tokens by full forward passes without the cache, one token at a time.
    sequence = input_ids
    with torch.no_grad():
        for _ in range(6):
            sequence = torch.cat([sequence, model(sequence, pixels)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(tokens, sequence[:, input_ids.shape[1]:])
    sampled = model.generate(input_ids, pixels, max_new_tokens=3, temperature=1.0,
                             generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 3) and ((sampled >= 0) & (sampled < 20)).all()


@pytest.mark.parametrize("layout", ["hub", "model-prefixed"])
def test_load_hf_reads_the_other_layouts(tmp_path, layout):
    from safetensors.torch import load_file, save_file
    reference = save_tiny_llava(tmp_path, seed=3)
    tensors = load_file(tmp_path / "model.safetensors")

    def rename(name):
        if layout == "hub":
            # Hugging Face Hub checkpoints written by transformers 4: the CLIP tower under `vision_model.`
            return name.replace("vision_tower.", "vision_tower.vision_model.")
        # transformers 5's module names
        return (name.replace("language_model.model.", "model.language_model.")
                .replace("language_model.lm_head.", "lm_head.")
                .replace("vision_tower.", "model.vision_tower.")
                .replace("multi_modal_projector.", "model.multi_modal_projector."))
    save_file({rename(k): v for k, v in tensors.items()}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = load_hf(tmp_path, max_batch_size=1)
    g = torch.Generator().manual_seed(2)
    input_ids, pixels = prompt(2, 3, g)[None], torch.randn(1, 3, 16, 16, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids, pixels), reference(input_ids=input_ids, pixel_values=pixels).logits,
                                   atol=1e-5, rtol=1e-5)

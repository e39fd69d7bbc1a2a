"""GPT-2 checkpoints: `load_hf` against Hugging Face's `GPT2LMHeadModel` with the same weights (every 1-D parameter
perturbed, a right-padded batch), old files' layout and buffers, and strict errors naming the file and the key."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from labml_nn.transformers.gpt import GPT, load_hf  # noqa: E402
from labml_nn.transformers.gpt.hf import GPT2Config, gpt2_table  # noqa: E402

VOCAB = 61


def reference_model(**overrides) -> "transformers.GPT2LMHeadModel":
    """A tiny random GPT-2 whose biases and layer-norm parameters are not at their initial 0 and 1, so that a
    mapping that drops or swaps them gives different logits; its weights are drawn wider than GPT-2's 0.02, so
    that the activations reach the range where the activation functions differ."""
    values = dict(vocab_size=VOCAB, n_positions=24, n_embd=32, n_layer=2, n_head=4, n_inner=48,
                  layer_norm_epsilon=1e-3, initializer_range=0.15, bos_token_id=0, eos_token_id=0)
    values.update(overrides)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**values))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter) * 0.5)
    return model.eval()


def save(model, path):
    model.save_pretrained(path)
    return path


def assert_same_logits(ours: GPT, theirs, tokens: torch.Tensor, lengths: list[int]) -> None:
    """Right-padded rows: HF gets the attention mask; ours needs none, as it is causal and padding comes last."""
    mask = (torch.arange(tokens.shape[1])[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        expected = theirs(input_ids=tokens, attention_mask=mask).logits
        got = ours(tokens)
    for row, length in enumerate(lengths):
        assert torch.allclose(got[row, :length], expected[row, :length], atol=1e-5, rtol=1e-5), \
            (got[row, :length] - expected[row, :length]).abs().max()
    # and the logits are far from trivially equal: they span a range much wider than the tolerance
    assert expected.std() > 0.5


@pytest.mark.parametrize("activation", ["gelu_new", "gelu", "relu"])
def test_logits_equal_hugging_faces_with_padding(tmp_path, activation):
    theirs = reference_model(activation_function=activation)
    ours = load_hf(save(theirs, tmp_path))
    assert isinstance(ours, GPT) and not ours.training
    assert ours.head.weight is ours.embed.embeddings.weight
    tokens = torch.randint(VOCAB, (3, 24))
    lengths = [24, 17, 5]
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0
    assert_same_logits(ours, theirs, tokens, lengths)


def test_gelu_new_needs_the_tanh_gelu(tmp_path):
    # The exact GELU in place of GPT-2's tanh approximation gives logits that differ by much more than 1e-5:
    # the option is needed, and the comparison above can tell.
    theirs = reference_model()
    ours = load_hf(save(theirs, tmp_path))
    for layer in ours.encoder.layers:
        layer.feed_forward.activation = torch.nn.GELU()
    tokens = torch.randint(VOCAB, (2, 24))
    with torch.no_grad():
        assert (ours(tokens) - theirs(input_ids=tokens).logits).abs().max() > 1e-4


def test_cached_generation_of_the_loaded_model_matches_hugging_faces_greedy_search(tmp_path):
    theirs = reference_model()
    ours = load_hf(save(theirs, tmp_path))
    prompt = torch.randint(VOCAB, (2, 4))
    got = ours.generate(prompt, 12, temperature=0.0)
    # Hugging Face's greedy loop written out: one full forward pass per new token
    tokens = prompt
    with torch.no_grad():
        for _ in range(12):
            tokens = torch.cat([tokens, theirs(input_ids=tokens).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(got, tokens)


def test_old_layout_without_prefix_with_attention_buffers_and_lm_head(tmp_path):
    # OpenAI's upload is a `GPT2Model` (no `transformer.` prefix) saved by an old `transformers`, with the causal
    # mask `attn.bias` and `attn.masked_bias` among the tensors; some files also carry the tied `lm_head.weight`.
    theirs = reference_model()
    tensors = {name.removeprefix("transformer."): tensor.clone() for name, tensor in theirs.state_dict().items()}
    tensors["lm_head.weight"] = tensors["wte.weight"].clone()
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 24, 24).tril()
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    config = theirs.config.to_dict()
    config["n_ctx"] = 24
    config["task_specific_params"] = {"text-generation": {"do_sample": True, "max_length": 50}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    safetensors_torch.save_file(tensors, str(tmp_path / "model.safetensors"))
    ours = load_hf(tmp_path)
    tokens = torch.randint(VOCAB, (2, 24))
    assert_same_logits(ours, theirs, tokens, [24, 24])

    # An untied `lm_head.weight` is not what the configuration says.
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1
    safetensors_torch.save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.safetensors.*'lm_head\.weight' differs"):
        load_hf(tmp_path)


def test_table_fills_every_tensor_of_ours_once():
    model = GPT(GPT2Config(vocab_size=VOCAB, n_positions=24, n_embd=32, n_layer=3, n_head=4)
                .to_transformer_configs())
    ours = [name for row in gpt2_table(3, 32) for name in row.our_names]
    assert len(ours) == len(set(ours))
    names = set(model.state_dict())
    assert set(ours) == names - {"head.weight"}


# ## Strictness

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    model = reference_model()
    save(model, path)
    return path, safetensors_torch.load_file(str(path / "model.safetensors")), json.loads((path / "config.json").read_text())


def write(path, tensors, config):
    path.mkdir(exist_ok=True)
    safetensors_torch.save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_missing_unexpected_and_misshaped_tensors_name_the_file_and_key(saved, tmp_path):
    _, tensors, config = saved
    missing = dict(tensors)
    del missing["transformer.h.1.ln_2.bias"]
    with pytest.raises(ValueError, match=r"model\.safetensors has no tensor 'transformer\.h\.1\.ln_2\.bias'"):
        load_hf(write(tmp_path / "missing", missing, config))

    unexpected = {**tensors, "transformer.h.0.attn.rotary.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"model\.safetensors has 1 tensor\(s\) that the model does not use: "
                                         r"'transformer\.h\.0\.attn\.rotary\.weight'"):
        load_hf(write(tmp_path / "unexpected", unexpected, config))

    misshaped = {**tensors, "transformer.h.0.mlp.c_fc.weight": torch.zeros(48, 32)}
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor transformer\.h\.0\.mlp\.c_fc\.weight gives "
                                         r"shape \[32, 48\] for our 'encoder\.layers\.0\.feed_forward\.layer1\.weight'"):
        load_hf(write(tmp_path / "misshaped", misshaped, config))

    # a configuration that does not match the file: one layer too many
    with pytest.raises(ValueError, match=r"has no tensor 'transformer\.h\.2\.ln_1\.weight'"):
        load_hf(write(tmp_path / "deeper", tensors, {**config, "n_layer": 3}))


@pytest.mark.parametrize("field, value, message", [
    ("activation_function", "quick_gelu", r"activation_function 'quick_gelu' is not supported"),
    ("activation_function", "swiglu", r"activation_function 'swiglu' is not supported"),
    ("scale_attn_weights", False, r"scale_attn_weights=False is not supported"),
    ("scale_attn_by_inverse_layer_idx", True, r"scale_attn_by_inverse_layer_idx=True is not supported"),
    ("add_cross_attention", True, r"add_cross_attention=True"),
    ("tie_word_embeddings", False, r"tie_word_embeddings=False"),
    ("n_ctx", 12, r"n_ctx \(12\) differs from n_positions \(24\)"),
    ("rotary_dim", 8, r"unknown field\(s\) \['rotary_dim'\]"),
    ("n_embd", 30, r"d_model \(30\) must be divisible by n_heads \(4\)"),
    ("layer_norm_epsilon", -1.0, r"norm_eps"),
    ("attn_pdrop", 0.2, r"resid_pdrop \(0\.1\), embd_pdrop \(0\.1\) and attn_pdrop \(0\.2\) differ"),
])
def test_config_errors_name_the_file_and_field(saved, tmp_path, field, value, message):
    _, tensors, config = saved
    with pytest.raises(ValueError, match=r"config\.json: .*" + message):
        load_hf(write(tmp_path / "bad", tensors, {**config, field: value}))


def test_dropout_chooses_one_rate_when_the_files_differ(saved, tmp_path):
    _, tensors, config = saved
    model = load_hf(write(tmp_path / "rates", tensors, {**config, "attn_pdrop": 0.2}), dropout=0.05)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.05}


def test_missing_files(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(saved[2]))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf(tmp_path)


# ## The pages' snippets run

@pytest.mark.parametrize("module", ["labml_nn.transformers.gpt.hf", "labml_nn.transformers.experiments.gpt"])
def test_page_snippet_runs_on_a_tiny_gpt2_sized_vocabulary(tmp_path, module):
    import importlib
    import re

    theirs = reference_model(vocab_size=50257, n_embd=8, n_layer=1, n_head=2, n_inner=None, n_positions=32)
    save(theirs, tmp_path)
    blocks = [block for block in re.findall(r"```python\n(.*?)```", importlib.import_module(module).__doc__, re.DOTALL)
              if 'load_hf("gpt2")' in block]
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0].replace('load_hf("gpt2")', f"load_hf({str(tmp_path)!r})"), module, "exec"), namespace)
    out = namespace["out"]
    assert out.shape[0] == 1 and 5 < out.shape[1] <= 25 and torch.equal(out[:, :5], namespace["tokens"])

"""BERT: parity with Hugging Face's BertForPreTraining, BertForSequenceClassification and MegatronBert (random tiny
configurations, every 1-D parameter perturbed, padding in the batch), the pre-norm ordering against Megatron's
formula written out here, mask_tokens' statistics, clear errors for bad configurations, inputs and checkpoints,
overfitting one batch, and the experiment's smoke run and dataset."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labml_nn.transformers.bert import (Bert, BertConfig, BertForPreTraining, BertForSequenceClassification,
                                        hf_name_map, load_hf, mask_tokens)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(vocab_size=53, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=24, type_vocab_size=3, pad_token_id=1)


def tiny_config(**overrides) -> BertConfig:
    return BertConfig(**{**TINY, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **overrides})


def batch_with_padding(vocab_size: int = 53, type_vocab_size: int = 3):
    """Three sequences of lengths 12, 7 and 3, padded to 12, with two segments each."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, vocab_size, (3, 12), generator=generator)
    attention_mask = torch.zeros(3, 12, dtype=torch.long)
    token_type_ids = torch.zeros(3, 12, dtype=torch.long)
    for i, length in enumerate((12, 7, 3)):
        attention_mask[i, :length] = 1
        input_ids[i, length:] = 1
        token_type_ids[i, length // 2:length] = torch.randint(1, type_vocab_size, (1,), generator=generator)
    return input_ids, token_type_ids, attention_mask


def perturb_1d_(model: torch.nn.Module) -> None:
    """Biases and norm gains away from Hugging Face's 0 and 1, so a mapping that drops or swaps them fails."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)


def hf_checkpoint(tmp_path: Path, hf_class_name: str, **config_overrides):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    hf_config_class = transformers.MegatronBertConfig if "Megatron" in hf_class_name else transformers.BertConfig
    hf_config = hf_config_class(**{**TINY, "hidden_act": "gelu", **config_overrides})
    torch.manual_seed(0)
    model = getattr(transformers, hf_class_name)(hf_config)
    perturb_1d_(model)
    model.eval()
    model.save_pretrained(tmp_path)
    return model


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-5) -> None:
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < atol, (ours - theirs).abs().max().item()


# ## Parity with Hugging Face

@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_pretraining_model_matches_hugging_face(tmp_path, hidden_act):
    reference = hf_checkpoint(tmp_path, "BertForPreTraining", hidden_act=hidden_act)
    model = load_hf(tmp_path)
    assert isinstance(model, BertForPreTraining) and not model.training
    assert model.config.hidden_act == hidden_act and model.config.pad_token_id == 1
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with torch.no_grad():
        hf = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        hf_body = reference.bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        mlm_logits, sentence_logits = model(input_ids, token_type_ids, attention_mask)
        sequence_output, pooled_output = model.bert(input_ids, token_type_ids, attention_mask)
    real = attention_mask.bool()
    # Padding positions' outputs are meaningless (and differ: see the page); only real tokens are compared.
    assert_close(sequence_output[real], hf_body.last_hidden_state[real])
    assert_close(pooled_output, hf_body.pooler_output)
    assert_close(mlm_logits[real], hf.prediction_logits[real])
    assert_close(sentence_logits, hf.seq_relationship_logits)


def test_defaults_without_token_types_or_mask_match_hugging_face(tmp_path):
    reference = hf_checkpoint(tmp_path, "BertForPreTraining")
    model = load_hf(tmp_path)
    input_ids = torch.randint(53, (2, 24))
    with torch.no_grad():
        hf = reference(input_ids=input_ids)
        mlm_logits, sentence_logits = model(input_ids)
    assert_close(mlm_logits, hf.prediction_logits)
    assert_close(sentence_logits, hf.seq_relationship_logits)


def test_body_loads_from_a_bert_model_checkpoint(tmp_path):
    reference = hf_checkpoint(tmp_path, "BertModel")
    model = load_hf(tmp_path, Bert)
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with torch.no_grad():
        hf = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        sequence_output, pooled_output = model(input_ids, token_type_ids, attention_mask)
    real = attention_mask.bool()
    assert_close(sequence_output[real], hf.last_hidden_state[real])
    assert_close(pooled_output, hf.pooler_output)


def test_sequence_classifier_matches_hugging_face(tmp_path):
    reference = hf_checkpoint(tmp_path, "BertForSequenceClassification", num_labels=5)
    model = load_hf(tmp_path, BertForSequenceClassification)
    assert model.num_labels == 5
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with torch.no_grad():
        hf = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).logits
        ours = model(input_ids, token_type_ids, attention_mask)
    assert_close(ours, hf)


def test_megatron_pre_norm_bert_matches_hugging_face(tmp_path):
    reference = hf_checkpoint(tmp_path, "MegatronBertForPreTraining")
    model = load_hf(tmp_path)
    assert model.config.pre_norm
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with torch.no_grad():
        hf = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        mlm_logits, sentence_logits = model(input_ids, token_type_ids, attention_mask)
    real = attention_mask.bool()
    assert_close(mlm_logits[real], hf.prediction_logits[real])
    assert_close(sentence_logits, hf.seq_relationship_logits)


def test_pytorch_model_bin_loads_too(tmp_path):
    reference = hf_checkpoint(tmp_path, "BertForPreTraining")
    from safetensors.torch import load_file
    tensors = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    model = load_hf(tmp_path)
    input_ids = torch.randint(53, (2, 10))
    with torch.no_grad():
        assert_close(model(input_ids)[0], reference(input_ids=input_ids).prediction_logits)


# ## Pre-norm: Megatron's ordering, written out
#
# $h^0 = E + P + T$ (no norm); per layer $a = h + \text{Attn}(\text{LN}_1 h)$, $h' = a + \text{FFN}(\text{LN}_2 a)$;
# a final LN. Computed here from the weights with plain tensor operations and an explicit softmax in float64.

def megatron_formula(model: Bert, input_ids, token_type_ids, attention_mask):
    config = model.config
    heads, d_head = config.num_attention_heads, config.hidden_size // config.num_attention_heads

    def ln(x, norm):
        return F.layer_norm(x, (config.hidden_size,), norm.weight, norm.bias, config.layer_norm_eps)

    def linear(x, layer):
        return x @ layer.weight.T + layer.bias

    e = model.embeddings
    seq = input_ids.shape[1]
    h = e.embeddings.weight[input_ids] + e.positional_encodings[:seq] + e.token_type_embeddings.weight[token_type_ids]
    keep = attention_mask.bool()[:, None, None, :]
    for layer in model.encoder.layers:
        attn = layer.self_attn
        x = ln(h, layer.norm_self_attn)
        q, k, v = (linear(x, p).view(*x.shape[:2], heads, d_head).transpose(1, 2)
                   for p in (attn.query, attn.key, attn.value))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(d_head)).masked_fill(~keep, float("-inf"))
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(h.shape)
        a = h + linear(context, attn.output)
        ff = layer.feed_forward
        h = a + linear(F.gelu(linear(ln(a, layer.norm_ff), ff.layer1)), ff.layer2)
    h = ln(h, model.encoder.norm)
    return h, torch.tanh(linear(h[:, 0], model.pooler))


def test_pre_norm_ordering_matches_megatrons_formula():
    model = Bert(tiny_config(pre_norm=True)).double().eval()
    perturb_1d_(model)
    assert isinstance(model.embeddings.norm, torch.nn.Identity)
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with torch.no_grad():
        sequence_output, pooled_output = model(input_ids, token_type_ids, attention_mask)
        expected_sequence, expected_pooled = megatron_formula(model, input_ids, token_type_ids, attention_mask)
    real = attention_mask.bool()
    assert_close(sequence_output[real], expected_sequence[real], atol=1e-12)
    assert_close(pooled_output, expected_pooled, atol=1e-12)
    # The post-norm model computes something else from the same weights.
    post = Bert(tiny_config()).double().eval()
    post.load_state_dict({**model.state_dict(), "embeddings.norm.weight": torch.ones(32, dtype=torch.float64),
                          "embeddings.norm.bias": torch.zeros(32, dtype=torch.float64)}, strict=False)
    with torch.no_grad():
        assert (post(input_ids, token_type_ids, attention_mask)[1] - expected_pooled).abs().max() > 1e-3


# ## Masks and padding

def test_padding_does_not_change_real_tokens_outputs_and_empty_rows_are_finite():
    model = BertForPreTraining(tiny_config()).eval()
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with torch.no_grad():
        padded = model.bert(input_ids, token_type_ids, attention_mask)[0]
        alone = model.bert(input_ids[2:, :3], token_type_ids[2:, :3])[0]
        assert_close(padded[2, :3], alone[0])
        # A row with no real token at all: zeros from the attention, never NaN
        empty = torch.zeros_like(attention_mask)
        outputs = model(input_ids, token_type_ids, empty)
    assert all(torch.isfinite(o).all() for o in outputs)


def test_boolean_attention_mask_equals_integer_mask():
    model = Bert(tiny_config()).eval()
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with torch.no_grad():
        a = model(input_ids, token_type_ids, attention_mask)[1]
        b = model(input_ids, token_type_ids, attention_mask.bool())[1]
    assert torch.equal(a, b)


# ## mask_tokens

def test_mask_tokens_statistics_and_labels():
    vocab, mask_id, specials = 50, 3, [0, 1, 2]
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, vocab, (2000, 1000), generator=generator)
    input_ids[:, 0], input_ids[:, -1], input_ids[::2, -100:] = 1, 2, 0
    inputs, labels = mask_tokens(input_ids, mask_token_id=mask_id, vocab_size=vocab, special_token_ids=specials,
                                 probability=0.15, generator=generator)
    special = input_ids < 3
    chosen = labels != -100
    # Labels: the original token exactly where chosen, -100 elsewhere; specials never chosen nor changed
    assert torch.equal(labels[chosen], input_ids[chosen])
    assert not chosen[special].any() and torch.equal(inputs[special], input_ids[special])
    assert torch.equal(inputs[~chosen], input_ids[~chosen])
    # The chosen fraction of the non-special positions: 15% within 4 standard deviations
    n = (~special).sum().item()
    assert abs(chosen.sum().item() / n - 0.15) < 4 * math.sqrt(0.15 * 0.85 / n)
    # Of the chosen: 80% [MASK], 10% another token, 10% the same token (a random token equals the original
    # with probability 1/vocab, so "same" is 0.1 + 0.1/vocab and "random" 0.1 - 0.1/vocab)
    m = chosen.sum().item()
    masked = (inputs[chosen] == mask_id).float().mean().item()
    same = (inputs[chosen] == input_ids[chosen]).float().mean().item()
    other = 1 - masked - same
    # Four standard deviations of a fraction p over the m chosen positions (about 0.003 for p = 0.8)
    sigma = lambda p: 4 * math.sqrt(p * (1 - p) / m)  # noqa: E731
    p_mask_random = 0.1 / vocab  # a random token that happens to be [MASK]
    assert abs(masked - (0.8 + p_mask_random)) < sigma(0.8)
    assert abs(same - (0.1 + 0.1 / vocab)) < sigma(0.1)
    assert abs(other - (0.1 - 0.2 / vocab)) < sigma(0.1)
    # The tolerance is tight enough to tell 80/10/10 from the 81/10/9 of two independent draws
    assert abs(masked - 0.81) > sigma(0.8) and abs(same - 0.09) > sigma(0.1)


def test_mask_tokens_is_repeatable_and_probability_extremes():
    input_ids = torch.randint(4, 30, (4, 16))
    kwargs = dict(mask_token_id=3, vocab_size=30, special_token_ids=[0, 1, 2])
    a = mask_tokens(input_ids, generator=torch.Generator().manual_seed(5), **kwargs)
    b = mask_tokens(input_ids, generator=torch.Generator().manual_seed(5), **kwargs)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    none = mask_tokens(input_ids, probability=0.0, **kwargs)
    assert torch.equal(none[0], input_ids) and (none[1] == -100).all()
    every = mask_tokens(input_ids, probability=1.0, **kwargs)
    assert torch.equal(every[1], input_ids)


# ## Bad input

@pytest.mark.parametrize("field, value, message", [
    ("hidden_act", "swish", "hidden_act"),
    ("num_attention_heads", 5, "divisible"),
    ("vocab_size", 0, "vocab_size"),
    ("hidden_dropout_prob", 1.0, "hidden_dropout_prob"),
    ("layer_norm_eps", 0.0, "layer_norm_eps"),
    ("pad_token_id", 53, "pad_token_id"),
])
def test_bad_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**{**TINY, field: value})


def test_config_json_drops_bookkeeping_and_rejects_unknown_fields(tmp_path):
    path = tmp_path / "config.json"
    good = {**TINY, "architectures": ["BertForMaskedLM"], "model_type": "bert", "transformers_version": "4.0",
            "initializer_range": 0.02, "position_embedding_type": "absolute", "use_cache": True}
    path.write_text(json.dumps(good))
    assert BertConfig.from_json(path) == BertConfig(**TINY)
    path.write_text(json.dumps({**good, "rotary_dim": 8}))
    with pytest.raises(ValueError, match=r"config\.json.*rotary_dim"):
        BertConfig.from_json(path)
    path.write_text(json.dumps({**good, "position_embedding_type": "relative_key"}))
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_json(path)
    path.write_text(json.dumps({**good, "hidden_act": "silu"}))
    with pytest.raises(ValueError, match=r"config\.json.*hidden_act"):
        BertConfig.from_json(path)


def test_bad_inputs_are_clear_errors():
    model = BertForPreTraining(tiny_config()).eval()
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    with pytest.raises(ValueError, match="token ids must be in"):
        model(input_ids + 53)
    with pytest.raises(ValueError, match="token ids must be in"):
        model(input_ids - 5)
    with pytest.raises(ValueError, match="token_type_ids must be in"):
        model(input_ids, token_type_ids + 3)
    with pytest.raises(ValueError, match="token_type_ids must be an integer tensor shaped like"):
        model(input_ids, token_type_ids[:, :5])
    with pytest.raises(ValueError, match=r"attention_mask must be \[batch, seq\]"):
        model(input_ids, token_type_ids, attention_mask[:, :5])
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="mask_token_id"):
        mask_tokens(input_ids, mask_token_id=-1, vocab_size=53, special_token_ids=[1])
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(input_ids, mask_token_id=3, vocab_size=53, special_token_ids=[1], probability=1.5)
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(tiny_config(), num_labels=0)


def rewrite_tensors(path: Path, change) -> None:
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(path / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(path / "model.safetensors"))


def test_bad_checkpoints_name_the_key(tmp_path):
    hf_checkpoint(tmp_path, "BertForPreTraining")
    key = "bert.encoder.layer.1.attention.output.LayerNorm.bias"
    rewrite_tensors(tmp_path, lambda t: t.pop(key))
    with pytest.raises(ValueError, match=rf"model\.safetensors has no tensor '{key}'"):
        load_hf(tmp_path)

    hf_checkpoint(tmp_path, "BertForPreTraining")
    rewrite_tensors(tmp_path, lambda t: t.update({"bert.encoder.layer.0.extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"does not use: 'bert\.encoder\.layer\.0\.extra\.weight'"):
        load_hf(tmp_path)

    hf_checkpoint(tmp_path, "BertForPreTraining")
    key = "bert.encoder.layer.0.intermediate.dense.weight"
    rewrite_tensors(tmp_path, lambda t: t.update({key: torch.zeros(40, 32)}))
    with pytest.raises(ValueError, match=rf"tensor {key} gives shape \[40, 32\]"):
        load_hf(tmp_path)

    hf_checkpoint(tmp_path, "BertForPreTraining")
    rewrite_tensors(tmp_path, lambda t: t.update({"cls.predictions.decoder.weight": torch.zeros(53, 32)}))
    with pytest.raises(ValueError, match="cls.predictions.decoder.weight"):
        load_hf(tmp_path)

    # A classifier's checkpoint is not a pretraining model's: its extra tensors are named.
    hf_checkpoint(tmp_path / "classifier", "BertForSequenceClassification")
    with pytest.raises(ValueError, match="cls.predictions"):
        load_hf(tmp_path / "classifier")


def test_name_map_fills_every_parameter_once():
    for model_class in (Bert, BertForPreTraining, BertForSequenceClassification):
        for pre_norm in (False, True):
            config = tiny_config(pre_norm=pre_norm)
            model = model_class(config)
            ours = [name for row in hf_name_map(config, model_class) for name in row.our_names]
            names = set(model.state_dict())
            # the tied decoder weight is the embedding table, filled under its other name
            names.discard("mlm_head.decoder.weight")
            assert sorted(ours) == sorted(names)


# ## Training

def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config())
    input_ids, token_type_ids, attention_mask = batch_with_padding()
    inputs, labels = mask_tokens(input_ids, mask_token_id=0, vocab_size=53, special_token_ids=[1], probability=0.3,
                                 generator=torch.Generator().manual_seed(0))
    next_sentence = torch.tensor([0, 1, 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        mlm_logits, sentence_logits = model(inputs, token_type_ids, attention_mask)
        loss = F.cross_entropy(mlm_logits.flatten(0, 1), labels.flatten()) + F.cross_entropy(sentence_logits,
                                                                                               next_sentence)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_tied_decoder_is_the_embedding_table():
    model = BertForPreTraining(tiny_config())
    assert model.mlm_head.decoder.weight is model.bert.embeddings.embeddings.weight


# ## The experiment

def test_speaker_data_is_deterministic_and_held_out_speeches_stay_out_of_pretraining(data_dir):
    from labml_nn.transformers.experiments.bert import speaker_data
    text = (data_dir / "tiny_shakespeare.txt").read_text(encoding="utf-8")
    data = speaker_data(text, num_speakers=8)
    again = speaker_data(text, num_speakers=8)
    assert data == again
    assert len(data.speakers) == 8 and data.speakers[0] == "GLOUCESTER"
    # Every fifth speech of each speaker is held out: a fifth of each speaker's speeches, rounded down
    for k, speaker in enumerate(data.speakers):
        n_train = sum(label == k for _, label in data.train)
        n_test = sum(label == k for _, label in data.test)
        assert n_test == (n_train + n_test) // 5
    # Held-out speeches appear in the held-out text and nowhere in the pretraining text
    long_ones = [speech for speech, _ in data.test if len(speech) > 200]
    assert long_ones and all(s in data.heldout_text and s not in data.pretrain_text for s in long_ones)
    assert all(speech in data.pretrain_text for speech, _ in data.train[:50])


def test_experiment_smoke_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "labml_nn.transformers.bert", "--preset", "tiny", "--device", "cpu",
                           "--out", str(tmp_path)], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert json.loads(done.stdout) == result
    for name in ("config.json", "metrics.jsonl", "loss.png", "pretrain/loss.png", "pretrain/checkpoint.pt",
                 "finetune/pretrained/checkpoint.pt", "finetune/scratch/checkpoint.pt"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0 <= result["mlm_accuracy"] <= 1 and 0 <= result["next_sentence_accuracy"] <= 1
    assert set(result["speaker_accuracy"]) == {"pretrained", "scratch"}
    assert result["chance"] == 1 / 8 and result["test_speeches"] > 200
    stages = {json.loads(line)["stage"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"pretrain", "finetune"}


def test_benchmark_smoke(capsys, monkeypatch):
    pytest.importorskip("transformers")
    # As `python benchmarks/bert.py` runs it: its folder first on the path, for the shared `timing` module.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmark_bert", REPO / "benchmarks" / "bert.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    benchmark.main(["--tiny", "--rounds", "2", "--warmup", "1"])
    out = capsys.readouterr().out
    assert "labml_nn Bert" in out and out.count("x Hugging Face's time") == 8

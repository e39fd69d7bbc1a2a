"""TransformerConfigs: defaults, JSON round trip, clear errors for every bad value, and every choice builds a model."""
import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.mha import MultiHeadAttention
from labml_nn.transformers.models import (Embeddings, EmbeddingsWithLearnedPositionalEncoding,
                                          EmbeddingsWithPositionalEncoding)
from labml_nn.transformers.rope import RotaryPEMultiHeadAttention
from labml_nn.transformers.utils import padding_mask, subsequent_mask


pytestmark = pytest.mark.usefixtures("single_thread")


def test_defaults_are_the_papers_base_model():
    c = TransformerConfigs()
    assert (c.n_layers, c.d_model, c.n_heads, c.d_ff, c.dropout, c.max_len) == (6, 512, 8, 2048, 0.1, 5000)
    assert (c.n_src_vocab, c.n_tgt_vocab, c.positional, c.ffn_activation, c.pre_norm) == (None, None, "fixed",
                                                                                            "relu", True)
    assert c.scale_embeddings is True


def test_scale_embeddings_reaches_both_embeddings():
    for positional in ("fixed", "learned", "rope", "none"):
        model = tiny(positional=positional, scale_embeddings=False).build_encoder_decoder().eval()
        assert model.src_embed.scale is False and model.tgt_embed.scale is False
        tokens = torch.randint(0, 10, (2, 3))
        positions = 0 if positional in ("rope", "none") else model.src_embed.positional_encodings[:3]
        torch.testing.assert_close(model.src_embed(tokens), model.src_embed.embeddings.weight[tokens] + positions)


def test_json_round_trip():
    c = TransformerConfigs(n_layers=2, d_model=64, n_heads=4, d_ff=128, dropout=0.0, n_src_vocab=30, n_tgt_vocab=40,
                           max_len=100, positional="rope", ffn_activation="swiglu", pre_norm=False,
                           scale_embeddings=False)
    text = json.dumps(c.to_dict())
    assert TransformerConfigs.from_dict(json.loads(text)) == c
    assert TransformerConfigs.from_dict(json.loads(json.dumps(TransformerConfigs().to_dict()))) == TransformerConfigs()


def test_unknown_keys_rejected():
    with pytest.raises(ValueError, match=r"unknown TransformerConfigs fields \['d_modle'\]"):
        TransformerConfigs.from_dict({"d_modle": 128})


BAD_VALUES = [
    ("n_layers", 0), ("n_layers", 2.0), ("n_layers", True), ("d_model", -8), ("d_model", "512"), ("n_heads", 0),
    ("d_ff", 0), ("max_len", 0), ("n_src_vocab", 0), ("n_tgt_vocab", 3.5), ("dropout", 1.0), ("dropout", -0.1),
    ("dropout", "0.1"), ("dropout", True), ("positional", "sinusoidal"), ("positional", None),
    ("ffn_activation", "tanh"), ("ffn_activation", "ReLU"), ("pre_norm", "yes"), ("pre_norm", 1),
    ("scale_embeddings", "no"), ("scale_embeddings", 0),
]


@pytest.mark.parametrize("field, value", BAD_VALUES)
def test_bad_values_raise_naming_field_and_value(field, value):
    for make in (lambda: TransformerConfigs(**{field: value}), lambda: TransformerConfigs.from_dict({field: value})):
        with pytest.raises(ValueError) as error:
            make()
        message = str(error.value)
        assert message.startswith(field) and repr(value) in message


@pytest.mark.parametrize("field, allowed", [("positional", ["fixed", "learned", "rope", "none"]),
                                            ("ffn_activation", ["relu", "gelu", "glu", "geglu", "swiglu"])])
def test_bad_choice_lists_the_allowed_ones(field, allowed):
    with pytest.raises(ValueError) as error:
        TransformerConfigs(**{field: "bogus"})
    assert all(name in str(error.value) for name in allowed)


def test_d_model_must_divide_by_heads_and_replace_validates():
    with pytest.raises(ValueError, match=r"d_model \(100\) must be divisible by n_heads \(8\)"):
        TransformerConfigs(d_model=100)
    with pytest.raises(ValueError, match="n_heads"):
        dataclasses.replace(TransformerConfigs(), n_heads=7)


def test_rope_needs_four_features_per_head():
    with pytest.raises(ValueError, match="positional='rope' needs at least 4 features per head"):
        TransformerConfigs(d_model=16, n_heads=8, positional="rope")
    TransformerConfigs(d_model=16, n_heads=4, positional="rope").build_self_attention()


def test_building_needs_the_vocabulary():
    with pytest.raises(ValueError, match="n_src_vocab must be set"):
        TransformerConfigs().build_src_embed()
    with pytest.raises(ValueError, match="n_tgt_vocab must be set"):
        TransformerConfigs(n_src_vocab=5).build_encoder_decoder()


def tiny(**changes):
    base = dict(n_layers=2, d_model=32, n_heads=4, d_ff=48, dropout=0.1, n_src_vocab=11, n_tgt_vocab=13, max_len=20)
    return TransformerConfigs(**{**base, **changes})


EMBEDDINGS = {"fixed": EmbeddingsWithPositionalEncoding, "learned": EmbeddingsWithLearnedPositionalEncoding,
              "rope": Embeddings, "none": Embeddings}


@pytest.mark.parametrize("positional", ["fixed", "learned", "rope", "none"])
@pytest.mark.parametrize("ffn_activation", ["relu", "gelu", "glu", "geglu", "swiglu"])
@pytest.mark.parametrize("pre_norm", [True, False])
def test_every_combination_builds_and_runs(positional, ffn_activation, pre_norm):
    c = tiny(positional=positional, ffn_activation=ffn_activation, pre_norm=pre_norm)
    model = c.build_encoder_decoder()
    assert type(model.src_embed) is EMBEDDINGS[positional] and type(model.tgt_embed) is EMBEDDINGS[positional]
    decoder_layer = model.decoder.layers[0]
    expected_attention = RotaryPEMultiHeadAttention if positional == "rope" else MultiHeadAttention
    assert type(decoder_layer.self_attn) is expected_attention
    assert type(decoder_layer.src_attn) is MultiHeadAttention
    assert type(model.encoder.layers[0].self_attn) is expected_attention
    is_gated = getattr(decoder_layer.feed_forward, "linear_v", None) is not None
    assert is_gated == (ffn_activation in ("glu", "geglu", "swiglu"))
    assert len(model.encoder.layers) == len(model.decoder.layers) == 2
    assert isinstance(model.encoder.norm, nn.LayerNorm if pre_norm else nn.Identity)

    src = torch.randint(1, 11, (3, 7))
    src[1, 5:] = 0
    tgt = torch.randint(1, 13, (3, 5))
    logits = model(src, tgt, padding_mask(src, 0), padding_mask(tgt, 0) & subsequent_mask(5))
    assert logits.shape == (3, 5, 13) and torch.isfinite(logits).all()
    logits.sum().backward()
    model.eval()
    assert model.greedy_decode(src, padding_mask(src, 0), 6, start_symbol=1).shape == (3, 6)


@pytest.mark.parametrize("ffn_activation, activation", [("relu", nn.ReLU), ("gelu", nn.GELU), ("glu", nn.Sigmoid),
                                                        ("geglu", nn.GELU), ("swiglu", nn.SiLU)])
def test_feed_forward_activation_and_gated_parameter_count(ffn_activation, activation):
    ff = tiny(ffn_activation=ffn_activation).build_feed_forward()
    assert type(ff.activation) is activation
    n_params = sum(p.numel() for p in ff.parameters())
    if ffn_activation in ("relu", "gelu"):
        assert n_params == 2 * 32 * 48 + 48 + 32
    else:
        # Shazeer (2020): three bias-free projections, d_ff as given
        assert n_params == 3 * 32 * 48


def test_dropout_reaches_every_part():
    model = tiny(dropout=0.3).build_encoder_decoder()
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    rates |= {m.dropout_prob for m in model.modules() if isinstance(m, MultiHeadAttention)}
    assert rates == {0.3}


def test_linear_layers_get_xavier_initialisation():
    model = tiny(d_model=64, d_ff=256).build_encoder_decoder()
    w = model.encoder.layers[0].feed_forward.layer1.weight
    bound = (6 / (64 + 256)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert (model.encoder.layers[0].feed_forward.layer1.bias == 0).all()


# ## GPT-2's options: the tanh GELU and the layer norms' epsilon (defaults unchanged)

def test_gelu_tanh_is_gpt2s_formula_and_plain():
    ff = tiny(ffn_activation="gelu_tanh").build_feed_forward()
    assert ff.linear_v is None and ff.layer1.bias is not None and ff.layer2.bias is not None
    z = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    # GPT-2's `gelu_new`, written out
    expected = 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    assert torch.allclose(ff.activation(z), expected, atol=1e-12)
    # and it is not the exact GELU that `gelu` keeps
    assert type(tiny(ffn_activation="gelu").build_feed_forward().activation) is nn.GELU
    assert tiny(ffn_activation="gelu").build_feed_forward().activation.approximate == "none"


def test_norm_eps_reaches_every_layer_norm_and_defaults_to_torchs():
    for eps, expected in ((None, 1e-5), (1e-6, 1e-6)):
        c = tiny() if eps is None else tiny(norm_eps=eps)
        model = c.build_encoder_decoder()
        norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
        assert len(norms) == 2 * 2 + 2 * 3 + 2 and {m.eps for m in norms} == {expected}
    assert TransformerConfigs.from_dict(tiny(norm_eps=1e-6).to_dict()).norm_eps == 1e-6
    for bad in (0.0, -1e-5, 1.0, True, "1e-5"):
        with pytest.raises(ValueError, match="norm_eps"):
            tiny(norm_eps=bad)

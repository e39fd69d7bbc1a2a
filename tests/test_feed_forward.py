"""FeedForward against the formulas of Vaswani et al. (2017) and Shazeer (2020), written out with the weights."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward

D_MODEL, D_FF = 8, 24


def weights(ffn: FeedForward) -> dict[str, torch.Tensor | None]:
    """The weights as the papers write them: x W with W = weight^T."""
    out = {"W1": ffn.layer1.weight.T, "b1": ffn.layer1.bias, "W2": ffn.layer2.weight.T, "b2": ffn.layer2.bias}
    if ffn.linear_v is not None:
        out.update(V=ffn.linear_v.weight.T, c=ffn.linear_v.bias)
    return out


def test_plain_relu_ffn_equals_paper_formula():
    ffn = FeedForward(D_MODEL, D_FF, dropout=0.0).double()
    w = weights(ffn)
    x = torch.randn(3, 5, D_MODEL, dtype=torch.float64)
    # FFN(x) = max(0, x W1 + b1) W2 + b2
    expected = torch.clamp(x @ w["W1"] + w["b1"], min=0) @ w["W2"] + w["b2"]
    torch.testing.assert_close(ffn(x), expected, rtol=0, atol=1e-12)


GATES = {
    "glu": (nn.Sigmoid(), lambda z: 1 / (1 + torch.exp(-z))),
    "reglu": (nn.ReLU(), lambda z: torch.where(z > 0, z, torch.zeros_like(z))),
    "geglu": (nn.GELU(), lambda z: 0.5 * z * (1 + torch.erf(z / 2 ** 0.5))),
    "swiglu": (nn.SiLU(), lambda z: z / (1 + torch.exp(-z))),
}


@pytest.mark.parametrize("name", list(GATES))
def test_gated_variants_equal_shazeer_formula(name):
    module_activation, formula_activation = GATES[name]
    ffn = FeedForward(D_MODEL, D_FF, dropout=0.0, activation=module_activation, is_gated=True,
                      bias1=False, bias2=False, bias_gate=False).double()
    w = weights(ffn)
    x = torch.randn(2, 7, D_MODEL, dtype=torch.float64)
    # FFN_variant(x) = (act(x W1) * (x V)) W2
    expected = (formula_activation(x @ w["W1"]) * (x @ w["V"])) @ w["W2"]
    torch.testing.assert_close(ffn(x), expected, rtol=0, atol=1e-12)


def test_gated_with_biases():
    ffn = FeedForward(D_MODEL, D_FF, dropout=0.0, activation=nn.SiLU(), is_gated=True).double()
    w = weights(ffn)
    x = torch.randn(4, D_MODEL, dtype=torch.float64)
    expected = (F.silu(x @ w["W1"] + w["b1"]) * (x @ w["V"] + w["c"])) @ w["W2"] + w["b2"]
    torch.testing.assert_close(ffn(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias1,bias2,bias_gate", [(True, True, True), (False, True, False), (True, False, True),
                                                    (False, False, False)])
@pytest.mark.parametrize("is_gated", [False, True])
def test_bias_flags_and_parameter_count(bias1, bias2, bias_gate, is_gated):
    ffn = FeedForward(D_MODEL, D_FF, is_gated=is_gated, bias1=bias1, bias2=bias2, bias_gate=bias_gate)
    assert (ffn.layer1.bias is not None) == bias1
    assert (ffn.layer2.bias is not None) == bias2
    assert ffn.layer1.weight.shape == (D_FF, D_MODEL) and ffn.layer2.weight.shape == (D_MODEL, D_FF)
    expected = 2 * D_MODEL * D_FF + bias1 * D_FF + bias2 * D_MODEL
    if is_gated:
        assert ffn.linear_v.weight.shape == (D_FF, D_MODEL)
        assert (ffn.linear_v.bias is not None) == bias_gate
        expected += D_MODEL * D_FF + bias_gate * D_FF
    else:
        assert ffn.linear_v is None
    assert sum(p.numel() for p in ffn.parameters()) == expected


@pytest.mark.parametrize("is_gated", [False, True])
def test_gradients_reach_every_parameter(is_gated):
    ffn = FeedForward(D_MODEL, D_FF, dropout=0.1, activation=nn.GELU(), is_gated=is_gated)
    x = torch.randn(2, 3, D_MODEL, requires_grad=True)
    ffn(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in ffn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropout_on_hidden_layer_only_in_training():
    ffn = FeedForward(D_MODEL, D_FF, dropout=0.5)
    x = torch.randn(16, D_MODEL)
    ffn.eval()
    torch.testing.assert_close(ffn(x), ffn.layer2(F.relu(ffn.layer1(x))))
    ffn.train()
    torch.manual_seed(1)
    out = ffn(x)
    torch.manual_seed(1)
    mask = F.dropout(torch.ones(16, D_FF), p=0.5)
    torch.testing.assert_close(out, ffn.layer2(F.relu(ffn.layer1(x)) * mask))


def test_default_activation_is_relu_and_function_activations_work():
    assert isinstance(FeedForward(D_MODEL, D_FF).activation, nn.ReLU)
    ffn = FeedForward(D_MODEL, D_FF, dropout=0.0, activation=F.gelu)
    x = torch.randn(3, D_MODEL)
    torch.testing.assert_close(ffn(x), ffn.layer2(F.gelu(ffn.layer1(x))))


@pytest.mark.parametrize("kwargs,match", [({"d_ff": 0}, "d_ff"), ({"d_model": -1}, "d_model"),
                                          ({"dropout": 1.0}, "dropout"), ({"activation": "relu"}, "activation")])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeedForward(**{"d_model": D_MODEL, "d_ff": D_FF, **kwargs})

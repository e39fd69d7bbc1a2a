"""Mixture of experts: the routers against their formulas written here, the losses against loops and logsumexp,
the layer against a plain per-token loop in float64 and against Hugging Face's `MixtralSparseMoeBlock`, capacity
and dropping, and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from labml_nn.transformers.moe import MoE, Router, expert_capacity, load_balancing_loss, router_z_loss

D_MODEL, D_FF, N_EXPERTS = 12, 20, 6


def test_default_order_is_mixtral_softmax_topk_renormalise():
    torch.manual_seed(0)
    router = Router(D_MODEL, N_EXPERTS, top_k=2)
    x = torch.randn(30, D_MODEL)
    out = router(x)
    logits = x @ router.gate.weight.T
    # Mixtral: softmax over all experts, the top two probabilities, renormalised.
    probs = logits.softmax(-1)
    top, indices = probs.topk(2, dim=-1)
    torch.testing.assert_close(out.indices, indices)
    torch.testing.assert_close(out.weights, top / top.sum(-1, keepdim=True))
    torch.testing.assert_close(out.scores, probs)
    torch.testing.assert_close(out.logits, logits)


def test_pre_softmax_and_sigmoid_orders():
    torch.manual_seed(1)
    x = torch.randn(30, D_MODEL)
    switch = Router(D_MODEL, N_EXPERTS, top_k=1, pre_softmax=True, normalize=False)
    logits = x @ switch.gate.weight.T
    out = switch(x)
    # Switch: the probability of the chosen expert, p_i = exp(z_i) / sum_j exp(z_j), not renormalised.
    chosen = logits.argmax(-1)
    expected = logits.exp().gather(1, chosen[:, None]) / logits.exp().sum(-1, keepdim=True)
    torch.testing.assert_close(out.indices[:, 0], chosen)
    torch.testing.assert_close(out.weights, expected)
    assert (out.weights < 1).all()

    k3 = Router(D_MODEL, N_EXPERTS, top_k=3, pre_softmax=True, normalize=False)
    k3.load_state_dict(switch.state_dict())
    probs = logits.softmax(-1)
    torch.testing.assert_close(k3(x).weights, probs.topk(3, dim=-1).values)

    sigmoid = Router(D_MODEL, N_EXPERTS, top_k=3, scoring="sigmoid")
    sigmoid.load_state_dict(switch.state_dict())
    out = sigmoid(x)
    s = 1 / (1 + (-logits).exp())
    top, indices = s.topk(3, dim=-1)
    torch.testing.assert_close(out.indices, indices)
    torch.testing.assert_close(out.weights, top / top.sum(-1, keepdim=True))
    torch.testing.assert_close(out.scores, s)


@pytest.mark.parametrize("pre_softmax, has_gradient", [(False, False), (True, True)])
def test_top1_router_gradient(pre_softmax, has_gradient):
    torch.manual_seed(2)
    moe = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=1, aux_loss_coeff=0.0, pre_softmax=pre_softmax, normalize=False)
    y, _ = moe(torch.randn(2, 9, D_MODEL))
    y.square().sum().backward()
    gradient = moe.router.gate.weight.grad
    assert (gradient.abs().max() > 1e-6) == has_gradient


def test_load_balancing_loss_against_loop_and_hugging_face():
    torch.manual_seed(3)
    tokens, k = 40, 2
    logits = torch.randn(tokens, N_EXPERTS, dtype=torch.float64)
    scores = logits.softmax(-1)
    indices = scores.topk(k, dim=-1).indices
    # E / (k T^2) * sum_i (sum_x p_i(x)) c_i, with c_i counted by a loop over experts
    expected = 0.0
    for i in range(N_EXPERTS):
        c_i = sum(int((indices[t] == i).any()) for t in range(tokens))
        expected += scores[:, i].sum().item() * c_i
    expected *= N_EXPERTS / (k * tokens ** 2)
    loss = load_balancing_loss(scores, indices, N_EXPERTS)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # Hugging Face's Mixtral loss is k times larger.
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
    hf = load_balancing_loss_func((logits.float(),), N_EXPERTS, top_k=k)
    assert hf.item() == pytest.approx(k * expected, rel=1e-5)
    # A uniform load with uniform scores gives exactly 1.
    uniform = torch.full((6, N_EXPERTS), 1 / N_EXPERTS)
    assert load_balancing_loss(uniform, torch.arange(6).view(3, 2).repeat(2, 1), N_EXPERTS).item() == \
        pytest.approx(1.0)


def test_router_z_loss_against_logsumexp():
    logits = torch.randn(17, N_EXPERTS, dtype=torch.float64)
    expected = torch.stack([torch.log(torch.exp(row).sum()) ** 2 for row in logits]).mean()
    torch.testing.assert_close(router_z_loss(logits).double(), expected)


def expert_reference(moe, e, x):
    """Expert e on one token, from the stacked weights, written out."""
    w1, w2 = moe.experts.w1[e], moe.experts.w2[e]
    w3 = moe.experts.w3[e] if moe.experts.w3 is not None else None
    h = w1 @ x
    h = F.silu(h) * (w3 @ x) if w3 is not None else F.gelu(h)
    return w2 @ h


def loop_reference(moe, x, kept=None):
    """The plain per-token loop: sum over each token's kept choices of weight * expert(x)."""
    flat = x.reshape(-1, x.shape[-1])
    route = moe.router(flat)
    rows = []
    for t in range(flat.shape[0]):
        y = torch.zeros_like(flat[t])
        for j in range(moe.top_k):
            if kept is None or (t, j) in kept:
                y = y + route.weights[t, j].to(x.dtype) * expert_reference(moe, int(route.indices[t, j]), flat[t])
        if moe.shared_experts is not None:
            y = y + moe.shared_experts(flat[t])
        rows.append(y)
    return torch.stack(rows).view_as(x), route


@pytest.mark.parametrize("activation, shared, router", [
    ("swiglu", 0, {}), ("gelu", 0, {"pre_softmax": True, "normalize": False}),
    ("swiglu", 2, {"scoring": "sigmoid"})])
def test_moe_against_per_token_loop(activation, shared, router):
    torch.manual_seed(4)
    moe = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=2, activation=activation, n_shared_experts=shared, **router).double()
    x = torch.randn(3, 7, D_MODEL, dtype=torch.float64)
    y, stats = moe(x)
    expected, route = loop_reference(moe, x)
    torch.testing.assert_close(y, expected)
    counts = torch.stack([(route.indices == e).sum() for e in range(N_EXPERTS)]).double()
    torch.testing.assert_close(stats.tokens_per_expert.double(), counts)
    assert stats.dropped_fraction.item() == 0.0
    torch.testing.assert_close(stats.aux_loss, 1e-2 * load_balancing_loss(route.scores, route.indices, N_EXPERTS))


def test_moe_matches_hugging_face_mixtral_block():
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    torch.manual_seed(5)
    config = MixtralConfig(hidden_size=D_MODEL, intermediate_size=D_FF, num_local_experts=N_EXPERTS,
                           num_experts_per_tok=2)
    theirs = MixtralSparseMoeBlock(config).float()
    ours = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=2)
    with torch.no_grad():
        theirs.gate.weight.copy_(ours.router.gate.weight)
        theirs.experts.gate_up_proj.copy_(torch.cat([ours.experts.w1, ours.experts.w3], dim=1))
        theirs.experts.down_proj.copy_(ours.experts.w2)
    x = torch.randn(2, 13, D_MODEL)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, _ = ours(x_ours)
    expected = theirs(x_theirs)
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-5)
    target = torch.randn_like(y)
    (y * target).sum().backward()
    (expected * target).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.router.gate.weight.grad, theirs.gate.weight.grad, atol=1e-6, rtol=1e-5)
    w1_grad, w3_grad = theirs.experts.gate_up_proj.grad.split(D_FF, dim=1)
    torch.testing.assert_close(ours.experts.w1.grad, w1_grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.experts.w3.grad, w3_grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.experts.w2.grad, theirs.experts.down_proj.grad, atol=1e-6, rtol=1e-5)


def kept_slots(route, n_experts, capacity, policy):
    """Which (token, choice) slots each expert keeps, decided by a loop: sort its slots by weight or position."""
    kept = set()
    for e in range(n_experts):
        slots = [(t, j) for t in range(route.indices.shape[0]) for j in range(route.indices.shape[1])
                 if int(route.indices[t, j]) == e]
        if policy == "probs":
            slots.sort(key=lambda s: -float(route.weights[s].detach()))
        kept.update(slots[:capacity])
    return kept


@pytest.mark.parametrize("policy", ["probs", "position"])
@pytest.mark.parametrize("factor", [0.5, 1.0, 1.25])
def test_capacity_keeps_the_right_slots(policy, factor):
    torch.manual_seed(6)
    moe = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=2, capacity_factor=factor, drop_policy=policy).double()
    # Skew the router so that some experts overflow.
    with torch.no_grad():
        moe.router.gate.weight[0] += 0.5
    x = torch.randn(2, 15, D_MODEL, dtype=torch.float64)
    y, stats = moe(x)
    tokens = x.shape[0] * x.shape[1]
    capacity = math.ceil(2 * tokens / N_EXPERTS * factor)
    assert expert_capacity(tokens, 2, N_EXPERTS, factor) == capacity
    route = moe.router(x.reshape(tokens, D_MODEL))
    kept = kept_slots(route, N_EXPERTS, capacity, policy)
    expected, _ = loop_reference(moe, x, kept)
    torch.testing.assert_close(y, expected)
    assert (stats.tokens_per_expert <= capacity).all()
    assert stats.tokens_per_expert.sum().item() == len(kept)
    assert stats.dropped_fraction.item() == pytest.approx(1 - len(kept) / (2 * tokens))
    if factor < 1:
        assert stats.dropped_fraction.item() > 0


def test_large_capacity_drops_nothing_and_equals_dropless():
    torch.manual_seed(7)
    dropless = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=2)
    padded = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=2, capacity_factor=N_EXPERTS / 2)
    padded.load_state_dict(dropless.state_dict())
    x = torch.randn(2, 11, D_MODEL)
    (y1, s1), (y2, s2) = dropless(x), padded(x)
    torch.testing.assert_close(y1, y2)
    assert s1.dropped_fraction.item() == 0 and s2.dropped_fraction.item() == 0
    torch.testing.assert_close(s1.tokens_per_expert, s2.tokens_per_expert)


def test_dropped_tokens_get_zero_and_gradients_flow():
    torch.manual_seed(8)
    moe = MoE(D_MODEL, D_FF, N_EXPERTS, top_k=1, capacity_factor=0.2, drop_policy="position", z_loss_coeff=1e-3)
    x = torch.randn(1, 30, D_MODEL, requires_grad=True)
    y, stats = moe(x)
    capacity = expert_capacity(30, 1, N_EXPERTS, 0.2)
    assert stats.dropped_fraction.item() > 0
    dropped_rows = (y[0].abs().sum(-1) == 0).sum().item()
    assert dropped_rows == 30 - stats.tokens_per_expert.sum().item()
    assert (stats.tokens_per_expert <= capacity).all()
    (y.sum() + stats.aux_loss + stats.z_loss).backward()
    assert torch.isfinite(x.grad).all() and moe.router.gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 7}, "top_k"),
    ({"capacity_factor": 0.0}, "capacity_factor"),
    ({"capacity_factor": -1.0}, "capacity_factor"),
    ({"scoring": "tanh"}, "scoring"),
    ({"activation": "swish2"}, "activation"),
    ({"drop_policy": "random"}, "drop_policy"),
    ({"scoring": "sigmoid", "pre_softmax": True}, "pre_softmax"),
    ({"noise": 1.0}, "noise"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoE(D_MODEL, D_FF, N_EXPERTS, **kwargs)


def test_bad_shape():
    with pytest.raises(ValueError, match="x must be"):
        MoE(D_MODEL, D_FF, N_EXPERTS)(torch.randn(4, D_MODEL))


def test_pre_softmax_renormalised_is_the_default_order_and_jitter_is_training_only():
    torch.manual_seed(9)
    x = torch.randn(25, D_MODEL)
    default = Router(D_MODEL, N_EXPERTS, top_k=2)
    renormalised = Router(D_MODEL, N_EXPERTS, top_k=2, pre_softmax=True, normalize=True)
    renormalised.load_state_dict(default.state_dict())
    torch.testing.assert_close(renormalised(x).weights, default(x).weights)

    jittery = Router(D_MODEL, N_EXPERTS, top_k=2, jitter=0.1)
    jittery.load_state_dict(default.state_dict())
    torch.manual_seed(10)
    noise = torch.empty_like(x).uniform_(0.9, 1.1)
    torch.manual_seed(10)
    torch.testing.assert_close(jittery(x).logits, (x * noise) @ default.gate.weight.T)
    jittery.eval()
    torch.testing.assert_close(jittery(x).logits, x @ default.gate.weight.T)


@pytest.mark.parametrize("shared", [0, 1])
def test_fast_path_equals_the_readable_dense_path(shared):
    # Not a test of the arithmetic (the per-token loop above is): the sorted, grouped path and the page's dense sum
    # over experts must give the same output and gradients.
    torch.manual_seed(1)
    moe = MoE(16, 24, n_experts=6, top_k=2, n_shared_experts=shared)
    x = torch.randn(3, 7, 16, requires_grad=True)
    fast, _ = moe(x)
    grad = torch.randn_like(fast)
    fast_grads = torch.autograd.grad(fast, [x, *moe.parameters()], grad)
    explicit = moe.forward_explicit(x)
    explicit_grads = torch.autograd.grad(explicit, [x, *moe.parameters()], grad)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_grads, explicit_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="capacity"):
        MoE(16, 24, n_experts=6, capacity_factor=1.0).forward_explicit(x)

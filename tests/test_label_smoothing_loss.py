"""Label smoothing: parity with F.cross_entropy(label_smoothing=...), the written-out target distribution, errors."""
import pytest
import torch
import torch.nn.functional as F

from labml_nn.transformers.label_smoothing_loss import (LabelSmoothingLoss, annotated_transformer_target_distribution,
                                                        smoothed_target_distribution)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3, 0.9])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_equals_torch_cross_entropy_with_gradients(smoothing, ignore_index):
    n, c = 37, 11
    logits = (3 * torch.randn(n, c, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, c, (n,))
    targets[::4] = ignore_index
    if ignore_index == 0:
        # some real class-0 targets are then ignored too; make sure some non-ignored remain
        targets[1::4] = 3
    ours = LabelSmoothingLoss(c, smoothing, ignore_index=ignore_index)(logits, targets)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    ref = F.cross_entropy(logits, targets, label_smoothing=smoothing, ignore_index=ignore_index)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=0, atol=1e-12)
    # ignored samples get no gradient at all
    assert (grad_ours[targets == ignore_index] == 0).all()


def test_equals_cross_entropy_against_written_out_targets():
    """-sum_c q_c log p_c with q built from the paper's formula, averaged over the non-ignored samples."""
    n, c, smoothing = 20, 7, 0.2
    logits = torch.randn(n, c)
    targets = torch.randint(0, c, (n,))
    targets[:5] = -100
    valid = targets != -100
    q = smoothed_target_distribution(targets[valid], c, smoothing)
    assert torch.allclose(q.sum(-1), torch.ones(int(valid.sum())))
    assert torch.allclose(q.gather(1, targets[valid, None]), torch.tensor(1 - smoothing + smoothing / c))
    expected = -(q * logits[valid].log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(LabelSmoothingLoss(c, smoothing)(logits, targets), expected)


def test_float32_large_logits_stay_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0]])
    loss = LabelSmoothingLoss(3, 0.1)(logits, torch.tensor([1]))
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.tensor([1]), label_smoothing=0.1))
    assert torch.isfinite(loss)


def test_annotated_transformer_variant_differs():
    """eps/(C-2) on non-target non-padding classes, nothing on padding; not PyTorch's distribution."""
    c, smoothing, pad = 6, 0.4, 0
    targets = torch.tensor([2, 0, 5])
    q = annotated_transformer_target_distribution(targets, c, smoothing, pad)
    expected = torch.tensor([
        [0.0, 0.1, 0.6, 0.1, 0.1, 0.1],
        [0.0] * 6,
        [0.0, 0.1, 0.1, 0.1, 0.1, 0.6],
    ])
    torch.testing.assert_close(q, expected)
    # Its KL loss (summed, as there) differs from F.cross_entropy's smoothing even up to the entropy constant.
    logits = torch.randn(3, c)
    log_p = logits.log_softmax(-1)
    real = targets != pad
    kl = F.kl_div(log_p[real], q[real], reduction="sum")
    ce_same_q = -(q[real] * log_p[real]).sum()
    entropy = (q[real] * q[real].clamp_min(1e-30).log()).sum()
    torch.testing.assert_close(kl, ce_same_q + entropy)
    ours = LabelSmoothingLoss(c, smoothing, ignore_index=pad)(logits, targets) * real.sum()
    assert not torch.allclose(ours, ce_same_q)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5])
def test_bad_smoothing_raises(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        LabelSmoothingLoss(5, smoothing)


def test_bad_shapes_raise():
    loss = LabelSmoothingLoss(5, 0.1)
    with pytest.raises(ValueError, match="n_classes=5"):
        loss(torch.randn(4, 6), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        loss(torch.randn(4, 5), torch.zeros(3, dtype=torch.long))

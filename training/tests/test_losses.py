"""Each loss against values computed by hand.

Logits (0, ln 3) give p = (1/4, 3/4); the target is class 1, so p_t = 3/4
and -log p_t = ln(4/3)."""
import math

import pytest
import torch

from av1part_train.losses import (Asymmetric, ClassBalancedFocal, CrossEntropy, FocalLabelSmoothing, Poly1,
                                  class_balanced_weights, create_loss)

LOGITS = torch.tensor([[0.0, math.log(3.0)]])
T = torch.tensor([1])
L43 = math.log(4 / 3)
L4 = math.log(4)


def test_ce():
    assert CrossEntropy()(LOGITS, T).item() == pytest.approx(L43, rel=1e-6)


def test_class_balanced_weights_by_hand():
    # beta 0.5, counts (1, 3): (1-b)/(1-b^n) = 0.5/0.5 = 1 and 0.5/0.875 = 4/7; normalised to sum 2
    w = class_balanced_weights([1, 3], 0.5)
    assert w.tolist() == pytest.approx([14 / 11, 8 / 11], rel=1e-6)


def test_cb_focal():
    # w_1 (1 - 3/4)^2 ln(4/3) with w_1 = 8/11
    got = ClassBalancedFocal([1, 3], gamma=2.0, beta=0.5)(LOGITS, T).item()
    assert got == pytest.approx(8 / 11 * 0.0625 * L43, rel=1e-6)
    # gamma 0 and beta -> 0 (uniform weights) is cross-entropy
    assert ClassBalancedFocal([5, 5], gamma=0.0, beta=0.0)(LOGITS, T).item() == pytest.approx(L43, rel=1e-6)


def test_poly1():
    assert Poly1(epsilon=1.0)(LOGITS, T).item() == pytest.approx(L43 + 0.25, rel=1e-6)
    assert Poly1(epsilon=2.0)(LOGITS, T).item() == pytest.approx(L43 + 0.5, rel=1e-6)


def test_asymmetric_one_vs_rest():
    # positive: (1/4)^2 ln(4/3); negative class 0: p0^4 * -ln(1 - p0) = (1/4)^4 ln(4/3)
    got = Asymmetric(gamma_pos=2.0, gamma_neg=4.0)(LOGITS, T).item()
    assert got == pytest.approx((0.0625 + 0.25 ** 4) * L43, rel=1e-6)


def test_focal_label_smoothing():
    # q = (0.05, 0.95): 0.05 (3/4)^2 ln 4 + 0.95 (1/4)^2 ln(4/3)
    got = FocalLabelSmoothing(gamma=2.0, smoothing=0.1)(LOGITS, T).item()
    assert got == pytest.approx(0.05 * 0.5625 * L4 + 0.95 * 0.0625 * L43, rel=1e-6)


def test_batch_mean_and_factory():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    t = torch.tensor([1, 1])  # second: p_t = 1/4
    assert create_loss("ce", [1, 1])(logits, t).item() == pytest.approx((L43 + L4) / 2, rel=1e-6)
    for name in ("ce", "cb_focal", "poly1", "asymmetric", "focal_ls"):
        v = create_loss(name, [10, 3])(logits, t)
        assert torch.isfinite(v)
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("dice", [1, 1])


def test_class_weights_are_one_choice_for_every_loss():
    """class_weights='cb' multiplies each loss's per-sample term by w_t (and
    'none' leaves every loss unweighted, cb_focal included), so a loss row
    of the ablation changes the loss alone."""
    counts, beta = [1, 3], 0.5
    w1 = class_balanced_weights(counts, beta)[1].item()  # target class 1
    for name in ("ce", "cb_focal", "poly1", "asymmetric", "focal_ls"):
        plain = create_loss(name, counts, beta=beta, class_weights="none")(LOGITS, T).item()
        weighted = create_loss(name, counts, beta=beta, class_weights="cb")(LOGITS, T).item()
        assert weighted == pytest.approx(w1 * plain, rel=1e-6), name
    # "auto" keeps the historical recipes: cb_focal weighted, the others not
    assert create_loss("cb_focal", counts, beta=beta)(LOGITS, T).item() == pytest.approx(w1 * 0.0625 * L43, rel=1e-6)
    assert create_loss("ce", counts, beta=beta)(LOGITS, T).item() == pytest.approx(L43, rel=1e-6)
    assert create_loss("cb_focal", counts, class_weights="none")(LOGITS, T).item() == pytest.approx(0.0625 * L43, rel=1e-6)
    with pytest.raises(ValueError, match="class_weights"):
        create_loss("ce", counts, class_weights="inverse")

"""Calibration: the temperature fit recovers a known temperature, lowers the
NLL of miscalibrated logits, and the exported graph applies T and the prior."""
import math

import numpy as np
import pytest
import torch

from av1part_train.calibration import fit_temperature, nll, probabilities


def _sample(true_t: float, n: int = 20000, k: int = 4, seed: int = 0):
    """Logits whose labels are drawn from softmax(logits / true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, k))
    p = probabilities(z, true_t)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return z, np.minimum(y, k - 1)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature(true_t):
    z, y = _sample(true_t)
    t = fit_temperature(z, y)
    assert t == pytest.approx(true_t, rel=0.08)
    assert nll(z, y, t) <= nll(z, y, 1.0) + 1e-9


def test_fit_with_a_prior_shift_and_an_ensemble():
    rng = np.random.default_rng(1)
    shift = np.log(np.array([0.7, 0.2, 0.1]))
    z = rng.normal(0, 2, (2, 15000, 3))  # two members
    p = probabilities(z, 2.0, shift)
    y = (rng.random(len(p))[:, None] > np.cumsum(p, 1)).sum(1).clip(0, 2)
    t = fit_temperature(z, y, shift)
    assert t == pytest.approx(2.0, rel=0.1)
    # the fit without the shift it is used with would be a different, worse model
    assert nll(z, y, t, shift) < nll(z, y, fit_temperature(z, y), shift)


def test_no_blocks_keeps_t_1():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, np.int64)) == 1.0


def test_stage_export_applies_temperature_then_prior():
    from av1part_train.models.stage import StageExport

    class Member(torch.nn.Module):
        num_side = 0

        def forward_deep(self, f):
            return f

        def forward_head(self, h, side=None):
            return h

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    shift = [math.log(0.5), math.log(0.3), math.log(0.2)]
    got = StageExport([Member()], shift, 2.0)(logits).numpy()
    want = probabilities(logits.numpy(), 2.0, np.array(shift))
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError):
        StageExport([Member()], None, 0.0)

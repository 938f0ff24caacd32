"""BD-rate (PCHIP, as in the JCT-VC/JVET/AOM CTC sheets) against known values."""
import math

import pytest

from av1part_train.bdrate import BdRateError, bd_quality, bd_rate

# x265 preset measurements used as the worked example of the FAU-LMS `bjontegaard`
# package (BSD-3); reference values computed with bjontegaard==1.3.0, method="pchip",
# which its authors report equal to the JCT-VC Excel sheet to 10 decimals.
RATE_A = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_A = [40.037, 38.615, 36.845, 34.851]
RATE_T = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_T = [40.121, 38.651, 36.970, 34.987]


def test_reference_example():
    assert bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T) == pytest.approx(-4.417485350589045, abs=1e-9)
    assert bd_quality(RATE_A, PSNR_A, RATE_T, PSNR_T) == pytest.approx(0.11969278542479489, abs=1e-9)


def test_reference_example_higher_rate():
    # A curve that costs about a third more bits (bjontegaard==1.3.0 pchip: 31.379878...).
    ra = [686.76, 309.58, 157.11, 85.95]
    pa = [40.28, 37.18, 34.24, 31.42]
    rt = [893.34, 407.8, 204.93, 112.75]
    pt = [40.39, 37.21, 34.17, 31.24]
    assert bd_rate(ra, pa, rt, pt) == pytest.approx(31.379878202397627, abs=1e-9)


def test_identical_curves_and_scaled_rates():
    assert bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A) == pytest.approx(0.0, abs=1e-12)
    # Same quality at 10 % more rate everywhere: exactly +10 % (and -1/11 the other way).
    assert bd_rate(RATE_A, PSNR_A, [r * 1.1 for r in RATE_A], PSNR_A) == pytest.approx(10.0, abs=1e-9)
    assert bd_rate([r * 1.1 for r in RATE_A], PSNR_A, RATE_A, PSNR_A) == pytest.approx(-100 / 11, abs=1e-9)


def test_linear_curve_shift_is_exact():
    # log10(rate) linear in PSNR: PCHIP reproduces a line, so a quality shift of delta dB
    # costs exactly 10**(slope*delta) - 1 of rate, and BD-PSNR is exactly -delta.
    slope, delta = 0.05, 0.4
    q = [30.0, 33.0, 36.0, 39.0, 42.0]
    rate = [10 ** (1 + slope * v) for v in q]
    q_test = [v - delta for v in q]
    assert bd_rate(rate, q, rate, q_test) == pytest.approx((10 ** (slope * delta) - 1) * 100, abs=1e-9)
    assert bd_quality(rate, q, rate, q_test) == pytest.approx(-delta, abs=1e-9)


def test_order_of_points_does_not_matter():
    perm = [2, 0, 3, 1]
    a = bd_rate([RATE_A[i] for i in perm], [PSNR_A[i] for i in perm], RATE_T, PSNR_T)
    assert a == pytest.approx(bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T), abs=1e-12)


@pytest.mark.parametrize("bad", [
    ([1000, 0, 300, 100], PSNR_A),          # zero rate
    ([1000, 500, 300], PSNR_A),             # length mismatch
    ([1000, 500, 300, 100], [40, 38, 38, 34]),  # repeated quality
    ([1000, 500, 300, 100], [40, 38, math.nan, 34]),
])
def test_bad_curves_are_refused(bad):
    with pytest.raises(BdRateError):
        bd_rate(bad[0], bad[1], RATE_T, PSNR_T)


def test_disjoint_ranges_are_refused():
    with pytest.raises(BdRateError, match="do not overlap"):
        bd_rate(RATE_A, PSNR_A, RATE_T, [v + 20 for v in PSNR_T])

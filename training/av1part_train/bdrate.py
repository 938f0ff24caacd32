"""Bjøntegaard delta rate (BD-rate) with piecewise cubic Hermite interpolation.

The method of the JCT-VC/JVET and AOM common-test-condition sheets: each rate-distortion
curve is log10(rate) as a function of quality (PSNR), interpolated through its points by a
monotone piecewise cubic Hermite (PCHIP, Fritsch–Carlson slopes with the three-point end
rule); the two interpolants are integrated exactly over the quality range both curves
cover, and the mean log-rate difference is turned into a percentage. Negative means the
test curve needs fewer bits for the same quality.
"""
from __future__ import annotations

import math
from typing import Sequence


class BdRateError(ValueError):
    pass


def _end_slope(h0: float, h1: float, d0: float, d1: float) -> float:
    # Three-point, shape-preserving end rule (Moler, "Numerical Computing with MATLAB").
    s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    if s * d0 <= 0:
        return 0.0
    if d0 * d1 < 0 and abs(s) > abs(3 * d0):
        return 3 * d0
    return s


def _slopes(x: Sequence[float], y: Sequence[float]) -> list[float]:
    n = len(x)
    h = [x[i + 1] - x[i] for i in range(n - 1)]
    d = [(y[i + 1] - y[i]) / h[i] for i in range(n - 1)]
    if n == 2:
        return [d[0], d[0]]
    m = [0.0] * n
    for k in range(1, n - 1):
        if d[k - 1] * d[k] > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            m[k] = (w1 + w2) / (w1 / d[k - 1] + w2 / d[k])
    m[0] = _end_slope(h[0], h[1], d[0], d[1])
    m[-1] = _end_slope(h[-1], h[-2], d[-1], d[-2])
    return m


def _hermite_integral(x0, x1, y0, y1, m0, m1, a, b) -> float:
    """Integral over [a, b] ⊆ [x0, x1] of the cubic Hermite piece through (x0,y0,m0), (x1,y1,m1)."""
    h = x1 - x0

    def prim(t: float) -> float:  # antiderivative in t = (x - x0)/h, times h
        h00 = t - t ** 3 + t ** 4 / 2
        h10 = t ** 2 / 2 - 2 * t ** 3 / 3 + t ** 4 / 4
        h01 = t ** 3 - t ** 4 / 2
        h11 = -t ** 3 / 3 + t ** 4 / 4
        return h * (h00 * y0 + h10 * h * m0 + h01 * y1 + h11 * h * m1)

    return prim((b - x0) / h) - prim((a - x0) / h)


def _integral(x: list[float], y: list[float], lo: float, hi: float) -> float:
    m = _slopes(x, y)
    total = 0.0
    for i in range(len(x) - 1):
        a, b = max(lo, x[i]), min(hi, x[i + 1])
        if b > a:
            total += _hermite_integral(x[i], x[i + 1], y[i], y[i + 1], m[i], m[i + 1], a, b)
    return total


def _points(x: Sequence[float], y: Sequence[float], name: str) -> tuple[list[float], list[float]]:
    """Validated points sorted by x (which must be distinct)."""
    if len(x) != len(y):
        raise BdRateError(f"{name}: {len(x)} values against {len(y)}")
    if len(x) < 2:
        raise BdRateError(f"{name}: at least 2 points are needed, got {len(x)}")
    pts = sorted(zip(x, y))
    if not all(math.isfinite(a) and math.isfinite(b) for a, b in pts):
        raise BdRateError(f"{name}: values must be finite")
    xs = [a for a, _ in pts]
    if any(b <= a for a, b in zip(xs, xs[1:])):
        raise BdRateError(f"{name}: the curve has repeated values on its axis")
    return xs, [b for _, b in pts]


def _log_rates(rate: Sequence[float], name: str) -> list[float]:
    if not all(r > 0 and math.isfinite(r) for r in rate):
        raise BdRateError(f"{name}: rates must be positive and finite")
    return [math.log10(r) for r in rate]


def _mean_gap(xa, ya, xt, yt, what: str) -> float:
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if hi <= lo:
        raise BdRateError(f"the curves' {what} ranges do not overlap "
                          f"([{xa[0]:.4f}, {xa[-1]:.4f}] vs [{xt[0]:.4f}, {xt[-1]:.4f}])")
    return (_integral(xt, yt, lo, hi) - _integral(xa, ya, lo, hi)) / (hi - lo)


def bd_rate(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
            rate_test: Sequence[float], quality_test: Sequence[float]) -> float:
    """BD-rate of the test curve against the anchor, in percent."""
    xa, ya = _points(quality_anchor, _log_rates(rate_anchor, "anchor"), "anchor")
    xt, yt = _points(quality_test, _log_rates(rate_test, "test"), "test")
    return (10 ** _mean_gap(xa, ya, xt, yt, "quality") - 1) * 100


def bd_quality(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
               rate_test: Sequence[float], quality_test: Sequence[float]) -> float:
    """BD-PSNR: mean quality difference (test − anchor) over the common log-rate range."""
    xa, ya = _points(_log_rates(rate_anchor, "anchor"), quality_anchor, "anchor")
    xt, yt = _points(_log_rates(rate_test, "test"), quality_test, "test")
    return _mean_gap(xa, ya, xt, yt, "log-rate")

"""The block tensor of CONTRACTS.md, checked element by element."""
import numpy as np
import pytest

from av1part_train.tensor import InputSpec, build_side, build_x, upsample_chroma


def _blocks(n, bd, seed=0):
    rng = np.random.default_rng(seed)
    mx = (1 << bd) - 1
    return (rng.integers(0, mx + 1, (n, 16, 16)).astype(np.uint16), rng.integers(0, mx + 1, (n, 8, 8)).astype(np.uint16),
            rng.integers(0, mx + 1, (n, 8, 8)).astype(np.uint16), rng.integers(0, mx + 1, (n, 16, 16)).astype(np.uint16))


@pytest.mark.parametrize("bd", [8, 10, 12])
def test_values_follow_the_formula_in_float32(bd):
    spec = InputSpec.create(("y", "u", "v", "prev_y"), (), mean=(0.5, 0.4, 0.6, 0.5), std=(0.25, 0.2, 0.3, 0.25))
    y, u, v, p = _blocks(3, bd)
    x = build_x(spec, y, u, v, p, bd)
    assert x.dtype == np.float32 and x.shape == (3, 4, 16, 16)
    mx = np.float32((1 << bd) - 1)
    for n in range(3):
        for r in (0, 1, 7, 15):
            for c in (0, 3, 8, 15):
                for ch, plane in enumerate((y[n, r, c], u[n, r >> 1, c >> 1], v[n, r >> 1, c >> 1], p[n, r, c])):
                    want = (np.float32(plane) / mx - np.float32(spec.mean[ch])) / np.float32(spec.std[ch])
                    assert x[n, ch, r, c] == want  # bit-exact


def test_chroma_nearest_upsampling():
    c = np.arange(64, dtype=np.uint16).reshape(1, 8, 8)
    up = upsample_chroma(c)
    assert up.shape == (1, 16, 16)
    for r in range(16):
        for col in range(16):
            assert up[0, r, col] == c[0, r >> 1, col >> 1]


def test_prev_y_absent_is_a_copy_of_y():
    spec = InputSpec.create(("y", "prev_y"), ())
    y, u, v, p = _blocks(2, 10)
    x = build_x(spec, y, u, v, p, 10, has_prev=np.array([1, 0]))
    assert np.array_equal(x[0, 1], build_x(InputSpec.create(("y",), ()), p[:1], u[:1], v[:1], None, 10)[0, 0])
    assert np.array_equal(x[1, 1], x[1, 0])
    x2 = build_x(spec, y, u, v, None, 10)
    assert np.array_equal(x2[:, 1], x2[:, 0])


def test_side_features():
    spec = InputSpec.create(("y",), ("qindex", "intra", "has_prev"))
    s = build_side(spec, np.array([0, 255, 120]), np.array([True, False, True]), np.array([0, 1, 1]))
    assert s.dtype == np.float32
    assert s[:, 0].tolist() == [0.0, 1.0, np.float32(120) / np.float32(255)]
    assert s[:, 1].tolist() == [1.0, 0.0, 1.0]
    assert s[:, 2].tolist() == [0.0, 1.0, 1.0]


def test_bad_spec_and_bit_depth():
    with pytest.raises(ValueError, match="unknown channel"):
        InputSpec.create(("y", "w"), ())
    with pytest.raises(ValueError, match="unknown side feature"):
        InputSpec.create(("y",), ("qp",))
    y, u, v, p = _blocks(1, 8)
    with pytest.raises(ValueError, match="bit depth"):
        build_x(InputSpec.create(), y, u, v, p, 9)


def test_cells_layout_follows_the_contract_index():
    """docs/CONTRACTS.md: cells[n][4R + Q][16 ch + 4 i + j] = planar[n][ch][4R + i][4Q + j]."""
    from av1part_train.tensor import to_layout
    planar = np.arange(2 * 3 * 256, dtype=np.float32).reshape(2, 3, 16, 16)
    cells = to_layout(planar, "cells")
    assert cells.shape == (2, 16, 48)
    for n in range(2):
        for ch in range(3):
            for r in range(16):
                for c in range(16):
                    assert cells[n, 4 * (r // 4) + c // 4, 16 * ch + 4 * (r % 4) + c % 4] == planar[n, ch, r, c]
    spec = InputSpec(channels=("y", "u", "v"), mean=(0.5,) * 3, std=(0.25,) * 3, layout="cells")
    assert spec.x_shape() == [-1, 16, 48] and spec.manifest()["layout"] == "cells"
    assert InputSpec.from_manifest(spec.manifest()) == spec
    assert "layout" not in InputSpec.create(("y",)).manifest()   # planar manifests stay as they were
    with pytest.raises(ValueError, match="layout"):
        InputSpec(channels=("y",), mean=(0.5,), std=(0.25,), layout="diagonal")

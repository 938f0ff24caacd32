"""augment.py: every symmetry maps each partition's geometry onto the
partition it is relabelled as, on every plane, and the loader trains on it."""
import numpy as np
import pytest

from av1part_train import PARTITION_NAMES
from av1part_train.augment import FLIP_X, FLIP_Y, TRANSPOSE, augment_arrays, draw, relabel
from av1part_train.loader import BlockDataset
from av1part_train.synth import MASKS
from av1part_train.tensor import InputSpec


def _regions(mask: np.ndarray) -> frozenset:
    """A partition as the set of its sub-blocks' pixel sets (ids do not matter)."""
    return frozenset(frozenset(zip(*np.nonzero(mask == v))) for v in np.unique(mask))


TRANSFORMS = {
    "flip_x": (lambda m: m[:, ::-1], FLIP_X),
    "flip_y": (lambda m: m[::-1, :], FLIP_Y),
    "transpose": (lambda m: m.T, TRANSPOSE),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_symmetry_maps_every_partition_onto_its_relabelled_partition(name):
    f, perm = TRANSFORMS[name]
    for lab in range(10):
        assert _regions(f(MASKS[lab])) == _regions(MASKS[int(perm[lab])]), \
            f"{name}: {PARTITION_NAMES[lab]} is not {PARTITION_NAMES[int(perm[lab])]}"
        assert perm[perm[lab]] == lab   # each is its own inverse


def test_augment_arrays_moves_every_plane_and_its_label_together():
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 10, n)
    y = np.stack([MASKS[int(l)] for l in labels]).astype(np.uint16) * 40 + 10
    u = y[:, ::2, ::2].copy()          # chroma co-sited with luma's even samples
    a = {"y": y, "u": u, "v": u + 1, "prev_y": y + 2, "bit_depth": np.full(n, 8)}
    out, lab2 = augment_arrays(a, labels, "dihedral", np.random.default_rng(1))
    assert (lab2 != labels).any() and out["bit_depth"] is a["bit_depth"]
    assert a["y"] is y and (a["y"] == np.stack([MASKS[int(l)] for l in labels]) * 40 + 10).all()  # input kept
    for i in range(n):
        assert _regions(out["y"][i]) == _regions(MASKS[int(lab2[i])])
        np.testing.assert_array_equal(out["prev_y"][i], out["y"][i] + 2)
        np.testing.assert_array_equal(out["v"][i], out["u"][i] + 1)
    # the 8x8 chroma follows the luma: the masks are constant on 2x2 blocks, so the
    # nearest-upsampled transformed chroma is the transformed luma
    up = np.repeat(np.repeat(out["u"], 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(up, out["y"])

def test_modes():
    rng = np.random.default_rng(0)
    fx, fy, tr = draw(1000, "flips", rng)
    assert fx.mean() > 0.4 and fy.mean() > 0.4 and not tr.any()
    assert not any(v.any() for v in draw(10, "none", rng))
    with pytest.raises(ValueError, match="augment"):
        draw(1, "rotate", rng)
    lab = np.arange(10)
    t = np.ones(10, bool)
    assert relabel(lab, t, t, t).tolist() == TRANSPOSE[FLIP_Y[FLIP_X]].tolist()


def test_the_loader_keeps_every_block_in_its_stage(synth_dataset):
    spec = InputSpec.create(("y", "u", "v", "prev_y"), ("qindex", "intra", "has_prev"))
    for stage in ("stage2", "stage3_rect", "stage3_ab"):
        plain = BlockDataset(synth_dataset, "train", spec, stage)
        aug = BlockDataset(synth_dataset, "train", spec, stage, augment="dihedral")
        idx = np.arange(min(len(plain), 200))
        b0, b1 = plain.batch(idx), aug.batch(idx)
        assert (b1["label10"] != b0["label10"]).any() or stage == "stage2"
        assert (b1["y"] >= 0).all() and (plain.lut[b1["label10"].numpy()] == b1["y"].numpy()).all()
        assert not np.array_equal(b0["x"].numpy(), b1["x"].numpy())
    with pytest.raises(ValueError, match="augment"):
        BlockDataset(synth_dataset, "train", spec, "stage1", augment="rot90")

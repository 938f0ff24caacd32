"""The dataset reader: memmaps, tensor per CONTRACTS.md, stage routing, samplers."""
import numpy as np
import pytest

from av1part_train.loader import BalancedSampler, BlockDataset, DatasetError, make_loader
from av1part_train.synth import make_synthetic_dataset
from av1part_train.tensor import InputSpec, build_side, build_x

SPEC = InputSpec.create(("y", "u", "v", "prev_y"), ("qindex", "intra", "has_prev"))


def test_memmap_and_tensor(synth_dataset):
    ds = BlockDataset(synth_dataset, "train", SPEC, "stage1")
    assert all(isinstance(s.arr["y"], np.memmap) for s in ds.shards)
    idx = np.array([5, 0, 300, 17])
    b = ds.batch(idx)
    sh = {s.name: s for s in ds.shards}
    for j, i in enumerate(idx):
        s = ds.shards[ds.sid[i]]
        r = ds.rows[i]
        m = s.arr["meta"][r]
        want = build_x(SPEC, s.arr["y"][r:r + 1], s.arr["u"][r:r + 1], s.arr["v"][r:r + 1], s.arr["prev_y"][r:r + 1],
                       int(m["bit_depth"]), np.array([m["has_prev"]]))
        assert np.array_equal(b["x"][j].numpy(), want[0])
        ws = build_side(SPEC, np.array([m["base_qindex"]]), np.array([m["frame_type"] in (0, 2)]), np.array([m["has_prev"]]))
        assert np.array_equal(b["side"][j].numpy(), ws[0])
        assert b["label10"][j] == s.arr["labels"][r]
        assert b["y"][j] == (0 if s.arr["labels"][r] == 0 else 1)


def test_stage_routing(synth_dataset):
    n10 = BlockDataset(synth_dataset, "train", SPEC, None).counts
    assert BlockDataset(synth_dataset, "train", SPEC, "stage1").counts.tolist() == [n10[0], n10[1:].sum()]
    s2 = BlockDataset(synth_dataset, "train", SPEC, "stage2")
    assert s2.counts.tolist() == [n10[3], n10[[1, 2, 8, 9]].sum(), n10[[4, 5, 6, 7]].sum()]
    assert BlockDataset(synth_dataset, "train", SPEC, "stage3_ab").counts.tolist() == n10[[4, 5, 6, 7]].tolist()


def test_loader_batches_and_samplers(synth_dataset):
    ds = BlockDataset(synth_dataset, "train", SPEC, "stage2")
    batches = list(make_loader(ds, 64, shuffle=True, seed=1))
    assert sum(len(b["y"]) for b in batches) == len(ds)
    s = BalancedSampler(ds.targets, num_samples=3000, seed=0)
    got = np.bincount(ds.targets[list(s)], minlength=3) / 3000
    assert np.allclose(got, 1 / 3, atol=0.05)
    r0 = list(BalancedSampler(ds.targets, 100, seed=0, rank=0, world_size=2))
    r1 = list(BalancedSampler(ds.targets, 100, seed=0, rank=1, world_size=2))
    assert len(r0) == len(r1) == 50
    d0 = list(make_loader(ds, 1000, True, seed=3, rank=0, world_size=2).sampler)
    d1 = list(make_loader(ds, 1000, True, seed=3, rank=1, world_size=2).sampler)
    assert len(set(d0) & set(d1)) <= 1  # DistributedSampler pads an odd length by one
    assert set(d0) | set(d1) == set(range(len(ds)))


def test_errors(tmp_path):
    with pytest.raises(DatasetError, match="manifest.json: missing"):
        BlockDataset(tmp_path, "train", SPEC)
    root = make_synthetic_dataset(tmp_path / "d", {"a": "train", "b": "val"}, blocks_per_shard=64, drop_classes=[6])
    with pytest.raises(DatasetError, match=r"no blocks of class\(es\) \['VERT_A'\]"):
        BlockDataset(root, "train", SPEC, "stage3_ab")
    with pytest.raises(DatasetError, match="split 'test' is empty"):
        BlockDataset(root, "test", SPEC, "stage1")
    with pytest.raises(DatasetError, match="no split 'holdout'"):
        BlockDataset(root, "holdout", SPEC, "stage1")


def test_incomplete_shards_are_skipped(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", {"a": "train", "b": "train", "c": "val"}, blocks_per_shard=64,
                                  incomplete_shard=True)
    ds = BlockDataset(root, "train", SPEC, None, require_all_classes=False)
    assert len(ds.shards) == 1 and ds.incomplete_shards == ["a__cq32"]


def _with_preset(root, cpu_used):
    import json
    mp = root / "manifest.json"
    m = json.loads(mp.read_text())
    m["recipe"]["cpu_used"] = cpu_used
    mp.write_text(json.dumps(m))
    return root


def test_several_datasets_one_per_preset(tmp_path):
    a = _with_preset(make_synthetic_dataset(tmp_path / "p1", blocks_per_shard=64, seed=1), 1)
    b = _with_preset(make_synthetic_dataset(tmp_path / "p3", blocks_per_shard=64, seed=2), 3)
    spec = InputSpec.create(("y",), ("qindex", "cpu_used"))
    one = BlockDataset(a, "train", spec, None)
    both = BlockDataset(f"{a},{b}", "train", spec, None)
    assert len(both) == len(one) + len(BlockDataset(b, "train", spec, None))
    assert BlockDataset([str(a), str(b)], "train", spec, None).counts.tolist() == both.counts.tolist()
    side = both.batch(np.arange(len(both)))["side"].numpy()
    g = both.groups()
    assert set(g["cpu_used"].tolist()) == {1, 3}
    np.testing.assert_array_equal(side[:, 1], (g["cpu_used"] / 10.0).astype(np.float32))
    assert len(g["sequence"]) == len(both) and g["intra"].dtype == bool
    # a model that takes the preset needs datasets that state one
    bare = make_synthetic_dataset(tmp_path / "bare", blocks_per_shard=64)
    with pytest.raises(DatasetError, match="cpu_used"):
        BlockDataset(bare, "train", spec, None)


def test_build_side_cpu_used():
    spec = InputSpec.create(("y",), ("cpu_used", "qindex"))
    s = build_side(spec, np.array([0, 255]), np.array([0, 1]), np.array([0, 0]), 3)
    np.testing.assert_array_equal(s, np.array([[0.3, 0.0], [0.3, 1.0]], np.float32))
    with pytest.raises(ValueError, match="cpu_used"):
        build_side(spec, np.array([0]), np.array([0]), np.array([0]))

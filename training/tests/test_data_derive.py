"""Label derivation (training/labels/derive.c) on synthetic block-size maps.

The reference is an independent Python partition-tree generator (av1part_train.data.testing)
following libaom's partition syntax; the C derivation must reproduce its 16x16 nodes exactly.
"""
import random
import subprocess

import pytest

from av1part_train.data import testing as T
from av1part_train.data.errors import DataError
from av1part_train.data.tools import ensure_tools, labels_path


@pytest.fixture(scope="module")
def derive(tmp_path_factory):
    try:
        ensure_tools()
    except DataError as e:
        pytest.fail(f"libaom tools unavailable: {e}")
    d = tmp_path_factory.mktemp("maps")
    count = [0]

    def run(frame_or_text):
        text = frame_or_text if isinstance(frame_or_text, str) else frame_or_text.map_text()
        count[0] += 1
        p = d / f"m{count[0]}.txt"
        p.write_text(text)
        r = subprocess.run([str(labels_path()), "--map", str(p)], capture_output=True, text=True)
        rows = [tuple(int(v) for v in l.split()) if not l.startswith("inconsistent") else l
                for l in r.stdout.splitlines()]
        return r.returncode, rows
    return run




def test_all_ten_types_at_16x16(derive):
    # 64x64 frame, SB 64 split, every 32x32 split, the 16 nodes get every type (some twice)
    types = list(range(10)) + [0, 3, 4, 7, 8, 9]
    force = {(4 * (i // 4), 4 * (i % 4)): t for i, t in enumerate(types)}
    f = T.Frame(64, 64, sb=16, rng=random.Random(1),
                weights={16: [0, 0, 0, 1] + [0] * 6, 8: [0, 0, 0, 1] + [0] * 6}, force16=force)
    assert sorted(p for _, _, p, _ in f.nodes) == sorted(types)
    rc, rows = derive(f)
    assert rc == 0
    assert sorted(rows) == sorted(f.nodes)


@pytest.mark.parametrize("p32", [T.NONE, T.HORZ, T.VERT, T.HORZ_A, T.HORZ_B, T.VERT_A, T.VERT_B,
                                 T.HORZ_4, T.VERT_4])
def test_no_node_under_a_non_split_32x32(derive, p32):
    """32x32 HORZ_A/B, VERT_A/B contain 16x16 leaves that are not 16x16 nodes; 4-way gives 32x8/8x32."""
    f = T.Frame(64, 64, sb=16, rng=random.Random(2),
                weights={16: [0, 0, 0, 1] + [0] * 6, 8: [0, 0, 0, 1] + [0] * 6})
    # repaint the top-left 32x32 with partition p32, leaves only
    f.nodes = [n for n in f.nodes if not (n[0] < 32 and n[1] < 32)]
    for (r, c, h, w, _) in T.sub_blocks(0, 0, 8, p32):
        f.bw[r:r + h, c:c + w] = 4 * w
        f.bh[r:r + h, c:c + w] = 4 * h
    rc, rows = derive(f)
    assert rc == 0
    assert sorted(rows) == sorted(f.nodes)
    assert not any(x < 32 and y < 32 for x, y, _, _ in rows)
    if p32 in (T.HORZ_A, T.HORZ_B, T.VERT_A, T.VERT_B):  # there are 16x16-sized leaves
        assert ((f.bw[:8, :8] == 16) & (f.bh[:8, :8] == 16)).any()


@pytest.mark.parametrize("p64", [T.NONE, T.HORZ, T.VERT, T.HORZ_A, T.HORZ_B, T.VERT_A, T.VERT_B,
                                 T.HORZ_4, T.VERT_4])
def test_no_node_under_a_non_split_64x64(derive, p64):
    f = T.Frame(64, 64, sb=16, rng=random.Random(3))
    f.nodes = []
    for (r, c, h, w, rec) in T.sub_blocks(0, 0, 16, p64):
        f.bw[r:r + h, c:c + w] = 4 * w
        f.bh[r:r + h, c:c + w] = 4 * h
    rc, rows = derive(f)
    assert rc == 0 and rows == []


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size,sb", [((176, 144), 16), ((200, 120), 16), ((136, 72), 32), ((72, 40), 16)])
def test_random_trees_match(derive, seed, size, sb):
    """Random valid partition trees (SB 64 or 128, frame edges with inferred partitions)."""
    rng = random.Random(seed * 1000 + size[0])
    # bias towards splitting so that many 16x16 nodes exist
    w = {32: [1, 1, 1, 9, 1, 1, 1, 1, 0, 0], 16: [1, 1, 1, 6, 1, 1, 1, 1, 1, 1],
         8: [1, 1, 1, 6, 1, 1, 1, 1, 1, 1], 4: [3] * 10, 2: [1, 1, 1, 1] + [0] * 6}
    f = T.Frame(*size, sb=sb, rng=rng, weights=w)
    rc, rows = derive(f)
    assert rc == 0
    assert sorted(rows) == sorted(f.nodes)


def test_edge_nodes_partial_rows_and_cols(derive):
    """A 40x40 frame: the 16x16 nodes at x=32 or y=32 are cut by the frame edge (8 of 16
    pixels inside): only HORZ/SPLIT (bottom), VERT/SPLIT (right), SPLIT (corner) are possible."""
    seen = set()
    for seed in range(40):
        f = T.Frame(40, 40, sb=16, rng=random.Random(seed),
                    weights={16: [0, 0, 0, 1] + [0] * 6, 8: [0, 0, 0, 1] + [0] * 6, 4: [1] * 10})
        rc, rows = derive(f)
        assert rc == 0 and sorted(rows) == sorted(f.nodes)
        for x, y, p, e in rows:
            assert e == int(x == 32 or y == 32)
            if e:
                seen.add((x == 32, y == 32, p))
    assert {(False, True, T.HORZ), (False, True, T.SPLIT), (True, False, T.VERT),
            (True, False, T.SPLIT), (True, True, T.SPLIT)} <= seen


def test_inconsistent_map_is_reported(derive):
    f = T.Frame(32, 32, sb=16, rng=random.Random(5),
                weights={16: [0, 0, 0, 1] + [0] * 6, 8: [0, 0, 0, 1] + [0] * 6, 4: [1] + [0] * 9})
    f.bw[0, 0], f.bh[0, 0] = 8, 8  # a 16x16 NONE node with one 8x8 mi: no partition matches
    rc, rows = derive(f)
    assert rc == 3 and rows == ["inconsistent 0 0"]

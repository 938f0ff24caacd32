"""The registry clip catalog: every entry pinned, splits by clip, crops that fit."""
import pytest

from av1part_train.clips import CLIPS, DEFAULT_CLIPS, catalog_inputs, centre_crop
from av1part_train.data.errors import DataError


def test_catalog_entries_are_pinned_and_split_by_clip():
    assert len(CLIPS) >= 20
    for c in CLIPS.values():
        assert len(c.archive.sha256) == 64 and len(c.sha256) == 64, c.name
        assert c.split in ("train", "val", "test") and c.licence and c.content
        w, h, x, y = c.crop
        assert x + w <= c.size[0] and y + h <= c.size[1], c.name
    splits = {s: [c for c in CLIPS.values() if c.split == s] for s in ("train", "val", "test")}
    assert all(splits.values())
    # the encoder evaluation's default clips are never trained on
    assert all(CLIPS[n].split == "test" for n in DEFAULT_CLIPS)
    # distinct sources: no video file twice
    assert len({c.sha256 for c in CLIPS.values()}) == len(CLIPS)


def test_centre_crop():
    c = CLIPS["city"]  # 720x405
    assert centre_crop(c, "384x224") == (384, 224, 168, 90)
    assert centre_crop(c, "full") == (720, 404, 0, 0)
    assert centre_crop(CLIPS["carphone"], "384x224") == (176, 144, 0, 0)  # smaller clips stay whole
    for bad in ("384", "383x224", "0x16", "axb"):
        with pytest.raises(DataError):
            centre_crop(c, bad)


def test_unknown_catalog_clip_is_refused():
    with pytest.raises(DataError, match="unknown catalog clip"):
        catalog_inputs("city,nosuchclip", 30, "384x224")


def test_splits_by_clip_flag():
    from pathlib import Path
    from av1part_train.data.build import Sequence, _splits_by_clip
    seqs = [Sequence(n, clip, Path("x"), 0, 10, 16, 16, 8) for n, clip in
            (("a_s0", "a"), ("a_s1", "a"), ("b", "b"))]
    assert _splits_by_clip(seqs, {"train": ["a_s0", "a_s1"], "val": [], "test": ["b"]})
    assert not _splits_by_clip(seqs, {"train": ["a_s0", "b"], "val": [], "test": ["a_s1"]})

"""Metrics against hand-computed values."""
import numpy as np
import pytest

from av1part_train.metrics import calibration_bins, classification_metrics, ece_mce, prf_from_confusion


def test_prf_by_hand():
    # true: 0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    cm = np.array([[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    m = prf_from_confusion(cm, ["a", "b", "c"])
    # a: P 1, R 2/3, F1 0.8 ; b: P 1/2, R 1/2, F1 1/2 ; c: P 1/2, R 1, F1 2/3
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_absent_class_not_averaged():
    cm = np.array([[3, 0], [0, 0]])
    assert prf_from_confusion(cm)["macro_f1"] == pytest.approx(1.0)
    # predicted but never true: counted (F1 0), as scikit-learn does
    cm = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert prf_from_confusion(cm)["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)


def test_ece_mce_by_hand():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    ece, mce = ece_mce(calibration_bins(probs, y, 10))
    # bin 0.9: conf 0.9, acc 0.5 -> gap 0.4 (weight 1/2); bin 0.6: conf 0.6, acc 1 -> gap 0.4 (1/2)
    assert ece == pytest.approx(0.4)
    assert mce == pytest.approx(0.4)
    m = classification_metrics(probs, y, ["a", "b"])
    assert m["ece"] == pytest.approx(0.4, abs=1e-9)


def test_topk_recall_and_the_prior_list():
    import numpy as np
    from av1part_train.pipeline import prior_leaf_distribution, topk_recall
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]])
    y = np.array([2, 1, 1])
    r = topk_recall(p, y, (1, 2, 3))
    assert r == {"1": 0.0, "2": 1 / 3, "3": 1.0}
    # ties go to the lower index: block 2 ranks 2, 0, 1
    assert topk_recall(p[2:], y[2:], (2,))["2"] == 0.0
    m = {"cascade": {"root": "a", "skip_below": 0.0},
         "stages": [{"name": "a", "classes": [{"name": "n", "partition": "NONE"}, {"name": "p", "next": "b"}],
                     "prior": [0.6, 0.4]},
                    {"name": "b", "classes": [{"name": "s", "partition": "SPLIT"}, {"name": "h", "partition": "HORZ"}],
                     "prior": [0.25, 0.75]}]}
    d = prior_leaf_distribution(m)
    assert np.allclose(d[[0, 3, 1]], [0.6, 0.1, 0.3]) and abs(d.sum() - 1) < 1e-6


def test_greedy_and_prune_sets():
    import numpy as np
    from av1part_train.pipeline import greedy_partitions, prune_set_stats
    m = {"cascade": {"root": "a", "skip_below": 0.0},
         "stages": [{"name": "a", "classes": [{"name": "n", "partition": "NONE"}, {"name": "p", "next": "b"}],
                     "prior": [0.6, 0.4]},
                    {"name": "b", "classes": [{"name": "s", "partition": "SPLIT"}, {"name": "h", "partition": "HORZ"}],
                     "prior": [0.25, 0.75]}]}
    # block 0: NONE 0.4 vs PARTITION 0.6 -> b: SPLIT 0.5/HORZ 0.5 -> SPLIT (tie: lower index)
    # block 1: stage b did not run (NaN) -> its prior -> HORZ
    sp = {"a": np.array([[0.4, 0.6], [0.3, 0.7]], np.float32),
          "b": np.array([[0.5, 0.5], [np.nan, np.nan]], np.float32)}
    assert greedy_partitions(m, sp).tolist() == [3, 1]
    # balanced: block 0 at a: 0.4/0.6 vs 0.6/0.4 -> PARTITION; at b: 0.5/0.25 vs 0.5/0.75 -> SPLIT;
    # a row like [0.55, 0.45] at a stays NONE greedy but turns PARTITION balanced (0.92 < 1.125)
    sp2 = {"a": np.array([[0.4, 0.6], [0.55, 0.45], [0.3, 0.7]], np.float32),
           "b": np.array([[0.5, 0.5], [0.1, 0.9], [0.3, 0.7]], np.float32)}
    assert greedy_partitions(m, sp2).tolist() == [3, 0, 1]
    assert greedy_partitions(m, sp2, balanced=True).tolist() == [3, 1, 3]
    assert greedy_partitions(m, sp, balanced=True).tolist() == [3, 1]   # a skipped stage: its prior's argmax
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    st = prune_set_stats(p, np.array([1, 2]), 0.7)
    assert st == {"recall": 1.0, "mean_size": 1.5}          # sizes 2 and 1
    assert prune_set_stats(p, np.array([2, 0]), 0.7)["recall"] == 0.0

"""The experiment protocol's bookkeeping: one change per row, the paired
difference, and the common class balance."""
import pytest

from av1part_train.experiments import ADAPTER, BALANCE, REFERENCE, ROWS, paired


def _r(f1, nll=1.0):
    return {"test": {"macro_f1": f1, "nll": nll}}


def test_paired_difference_is_seed_by_seed():
    res = {"a": {1: _r(0.40), 2: _r(0.50), 3: _r(0.45)}, "b": {1: _r(0.42), 2: _r(0.49), 3: _r(0.50), 4: _r(0.9)}}
    p = paired(res, "b", "a")
    assert p["seeds"] == [1, 2, 3]  # seed 4 has no partner
    assert p["diffs"] == pytest.approx([0.02, -0.01, 0.05])
    assert p["mean"] == pytest.approx(0.02) and p["positive"] == 2
    assert paired(res, "b", "missing") is None


def test_every_row_changes_one_thing_and_the_losses_share_one_class_balance():
    assert BALANCE == {"balanced_sampling": True, "class_weights": "none"}
    for row, (stage, over, what, against) in ROWS.items():
        if against is None:
            continue
        ref = {**BALANCE, **ADAPTER, **ROWS[against][1]}
        changed = {k for k, v in {**BALANCE, **ADAPTER, **over}.items() if ref.get(k) != v}
        if row == "finetune":  # mode and its own learning rates / schedule, as in the notes
            assert changed == {"mode", "unfreeze_epoch", "lr_head", "lr"}
        elif row == "cb_weights":  # the balancing mechanism: sampler -> weights (beta)
            assert changed <= {"balanced_sampling", "class_weights", "beta"} and against == "focal_g2"
        elif row.startswith("focal") or row in ("poly1", "asymmetric"):
            assert "loss" in changed or "gamma" in changed
            assert not changed & {"balanced_sampling", "class_weights", "mode", "adapter"}, row
        else:
            assert len(changed) == 1, (row, changed)
    assert ROWS[REFERENCE][3] is None

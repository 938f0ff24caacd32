"""The command line end to end on a small synthetic dataset: train-all with the
packaged smoke config (train, export, test metrics), evaluate, experiments."""
import json

from av1part_train.cli import main


def test_cli_pipeline(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["make-synthetic-dataset", "--out", str(data), "--sequences", "4", "--blocks-per-shard", "200"]) == 0
    quick = ["--set", "epochs=1", "--set", "max_steps_per_epoch=3", "--set", "progress=false", "--set", "threads=1",
             "--set", "val_max_blocks=200", "--set", "validate_subset=64", "--set", "plots=false"]
    assert main(["train-all", "--config", "smoke", "--data", str(data), "--out-root", str(tmp_path / "runs"),
                 "--bundle", str(tmp_path / "bundle"), "--name", "smoke"] + quick) == 0
    m = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert m["name"] == "smoke" and "test" in m["training"]["metrics"]
    assert m["training"]["recipe"]["ensemble_members"]["stage3_ab"] == 2
    assert main(["evaluate", "--bundle", str(tmp_path / "bundle"), "--data", str(data), "--skip-below", "0", "0.1",
                 "--json", str(tmp_path / "eval.json")]) == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert [e["skip_below"] for e in ev] == [0.0, 0.1]
    # re-export from the run root gives the same ONNX files
    # train-all exports calibrated on the dataset: so does this
    assert main(["export", "--run-root", str(tmp_path / "runs"), "--out", str(tmp_path / "bundle2"),
                 "--data", str(data), "--calibrate"]) == 0
    m2 = json.loads((tmp_path / "bundle2" / "manifest.json").read_text())
    assert [s["sha256"] for s in m2["stages"]] == [s["sha256"] for s in m["stages"]]
    exp = tmp_path / "exp"
    args = ["experiments", "--data", str(data), "--out", str(exp), "--budget", "tiny", "--epochs", "1",
            "--max-steps", "2", "--only", "conv_g4", "frozen_head", "--threads", "1"]
    # two processes may share one --out, one seed each
    assert main(args + ["--seeds", "1"]) == 0
    assert main(args + ["--seeds", "2"]) == 0
    assert sorted(p.parent.name for p in exp.glob("frozen_head/seed*/result.json")) == ["seed1", "seed2"]
    md = (exp / "results.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| frozen_head |"))
    assert "| conv_g4 | 2 |" in row and "/2 >0)" in row  # paired against the reference over both seeds
    assert "| stage1 |" in md and "| conv_g4 |" in md
    # resumes: finished runs are not trained again
    before = (exp / "conv_g4" / "seed1" / "result.json").stat().st_mtime_ns
    assert main(args + ["--seeds", "1"]) == 0
    assert (exp / "conv_g4" / "seed1" / "result.json").stat().st_mtime_ns == before


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    from av1part_train.synth import make_synthetic_dataset
    data = make_synthetic_dataset(tmp_path / "d", {"a": "train", "b": "val"}, blocks_per_shard=64, drop_classes=[8])
    assert main(["train-all", "--data", str(data), "--out-root", str(tmp_path / "r"), "--bundle", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "DatasetError" in err and "HORZ_4" in err and "allow_missing_classes" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # failed before any training


def test_cli_pipeline_blocknet_fused(tmp_path):
    """train-all with a BlockNet arch writes a fused (schema 2) bundle that
    the reference loads and scores, and re-export reproduces its graph."""
    data = tmp_path / "data"
    assert main(["make-synthetic-dataset", "--out", str(data), "--sequences", "4", "--blocks-per-shard", "200"]) == 0
    quick = ["--set", "epochs=1", "--set", "max_steps_per_epoch=3", "--set", "progress=false", "--set", "threads=1",
             "--set", "val_max_blocks=200", "--set", "validate_subset=64", "--set", "plots=false",
             "--set", 'arch="blocknet8"', "--set", 'stem="patch4"']
    assert main(["train-all", "--config", "smoke", "--data", str(data), "--out-root", str(tmp_path / "runs"),
                 "--bundle", str(tmp_path / "bundle"), "--name", "bn"] + quick) == 0
    m = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert m["schema_version"] == 2 and m["graph"]["file"] == "model.onnx" and "trunk" not in m
    assert [s["output"]["name"] for s in m["stages"]] == ["stage1", "stage2", "stage3_rect", "stage3_ab"]
    assert m["training"]["recipe"]["shared_layer3"] is True
    assert "test" in m["training"]["metrics"]
    # train-all exports calibrated on the dataset: so does this
    assert main(["export", "--run-root", str(tmp_path / "runs"), "--out", str(tmp_path / "bundle2"),
                 "--data", str(data), "--calibrate"]) == 0
    m2 = json.loads((tmp_path / "bundle2" / "manifest.json").read_text())
    assert m2["graph"]["sha256"] == m["graph"]["sha256"]


def test_cli_sizes_plot(tmp_path):
    """sizes: one point per evaluate result, a PNG and its data as JSON;
    a malformed point is refused."""
    import pytest
    ev = {"stages": {s: {"macro_f1": f, "macro_f1_balanced": f + 0.1} for s, f in
                     (("stage1", 0.7), ("stage2", 0.5), ("stage3_rect", 0.3), ("stage3_ab", 0.35))},
          "topk_recall": {str(k): 0.8 + 0.03 * k for k in range(1, 6)},
          "prior_topk_recall": {str(k): 0.8 + 0.02 * k for k in range(1, 6)}}
    (tmp_path / "e.json").write_text(json.dumps([ev]))
    out = tmp_path / "s.png"
    assert main(["sizes", "--point", f"a=5={tmp_path / 'e.json'}", "--point", f"b=50={tmp_path / 'e.json'}=baseline",
                 "--point", f"c=9={tmp_path / 'e.json'}=balanced", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    data = json.loads((tmp_path / "s.json").read_text())
    assert [d["name"] for d in data] == ["a", "b", "c"] and data[1]["stage_macro_f1"]["stage2"] == 0.5
    # a calibrated bundle's point takes the balanced rule's macro F1, and says so
    assert data[2]["stage_macro_f1"]["stage2"] == 0.6 and data[2]["decision_rule"] == "balanced"
    for bad in ("a=5", f"a=5={tmp_path / 'e.json'}=bold"):
        with pytest.raises(SystemExit):
            main(["sizes", "--point", bad, "--out", str(out)])


def test_commands_that_need_a_trunk_refuse_statsmlp_at_once(tmp_path):
    import pytest
    for argv in (["experiments", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--arch", "statsmlp"],
                 ["bench-step", "--arch", "statsmlp"]):
        with pytest.raises(SystemExit, match="has no trunk"):
            main(argv)

//! Fused bundles (schema_version 2, `onnx/test-fused`): one graph with every
//! stage's output. Each broken copy must fail with a model-load error naming
//! the file and the field or output.

mod common;

use av1part::{Context, Prediction};
use serde_json::{json, Value};

fn fused() -> std::path::PathBuf {
    common::root().join("onnx/test-fused")
}

fn copy_fused() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fused()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn edit(f: impl FnOnce(&mut Value), needles: &[&str]) {
    let d = copy_fused();
    let p = d.path().join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&p, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    common::expect_model_error(d.path(), needles);
}

#[test]
fn loads_and_predicts_with_one_run_per_chunk() {
    let ctx = Context::new(&common::config(&fused())).unwrap();
    assert_eq!(ctx.stages().len(), 4);
    let gb = common::random_blocks(300, 9);
    let blocks: Vec<_> = gb.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); blocks.len()];
    ctx.predict_blocks(&blocks, &mut out).unwrap();
    for (b, p) in blocks.iter().zip(&out) {
        let single = ctx.predict_block(b).unwrap();
        // the contract's tolerance: batch 1 and batch 300 may run other kernels
        for (a, c) in p.probabilities.iter().zip(&single.probabilities) {
            assert!((a - c).abs() <= 1e-5);
        }
        let sum: f32 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
}

#[test]
fn a_stage_output_the_graph_lacks() {
    edit(
        |m| m["stages"][1]["output"]["name"] = json!("stage2x"),
        &["model.onnx", "stages[1].output", "stage2x"],
    );
}

#[test]
fn a_graph_output_no_stage_uses() {
    // stage2's output renamed to stage3_rect's: used twice, and the graph's
    // `stage2` output is then no stage's.
    edit(
        |m| m["stages"][1]["output"]["name"] = json!("stage3_rect"),
        &[
            "manifest.json",
            "stages[2].output.name",
            "used by two stages",
        ],
    );
}

#[test]
fn wrong_output_width() {
    // stage1 declared with 2 classes but checked against a 3-wide output
    edit(
        |m| {
            m["stages"][0]["output"]["name"] = json!("stage2");
            m["stages"][1]["output"]["name"] = json!("stage1");
        },
        &["model.onnx", "stages[0].output", "shape"],
    );
}

#[test]
fn stage_files_are_refused_in_a_fused_bundle() {
    edit(
        |m| m["stages"][2]["file"] = json!("stage3_rect.onnx"),
        &["stages[2].file", "fused bundle"],
    );
}

#[test]
fn a_trunk_is_refused_in_a_fused_bundle() {
    edit(
        |m| {
            m["trunk"] = json!({"file": "model.onnx", "sha256": "0".repeat(64),
                                "input": {"name": "x", "shape": [-1, 4, 16, 16]},
                                "output": {"name": "f", "shape": [-1, 8, 4, 4]}})
        },
        &["trunk", "no trunk"],
    );
}

#[test]
fn graph_needs_schema_2_and_schema_2_needs_graph() {
    edit(
        |m| m["schema_version"] = json!(1),
        &["graph", "schema_version 2"],
    );
    edit(
        |m| {
            m.as_object_mut().unwrap().remove("graph");
        },
        &["graph", "needs `graph`"],
    );
    edit(|m| m["schema_version"] = json!(3), &["schema_version", "3"]);
}

#[test]
fn graph_hash_and_inputs_are_checked() {
    edit(
        |m| m["graph"]["sha256"] = json!("0".repeat(64)),
        &["model.onnx", "graph.sha256", "SHA-256 mismatch"],
    );
    edit(
        |m| m["graph"]["inputs"][0]["source"] = json!("trunk"),
        &["graph.inputs[0].source", "no trunk"],
    );
    edit(
        |m| m["graph"]["inputs"][1]["name"] = json!("sidefeatures"),
        &["model.onnx", "graph.inputs"],
    );
}

/// A bundle without trunk (`onnx/test-notrunk`): the graph's one input is
/// `side`, so the plugin builds no block tensor, yet it reads and checks
/// every plane as for any bundle, and the previous frame still counts
/// (through `block_stats` and `has_prev`).
#[test]
fn a_graph_without_block_input_predicts_and_still_checks_the_planes() {
    let dir = common::root().join("onnx/test-notrunk");
    let ctx = Context::new(&common::config(&dir)).unwrap();
    assert!(ctx.uses_prev_frame());
    let mut gb = common::random_blocks(40, 3);
    let blocks: Vec<_> = gb.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); blocks.len()];
    ctx.predict_blocks(&blocks, &mut out).unwrap();
    // the prediction moves with the samples (the statistics read them)
    let mut moved = 0;
    for (i, b) in gb.iter().enumerate() {
        let mut flat = b.clone();
        flat.y.iter_mut().for_each(|s| *s = 1 << (b.bit_depth - 1));
        let mut one = [Prediction::default()];
        ctx.predict_blocks(&[flat.block()], &mut one).unwrap();
        moved += (one[0].probabilities != out[i].probabilities) as usize;
    }
    assert!(moved >= 35, "only {moved} of 40 predictions depend on the luma samples");
    let max = (1u16 << gb[0].bit_depth) - 1;
    gb[0].u[5] = max + 1;
    let mut one = [Prediction::default()];
    let e = ctx.predict_blocks(&[gb[0].block()], &mut one).unwrap_err();
    assert!(e.to_string().contains(&format!("exceeds {max}")), "{e}");
}

/// A manifest that declares a block input the side-only graph lacks is a
/// model-load error naming the input.
#[test]
fn a_block_input_the_graph_lacks_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let src = common::root().join("onnx/test-notrunk");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    let p = d.path().join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    m["graph"]["inputs"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"name": "x", "source": "block", "shape": [-1, 4, 16, 16]}));
    std::fs::write(&p, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    common::expect_model_error(d.path(), &["model.onnx", "x"]);
}

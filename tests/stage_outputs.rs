//! Stage outputs that are not probability distributions are refused at
//! inference, naming the stage; a stage that outputs a fixed distribution
//! flows through the cascade exactly; the decision grid changes decisions
//! only near ties.

mod common;

use std::path::Path;

use av1part::{Context, Prediction, Status};

/// A copy of test-tiny whose stage1.onnx is the fixture `fixture`, with the
/// manifest's hash updated (so only the output check can catch it).
fn tiny_with_stage1(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(common::tiny()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let src = common::root().join("tests/fixtures").join(fixture);
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dir.path().join("stage1.onnx"), &bytes).unwrap();
    let mpath = dir.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["stages"][0]["sha256"] = sha256(&bytes).into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    dir
}

fn sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn predict_all(dir: &Path, grid: u32) -> av1part::Result<Vec<Prediction>> {
    let mut cfg = common::config(dir);
    cfg.skip_below = Some(0.0);
    cfg.decision_grid = grid;
    let ctx = Context::new(&cfg)?;
    let gb = common::random_blocks(40, 5);
    let blocks: Vec<_> = gb.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); blocks.len()];
    ctx.predict_blocks(&blocks, &mut out)?;
    Ok(out)
}

#[test]
fn rows_that_do_not_sum_to_one_fail_naming_the_stage() {
    let d = tiny_with_stage1("stage1_rows_sum_1p8.onnx");
    let e = predict_all(d.path(), 1024).unwrap_err();
    assert_eq!(e.status(), Status::Inference, "{e}");
    let m = e.to_string();
    assert!(m.contains("stage1") && m.contains("sums to"), "{m}");
    assert!(
        m.contains(&format!("{}", av1part::PROB_SUM_TOLERANCE)),
        "{m}"
    );
}

#[test]
fn a_fixed_distribution_flows_through_exactly() {
    let d = tiny_with_stage1("stage1_rows_sum_1.onnx");
    let out = predict_all(d.path(), 1024).unwrap();
    for p in &out {
        assert_eq!(p.stage_probabilities[0][..2], [0.25, 0.75]);
        assert!((p.probabilities[0] - 0.25).abs() < 1e-7);
        let sum: f32 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
}

#[test]
fn the_decision_grid_moves_decisions_only_near_ties() {
    let raw = predict_all(&common::tiny(), 0).unwrap();
    let grid = predict_all(&common::tiny(), 1024).unwrap();
    for (a, b) in raw.iter().zip(&grid) {
        // probabilities are returned unrounded either way
        assert_eq!(a.probabilities, b.probabilities);
        if a.partition != b.partition {
            let gap = a.probabilities[a.partition as usize] - a.probabilities[b.partition as usize];
            assert!(gap.abs() <= 3.0 / 1024.0, "decisions differ by {gap}");
        }
    }
}

#[test]
fn the_decision_grid_is_validated() {
    for bad in [3, 1000, 1 << 17] {
        let mut cfg = common::config(&common::tiny());
        cfg.decision_grid = bad;
        let e = Context::new(&cfg).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(e.to_string().contains("decision_grid"));
    }
}

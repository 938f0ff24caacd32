//! Parity with the Python reference cascade (`onnx/<bundle>/golden.json`):
//! Rust predictions equal Python onnxruntime's within 1e-5.

mod common;

use av1part::{Context, Prediction};
use common::{golden, tiny, GResult};

const TOL: f64 = 1e-5;

fn check(ctx: &Context, what: &str, got: &[Prediction], want: &[GResult]) -> usize {
    let mut nulls = 0;
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (k, (a, b)) in g.probabilities.iter().zip(&w.probabilities).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= TOL,
                "{what} block {i} prob[{k}]: rust {a} python {b}"
            );
        }
        assert_eq!(g.partition, w.partition, "{what} block {i}: partition");
        let sum: f64 = g.probabilities.iter().map(|&p| p as f64).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{what} block {i}: sum {sum}");
        for (name, stage) in &w.stages {
            let s = ctx
                .stages()
                .iter()
                .position(|st| &st.name == name)
                .expect("stage in bundle");
            let ran = g.stages_run & (1 << s) != 0;
            match stage {
                None => {
                    nulls += 1;
                    assert!(
                        !ran,
                        "{what} block {i}: stage {name} ran, python skipped it"
                    );
                    assert!(g.stage_probabilities[s].iter().all(|&p| p == 0.0));
                }
                Some(p) => {
                    assert!(ran, "{what} block {i}: stage {name} did not run");
                    for (k, (a, b)) in g.stage_probabilities[s].iter().zip(p).enumerate() {
                        assert!(
                            (*a as f64 - b).abs() <= TOL,
                            "{what} block {i} {name}[{k}]: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
    nulls
}

/// Every shipped bundle that carries a golden set: the fixed-seed test
/// bundle (always) and the trained default bundle.
fn bundles_with_golden() -> Vec<std::path::PathBuf> {
    let mut dirs = vec![tiny()];
    let default = common::root().join("onnx/default");
    if default.join("golden.json").is_file() {
        dirs.push(default);
    }
    dirs
}

fn exact_mode(dir: &std::path::Path) {
    let g = golden(dir);
    let mut cfg = common::config(dir);
    cfg.skip_below = Some(g.skip_below);
    let ctx = Context::new(&cfg).unwrap();
    let blocks: Vec<_> = g.blocks.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); blocks.len()];
    ctx.predict_blocks(&blocks, &mut out).unwrap();
    check(&ctx, "batched", &out, &g.results);
    let single: Vec<_> = blocks
        .iter()
        .map(|b| ctx.predict_block(b).unwrap())
        .collect();
    check(&ctx, "single", &single, &g.results);
}

fn skip_runs(dir: &std::path::Path) {
    let g = golden(dir);
    assert!(!g.skip_runs.is_empty(), "{} has a skip run", dir.display());
    for (skip, skipped, results) in &g.skip_runs {
        let mut cfg = common::config(dir);
        cfg.skip_below = Some(*skip);
        let ctx = Context::new(&cfg).unwrap();
        let blocks: Vec<_> = g.blocks.iter().map(|b| b.block()).collect();
        let mut out = vec![Prediction::default(); blocks.len()];
        ctx.predict_blocks(&blocks, &mut out).unwrap();
        let nulls = check(&ctx, &format!("skip {skip}"), &out, results);
        assert_eq!(nulls, *skipped);
        assert!(out
            .iter()
            .any(|p| p.flags & av1part::PREDICTION_FLAG_SKIPPED != 0));
    }
}

#[test]
fn golden_exact_mode_batched_and_single() {
    for dir in bundles_with_golden() {
        exact_mode(&dir);
    }
}

#[test]
fn golden_skip_runs() {
    for dir in bundles_with_golden() {
        skip_runs(&dir);
    }
}

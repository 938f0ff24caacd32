//! Parity with the Python reference cascade (`onnx/<bundle>/golden.json`):
//! Rust predictions equal Python onnxruntime's within 1e-5.

mod common;

use av1part::{Context, Prediction};
use common::{golden, GResult};

const TOL: f64 = 1e-5;

/// Gap between the two largest golden probabilities below which another
/// CPU's last-bit differences may legitimately pick the other one.
const TIE_MARGIN: f64 = 1e-4;

/// Checks the partition against the golden one where the golden's margin
/// allows (more than `margin` between the top two), else that the chosen
/// partition is one of those within `margin` of the top.
fn check_partition(what: &str, i: usize, got: i32, want: &GResult, margin: f64) {
    let p = &want.probabilities;
    let top = p.iter().cloned().fold(f64::MIN, f64::max);
    let near: Vec<i32> = (0..p.len())
        .filter(|&k| top - p[k] <= margin)
        .map(|k| k as i32)
        .collect();
    if near.len() == 1 {
        assert_eq!(got, want.partition, "{what} block {i}: partition");
    } else {
        assert!(
            near.contains(&got),
            "{what} block {i}: partition {got}, not among the near-tied {near:?}"
        );
    }
}

fn check(ctx: &Context, what: &str, got: &[Prediction], want: &[GResult]) -> usize {
    check_with_margin(ctx, what, got, want, TIE_MARGIN)
}

fn check_with_margin(
    ctx: &Context,
    what: &str,
    got: &[Prediction],
    want: &[GResult],
    margin: f64,
) -> usize {
    let mut nulls = 0;
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (k, (a, b)) in g.probabilities.iter().zip(&w.probabilities).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= TOL,
                "{what} block {i} prob[{k}]: rust {a} python {b}"
            );
        }
        check_partition(what, i, g.partition, w, margin);
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

/// Every bundle under `onnx/` that carries a golden set: the fixed-seed
/// test bundles (schema 1, the fused schema 2, `test-cells`: test-fused
/// compacted, taking the cells layout, and `test-stats`: heads that also see
/// block statistics computed in the graph, `test-sidestats`: the same
/// statistics as the `block_stats` side feature, computed by the plugin,
/// `test-notrunk`: heads on that side feature alone, a graph with no block
/// input) and the trained `fast` and `default` bundles.
fn bundles_with_golden() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(common::root().join("onnx"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("golden.json").is_file())
        .collect();
    dirs.sort();
    for want in [
        "test-tiny",
        "test-fused",
        "test-cells",
        "test-stats",
        "test-sidestats",
        "test-notrunk",
        "test-preset",
        "fast",
        "default",
    ] {
        assert!(
            dirs.iter().any(|d| d.ends_with(want)),
            "onnx/{want} has no golden.json"
        );
    }
    dirs
}

fn exact_mode(dir: &std::path::Path) {
    let g = golden(dir);
    let mut cfg = common::config(dir);
    cfg.skip_below = Some(g.skip_below);
    // The golden partitions are the argmax of unrounded probabilities.
    cfg.decision_grid = 0;
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
        cfg.decision_grid = 0;
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

/// With the default decision grid, the partition is the golden one except
/// where the golden's top two are within what rounding three stages to
/// 1/1024 can move (the returned probabilities are unrounded either way).
fn grid_mode(dir: &std::path::Path) {
    let g = golden(dir);
    let mut cfg = common::config(dir);
    cfg.skip_below = Some(g.skip_below);
    let ctx = Context::new(&cfg).unwrap();
    assert_eq!(ctx.decision_grid(), av1part::DEFAULT_DECISION_GRID);
    let blocks: Vec<_> = g.blocks.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); blocks.len()];
    ctx.predict_blocks(&blocks, &mut out).unwrap();
    let margin = 2.0 * 3.0 * 0.5 / f64::from(av1part::DEFAULT_DECISION_GRID);
    check_with_margin(&ctx, "grid 1024", &out, &g.results, margin);
}

#[test]
fn golden_with_the_decision_grid() {
    for dir in bundles_with_golden() {
        grid_mode(&dir);
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

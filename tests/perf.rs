//! Rough latency figures (not a benchmark; `bench/` has the real one).
//! Run with `cargo test --release --test perf -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use av1part::Prediction;

#[test]
#[ignore]
fn latency_smoke() {
    let ctx = common::tiny_ctx();
    let owned = common::random_blocks(1024, 3);
    let blocks: Vec<_> = owned.iter().map(|b| b.block()).collect();
    for b in blocks.iter().take(20) {
        ctx.predict_block(b).unwrap();
    }
    let t = Instant::now();
    for b in blocks.iter().take(500) {
        ctx.predict_block(b).unwrap();
    }
    let single = t.elapsed().as_secs_f64() / 500.0;
    let mut out = vec![Prediction::default(); blocks.len()];
    ctx.predict_blocks(&blocks, &mut out).unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        ctx.predict_blocks(&blocks, &mut out).unwrap();
    }
    let batched = t.elapsed().as_secs_f64() / (5.0 * blocks.len() as f64);
    eprintln!("test-tiny, CPU, 1 intra-op thread: predict_block {:.1} us/block, predict_blocks(1024) {:.1} us/block",
        single * 1e6, batched * 1e6);
}

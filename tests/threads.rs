//! Determinism: batching and threads must not change results.

mod common;

use std::sync::Arc;

use av1part::{Context, Prediction};

#[test]
fn batched_equals_single_within_1e6() {
    let ctx = common::tiny_ctx();
    // More than one chunk (256) so chunk boundaries are covered too.
    let owned = common::random_blocks(300, 42);
    let blocks: Vec<_> = owned.iter().map(|b| b.block()).collect();
    let mut batched = vec![Prediction::default(); blocks.len()];
    ctx.predict_blocks(&blocks, &mut batched).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        let single = ctx.predict_block(b).unwrap();
        assert_eq!(single.partition, batched[i].partition, "block {i}");
        assert_eq!(single.stages_run, batched[i].stages_run);
        for (a, c) in single.probabilities.iter().zip(&batched[i].probabilities) {
            assert!((a - c).abs() <= 1e-6, "block {i}: {a} vs {c}");
        }
        for (ra, rc) in single
            .stage_probabilities
            .iter()
            .zip(&batched[i].stage_probabilities)
        {
            for (a, c) in ra.iter().zip(rc) {
                assert!((a - c).abs() <= 1e-6, "block {i}: stage {a} vs {c}");
            }
        }
    }
}

/// The raw bits of a prediction's ten and stage probabilities, for
/// bit-identical comparisons within one process.
fn probability_bits(p: &Prediction) -> Vec<u32> {
    p.probabilities
        .iter()
        .chain(p.stage_probabilities.iter().flatten())
        .map(|f| f.to_bits())
        .collect()
}

#[test]
fn multithreaded_results_are_bit_identical() {
    let mut cfg = common::config(&common::tiny());
    cfg.max_sessions = 3; // fewer sessions than threads: callers queue
    cfg.skip_below = Some(0.3); // subsets reach the later stages
    let ctx = Arc::new(Context::new(&cfg).unwrap());
    let owned = Arc::new(common::random_blocks(96, 7));
    // Reference: single thread, the same calls (batches of 1, 5 and 32).
    let run = |ctx: &Context, owned: &[common::GBlock]| -> Vec<Vec<Prediction>> {
        let blocks: Vec<_> = owned.iter().map(|b| b.block()).collect();
        let mut res = Vec::new();
        for size in [1usize, 5, 32] {
            for chunk in blocks.chunks(size) {
                let mut out = vec![Prediction::default(); chunk.len()];
                ctx.predict_blocks(chunk, &mut out).unwrap();
                res.push(out);
            }
        }
        res
    };
    let reference = run(&ctx, &owned);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (ctx, owned) = (Arc::clone(&ctx), Arc::clone(&owned));
            std::thread::spawn(move || (0..3).map(|_| run(&ctx, &owned)).collect::<Vec<_>>())
        })
        .collect();
    for t in threads {
        for got in t.join().unwrap() {
            assert_eq!(got.len(), reference.len());
            for (g, r) in got.iter().zip(&reference) {
                for (a, b) in g.iter().zip(r) {
                    // Bit-identical, compared on the raw bits.
                    assert_eq!(a.partition, b.partition);
                    assert_eq!(a.flags, b.flags);
                    assert_eq!(a.stages_run, b.stages_run);
                    assert_eq!(probability_bits(a), probability_bits(b));
                }
            }
        }
    }
    assert!(
        ctx.sessions_created() <= 3,
        "pool bounded: {}",
        ctx.sessions_created()
    );
    assert!(ctx.sessions_created() >= 2, "pool grew under contention");
}

#[test]
fn context_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Context>();
}

#[test]
fn errors_name_the_block_across_chunks() {
    let ctx = common::tiny_ctx();
    let mut owned = common::random_blocks(300, 5);
    owned[290].y[7] = 1 << owned[290].bit_depth; // one above the maximum
    let blocks: Vec<_> = owned.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); blocks.len()];
    let e = ctx.predict_blocks(&blocks, &mut out).unwrap_err();
    assert_eq!(e.status(), av1part::Status::InvalidArgument);
    assert!(e.to_string().contains("block 290:"), "{e}");
}

#[test]
fn weights_shared_by_the_sessions_change_no_result() {
    // A context with several sessions hands them one copy of the weights
    // (AddInitializer); one with max_sessions = 1 lets its session keep its
    // own. Both must give the same predictions, bit for bit, for external
    // data (test-tiny), inline weights (test-fused) and the shipped `fast`.
    let owned = common::random_blocks(64, 11);
    let blocks: Vec<_> = owned.iter().map(|b| b.block()).collect();
    for dir in [
        common::tiny(),
        common::root().join("onnx/test-fused"),
        common::root().join("onnx/fast"),
    ] {
        let mut results = Vec::new();
        for max_sessions in [1usize, 4] {
            let mut cfg = common::config(&dir);
            cfg.max_sessions = max_sessions;
            cfg.skip_below = Some(0.0);
            let ctx = Context::new(&cfg).unwrap();
            if max_sessions == 1 {
                assert_eq!(ctx.shared_weight_tensors(), 0);
            } else {
                assert!(
                    ctx.shared_weight_tensors() > 0,
                    "{}: nothing shared",
                    dir.display()
                );
            }
            let mut out = vec![Prediction::default(); blocks.len()];
            ctx.predict_blocks(&blocks, &mut out).unwrap();
            results.push(out);
        }
        for (i, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
            assert_eq!(a.partition, b.partition, "{} block {i}", dir.display());
            assert_eq!(
                probability_bits(a),
                probability_bits(b),
                "{} block {i}",
                dir.display()
            );
        }
    }
}

//! Decision policies (flat, greedy, balanced) and prune sets for a target recall,
//! checked against a direct computation from each prediction's stage rows.

mod common;

use av1part::{Context, Policy, Prediction, StageInfo, Status};

fn ctx(policy: Policy) -> Context {
    let mut cfg = common::config(&common::tiny());
    cfg.skip_below = Some(0.0);
    cfg.policy = policy;
    Context::new(&cfg).unwrap()
}

fn predict(c: &Context, n: usize) -> Vec<Prediction> {
    let gb = common::random_blocks(n, 17);
    let blocks: Vec<_> = gb.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); n];
    c.predict_blocks(&blocks, &mut out).unwrap();
    out
}

fn rounded(v: f32) -> f64 {
    (f64::from(v) * 1024.0).round() / 1024.0
}

/// The ten decision values, recomputed here from the tree and the rows.
fn values(stages: &[StageInfo], root: usize, p: &Prediction) -> [f64; 10] {
    fn walk(st: &[StageInfo], s: usize, m: f64, p: &Prediction, out: &mut [f64; 10]) {
        for (k, c) in st[s].classes.iter().enumerate() {
            let v = m * rounded(p.stage_probabilities[s][k]);
            match (c.partition, c.next) {
                (Some(l), _) => out[l as usize] += v,
                (_, Some(t)) => walk(st, t, v, p, out),
                _ => unreachable!(),
            }
        }
    }
    let mut out = [0.0; 10];
    walk(stages, root, 1.0, p, &mut out);
    out
}

/// The leaf a walk down the tree reaches, taking at each stage the class
/// with the highest `score(stage, class)` (the lower class on a tie).
fn walk_down(stages: &[StageInfo], root: usize, score: impl Fn(usize, usize) -> f64) -> i32 {
    let mut s = root;
    loop {
        let k = stages[s].classes.len();
        let row: Vec<f64> = (0..k).map(|i| score(s, i)).collect();
        let best = (0..k).fold(0, |bi, i| if row[i] > row[bi] { i } else { bi });
        match (
            stages[s].classes[best].partition,
            stages[s].classes[best].next,
        ) {
            (Some(l), _) => return l as i32,
            (_, Some(t)) => s = t,
            _ => unreachable!(),
        }
    }
}

#[test]
fn greedy_follows_the_most_probable_class_down_the_tree() {
    let flat = ctx(Policy::Flat);
    let greedy = ctx(Policy::Greedy);
    assert_eq!(greedy.policy(), Policy::Greedy);
    let (pf, pg) = (predict(&flat, 200), predict(&greedy, 200));
    let st = greedy.stages();
    let mut differ = 0;
    for (a, b) in pf.iter().zip(&pg) {
        assert_eq!(
            a.probabilities, b.probabilities,
            "the policy changes only the partition"
        );
        let want = walk_down(st, greedy.root_stage(), |s, i| {
            rounded(b.stage_probabilities[s][i])
        });
        assert_eq!(b.partition, want);
        differ += usize::from(a.partition != b.partition);
    }
    // on the random test bundle the two rules disagree on some blocks
    assert!(
        differ > 0,
        "flat and greedy never differ: the test cannot tell them apart"
    );
}

#[test]
fn balanced_divides_each_stage_by_its_prior_down_the_tree() {
    let greedy = ctx(Policy::Greedy);
    let balanced = ctx(Policy::Balanced);
    assert_eq!(balanced.policy(), Policy::Balanced);
    let (pg, pb) = (predict(&greedy, 300), predict(&balanced, 300));
    let st = balanced.stages();
    let mut differ = 0;
    for (a, b) in pg.iter().zip(&pb) {
        assert_eq!(a.probabilities, b.probabilities);
        let want = walk_down(st, balanced.root_stage(), |s, i| {
            let q = st[s].prior[i];
            if q > 0.0 {
                rounded(b.stage_probabilities[s][i]) / q
            } else {
                f64::NEG_INFINITY
            }
        });
        assert_eq!(b.partition, want);
        differ += usize::from(a.partition != b.partition);
    }
    assert!(
        differ > 0,
        "greedy and balanced never differ: the test cannot tell them apart"
    );
}

#[test]
fn prune_sets_reach_the_target_with_the_fewest_types() {
    let c = ctx(Policy::Flat);
    for p in predict(&c, 100) {
        let v = values(c.stages(), c.root_stage(), &p);
        let mut prev = 0u32;
        for r in [0.001, 0.5, 0.8, 0.9, 0.95, 0.99] {
            let m = c.prune_set(&p, r).unwrap();
            assert!(
                m & (1 << p.partition) != 0,
                "the flat partition is always in"
            );
            assert_eq!(m & prev, prev, "a higher target keeps the smaller set");
            prev = m;
            let (inside, count) = (0..10)
                .filter(|k| m & (1 << k) != 0)
                .fold((0.0, 0), |(s, n), k| (s + v[k], n + 1));
            assert!(
                inside >= r || count == 10,
                "set {m:#x} reaches {inside} < {r}"
            );
            // the fewest: without its smallest member it falls short
            let smallest = (0..10)
                .filter(|k| m & (1 << k) != 0)
                .min_by(|&a, &b| v[a].total_cmp(&v[b]))
                .unwrap();
            if count > 1 {
                assert!(
                    inside - v[smallest] < r,
                    "set {m:#x} is not minimal for {r}"
                );
            }
        }
        assert_eq!(c.prune_set(&p, 0.001).unwrap().count_ones(), 1);
    }
}

#[test]
fn prune_set_refuses_bad_input() {
    let c = ctx(Policy::Flat);
    let p = predict(&c, 1)[0];
    for r in [0.0, -0.5, 1.5, f64::NAN] {
        assert_eq!(
            c.prune_set(&p, r).unwrap_err().status(),
            Status::InvalidArgument
        );
    }
    let mut bad = p;
    bad.num_stages = 3;
    assert!(c.prune_set(&bad, 0.9).is_err());
    let cleared = Prediction {
        partition: -1,
        ..Prediction::default()
    };
    assert!(c.prune_set(&cleared, 0.9).is_err());
    let mut nan = p;
    nan.stage_probabilities[0][0] = f32::NAN;
    assert!(c.prune_set(&nan, 0.9).is_err());
}

//! Decision policies: how a prediction becomes a partition or a set of
//! partitions to search (`docs/CONTRACTS.md`, "Decision policies").
//!
//! Every policy works on the *decision values*: the cascade recomputed from
//! each stage's probabilities rounded to the decision grid (a skipped stage
//! spreads its mass by its prior, as in the cascade), so that the same
//! prediction gives the same decision on every machine.
//!
//! * `flat`: the argmax of the ten decision values (the cascade's partition).
//! * `greedy`: down the tree, the most probable class of each stage (a
//!   stage that did not run contributes its prior's argmax).
//! * `balanced`: as `greedy`, with each stage's values divided by its prior
//!   (for calibrated bundles: the rule for a class-averaged score).
//! * prune set for a target recall `r`: the fewest partitions, by decreasing
//!   decision value, whose values add up to at least `r` (always at least
//!   the most probable one).
//!
//! Ties go to the lower class or partition number everywhere.

use crate::cascade::on_grid;
use crate::manifest::{Bundle, Target};
use crate::{Prediction, NUM_PARTITIONS};

/// How `Prediction::partition` is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Argmax of the ten decision values.
    #[default]
    Flat,
    /// Argmax at each stage, down the tree.
    Greedy,
    /// Argmax of value / prior at each stage, down the tree.
    Balanced,
}

/// The stage's probabilities for decisions: rounded outputs if it ran,
/// else its prior.
fn stage_values(bundle: &Bundle, grid: u32, p: &Prediction, s: usize) -> Vec<f64> {
    let st = &bundle.stages[s];
    if p.stages_run & (1 << s) != 0 {
        p.stage_probabilities[s][..st.classes.len()]
            .iter()
            .map(|&v| on_grid(v, grid))
            .collect()
    } else {
        st.prior.clone()
    }
}

/// The ten decision values of a prediction made with this bundle and grid.
pub(crate) fn decision_values(bundle: &Bundle, grid: u32, p: &Prediction) -> [f64; NUM_PARTITIONS] {
    let mut out = [0.0; NUM_PARTITIONS];
    // (stage, mass) pairs still to expand; a tree has at most MAX_STAGES.
    let mut todo = vec![(bundle.root, 1.0f64)];
    while let Some((s, m)) = todo.pop() {
        let vals = stage_values(bundle, grid, p, s);
        for (c, v) in bundle.stages[s].classes.iter().zip(vals) {
            match c.target {
                Target::Leaf(l) => out[l as usize] += m * v,
                Target::Stage(t) => todo.push((t, m * v)),
            }
        }
    }
    out
}

/// Index of the largest value, the lowest on a tie (every decision of the
/// crate breaks ties this way).
pub(crate) fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// A stage's values divided by its prior, for the balanced policy: a class
/// with prior 0 scores -inf (never chosen); a stage that did not run keeps
/// its prior (so it contributes the prior's argmax, as in `greedy`).
fn balanced_scores(bundle: &Bundle, grid: u32, p: &Prediction, s: usize) -> Vec<f64> {
    let vals = stage_values(bundle, grid, p, s);
    if p.stages_run & (1 << s) == 0 {
        return vals;
    }
    vals.iter()
        .zip(&bundle.stages[s].prior)
        .map(|(&v, &q)| if q > 0.0 { v / q } else { f64::NEG_INFINITY })
        .collect()
}

/// The partition the greedy (or, with `balanced`, the balanced) policy picks.
pub(crate) fn greedy(bundle: &Bundle, grid: u32, p: &Prediction, balanced: bool) -> u8 {
    let mut s = bundle.root;
    // The tree is finite and acyclic (checked at load); bound the walk anyway.
    for _ in 0..=bundle.stages.len() {
        let vals = if balanced {
            balanced_scores(bundle, grid, p, s)
        } else {
            stage_values(bundle, grid, p, s)
        };
        match bundle.stages[s].classes[argmax(&vals)].target {
            Target::Leaf(l) => return l,
            Target::Stage(t) => s = t,
        }
    }
    0
}

/// The partition a policy picks.
pub(crate) fn partition(bundle: &Bundle, grid: u32, policy: Policy, p: &Prediction) -> u8 {
    match policy {
        Policy::Flat => argmax(&decision_values(bundle, grid, p)) as u8,
        Policy::Greedy => greedy(bundle, grid, p, false),
        Policy::Balanced => greedy(bundle, grid, p, true),
    }
}

/// Bit set (bit `k` = partition `k`) of the smallest prefix of partitions,
/// by decreasing decision value, whose values reach `target_recall`.
pub(crate) fn prune_set(bundle: &Bundle, grid: u32, p: &Prediction, target_recall: f64) -> u32 {
    let v = decision_values(bundle, grid, p);
    let mut order: Vec<usize> = (0..NUM_PARTITIONS).collect();
    // stable: equal values keep the lower partition first
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    let (mut mask, mut sum) = (0u32, 0.0f64);
    for k in order {
        mask |= 1 << k;
        sum += v[k];
        if sum >= target_recall {
            break;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_lowest_index_on_ties() {
        let mut v = [0.0; NUM_PARTITIONS];
        v[3] = 0.4;
        v[5] = 0.4;
        assert_eq!(argmax(&v), 3);
        v[9] = 0.5;
        assert_eq!(argmax(&v), 9);
        assert_eq!(argmax(&[0.5]), 0);
    }
}

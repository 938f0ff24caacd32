//! The batched cascade (`docs/CONTRACTS.md`, "Cascade semantics").
//!
//! A chunk of blocks is preprocessed into `x`/`side`, the trunk runs once on
//! all of them, then each stage runs, in tree order, on just the blocks whose
//! mass reaches it (`>= skip_below`). Masses multiply down the tree in f64;
//! a skipped stage hands its mass to the partitions through its subtree's
//! priors. Nothing is allocated once the buffers have grown to the largest
//! chunk seen.
//!
//! Decisions (which stages run, and the partition) are taken on a second
//! set of masses built from each stage's probabilities rounded to the
//! decision grid (multiples of `1/grid`), so that ONNX Runtime's last-bit
//! differences between instruction sets and providers cannot change them,
//! except on exact grid ties. The probabilities returned are the unrounded
//! ones. With `grid = 0` both sets are the same.

use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::manifest::{Bundle, Source, Target};
use crate::policy::argmax;
use crate::preprocess::{BlockSource, TensorLayout};
use crate::session::{FusedModel, Model, Worker};
use crate::{
    Prediction, MAX_STAGES, NUM_PARTITIONS, PREDICTION_FLAG_HAS_PREV, PREDICTION_FLAG_PARTIAL,
    PREDICTION_FLAG_SKIPPED, PROB_SUM_TOLERANCE,
};

/// Largest number of blocks sent to ONNX Runtime in one run.
pub(crate) const CHUNK: usize = 256;

/// Buffers reused across calls by one worker.
#[derive(Default)]
pub(crate) struct Scratch {
    x: Vec<f32>,
    side: Vec<f32>,
    trunk: Vec<f32>,
    /// Gathered rows for a stage that runs on a subset: x, trunk, side.
    gathered: [Vec<f32>; 3],
    /// Mass reaching each stage, `[stage][block]`; NaN = not reached.
    mass: Vec<f64>,
    /// Probabilities being accumulated, `[block][partition]`.
    probs: Vec<[f64; NUM_PARTITIONS]>,
    /// `mass` and `probs` from grid-rounded stage outputs (decisions).
    dmass: Vec<f64>,
    dprobs: Vec<[f64; NUM_PARTITIONS]>,
    /// Blocks a stage runs on.
    selected: Vec<usize>,
    /// A fused graph's output rows, `[stage][block * K + class]`.
    stage_rows: Vec<Vec<f32>>,
}

/// Runs a session on `rows` blocks: its inputs, in session order, come from
/// the buffers of their `sources` (`bufs` is indexed by [`Source`]).
fn run_session<'s>(
    session: &'s mut Session,
    sources: &[Source],
    what: &str,
    rows: usize,
    bufs: [(&[f32], &[i64]); 3],
) -> Result<SessionOutputs<'s>> {
    let tensor = |src: Source| -> Result<SessionInputValue<'_>> {
        let (data, decl_shape) = bufs[src as usize];
        input_tensor(what, rows, data, decl_shape)
    };
    let result = match sources.len() {
        1 => session.run([tensor(sources[0])?]),
        2 => session.run([tensor(sources[0])?, tensor(sources[1])?]),
        3 => session.run([
            tensor(sources[0])?,
            tensor(sources[1])?,
            tensor(sources[2])?,
        ]),
        n => return Err(Error::Internal(format!("{what}: {n} inputs"))),
    };
    result.map_err(|e| Error::inference(format!("{what}: {e}")))
}

/// The output `name` of a run on `rows` blocks, checked to hold rows of
/// `k` floats.
fn output_rows<'o>(
    outputs: &'o SessionOutputs<'_>,
    name: &str,
    what: &str,
    rows: usize,
    k: usize,
) -> Result<&'o [f32]> {
    let value = outputs
        .get(name)
        .ok_or_else(|| Error::inference(format!("{what}: output `{name}` missing")))?;
    let (shape, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| Error::inference(format!("{what}: reading output `{name}`: {e}")))?;
    if shape.first().copied() != Some(rows as i64) || data.len() != rows * k {
        return Err(Error::inference(format!(
            "{what}: output `{name}` has shape {shape:?} for a batch of {rows}, expected rows of {k}"
        )));
    }
    Ok(data)
}

/// Runs one model on `rows` blocks whose inputs are the given row-major
/// buffers, and hands the output rows to `each`.
fn run_model(
    model: &mut Model,
    what: &str,
    rows: usize,
    bufs: [(&[f32], &[i64]); 3],
    out_row: usize,
    mut each: impl FnMut(usize, &[f32]) -> Result<()>,
) -> Result<()> {
    let outputs = run_session(&mut model.session, &model.sources, what, rows, bufs)?;
    let data = output_rows(&outputs, &model.output, what, rows, out_row)?;
    for (i, row) in data.chunks_exact(out_row).enumerate() {
        each(i, row)?;
    }
    Ok(())
}

/// A stage probability rounded to the decision grid (`grid` = 0: as is).
/// `p * grid` is exact for a power-of-two grid, and the rounding is
/// half away from zero, so equal inputs give equal outputs everywhere.
#[inline]
pub(crate) fn on_grid(p: f32, grid: u32) -> f64 {
    if grid == 0 {
        f64::from(p)
    } else {
        (f64::from(p) * f64::from(grid)).round() / f64::from(grid)
    }
}

/// Checks one stage output row: finite probabilities in [0, 1] that sum to
/// 1 within [`PROB_SUM_TOLERANCE`].
fn check_row(stage: &str, block: usize, row: &[f32]) -> Result<()> {
    let tol = PROB_SUM_TOLERANCE;
    if let Some(p) = row
        .iter()
        .find(|p| !(p.is_finite() && (0.0..=1.0 + tol).contains(*p)))
    {
        return Err(Error::inference(format!(
            "stage `{stage}`: block {block}: output {row:?} is not probabilities (value {p})"
        )));
    }
    let sum: f64 = row.iter().map(|&p| f64::from(p)).sum();
    if (sum - 1.0).abs() > f64::from(tol) {
        return Err(Error::inference(format!(
            "stage `{stage}`: block {block}: output {row:?} sums to {sum}, not 1 (tolerance {tol})"
        )));
    }
    Ok(())
}

/// Builds one input tensor of `rows` blocks from a row-major buffer and
/// its manifest shape (batch dimension replaced by `rows`).
fn input_tensor<'a>(
    what: &str,
    rows: usize,
    data: &'a [f32],
    decl_shape: &[i64],
) -> Result<SessionInputValue<'a>> {
    let dim = |i: usize| if i == 0 { rows } else { decl_shape[i] as usize };
    let t = match decl_shape.len() {
        2 => TensorRef::from_array_view(([dim(0), dim(1)], data)),
        3 => TensorRef::from_array_view(([dim(0), dim(1), dim(2)], data)),
        4 => TensorRef::from_array_view(([dim(0), dim(1), dim(2), dim(3)], data)),
        r => TensorRef::from_array_view(((0..r).map(dim).collect::<Vec<usize>>(), data)),
    }
    .map_err(|e| Error::inference(format!("{what}: creating the input tensor: {e}")))?;
    Ok(t.into())
}

/// Runs a fused graph on `rows` blocks and copies each stage's output
/// into `stage_rows[stage]` (`rows × K`).
fn run_fused(
    fm: &mut FusedModel,
    bundle: &Bundle,
    rows: usize,
    bufs: [(&[f32], &[i64]); 3],
    stage_rows: &mut Vec<Vec<f32>>,
) -> Result<()> {
    let file = bundle.graph.as_ref().map_or("graph", |g| g.file.as_str());
    let outputs = run_session(&mut fm.session, &fm.sources, file, rows, bufs)?;
    stage_rows.resize_with(bundle.stages.len(), Vec::new);
    for ((st, name), dst) in bundle
        .stages
        .iter()
        .zip(&fm.outputs)
        .zip(stage_rows.iter_mut())
    {
        dst.clear();
        dst.extend_from_slice(output_rows(&outputs, name, file, rows, st.classes.len())?);
    }
    Ok(())
}

/// Copies the `selected` rows of `src` (rows of `len`) into `dst`.
fn gather(dst: &mut Vec<f32>, src: &[f32], len: usize, selected: &[usize]) {
    dst.clear();
    for &n in selected {
        dst.extend_from_slice(&src[n * len..(n + 1) * len]);
    }
}

/// How a chunk's decisions are taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decisions {
    /// A stage runs on a block when the mass reaching it is at least this.
    pub skip_below: f64,
    /// Decision grid (a power of two), or 0 for unrounded decisions.
    pub grid: u32,
}

/// Predicts `blocks.len()` (≤ [`CHUNK`]) blocks into `out`; `first` is the
/// index of `blocks[0]` in the caller's numbering, for error messages.
pub(crate) fn run_chunk(
    first: usize,
    worker: &mut Worker,
    bundle: &Bundle,
    layout: &TensorLayout,
    decisions: Decisions,
    blocks: &[BlockSource<'_>],
    out: &mut [Prediction],
) -> Result<()> {
    let Decisions { skip_below, grid } = decisions;
    let n = blocks.len();
    debug_assert_eq!(n, out.len());
    let Worker {
        models,
        scratch: sc,
    } = worker;
    let (xl, sl) = (layout.x_len(), layout.side_len());

    // 1. Preprocess straight into the batch buffers.
    sc.x.resize(n * xl, 0.0);
    sc.side.resize(n * sl, 0.0);
    for (i, b) in blocks.iter().enumerate() {
        layout
            .fill(
                b,
                &mut sc.x[i * xl..(i + 1) * xl],
                &mut sc.side[i * sl..(i + 1) * sl],
            )
            .map_err(|e| e.at_block(first + i))?;
    }
    let x_shape = layout.x_shape();
    let side_shape = [-1i64, sl as i64];

    // 2a. A fused graph: one run on every block gives every stage's rows.
    if let Some(fm) = models.fused.as_mut() {
        run_fused(
            fm,
            bundle,
            n,
            [(&sc.x, x_shape), (&[], &[]), (&sc.side, &side_shape)],
            &mut sc.stage_rows,
        )?;
    }

    // 2b. Trunk on every block.
    let mut trunk_shape: &[i64] = &[];
    if let (Some(t), Some(spec)) = (models.trunk.as_mut(), bundle.trunk.as_ref()) {
        let row = spec.output.row_len();
        trunk_shape = &spec.output.shape;
        sc.trunk.clear();
        sc.trunk.reserve(n * row);
        let dst = &mut sc.trunk;
        run_model(
            t,
            "trunk",
            n,
            [(&sc.x, x_shape), (&[], &[]), (&[], &[])],
            row,
            |_, r| {
                if r.iter().any(|v| !v.is_finite()) {
                    return Err(Error::inference("trunk: non-finite output"));
                }
                dst.extend_from_slice(r);
                Ok(())
            },
        )?;
    }
    let trunk_row = bundle.trunk.as_ref().map_or(0, |t| t.output.row_len());

    // 3. Stages in tree order.
    let ns = bundle.stages.len();
    sc.mass.clear();
    sc.mass.resize(ns * n, f64::NAN);
    sc.mass[bundle.root * n..(bundle.root + 1) * n].fill(1.0);
    sc.probs.clear();
    sc.probs.resize(n, [0.0; NUM_PARTITIONS]);
    sc.dmass.clear();
    sc.dmass.extend_from_slice(&sc.mass);
    sc.dprobs.clear();
    sc.dprobs.resize(n, [0.0; NUM_PARTITIONS]);
    for (p, b) in out.iter_mut().zip(blocks) {
        *p = Prediction {
            num_stages: ns as u32,
            ..Prediction::default()
        };
        if b.partial {
            p.flags |= PREDICTION_FLAG_PARTIAL;
        }
        if b.has_prev() {
            p.flags |= PREDICTION_FLAG_HAS_PREV;
        }
    }
    for &s in &bundle.order {
        let stage = &bundle.stages[s];
        sc.selected.clear();
        #[allow(clippy::needless_range_loop)] // five arrays indexed by block
        for i in 0..n {
            let (m, dm) = (sc.mass[s * n + i], sc.dmass[s * n + i]);
            if dm.is_nan() {
                continue; // not reached: an ancestor was skipped
            }
            if dm >= skip_below {
                sc.selected.push(i);
            } else {
                for ((a, da), d) in sc.probs[i]
                    .iter_mut()
                    .zip(sc.dprobs[i].iter_mut())
                    .zip(&stage.leaf_dist)
                {
                    *a += m * d;
                    *da += dm * d;
                }
                out[i].flags |= PREDICTION_FLAG_SKIPPED;
            }
        }
        let m_rows = sc.selected.len();
        if m_rows == 0 {
            continue;
        }
        let k = stage.classes.len();
        let selected = &sc.selected;
        let mass = &mut sc.mass;
        let probs = &mut sc.probs;
        let dmass = &mut sc.dmass;
        let dprobs = &mut sc.dprobs;
        let what = stage.name.as_str();
        let mut absorb = |j: usize, row: &[f32]| -> Result<()> {
            let i = selected[j];
            check_row(what, first + i, row)?;
            let (m, dm) = (mass[s * n + i], dmass[s * n + i]);
            let pred = &mut out[i];
            pred.stages_run |= 1 << s;
            pred.stage_probabilities[s][..k].copy_from_slice(row);
            for (c, &p) in stage.classes.iter().zip(row) {
                let (mk, dk) = (m * f64::from(p), dm * on_grid(p, grid));
                match c.target {
                    Target::Leaf(l) => {
                        probs[i][l as usize] += mk;
                        dprobs[i][l as usize] += dk;
                    }
                    Target::Stage(t) => {
                        mass[t * n + i] = mk;
                        dmass[t * n + i] = dk;
                    }
                }
            }
            Ok(())
        };
        if models.fused.is_some() {
            // The fused graph already ran on every block: take the rows of
            // the blocks this stage reaches.
            let rows = &sc.stage_rows[s];
            for (j, &i) in selected.iter().enumerate() {
                absorb(j, &rows[i * k..(i + 1) * k])?;
            }
        } else {
            let all = m_rows == n;
            let [gx, gt, gs] = &mut sc.gathered;
            let (bx, bt, bs): (&[f32], &[f32], &[f32]) = if all {
                (&sc.x, &sc.trunk, &sc.side)
            } else {
                let uses = |src| stage.inputs.iter().any(|(_, s2)| *s2 == src);
                if uses(Source::Block) {
                    gather(gx, &sc.x, xl, &sc.selected);
                }
                if uses(Source::Trunk) {
                    gather(gt, &sc.trunk, trunk_row, &sc.selected);
                }
                if uses(Source::Side) {
                    gather(gs, &sc.side, sl, &sc.selected);
                }
                (gx, gt, gs)
            };
            run_model(
                &mut models.stages[s],
                what,
                m_rows,
                [(bx, x_shape), (bt, trunk_shape), (bs, &side_shape)],
                k,
                &mut absorb,
            )?;
        }
    }

    // 4. Final probabilities, and the argmax of the decision probabilities
    //    (lowest index on a tie). Unrounded, the argmax is taken on the f32
    //    values returned, so that it agrees with them exactly.
    for ((p, acc), dacc) in out.iter_mut().zip(&sc.probs).zip(&sc.dprobs) {
        for (dst, v) in p.probabilities.iter_mut().zip(acc) {
            *dst = *v as f32;
        }
        p.partition = if grid == 0 {
            argmax(&p.probabilities.map(f64::from))
        } else {
            argmax(dacc)
        } as i32;
    }
    const _: () = assert!(MAX_STAGES <= 32, "stages_run is a u32 bit set");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_rounding_is_half_away_and_exact() {
        assert_eq!(on_grid(0.5, 1024), 0.5);
        assert_eq!(on_grid(1.0, 1024), 1.0);
        assert_eq!(on_grid(0.0, 1024), 0.0);
        // 1.5/1024 rounds up, just below it rounds down
        assert_eq!(on_grid(1.5 / 1024.0, 1024), 2.0 / 1024.0);
        assert_eq!(on_grid(1.49 / 1024.0, 1024), 1.0 / 1024.0);
        // values within half a step of each other land on one point
        let a = 0.3_f32;
        let b = 0.300_000_3_f32;
        assert_eq!(on_grid(a, 1024), on_grid(b, 1024));
        assert_eq!(on_grid(0.123_456_7, 0), f64::from(0.123_456_7_f32));
    }

    #[test]
    fn row_check_names_the_stage_and_the_sum() {
        assert!(check_row("s", 0, &[0.25, 0.75]).is_ok());
        assert!(check_row("s", 0, &[0.2504, 0.7500]).is_ok());
        let e = check_row("stage2", 3, &[0.9, 0.9]).unwrap_err();
        assert_eq!(e.status(), crate::Status::Inference);
        let m = e.to_string();
        assert!(
            m.contains("stage2") && m.contains("block 3") && m.contains("sums to"),
            "{m}"
        );
        assert!(check_row("s", 0, &[0.5, 0.498]).is_err());
        assert!(check_row("s", 0, &[f32::NAN, 1.0]).is_err());
        assert!(check_row("s", 0, &[-0.1, 1.1]).is_err());
    }
}

//! The `block_stats` side feature (`docs/CONTRACTS.md`, "Side features"):
//! 28 statistics of a block's integer samples, from exact integer sums
//! per 4x4 cell, in f64, rounded to f32 at the end. The training path computes the same in NumPy
//! (`training/av1part_train/side_stats.py`); the parity tests compare the
//! two through a bundle that takes them (`onnx/test-sidestats`).
//!
//! Why here and not in the graph: inside ONNX they were ~80 small nodes,
//! which cost more than the CNN itself; here they are one pass over the
//! samples and 28 logarithms (their cost through the plugin, and what was
//! tried to lower it: training/EXPERIMENTS.md, "Block statistics in the
//! graph").

use crate::manifest::BLOCK;

/// Values of the side feature, in the contract's order.
pub(crate) const WIDTH: usize = 28;

const CBLOCK: usize = BLOCK / 2;

/// `(row range, column range)` of the 17 luma regions, in the contract's
/// order: block, q0..q3, top, bottom, left, right, hstrip0..3, vstrip0..3.
const REGIONS: [((usize, usize), (usize, usize)); 17] = [
    ((0, 16), (0, 16)),
    ((0, 8), (0, 8)),
    ((0, 8), (8, 16)),
    ((8, 16), (0, 8)),
    ((8, 16), (8, 16)),
    ((0, 8), (0, 16)),
    ((8, 16), (0, 16)),
    ((0, 16), (0, 8)),
    ((0, 16), (8, 16)),
    ((0, 4), (0, 16)),
    ((4, 8), (0, 16)),
    ((8, 12), (0, 16)),
    ((12, 16), (0, 16)),
    ((0, 16), (0, 4)),
    ((0, 16), (4, 8)),
    ((0, 16), (8, 12)),
    ((0, 16), (12, 16)),
];

/// Integer sums of a set of samples: count, sum, sum of squares. Samples
/// are at most 12-bit, so a 16x16 block's sums are exact in `u64`, and the
/// variance below is exact up to one final rounding per division.
#[derive(Clone, Copy, Default)]
struct Sums {
    n: u64,
    s: i64,
    ss: u64,
}

impl Sums {
    fn add(&mut self, v: i64) {
        self.n += 1;
        self.s += v;
        self.ss += (v * v) as u64;
    }

    fn merge(&mut self, o: &Sums) {
        self.n += o.n;
        self.s += o.s;
        self.ss += o.ss;
    }

    /// Population variance, in units of the samples squared:
    /// `(n * ss - s^2) / n^2`, the numerator in exact integers.
    fn variance(&self) -> f64 {
        // n <= 256, ss <= 256 * 4095^2: both products stay below 2^41
        let n = self.n as i64;
        let num = n * self.ss as i64 - self.s * self.s;
        num as f64 / (n * n) as f64
    }
}

/// Cells (4x4 grid, raster order) each region is made of, as a bit mask.
const fn region_cells(rows: (usize, usize), cols: (usize, usize)) -> u16 {
    let mut m = 0u16;
    let mut cr = rows.0 / 4;
    while cr < rows.1 / 4 {
        let mut cc = cols.0 / 4;
        while cc < cols.1 / 4 {
            m |= 1 << (cr * 4 + cc);
            cc += 1;
        }
        cr += 1;
    }
    m
}

/// `REGIONS` as cell masks, computed at compile time (not per block).
const REGION_MASKS: [u16; 17] = {
    let mut m = [0u16; 17];
    let mut k = 0;
    while k < 17 {
        m[k] = region_cells(REGIONS[k].0, REGIONS[k].1);
        k += 1;
    }
    m
};

/// The 28 values for one block; `prev` is the previous frame's block, or
/// `y` itself when there is none. Samples are at most `(1 << bit_depth) - 1`.
/// One pass over the samples gathers integer sums per 4x4 cell; every
/// region is a union of cells.
pub(crate) fn compute(
    y: &[[u32; BLOCK]; BLOCK],
    u: &[[u32; CBLOCK]; CBLOCK],
    v: &[[u32; CBLOCK]; CBLOCK],
    prev: &[[u32; BLOCK]; BLOCK],
    bit_depth: u32,
    out: &mut [f32],
) {
    let maxv = f64::from((1u32 << bit_depth) - 1);
    let to8 = 255.0 / maxv;
    let mut cell_y = [Sums::default(); 16];
    let mut cell_absd = [0u64; 16];
    let (mut gx, mut gy) = (0u64, 0u64);
    // four samples (one cell's row) at a time into locals: updating the cell's
    // sums per sample made every addition wait on the previous store
    let (mut ds, mut dss) = (0i64, 0u64);
    for r in 0..BLOCK {
        let (yr, pr) = (&y[r], &prev[r]);
        for cc in 0..4 {
            let (mut s1, mut s2, mut ad) = (0i64, 0u64, 0u64);
            for j in 0..4 {
                let c = 4 * cc + j;
                let s = i64::from(yr[c]);
                s1 += s;
                s2 += (s * s) as u64;
                let e = s - i64::from(pr[c]);
                ad += e.unsigned_abs();
                ds += e;
                dss += (e * e) as u64;
                if j != 3 {
                    gx += (i64::from(yr[c + 1]) - s).unsigned_abs();
                }
                if r % 4 != 3 {
                    gy += (i64::from(y[r + 1][c]) - s).unsigned_abs();
                }
            }
            let cell = &mut cell_y[(r / 4) * 4 + cc];
            cell.n += 4;
            cell.s += s1;
            cell.ss += s2;
            cell_absd[(r / 4) * 4 + cc] += ad;
        }
    }
    let diff = Sums {
        n: 256,
        s: ds,
        ss: dss,
    };
    let region = |mask: u16| {
        let mut t = Sums::default();
        for (k, cs) in cell_y.iter().enumerate() {
            if mask & (1 << k) != 0 {
                t.merge(cs);
            }
        }
        t
    };
    let mut vals = [0f64; WIDTH];
    let block = region(0xFFFF);
    vals[0] = block.s as f64 / block.n as f64 / maxv;
    for (k, &mask) in REGION_MASKS.iter().enumerate() {
        vals[1 + k] = (region(mask).variance() * to8 * to8).ln_1p();
    }
    vals[18] = (gx as f64 / 192.0 * to8).ln_1p();
    vals[19] = (gy as f64 / 192.0 * to8).ln_1p();
    for (k, plane) in [u, v].iter().enumerate() {
        let mut t = Sums::default();
        for row in plane.iter() {
            for &s in row {
                t.add(i64::from(s));
            }
        }
        vals[20 + k] = (t.variance() * to8 * to8).ln_1p();
    }
    vals[22] = (cell_absd.iter().sum::<u64>() as f64 / 256.0 * to8).ln_1p();
    for (k, &mask) in REGION_MASKS[1..5].iter().enumerate() {
        let a: u64 = (0..16)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| cell_absd[i])
            .sum();
        vals[23 + k] = (a as f64 / 64.0 * to8).ln_1p();
    }
    vals[27] = (diff.variance() * to8 * to8).ln_1p();
    for (o, v) in out.iter_mut().zip(vals) {
        *o = v as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planes(f: impl Fn(usize, usize) -> u32) -> [[u32; BLOCK]; BLOCK] {
        let mut p = [[0u32; BLOCK]; BLOCK];
        for (r, row) in p.iter_mut().enumerate() {
            for (c, s) in row.iter_mut().enumerate() {
                *s = f(r, c);
            }
        }
        p
    }

    #[test]
    fn a_flat_block_has_no_variance_and_a_ramp_only_x_gradients() {
        let flat = planes(|_, _| 100);
        let (u, v) = ([[7u32; CBLOCK]; CBLOCK], [[9u32; CBLOCK]; CBLOCK]);
        let mut out = [0f32; WIDTH];
        compute(&flat, &u, &v, &flat, 8, &mut out);
        assert!((out[0] - 100.0 / 255.0).abs() < 1e-7);
        assert!(out[1..].iter().all(|&x| x == 0.0), "{out:?}");
        // a horizontal ramp: columns differ, rows do not
        let ramp = planes(|_, c| 16 * c as u32);
        compute(&ramp, &u, &v, &ramp, 8, &mut out);
        assert!(
            (out[18] - 16f64.ln_1p() as f32).abs() < 1e-6,
            "lgx {}",
            out[18]
        );
        assert_eq!(out[19], 0.0);
        // hstrips hold every column: the same variance as the block; vstrips 4 columns
        let var_cols = |c0: usize| {
            let xs: Vec<f64> = (c0..c0 + 4).map(|c| 16.0 * c as f64).collect();
            let m = xs.iter().sum::<f64>() / 4.0;
            xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 4.0
        };
        assert_eq!(out[10], out[1]);
        assert!((f64::from(out[14]) - var_cols(0).ln_1p()).abs() < 1e-6);
        // the previous block: a uniform +5 difference has mean |d| 5 and no variance
        let prev = planes(|_, c| 16 * c as u32 + 5);
        compute(&ramp, &u, &v, &prev, 8, &mut out);
        assert!(out[22..27]
            .iter()
            .all(|&x| (x - 5f64.ln_1p() as f32).abs() < 1e-6));
        assert!(out[27].abs() < 1e-6);
    }

    #[test]
    fn the_values_do_not_depend_on_the_bit_depth() {
        let y8 = planes(|r, c| ((r * 37 + c * 11) % 256) as u32);
        let y10 = planes(|r, c| 4 * y8[r][c] + 2 * (y8[r][c] / 128));
        let u = [[30u32; CBLOCK]; CBLOCK];
        let u10 = [[120u32; CBLOCK]; CBLOCK];
        let (mut a, mut b) = ([0f32; WIDTH], [0f32; WIDTH]);
        compute(&y8, &u, &u, &y8, 8, &mut a);
        compute(&y10, &u10, &u10, &y10, 10, &mut b);
        for k in 0..WIDTH {
            assert!((a[k] - b[k]).abs() < 0.02, "{k}: {} {}", a[k], b[k]);
        }
    }
}

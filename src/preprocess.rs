//! Block → tensor: the block tensor contract of `docs/CONTRACTS.md`.
//!
//! Samples are written straight into the rows of the batch input buffers
//! (`x`: `[N, C, 16, 16]`, `side`: `[N, S]`); nothing is allocated per block.

use crate::error::{Error, Result};
use crate::manifest::{Bundle, Channel, InputLayout, SideFeature, BLOCK};

/// The `cpu_used` side feature is `preset / CPU_USED_SCALE` (docs/CONTRACTS.md).
pub(crate) const CPU_USED_SCALE: f32 = 10.0;

/// Chroma block size (4:2:0).
const CBLOCK: usize = BLOCK / 2;

/// Samples of one plane: 8-bit (`u8`) or high bit depth (`u16`).
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    /// One byte per sample (bit depth 8 only).
    U8(&'a [u8]),
    /// Two bytes per sample (bit depth 8, 10 or 12).
    U16(&'a [u16]),
}

impl Samples<'_> {
    fn len(&self) -> usize {
        match self {
            Samples::U8(s) => s.len(),
            Samples::U16(s) => s.len(),
        }
    }
}

/// A plane (or the top-left corner of a region of one): samples and the
/// distance between rows, in samples.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    /// The samples, starting at the top-left sample of the region.
    pub samples: Samples<'a>,
    /// Row stride in samples; at least the region's width.
    pub stride: usize,
}

impl<'a> Plane<'a> {
    /// Checks that a `cols × rows` region fits in this plane.
    pub(crate) fn check(&self, what: &str, cols: usize, rows: usize, bit_depth: u32) -> Result<()> {
        if self.stride < cols {
            return Err(Error::invalid(format!(
                "{what}_stride {} is smaller than the width {cols}",
                self.stride
            )));
        }
        let need = self
            .stride
            .checked_mul(rows - 1)
            .and_then(|v| v.checked_add(cols))
            .ok_or_else(|| Error::invalid(format!("{what}: stride {} overflows", self.stride)))?;
        if self.samples.len() < need {
            return Err(Error::invalid(format!(
                "{what}: {} samples given, {need} needed for {cols}×{rows} at stride {}",
                self.samples.len(),
                self.stride
            )));
        }
        if matches!(self.samples, Samples::U8(_)) && bit_depth != 8 {
            return Err(Error::invalid(format!(
                "{what}: 8-bit samples with bit depth {bit_depth}"
            )));
        }
        Ok(())
    }
}

/// Frame type, as in the dataset's `frame_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// Key frame.
    Key = 0,
    /// Inter frame.
    Inter = 1,
    /// Intra-only frame.
    IntraOnly = 2,
}

impl FrameType {
    /// From the numeric value (0 key, 1 inter, 2 intra-only).
    pub fn from_i32(v: i32) -> Option<FrameType> {
        match v {
            0 => Some(FrameType::Key),
            1 => Some(FrameType::Inter),
            2 => Some(FrameType::IntraOnly),
            _ => None,
        }
    }

    /// Whether the frame is intra (key or intra-only).
    pub fn is_intra(self) -> bool {
        !matches!(self, FrameType::Inter)
    }
}

/// Frame-level side information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideInfo {
    /// The frame's base qindex (0..=255).
    pub base_qindex: u8,
    /// The frame type.
    pub frame_type: FrameType,
}

/// One 16×16 4:2:0 block.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// Luma, 16×16 from the start of the slice.
    pub y: Plane<'a>,
    /// Cb, 8×8.
    pub u: Plane<'a>,
    /// Cr, 8×8.
    pub v: Plane<'a>,
    /// Co-located 16×16 luma of the previous source frame, if any.
    pub prev_y: Option<Plane<'a>>,
    /// Bit depth: 8, 10 or 12.
    pub bit_depth: u32,
    /// Side information.
    pub side: SideInfo,
}

/// A whole 4:2:0 frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Luma width (even, > 0).
    pub width: usize,
    /// Luma height (even, > 0).
    pub height: usize,
    /// Luma plane.
    pub y: Plane<'a>,
    /// Cb plane (`width/2 × height/2`).
    pub u: Plane<'a>,
    /// Cr plane.
    pub v: Plane<'a>,
    /// Luma of the previous source frame (same size), if any.
    pub prev_y: Option<Plane<'a>>,
    /// Bit depth: 8, 10 or 12.
    pub bit_depth: u32,
    /// Side information.
    pub side: SideInfo,
}

/// Number of 16×16 blocks (predictions) for a `width × height` frame:
/// `ceil(width/16) * ceil(height/16)`; 0 when a dimension is zero or odd.
pub fn frame_block_count(width: usize, height: usize) -> usize {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return 0;
    }
    width.div_ceil(BLOCK).saturating_mul(height.div_ceil(BLOCK))
}

fn check_bit_depth(bd: u32) -> Result<()> {
    if matches!(bd, 8 | 10 | 12) {
        Ok(())
    } else {
        Err(Error::invalid(format!("bit depth {bd} is not 8, 10 or 12")))
    }
}

impl Block<'_> {
    /// Checks strides, sizes and bit depth (not the sample values).
    pub(crate) fn validate(&self) -> Result<()> {
        check_bit_depth(self.bit_depth)?;
        self.y.check("y", BLOCK, BLOCK, self.bit_depth)?;
        self.u.check("u", CBLOCK, CBLOCK, self.bit_depth)?;
        self.v.check("v", CBLOCK, CBLOCK, self.bit_depth)?;
        if let Some(p) = &self.prev_y {
            p.check("prev_y", BLOCK, BLOCK, self.bit_depth)?;
        }
        Ok(())
    }
}

impl Frame<'_> {
    /// Checks size, strides and bit depth (not the sample values).
    pub(crate) fn validate(&self) -> Result<()> {
        check_bit_depth(self.bit_depth)?;
        if self.width == 0 || self.height == 0 {
            return Err(Error::invalid(format!(
                "frame size {}×{} is empty",
                self.width, self.height
            )));
        }
        if !self.width.is_multiple_of(2) || !self.height.is_multiple_of(2) {
            return Err(Error::invalid(format!(
                "frame size {}×{} is odd; 4:2:0 needs even dimensions",
                self.width, self.height
            )));
        }
        let (w, h) = (self.width, self.height);
        self.y.check("y", w, h, self.bit_depth)?;
        self.u.check("u", w / 2, h / 2, self.bit_depth)?;
        self.v.check("v", w / 2, h / 2, self.bit_depth)?;
        if let Some(p) = &self.prev_y {
            p.check("prev_y", w, h, self.bit_depth)?;
        }
        Ok(())
    }
}

/// A rectangular read with edge replication: the `n × n` square at
/// (`x0`, `y0`) of a plane whose valid area is `w × h`.
#[derive(Clone, Copy)]
struct Region<'a> {
    plane: Plane<'a>,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
}

/// Reads an `N × N` region into `out`, replicating the last column/row past
/// the valid area; returns the largest sample seen.
fn read_region<const N: usize>(r: &Region<'_>, out: &mut [[u32; N]; N]) -> u32 {
    fn go<T: Copy + Into<u32>, const N: usize>(
        d: &[T],
        r: &Region<'_>,
        out: &mut [[u32; N]; N],
    ) -> u32 {
        let mut max = 0u32;
        let inside = r.x0 + N <= r.w && r.y0 + N <= r.h;
        for (row, o) in out.iter_mut().enumerate() {
            let sy = (r.y0 + row).min(r.h - 1);
            let base = sy * r.plane.stride;
            if inside {
                let src = &d[base + r.x0..base + r.x0 + N];
                for (o, s) in o.iter_mut().zip(src) {
                    let s: u32 = (*s).into();
                    max = max.max(s);
                    *o = s;
                }
            } else {
                for (col, o) in o.iter_mut().enumerate() {
                    let sx = (r.x0 + col).min(r.w - 1);
                    let s: u32 = d[base + sx].into();
                    max = max.max(s);
                    *o = s;
                }
            }
        }
        max
    }
    match r.plane.samples {
        Samples::U8(d) => go(d, r, out),
        Samples::U16(d) => go(d, r, out),
    }
}

/// The normalisation and layout of the bundle's tensors.
#[derive(Debug, Clone)]
pub(crate) struct TensorLayout {
    channels: Vec<Channel>,
    /// Order of `x`'s values (`input.layout`).
    order: InputLayout,
    /// `x`'s shape (batch `-1`) for that order, kept so that a run builds
    /// no shape.
    x_shape: Vec<i64>,
    side_features: Vec<SideFeature>,
    /// The value of the `cpu_used` side feature (the context's preset / 10).
    cpu_used: f32,
    /// Whether some model reads the block tensor (`Bundle::uses_block`);
    /// when none does, `fill` reads and checks the planes but writes no `x`.
    writes_x: bool,
    /// `tables[bit depth index][channel][sample]`: the contract's
    /// normalisation of every possible sample value, computed once with the
    /// same float32 expression, so a lookup gives the same bits as the
    /// formula (two divisions per sample) at a fraction of the cost.
    tables: [Vec<Vec<f32>>; 3],
}

/// Index of a bit depth in `TensorLayout::tables`.
fn depth_index(bit_depth: u32) -> usize {
    match bit_depth {
        8 => 0,
        10 => 1,
        _ => 2,
    }
}

/// Where one block's samples come from.
pub(crate) struct BlockSource<'a> {
    y: Region<'a>,
    u: Region<'a>,
    v: Region<'a>,
    prev_y: Option<Region<'a>>,
    bit_depth: u32,
    side: SideInfo,
    /// Whether the block reaches past the frame edge.
    pub partial: bool,
}

impl<'a> BlockSource<'a> {
    /// A standalone block (already validated).
    pub(crate) fn from_block(b: &Block<'a>) -> Self {
        let reg = |plane: Plane<'a>, n: usize| Region {
            plane,
            x0: 0,
            y0: 0,
            w: n,
            h: n,
        };
        BlockSource {
            y: reg(b.y, BLOCK),
            u: reg(b.u, CBLOCK),
            v: reg(b.v, CBLOCK),
            prev_y: b.prev_y.map(|p| reg(p, BLOCK)),
            bit_depth: b.bit_depth,
            side: b.side,
            partial: false,
        }
    }

    /// Block `index` (raster order) of a frame (already validated).
    pub(crate) fn from_frame(f: &Frame<'a>, index: usize) -> Self {
        let cols = f.width.div_ceil(BLOCK);
        let (bx, by) = (index % cols, index / cols);
        let (x0, y0) = (bx * BLOCK, by * BLOCK);
        let luma = |plane: Plane<'a>| Region {
            plane,
            x0,
            y0,
            w: f.width,
            h: f.height,
        };
        let chroma = |plane: Plane<'a>| Region {
            plane,
            x0: x0 / 2,
            y0: y0 / 2,
            w: f.width / 2,
            h: f.height / 2,
        };
        BlockSource {
            y: luma(f.y),
            u: chroma(f.u),
            v: chroma(f.v),
            prev_y: f.prev_y.map(luma),
            bit_depth: f.bit_depth,
            side: f.side,
            partial: x0 + BLOCK > f.width || y0 + BLOCK > f.height,
        }
    }

    /// Whether a previous block was given.
    pub(crate) fn has_prev(&self) -> bool {
        self.prev_y.is_some()
    }
}

impl TensorLayout {
    /// `preset`: the encoder preset the context runs the bundle at (for the
    /// `cpu_used` side feature).
    pub(crate) fn new(b: &Bundle, preset: Option<u32>) -> Self {
        let mut l = Self::from_parts(b.channels.clone(), &b.mean, &b.std, b.side_features.clone());
        l.cpu_used = preset.map_or(0.0, |p| p as f32 / CPU_USED_SCALE);
        l.order = b.layout;
        l.x_shape = b.layout.x_shape(l.channels.len());
        l.writes_x = b.uses_block();
        l
    }

    fn from_parts(
        channels: Vec<Channel>,
        mean: &[f32],
        std: &[f32],
        side_features: Vec<SideFeature>,
    ) -> Self {
        let tables = [8u32, 10, 12].map(|bd| {
            let maxv = ((1u32 << bd) - 1) as f32;
            mean.iter()
                .zip(std)
                .map(|(&mean, &std)| {
                    (0..1u32 << bd)
                        .map(|s| (s as f32 / maxv - mean) / std)
                        .collect()
                })
                .collect()
        });
        TensorLayout {
            x_shape: InputLayout::Planar.x_shape(channels.len()),
            channels,
            order: InputLayout::Planar,
            side_features,
            cpu_used: 0.0,
            tables,
            writes_x: true,
        }
    }

    /// Floats per block in `x`: none when no model reads the block tensor.
    pub(crate) fn x_len(&self) -> usize {
        if self.writes_x {
            self.channels.len() * BLOCK * BLOCK
        } else {
            0
        }
    }

    /// Floats per block in `side`.
    pub(crate) fn side_len(&self) -> usize {
        self.side_features.iter().map(|f| f.width()).sum()
    }

    /// Shape of `x` (batch `-1`), as the bundle's block input declares it.
    pub(crate) fn x_shape(&self) -> &[i64] {
        &self.x_shape
    }

    /// The normalised planar values `[C, 16, 16]` of one block's samples
    /// (`luma`: Y and the previous Y; `chroma`: U and V), all <= the bit
    /// depth's maximum (checked by the caller), into `out`.
    fn write_planar(
        &self,
        bit_depth: u32,
        luma: [&[[u32; BLOCK]; BLOCK]; 2],
        chroma: [&[[u32; CBLOCK]; CBLOCK]; 2],
        out: &mut [f32],
    ) {
        let plane_len = BLOCK * BLOCK;
        let tables = &self.tables[depth_index(bit_depth)];
        for (ci, ch) in self.channels.iter().enumerate() {
            // every sample is <= maxv, inside the table
            let table = &tables[ci];
            let norm = |s: u32| table[s as usize];
            let dst = &mut out[ci * plane_len..(ci + 1) * plane_len];
            match ch {
                Channel::Y | Channel::PrevY => {
                    let s = luma[usize::from(*ch == Channel::PrevY)];
                    for (d, s) in dst.chunks_exact_mut(BLOCK).zip(s.iter()) {
                        for (d, s) in d.iter_mut().zip(s) {
                            *d = norm(*s);
                        }
                    }
                }
                Channel::U | Channel::V => {
                    let s = chroma[usize::from(*ch == Channel::V)];
                    for (r, d) in dst.chunks_exact_mut(BLOCK).enumerate() {
                        let srow = &s[r >> 1];
                        for (c, d) in d.iter_mut().enumerate() {
                            *d = norm(srow[c >> 1]);
                        }
                    }
                }
            }
        }
    }

    /// Writes one block: `x` gets `x_len()` floats, `side` gets `side_len()`
    /// floats (or is empty when no stage uses it). Fails when a sample is
    /// above `(1 << bit_depth) - 1`.
    pub(crate) fn fill(
        &self,
        src: &BlockSource<'_>,
        x: &mut [f32],
        side: &mut [f32],
    ) -> Result<()> {
        let maxv_i = (1u32 << src.bit_depth) - 1;
        let mut y = [[0u32; BLOCK]; BLOCK];
        let mut u = [[0u32; CBLOCK]; CBLOCK];
        let mut v = [[0u32; CBLOCK]; CBLOCK];
        let mut p = [[0u32; BLOCK]; BLOCK];
        // Every given plane is read (and range-checked), whether or not the
        // bundle uses it, so that bad input fails the same way for every bundle.
        let mut max = read_region(&src.y, &mut y);
        max = max.max(read_region(&src.u, &mut u));
        max = max.max(read_region(&src.v, &mut v));
        let prev = match &src.prev_y {
            Some(r) => {
                max = max.max(read_region(r, &mut p));
                &p
            }
            None => &y,
        };
        if max > maxv_i {
            return Err(Error::invalid(format!(
                "sample value {max} exceeds {maxv_i}, the maximum for bit depth {}",
                src.bit_depth
            )));
        }
        // The cells layout is the planar one permuted: build it planar on the
        // stack (at most 4 channels: they are distinct), then reorder.
        let n = self.x_len();
        match self.order {
            _ if n == 0 => {} // no model reads the block tensor
            InputLayout::Planar => {
                self.write_planar(src.bit_depth, [&y, prev], [&u, &v], &mut x[..n])
            }
            InputLayout::Cells => {
                let mut planar = [0f32; 4 * BLOCK * BLOCK];
                self.write_planar(src.bit_depth, [&y, prev], [&u, &v], &mut planar[..n]);
                to_cells(&planar[..n], self.channels.len(), x);
            }
        }
        if side.is_empty() {
            return Ok(()); // no stage takes the side features
        }
        let mut at = 0;
        for f in &self.side_features {
            if *f == SideFeature::BlockStats {
                let w = f.width();
                crate::block_stats::compute(&y, &u, &v, prev, src.bit_depth, &mut side[at..at + w]);
                at += w;
                continue;
            }
            side[at] = match f {
                SideFeature::Qindex => src.side.base_qindex as f32 / 255.0,
                SideFeature::Intra => {
                    if src.side.frame_type.is_intra() {
                        1.0
                    } else {
                        0.0
                    }
                }
                SideFeature::HasPrev => {
                    if src.prev_y.is_some() {
                        1.0
                    } else {
                        0.0
                    }
                }
                SideFeature::CpuUsed => self.cpu_used,
                SideFeature::BlockStats => unreachable!("written above"),
            };
            at += 1;
        }
        Ok(())
    }
}

/// `[C, 16, 16]` planar values -> the cells layout `[16, C·16]`: element
/// `[4R + Q][16ch + 4i + j]` is planar `[ch][4R + i][4Q + j]`.
fn to_cells(planar: &[f32], channels: usize, out: &mut [f32]) {
    let per_cell = channels * 16;
    for ch in 0..channels {
        let plane = &planar[ch * BLOCK * BLOCK..(ch + 1) * BLOCK * BLOCK];
        for (row, vals) in plane.chunks_exact(BLOCK).enumerate() {
            let (cr, i) = (row >> 2, row & 3);
            for (q, four) in vals.chunks_exact(4).enumerate() {
                let at = (cr * 4 + q) * per_cell + ch * 16 + i * 4;
                out[at..at + 4].copy_from_slice(four);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(channels: Vec<Channel>, side: Vec<SideFeature>) -> TensorLayout {
        let n = channels.len();
        TensorLayout::from_parts(channels, &vec![0.5; n], &vec![0.25; n], side)
    }

    #[test]
    fn normalisation_tables_equal_the_contract_formula_bit_for_bit() {
        let (mean, std) = ([0.5f32, 0.43], [0.25f32, 0.2]);
        let l = TensorLayout::from_parts(vec![Channel::Y, Channel::U], &mean, &std, vec![]);
        for (bi, bd) in [8u32, 10, 12].into_iter().enumerate() {
            let maxv = ((1u32 << bd) - 1) as f32;
            for ch in 0..2 {
                let t = &l.tables[bi][ch];
                assert_eq!(t.len(), 1 << bd);
                for (s, v) in t.iter().enumerate() {
                    let want = (s as f32 / maxv - mean[ch]) / std[ch];
                    assert_eq!(v.to_bits(), want.to_bits(), "bd {bd} ch {ch} sample {s}");
                }
            }
        }
    }

    fn side() -> SideInfo {
        SideInfo {
            base_qindex: 51,
            frame_type: FrameType::IntraOnly,
        }
    }

    #[test]
    fn cells_layout_is_the_planar_one_reordered() {
        // distinct planar values, so any misplaced element shows
        let c = 3;
        let planar: Vec<f32> = (0..c * 256).map(|v| v as f32).collect();
        let mut cells = vec![-1f32; c * 256];
        to_cells(&planar, c, &mut cells);
        for ch in 0..c {
            for r in 0..BLOCK {
                for col in 0..BLOCK {
                    let cell = (r / 4) * 4 + col / 4;
                    let at = cell * c * 16 + ch * 16 + (r % 4) * 4 + col % 4;
                    assert_eq!(
                        cells[at],
                        planar[ch * 256 + r * 16 + col],
                        "ch {ch} r {r} c {col}"
                    );
                }
            }
        }
    }

    #[test]
    fn block_count() {
        assert_eq!(frame_block_count(16, 16), 1);
        assert_eq!(frame_block_count(18, 2), 2);
        assert_eq!(frame_block_count(1920, 1080), 120 * 68);
        assert_eq!(frame_block_count(15, 16), 0);
        assert_eq!(frame_block_count(0, 0), 0);
    }

    #[test]
    fn tensor_values_follow_the_contract_bit_for_bit() {
        let y: Vec<u16> = (0..256).map(|i| (i * 4 + 3) as u16).collect();
        let u: Vec<u16> = (0..64).map(|i| (1023 - i * 5) as u16).collect();
        let v: Vec<u16> = (0..64).map(|i| (i * 16) as u16).collect();
        let b = Block {
            y: Plane {
                samples: Samples::U16(&y),
                stride: 16,
            },
            u: Plane {
                samples: Samples::U16(&u),
                stride: 8,
            },
            v: Plane {
                samples: Samples::U16(&v),
                stride: 8,
            },
            prev_y: None,
            bit_depth: 10,
            side: side(),
        };
        b.validate().unwrap();
        let l = layout(
            vec![Channel::V, Channel::Y, Channel::PrevY, Channel::U],
            vec![
                SideFeature::HasPrev,
                SideFeature::Qindex,
                SideFeature::Intra,
            ],
        );
        let mut x = vec![0.0f32; l.x_len()];
        let mut s = vec![0.0f32; l.side_len()];
        l.fill(&BlockSource::from_block(&b), &mut x, &mut s)
            .unwrap();
        let f = |v: u16| (v as f32 / 1023.0f32 - 0.5f32) / 0.25f32;
        for r in 0..16 {
            for c in 0..16 {
                let i = r * 16 + c;
                assert_eq!(x[i].to_bits(), f(v[(r >> 1) * 8 + (c >> 1)]).to_bits());
                assert_eq!(x[256 + i].to_bits(), f(y[i]).to_bits());
                assert_eq!(
                    x[512 + i].to_bits(),
                    f(y[i]).to_bits(),
                    "prev_y absent: copy of y"
                );
                assert_eq!(
                    x[768 + i].to_bits(),
                    f(u[(r >> 1) * 8 + (c >> 1)]).to_bits()
                );
            }
        }
        assert_eq!(s, vec![0.0, 51.0f32 / 255.0, 1.0]);
    }

    #[test]
    fn sample_range_is_checked_in_every_plane() {
        let ok = vec![255u16; 256];
        let mut bad = ok.clone();
        bad[5] = 256;
        let l = layout(vec![Channel::Y], vec![]);
        for which in 0..4 {
            let pick = |i: usize, n: usize| if i == which { &bad[..n] } else { &ok[..n] };
            let b = Block {
                y: Plane {
                    samples: Samples::U16(pick(0, 256)),
                    stride: 16,
                },
                u: Plane {
                    samples: Samples::U16(pick(1, 64)),
                    stride: 8,
                },
                v: Plane {
                    samples: Samples::U16(pick(2, 64)),
                    stride: 8,
                },
                prev_y: Some(Plane {
                    samples: Samples::U16(pick(3, 256)),
                    stride: 16,
                }),
                bit_depth: 8,
                side: side(),
            };
            let mut x = vec![0.0; l.x_len()];
            let e = l.fill(&BlockSource::from_block(&b), &mut x, &mut []);
            // The bundle uses only y; every plane is still checked.
            assert!(matches!(e, Err(Error::InvalidArgument(_))), "plane {which}");
        }
    }

    #[test]
    fn frame_edges_replicate_last_column_and_row() {
        // 18×18 frame: block 1 (x0 = 16) has 2 valid columns.
        let (w, h) = (18usize, 18usize);
        let y: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
        let c: Vec<u8> = (0..(w / 2) * (h / 2))
            .map(|i| (i * 3 % 256) as u8)
            .collect();
        let f = Frame {
            width: w,
            height: h,
            y: Plane {
                samples: Samples::U8(&y),
                stride: w,
            },
            u: Plane {
                samples: Samples::U8(&c),
                stride: w / 2,
            },
            v: Plane {
                samples: Samples::U8(&c),
                stride: w / 2,
            },
            prev_y: None,
            bit_depth: 8,
            side: side(),
        };
        f.validate().unwrap();
        let l = layout(vec![Channel::Y, Channel::U], vec![]);
        let mut x = vec![0.0; l.x_len()];
        let src = BlockSource::from_frame(&f, 3); // bottom-right
        assert!(src.partial);
        assert!(!BlockSource::from_frame(&f, 0).partial);
        l.fill(&src, &mut x, &mut []).unwrap();
        let norm = |s: u8| (s as f32 / 255.0 - 0.5) / 0.25;
        for r in 0..16 {
            for col in 0..16 {
                let (sy, sx) = ((16 + r).min(h - 1), (16 + col).min(w - 1));
                assert_eq!(x[r * 16 + col], norm(y[sy * w + sx]));
                let (cy, cx) = (
                    (8 + (r >> 1)).min(h / 2 - 1),
                    (8 + (col >> 1)).min(w / 2 - 1),
                );
                assert_eq!(x[256 + r * 16 + col], norm(c[cy * (w / 2) + cx]));
            }
        }
    }

    #[test]
    fn plane_checks() {
        let d = [0u16; 100];
        let p = Plane {
            samples: Samples::U16(&d),
            stride: 16,
        };
        assert!(p.check("y", 16, 16, 10).is_err(), "100 < 16*15+16");
        let p = Plane {
            samples: Samples::U16(&d),
            stride: 8,
        };
        assert!(p.check("u", 8, 8, 10).is_ok());
        assert!(p.check("u", 9, 8, 10).is_err());
        let d8 = [0u8; 64];
        let p = Plane {
            samples: Samples::U8(&d8),
            stride: 8,
        };
        assert!(p.check("u", 8, 8, 8).is_ok());
        assert!(p.check("u", 8, 8, 10).is_err());
        let p = Plane {
            samples: Samples::U16(&d),
            stride: usize::MAX,
        };
        assert!(p.check("u", 8, 8, 10).is_err());
    }
}

//! Do two ONNX Runtime code paths (AVX-512 vs AVX2, CPU vs CUDA) decide the
//! same partitions? This tool writes every decision of a fixed block set,
//! and compares two such files.
//!
//! ```text
//! decision_paths dump --bundle DIR --out FILE [--random N] [--y4m CLIP --frames F]
//!     [--opt all|extended|basic|disabled]
//! decision_paths compare A B
//! ```
//!
//! `dump` predicts N seeded random blocks (bit depths 8/10/12 in turn, half
//! with a previous block; default 16,000, the C harness's stress count) and,
//! with `--y4m`, every 16×16 block of the clip's first F frames (frame calls,
//! previous frame as `prev_y`), twice: with the default decision grid
//! (1/1024) and with unrounded decisions. Each line of FILE holds the block
//! index, both partitions and the ten probabilities as f32 bit patterns.
//! `compare` counts the blocks whose rounded and whose unrounded partitions
//! differ between A and B, and the largest probability difference.
//! `--opt` sets ONNX Runtime's graph optimisation level, another way to make
//! it run other kernels (fused or not) on the same machine.
//! `scripts/decision-paths.sh` runs the dumps (natively at two optimisation
//! levels, and under qemu-user with a CPU model without AVX-512) and the
//! comparisons.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use av1part::{
    Block, Config, Context, Frame, FrameType, GraphOptimization, Plane, Prediction, ProviderChoice,
    Samples, SideInfo,
};

#[path = "common/y4m.rs"]
mod y4m;

/// splitmix64, so the block set is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One owned block: smooth gradients plus noise, so the set spans flat and
/// textured content rather than pure noise.
struct OwnedBlock {
    y: Vec<u16>,
    u: Vec<u16>,
    v: Vec<u16>,
    prev: Option<Vec<u16>>,
    bit_depth: u32,
    qindex: u8,
    intra: bool,
}

fn random_block(r: &mut Rng, i: usize) -> OwnedBlock {
    let bit_depth = [8, 10, 12][i % 3];
    let max = (1u32 << bit_depth) - 1;
    let mut plane = |n: usize, side: usize| -> Vec<u16> {
        let base = (r.next() % u64::from(max)) as f64;
        let (gx, gy) = (
            (r.next() % 64) as f64 / 8.0 - 4.0,
            (r.next() % 64) as f64 / 8.0 - 4.0,
        );
        let noise = 1 + (r.next() % u64::from(max / 8 + 1)) as u32;
        let scale = f64::from(max) / 255.0;
        (0..n)
            .map(|k| {
                let (x, yy) = ((k % side) as f64, (k / side) as f64);
                let v = base
                    + scale * (gx * x + gy * yy)
                    + f64::from((r.next() % u64::from(noise)) as u32);
                v.clamp(0.0, f64::from(max)) as u16
            })
            .collect()
    };
    let y = plane(256, 16);
    let u = plane(64, 8);
    let v = plane(64, 8);
    let prev = if i % 2 == 1 {
        Some(plane(256, 16))
    } else {
        None
    };
    OwnedBlock {
        y,
        u,
        v,
        prev,
        bit_depth,
        qindex: (r.next() % 256) as u8,
        intra: i.is_multiple_of(5),
    }
}

fn plane(s: &[u16], stride: usize) -> Plane<'_> {
    Plane {
        samples: Samples::U16(s),
        stride,
    }
}

fn borrow(b: &OwnedBlock) -> Block<'_> {
    let p = plane;
    Block {
        y: p(&b.y, 16),
        u: p(&b.u, 8),
        v: p(&b.v, 8),
        prev_y: b.prev.as_deref().map(|s| p(s, 16)),
        bit_depth: b.bit_depth,
        side: SideInfo {
            base_qindex: b.qindex,
            frame_type: if b.intra {
                FrameType::Key
            } else {
                FrameType::Inter
            },
        },
    }
}

fn context(bundle: &std::path::Path, grid: u32, opt: GraphOptimization) -> Result<Context, String> {
    Context::new(&Config {
        model_dir: bundle.to_path_buf(),
        provider: ProviderChoice::Cpu,
        frame_threads: 1,
        decision_grid: grid,
        graph_optimization: opt,
        ..Config::default()
    })
    .map_err(|e| e.to_string())
}

fn predictions(
    ctx: &Context,
    blocks: &[OwnedBlock],
    clip: Option<&y4m::Clip>,
) -> Result<Vec<Prediction>, String> {
    let views: Vec<Block<'_>> = blocks.iter().map(borrow).collect();
    let mut out = vec![Prediction::default(); views.len()];
    for (bc, oc) in views.chunks(256).zip(out.chunks_mut(256)) {
        ctx.predict_blocks(bc, oc).map_err(|e| e.to_string())?;
    }
    if let Some(c) = clip {
        let n = av1part::frame_block_count(c.width, c.height);
        for (f, planes) in c.frames.iter().enumerate() {
            let p = plane;
            let frame = Frame {
                width: c.width,
                height: c.height,
                y: p(&planes[0], c.width),
                u: p(&planes[1], c.width / 2),
                v: p(&planes[2], c.width / 2),
                prev_y: (f > 0).then(|| p(&c.frames[f - 1][0], c.width)),
                bit_depth: c.bit_depth,
                side: SideInfo {
                    base_qindex: 120,
                    frame_type: if f == 0 {
                        FrameType::Key
                    } else {
                        FrameType::Inter
                    },
                },
            };
            let mut fo = vec![Prediction::default(); n];
            ctx.predict_frame(&frame, &mut fo)
                .map_err(|e| e.to_string())?;
            out.extend(fo);
        }
    }
    Ok(out)
}

fn dump(args: &[String]) -> Result<(), String> {
    let (mut bundle, mut out, mut n, mut y4m_path, mut frames) = (
        PathBuf::from("onnx/default"),
        None,
        16_000usize,
        None,
        100usize,
    );
    let mut opt = GraphOptimization::All;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--bundle" => bundle = PathBuf::from(val()?),
            "--out" => out = Some(PathBuf::from(val()?)),
            "--random" => n = val()?.parse().map_err(|e| format!("--random: {e}"))?,
            "--y4m" => y4m_path = Some(PathBuf::from(val()?)),
            "--frames" => frames = val()?.parse().map_err(|e| format!("--frames: {e}"))?,
            "--opt" => {
                opt = match val()?.as_str() {
                    "all" => GraphOptimization::All,
                    "extended" => GraphOptimization::Extended,
                    "basic" => GraphOptimization::Basic,
                    "disabled" => GraphOptimization::Disabled,
                    o => return Err(format!("--opt {o}: not all|extended|basic|disabled")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let out = out.ok_or("--out is required")?;
    let clip = match &y4m_path {
        Some(p) => Some(y4m::read_y4m(p, frames)?),
        None => None,
    };
    let mut r = Rng(0x5EED_0000_0000_0001);
    let blocks: Vec<OwnedBlock> = (0..n).map(|i| random_block(&mut r, i)).collect();
    let grid = predictions(
        &context(&bundle, av1part::DEFAULT_DECISION_GRID, opt)?,
        &blocks,
        clip.as_ref(),
    )?;
    let raw = predictions(&context(&bundle, 0, opt)?, &blocks, clip.as_ref())?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out).map_err(|e| e.to_string())?);
    for (i, (g, w)) in grid.iter().zip(&raw).enumerate() {
        let bits: Vec<String> = w
            .probabilities
            .iter()
            .map(|p| format!("{:08x}", p.to_bits()))
            .collect();
        writeln!(f, "{i} {} {} {}", g.partition, w.partition, bits.join(","))
            .map_err(|e| e.to_string())?;
    }
    f.flush().map_err(|e| e.to_string())?;
    eprintln!(
        "decision_paths: {} blocks ({n} random, {} from {}) with {} to {}",
        grid.len(),
        grid.len() - n,
        y4m_path.map_or("no clip".into(), |p| p.display().to_string()),
        bundle.display(),
        out.display()
    );
    Ok(())
}

type Row = (i32, i32, Vec<f32>);

fn read_rows(path: &str) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let bad = || format!("{path}: bad line {l:?}");
            if f.len() != 4 {
                return Err(bad());
            }
            let probs = f[3]
                .split(',')
                .map(|h| {
                    u32::from_str_radix(h, 16)
                        .map(f32::from_bits)
                        .map_err(|_| bad())
                })
                .collect::<Result<Vec<f32>, String>>()?;
            Ok((
                f[1].parse().map_err(|_| bad())?,
                f[2].parse().map_err(|_| bad())?,
                probs,
            ))
        })
        .collect()
}

fn compare(a: &str, b: &str) -> Result<(), String> {
    let (ra, rb) = (read_rows(a)?, read_rows(b)?);
    if ra.len() != rb.len() {
        return Err(format!("{a} has {} blocks, {b} {}", ra.len(), rb.len()));
    }
    let (mut grid_diff, mut raw_diff, mut bits_diff, mut max_dp) = (0usize, 0usize, 0usize, 0f32);
    for (x, y) in ra.iter().zip(&rb) {
        grid_diff += usize::from(x.0 != y.0);
        raw_diff += usize::from(x.1 != y.1);
        bits_diff += usize::from(x.2 != y.2);
        for (p, q) in x.2.iter().zip(&y.2) {
            max_dp = max_dp.max((p - q).abs());
        }
    }
    println!("blocks: {}", ra.len());
    println!("blocks whose probabilities differ in any bit: {bits_diff}");
    println!("largest probability difference: {max_dp:.3e}");
    println!("partitions differing, decision grid 1/1024: {grid_diff}");
    println!("partitions differing, unrounded decisions: {raw_diff}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("dump") => dump(&args[1..]),
        Some("compare") if args.len() == 3 => compare(&args[1], &args[2]),
        _ => Err("usage: decision_paths dump --bundle DIR --out FILE [--random N] [--y4m CLIP --frames F]\n       decision_paths compare A B".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decision_paths: {e}");
            ExitCode::from(2)
        }
    }
}

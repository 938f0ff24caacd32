//! av1part demo: predict the partitions of a real clip's frames and draw them.
//!
//! ```text
//! cargo run --release --example demo -- --y4m CLIP.y4m [--bundle DIR] [--frames N]
//!     [--draw-frame K] [--out DIR] [--qindex Q] [--scale S]
//! ```
//!
//! Loads the bundle (default `onnx/default`, else `onnx/test-tiny` with a loud
//! note), predicts every 16×16 block of the first N frames of a 4:2:0 Y4M
//! with `Context::predict_frame` (previous frame as `prev_y`, first frame a
//! key frame), prints the partition counts per frame and in total with the
//! mean top probability, times `Context::predict_block` (batch 1) on every
//! block and `predict_frame` per frame, and writes a PNG of frame K with each
//! block's predicted partition drawn over the luma (`out/demo/` by default).
//!
//! The PNG writer is a small stored-deflate encoder in this file (no image
//! crate needed); the legend text uses a built-in 5×7 bitmap font.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use av1part::{
    Block, Config, Context, Frame, FrameType, Plane, Prediction, Provider, ProviderChoice, Samples,
    SideInfo, NUM_PARTITIONS, PARTITION_NAMES,
};

#[path = "common/y4m.rs"]
mod y4m;
use y4m::{read_y4m, Clip};

// ---------------------------------------------------------------- PNG output

fn crc32(data: &[u8], mut c: u32) -> u32 {
    c = !c;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    let crc = crc32(&out[start..], 0);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// RGB8 image → PNG bytes (filter 0, zlib with stored deflate blocks).
fn encode_png(w: usize, h: usize, rgb: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(h * (w * 3 + 1));
    for row in rgb.chunks(w * 3) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

// ---------------------------------------------------------------- drawing

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize, bg: [u8; 3]) -> Canvas {
        let mut px = vec![0; w * h * 3];
        for p in px.chunks_mut(3) {
            p.copy_from_slice(&bg);
        }
        Canvas { w, h, px }
    }
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }
    fn outline(&mut self, x: i64, y: i64, w: i64, h: i64, t: i64, c: [u8; 3]) {
        self.rect(x, y, w, t, c);
        self.rect(x, y + h - t, w, t, c);
        self.rect(x, y, t, h, c);
        self.rect(x + w - t, y, t, h, c);
    }
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        let mut cx = x;
        for ch in s.chars() {
            let g = glyph(ch.to_ascii_uppercase());
            for (r, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.rect(cx + col * scale, y + r as i64 * scale, scale, scale, c);
                    }
                }
            }
            cx += 6 * scale;
        }
    }
}

/// 5×7 glyphs, rows top to bottom, bit 4 = leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [30, 17, 17, 17, 17, 17, 30],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 10, 4, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        ',' => [0, 0, 0, 0, 12, 4, 8],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '/' => [1, 2, 2, 4, 8, 8, 16],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        '!' => [4, 4, 4, 4, 4, 0, 4],
        '*' => [0, 4, 21, 14, 21, 4, 0],
        _ => [0; 7],
    }
}

/// One colour per partition type (distinct on grey luma).
const COLOURS: [[u8; 3]; NUM_PARTITIONS] = [
    [60, 200, 255], // NONE     light blue
    [255, 220, 0],  // HORZ     yellow
    [255, 140, 0],  // VERT     orange
    [255, 40, 40],  // SPLIT    red
    [0, 220, 90],   // HORZ_A   green
    [0, 140, 60],   // HORZ_B   dark green
    [200, 80, 255], // VERT_A   violet
    [255, 90, 200], // VERT_B   pink
    [180, 255, 60], // HORZ_4   lime
    [150, 110, 60], // VERT_4   brown
];

/// Draws the partition shape of a `s`×`s` block at (x, y): the block's
/// outline and the partition's internal lines, `t` pixels wide.
fn draw_partition(cv: &mut Canvas, x: i64, y: i64, s: i64, part: usize, t: i64) {
    let c = COLOURS[part];
    let (h2, q) = (s / 2, s / 4);
    cv.outline(x, y, s, s, t, c);
    let hline =
        |cv: &mut Canvas, yy: i64, x0: i64, x1: i64| cv.rect(x + x0, y + yy - t / 2, x1 - x0, t, c);
    let vline =
        |cv: &mut Canvas, xx: i64, y0: i64, y1: i64| cv.rect(x + xx - t / 2, y + y0, t, y1 - y0, c);
    match part {
        1 => hline(cv, h2, 0, s), // HORZ
        2 => vline(cv, h2, 0, s), // VERT
        3 => {
            hline(cv, h2, 0, s);
            vline(cv, h2, 0, s);
        } // SPLIT
        4 => {
            hline(cv, h2, 0, s);
            vline(cv, h2, 0, h2);
        } // HORZ_A: top half split
        5 => {
            hline(cv, h2, 0, s);
            vline(cv, h2, h2, s);
        } // HORZ_B: bottom half split
        6 => {
            vline(cv, h2, 0, s);
            hline(cv, h2, 0, h2);
        } // VERT_A: left half split
        7 => {
            vline(cv, h2, 0, s);
            hline(cv, h2, h2, s);
        } // VERT_B: right half split
        8 => {
            for k in 1..4 {
                hline(cv, k * q, 0, s);
            }
        } // HORZ_4
        9 => {
            for k in 1..4 {
                vline(cv, k * q, 0, s);
            }
        } // VERT_4
        _ => {}                   // NONE: outline only
    }
}

struct DrawInfo<'a> {
    title: &'a str,
    bundle_line: String,
    warning: Option<&'a str>,
    counts: [usize; NUM_PARTITIONS],
    mean_top: f64,
}

fn render(
    clip: &Clip,
    frame: usize,
    preds: &[Prediction],
    scale: usize,
    info: &DrawInfo,
) -> Canvas {
    let (w, h) = (clip.width, clip.height);
    let (bw, bh) = (w.div_ceil(16), h.div_ceil(16));
    let legend_w = 300usize;
    let img_w = w * scale;
    let img_h = (h * scale).max(560);
    let mut cv = Canvas::new(img_w + legend_w, img_h, [24, 24, 28]);
    // luma as grey, slightly darkened so the colours stand out
    let maxv = ((1u32 << clip.bit_depth) - 1) as f32;
    let y = &clip.frames[frame][0];
    for py in 0..h * scale {
        for px in 0..img_w {
            let v = y[(py / scale) * w + px / scale] as f32 / maxv;
            let g = (30.0 + v * 185.0) as u8;
            cv.set(px as i64, py as i64, [g, g, g]);
        }
    }
    let s = (16 * scale) as i64;
    let t = (scale as i64 / 2).max(1);
    for by in 0..bh {
        for bx in 0..bw {
            let p = &preds[by * bw + bx];
            if p.partition >= 0 {
                draw_partition(
                    &mut cv,
                    bx as i64 * s,
                    by as i64 * s,
                    s,
                    p.partition as usize,
                    t,
                );
            }
        }
    }
    // legend
    let lx = img_w as i64 + 14;
    let white = [235, 235, 235];
    let grey = [170, 170, 170];
    cv.text(lx, 12, info.title, 2, white);
    cv.text(lx, 34, &info.bundle_line, 1, grey);
    let mut ly = 50;
    if let Some(wn) = info.warning {
        cv.text(lx, ly, wn, 1, [255, 80, 80]);
        ly += 12;
    }
    cv.text(
        lx,
        ly,
        &format!("FRAME {frame}, {w}X{h}, {} BLOCKS", bw * bh),
        1,
        grey,
    );
    ly += 20;
    let total: usize = info.counts.iter().sum();
    for p in 0..NUM_PARTITIONS {
        let sw = 36i64;
        cv.rect(lx, ly, sw, sw, [50, 50, 56]);
        draw_partition(&mut cv, lx, ly, sw, p, 2);
        let pct = if total > 0 {
            100.0 * info.counts[p] as f64 / total as f64
        } else {
            0.0
        };
        cv.text(lx + sw + 10, ly + 4, PARTITION_NAMES[p], 2, COLOURS[p]);
        cv.text(
            lx + sw + 10,
            ly + 24,
            &format!("{:>4} BLOCKS {:5.1}%", info.counts[p], pct),
            1,
            grey,
        );
        ly += sw + 10;
    }
    cv.text(
        lx,
        ly + 4,
        &format!("MEAN TOP PROB {:.3}", info.mean_top),
        1,
        grey,
    );
    cv
}

// ---------------------------------------------------------------- main

fn plane<'a>(s: &'a [u16], stride: usize) -> Plane<'a> {
    Plane {
        samples: Samples::U16(s),
        stride,
    }
}

/// The demo's side information for frame `f`: frame 0 is coded as a key
/// frame, later ones as inter frames, all at one base qindex.
fn frame_side(base_qindex: u8, f: usize) -> SideInfo {
    SideInfo {
        base_qindex,
        frame_type: if f == 0 {
            FrameType::Key
        } else {
            FrameType::Inter
        },
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

struct Args {
    y4m: PathBuf,
    bundle: Option<PathBuf>,
    frames: usize,
    draw_frame: usize,
    out: PathBuf,
    qindex: u8,
    scale: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        y4m: PathBuf::new(),
        bundle: None,
        frames: 10,
        draw_frame: 0,
        out: PathBuf::from("out/demo"),
        qindex: 128,
        scale: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--y4m" => a.y4m = PathBuf::from(val()?),
            "--bundle" => a.bundle = Some(PathBuf::from(val()?)),
            "--frames" => a.frames = val()?.parse().map_err(|_| "--frames: not a number")?,
            "--draw-frame" => {
                a.draw_frame = val()?.parse().map_err(|_| "--draw-frame: not a number")?
            }
            "--out" => a.out = PathBuf::from(val()?),
            "--qindex" => a.qindex = val()?.parse().map_err(|_| "--qindex: 0..255")?,
            "--scale" => a.scale = val()?.parse().map_err(|_| "--scale: not a number")?,
            "-h" | "--help" => {
                return Err(
                    "usage: demo --y4m CLIP.y4m [--bundle DIR] [--frames N] [--draw-frame K] \
                            [--out DIR] [--qindex Q] [--scale S]"
                        .into(),
                )
            }
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.y4m.as_os_str().is_empty() {
        return Err("--y4m CLIP.y4m is required".into());
    }
    a.frames = a.frames.max(1);
    a.scale = a.scale.min(16); // 0: chosen from the frame width
    Ok(a)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (bundle, fallback) = match &args.bundle {
        Some(b) => (b.clone(), false),
        None if root.join("onnx/default/manifest.json").exists() => {
            (root.join("onnx/default"), false)
        }
        None => (root.join("onnx/test-tiny"), true),
    };
    if fallback {
        println!();
        println!("*************************************************************************");
        println!("*  onnx/default does not exist (the trained bundle has not been made).  *");
        println!("*  FALLING BACK TO onnx/test-tiny: RANDOM WEIGHTS, NOT TRAINED.         *");
        println!("*  The partitions below show that the pipeline runs, not what a trained *");
        println!("*  model predicts.                                                      *");
        println!("*************************************************************************");
        println!();
    }
    let cfg = Config {
        model_dir: bundle.clone(),
        provider: ProviderChoice::Cpu,
        ..Config::default()
    };
    let t0 = Instant::now();
    let ctx = Context::new(&cfg).map_err(|e| format!("cannot load {}: {e}", bundle.display()))?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let clip = read_y4m(&args.y4m, args.frames)?;
    let (w, h) = (clip.width, clip.height);
    let (bw, bh) = (w.div_ceil(16), h.div_ceil(16));
    let nb = bw * bh;
    println!("av1part demo");
    println!(
        "  library : av1part {}, ONNX Runtime {} ({})",
        av1part::version_string(),
        ctx.ort_version(),
        ctx.ort_library().display()
    );
    println!(
        "  bundle  : {} ('{}', {} stages, skip_below {}){}",
        bundle.display(),
        ctx.bundle_name(),
        ctx.stages().len(),
        ctx.skip_below(),
        if fallback {
            "  ** TEST BUNDLE, RANDOM WEIGHTS **"
        } else {
            ""
        }
    );
    println!(
        "  provider: {}{}",
        match ctx.provider() {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA",
        },
        if ctx.provider_note().is_empty() {
            String::new()
        } else {
            format!(" ({})", ctx.provider_note())
        }
    );
    println!(
        "  clip    : {} ({w}x{h}, {}-bit, {} frames used)",
        args.y4m.display(),
        clip.bit_depth,
        clip.frames.len()
    );
    println!("  context : loaded in {load_ms:.1} ms; qindex {}; frame 0 key, later frames inter with prev_y",
             args.qindex);
    println!();

    // ---- frame predictions and statistics
    let mut all: Vec<Vec<Prediction>> = Vec::new();
    let mut frame_us = Vec::new();
    let mut total = [0usize; NUM_PARTITIONS];
    let mut top_sum = 0.0f64;
    print!("{:>5}", "frame");
    for n in PARTITION_NAMES {
        print!(" {n:>7}");
    }
    println!(" {:>9} {:>9}", "mean_top", "ms");
    for f in 0..clip.frames.len() {
        let [y, u, v] = &clip.frames[f];
        let frame = Frame {
            width: w,
            height: h,
            y: plane(y, w),
            u: plane(u, w / 2),
            v: plane(v, w / 2),
            prev_y: if f > 0 {
                Some(plane(&clip.frames[f - 1][0], w))
            } else {
                None
            },
            bit_depth: clip.bit_depth,
            side: frame_side(args.qindex, f),
        };
        let mut out = vec![Prediction::default(); nb];
        let t = Instant::now();
        ctx.predict_frame(&frame, &mut out)
            .map_err(|e| format!("frame {f}: {e}"))?;
        frame_us.push(t.elapsed().as_secs_f64() * 1e6);
        let mut counts = [0usize; NUM_PARTITIONS];
        let mut top = 0.0f64;
        for p in &out {
            let k = p.partition as usize;
            counts[k] += 1;
            top += p.probabilities[k] as f64;
        }
        for k in 0..NUM_PARTITIONS {
            total[k] += counts[k];
        }
        top_sum += top;
        print!("{f:>5}");
        for c in counts {
            print!(" {c:>7}");
        }
        println!(" {:>9.3} {:>9.2}", top / nb as f64, frame_us[f] / 1e3);
        all.push(out);
    }
    let nall = nb * clip.frames.len();
    print!("{:>5}", "total");
    for c in total {
        print!(" {c:>7}");
    }
    println!(" {:>9.3}", top_sum / nall as f64);
    print!("{:>5}", "%");
    for c in total {
        print!(" {:>7.1}", 100.0 * c as f64 / nall as f64);
    }
    println!();
    println!();

    // ---- per-block latency (batch 1), every full block of every frame
    let mut lat = Vec::new();
    let mut agree = 0usize;
    let mut checked = 0usize;
    for (f, frame_preds) in all.iter().enumerate() {
        let [y, u, v] = &clip.frames[f];
        for by in 0..h / 16 {
            for bx in 0..w / 16 {
                let yo = by * 16 * w + bx * 16;
                let co = by * 8 * (w / 2) + bx * 8;
                let blk = Block {
                    y: plane(&y[yo..], w),
                    u: plane(&u[co..], w / 2),
                    v: plane(&v[co..], w / 2),
                    prev_y: if f > 0 {
                        Some(plane(&clip.frames[f - 1][0][yo..], w))
                    } else {
                        None
                    },
                    bit_depth: clip.bit_depth,
                    side: frame_side(args.qindex, f),
                };
                let t = Instant::now();
                let p = ctx.predict_block(&blk).map_err(|e| format!("block: {e}"))?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                checked += 1;
                agree += usize::from(p.partition == frame_preds[by * bw + bx].partition);
            }
        }
    }
    let sum: f64 = lat.iter().sum();
    lat.sort_by(|a, b| a.total_cmp(b));
    let mut fsorted = frame_us.clone();
    fsorted.sort_by(|a, b| a.total_cmp(b));
    println!(
        "per-block latency (this machine; 1 calling thread; ONNX Runtime intra-op threads 1; \
         predict_frame may spread a frame over up to {} sessions/threads):",
        ctx.max_sessions()
    );
    println!(
        "  predict_block (batch 1): {} calls, median {:.1} us, p99 {:.1} us, mean {:.1} us -> {:.0} blocks/s",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        sum / lat.len() as f64,
        lat.len() as f64 / (sum * 1e-6)
    );
    println!(
        "  predict_frame          : {} frames of {nb} blocks, median {:.2} ms/frame = {:.1} us/block -> {:.0} blocks/s",
        frame_us.len(),
        percentile(&fsorted, 0.5) / 1e3,
        percentile(&fsorted, 0.5) / nb as f64,
        nb as f64 / (percentile(&fsorted, 0.5) * 1e-6)
    );
    println!("  block vs frame predictions: {agree}/{checked} full blocks give the same partition");
    println!("  (scripts/bench.sh measures this properly at 176x144, 1280x720 and 1920x1080)");
    println!();

    // ---- the picture
    let k = args.draw_frame.min(clip.frames.len() - 1);
    let mut counts = [0usize; NUM_PARTITIONS];
    let mut top = 0.0;
    for p in &all[k] {
        counts[p.partition as usize] += 1;
        top += p.probabilities[p.partition as usize] as f64;
    }
    let stem = args
        .y4m
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("clip")
        .to_string();
    let info = DrawInfo {
        title: "AV1PART",
        bundle_line: format!("BUNDLE {} ({})", ctx.bundle_name(), stem),
        warning: if fallback {
            Some("TEST BUNDLE: RANDOM WEIGHTS!")
        } else {
            None
        },
        counts,
        mean_top: top / nb as f64,
    };
    // default scale: 4x for QCIF, 2x up to 700 wide, else 1x
    let scale = if args.scale > 0 {
        args.scale
    } else {
        (1400 / w).clamp(1, 4)
    };
    let cv = render(&clip, k, &all[k], scale, &info);
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let png = args.out.join(format!("{stem}-frame{k}-partitions.png"));
    let bytes = encode_png(cv.w, cv.h, &cv.px);
    std::fs::write(&png, &bytes).map_err(|e| format!("{}: {e}", png.display()))?;
    // the stable name the README points at: the latest run's picture
    let latest = args.out.join("partitions.png");
    std::fs::write(&latest, &bytes).map_err(|e| format!("{}: {e}", latest.display()))?;
    println!("wrote {} ({}x{}: frame {k} at {}x, each 16x16 block's predicted partition drawn in its colour)",
             png.display(), cv.w, cv.h, scale);
    println!("  and the same picture as {}", latest.display());
    if fallback {
        println!();
        println!("NOTE: these are the predictions of onnx/test-tiny (random weights), because onnx/default is missing.");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

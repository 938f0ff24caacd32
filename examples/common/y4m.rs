//! A small Y4M (4:2:0, 8/10/12-bit) reader shared by the examples.

use std::path::Path;

/// A decoded 4:2:0 clip: planes as 16-bit samples, frame by frame.
pub struct Clip {
    /// Luma width.
    pub width: usize,
    /// Luma height.
    pub height: usize,
    /// 8, 10 or 12.
    pub bit_depth: u32,
    /// `[Y, U, V]` per frame.
    pub frames: Vec<[Vec<u16>; 3]>,
}

/// Reads up to `max_frames` frames of a 4:2:0 Y4M file (8, 10 or 12 bit).
pub fn read_y4m(path: &Path, max_frames: usize) -> Result<Clip, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let nl = data
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("Y4M header has no newline")?;
    let header = std::str::from_utf8(&data[..nl]).map_err(|_| "Y4M header is not text")?;
    let mut it = header.split(' ');
    if it.next() != Some("YUV4MPEG2") {
        return Err(format!("{}: not a Y4M file", path.display()));
    }
    let (mut w, mut h, mut bd) = (0usize, 0usize, 8u32);
    for tok in it {
        match tok.as_bytes().first() {
            Some(b'W') => w = tok[1..].parse().map_err(|_| "bad W")?,
            Some(b'H') => h = tok[1..].parse().map_err(|_| "bad H")?,
            Some(b'C') => {
                if tok.starts_with("C420p10") {
                    bd = 10
                } else if tok.starts_with("C420p12") {
                    bd = 12
                } else if !tok.starts_with("C420") {
                    return Err(format!(
                        "{}: only 4:2:0 is supported ({tok})",
                        path.display()
                    ));
                }
            }
            _ => {}
        }
    }
    if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 {
        return Err(format!("{}: bad frame size {w}x{h}", path.display()));
    }
    let bps = if bd > 8 { 2 } else { 1 };
    let (ny, nc) = (w * h, (w / 2) * (h / 2));
    let mut pos = nl + 1;
    let mut frames = Vec::new();
    while frames.len() < max_frames && pos < data.len() {
        let fl = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated FRAME header")?;
        if !data[pos..].starts_with(b"FRAME") {
            return Err("expected FRAME".into());
        }
        pos += fl + 1;
        let need = (ny + 2 * nc) * bps;
        if pos + need > data.len() {
            break;
        }
        let conv = |off: usize, n: usize| -> Vec<u16> {
            (0..n)
                .map(|i| {
                    if bps == 1 {
                        data[pos + off + i] as u16
                    } else {
                        u16::from_le_bytes([
                            data[pos + 2 * (off + i)],
                            data[pos + 2 * (off + i) + 1],
                        ])
                    }
                })
                .collect()
        };
        frames.push([conv(0, ny), conv(ny, nc), conv(ny + nc, nc)]);
        pos += need;
    }
    if frames.is_empty() {
        return Err(format!("{}: no complete frame", path.display()));
    }
    Ok(Clip {
        width: w,
        height: h,
        bit_depth: bd,
        frames,
    })
}

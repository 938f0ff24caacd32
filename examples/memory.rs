//! Resident memory of a context: after loading, per extra worker (session
//! set) created by concurrent callers, and over many calls.
//!
//! ```text
//! memory --bundle DIR [--workers N] [--calls N]
//! ```
//!
//! Prints the process's RSS (from /proc/self/statm) after ONNX Runtime and
//! the bundle are loaded, after 1..N workers exist (N threads calling at
//! once, held at a barrier so that each needs its own worker), and every
//! tenth of `--calls` predict_block calls on one thread, so that growth over
//! time shows. Issue target: at most 10 MB more per extra worker, flat over
//! 1 M calls.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};

use av1part::{Block, Config, Context, FrameType, Plane, ProviderChoice, Samples, SideInfo};

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    pages * page / (1024.0 * 1024.0)
}

fn p(s: &[u16], stride: usize) -> Plane<'_> {
    Plane {
        samples: Samples::U16(s),
        stride,
    }
}

fn block(y: &[u16]) -> Block<'_> {
    Block {
        y: p(y, 16),
        u: p(&y[..64], 8),
        v: p(&y[64..128], 8),
        prev_y: None,
        bit_depth: 10,
        side: SideInfo {
            base_qindex: 120,
            frame_type: FrameType::Inter,
        },
    }
}

fn run() -> Result<(), String> {
    let (mut bundle, mut workers, mut calls) =
        (PathBuf::from("onnx/default"), 4usize, 1_000_000usize);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--bundle" => bundle = PathBuf::from(val()?),
            "--workers" => workers = val()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--calls" => calls = val()?.parse().map_err(|e| format!("--calls: {e}"))?,
            o => return Err(format!("unknown option {o}")),
        }
    }
    let before = rss_mib();
    let ctx = Arc::new(
        Context::new(&Config {
            model_dir: bundle.clone(),
            provider: ProviderChoice::Cpu,
            max_sessions: workers,
            ..Config::default()
        })
        .map_err(|e| e.to_string())?,
    );
    let y: Vec<u16> = (0..256).map(|i| (i * 37 % 1024) as u16).collect();
    ctx.predict_block(&block(&y)).map_err(|e| e.to_string())?;
    let loaded = rss_mib();
    println!(
        "bundle {}: RSS {before:.1} MiB before, {loaded:.1} MiB with the context and 1 worker",
        bundle.display()
    );
    let mut last = loaded;
    for k in 2..=workers {
        let barrier = Arc::new(Barrier::new(k));
        let handles: Vec<_> = (0..k)
            .map(|_| {
                let (ctx, barrier, y) = (Arc::clone(&ctx), Arc::clone(&barrier), y.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    // long enough that the k calls overlap, so each needs a worker
                    for _ in 0..3000 {
                        let _ = ctx.predict_block(&block(&y));
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        let now = rss_mib();
        println!(
            "  {k} concurrent callers, {} workers created: RSS {now:.1} MiB ({:+.1} MiB since the previous line)",
            ctx.sessions_created(),
            now - last
        );
        last = now;
    }
    let step = (calls / 10).max(1);
    let start = rss_mib();
    for i in 1..=calls {
        ctx.predict_block(&block(&y)).map_err(|e| e.to_string())?;
        if i % step == 0 {
            println!(
                "  {i} calls: RSS {:.1} MiB ({:+.2} MiB since the first call of this loop)",
                rss_mib(),
                rss_mib() - start
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory: {e}");
            ExitCode::from(2)
        }
    }
}

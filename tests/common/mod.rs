//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use av1part::{Block, Config, Context, FrameType, Plane, Samples, SideInfo};
use serde_json::Value;

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed test bundle.
pub fn tiny() -> PathBuf {
    root().join("onnx/test-tiny")
}

/// A CPU config for a bundle; the ORT library is found the way the plugin
/// finds it (config NULL → $AV1PART_ORT_LIB → build-time default → next to
/// the library).
pub fn config(dir: &Path) -> Config {
    Config {
        model_dir: dir.to_path_buf(),
        provider: av1part::ProviderChoice::Cpu,
        ..Config::default()
    }
}

/// A CPU context on the test bundle.
pub fn tiny_ctx() -> Context {
    Context::new(&config(&tiny())).expect("test-tiny loads")
}

/// One golden block, owned.
#[derive(Clone, Debug)]
pub struct GBlock {
    pub bit_depth: u32,
    pub y: Vec<u16>,
    pub u: Vec<u16>,
    pub v: Vec<u16>,
    pub prev_y: Option<Vec<u16>>,
    pub qindex: u8,
    pub intra: bool,
}

impl GBlock {
    /// A borrowed block (16-bit samples).
    pub fn block(&self) -> Block<'_> {
        fn p(s: &[u16], stride: usize) -> Plane<'_> {
            Plane {
                samples: Samples::U16(s),
                stride,
            }
        }
        Block {
            y: p(&self.y, 16),
            u: p(&self.u, 8),
            v: p(&self.v, 8),
            prev_y: self.prev_y.as_deref().map(|s| p(s, 16)),
            bit_depth: self.bit_depth,
            side: SideInfo {
                base_qindex: self.qindex,
                frame_type: if self.intra {
                    FrameType::Key
                } else {
                    FrameType::Inter
                },
            },
        }
    }
}

fn u16s(v: &Value) -> Vec<u16> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u16)
        .collect()
}

/// Expected result for one block.
#[derive(Clone, Debug)]
pub struct GResult {
    pub probabilities: Vec<f64>,
    pub partition: i32,
    /// Per stage name: the raw stage output, or None when it did not run.
    pub stages: Vec<(String, Option<Vec<f64>>)>,
}

fn result(v: &Value) -> GResult {
    GResult {
        probabilities: v["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
        partition: v["partition"].as_i64().unwrap() as i32,
        stages: v["stages"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    s.as_array()
                        .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect()),
                )
            })
            .collect(),
    }
}

/// The golden set: blocks, exact-mode results, and skip runs.
pub struct Golden {
    pub skip_below: f64,
    pub blocks: Vec<GBlock>,
    pub results: Vec<GResult>,
    /// (skip_below, skipped_stage_runs, results)
    pub skip_runs: Vec<(f64, usize, Vec<GResult>)>,
}

pub fn golden(dir: &Path) -> Golden {
    let text = std::fs::read_to_string(dir.join("golden.json")).expect("golden.json");
    let g: Value = serde_json::from_str(&text).expect("golden json");
    let blocks: Vec<&Value> = g["blocks"].as_array().unwrap().iter().collect();
    Golden {
        skip_below: g["skip_below"].as_f64().unwrap(),
        blocks: blocks
            .iter()
            .map(|b| GBlock {
                bit_depth: b["bit_depth"].as_u64().unwrap() as u32,
                y: u16s(&b["y"]),
                u: u16s(&b["u"]),
                v: u16s(&b["v"]),
                prev_y: if b["prev_y"].is_null() {
                    None
                } else {
                    Some(u16s(&b["prev_y"]))
                },
                qindex: b["qindex"].as_u64().unwrap() as u8,
                intra: b["intra"].as_bool().unwrap(),
            })
            .collect(),
        results: blocks.iter().map(|b| result(b)).collect(),
        skip_runs: g
            .get("skip_runs")
            .and_then(|s| s.as_array())
            .map(|runs| {
                runs.iter()
                    .map(|r| {
                        (
                            r["skip_below"].as_f64().unwrap(),
                            r["skipped_stage_runs"].as_u64().unwrap() as usize,
                            r["results"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(result)
                                .collect(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Deterministic pseudo-random samples (xorshift).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn sample(&mut self, bd: u32) -> u16 {
        (self.next() % (1u64 << bd)) as u16
    }
    pub fn vec(&mut self, n: usize, bd: u32) -> Vec<u16> {
        (0..n).map(|_| self.sample(bd)).collect()
    }
}

/// Random blocks of all bit depths, with and without prev, both frame types.
pub fn random_blocks(n: usize, seed: u64) -> Vec<GBlock> {
    let mut r = Rng(seed | 1);
    (0..n)
        .map(|i| {
            let bd = [8, 10, 12][i % 3];
            GBlock {
                bit_depth: bd,
                y: r.vec(256, bd),
                u: r.vec(64, bd),
                v: r.vec(64, bd),
                prev_y: if i % 2 == 0 {
                    Some(r.vec(256, bd))
                } else {
                    None
                },
                qindex: (r.next() % 256) as u8,
                intra: i % 4 < 2,
            }
        })
        .collect()
}

/// Loads `dir` and expects a model-load error whose message contains every
/// needle.
pub fn expect_model_error(dir: &Path, needles: &[&str]) {
    let err = Context::new(&config(dir)).expect_err("broken bundle must not load");
    assert_eq!(err.status(), av1part::Status::ModelLoad, "{err}");
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
    }
    assert!(matches!(err, av1part::Error::ModelLoad { .. }));
}

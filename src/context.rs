//! The context: a loaded bundle, its sessions, and the predict entry points.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::cascade::{self, Decisions, Scratch, CHUNK};
use crate::error::{Error, Result};
use crate::manifest::{Bundle, Target};
use crate::policy::{self, Policy};
use crate::preprocess::{frame_block_count, Block, BlockSource, Frame, TensorLayout};
use crate::runtime::{self, Runtime};
use crate::session::{Ep, Models, Pool, SessionSettings, Worker};
use crate::shared_weights::SharedWeights;
use crate::{Prediction, DEFAULT_DECISION_GRID, MAX_DECISION_GRID, NUM_PARTITIONS};

/// Which execution provider to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderChoice {
    /// CUDA when it can be had, else CPU.
    #[default]
    Auto,
    /// ONNX Runtime's CPU provider only.
    Cpu,
    /// CUDA; falls back to CPU (with a note) unless `require_provider`.
    Cuda,
}

/// ONNX Runtime graph optimisation level (Rust API only). `All` (the
/// default) is the fastest; the others exist to measure how much kernel
/// choice moves the outputs (`examples/decision_paths.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphOptimization {
    /// No graph rewriting: every node runs as exported.
    Disabled,
    /// Constant folding and redundant-node removal.
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, layout changes included.
    #[default]
    All,
}

/// The execution provider actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// CPU.
    Cpu,
    /// CUDA.
    Cuda,
}

/// Context settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The model bundle directory (holding `manifest.json`).
    pub model_dir: PathBuf,
    /// The ONNX Runtime library; `None`: `$AV1PART_ORT_LIB`, else the
    /// build-time default, else `libonnxruntime.so*` next to the av1part
    /// library.
    pub ort_library: Option<PathBuf>,
    /// Execution provider wanted.
    pub provider: ProviderChoice,
    /// Fail with [`Error::ProviderUnavailable`] instead of falling back to
    /// CPU when CUDA was asked for explicitly and cannot be had.
    pub require_provider: bool,
    /// CUDA device ordinal.
    pub cuda_device_id: i32,
    /// ONNX Runtime intra-op threads per session; 0 means 1 (the encoder
    /// usually parallelises across blocks itself).
    pub intra_op_threads: usize,
    /// Most sessions per model kept for concurrent callers; 0 means
    /// `min(available cores, 8)` (CPU) or 4 (CUDA).
    pub max_sessions: usize,
    /// Override of the bundle's `cascade.skip_below` (in `[0, 1]`).
    pub skip_below: Option<f64>,
    /// Threads [`Context::predict_frame`] may use (scoped to the call, each
    /// with its own session); 0 means `max_sessions`, 1 the calling thread
    /// only.
    pub frame_threads: usize,
    /// Decision grid: each stage's probabilities are rounded to multiples of
    /// `1 / decision_grid` before the run/skip decisions and the partition
    /// are taken, so that CPUs with other instruction sets and CUDA decide
    /// alike (except on exact grid ties). A power of two up to
    /// [`MAX_DECISION_GRID`], or 0 for unrounded decisions. Default
    /// [`DEFAULT_DECISION_GRID`]. Returned probabilities are never rounded.
    pub decision_grid: u32,
    /// ONNX Runtime's graph optimisation level; default `All`.
    pub graph_optimization: GraphOptimization,
    /// How `Prediction::partition` is chosen from the decision values;
    /// default [`Policy::Flat`].
    pub policy: Policy,
    /// The encoder's preset (libaom `--cpu-used`, 0..=9), stated once. A
    /// bundle that lists presets runs at the listed one nearest to it (the
    /// lower on a tie); `None` (default): at its first listed preset.
    pub cpu_used: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model_dir: PathBuf::new(),
            ort_library: None,
            provider: ProviderChoice::Auto,
            require_provider: false,
            cuda_device_id: 0,
            intra_op_threads: 0,
            max_sessions: 0,
            skip_below: None,
            frame_threads: 0,
            decision_grid: DEFAULT_DECISION_GRID,
            graph_optimization: GraphOptimization::All,
            policy: Policy::Flat,
            cpu_used: None,
        }
    }
}

/// One class of a stage, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    /// Class name.
    pub name: String,
    /// The partition, for a leaf.
    pub partition: Option<u8>,
    /// The next stage (index), for an inner class.
    pub next: Option<usize>,
}

/// One stage of the loaded bundle, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct StageInfo {
    /// Stage name.
    pub name: String,
    /// Classes in output order.
    pub classes: Vec<ClassInfo>,
    /// Class priors.
    pub prior: Vec<f64>,
}

/// A loaded bundle ready to predict. `Send + Sync`: share one between all
/// threads; calls run concurrently up to `max_sessions`, and every call
/// gives the same result whatever the other threads do.
pub struct Context {
    runtime: Arc<Runtime>,
    bundle: Arc<Bundle>,
    layout: TensorLayout,
    pool: Pool,
    provider: Provider,
    provider_note: String,
    skip_below: f64,
    decision_grid: u32,
    policy: Policy,
    preset: Option<u32>,
    max_sessions: usize,
    frame_threads: usize,
    stages: Vec<StageInfo>,
    shared_weights: usize,
}

/// Hands the heap memory freed by a session load back to the system.
///
/// Loading a session leaves ONNX Runtime's parse of the model (about the
/// size of the weights) freed but resident in the calling thread's malloc
/// arena; a worker created by another encoder thread lands in another arena,
/// so without this each extra worker would keep that much resident. Called
/// only when a worker is created, never on the hot path.
fn release_load_garbage() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("bundle", &self.bundle.name)
            .field("provider", &self.provider)
            .field("skip_below", &self.skip_below)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Loads ONNX Runtime (once per process), the bundle (manifest, hashes)
    /// and its models (I/O checked against the manifest).
    pub fn new(cfg: &Config) -> Result<Context> {
        if cfg.model_dir.as_os_str().is_empty() {
            return Err(Error::invalid("model_dir is empty"));
        }
        let skip_override = match cfg.skip_below {
            Some(s) if !(s.is_finite() && (0.0..=1.0).contains(&s)) => {
                return Err(Error::invalid(format!("skip_below {s} is not in [0, 1]")))
            }
            other => other,
        };
        let g = cfg.decision_grid;
        if g != 0 && !(g.is_power_of_two() && (2..=MAX_DECISION_GRID).contains(&g)) {
            return Err(Error::invalid(format!(
                "decision_grid {g} is not 0 or a power of two in 2..={MAX_DECISION_GRID}"
            )));
        }
        if cfg.intra_op_threads > 1024 {
            return Err(Error::invalid(format!(
                "intra_op_threads {} is unreasonable",
                cfg.intra_op_threads
            )));
        }
        if let Some(c) = cfg.cpu_used.filter(|&c| c > 9) {
            return Err(Error::invalid(format!("cpu_used {c} is not in 0..=9")));
        }
        let bundle = Arc::new(Bundle::load(&cfg.model_dir)?);
        let runtime = runtime::get(cfg.ort_library.as_deref())?;
        let intra_threads = cfg.intra_op_threads.max(1);
        let prepacked = ort::session::builder::PrepackedWeights::new();
        // A context that can only ever have one worker has nothing to share
        // its weights with: its session keeps its own copy, as before.
        let weights = Arc::new(match cfg.max_sessions {
            1 => SharedWeights::default(),
            _ => SharedWeights::load(&bundle),
        });
        // Every session of the context: same threads, optimisation and
        // pre-packed weight container; only the provider varies.
        let settings_for = |ep| SessionSettings {
            ep,
            intra_threads,
            optimization: cfg.graph_optimization,
            prepacked: prepacked.clone(),
            weights: Arc::clone(&weights),
        };

        let mut provider_note = String::new();
        let mut chosen: Option<(Ep, Models)> = None;
        if matches!(cfg.provider, ProviderChoice::Auto | ProviderChoice::Cuda) {
            let s = settings_for(Ep::Cuda(cfg.cuda_device_id));
            match Models::load(&runtime, &bundle, &s) {
                Ok(m) => chosen = Some((s.ep, m)),
                Err(Error::ProviderUnavailable(msg)) => {
                    if cfg.require_provider && cfg.provider == ProviderChoice::Cuda {
                        return Err(Error::ProviderUnavailable(format!("CUDA: {msg}")));
                    }
                    tracing::info!("av1part: CUDA unavailable, using CPU: {msg}");
                    provider_note = format!("CUDA unavailable, using CPU: {msg}");
                }
                Err(e) => return Err(e),
            }
        }
        let (ep, first) = match chosen {
            Some(c) => c,
            None => {
                let s = settings_for(Ep::Cpu);
                (Ep::Cpu, Models::load(&runtime, &bundle, &s)?)
            }
        };
        release_load_garbage();
        let provider = match ep {
            Ep::Cpu => Provider::Cpu,
            Ep::Cuda(_) => Provider::Cuda,
        };
        let max_sessions = match cfg.max_sessions {
            0 => match provider {
                Provider::Cpu => std::thread::available_parallelism()
                    .map_or(4, |n| n.get())
                    .min(8),
                Provider::Cuda => 4,
            },
            n => n,
        };
        let settings = settings_for(ep);
        let (rt2, b2) = (Arc::clone(&runtime), Arc::clone(&bundle));
        let factory = Box::new(move || -> Result<Worker> {
            let models = Models::load(&rt2, &b2, &settings);
            release_load_garbage();
            Ok(Worker {
                models: models?,
                scratch: Scratch::default(),
            })
        });
        let pool = Pool::new(
            Worker {
                models: first,
                scratch: Scratch::default(),
            },
            max_sessions,
            factory,
        );

        let stages = bundle
            .stages
            .iter()
            .map(|s| StageInfo {
                name: s.name.clone(),
                classes: s
                    .classes
                    .iter()
                    .map(|c| ClassInfo {
                        name: c.name.clone(),
                        partition: match c.target {
                            Target::Leaf(l) => Some(l),
                            Target::Stage(_) => None,
                        },
                        next: match c.target {
                            Target::Leaf(_) => None,
                            Target::Stage(t) => Some(t),
                        },
                    })
                    .collect(),
                prior: s.prior.clone(),
            })
            .collect();
        tracing::info!(bundle = %bundle.name, ?provider, "av1part context ready");
        let preset = bundle.preset_for(cfg.cpu_used);
        if let (Some(want), Some(got)) = (cfg.cpu_used, preset) {
            if want != got {
                tracing::info!(
                    want,
                    got,
                    "bundle not trained for this cpu_used: nearest preset used"
                );
            }
        }
        Ok(Context {
            layout: TensorLayout::new(&bundle, preset),
            preset,
            skip_below: skip_override.unwrap_or(bundle.skip_below),
            decision_grid: cfg.decision_grid,
            policy: cfg.policy,
            runtime,
            bundle,
            pool,
            provider,
            provider_note,
            max_sessions,
            frame_threads: if cfg.frame_threads == 0 {
                max_sessions
            } else {
                cfg.frame_threads
            },
            stages,
            shared_weights: weights.count(),
        })
    }

    /// Predicts one block.
    pub fn predict_block(&self, block: &Block<'_>) -> Result<Prediction> {
        let mut out = [Prediction::default()];
        self.predict_blocks(std::slice::from_ref(block), &mut out)?;
        Ok(out[0])
    }

    /// Predicts `blocks.len()` blocks into `out` (same length), batched.
    /// On error `out` is left unspecified.
    pub fn predict_blocks(&self, blocks: &[Block<'_>], out: &mut [Prediction]) -> Result<()> {
        if blocks.is_empty() {
            return Err(Error::invalid("no blocks (n = 0)"));
        }
        if out.len() != blocks.len() {
            return Err(Error::invalid(format!(
                "{} outputs for {} blocks",
                out.len(),
                blocks.len()
            )));
        }
        for (i, b) in blocks.iter().enumerate() {
            b.validate().map_err(|e| e.at_block(i))?;
        }
        let mut worker = self.pool.acquire()?;
        let mut sources = Vec::with_capacity(blocks.len().min(CHUNK));
        for (ci, (bc, oc)) in blocks.chunks(CHUNK).zip(out.chunks_mut(CHUNK)).enumerate() {
            sources.clear();
            sources.extend(bc.iter().map(BlockSource::from_block));
            self.run(ci * CHUNK, &mut worker, &sources, oc)?;
        }
        Ok(())
    }

    /// Predicts every 16×16 block of a frame, raster order, into `out`,
    /// which must hold at least [`frame_block_count`] predictions. Blocks
    /// past the right/bottom edge replicate the last column/row and are
    /// flagged [`crate::PREDICTION_FLAG_PARTIAL`]. Chunks of blocks run on
    /// up to `frame_threads` threads. Returns the count.
    pub fn predict_frame(&self, frame: &Frame<'_>, out: &mut [Prediction]) -> Result<usize> {
        frame.validate()?;
        let count = frame_block_count(frame.width, frame.height);
        if out.len() < count {
            return Err(Error::invalid(format!(
                "output holds {} predictions, a {}×{} frame needs {count}",
                out.len(),
                frame.width,
                frame.height
            )));
        }
        let mut chunks: Vec<(usize, &mut [Prediction])> = out[..count]
            .chunks_mut(CHUNK)
            .enumerate()
            .map(|(i, c)| (i * CHUNK, c))
            .collect();
        let threads = self
            .frame_threads
            .min(self.max_sessions)
            .min(chunks.len())
            .max(1);
        if threads == 1 {
            let mut worker = self.pool.acquire()?;
            let mut sources = Vec::with_capacity(count.min(CHUNK));
            for (start, oc) in chunks.iter_mut() {
                sources.clear();
                sources
                    .extend((*start..*start + oc.len()).map(|i| BlockSource::from_frame(frame, i)));
                self.run(*start, &mut worker, &sources, oc)?;
            }
            return Ok(count);
        }
        // Chunks are handed out to scoped threads, each with its own worker.
        // A chunk's result does not depend on which thread runs it.
        let queue = Mutex::new(chunks.into_iter());
        let failure: Mutex<Option<(usize, Error)>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        let record = |start: usize, e: Error| {
            stop.store(true, Ordering::Relaxed);
            if let Ok(mut f) = failure.lock() {
                if f.as_ref().is_none_or(|(s, _)| start < *s) {
                    *f = Some((start, e));
                }
            }
        };
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut worker = match self.pool.acquire() {
                        Ok(w) => w,
                        Err(e) => return record(0, e),
                    };
                    let mut sources = Vec::with_capacity(CHUNK);
                    while !stop.load(Ordering::Relaxed) {
                        let next = match queue.lock() {
                            Ok(mut q) => q.next(),
                            Err(_) => {
                                return record(0, Error::Internal("frame queue poisoned".into()))
                            }
                        };
                        let Some((start, oc)) = next else { break };
                        sources.clear();
                        sources.extend(
                            (start..start + oc.len()).map(|i| BlockSource::from_frame(frame, i)),
                        );
                        if let Err(e) = self.run(start, &mut worker, &sources, oc) {
                            record(start, e);
                        }
                    }
                });
            }
        });
        match failure.into_inner() {
            Ok(None) => Ok(count),
            Ok(Some((_, e))) => Err(e),
            Err(_) => Err(Error::Internal("frame failure lock poisoned".into())),
        }
    }

    fn run(
        &self,
        first: usize,
        worker: &mut Worker,
        sources: &[BlockSource<'_>],
        out: &mut [Prediction],
    ) -> Result<()> {
        cascade::run_chunk(
            first,
            worker,
            &self.bundle,
            &self.layout,
            Decisions {
                skip_below: self.skip_below,
                grid: self.decision_grid,
            },
            sources,
            out,
        )?;
        if self.policy != Policy::Flat {
            for p in out.iter_mut() {
                p.partition = i32::from(policy::partition(
                    &self.bundle,
                    self.decision_grid,
                    self.policy,
                    p,
                ));
            }
        }
        Ok(())
    }

    /// The decision policy in effect.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The prune set of a prediction this context made: bit `k` set for
    /// each partition type `k` to search, the fewest types (by decreasing
    /// grid-rounded decision value) whose values reach `target_recall` in
    /// `(0, 1]`; the most probable type is always in it.
    pub fn prune_set(&self, pred: &Prediction, target_recall: f64) -> Result<u32> {
        if !(target_recall > 0.0 && target_recall <= 1.0) {
            return Err(Error::invalid(format!(
                "target_recall {target_recall} is not in (0, 1]"
            )));
        }
        self.check_prediction(pred)?;
        Ok(policy::prune_set(
            &self.bundle,
            self.decision_grid,
            pred,
            target_recall,
        ))
    }

    /// A prediction handed back must be one of this bundle's.
    fn check_prediction(&self, p: &Prediction) -> Result<()> {
        let ns = self.bundle.stages.len();
        let valid_bits = if ns >= 32 { u32::MAX } else { (1u32 << ns) - 1 };
        if p.num_stages as usize != ns
            || !(0..NUM_PARTITIONS as i32).contains(&p.partition)
            || p.stages_run & !valid_bits != 0
            || p.stages_run & (1 << self.bundle.root) == 0
        {
            return Err(Error::invalid(
                "the prediction is not one of this context's (stage count, partition or stages_run)",
            ));
        }
        for (s, st) in self.bundle.stages.iter().enumerate() {
            if p.stages_run & (1 << s) == 0 {
                continue;
            }
            let row = &p.stage_probabilities[s][..st.classes.len()];
            if row
                .iter()
                .any(|v| !(v.is_finite() && (0.0..=1.0).contains(v)))
            {
                return Err(Error::invalid(format!(
                    "the prediction's stage {s} probabilities are not probabilities"
                )));
            }
        }
        Ok(())
    }

    /// The execution provider in use.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Why CUDA was not used when it was asked for (empty otherwise).
    pub fn provider_note(&self) -> &str {
        &self.provider_note
    }

    /// The bundle's name.
    pub fn bundle_name(&self) -> &str {
        &self.bundle.name
    }

    /// The bundle's description.
    pub fn bundle_description(&self) -> &str {
        &self.bundle.description
    }

    /// The bundle directory.
    pub fn bundle_dir(&self) -> &Path {
        &self.bundle.dir
    }

    /// The stages, manifest order.
    pub fn stages(&self) -> &[StageInfo] {
        &self.stages
    }

    /// Index of the root stage.
    pub fn root_stage(&self) -> usize {
        self.bundle.root
    }

    /// The `skip_below` in effect.
    pub fn skip_below(&self) -> f64 {
        self.skip_below
    }

    /// The decision grid in effect (0: unrounded decisions).
    pub fn decision_grid(&self) -> u32 {
        self.decision_grid
    }

    /// The encoder preset the bundle runs at (see [`Config::cpu_used`]);
    /// `None` for a bundle that lists no presets.
    pub fn preset(&self) -> Option<u32> {
        self.preset
    }

    /// Whether predictions depend on the previous source frame.
    pub fn uses_prev_frame(&self) -> bool {
        self.bundle.uses_prev()
    }

    /// ONNX Runtime's version string.
    pub fn ort_version(&self) -> &str {
        &self.runtime.version
    }

    /// Path of the ONNX Runtime library in use.
    pub fn ort_library(&self) -> &Path {
        &self.runtime.path
    }

    /// Most sessions per model this context will create.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// Sessions per model created so far.
    pub fn sessions_created(&self) -> usize {
        self.pool.created()
    }

    /// Weight tensors held once for all of the context's sessions (0 when
    /// `max_sessions` is 1: the one session keeps its own).
    pub fn shared_weight_tensors(&self) -> usize {
        self.shared_weights
    }
}

//! ONNX Runtime sessions for a bundle, checked against the manifest, and the
//! pool that lets many threads share one context.
//!
//! `ort`'s `Session::run` takes `&mut self`, so a session serves one call at
//! a time. A [`Pool`] holds up to `max` [`Worker`]s (one session per model
//! file plus scratch buffers); a call checks one out, runs the cascade and
//! puts it back. Workers are created on demand, so a single-threaded caller
//! pays for one.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex};

use ort::ep;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::cascade::Scratch;
use crate::context::GraphOptimization;
use crate::error::{Error, Result};
use crate::manifest::{Bundle, ModelFile, Source, TensorDecl};
use crate::runtime::Runtime;
use crate::shared_weights::SharedWeights;

/// The execution provider a session is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ep {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// CUDA on this device id.
    Cuda(i32),
}

/// Options common to all sessions of a context.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    /// Provider.
    pub ep: Ep,
    /// Intra-op threads per session (>= 1).
    pub intra_threads: usize,
    /// Graph optimisation level.
    pub optimization: GraphOptimization,
    /// One container per context: ONNX Runtime keeps the pre-packed (GEMM
    /// layout) copy of each weight once, shared by every worker's session.
    pub prepacked: PrepackedWeights,
    /// One copy per context of every model's initializers, handed to each
    /// session instead of the session deserialising its own.
    pub weights: Arc<SharedWeights>,
}

/// Builds one session from the model's verified bytes, its external data
/// handed over as in-memory files, so ONNX Runtime reads nothing from disk.
/// Errors are returned as text; the caller decides whether they are a
/// model-load or a provider problem.
fn build_session(
    rt: &Runtime,
    bundle: &Bundle,
    file: &str,
    model: &ModelFile,
    s: &SessionSettings,
) -> std::result::Result<Session, String> {
    let bytes = model
        .bytes
        .as_ref()
        .ok_or_else(|| "the model file was not read".to_string())?;
    let mut b = Session::builder(&rt.env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(match s.optimization {
            GraphOptimization::Disabled => GraphOptimizationLevel::Disable,
            GraphOptimization::Basic => GraphOptimizationLevel::Level1,
            GraphOptimization::Extended => GraphOptimizationLevel::Level2,
            GraphOptimization::All => GraphOptimizationLevel::All,
        })
        .map_err(|e| e.to_string())?
        .with_intra_threads(s.intra_threads)
        .map_err(|e| e.to_string())?
        .with_inter_threads(1)
        .map_err(|e| e.to_string())?
        .with_intra_op_spinning(false)
        .map_err(|e| e.to_string())?
        .with_deterministic_compute(true)
        .map_err(|e| e.to_string())?
        .with_prepacked_weights(&s.prepacked)
        .map_err(|e| e.to_string())?;
    if let Ep::Cuda(device) = s.ep {
        let cuda = ep::CUDA::default()
            .with_device_id(device)
            .with_tf32(false)
            .with_conv_algorithm_search(ep::cuda::ConvAlgorithmSearch::Heuristic)
            .build()
            .error_on_failure();
        b = b
            .with_execution_providers([cuda])
            .map_err(|e| e.to_string())?;
    }
    for &i in &model.data {
        let (name, blob) = bundle
            .data
            .get(i)
            .ok_or_else(|| format!("external data #{i} was not read"))?;
        b = b
            .with_external_initializer_file_in_memory(name, blob.0.clone())
            .map_err(|e| format!("external data `{name}`: {e}"))?;
    }
    for (name, value) in s.weights.for_file(file) {
        b = b
            .with_initializer(name, Arc::clone(value))
            .map_err(|e| format!("initializer `{name}`: {e}"))?;
    }
    b.commit_from_memory(&bytes.0).map_err(|e| e.to_string())
}

/// [`build_session`] for the bundle file `file`: a failure is a model-load
/// error on the CPU, and an unavailable provider with CUDA (so the caller
/// can fall back to the CPU).
fn open_session(
    rt: &Runtime,
    bundle: &Bundle,
    file: &str,
    model: &ModelFile,
    s: &SessionSettings,
) -> Result<Session> {
    build_session(rt, bundle, file, model, s).map_err(|e| match s.ep {
        Ep::Cpu => Error::model(file, "(onnx)", e),
        Ep::Cuda(_) => Error::ProviderUnavailable(format!("{file}: {e}")),
    })
}

/// Checks a session's declared inputs and outputs against the manifest and
/// returns, for each session input in the session's order, its source.
/// `outputs` are `(manifest field, declaration)`; with `only_these`, any
/// other output of the ONNX file is an error (a fused graph must match its
/// manifest exactly), else extra outputs are ignored.
fn check_io(
    file: &str,
    field: &str,
    session: &Session,
    inputs: &[(TensorDecl, Source)],
    outputs: &[(String, &TensorDecl)],
    only_these: bool,
) -> Result<Vec<Source>> {
    fn check_tensor(file: &str, field: &str, decl: &TensorDecl, ty: &ValueType) -> Result<()> {
        let (elem, shape) = match ty {
            ValueType::Tensor { ty, shape, .. } => (*ty, shape),
            other => {
                return Err(Error::model(
                    file,
                    field,
                    format!("`{}` is not a tensor but {other:?}", decl.name),
                ))
            }
        };
        if elem != TensorElementType::Float32 {
            return Err(Error::model(
                file,
                field,
                format!("`{}` is {elem:?}, not float32", decl.name),
            ));
        }
        let dims: &[i64] = shape;
        if dims.len() != decl.shape.len() || dims.iter().zip(&decl.shape).any(|(a, b)| a != b) {
            return Err(Error::model(
                file,
                field,
                format!(
                    "`{}` has shape {dims:?} in the ONNX file, the manifest says {:?}",
                    decl.name, decl.shape
                ),
            ));
        }
        Ok(())
    }
    let sin = session.inputs();
    if sin.len() != inputs.len() {
        let names: Vec<&str> = sin.iter().map(|o| o.name()).collect();
        return Err(Error::model(
            file,
            format!("{field}.inputs"),
            format!(
                "the ONNX file has {} inputs {names:?}, the manifest lists {}",
                sin.len(),
                inputs.len()
            ),
        ));
    }
    let mut order = Vec::new();
    for outlet in sin {
        let (decl, src) = inputs
            .iter()
            .find(|(d, _)| d.name == outlet.name())
            .ok_or_else(|| {
                Error::model(
                    file,
                    format!("{field}.inputs"),
                    format!("ONNX input `{}` is not in the manifest", outlet.name()),
                )
            })?;
        check_tensor(
            file,
            &format!("{field}.inputs.{}", decl.name),
            decl,
            outlet.dtype(),
        )?;
        order.push(*src);
    }
    let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    for (ofield, output) in outputs {
        let out_idx = names
            .iter()
            .position(|n| *n == output.name)
            .ok_or_else(|| {
                Error::model(
                    file,
                    format!("{ofield}.name"),
                    format!(
                        "the ONNX file has no output `{}` (outputs: {names:?})",
                        output.name
                    ),
                )
            })?;
        check_tensor(file, ofield, output, session.outputs()[out_idx].dtype())?;
    }
    if only_these {
        if let Some(extra) = names
            .iter()
            .find(|n| !outputs.iter().any(|(_, d)| d.name == **n))
        {
            return Err(Error::model(
                file,
                format!("{field}.outputs"),
                format!("ONNX output `{extra}` is not a stage output of the manifest"),
            ));
        }
    }
    Ok(order)
}

/// A loaded model: its session, its inputs' sources in session order, and
/// the name of the output used.
pub(crate) struct Model {
    /// The session.
    pub session: Session,
    /// Sources of the session's inputs, in session input order.
    pub sources: Vec<Source>,
    /// Name of the output read.
    pub output: String,
}

/// A fused bundle's one session (schema 2).
pub(crate) struct FusedModel {
    /// The session.
    pub session: Session,
    /// Sources of the session's inputs, in session input order.
    pub sources: Vec<Source>,
    /// Each stage's output name, manifest order.
    pub outputs: Vec<String>,
}

/// One session per model file of a bundle.
pub(crate) struct Models {
    /// The fused graph (schema 2); then `trunk` is None and `stages` empty.
    pub fused: Option<FusedModel>,
    /// The trunk, if the bundle has one.
    pub trunk: Option<Model>,
    /// The stages, in manifest order.
    pub stages: Vec<Model>,
}

#[allow(clippy::too_many_arguments)]
fn load_model(
    rt: &Runtime,
    bundle: &Bundle,
    file: &str,
    model: &ModelFile,
    field: &str,
    inputs: &[(TensorDecl, Source)],
    output: &TensorDecl,
    s: &SessionSettings,
) -> Result<Model> {
    let session = open_session(rt, bundle, file, model, s)?;
    let sources = check_io(
        file,
        field,
        &session,
        inputs,
        &[(format!("{field}.output"), output)],
        false,
    )?;
    Ok(Model {
        session,
        sources,
        output: output.name.clone(),
    })
}

impl Models {
    /// Loads every model of the bundle. A CUDA failure is reported as
    /// [`Error::ProviderUnavailable`], a bad model as [`Error::ModelLoad`].
    pub(crate) fn load(rt: &Runtime, bundle: &Bundle, s: &SessionSettings) -> Result<Models> {
        if let Some(g) = &bundle.graph {
            let session = open_session(rt, bundle, &g.file, &g.model, s)?;
            let outputs: Vec<(String, &TensorDecl)> = bundle
                .stages
                .iter()
                .enumerate()
                .map(|(i, st)| (format!("stages[{i}].output"), &st.output))
                .collect();
            let sources = check_io(&g.file, "graph", &session, &g.inputs, &outputs, true)?;
            return Ok(Models {
                fused: Some(FusedModel {
                    session,
                    sources,
                    outputs: bundle
                        .stages
                        .iter()
                        .map(|st| st.output.name.clone())
                        .collect(),
                }),
                trunk: None,
                stages: Vec::new(),
            });
        }
        let trunk = match &bundle.trunk {
            None => None,
            Some(t) => Some(load_model(
                rt,
                bundle,
                &t.file,
                &t.model,
                "trunk",
                &[(t.input.clone(), Source::Block)],
                &t.output,
                s,
            )?),
        };
        let mut stages = Vec::with_capacity(bundle.stages.len());
        for (i, st) in bundle.stages.iter().enumerate() {
            stages.push(load_model(
                rt,
                bundle,
                &st.file,
                &st.model,
                &format!("stages[{i}]"),
                &st.inputs,
                &st.output,
                s,
            )?);
        }
        Ok(Models {
            fused: None,
            trunk,
            stages,
        })
    }
}

/// What one call needs exclusively: sessions and scratch buffers.
pub(crate) struct Worker {
    /// Sessions.
    pub models: Models,
    /// Reused buffers.
    pub scratch: Scratch,
}

type Factory = Box<dyn Fn() -> Result<Worker> + Send + Sync>;

struct PoolState {
    free: Vec<Worker>,
    created: usize,
    max: usize,
}

/// A bounded pool of workers, grown on demand.
pub(crate) struct Pool {
    state: Mutex<PoolState>,
    available: Condvar,
    factory: Factory,
}

/// A checked-out worker; returns to the pool on drop (also on unwind).
pub(crate) struct WorkerGuard<'a> {
    pool: &'a Pool,
    worker: Option<Worker>,
}

impl Deref for WorkerGuard<'_> {
    type Target = Worker;
    fn deref(&self) -> &Worker {
        // The Option is only None after drop.
        match &self.worker {
            Some(w) => w,
            None => unreachable!("worker guard used after release"),
        }
    }
}

impl DerefMut for WorkerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Worker {
        match &mut self.worker {
            Some(w) => w,
            None => unreachable!("worker guard used after release"),
        }
    }
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            let mut st = match self.pool.state.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            st.free.push(w);
            drop(st);
            self.pool.available.notify_one();
        }
    }
}

impl Pool {
    /// A pool holding `first` and allowed to grow to `max` workers with
    /// `factory`.
    pub(crate) fn new(first: Worker, max: usize, factory: Factory) -> Pool {
        Pool {
            state: Mutex::new(PoolState {
                free: vec![first],
                created: 1,
                max: max.max(1),
            }),
            available: Condvar::new(),
            factory,
        }
    }

    /// Number of workers created so far.
    pub(crate) fn created(&self) -> usize {
        self.state.lock().map(|s| s.created).unwrap_or(0)
    }

    /// Checks out a worker: a free one, else a new one while below `max`,
    /// else waits for one to come back.
    pub(crate) fn acquire(&self) -> Result<WorkerGuard<'_>> {
        let poisoned = |_| Error::Internal("worker pool lock poisoned".into());
        let mut st = self.state.lock().map_err(poisoned)?;
        loop {
            if let Some(w) = st.free.pop() {
                return Ok(WorkerGuard {
                    pool: self,
                    worker: Some(w),
                });
            }
            if st.created < st.max {
                st.created += 1;
                drop(st);
                match (self.factory)() {
                    Ok(w) => {
                        tracing::debug!("av1part: created an extra inference worker");
                        return Ok(WorkerGuard {
                            pool: self,
                            worker: Some(w),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(
                            "av1part: could not create an extra worker ({e}); not growing further"
                        );
                        st = self.state.lock().map_err(poisoned)?;
                        st.created -= 1;
                        st.max = st.created;
                        continue;
                    }
                }
            }
            st = self.available.wait(st).map_err(poisoned)?;
        }
    }
}

//! Model bundle manifest (`manifest.json`): parsing and validation.
//!
//! The format is fixed by `docs/CONTRACTS.md` ("Model bundle"). Everything
//! that can be checked without ONNX Runtime is checked here: the manifest,
//! the file rules (`bundle_files.rs`), the SHA-256 of every file, and that
//! every external-data file an ONNX file references is listed. The bytes
//! read here are the ones ONNX Runtime loads. The ONNX inputs and outputs
//! are checked against the manifest in `session.rs` once the models are
//! loaded.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::bundle_files::{BundleDir, DATA_MAX_BYTES, MANIFEST_MAX_BYTES, MODEL_MAX_BYTES};
use crate::error::{Error, Result};
use crate::onnx_refs;
use crate::{MAX_CLASSES, MAX_STAGES, NUM_PARTITIONS, PARTITION_NAMES};

/// Name of the manifest file inside a bundle directory.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
/// The only `schema` value understood.
const SCHEMA: &str = "av1part-bundle";
/// `schema_version` of bundles with a trunk and one ONNX file per stage.
const SCHEMA_VERSION_FILES: u64 = 1;
/// `schema_version` of fused bundles: one graph with every stage's output.
const SCHEMA_VERSION_FUSED: u64 = 2;
/// Block size (luma samples per side) of the tensor contract.
pub(crate) const BLOCK: usize = 16;

// ---------------------------------------------------------------------------
// Raw JSON shape (serde).

#[derive(Deserialize)]
struct RawManifest {
    schema: String,
    schema_version: u64,
    name: String,
    #[serde(default)]
    description: String,
    input: RawInput,
    #[serde(default)]
    trunk: Option<RawModel>,
    #[serde(default)]
    graph: Option<RawGraph>,
    stages: Vec<RawStage>,
    #[serde(default)]
    data_files: Vec<RawDataFile>,
    cascade: RawCascade,
}

#[derive(Deserialize)]
struct RawInput {
    block_size: u64,
    chroma: String,
    channels: Vec<String>,
    chroma_upsample: String,
    normalization: RawNormalization,
    #[serde(default)]
    side_features: Vec<String>,
    #[serde(default)]
    prev_y_when_absent: Option<String>,
    #[serde(default)]
    presets: Option<Vec<i64>>,
    #[serde(default)]
    layout: Option<String>,
}

#[derive(Deserialize)]
struct RawNormalization {
    divide_by: String,
    mean: Vec<f32>,
    std: Vec<f32>,
}

#[derive(Deserialize)]
struct RawIo {
    name: String,
    shape: Vec<i64>,
}

#[derive(Deserialize)]
struct RawModel {
    file: String,
    sha256: String,
    input: RawIo,
    output: RawIo,
}

#[derive(Deserialize)]
struct RawGraph {
    file: String,
    sha256: String,
    inputs: Vec<RawStageInput>,
}

#[derive(Deserialize)]
struct RawStageInput {
    name: String,
    source: String,
    shape: Vec<i64>,
}

#[derive(Deserialize)]
struct RawClass {
    name: String,
    #[serde(default)]
    partition: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct RawStage {
    name: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    inputs: Option<Vec<RawStageInput>>,
    output: RawIo,
    classes: Vec<RawClass>,
    prior: Vec<f64>,
}

#[derive(Deserialize)]
struct RawDataFile {
    file: String,
    sha256: String,
}

#[derive(Deserialize)]
struct RawCascade {
    root: String,
    skip_below: f64,
}

// ---------------------------------------------------------------------------
// Validated bundle.

/// One channel of the block tensor `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Luma.
    Y,
    /// Cb, nearest-neighbour upsampled.
    U,
    /// Cr, nearest-neighbour upsampled.
    V,
    /// Co-located luma of the previous source frame (current luma if absent).
    PrevY,
}

/// The order of the block tensor `x`'s values (`input.layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputLayout {
    /// `[N, C, 16, 16]` (the default).
    Planar,
    /// `[N, 16, C·16]`: cell by cell (4×4 cells of 4×4 pixels, raster
    /// order), then channel, then the cell's samples in raster order.
    Cells,
}

impl InputLayout {
    /// The block tensor's shape for `channels` channels, batch `-1`.
    pub fn x_shape(self, channels: usize) -> Vec<i64> {
        let (c, b) = (channels as i64, BLOCK as i64);
        match self {
            InputLayout::Planar => vec![-1, c, b, b],
            InputLayout::Cells => vec![-1, 16, c * 16],
        }
    }
}

/// One side feature of the `side` tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideFeature {
    /// `base_qindex / 255`.
    Qindex,
    /// 1 for key / intra-only frames.
    Intra,
    /// 1 when a previous source block was given.
    HasPrev,
    /// The encoder preset in use (`cpu_used / 10`), one per context: the
    /// listed preset nearest to `Config::cpu_used` (see `Bundle::presets`).
    CpuUsed,
    /// 28 statistics of the block's samples (`block_stats.rs`).
    BlockStats,
}

impl SideFeature {
    /// Values the feature takes in the side tensor.
    pub fn width(self) -> usize {
        match self {
            SideFeature::BlockStats => crate::block_stats::WIDTH,
            _ => 1,
        }
    }
}

/// Where a stage input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The block tensor `x`.
    Block = 0,
    /// The trunk output.
    Trunk = 1,
    /// The side tensor.
    Side = 2,
}

/// A tensor declaration: name and shape (`-1` = batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDecl {
    /// ONNX input/output name.
    pub name: String,
    /// Shape, first dim `-1`.
    pub shape: Vec<i64>,
}

impl TensorDecl {
    /// Number of float32 values per batch row (product of the non-batch dims).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).map(|&d| d as usize).product()
    }
}

/// The verified bytes of a bundle file (Debug shows the length only).
#[derive(Clone)]
pub struct Blob(pub Arc<[u8]>);

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

/// An ONNX file of the bundle, as read and checked.
#[derive(Debug, Clone, Default)]
pub struct ModelFile {
    /// Its bytes (hash-checked).
    pub bytes: Option<Blob>,
    /// Indices into [`Bundle::data`] of the external-data files it uses.
    pub data: Vec<usize>,
}

/// The trunk model.
#[derive(Debug, Clone)]
pub struct TrunkSpec {
    /// File name inside the bundle.
    pub file: String,
    /// SHA-256 the manifest gives.
    pub sha256: String,
    /// The file's contents and external data.
    pub model: ModelFile,
    /// Its input (`x`).
    pub input: TensorDecl,
    /// Its output (features).
    pub output: TensorDecl,
}

/// The one graph of a fused bundle (schema 2).
#[derive(Debug, Clone)]
pub struct GraphSpec {
    /// File name inside the bundle.
    pub file: String,
    /// SHA-256 the manifest gives.
    pub sha256: String,
    /// The file's contents and external data.
    pub model: ModelFile,
    /// Inputs (sources `block` and `side`), in manifest order.
    pub inputs: Vec<(TensorDecl, Source)>,
}

/// Where a class leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A leaf: this partition type (0..9).
    Leaf(u8),
    /// Another stage (index into `Bundle::stages`).
    Stage(usize),
}

/// One class of a stage.
#[derive(Debug, Clone)]
pub struct ClassSpec {
    /// Class name.
    pub name: String,
    /// Leaf partition or next stage.
    pub target: Target,
}

/// One stage of the cascade.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Stage name.
    pub name: String,
    /// File name inside the bundle (empty in a fused bundle).
    pub file: String,
    /// SHA-256 the manifest gives.
    pub sha256: String,
    /// The file's contents and external data.
    pub model: ModelFile,
    /// Inputs, in manifest order (empty in a fused bundle: the graph's).
    pub inputs: Vec<(TensorDecl, Source)>,
    /// The probabilities output (in a fused bundle, an output of the graph).
    pub output: TensorDecl,
    /// Classes, in output order.
    pub classes: Vec<ClassSpec>,
    /// Training-set class frequencies.
    pub prior: Vec<f64>,
    /// Partition distribution of this stage's subtree when it is skipped:
    /// the priors multiplied down the tree (sums to 1).
    pub leaf_dist: [f64; NUM_PARTITIONS],
}

/// A validated model bundle (files hashed, manifest consistent).
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Bundle directory.
    pub dir: PathBuf,
    /// Bundle name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Channels of `x`, in order.
    pub channels: Vec<Channel>,
    /// Per-channel normalisation mean.
    pub mean: Vec<f32>,
    /// Per-channel normalisation std.
    pub std: Vec<f32>,
    /// Side features, in order.
    pub side_features: Vec<SideFeature>,
    /// Order of the block tensor's values.
    pub layout: InputLayout,
    /// The encoder presets (libaom `--cpu-used`) the bundle was trained
    /// for, ascending; required with the `cpu_used` side feature, optional
    /// (informative) otherwise, empty when not stated.
    pub presets: Vec<u32>,
    /// Optional trunk (schema 1).
    pub trunk: Option<TrunkSpec>,
    /// The fused graph (schema 2); then stages have no files of their own.
    pub graph: Option<GraphSpec>,
    /// Stages in manifest order.
    pub stages: Vec<StageSpec>,
    /// Index of the root stage.
    pub root: usize,
    /// Stage indices in evaluation order (every stage after its parent).
    pub order: Vec<usize>,
    /// The bundle's `cascade.skip_below`.
    pub skip_below: f64,
    /// External-data files (name, SHA-256) the manifest lists.
    pub data_shas: Vec<(String, String)>,
    /// External-data files (name, verified bytes), manifest order; filled
    /// by [`Bundle::load`].
    pub data: Vec<(String, Blob)>,
}

impl Bundle {
    /// Whether any model (trunk, stage or fused graph) takes an input from `source`.
    fn uses_source(&self, source: Source) -> bool {
        let graph = self.graph.as_ref().map_or(&[][..], |g| &g.inputs[..]);
        self.stages
            .iter()
            .flat_map(|s| s.inputs.iter())
            .chain(graph)
            .any(|(_, src)| *src == source)
    }

    /// Whether any model consumes the side tensor.
    pub fn uses_side(&self) -> bool {
        self.uses_source(Source::Side)
    }

    /// Whether any model consumes the block tensor. A bundle whose graph
    /// takes side features alone (no trunk) does not: the plugin then builds
    /// no block tensor at all.
    pub fn uses_block(&self) -> bool {
        self.trunk.is_some() || self.uses_source(Source::Block)
    }

    /// Whether the previous source frame influences predictions: through
    /// the `prev_y` channel of a block tensor some model reads, or through a
    /// side feature that reads it (`has_prev`, `block_stats`).
    pub fn uses_prev(&self) -> bool {
        (self.uses_block() && self.channels.contains(&Channel::PrevY))
            || (self.uses_side()
                && self
                    .side_features
                    .iter()
                    .any(|f| matches!(f, SideFeature::HasPrev | SideFeature::BlockStats)))
    }

    /// Reads, parses and validates `dir/manifest.json`, reads every file
    /// it lists under the file rules and checks its SHA-256.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let bdir = BundleDir::open(dir)?;
        let m = bdir.read(MANIFEST_FILE, "(file)", MANIFEST_MAX_BYTES)?;
        let text = std::str::from_utf8(&m.bytes)
            .map_err(|e| Error::model(MANIFEST_FILE, "(file)", format!("not UTF-8: {e}")))?;
        let raw: RawManifest = serde_json::from_str(text)
            .map_err(|e| Error::model(MANIFEST_FILE, "(json)", e.to_string()))?;
        let mut bundle = validate(dir, raw)?;
        read_files(&bdir, &mut bundle)?;
        Ok(bundle)
    }
}

/// Reads the data files and the ONNX files of a validated manifest, checks
/// their hashes, and ties every external-data reference to a listed file.
fn read_files(bdir: &BundleDir, b: &mut Bundle) -> Result<()> {
    let data_names: Vec<String> = b.data_shas.iter().map(|(n, _)| n.clone()).collect();
    for (i, (name, sha)) in b.data_shas.iter().enumerate() {
        let f = bdir.read_verified(
            name,
            &format!("data_files[{i}].sha256"),
            DATA_MAX_BYTES,
            sha,
        )?;
        b.data.push((name.clone(), Blob(f.bytes)));
    }
    let read_model = |file: &str, field: &str, sha: &str| -> Result<ModelFile> {
        let f = bdir.read_verified(file, field, MODEL_MAX_BYTES, sha)?;
        let refs = onnx_refs::external_data_files(&f.bytes)
            .map_err(|e| Error::model(file, "(onnx)", format!("not a readable ONNX model: {e}")))?;
        let mut data = Vec::new();
        for loc in refs {
            let idx = data_names.iter().position(|n| *n == loc).ok_or_else(|| {
                Error::model(
                    file,
                    "data_files",
                    format!(
                        "references external data `{loc}`, which data_files does not list \
                         (every external-data file must be listed with its SHA-256)"
                    ),
                )
            })?;
            data.push(idx);
        }
        Ok(ModelFile {
            bytes: Some(Blob(f.bytes)),
            data,
        })
    };
    if let Some(t) = b.trunk.as_mut() {
        t.model = read_model(&t.file, "trunk.sha256", &t.sha256)?;
    }
    if let Some(g) = b.graph.as_mut() {
        g.model = read_model(&g.file, "graph.sha256", &g.sha256)?;
        return Ok(());
    }
    for (i, s) in b.stages.iter_mut().enumerate() {
        s.model = read_model(&s.file, &format!("stages[{i}].sha256"), &s.sha256)?;
    }
    Ok(())
}

fn merr(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::model(MANIFEST_FILE, field, message)
}

/// Parses a manifest list of names (`field`) into distinct values; an
/// unknown or repeated name is an error naming its index and `what` it is.
fn parse_distinct<T: PartialEq>(
    names: &[String],
    field: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let v = parse(name)
            .ok_or_else(|| merr(format!("{field}[{i}]"), format!("unknown {what} `{name}`")))?;
        if out.contains(&v) {
            return Err(merr(
                format!("{field}[{i}]"),
                format!("duplicate {what} `{name}`"),
            ));
        }
        out.push(v);
    }
    Ok(out)
}

/// A bundle-relative file name: not empty, not absolute, no `..`.
fn check_file_name(field: &str, name: &str) -> Result<()> {
    let p = Path::new(name);
    let ok = !name.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && p.components().count() >= 1;
    if ok {
        Ok(())
    } else {
        Err(merr(
            field,
            format!("`{name}` is not a plain file name inside the bundle"),
        ))
    }
}

fn check_sha_field(field: &str, sha: &str) -> Result<()> {
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(merr(field, format!("`{sha}` is not a SHA-256 hex digest")))
    }
}

fn check_batch_shape(field: &str, shape: &[i64]) -> Result<()> {
    if shape.len() < 2 || shape[0] != -1 || shape[1..].iter().any(|&d| d <= 0) {
        return Err(merr(
            field,
            format!("shape {shape:?} must be [-1, d1, …] with positive dims after the batch dim"),
        ));
    }
    Ok(())
}

fn partition_index(name: &str) -> Option<u8> {
    PARTITION_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u8)
}

/// Parses a list of model inputs (`prefix` names it in messages): sources
/// `block`, `trunk` (only where the bundle has one) or `side`, each once,
/// with the shape of the tensor it comes from.
fn parse_inputs(
    prefix: &str,
    raw: &[RawStageInput],
    block_shape: &[i64],
    trunk_shape: Option<&[i64]>,
    n_side: usize,
) -> Result<Vec<(TensorDecl, Source)>> {
    if raw.is_empty() {
        return Err(merr(prefix, "no input"));
    }
    let mut inputs = Vec::new();
    for (ii, input) in raw.iter().enumerate() {
        let fi = |x: &str| format!("{prefix}[{ii}].{x}");
        let src = match input.source.as_str() {
            "block" => Source::Block,
            "trunk" => Source::Trunk,
            "side" => Source::Side,
            other => return Err(merr(fi("source"), format!("unknown source `{other}`"))),
        };
        if inputs.iter().any(|(_, s2)| *s2 == src) {
            return Err(merr(
                fi("source"),
                format!("source `{}` used twice", input.source),
            ));
        }
        if inputs
            .iter()
            .any(|(d, _): &(TensorDecl, Source)| d.name == input.name)
        {
            return Err(merr(
                fi("name"),
                format!("duplicate input name `{}`", input.name),
            ));
        }
        let expected: Vec<i64> = match src {
            Source::Block => block_shape.to_vec(),
            Source::Trunk => match trunk_shape {
                Some(t) => t.to_vec(),
                None => {
                    return Err(merr(
                        fi("source"),
                        "source `trunk` but the bundle has no trunk",
                    ))
                }
            },
            Source::Side => {
                if n_side == 0 {
                    return Err(merr(
                        fi("source"),
                        "source `side` but input.side_features is empty",
                    ));
                }
                vec![-1, n_side as i64]
            }
        };
        if input.shape != expected {
            return Err(merr(
                fi("shape"),
                format!(
                    "{:?} does not match the {} tensor {expected:?}",
                    input.shape, input.source
                ),
            ));
        }
        inputs.push((
            TensorDecl {
                name: input.name.clone(),
                shape: input.shape.clone(),
            },
            src,
        ));
    }
    Ok(inputs)
}

fn validate(dir: &Path, raw: RawManifest) -> Result<Bundle> {
    if raw.schema != SCHEMA {
        return Err(merr(
            "schema",
            format!("`{}` is not `{SCHEMA}`", raw.schema),
        ));
    }
    let fused = match raw.schema_version {
        SCHEMA_VERSION_FILES => false,
        SCHEMA_VERSION_FUSED => true,
        v => {
            return Err(merr(
                "schema_version",
                format!(
                    "version {v} is not supported (this build reads {SCHEMA_VERSION_FILES}: \
                     trunk and stage files, and {SCHEMA_VERSION_FUSED}: one fused graph)"
                ),
            ))
        }
    };
    if fused && raw.trunk.is_some() {
        return Err(merr(
            "trunk",
            "a fused bundle (schema_version 2) has no trunk: the graph holds it",
        ));
    }
    if !fused && raw.graph.is_some() {
        return Err(merr("graph", "`graph` needs schema_version 2"));
    }

    // --- input -------------------------------------------------------------
    let inp = &raw.input;
    if inp.block_size != BLOCK as u64 {
        return Err(merr(
            "input.block_size",
            format!("{} is not {BLOCK}", inp.block_size),
        ));
    }
    if inp.chroma != "420" {
        return Err(merr(
            "input.chroma",
            format!("`{}` is not `420`", inp.chroma),
        ));
    }
    if inp.chroma_upsample != "nearest" {
        return Err(merr(
            "input.chroma_upsample",
            format!("`{}` is not `nearest`", inp.chroma_upsample),
        ));
    }
    if inp.normalization.divide_by != "max_sample_value" {
        return Err(merr(
            "input.normalization.divide_by",
            format!(
                "`{}` is not `max_sample_value`",
                inp.normalization.divide_by
            ),
        ));
    }
    if let Some(p) = &inp.prev_y_when_absent {
        if p != "copy_current" {
            return Err(merr(
                "input.prev_y_when_absent",
                format!("`{p}` is not `copy_current`"),
            ));
        }
    }
    if inp.channels.is_empty() {
        return Err(merr("input.channels", "empty"));
    }
    let channels = parse_distinct(&inp.channels, "input.channels", "channel", |c| match c {
        "y" => Some(Channel::Y),
        "u" => Some(Channel::U),
        "v" => Some(Channel::V),
        "prev_y" => Some(Channel::PrevY),
        _ => None,
    })?;
    let n_ch = channels.len();
    let norm = &inp.normalization;
    if norm.mean.len() != n_ch {
        return Err(merr(
            "input.normalization.mean",
            format!("{} values for {n_ch} channels", norm.mean.len()),
        ));
    }
    if norm.std.len() != n_ch {
        return Err(merr(
            "input.normalization.std",
            format!("{} values for {n_ch} channels", norm.std.len()),
        ));
    }
    if let Some(i) = norm.mean.iter().position(|m| !m.is_finite()) {
        return Err(merr(format!("input.normalization.mean[{i}]"), "not finite"));
    }
    if let Some(i) = norm.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(merr(
            format!("input.normalization.std[{i}]"),
            "must be finite and > 0",
        ));
    }
    let side_features = parse_distinct(
        &inp.side_features,
        "input.side_features",
        "side feature",
        |f| match f {
            "qindex" => Some(SideFeature::Qindex),
            "intra" => Some(SideFeature::Intra),
            "has_prev" => Some(SideFeature::HasPrev),
            "cpu_used" => Some(SideFeature::CpuUsed),
            "block_stats" => Some(SideFeature::BlockStats),
            _ => None,
        },
    )?;
    let presets = parse_presets(inp.presets.as_deref(), &side_features)?;
    let layout = match inp.layout.as_deref() {
        None | Some("planar") => InputLayout::Planar,
        Some("cells") => InputLayout::Cells,
        Some(other) => {
            return Err(merr(
                "input.layout",
                format!("`{other}` is not `planar` or `cells`"),
            ))
        }
    };
    let block_shape = layout.x_shape(n_ch);

    // --- trunk -------------------------------------------------------------
    let trunk = match raw.trunk {
        None => None,
        Some(t) => {
            check_file_name("trunk.file", &t.file)?;
            check_sha_field("trunk.sha256", &t.sha256)?;
            if t.input.shape != block_shape {
                return Err(merr(
                    "trunk.input.shape",
                    format!(
                        "{:?} does not match the block tensor {block_shape:?}",
                        t.input.shape
                    ),
                ));
            }
            check_batch_shape("trunk.output.shape", &t.output.shape)?;
            Some(TrunkSpec {
                file: t.file,
                sha256: t.sha256,
                model: ModelFile::default(),
                input: TensorDecl {
                    name: t.input.name,
                    shape: t.input.shape,
                },
                output: TensorDecl {
                    name: t.output.name,
                    shape: t.output.shape,
                },
            })
        }
    };

    // --- stages ------------------------------------------------------------
    if raw.stages.is_empty() {
        return Err(merr("stages", "no stage"));
    }
    if raw.stages.len() > MAX_STAGES {
        return Err(merr(
            "stages",
            format!(
                "{} stages, at most {MAX_STAGES} supported",
                raw.stages.len()
            ),
        ));
    }
    let stage_names: Vec<&str> = raw.stages.iter().map(|s| s.name.as_str()).collect();
    for (i, n) in stage_names.iter().enumerate() {
        if stage_names[..i].contains(n) {
            return Err(merr(
                format!("stages[{i}].name"),
                format!("duplicate stage name `{n}`"),
            ));
        }
    }
    let root = stage_names
        .iter()
        .position(|n| *n == raw.cascade.root)
        .ok_or_else(|| {
            merr(
                "cascade.root",
                format!("no stage named `{}`", raw.cascade.root),
            )
        })?;
    let skip = raw.cascade.skip_below;
    if !(skip.is_finite() && (0.0..=1.0).contains(&skip)) {
        return Err(merr(
            "cascade.skip_below",
            format!("{skip} is not in [0, 1]"),
        ));
    }

    let mut stages = Vec::new();
    let mut parent: Vec<Option<usize>> = vec![None; raw.stages.len()];
    let mut leaves_seen: HashSet<u8> = HashSet::new();
    let trunk_shape = trunk.as_ref().map(|t| &t.output.shape[..]);
    let n_side: usize = side_features.iter().map(|f| f.width()).sum();
    let graph = match &raw.graph {
        None if fused => {
            return Err(merr(
                "graph",
                "a fused bundle (schema_version 2) needs `graph`",
            ))
        }
        None => None,
        Some(g) => {
            check_file_name("graph.file", &g.file)?;
            check_sha_field("graph.sha256", &g.sha256)?;
            Some(GraphSpec {
                file: g.file.clone(),
                sha256: g.sha256.clone(),
                model: ModelFile::default(),
                inputs: parse_inputs("graph.inputs", &g.inputs, &block_shape, None, n_side)?,
            })
        }
    };
    for (si, s) in raw.stages.iter().enumerate() {
        let f = |x: &str| format!("stages[{si}].{x}");
        let (file, sha256, inputs) = match (fused, &s.file, &s.sha256, &s.inputs) {
            (false, Some(file), Some(sha), Some(raw_inputs)) => {
                check_file_name(&f("file"), file)?;
                check_sha_field(&f("sha256"), sha)?;
                let inputs = parse_inputs(
                    &f("inputs"),
                    raw_inputs,
                    &block_shape,
                    trunk_shape,
                    n_side,
                )?;
                (file.clone(), sha.clone(), inputs)
            }
            (false, ..) => {
                return Err(merr(
                    f("file"),
                    "a stage of a schema_version 1 bundle needs `file`, `sha256` and `inputs`",
                ))
            }
            (true, None, None, None) => (String::new(), String::new(), Vec::new()),
            (true, ..) => {
                return Err(merr(
                    f("file"),
                    "a stage of a fused bundle has no `file`, `sha256` or `inputs`: its output is one of the graph's",
                ))
            }
        };
        if fused
            && raw.stages[..si]
                .iter()
                .any(|o| o.output.name == s.output.name)
        {
            return Err(merr(
                f("output.name"),
                format!("graph output `{}` is used by two stages", s.output.name),
            ));
        }

        let k = s.classes.len();
        if !(2..=MAX_CLASSES).contains(&k) {
            return Err(merr(
                f("classes"),
                format!("{k} classes; a stage needs 2..={MAX_CLASSES}"),
            ));
        }
        let out_shape = vec![-1, k as i64];
        if s.output.shape != out_shape {
            return Err(merr(
                f("output.shape"),
                format!(
                    "{:?} does not match {k} classes {out_shape:?}",
                    s.output.shape
                ),
            ));
        }
        let mut classes = Vec::new();
        for (ci, c) in s.classes.iter().enumerate() {
            let fc = |x: &str| format!("stages[{si}].classes[{ci}].{x}");
            let target = match (&c.partition, &c.next) {
                (Some(p), None) => {
                    let idx = partition_index(p)
                        .ok_or_else(|| merr(fc("partition"), format!("unknown partition `{p}`")))?;
                    if !leaves_seen.insert(idx) {
                        return Err(merr(
                            fc("partition"),
                            format!("partition `{p}` is a leaf more than once"),
                        ));
                    }
                    Target::Leaf(idx)
                }
                (None, Some(n)) => {
                    let t = stage_names
                        .iter()
                        .position(|x| x == n)
                        .ok_or_else(|| merr(fc("next"), format!("no stage named `{n}`")))?;
                    if t == root {
                        return Err(merr(fc("next"), format!("`{n}` is the root stage")));
                    }
                    if let Some(p) = parent[t] {
                        return Err(merr(
                            fc("next"),
                            format!(
                                "stage `{n}` is already reached from stage `{}`",
                                stage_names[p]
                            ),
                        ));
                    }
                    parent[t] = Some(si);
                    Target::Stage(t)
                }
                _ => {
                    return Err(merr(
                        fc("partition"),
                        "a class needs exactly one of `partition` and `next`",
                    ))
                }
            };
            classes.push(ClassSpec {
                name: c.name.clone(),
                target,
            });
        }
        if s.prior.len() != k {
            return Err(merr(
                f("prior"),
                format!("{} values for {k} classes", s.prior.len()),
            ));
        }
        if s.prior.iter().any(|p| !(p.is_finite() && *p >= 0.0)) {
            return Err(merr(f("prior"), "values must be finite and >= 0"));
        }
        let sum: f64 = s.prior.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(merr(f("prior"), format!("sums to {sum}, not 1")));
        }
        stages.push(StageSpec {
            name: s.name.clone(),
            file,
            sha256,
            model: ModelFile::default(),
            inputs,
            output: TensorDecl {
                name: s.output.name.clone(),
                shape: s.output.shape.clone(),
            },
            classes,
            prior: s.prior.clone(),
            leaf_dist: [0.0; NUM_PARTITIONS],
        });
    }

    // Tree: walk from the root; every stage must be reached exactly once.
    let mut order = vec![root];
    let mut i = 0;
    while i < order.len() {
        let s = order[i];
        for c in &stages[s].classes {
            if let Target::Stage(t) = c.target {
                if order.contains(&t) {
                    return Err(merr(
                        format!("stages[{s}].classes"),
                        "the classes do not form a tree (cycle)",
                    ));
                }
                order.push(t);
            }
        }
        i += 1;
    }
    if let Some(unreached) = (0..stages.len()).find(|s| !order.contains(s)) {
        return Err(merr(
            format!("stages[{unreached}]"),
            format!(
                "stage `{}` is not reachable from the root",
                stages[unreached].name
            ),
        ));
    }
    // Skip distributions, children before parents.
    for &s in order.iter().rev() {
        let mut dist = [0.0f64; NUM_PARTITIONS];
        for (c, p) in stages[s].classes.iter().zip(&stages[s].prior) {
            match c.target {
                Target::Leaf(l) => dist[l as usize] += p,
                Target::Stage(t) => {
                    for (d, x) in dist.iter_mut().zip(stages[t].leaf_dist.iter()) {
                        *d += p * x;
                    }
                }
            }
        }
        stages[s].leaf_dist = dist;
    }

    let mut data_shas: Vec<(String, String)> = Vec::new();
    for (i, d) in raw.data_files.iter().enumerate() {
        check_file_name(&format!("data_files[{i}].file"), &d.file)?;
        check_sha_field(&format!("data_files[{i}].sha256"), &d.sha256)?;
        if data_shas.iter().any(|(n, _)| *n == d.file) {
            return Err(merr(
                format!("data_files[{i}].file"),
                format!("`{}` is listed twice", d.file),
            ));
        }
        data_shas.push((d.file.clone(), d.sha256.clone()));
    }

    Ok(Bundle {
        dir: dir.to_path_buf(),
        name: raw.name,
        description: raw.description,
        channels,
        mean: norm.mean.clone(),
        std: norm.std.clone(),
        side_features,
        layout,
        presets,
        trunk,
        graph,
        stages,
        root,
        order,
        skip_below: skip,
        data_shas,
        data: Vec::new(),
    })
}

/// `input.presets`: distinct libaom `--cpu-used` values 0..=9, ascending;
/// required (non-empty) when a side feature is `cpu_used`.
fn parse_presets(raw: Option<&[i64]>, side: &[SideFeature]) -> Result<Vec<u32>> {
    let merr = |msg: String| Error::model(MANIFEST_FILE, "input.presets", msg);
    let list = raw.unwrap_or(&[]);
    if side.contains(&SideFeature::CpuUsed) && list.is_empty() {
        return Err(merr(
            "missing or empty: a bundle that takes cpu_used lists the presets it was trained for"
                .into(),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, &p) in list.iter().enumerate() {
        if !(0..=9).contains(&p) {
            return Err(merr(format!("[{i}] = {p} is not a cpu_used in 0..=9")));
        }
        if out.last().is_some_and(|&last| p as u32 <= last) {
            return Err(merr(format!(
                "[{i}] = {p}: presets must be distinct and ascending"
            )));
        }
        out.push(p as u32);
    }
    Ok(out)
}

impl Bundle {
    /// The preset a context with `cpu_used` (`None`: not stated) runs the
    /// bundle at: the stated one when listed, else the nearest listed one
    /// (the lower on a tie, i.e. the more thorough search); not stated: the
    /// first listed. `None` for a bundle that lists no presets.
    pub fn preset_for(&self, cpu_used: Option<u32>) -> Option<u32> {
        let first = *self.presets.first()?;
        let want = match cpu_used {
            None => return Some(first),
            Some(c) => c as i64,
        };
        self.presets
            .iter()
            .copied()
            .min_by_key(|&p| ((p as i64 - want).abs(), p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn stage(name: &str, classes: Value, prior: Value) -> Value {
        let k = classes.as_array().map_or(0, |c| c.len());
        json!({
            "name": name, "file": format!("{name}.onnx"), "sha256": "0".repeat(64),
            "inputs": [{"name": "x", "source": "block", "shape": [-1, 1, 16, 16]}],
            "output": {"name": "probs", "shape": [-1, k]},
            "classes": classes, "prior": prior
        })
    }

    fn manifest(stages: Vec<Value>) -> Value {
        json!({
            "schema": "av1part-bundle", "schema_version": 1, "name": "t",
            "input": {"block_size": 16, "chroma": "420", "channels": ["y"], "chroma_upsample": "nearest",
                      "normalization": {"divide_by": "max_sample_value", "mean": [0.5], "std": [0.25]}},
            "stages": stages,
            "cascade": {"root": "a", "skip_below": 0.0}
        })
    }

    fn check(m: Value) -> Result<Bundle> {
        let raw: RawManifest =
            serde_json::from_value(m).map_err(|e| Error::model("m", "json", e.to_string()))?;
        // No files exist: validation errors come before hashing; a valid
        // manifest fails on the first file read instead.
        validate(Path::new("/nonexistent"), raw)
    }

    #[test]
    fn valid_tree_is_accepted() {
        let m = manifest(vec![
            stage(
                "a",
                json!([{"name": "n", "partition": "NONE"}, {"name": "p", "next": "b"}]),
                json!([0.5, 0.5]),
            ),
            stage(
                "b",
                json!([{"name": "s", "partition": "SPLIT"}, {"name": "h", "partition": "HORZ"}]),
                json!([0.25, 0.75]),
            ),
        ]);
        // Files are read by `Bundle::load`, after validation.
        let b = check(m).unwrap();
        assert_eq!(b.stages.len(), 2);
        assert!(b.stages[0].model.bytes.is_none());
    }

    #[test]
    fn unreachable_stage_is_refused() {
        let m = manifest(vec![
            stage(
                "a",
                json!([{"name": "n", "partition": "NONE"}, {"name": "s", "partition": "SPLIT"}]),
                json!([0.5, 0.5]),
            ),
            stage(
                "b",
                json!([{"name": "h", "partition": "HORZ"}, {"name": "v", "partition": "VERT"}]),
                json!([0.5, 0.5]),
            ),
        ]);
        let e = check(m).unwrap_err().to_string();
        assert!(
            e.contains("stages[1]") && e.contains("not reachable"),
            "{e}"
        );
    }

    #[test]
    fn cycle_is_refused() {
        let m = manifest(vec![
            stage(
                "a",
                json!([{"name": "n", "partition": "NONE"}, {"name": "p", "next": "b"}]),
                json!([0.5, 0.5]),
            ),
            stage(
                "b",
                json!([{"name": "s", "partition": "SPLIT"}, {"name": "c", "next": "c"}]),
                json!([0.5, 0.5]),
            ),
            stage(
                "c",
                json!([{"name": "h", "partition": "HORZ"}, {"name": "b", "next": "b"}]),
                json!([0.5, 0.5]),
            ),
        ]);
        let e = check(m).unwrap_err().to_string();
        assert!(e.contains("already reached"), "{e}");
    }

    #[test]
    fn single_class_and_bad_shapes_are_refused() {
        let m = manifest(vec![stage(
            "a",
            json!([{"name": "n", "partition": "NONE"}]),
            json!([1.0]),
        )]);
        assert!(check(m)
            .unwrap_err()
            .to_string()
            .contains("stages[0].classes"));
        let mut m = manifest(vec![stage(
            "a",
            json!([{"name": "n", "partition": "NONE"}, {"name": "s", "partition": "SPLIT"}]),
            json!([0.5, 0.5]),
        )]);
        m["stages"][0]["inputs"][0]["shape"] = json!([1, 1, 16, 16]);
        assert!(check(m)
            .unwrap_err()
            .to_string()
            .contains("stages[0].inputs[0].shape"));
    }

    #[test]
    fn input_layout_sets_the_block_shape_and_unknown_layouts_are_refused() {
        let two = || {
            manifest(vec![stage(
                "a",
                json!([{"name": "n", "partition": "NONE"}, {"name": "s", "partition": "SPLIT"}]),
                json!([0.5, 0.5]),
            )])
        };
        let mut m = two();
        m["input"]["layout"] = json!("diagonal");
        let e = check(m).unwrap_err().to_string();
        assert!(e.contains("input.layout") && e.contains("diagonal"), "{e}");
        // cells: the planar shape is now a mismatch, [-1, 16, C*16] is right
        let mut m = two();
        m["input"]["layout"] = json!("cells");
        assert!(check(m.clone())
            .unwrap_err()
            .to_string()
            .contains("stages[0].inputs[0].shape"));
        m["stages"][0]["inputs"][0]["shape"] = json!([-1, 16, 16]);
        assert_eq!(check(m).unwrap().layout, InputLayout::Cells);
        assert_eq!(check(two()).unwrap().layout, InputLayout::Planar);
    }

    #[test]
    fn skip_distribution_multiplies_priors() {
        let stages = vec![
            stage(
                "a",
                json!([{"name": "n", "partition": "NONE"}, {"name": "p", "next": "b"}]),
                json!([0.6, 0.4]),
            ),
            stage(
                "b",
                json!([{"name": "s", "partition": "SPLIT"}, {"name": "h", "partition": "HORZ"}]),
                json!([0.25, 0.75]),
            ),
        ];
        let raw: RawManifest = serde_json::from_value(manifest(stages)).unwrap();
        // Build without hashing by validating in a directory with the files.
        let dir =
            std::env::temp_dir().join(format!("av1part-manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.onnx", "b.onnx"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut raw = raw;
        for s in &mut raw.stages {
            s.sha256 = Some(empty_sha.into());
        }
        let b = validate(&dir, raw).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let d = b.stages[0].leaf_dist;
        assert!(
            (d[0] - 0.6).abs() < 1e-12 && (d[3] - 0.1).abs() < 1e-12 && (d[1] - 0.3).abs() < 1e-12
        );
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(b.order, vec![0, 1]);
    }
}

//! av1part: AV1 partition prediction for 16×16 blocks.
//!
//! Given a 16×16 YUV 4:2:0 source block, av1part runs a bundle of exported
//! ONNX models (a hierarchical cascade, see `docs/CONTRACTS.md`) through ONNX
//! Runtime and returns the AV1 partition type in libaom's numbering
//! (NONE = 0 … VERT_4 = 9) with the ten probabilities.
//!
//! The crate is primarily a C library (`src/capi.rs`, header
//! `include/av1part.h`); the Rust API below is the same engine:
//! [`Context::new`] loads a bundle, [`Context::predict_blocks`] and
//! [`Context::predict_frame`] run it. A [`Context`] is `Send + Sync` and is
//! meant to be shared by all encoder threads.

#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod block_stats;
mod bundle_files;
mod cascade;
mod context;
mod error;
mod manifest;
mod onnx_refs;
mod policy;
mod preprocess;
mod runtime;
mod session;
mod shared_weights;

#[cfg(feature = "capi")]
pub mod capi;

pub use context::{Config, Context, GraphOptimization, Provider, ProviderChoice, StageInfo};
pub use error::{Error, Result, Status};
pub use policy::Policy;
pub use preprocess::{frame_block_count, Block, Frame, FrameType, Plane, Samples, SideInfo};
pub use runtime::ORT_LIB_ENV;

/// Number of partition types (NONE = 0 … VERT_4 = 9); size of
/// `Av1partPrediction.probabilities`.
pub const NUM_PARTITIONS: usize = 10;
/// Most classes per stage; row size of `Av1partPrediction.stage_probabilities`.
pub const MAX_CLASSES: usize = 10;
/// Most stages per bundle (a tree with 10 leaves and at least two classes
/// per stage has at most 9); row count of `Av1partPrediction.stage_probabilities`.
pub const MAX_STAGES: usize = 9;

/// Largest accepted deviation from 1 of the sum of one stage's output
/// row. A stage whose row sums to more or less fails the call with
/// `AV1PART_STATUS_INFERENCE`, naming the stage.
pub const PROB_SUM_TOLERANCE: f32 = 1e-3;

/// Default `decision_grid`: each stage's probabilities are rounded to
/// multiples of 1/1024 before decisions are taken (see `Av1partConfig`).
pub const DEFAULT_DECISION_GRID: u32 = 1024;

/// Largest accepted `decision_grid`.
pub const MAX_DECISION_GRID: u32 = 1 << 16;

/// Partition names in libaom's numbering, without the `PARTITION_` prefix.
pub const PARTITION_NAMES: [&str; NUM_PARTITIONS] = [
    "NONE", "HORZ", "VERT", "SPLIT", "HORZ_A", "HORZ_B", "VERT_A", "VERT_B", "HORZ_4", "VERT_4",
];

/// `Av1partPrediction.flags`: the block reaches past the right or bottom
/// frame edge (frame prediction only); samples outside the frame were
/// replicated from the last column/row, like the encoder's border extension.
pub const PREDICTION_FLAG_PARTIAL: u32 = 1;
/// `Av1partPrediction.flags`: a co-located block of the previous source
/// frame was given for this block.
pub const PREDICTION_FLAG_HAS_PREV: u32 = 2;
/// `Av1partPrediction.flags`: at least one stage reached by this block was skipped
/// (its mass was below `skip_below`), so part of the probabilities come from
/// that stage's prior.
pub const PREDICTION_FLAG_SKIPPED: u32 = 4;

/// The prediction for one 16×16 block.
///
/// Probabilities follow the cascade semantics of `docs/CONTRACTS.md`: they
/// are non-negative and sum to 1 (each stage's row is checked to sum to 1
/// within `AV1PART_PROB_SUM_TOLERANCE`). `partition` is the argmax of the same
/// cascade computed on each stage's probabilities rounded to the decision
/// grid (unrounded with `decision_grid = 0`), the lowest partition number on
/// a tie.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Predicted partition type, libaom numbering (NONE = 0 … VERT_4 = 9);
    /// -1 in outputs of a failed call.
    pub partition: i32,
    /// Bit set of `AV1PART_PREDICTION_FLAG_*`. Always 0 after a failure.
    pub flags: u32,
    /// Probability of each partition type, indexed by partition number.
    pub probabilities: [f32; NUM_PARTITIONS],
    /// Bit `s` is set when stage `s` (manifest order, see
    /// `av1part_context_stage_name`) ran on this block.
    pub stages_run: u32,
    /// Number of stages in the bundle (valid rows of `stage_probabilities`).
    pub num_stages: u32,
    /// Raw softmax output of each stage that ran, `[stage][class]` in
    /// manifest order; all zeros for stages that did not run and for classes
    /// past the stage's class count.
    pub stage_probabilities: [[f32; MAX_CLASSES]; MAX_STAGES],
}

impl Default for Prediction {
    fn default() -> Self {
        Prediction {
            partition: 0,
            flags: 0,
            probabilities: [0.0; NUM_PARTITIONS],
            stages_run: 0,
            num_stages: 0,
            stage_probabilities: [[0.0; MAX_CLASSES]; MAX_STAGES],
        }
    }
}

/// The version string, NUL-terminated for the C API.
pub(crate) const VERSION_NUL: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("AV1PART_GIT_HASH"),
    ")\0"
);

/// The crate version with the git hash when known, e.g. `0.1.0 (1a2b3c4d)`.
pub fn version_string() -> &'static str {
    VERSION_NUL.trim_end_matches('\0')
}

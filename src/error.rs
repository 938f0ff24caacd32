//! The crate's error type and its mapping onto C status codes.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in av1part.
///
/// Each variant maps to one C status code (see [`Error::status`]); the
/// `Display` text is what `av1part_last_error()` returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller-supplied argument is invalid (NULL pointer, bad stride, bad
    /// bit depth, sample out of range, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("ONNX Runtime library: {0}")]
    OrtLoad(String),

    /// A second context asked for a different ONNX Runtime library than the
    /// one already loaded in this process.
    #[error("ONNX Runtime already loaded from `{loaded}`; cannot load `{requested}` in the same process")]
    OrtConflict {
        /// The library already loaded.
        loaded: PathBuf,
        /// The library the new context asked for.
        requested: PathBuf,
    },

    /// The model bundle is missing, malformed or does not match its manifest.
    #[error("model bundle: {file}: {field}: {message}")]
    ModelLoad {
        /// The file at fault (manifest or model file), as given in the bundle.
        file: String,
        /// The manifest field (or ONNX I/O) at fault.
        field: String,
        /// What is wrong.
        message: String,
    },

    /// The requested execution provider could not be obtained and the
    /// configuration asked not to fall back.
    #[error("execution provider unavailable: {0}")]
    ProviderUnavailable(String),

    /// ONNX Runtime failed while running a model, or a model produced
    /// unusable output.
    #[error("inference: {0}")]
    Inference(String),

    /// A bug inside av1part (including a caught panic).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for an [`Error::InvalidArgument`].
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Names the block an invalid-argument error is about (index in the
    /// caller's array or raster order); other errors pass unchanged.
    pub(crate) fn at_block(self, index: usize) -> Self {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("block {index}: {m}")),
            other => other,
        }
    }

    /// Shorthand for an [`Error::ModelLoad`].
    pub(crate) fn model(
        file: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::ModelLoad {
            file: file.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Inference`].
    pub(crate) fn inference(msg: impl Into<String>) -> Self {
        Error::Inference(msg.into())
    }

    /// The C status code of this error.
    pub fn status(&self) -> Status {
        match self {
            Error::InvalidArgument(_) => Status::InvalidArgument,
            Error::OrtLoad(_) => Status::OrtLoad,
            Error::OrtConflict { .. } => Status::OrtConflict,
            Error::ModelLoad { .. } => Status::ModelLoad,
            Error::ProviderUnavailable(_) => Status::ProviderUnavailable,
            Error::Inference(_) => Status::Inference,
            Error::Internal(_) => Status::Internal,
        }
    }
}

/// Status code returned by every fallible av1part function.
///
/// 0 is success, negative values are errors. Values are explicitly numbered
/// and append-only: a value never changes meaning between versions. The C
/// type is a 32-bit signed integer. `av1part_status_string()` names each
/// value; `av1part_last_error()` gives the detail of the last failure on the
/// calling thread.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// An argument is invalid: NULL pointer, zero or too small stride,
    /// bit depth not 8/10/12, sample above `(1 << bit_depth) - 1`, zero
    /// block count, odd or zero frame size, output buffer too small, ….
    InvalidArgument = -1,
    /// The ONNX Runtime library could not be found, loaded or initialised.
    OrtLoad = -2,
    /// ONNX Runtime is already loaded in this process from another path.
    OrtConflict = -3,
    /// The model bundle is missing, malformed, or does not match its
    /// manifest (hash, names, shapes, dtypes, classes, schema version).
    ModelLoad = -4,
    /// The execution provider asked for is unavailable and
    /// `require_provider` was set.
    ProviderUnavailable = -5,
    /// Inference failed inside ONNX Runtime, or a model produced non-finite
    /// or malformed output.
    Inference = -6,
    /// A Rust panic was caught at the API boundary (a bug in av1part).
    Panic = -7,
    /// Any other internal error (a bug in av1part).
    Internal = -8,
}

impl Status {
    /// A short, static, human-readable description of the status.
    pub fn as_cstr(self) -> &'static std::ffi::CStr {
        match self {
            Status::Ok => c"ok",
            Status::InvalidArgument => c"invalid argument",
            Status::OrtLoad => c"ONNX Runtime library could not be loaded",
            Status::OrtConflict => c"ONNX Runtime already loaded from another path",
            Status::ModelLoad => c"model bundle could not be loaded",
            Status::ProviderUnavailable => c"execution provider unavailable",
            Status::Inference => c"inference failed",
            Status::Panic => c"internal panic",
            Status::Internal => c"internal error",
        }
    }

    /// [`Status::as_cstr`] as a `&str`.
    pub fn as_str(self) -> &'static str {
        self.as_cstr().to_str().unwrap_or("?")
    }

    /// Every status, in numeric order from 0 downwards.
    const ALL: [Status; 9] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::OrtLoad,
        Status::OrtConflict,
        Status::ModelLoad,
        Status::ProviderUnavailable,
        Status::Inference,
        Status::Panic,
        Status::Internal,
    ];

    /// The status with this numeric value, if any.
    pub fn from_i32(v: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as i32 == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_and_strings() {
        for s in Status::ALL {
            assert_eq!(Status::from_i32(s as i32), Some(s));
            assert!(!s.as_str().is_empty());
        }
        assert_eq!(Status::from_i32(1), None);
        assert_eq!(Error::invalid("x").status(), Status::InvalidArgument);
        let e = Error::model("f.onnx", "stages[0].sha256", "bad");
        assert_eq!(e.to_string(), "model bundle: f.onnx: stages[0].sha256: bad");
    }
}

//! Loading ONNX Runtime: finding the library, checking it, and the one
//! process-wide `ort` environment.
//!
//! `ort` loads the library lazily and *panics* when it is missing, so the
//! library is located and probed here first (file exists, `dlopen` works,
//! `OrtGetApiBase` is exported, the API version is available) and only then
//! handed to `ort::init_from`. ONNX Runtime allows one environment per
//! process; it lives in a process-global and is never dropped.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::logging::LogLevel;

use crate::error::{Error, Result};

/// Environment variable naming the ONNX Runtime library to load.
pub const ORT_LIB_ENV: &str = "AV1PART_ORT_LIB";

/// File names looked for next to the av1part library itself.
const ORT_LIB_NAMES: &[&str] = &[
    "libonnxruntime.so.1.31.1",
    "libonnxruntime.so.1",
    "libonnxruntime.so",
];

/// The loaded runtime.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// Canonical path of the library.
    pub path: PathBuf,
    /// ONNX Runtime's version string (e.g. `1.31.1`).
    pub version: String,
    /// The process-wide environment.
    pub env: Environment,
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// How the library path was chosen, for error messages.
fn describe_candidates(c: &[(PathBuf, &'static str)]) -> String {
    c.iter()
        .map(|(p, why)| format!("`{}` ({why})", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The default library path baked in at build time (set by build.rs).
fn baked_default() -> Option<PathBuf> {
    option_env!("AV1PART_ORT_LIB_DEFAULT")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Directory holding the av1part shared library (or executable, when linked
/// statically), found with `dladdr` on one of our own functions.
fn own_dir() -> Option<PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = own_dir as fn() -> Option<PathBuf> as *const libc::c_void;
    // SAFETY: `addr` is the address of a function in this image; `dladdr`
    // only reads it and fills `info`, which is valid zeroed storage.
    let ok = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    if ok == 0 {
        return None;
    }
    // SAFETY: dladdr returned non-zero, so it initialised `info`.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_str().ok()?;
    let p = PathBuf::from(name);
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    p.parent().map(Path::to_path_buf)
}

/// The library to load: the explicit path, else `$AV1PART_ORT_LIB`, else the
/// first existing of the build-time default and the files next to the
/// av1part library.
pub(crate) fn resolve_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(v) = std::env::var_os(ORT_LIB_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
    if let Some(p) = baked_default() {
        candidates.push((p, "build-time default"));
    }
    if let Some(d) = own_dir() {
        for n in ORT_LIB_NAMES {
            candidates.push((d.join(n), "next to the av1part library"));
        }
    }
    candidates
        .iter()
        .find(|(p, _)| p.is_file())
        .map(|(p, _)| p.clone())
        .ok_or_else(|| {
            Error::OrtLoad(format!(
                "no ONNX Runtime library found; set the config's ort_library_path or ${ORT_LIB_ENV}; tried {}",
                describe_candidates(&candidates)
            ))
        })
}

/// Probes a candidate library without handing it to `ort`: it must exist,
/// `dlopen`, export `OrtGetApiBase`, and provide the API version `ort` needs.
/// Returns the runtime's version string.
fn probe(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::OrtLoad(format!("`{}`: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::OrtLoad(format!(
            "`{}` is not a file",
            path.display()
        )));
    }
    // SAFETY: loading a shared library runs its initialisers; this is the
    // documented way to bring in ONNX Runtime and the path was given to us
    // for exactly that purpose.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| Error::OrtLoad(format!("cannot load `{}`: {e}", path.display())))?;
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: the symbol, if present, has ONNX Runtime's documented signature.
    let get_base: libloading::Symbol<GetApiBase> =
        unsafe { lib.get(b"OrtGetApiBase\0") }.map_err(|_| {
            Error::OrtLoad(format!(
                "`{}` does not export OrtGetApiBase; not ONNX Runtime",
                path.display()
            ))
        })?;
    // SAFETY: OrtGetApiBase takes no arguments and returns a static pointer.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(Error::OrtLoad(format!(
            "`{}`: OrtGetApiBase returned NULL",
            path.display()
        )));
    }
    // SAFETY: `base` is non-null and points to ONNX Runtime's static OrtApiBase.
    let version_ptr = unsafe { ((*base).GetVersionString)() };
    let version = if version_ptr.is_null() {
        String::from("?")
    } else {
        // SAFETY: GetVersionString returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(version_ptr) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: as above; GetApi returns NULL for unsupported versions.
    let api = unsafe { ((*base).GetApi)(ort::sys::ORT_API_VERSION) };
    if api.is_null() {
        return Err(Error::OrtLoad(format!(
            "`{}` is ONNX Runtime {version}, which lacks API version {} (need >= 1.{})",
            path.display(),
            ort::sys::ORT_API_VERSION,
            ort::sys::ORT_API_VERSION
        )));
    }
    // Keep the library mapped: `ort` dlopens the same file next, and
    // unloading ONNX Runtime is never safe once threads exist.
    std::mem::forget(lib);
    Ok(version)
}

/// Routes ONNX Runtime's own log messages to `tracing`.
fn ort_logger() -> ort::logging::LoggerFunction {
    Arc::new(
        |level: LogLevel, category: &str, _id: &str, location: &str, message: &str| match level {
            LogLevel::Fatal | LogLevel::Error => {
                tracing::error!(target: "av1part::ort", %category, %location, "{message}")
            }
            LogLevel::Warning => {
                tracing::warn!(target: "av1part::ort", %category, %location, "{message}")
            }
            LogLevel::Info => {
                tracing::debug!(target: "av1part::ort", %category, %location, "{message}")
            }
            LogLevel::Verbose => {
                tracing::trace!(target: "av1part::ort", %category, %location, "{message}")
            }
        },
    )
}

/// The process's runtime, loading it on first use from `explicit` (or the
/// default search). A later call resolving to another library fails with
/// [`Error::OrtConflict`].
pub(crate) fn get(explicit: Option<&Path>) -> Result<Arc<Runtime>> {
    let requested = resolve_library(explicit)?;
    let canonical = std::fs::canonicalize(&requested)
        .map_err(|e| Error::OrtLoad(format!("`{}`: {e}", requested.display())))?;
    let mut guard = RUNTIME
        .lock()
        .map_err(|_| Error::Internal("runtime lock poisoned".into()))?;
    if let Some(rt) = guard.as_ref() {
        if rt.path != canonical {
            return Err(Error::OrtConflict {
                loaded: rt.path.clone(),
                requested: canonical,
            });
        }
        return Ok(Arc::clone(rt));
    }
    let version = probe(&canonical)?;
    let builder = ort::init_from(&canonical)
        .map_err(|e| Error::OrtLoad(format!("`{}`: {e}", canonical.display())))?;
    let env = builder
        .with_name("av1part")
        .with_telemetry(false)
        .with_logger(ort_logger())
        .build()
        .map_err(|e| Error::OrtLoad(format!("creating the ONNX Runtime environment: {e}")))?;
    env.set_log_level(LogLevel::Warning);
    tracing::info!(path = %canonical.display(), %version, "loaded ONNX Runtime");
    let rt = Arc::new(Runtime {
        path: canonical,
        version,
        env,
    });
    *guard = Some(Arc::clone(&rt));
    Ok(rt)
}

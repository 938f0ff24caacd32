//! The C API (`include/av1part.h`, generated from this file by cbindgen).
//!
//! All FFI lives here. Rules every function follows:
//! - a Rust panic never unwinds into C: each body runs under
//!   `catch_unwind` and a panic becomes `AV1PART_STATUS_PANIC`;
//! - every pointer is NULL-checked, every size and stride validated before a
//!   slice is formed;
//! - out-parameters are cleared on entry and set only on success;
//! - the detail of a failure is kept per thread for `av1part_last_error()`.
//!
//! Typical use:
//!
//! ```c
//! Av1partConfig cfg;
//! av1part_config_default(&cfg);
//! cfg.model_dir = "onnx/default";
//! Av1partContext *ctx = NULL;
//! if (av1part_context_new(&cfg, &ctx) != AV1PART_STATUS_OK) {
//!     fprintf(stderr, "av1part: %s\n", av1part_last_error());
//!     return -1;
//! }
//! Av1partBlock blk = {0};  /* fill pointers, strides, bit depth, side info */
//! Av1partPrediction pred;
//! if (av1part_predict_block(ctx, &blk, &pred) == AV1PART_STATUS_OK)
//!     use(pred.partition, pred.probabilities);
//! av1part_context_free(&ctx);  /* ctx is NULL afterwards */
//! ```

#![allow(clippy::missing_safety_doc)] // safety is documented per function in prose for C callers

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use crate::context::{Config, Context, Provider, ProviderChoice};
use crate::error::{Error, Result, Status};
use crate::preprocess::{frame_block_count, Block, Frame, FrameType, Plane, Samples, SideInfo};
use crate::Prediction;

/// Major version of the av1part library this header belongs to.
pub const AV1PART_VERSION_MAJOR: u32 = 0;
/// Minor version of the av1part library this header belongs to.
pub const AV1PART_VERSION_MINOR: u32 = 2;
/// Patch version of the av1part library this header belongs to.
pub const AV1PART_VERSION_PATCH: u32 = 0;
/// ABI version of this header. Bumped whenever a struct layout or a
/// function signature changes incompatibly; compare with
/// `av1part_abi_version()` at start-up and refuse a mismatch.
pub const AV1PART_ABI_VERSION: u32 = 1;

/// Execution provider (values of `Av1partConfig.execution_provider` and of
/// `av1part_context_execution_provider()`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Av1partProvider {
    /// Config: CUDA if it can be had, else CPU. Returned only for a NULL
    /// context.
    Auto = 0,
    /// ONNX Runtime's CPU provider.
    Cpu = 1,
    /// ONNX Runtime's CUDA provider.
    Cuda = 2,
}

/// Decision policy (values of `Av1partConfig.decision_policy`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Av1partPolicy {
    /// The argmax of the ten decision values (the cascade's products).
    Flat = 0,
    /// Down the tree, the most probable class of each stage (the research
    /// notes' rule); a stage that did not run contributes its prior.
    Greedy = 1,
    /// As `Greedy`, with each stage's values divided by its manifest prior:
    /// for calibrated bundles, the rule that suits a class-averaged score
    /// (docs/CONTRACTS.md, "Decision policies").
    Balanced = 2,
}

/// Frame type (values of `Av1partBlock.frame_type` / `Av1partFrame.frame_type`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Av1partFrameType {
    /// Key frame (intra).
    Key = 0,
    /// Inter frame.
    Inter = 1,
    /// Intra-only frame (intra).
    IntraOnly = 2,
}

/// Context settings. Fill with `av1part_config_default()`, then set
/// `model_dir` (and whatever else differs). The library copies what it
/// needs during `av1part_context_new()`; the struct and its strings may be
/// freed afterwards.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Av1partConfig {
    /// Model bundle directory (holding `manifest.json`), NUL-terminated
    /// UTF-8. Required; default NULL.
    pub model_dir: *const c_char,
    /// Path of libonnxruntime. NULL (default): the `AV1PART_ORT_LIB`
    /// environment variable, else the library installed by the set-up
    /// (`.deps/onnxruntime/lib/libonnxruntime.so.1.31.1`, path baked in at
    /// build time), else `libonnxruntime.so.1.31.1` (or `.so.1`, `.so`)
    /// next to the av1part library. ONNX Runtime is loaded once per process:
    /// every context must resolve to the same file.
    pub ort_library_path: *const c_char,
    /// An `Av1partProvider`; default `AV1PART_PROVIDER_AUTO`. AUTO and CUDA
    /// try CUDA and fall back to CPU, keeping the reason
    /// (`av1part_context_provider_note()`).
    pub execution_provider: i32,
    /// Non-zero: with `AV1PART_PROVIDER_CUDA`, fail with
    /// `AV1PART_STATUS_PROVIDER_UNAVAILABLE` instead of falling back.
    /// Default 0.
    pub require_provider: i32,
    /// CUDA device ordinal. Default 0.
    pub cuda_device_id: i32,
    /// ONNX Runtime intra-op threads per session; 0 (default) means 1,
    /// which suits encoders that run many threads themselves.
    pub intra_op_threads: i32,
    /// Most concurrent inference sessions (per model); 0 (default) means
    /// min(cores, 8) on CPU, 4 on CUDA. Calls beyond it wait. The sessions
    /// share one copy of the weights; with 1, the one session keeps its own.
    pub max_sessions: i32,
    /// Cascade `skip_below` in [0, 1]; negative (default -1) keeps the
    /// bundle's value. 0 evaluates every stage for every block (exact mode).
    pub skip_below: f64,
    /// Threads `av1part_predict_frame()` may use, each with its own session
    /// (started and joined within the call); 0 (default) means
    /// `max_sessions`, 1 runs on the calling thread only.
    pub frame_threads: i32,
    /// Decision grid, for decisions that are the same on every machine.
    /// Each stage's probabilities are rounded to multiples of
    /// `1 / decision_grid` before the cascade's run/skip decisions and the
    /// partition are taken from them, so CPUs with other instruction sets
    /// (AVX2, AVX-512) and CUDA give the same partition except on exact grid
    /// ties. The probabilities returned are never rounded. 0 (default):
    /// `AV1PART_DEFAULT_DECISION_GRID` (1024); negative: no rounding
    /// (decisions from the raw probabilities); otherwise a power of two in
    /// 2..=`AV1PART_MAX_DECISION_GRID`.
    pub decision_grid: i32,
    /// An `Av1partPolicy`: how `Av1partPrediction.partition` is chosen from
    /// the (grid-rounded) decision values. Default `AV1PART_POLICY_FLAT`.
    pub decision_policy: i32,
    /// The encoder's speed preset (libaom `--cpu-used`, 0..9), stated once
    /// for the context. A bundle trained for several presets (manifest
    /// `input.presets`, side feature `cpu_used`) runs at the listed preset
    /// nearest to it, the lower one on a tie (`av1part_context_cpu_used()`
    /// tells which); bundles that list no presets ignore it. Default -1:
    /// not stated, the bundle's first listed preset.
    pub cpu_used: i32,
    /// Reserved for future fields; must be zero (`av1part_config_default()`
    /// zeroes it).
    pub reserved: [u8; 48],
}

/// One 16×16 4:2:0 source block and its side information.
///
/// Pointers address the top-left sample of each region; strides are in
/// samples (not bytes) and must be at least the region width (16 for Y and
/// `prev_y`, 8 for U and V). With `bytes_per_sample == 2` the pointers must
/// be 2-byte aligned. The library reads Y 16×16, U 8×8, V 8×8 and, when
/// given, `prev_y` 16×16; it never writes them and keeps no reference after
/// the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Av1partBlock {
    /// Luma, 16×16.
    pub y: *const c_void,
    /// Cb, 8×8.
    pub u: *const c_void,
    /// Cr, 8×8.
    pub v: *const c_void,
    /// Co-located 16×16 luma of the previous source frame (display order),
    /// or NULL when there is none (first frame); then the current luma is
    /// used in its place, as in training.
    pub prev_y: *const c_void,
    /// Luma stride, samples.
    pub y_stride: isize,
    /// Cb stride, samples.
    pub u_stride: isize,
    /// Cr stride, samples.
    pub v_stride: isize,
    /// `prev_y` stride, samples (ignored when `prev_y` is NULL).
    pub prev_y_stride: isize,
    /// 1 (`uint8_t` samples, bit depth 8 only) or 2 (`uint16_t` samples).
    pub bytes_per_sample: i32,
    /// 8, 10 or 12. Every sample must be at most `(1 << bit_depth) - 1`.
    pub bit_depth: i32,
    /// The frame's base qindex, 0..255.
    pub base_qindex: i32,
    /// An `Av1partFrameType`.
    pub frame_type: i32,
    /// Reserved for future fields; must be zero, else the call fails with
    /// `AV1PART_STATUS_INVALID_ARGUMENT`.
    pub reserved: [u8; 16],
}

/// A whole 4:2:0 frame (for `av1part_predict_frame()`).
///
/// Planes: Y `width × height`, U and V `width/2 × height/2`, `prev_y`
/// `width × height`. Strides in samples, at least the plane width. Same
/// sample-format and alignment rules as `Av1partBlock`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Av1partFrame {
    /// Luma plane.
    pub y: *const c_void,
    /// Cb plane.
    pub u: *const c_void,
    /// Cr plane.
    pub v: *const c_void,
    /// Luma of the previous source frame (display order), or NULL.
    pub prev_y: *const c_void,
    /// Luma stride, samples.
    pub y_stride: isize,
    /// Cb stride, samples.
    pub u_stride: isize,
    /// Cr stride, samples.
    pub v_stride: isize,
    /// `prev_y` stride, samples.
    pub prev_y_stride: isize,
    /// Luma width in samples; even, > 0.
    pub width: i32,
    /// Luma height in samples; even, > 0.
    pub height: i32,
    /// 1 or 2, as in `Av1partBlock`.
    pub bytes_per_sample: i32,
    /// 8, 10 or 12.
    pub bit_depth: i32,
    /// The frame's base qindex, 0..255.
    pub base_qindex: i32,
    /// An `Av1partFrameType`.
    pub frame_type: i32,
    /// Reserved for future fields; must be zero, else the call fails with
    /// `AV1PART_STATUS_INVALID_ARGUMENT`.
    pub reserved: [u8; 16],
}

/// Opaque context: a loaded model bundle and its ONNX Runtime sessions.
///
/// Create with `av1part_context_new()`, destroy with
/// `av1part_context_free()`. Thread-safe: any number of threads may call
/// the predict and accessor functions on one context at once; results do
/// not depend on what other threads do.
pub struct Av1partContext {
    ctx: Context,
    bundle_name: CString,
    provider_note: CString,
    stage_names: Vec<CString>,
    class_names: Vec<Vec<CString>>,
}

// ---------------------------------------------------------------------------
// Plumbing.

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn cstring_lossy(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

fn set_last_error(msg: &str) {
    tracing::debug!("av1part error: {msg}");
    LAST_ERROR.with(|e| *e.borrow_mut() = cstring_lossy(msg));
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs a fallible body: errors and panics become a status, with the
/// message stored for `av1part_last_error()`.
fn catch<T>(f: impl FnOnce() -> Result<T>) -> std::result::Result<T, Status> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            Err(e.status())
        }
        Err(p) => {
            set_last_error(&format!("internal panic: {}", panic_message(p.as_ref())));
            Err(Status::Panic)
        }
    }
}

/// [`catch`] for bodies without a value.
fn guard(f: impl FnOnce() -> Result<()>) -> Status {
    match catch(f) {
        Ok(()) => Status::Ok,
        Err(s) => s,
    }
}

/// Runs an infallible accessor; a panic yields `fallback`.
fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        set_last_error(&format!("internal panic: {}", panic_message(p.as_ref())));
        fallback
    })
}

fn arg<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the caller promises a non-NULL pointer addresses a valid T
    // (documented on every function); NULL is rejected here.
    unsafe { p.as_ref() }.ok_or_else(|| Error::invalid(format!("{name} is NULL")))
}

fn c_path(p: *const c_char, name: &str) -> Result<Option<PathBuf>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL strings are documented to be NUL-terminated.
    let s = unsafe { CStr::from_ptr(p) };
    let s = s
        .to_str()
        .map_err(|_| Error::invalid(format!("{name} is not UTF-8")))?;
    Ok(Some(PathBuf::from(s)))
}

/// A plane region from a raw pointer: `cols × rows` samples at `stride`.
fn plane<'a>(
    ptr: *const c_void,
    stride: isize,
    cols: usize,
    rows: usize,
    bytes_per_sample: i32,
    name: &str,
) -> Result<Plane<'a>> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    if stride <= 0 {
        return Err(Error::invalid(format!(
            "{name}_stride {stride} must be positive"
        )));
    }
    let stride = stride as usize;
    if rows == 0 || cols == 0 {
        return Err(Error::invalid(format!(
            "{name}: empty {cols}×{rows} region"
        )));
    }
    // Checked here, before a slice is formed: with a stride below the width
    // the span computed next could run past the caller's buffer.
    if stride < cols {
        return Err(Error::invalid(format!(
            "{name}_stride {stride} is smaller than the width {cols}"
        )));
    }
    let len = stride
        .checked_mul(rows - 1)
        .and_then(|v| v.checked_add(cols))
        .filter(|&n| n <= isize::MAX as usize / 2)
        .ok_or_else(|| Error::invalid(format!("{name}_stride {stride} is too large")))?;
    let samples = match bytes_per_sample {
        // SAFETY: the caller guarantees `rows` rows of `cols` samples at
        // `stride` are readable from `ptr` (documented on Av1partBlock /
        // Av1partFrame); `len` is exactly the span they cover.
        1 => Samples::U8(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }),
        2 => {
            if !ptr.cast::<u16>().is_aligned() {
                return Err(Error::invalid(format!(
                    "{name} is not 2-byte aligned for 16-bit samples"
                )));
            }
            // SAFETY: as above, and the pointer is aligned for u16.
            Samples::U16(unsafe { std::slice::from_raw_parts(ptr.cast::<u16>(), len) })
        }
        other => {
            return Err(Error::invalid(format!(
                "bytes_per_sample {other} is not 1 or 2"
            )))
        }
    };
    Ok(Plane { samples, stride })
}

fn side_info(base_qindex: i32, frame_type: i32) -> Result<SideInfo> {
    let base_qindex = u8::try_from(base_qindex)
        .map_err(|_| Error::invalid(format!("base_qindex {base_qindex} is not in 0..255")))?;
    let frame_type = FrameType::from_i32(frame_type).ok_or_else(|| {
        Error::invalid(format!(
            "frame_type {frame_type} is not 0 (key), 1 (inter) or 2 (intra-only)"
        ))
    })?;
    Ok(SideInfo {
        base_qindex,
        frame_type,
    })
}

fn bit_depth(bd: i32) -> Result<u32> {
    match bd {
        8 | 10 | 12 => Ok(bd as u32),
        _ => Err(Error::invalid(format!("bit_depth {bd} is not 8, 10 or 12"))),
    }
}

/// A caller built against a newer header may have set a field this library
/// does not know; refusing beats silently ignoring it.
fn check_reserved(bytes: &[u8], name: &str) -> Result<()> {
    if bytes.iter().any(|&b| b != 0) {
        return Err(Error::invalid(format!(
            "{name}->reserved is not all zero (zero-initialise the struct)"
        )));
    }
    Ok(())
}

fn block_from_c<'a>(b: &Av1partBlock) -> Result<Block<'a>> {
    check_reserved(&b.reserved, "block")?;
    let bps = b.bytes_per_sample;
    let bd = bit_depth(b.bit_depth)?;
    Ok(Block {
        y: plane(b.y, b.y_stride, 16, 16, bps, "y")?,
        u: plane(b.u, b.u_stride, 8, 8, bps, "u")?,
        v: plane(b.v, b.v_stride, 8, 8, bps, "v")?,
        prev_y: if b.prev_y.is_null() {
            None
        } else {
            Some(plane(b.prev_y, b.prev_y_stride, 16, 16, bps, "prev_y")?)
        },
        bit_depth: bd,
        side: side_info(b.base_qindex, b.frame_type)?,
    })
}

fn frame_from_c<'a>(f: &Av1partFrame) -> Result<Frame<'a>> {
    check_reserved(&f.reserved, "frame")?;
    // Positive and even sizes are checked by the caller (block count) and
    // again by `Frame::validate`.
    let dim = |v: i32, name: &str| {
        usize::try_from(v).map_err(|_| Error::invalid(format!("frame {name} {v} is negative")))
    };
    let (w, h) = (dim(f.width, "width")?, dim(f.height, "height")?);
    let bps = f.bytes_per_sample;
    let bd = bit_depth(f.bit_depth)?;
    Ok(Frame {
        width: w,
        height: h,
        y: plane(f.y, f.y_stride, w, h, bps, "y")?,
        u: plane(f.u, f.u_stride, w / 2, h / 2, bps, "u")?,
        v: plane(f.v, f.v_stride, w / 2, h / 2, bps, "v")?,
        prev_y: if f.prev_y.is_null() {
            None
        } else {
            Some(plane(f.prev_y, f.prev_y_stride, w, h, bps, "prev_y")?)
        },
        bit_depth: bd,
        side: side_info(f.base_qindex, f.frame_type)?,
    })
}

/// The value output predictions hold after a failure: partition -1, zeros.
fn cleared() -> Prediction {
    Prediction {
        partition: -1,
        ..Prediction::default()
    }
}

/// A mutable slice of `n` caller-owned predictions.
fn out_slice<'a>(p: *mut Prediction, n: usize, name: &str) -> Result<&'a mut [Prediction]> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    if n > isize::MAX as usize / std::mem::size_of::<Prediction>() {
        return Err(Error::invalid(format!("{name}: count {n} is too large")));
    }
    if !p.is_aligned() {
        return Err(Error::invalid(format!("{name} is misaligned")));
    }
    // SAFETY: the caller provides `n` writable Av1partPrediction at `p`
    // (documented); NULL, overflow and alignment were checked above.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

/// Runs a predict body over the `n` caller-owned predictions at `out`:
/// they are cleared on entry and again on any failure (panics included).
fn predict_entry(
    out: *mut Prediction,
    n: usize,
    body: impl FnOnce(&mut [Prediction]) -> Result<()>,
) -> Status {
    let status = guard(|| {
        let out = out_slice(out, n, "out")?;
        out.fill(cleared());
        body(out)
    });
    if status != Status::Ok {
        if let Ok(out) = out_slice(out, n, "out") {
            out.fill(cleared());
        }
    }
    status
}

fn ctx_ref<'a>(ctx: *const Av1partContext) -> Option<&'a Av1partContext> {
    // SAFETY: a non-NULL context pointer comes from av1part_context_new()
    // and is valid until av1part_context_free() (documented).
    unsafe { ctx.as_ref() }
}

// ---------------------------------------------------------------------------
// Versions, statuses, errors.

/// Version of the loaded library, e.g. `"0.1.0 (1a2b3c4d5e6f)"` (git hash
/// when the build knew it, else `unknown`). Static string; never NULL.
#[no_mangle]
pub extern "C" fn av1part_version() -> *const c_char {
    crate::VERSION_NUL.as_ptr().cast()
}

/// ABI version of the loaded library; equals `AV1PART_ABI_VERSION` of the
/// header it was built with. Refuse to run on a mismatch.
#[no_mangle]
pub extern "C" fn av1part_abi_version() -> u32 {
    AV1PART_ABI_VERSION
}

/// Static description of a status code (an `Av1partStatus` value); unknown
/// values give `"unknown status"`. Never NULL.
#[no_mangle]
pub extern "C" fn av1part_status_string(status: i32) -> *const c_char {
    match Status::from_i32(status) {
        Some(s) => s.as_cstr().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

/// Name of a partition type (`"NONE"` … `"VERT_4"`), or NULL when
/// `partition` is not in 0..9. Static string.
#[no_mangle]
pub extern "C" fn av1part_partition_name(partition: i32) -> *const c_char {
    const NAMES: [&CStr; 10] = [
        c"NONE", c"HORZ", c"VERT", c"SPLIT", c"HORZ_A", c"HORZ_B", c"VERT_A", c"VERT_B", c"HORZ_4",
        c"VERT_4",
    ];
    usize::try_from(partition)
        .ok()
        .and_then(|p| NAMES.get(p))
        .map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Message of the last failure on the calling thread (`""` if none). The
/// string belongs to the library and stays valid until the next failing
/// av1part call on this thread. Successful calls do not clear it: read it
/// right after a function returned an error. Never NULL.
#[no_mangle]
pub extern "C" fn av1part_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

// ---------------------------------------------------------------------------
// Context.

/// Fills `*cfg` with defaults: no model directory, ORT library searched,
/// `AV1PART_PROVIDER_AUTO`, no strict provider, CUDA device 0, 1 intra-op
/// thread, automatic session count, bundle's `skip_below`, reserved bytes
/// zeroed. NULL `cfg` is ignored.
#[no_mangle]
pub unsafe extern "C" fn av1part_config_default(cfg: *mut Av1partConfig) {
    if cfg.is_null() {
        return;
    }
    let d = Av1partConfig {
        model_dir: std::ptr::null(),
        ort_library_path: std::ptr::null(),
        execution_provider: Av1partProvider::Auto as i32,
        require_provider: 0,
        cuda_device_id: 0,
        intra_op_threads: 0,
        max_sessions: 0,
        skip_below: -1.0,
        frame_threads: 0,
        decision_grid: 0,
        decision_policy: Av1partPolicy::Flat as i32,
        cpu_used: -1,
        reserved: [0; 48],
    };
    // SAFETY: non-NULL `cfg` points to caller-owned writable storage for an
    // Av1partConfig (documented); write() does not read the old value.
    unsafe { cfg.write(d) };
}

/// Creates a context: loads ONNX Runtime (first call in the process), the
/// bundle in `cfg->model_dir` (manifest checked against every file's
/// SHA-256 and against the ONNX inputs/outputs), and one session per model.
/// Every file the bundle reads must be a regular file inside the bundle
/// directory (after resolving symlinks) within the size limits of
/// `docs/CONTRACTS.md` (1 MiB for the manifest); every external-data file an
/// ONNX file references must be listed and hash-checked. The bytes checked
/// are the bytes ONNX Runtime loads. Nothing blocks: a FIFO or device is
/// refused, not opened for reading.
///
/// `cfg` is borrowed for the call only. `*out` is set to NULL on entry and
/// to the new context on success; free it with `av1part_context_free()`.
///
/// Returns `AV1PART_STATUS_OK`, or `INVALID_ARGUMENT` (NULL pointers, bad
/// settings), `ORT_LOAD`, `ORT_CONFLICT` (another context loaded a
/// different libonnxruntime), `MODEL_LOAD` (message names file and field),
/// `PROVIDER_UNAVAILABLE`, `PANIC`. Non-zero `cfg->reserved` bytes are an
/// `INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_new(
    cfg: *const Av1partConfig,
    out: *mut *mut Av1partContext,
) -> Status {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: `out` is non-NULL and points to writable storage (documented).
        unsafe { out.write(std::ptr::null_mut()) };
        let c = arg(cfg, "cfg")?;
        if c.reserved.iter().any(|&b| b != 0) {
            return Err(Error::invalid(
                "cfg->reserved is not all zero (fill the config with av1part_config_default())",
            ));
        }
        let decision_grid = match c.decision_grid {
            0 => crate::DEFAULT_DECISION_GRID,
            g if g < 0 => 0,
            g => g as u32,
        };
        let model_dir = c_path(c.model_dir, "model_dir")?
            .ok_or_else(|| Error::invalid("cfg->model_dir is NULL"))?;
        let provider = match c.execution_provider {
            0 => ProviderChoice::Auto,
            1 => ProviderChoice::Cpu,
            2 => ProviderChoice::Cuda,
            p => {
                return Err(Error::invalid(format!(
                    "execution_provider {p} is not 0 (auto), 1 (cpu) or 2 (cuda)"
                )))
            }
        };
        let nonneg = |v: i32, name: &str| {
            usize::try_from(v).map_err(|_| Error::invalid(format!("{name} {v} is negative")))
        };
        if c.skip_below.is_nan() || c.skip_below > 1.0 {
            return Err(Error::invalid(format!(
                "skip_below {} is not in [0, 1] (or negative)",
                c.skip_below
            )));
        }
        let config = Config {
            model_dir,
            ort_library: c_path(c.ort_library_path, "ort_library_path")?,
            provider,
            require_provider: c.require_provider != 0,
            cuda_device_id: c.cuda_device_id,
            intra_op_threads: nonneg(c.intra_op_threads, "intra_op_threads")?,
            max_sessions: nonneg(c.max_sessions, "max_sessions")?,
            skip_below: if c.skip_below < 0.0 {
                None
            } else {
                Some(c.skip_below)
            },
            frame_threads: nonneg(c.frame_threads, "frame_threads")?,
            decision_grid,
            policy: match c.decision_policy {
                0 => crate::Policy::Flat,
                1 => crate::Policy::Greedy,
                2 => crate::Policy::Balanced,
                p => {
                    return Err(Error::invalid(format!(
                        "decision_policy {p} is not 0 (flat), 1 (greedy) or 2 (balanced)"
                    )))
                }
            },
            cpu_used: match c.cpu_used {
                -1 => None,
                v @ 0..=9 => Some(v as u32),
                v => {
                    return Err(Error::invalid(format!(
                        "cpu_used {v} is not in 0..9 (or -1: not stated)"
                    )))
                }
            },
            ..Config::default()
        };
        let ctx = Context::new(&config)?;
        let boxed = Box::new(Av1partContext {
            bundle_name: cstring_lossy(ctx.bundle_name()),
            provider_note: cstring_lossy(ctx.provider_note()),
            stage_names: ctx
                .stages()
                .iter()
                .map(|s| cstring_lossy(&s.name))
                .collect(),
            class_names: ctx
                .stages()
                .iter()
                .map(|s| s.classes.iter().map(|c| cstring_lossy(&c.name)).collect())
                .collect(),
            ctx,
        });
        // SAFETY: as above.
        unsafe { out.write(Box::into_raw(boxed)) };
        Ok(())
    })
}

/// Destroys the context `*ctx` and sets `*ctx` to NULL. `ctx == NULL` or
/// `*ctx == NULL` does nothing. No call may be using the context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_free(ctx: *mut *mut Av1partContext) {
    let _ = guard(|| {
        if ctx.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL `ctx` points to a context pointer owned by the
        // caller; it is either NULL or came from av1part_context_new().
        let p = unsafe { ctx.replace(std::ptr::null_mut()) };
        if !p.is_null() {
            // SAFETY: `p` came from Box::into_raw in av1part_context_new and
            // the caller gives it up here.
            drop(unsafe { Box::from_raw(p) });
        }
        Ok(())
    });
}

/// The execution provider in use: `AV1PART_PROVIDER_CPU` or
/// `AV1PART_PROVIDER_CUDA` (`AV1PART_PROVIDER_AUTO` for a NULL context).
#[no_mangle]
pub unsafe extern "C" fn av1part_context_execution_provider(
    ctx: *const Av1partContext,
) -> Av1partProvider {
    guard_value(Av1partProvider::Auto, || {
        match ctx_ref(ctx).map(|c| c.ctx.provider()) {
            Some(Provider::Cpu) => Av1partProvider::Cpu,
            Some(Provider::Cuda) => Av1partProvider::Cuda,
            None => Av1partProvider::Auto,
        }
    })
}

/// Why CUDA is not in use although it was asked for (AUTO or CUDA), e.g.
/// ONNX Runtime's error; `""` when there is nothing to say or `ctx` is
/// NULL. Owned by the context; valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_provider_note(
    ctx: *const Av1partContext,
) -> *const c_char {
    guard_value(c"".as_ptr(), || {
        ctx_ref(ctx).map_or(c"".as_ptr(), |c| c.provider_note.as_ptr())
    })
}

/// The bundle's `name`; NULL for a NULL context. Owned by the context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_bundle_name(ctx: *const Av1partContext) -> *const c_char {
    guard_value(std::ptr::null(), || {
        ctx_ref(ctx).map_or(std::ptr::null(), |c| c.bundle_name.as_ptr())
    })
}

/// Number of stages in the bundle (0 for a NULL context). Stage `s` is
/// bit `s` of `Av1partPrediction.stages_run` and row `s` of
/// `stage_probabilities`.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_stage_count(ctx: *const Av1partContext) -> usize {
    guard_value(0, || ctx_ref(ctx).map_or(0, |c| c.stage_names.len()))
}

/// Name of stage `stage` (manifest order); NULL when out of range or `ctx`
/// is NULL. Owned by the context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_stage_name(
    ctx: *const Av1partContext,
    stage: usize,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        ctx_ref(ctx)
            .and_then(|c| c.stage_names.get(stage))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Number of classes of stage `stage` (0 when out of range or `ctx` NULL).
#[no_mangle]
pub unsafe extern "C" fn av1part_context_stage_class_count(
    ctx: *const Av1partContext,
    stage: usize,
) -> usize {
    guard_value(0, || {
        ctx_ref(ctx)
            .and_then(|c| c.class_names.get(stage))
            .map_or(0, |v| v.len())
    })
}

/// Name of class `class_index` of stage `stage`; NULL when out of range or `ctx`
/// is NULL. Owned by the context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_stage_class_name(
    ctx: *const Av1partContext,
    stage: usize,
    class_index: usize,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        ctx_ref(ctx)
            .and_then(|c| c.class_names.get(stage))
            .and_then(|v| v.get(class_index))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Where class `class_index` of stage `stage` leads: its partition (0..9) for a
/// leaf; `-1 - t` for a class that leads to stage `t` (so -1 is stage 0);
/// `INT32_MIN` when out of range or `ctx` is NULL.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_stage_class_target(
    ctx: *const Av1partContext,
    stage: usize,
    class_index: usize,
) -> i32 {
    guard_value(i32::MIN, || {
        let Some(c) = ctx_ref(ctx)
            .and_then(|c| c.ctx.stages().get(stage))
            .and_then(|s| s.classes.get(class_index))
        else {
            return i32::MIN;
        };
        match (c.partition, c.next) {
            (Some(p), _) => p as i32,
            (None, Some(t)) => -1 - t as i32,
            (None, None) => i32::MIN,
        }
    })
}

/// The cascade `skip_below` in effect (config override or the bundle's);
/// -1 for a NULL context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_skip_below(ctx: *const Av1partContext) -> f64 {
    guard_value(-1.0, || ctx_ref(ctx).map_or(-1.0, |c| c.ctx.skip_below()))
}

/// The decision grid in effect (see `Av1partConfig.decision_grid`): 0 when
/// decisions are taken on unrounded probabilities, else the grid (e.g.
/// 1024). -1 for a NULL context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_decision_grid(ctx: *const Av1partContext) -> i32 {
    guard_value(-1, || {
        ctx_ref(ctx).map_or(-1, |c| c.ctx.decision_grid() as i32)
    })
}

/// The prune set of a prediction: the partition types an encoder should
/// search to find the true one with probability `target_recall` (in
/// (0, 1]), by the bundle's own estimate. `*mask` gets bit `k` set for each
/// partition type `k` (libaom numbering) in the set: the fewest types, by
/// decreasing decision value (the cascade on each stage's probabilities
/// rounded to the context's decision grid, skipped stages by their prior;
/// ties to the lower number), whose values add up to at least
/// `target_recall`. The most probable type is always in it. Being computed
/// from rounded values, it is the same on every machine.
///
/// `ctx` and `pred` are borrowed; `pred` must be a successful prediction of
/// this context. `*mask` is 0 on entry and on failure.
///
/// Returns `AV1PART_STATUS_OK`, `INVALID_ARGUMENT` (NULL pointer,
/// `target_recall` not in (0, 1], a prediction of another bundle or a
/// cleared one), `PANIC`.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_prune_set(
    ctx: *const Av1partContext,
    pred: *const Prediction,
    target_recall: f64,
    mask: *mut u32,
) -> Status {
    guard(|| {
        if mask.is_null() {
            return Err(Error::invalid("mask is NULL"));
        }
        // SAFETY: `mask` is non-NULL and points to writable storage (documented).
        unsafe { mask.write(0) };
        let c = ctx_ref(ctx).ok_or_else(|| Error::invalid("ctx is NULL"))?;
        let p = arg(pred, "pred")?;
        let m = c.ctx.prune_set(p, target_recall)?;
        // SAFETY: as above.
        unsafe { mask.write(m) };
        Ok(())
    })
}

/// The decision policy in effect: an `Av1partPolicy`; -1 for a NULL context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_decision_policy(ctx: *const Av1partContext) -> i32 {
    guard_value(-1, || {
        ctx_ref(ctx).map_or(-1, |c| match c.ctx.policy() {
            crate::Policy::Flat => Av1partPolicy::Flat as i32,
            crate::Policy::Greedy => Av1partPolicy::Greedy as i32,
            crate::Policy::Balanced => Av1partPolicy::Balanced as i32,
        })
    })
}

/// The encoder preset (libaom `--cpu-used`) the bundle runs at: the one
/// stated in `Av1partConfig.cpu_used` when the bundle lists it, else the
/// nearest listed one; -1 when the bundle lists no presets (it was not
/// trained with the preset as an input) or for a NULL context.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_cpu_used(ctx: *const Av1partContext) -> i32 {
    guard_value(-1, || {
        ctx_ref(ctx).map_or(-1, |c| c.ctx.preset().map_or(-1, |p| p as i32))
    })
}

/// 1 when the bundle's predictions depend on the previous source frame (a
/// `prev_y` channel of a block tensor some model reads, or a `has_prev` or
/// `block_stats` side feature), else 0 (also for a NULL context). When 0,
/// callers may pass NULL `prev_y` at no loss.
#[no_mangle]
pub unsafe extern "C" fn av1part_context_uses_prev_frame(ctx: *const Av1partContext) -> i32 {
    guard_value(0, || {
        ctx_ref(ctx).map_or(0, |c| c.ctx.uses_prev_frame() as i32)
    })
}

// ---------------------------------------------------------------------------
// Prediction.

/// Number of predictions `av1part_predict_frame()` writes for a
/// `width × height` frame: `ceil(width/16) * ceil(height/16)`. 0 when a
/// dimension is not positive or odd.
#[no_mangle]
pub extern "C" fn av1part_frame_block_count(width: i32, height: i32) -> usize {
    match (usize::try_from(width), usize::try_from(height)) {
        (Ok(w), Ok(h)) => frame_block_count(w, h),
        _ => 0,
    }
}

/// Predicts the partition of one block.
///
/// `ctx` and `block` are borrowed for the call. `*out` is cleared on entry
/// (partition -1, zeros) and filled on success; it stays cleared on
/// failure. Thread-safe.
///
/// Returns `AV1PART_STATUS_OK`, `INVALID_ARGUMENT` (NULL pointer, stride,
/// bit depth, sample above `(1 << bit_depth) - 1`, qindex, frame type,
/// non-zero `reserved` bytes), `INFERENCE` (ONNX Runtime failed, or a
/// stage's output row is not a distribution: every value finite and in
/// [0, 1], the row summing to 1 within `AV1PART_PROB_SUM_TOLERANCE`; the
/// message names the stage), `PANIC`.
#[no_mangle]
pub unsafe extern "C" fn av1part_predict_block(
    ctx: *const Av1partContext,
    block: *const Av1partBlock,
    out: *mut Prediction,
) -> Status {
    // SAFETY: forwards the same contract with n = 1.
    unsafe { av1part_predict_blocks(ctx, block, 1, out) }
}

/// Predicts `n` blocks at once (batched through the models; each stage
/// sees only the blocks that reach it). `blocks[i]` gives `out[i]`.
/// Results equal those of `av1part_predict_block()` on each block (to
/// float rounding, within 1e-6).
///
/// `blocks` (n readable elements) is borrowed; `out` must hold `n`
/// writable elements, cleared on entry and filled only on success. `n == 0`
/// is `INVALID_ARGUMENT`. An invalid block fails the whole call; the
/// message names its index. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn av1part_predict_blocks(
    ctx: *const Av1partContext,
    blocks: *const Av1partBlock,
    n: usize,
    out: *mut Prediction,
) -> Status {
    if n == 0 {
        return guard(|| Err(Error::invalid("n is 0")));
    }
    predict_entry(out, n, |out| {
        let c = ctx_ref(ctx).ok_or_else(|| Error::invalid("ctx is NULL"))?;
        if blocks.is_null() {
            return Err(Error::invalid("blocks is NULL"));
        }
        if n > isize::MAX as usize / std::mem::size_of::<Av1partBlock>() {
            return Err(Error::invalid("n is too large"));
        }
        // SAFETY: `blocks` is non-NULL and the caller provides `n` readable
        // elements (documented); overflow was checked.
        let cblocks = unsafe { std::slice::from_raw_parts(blocks, n) };
        let mut rblocks = Vec::with_capacity(n);
        for (i, b) in cblocks.iter().enumerate() {
            rblocks.push(block_from_c(b).map_err(|e| e.at_block(i))?);
        }
        c.ctx.predict_blocks(&rblocks, out)
    })
}

/// Predicts every 16×16 block of a frame, raster order (row of blocks by
/// row of blocks, left to right): `av1part_frame_block_count(width,
/// height)` predictions. Blocks that reach past the right/bottom edge are
/// predicted on samples replicated from the last column/row (like the
/// encoder's border extension) and carry `AV1PART_PREDICTION_FLAG_PARTIAL`.
///
/// `frame` is borrowed. `out` holds `out_capacity` elements; at least the
/// block count is needed. On entry the first `min(out_capacity, block
/// count)` elements are cleared (partition -1, zeros); none are touched
/// when `frame` is NULL or its size is invalid. The block-count elements
/// are filled only on success. When `out_capacity` is below the block count
/// the call fails with `INVALID_ARGUMENT` and the `out_capacity` elements
/// stay cleared. Odd or non-positive sizes are `INVALID_ARGUMENT`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn av1part_predict_frame(
    ctx: *const Av1partContext,
    frame: *const Av1partFrame,
    out: *mut Prediction,
    out_capacity: usize,
) -> Status {
    let count = match catch(|| {
        let f = arg(frame, "frame")?;
        let count = av1part_frame_block_count(f.width, f.height);
        if count == 0 {
            return Err(Error::invalid(format!(
                "frame size {}×{} must be positive and even (4:2:0)",
                f.width, f.height
            )));
        }
        Ok((count, f.width, f.height))
    }) {
        Ok(c) => c,
        Err(s) => return s,
    };
    let (count, width, height) = count;
    if out_capacity < count {
        return predict_entry(out, out_capacity, |_| {
            Err(Error::invalid(format!(
                "out_capacity {out_capacity} is below the {count} predictions of a {width}×{height} frame"
            )))
        });
    }
    predict_entry(out, count, |out| {
        let c = ctx_ref(ctx).ok_or_else(|| Error::invalid("ctx is NULL"))?;
        let frame = frame_from_c(arg(frame, "frame")?)?;
        c.ctx.predict_frame(&frame, out).map(|_| ())
    })
}

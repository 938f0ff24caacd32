//! The C API, called as C would: NULL pointers, bad strides, bad bit
//! depths, out-of-range samples, n = 0, odd frames, small buffers — each
//! returns a status and a message, never a crash.

mod common;

use std::ffi::{CStr, CString};
use std::ptr;

use av1part::capi::*;
use av1part::{Prediction, Status};

fn last_error() -> String {
    // SAFETY: av1part_last_error never returns NULL.
    unsafe { CStr::from_ptr(av1part_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn cstr(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: the API returns NULL or a valid NUL-terminated string.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

struct Ctx(*mut Av1partContext);
impl Drop for Ctx {
    fn drop(&mut self) {
        unsafe { av1part_context_free(&mut self.0) };
        assert!(self.0.is_null());
    }
}

fn new_ctx(dir: &std::path::Path) -> Ctx {
    let d = CString::new(dir.to_str().unwrap()).unwrap();
    let mut cfg = std::mem::MaybeUninit::<Av1partConfig>::uninit();
    let mut cfg = unsafe {
        av1part_config_default(cfg.as_mut_ptr());
        cfg.assume_init()
    };
    cfg.model_dir = d.as_ptr();
    cfg.execution_provider = Av1partProvider::Cpu as i32;
    let mut ctx = ptr::null_mut();
    let st = unsafe { av1part_context_new(&cfg, &mut ctx) };
    assert_eq!(st, Status::Ok, "{}", last_error());
    assert!(!ctx.is_null());
    Ctx(ctx)
}

/// 16-bit planes for one block.
struct Planes {
    y: Vec<u16>,
    u: Vec<u16>,
    v: Vec<u16>,
    p: Vec<u16>,
}

fn planes(bd: u32, seed: u64) -> Planes {
    let mut r = common::Rng(seed);
    Planes {
        y: r.vec(256, bd),
        u: r.vec(64, bd),
        v: r.vec(64, bd),
        p: r.vec(256, bd),
    }
}

fn cblock(p: &Planes, bd: i32) -> Av1partBlock {
    Av1partBlock {
        y: p.y.as_ptr().cast(),
        u: p.u.as_ptr().cast(),
        v: p.v.as_ptr().cast(),
        prev_y: p.p.as_ptr().cast(),
        y_stride: 16,
        u_stride: 8,
        v_stride: 8,
        prev_y_stride: 16,
        bytes_per_sample: 2,
        bit_depth: bd,
        base_qindex: 100,
        frame_type: Av1partFrameType::Inter as i32,
        reserved: [0; 16],
    }
}

fn predict(ctx: &Ctx, b: &Av1partBlock) -> (Status, Prediction) {
    let mut out = Prediction {
        partition: 77,
        ..Prediction::default()
    };
    let st = unsafe { av1part_predict_block(ctx.0, b, &mut out) };
    (st, out)
}

fn expect_invalid(ctx: &Ctx, b: &Av1partBlock, needle: &str) {
    let (st, out) = predict(ctx, b);
    assert_eq!(st, Status::InvalidArgument);
    let e = last_error();
    assert!(e.contains(needle), "error {e:?} lacks {needle:?}");
    assert_eq!(out.partition, -1, "output cleared on failure");
    assert!(out.probabilities.iter().all(|&p| p == 0.0));
}

#[test]
fn versions_and_strings() {
    let v = cstr(av1part_version()).unwrap();
    assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
    assert!(v.contains('(') && v.ends_with(')'));
    assert_eq!(av1part_abi_version(), AV1PART_ABI_VERSION);
    assert_eq!(
        AV1PART_VERSION_MAJOR.to_string(),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        AV1PART_VERSION_MINOR.to_string(),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        AV1PART_VERSION_PATCH.to_string(),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    for code in -8..=0 {
        let s = cstr(av1part_status_string(code)).unwrap();
        assert!(!s.is_empty() && s != "unknown status", "{code}: {s}");
    }
    assert_eq!(
        cstr(av1part_status_string(Status::Ok as i32)).unwrap(),
        "ok"
    );
    assert_eq!(cstr(av1part_status_string(5)).unwrap(), "unknown status");
    assert_eq!(
        cstr(av1part_status_string(i32::MIN)).unwrap(),
        "unknown status"
    );
    assert_eq!(cstr(av1part_partition_name(0)).unwrap(), "NONE");
    assert_eq!(cstr(av1part_partition_name(9)).unwrap(), "VERT_4");
    assert!(av1part_partition_name(10).is_null());
    assert!(av1part_partition_name(-1).is_null());
}

#[test]
fn status_values_are_fixed() {
    // Append-only numbering: these must never change.
    let fixed = [
        (Status::Ok, 0),
        (Status::InvalidArgument, -1),
        (Status::OrtLoad, -2),
        (Status::OrtConflict, -3),
        (Status::ModelLoad, -4),
        (Status::ProviderUnavailable, -5),
        (Status::Inference, -6),
        (Status::Panic, -7),
        (Status::Internal, -8),
    ];
    for (s, v) in fixed {
        assert_eq!(s as i32, v);
    }
}

#[test]
fn frame_block_count() {
    assert_eq!(av1part_frame_block_count(16, 16), 1);
    assert_eq!(av1part_frame_block_count(18, 16), 2);
    assert_eq!(av1part_frame_block_count(1920, 1080), 120 * 68);
    assert_eq!(av1part_frame_block_count(17, 16), 0);
    assert_eq!(av1part_frame_block_count(16, 15), 0);
    assert_eq!(av1part_frame_block_count(0, 16), 0);
    assert_eq!(av1part_frame_block_count(-16, 16), 0);
}

#[test]
fn context_new_rejects_bad_arguments() {
    let mut ctx: *mut Av1partContext = ptr::dangling_mut();
    // NULL cfg: status, and *out cleared.
    assert_eq!(
        unsafe { av1part_context_new(ptr::null(), &mut ctx) },
        Status::InvalidArgument
    );
    assert!(ctx.is_null());
    assert!(last_error().contains("cfg is NULL"));
    let mut cfg = std::mem::MaybeUninit::<Av1partConfig>::uninit();
    let mut cfg = unsafe {
        av1part_config_default(cfg.as_mut_ptr());
        cfg.assume_init()
    };
    assert_eq!(cfg.skip_below, -1.0);
    assert_eq!(cfg.execution_provider, Av1partProvider::Auto as i32);
    // NULL out.
    assert_eq!(
        unsafe { av1part_context_new(&cfg, ptr::null_mut()) },
        Status::InvalidArgument
    );
    // NULL model_dir.
    assert_eq!(
        unsafe { av1part_context_new(&cfg, &mut ctx) },
        Status::InvalidArgument
    );
    assert!(last_error().contains("model_dir"));
    let d = CString::new(common::tiny().to_str().unwrap()).unwrap();
    cfg.model_dir = d.as_ptr();
    cfg.execution_provider = 7;
    assert_eq!(
        unsafe { av1part_context_new(&cfg, &mut ctx) },
        Status::InvalidArgument
    );
    assert!(last_error().contains("execution_provider"));
    cfg.execution_provider = 1;
    cfg.skip_below = 1.5;
    assert_eq!(
        unsafe { av1part_context_new(&cfg, &mut ctx) },
        Status::InvalidArgument
    );
    cfg.skip_below = f64::NAN;
    assert_eq!(
        unsafe { av1part_context_new(&cfg, &mut ctx) },
        Status::InvalidArgument
    );
    cfg.skip_below = -1.0;
    cfg.reserved[47] = 1;
    assert_eq!(
        unsafe { av1part_context_new(&cfg, &mut ctx) },
        Status::InvalidArgument
    );
    assert!(last_error().contains("reserved"));
    cfg.reserved[47] = 0;
    for bad in [-2, 10, i32::MIN] {
        cfg.cpu_used = bad;
        assert_eq!(
            unsafe { av1part_context_new(&cfg, &mut ctx) },
            Status::InvalidArgument,
            "cpu_used {bad}"
        );
        assert!(last_error().contains("cpu_used"), "{}", last_error());
    }
    cfg.cpu_used = -1;
    assert_eq!(unsafe { av1part_context_cpu_used(std::ptr::null()) }, -1);
    for bad in [3, 1000, 1 << 17] {
        cfg.decision_grid = bad;
        assert_eq!(
            unsafe { av1part_context_new(&cfg, &mut ctx) },
            Status::InvalidArgument,
            "decision_grid {bad}"
        );
        assert!(last_error().contains("decision_grid"), "{}", last_error());
    }
    cfg.decision_grid = 0;
    cfg.intra_op_threads = -2;
    assert_eq!(
        unsafe { av1part_context_new(&cfg, &mut ctx) },
        Status::InvalidArgument
    );
    cfg.intra_op_threads = 0;
    let bad = CString::new("/nonexistent/bundle").unwrap();
    cfg.model_dir = bad.as_ptr();
    assert_eq!(
        unsafe { av1part_context_new(&cfg, &mut ctx) },
        Status::ModelLoad
    );
    assert!(last_error().contains("manifest.json"));
    assert!(ctx.is_null());
    // Free is NULL-safe both ways.
    unsafe { av1part_context_free(ptr::null_mut()) };
    let mut null_ctx: *mut Av1partContext = ptr::null_mut();
    unsafe { av1part_context_free(&mut null_ctx) };
}

#[test]
fn accessors() {
    let ctx = new_ctx(&common::tiny());
    unsafe {
        assert_eq!(
            av1part_context_execution_provider(ctx.0),
            Av1partProvider::Cpu
        );
        assert_eq!(cstr(av1part_context_provider_note(ctx.0)).unwrap(), "");
        assert_eq!(
            cstr(av1part_context_bundle_name(ctx.0)).unwrap(),
            "test-tiny"
        );
        assert_eq!(av1part_context_stage_count(ctx.0), 4);
        assert_eq!(
            cstr(av1part_context_stage_name(ctx.0, 0)).unwrap(),
            "stage1"
        );
        assert!(av1part_context_stage_name(ctx.0, 4).is_null());
        assert_eq!(av1part_context_stage_class_count(ctx.0, 1), 3);
        assert_eq!(av1part_context_stage_class_count(ctx.0, 9), 0);
        assert_eq!(
            cstr(av1part_context_stage_class_name(ctx.0, 1, 2)).unwrap(),
            "AB"
        );
        assert!(av1part_context_stage_class_name(ctx.0, 1, 3).is_null());
        assert_eq!(av1part_context_stage_class_target(ctx.0, 0, 0), 0); // NONE leaf
        assert_eq!(av1part_context_stage_class_target(ctx.0, 0, 1), -1 - 1); // -> stage2 (index 1)
        assert_eq!(av1part_context_stage_class_target(ctx.0, 0, 5), i32::MIN);
        assert_eq!(av1part_context_skip_below(ctx.0), 0.0);
        assert_eq!(av1part_context_uses_prev_frame(ctx.0), 1);
        // NULL context.
        assert_eq!(
            av1part_context_execution_provider(ptr::null()),
            Av1partProvider::Auto
        );
        assert_eq!(
            cstr(av1part_context_provider_note(ptr::null())).unwrap(),
            ""
        );
        assert!(av1part_context_bundle_name(ptr::null()).is_null());
        assert_eq!(av1part_context_stage_count(ptr::null()), 0);
        assert_eq!(av1part_context_skip_below(ptr::null()), -1.0);
        assert_eq!(av1part_context_uses_prev_frame(ptr::null()), 0);
    }
}

#[test]
fn auto_provider_without_gpu_falls_back_with_a_note() {
    let d = CString::new(common::tiny().to_str().unwrap()).unwrap();
    let mut cfg = std::mem::MaybeUninit::<Av1partConfig>::uninit();
    let mut cfg = unsafe {
        av1part_config_default(cfg.as_mut_ptr());
        cfg.assume_init()
    };
    cfg.model_dir = d.as_ptr();
    cfg.execution_provider = Av1partProvider::Cuda as i32;
    let mut ctx = ptr::null_mut();
    let st = unsafe { av1part_context_new(&cfg, &mut ctx) };
    assert_eq!(st, Status::Ok, "{}", last_error());
    let ctx = Ctx(ctx);
    let prov = unsafe { av1part_context_execution_provider(ctx.0) };
    let note = cstr(unsafe { av1part_context_provider_note(ctx.0) }).unwrap();
    if prov == Av1partProvider::Cpu {
        assert!(note.contains("CUDA"), "fallback must say why: {note:?}");
        // Strict mode fails instead.
        cfg.require_provider = 1;
        let mut ctx2 = ptr::null_mut();
        assert_eq!(
            unsafe { av1part_context_new(&cfg, &mut ctx2) },
            Status::ProviderUnavailable
        );
        assert!(ctx2.is_null());
        assert!(last_error().contains("CUDA"));
    } else {
        assert_eq!(prov, Av1partProvider::Cuda);
        assert_eq!(note, "");
    }
}

#[test]
fn predict_block_bad_input() {
    let ctx = new_ctx(&common::tiny());
    let p = planes(10, 7);
    let good = cblock(&p, 10);
    let (st, out) = predict(&ctx, &good);
    assert_eq!(st, Status::Ok, "{}", last_error());
    assert!((0..10).contains(&out.partition));

    // Reserved bytes must be zero, as in the config.
    for i in [0, 15] {
        let mut b = good;
        b.reserved[i] = 0x80;
        expect_invalid(&ctx, &b, "block->reserved");
    }

    // NULL context / block / output.
    let mut out = Prediction::default();
    assert_eq!(
        unsafe { av1part_predict_block(ptr::null(), &good, &mut out) },
        Status::InvalidArgument
    );
    assert!(last_error().contains("ctx is NULL"));
    assert_eq!(out.partition, -1);
    assert_eq!(
        unsafe { av1part_predict_block(ctx.0, ptr::null(), &mut out) },
        Status::InvalidArgument
    );
    assert_eq!(
        unsafe { av1part_predict_block(ctx.0, &good, ptr::null_mut()) },
        Status::InvalidArgument
    );
    assert!(last_error().contains("out is NULL"));

    let mut b = good;
    b.y = ptr::null();
    expect_invalid(&ctx, &b, "y is NULL");
    let mut b = good;
    b.v = ptr::null();
    expect_invalid(&ctx, &b, "v is NULL");
    for s in [0isize, -16, 15] {
        let mut b = good;
        b.y_stride = s;
        expect_invalid(&ctx, &b, "y_stride");
    }
    let mut b = good;
    b.u_stride = 7;
    expect_invalid(&ctx, &b, "u_stride");
    let mut b = good;
    b.prev_y_stride = 0;
    expect_invalid(&ctx, &b, "prev_y_stride");
    let mut b = good;
    b.y_stride = isize::MAX;
    expect_invalid(&ctx, &b, "y_stride");
    for bd in [0, 7, 9, 11, 16] {
        let mut b = good;
        b.bit_depth = bd;
        expect_invalid(&ctx, &b, "bit_depth");
    }
    for bps in [0, 3, 4] {
        let mut b = good;
        b.bytes_per_sample = bps;
        expect_invalid(&ctx, &b, "bytes_per_sample");
    }
    let mut b = good;
    b.bytes_per_sample = 1; // 8-bit samples but bit depth 10
    expect_invalid(&ctx, &b, "8-bit samples with bit depth 10");
    for q in [-1, 256] {
        let mut b = good;
        b.base_qindex = q;
        expect_invalid(&ctx, &b, "base_qindex");
    }
    let mut b = good;
    b.frame_type = 3;
    expect_invalid(&ctx, &b, "frame_type");
    // Misaligned 16-bit pointer.
    let mut b = good;
    b.y = unsafe { p.y.as_ptr().cast::<u8>().add(1) }.cast();
    expect_invalid(&ctx, &b, "aligned");

    // Samples above (1 << bd) - 1, in each plane.
    for plane in 0..4 {
        let mut q = planes(10, 9);
        match plane {
            0 => q.y[255] = 1024,
            1 => q.u[3] = 1024,
            2 => q.v[63] = 4095,
            _ => q.p[17] = 1024,
        }
        let b = cblock(&q, 10);
        expect_invalid(&ctx, &b, "exceeds 1023");
    }
    // 12-bit accepts 4095; 8-bit in u16 rejects 256.
    let mut q = planes(12, 3);
    q.y[0] = 4095;
    assert_eq!(predict(&ctx, &cblock(&q, 12)).0, Status::Ok);
    let mut q = planes(8, 3);
    q.y[0] = 256;
    expect_invalid(&ctx, &cblock(&q, 8), "exceeds 255");
}

#[test]
fn predict_blocks_n_zero_and_bad_index() {
    let ctx = new_ctx(&common::tiny());
    let p = planes(8, 1);
    let good = cblock(&p, 8);
    let mut out = [Prediction::default(); 3];
    assert_eq!(
        unsafe { av1part_predict_blocks(ctx.0, &good, 0, out.as_mut_ptr()) },
        Status::InvalidArgument
    );
    assert!(last_error().contains("n is 0"));
    let mut bad = good;
    bad.bit_depth = 9;
    let blocks = [good, good, bad];
    assert_eq!(
        unsafe { av1part_predict_blocks(ctx.0, blocks.as_ptr(), 3, out.as_mut_ptr()) },
        Status::InvalidArgument
    );
    assert!(last_error().contains("block 2"), "{}", last_error());
    assert!(out.iter().all(|o| o.partition == -1));
    assert_eq!(
        unsafe { av1part_predict_blocks(ctx.0, ptr::null(), 3, out.as_mut_ptr()) },
        Status::InvalidArgument
    );
    let blocks = [good, good, good];
    assert_eq!(
        unsafe { av1part_predict_blocks(ctx.0, blocks.as_ptr(), 3, out.as_mut_ptr()) },
        Status::Ok
    );
    assert!(out.iter().all(|o| (0..10).contains(&o.partition)));
}

#[test]
fn eight_bit_samples_equal_sixteen_bit() {
    let ctx = new_ctx(&common::tiny());
    let p = planes(8, 11);
    let (st16, out16) = predict(&ctx, &cblock(&p, 8));
    assert_eq!(st16, Status::Ok);
    let (y, u, v, pp): (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) = (
        p.y.iter().map(|&s| s as u8).collect(),
        p.u.iter().map(|&s| s as u8).collect(),
        p.v.iter().map(|&s| s as u8).collect(),
        p.p.iter().map(|&s| s as u8).collect(),
    );
    let mut b = cblock(&p, 8);
    b.bytes_per_sample = 1;
    b.y = y.as_ptr().cast();
    b.u = u.as_ptr().cast();
    b.v = v.as_ptr().cast();
    b.prev_y = pp.as_ptr().cast();
    let (st8, out8) = predict(&ctx, &b);
    assert_eq!(st8, Status::Ok);
    assert_eq!(out8, out16);
}

#[test]
fn strided_block_equals_packed_block() {
    let ctx = new_ctx(&common::tiny());
    let p = planes(12, 5);
    let (_, packed) = predict(&ctx, &cblock(&p, 12));
    // Same samples inside wider planes.
    let widen = |src: &[u16], w: usize, stride: usize| {
        let mut out = vec![4095u16; stride * w];
        for r in 0..w {
            out[r * stride..r * stride + w].copy_from_slice(&src[r * w..(r + 1) * w]);
        }
        out
    };
    let (y, u, v, pp) = (
        widen(&p.y, 16, 40),
        widen(&p.u, 8, 21),
        widen(&p.v, 8, 8),
        widen(&p.p, 16, 17),
    );
    let mut b = cblock(&p, 12);
    b.y = y.as_ptr().cast();
    b.y_stride = 40;
    b.u = u.as_ptr().cast();
    b.u_stride = 21;
    b.v = v.as_ptr().cast();
    b.v_stride = 8;
    b.prev_y = pp.as_ptr().cast();
    b.prev_y_stride = 17;
    let (st, strided) = predict(&ctx, &b);
    assert_eq!(st, Status::Ok);
    assert_eq!(strided, packed);
    // No prev: flag clear, and equals passing prev = current luma.
    let mut b2 = cblock(&p, 12);
    b2.prev_y = ptr::null();
    let (_, noprev) = predict(&ctx, &b2);
    assert_eq!(noprev.flags & av1part::PREDICTION_FLAG_HAS_PREV, 0);
    assert_ne!(packed.flags & av1part::PREDICTION_FLAG_HAS_PREV, 0);
}

/// A synthetic 4:2:0 frame, 16-bit samples.
struct TestFrame {
    w: usize,
    h: usize,
    y: Vec<u16>,
    u: Vec<u16>,
    v: Vec<u16>,
    p: Vec<u16>,
}

fn test_frame(w: usize, h: usize, bd: u32, seed: u64) -> TestFrame {
    let mut r = common::Rng(seed);
    TestFrame {
        w,
        h,
        y: r.vec(w * h, bd),
        u: r.vec(w * h / 4, bd),
        v: r.vec(w * h / 4, bd),
        p: r.vec(w * h, bd),
    }
}

fn cframe(f: &TestFrame, bd: i32, with_prev: bool) -> Av1partFrame {
    Av1partFrame {
        y: f.y.as_ptr().cast(),
        u: f.u.as_ptr().cast(),
        v: f.v.as_ptr().cast(),
        prev_y: if with_prev {
            f.p.as_ptr().cast()
        } else {
            ptr::null()
        },
        y_stride: f.w as isize,
        u_stride: (f.w / 2) as isize,
        v_stride: (f.w / 2) as isize,
        prev_y_stride: f.w as isize,
        width: f.w as i32,
        height: f.h as i32,
        bytes_per_sample: 2,
        bit_depth: bd,
        base_qindex: 180,
        frame_type: Av1partFrameType::Key as i32,
        reserved: [0; 16],
    }
}

/// The block at (bx, by) with edge replication, as packed planes.
fn extract(f: &TestFrame, bx: usize, by: usize) -> Planes {
    let get = |plane: &[u16], w: usize, h: usize, x0: usize, y0: usize, n: usize| {
        let mut out = Vec::with_capacity(n * n);
        for r in 0..n {
            for c in 0..n {
                out.push(plane[(y0 + r).min(h - 1) * w + (x0 + c).min(w - 1)]);
            }
        }
        out
    };
    Planes {
        y: get(&f.y, f.w, f.h, bx * 16, by * 16, 16),
        u: get(&f.u, f.w / 2, f.h / 2, bx * 8, by * 8, 8),
        v: get(&f.v, f.w / 2, f.h / 2, bx * 8, by * 8, 8),
        p: get(&f.p, f.w, f.h, bx * 16, by * 16, 16),
    }
}

#[test]
fn predict_frame_matches_blocks_with_edge_replication() {
    let ctx = new_ctx(&common::tiny());
    let f = test_frame(70, 38, 10, 21); // 5×3 blocks, right and bottom partial
    let n = av1part_frame_block_count(70, 38);
    assert_eq!(n, 15);
    let mut out = vec![Prediction::default(); n + 2];
    out[n].partition = 55; // beyond the count: untouched
    let st =
        unsafe { av1part_predict_frame(ctx.0, &cframe(&f, 10, true), out.as_mut_ptr(), out.len()) };
    assert_eq!(st, Status::Ok, "{}", last_error());
    assert_eq!(out[n].partition, 55);
    for by in 0..3 {
        for bx in 0..5 {
            let i = by * 5 + bx;
            let partial = bx == 4 || by == 2;
            assert_eq!(
                out[i].flags & av1part::PREDICTION_FLAG_PARTIAL != 0,
                partial,
                "block {i}"
            );
            let planes = extract(&f, bx, by);
            let mut b = cblock(&planes, 10);
            b.base_qindex = 180;
            b.frame_type = Av1partFrameType::Key as i32;
            let (st, single) = predict(&ctx, &b);
            assert_eq!(st, Status::Ok, "{}", last_error());
            assert_eq!(single.partition, out[i].partition, "block {i}");
            for (a, c) in single.probabilities.iter().zip(&out[i].probabilities) {
                assert!((a - c).abs() <= 1e-6, "block {i}: {a} vs {c}");
            }
            assert_eq!(
                single.flags | (out[i].flags & av1part::PREDICTION_FLAG_PARTIAL),
                out[i].flags
            );
        }
    }
}

#[test]
fn predict_frame_bad_input() {
    let ctx = new_ctx(&common::tiny());
    let f = test_frame(32, 32, 8, 3);
    let good = cframe(&f, 8, false);
    let mut out = vec![Prediction::default(); 4];
    let run = |fr: &Av1partFrame, out: &mut Vec<Prediction>, cap: usize| unsafe {
        av1part_predict_frame(ctx.0, fr, out.as_mut_ptr(), cap)
    };
    assert_eq!(run(&good, &mut out, 4), Status::Ok, "{}", last_error());
    for (w, h) in [(31, 32), (32, 33), (0, 32), (32, -2)] {
        let mut fr = good;
        fr.width = w;
        fr.height = h;
        assert_eq!(run(&fr, &mut out, 4), Status::InvalidArgument, "{w}×{h}");
        assert!(last_error().contains("even"), "{}", last_error());
    }
    // Too small a capacity: the capacity's worth is cleared, nothing past it.
    out.iter_mut().for_each(|p| p.partition = 77);
    assert_eq!(run(&good, &mut out, 3), Status::InvalidArgument);
    assert!(last_error().contains("out_capacity"));
    assert!(out[..3]
        .iter()
        .all(|p| p.partition == -1 && p.probabilities == [0.0; 10]));
    assert_eq!(out[3].partition, 77);
    let mut fr = good;
    fr.reserved[15] = 1;
    assert_eq!(run(&fr, &mut out, 4), Status::InvalidArgument);
    assert!(last_error().contains("frame->reserved"), "{}", last_error());
    assert_eq!(
        unsafe { av1part_predict_frame(ctx.0, &good, ptr::null_mut(), 4) },
        Status::InvalidArgument
    );
    assert_eq!(
        unsafe { av1part_predict_frame(ctx.0, ptr::null(), out.as_mut_ptr(), 4) },
        Status::InvalidArgument
    );
    assert_eq!(
        unsafe { av1part_predict_frame(ptr::null(), &good, out.as_mut_ptr(), 4) },
        Status::InvalidArgument
    );
    assert!(out.iter().all(|o| o.partition == -1));
    let mut fr = good;
    fr.u_stride = 15;
    assert_eq!(run(&fr, &mut out, 4), Status::InvalidArgument);
    assert!(last_error().contains("u_stride"));
    let mut fr = good;
    fr.bit_depth = 10;
    fr.bytes_per_sample = 1;
    assert_eq!(run(&fr, &mut out, 4), Status::InvalidArgument);
    let mut g = test_frame(32, 32, 8, 3);
    g.v[40] = 300;
    assert_eq!(
        run(&cframe(&g, 8, false), &mut out, 4),
        Status::InvalidArgument
    );
    assert!(last_error().contains("exceeds 255"), "{}", last_error());
    let mut fr = good;
    fr.prev_y = f.p.as_ptr().cast();
    fr.prev_y_stride = 8;
    assert_eq!(run(&fr, &mut out, 4), Status::InvalidArgument);
    assert!(last_error().contains("prev_y_stride"));
}

#[test]
fn last_error_is_per_thread() {
    let ctx = new_ctx(&common::tiny());
    let mut out = Prediction::default();
    assert_eq!(
        unsafe { av1part_predict_block(ctx.0, ptr::null(), &mut out) },
        Status::InvalidArgument
    );
    let main_err = last_error();
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
    assert_eq!(last_error(), main_err);
}

#[test]
fn predict_frame_threads_do_not_change_results() {
    // 1080p-like width, several chunks of 256 blocks.
    let f = test_frame(640, 360, 12, 99);
    let n = av1part_frame_block_count(640, 360);
    let run = |frame_threads: usize| {
        let mut cfg = common::config(&common::tiny());
        cfg.frame_threads = frame_threads;
        cfg.max_sessions = 4;
        let ctx = av1part::Context::new(&cfg).unwrap();
        let fr = av1part::Frame {
            width: 640,
            height: 360,
            y: av1part::Plane {
                samples: av1part::Samples::U16(&f.y),
                stride: 640,
            },
            u: av1part::Plane {
                samples: av1part::Samples::U16(&f.u),
                stride: 320,
            },
            v: av1part::Plane {
                samples: av1part::Samples::U16(&f.v),
                stride: 320,
            },
            prev_y: Some(av1part::Plane {
                samples: av1part::Samples::U16(&f.p),
                stride: 640,
            }),
            bit_depth: 12,
            side: av1part::SideInfo {
                base_qindex: 30,
                frame_type: av1part::FrameType::Inter,
            },
        };
        let mut out = vec![Prediction::default(); n];
        assert_eq!(ctx.predict_frame(&fr, &mut out).unwrap(), n);
        out
    };
    let one = run(1);
    let many = run(4);
    assert_eq!(one, many);
    // Bottom row is partial (360 = 22.5 blocks).
    assert!(one[n - 1].flags & av1part::PREDICTION_FLAG_PARTIAL != 0);
    assert!(one[0].flags & av1part::PREDICTION_FLAG_PARTIAL == 0);
}

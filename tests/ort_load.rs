//! Loading ONNX Runtime: a missing or wrong library is a status, never a
//! panic, and one process holds one runtime. One test function, because
//! the runtime is process-global and the steps must run in order.

mod common;

use std::path::PathBuf;

use av1part::{Context, Error, Status};

fn with_lib(path: PathBuf) -> Result<Context, Error> {
    let mut cfg = common::config(&common::tiny());
    cfg.ort_library = Some(path);
    Context::new(&cfg)
}

#[test]
fn ort_library_errors_then_load_then_conflict() {
    let tmp = tempfile::tempdir().unwrap();

    // 0. $AV1PART_ORT_LIB is used when the config names no library. (This
    //    binary has a single test, so no other thread reads the variable.)
    let via_env = tmp.path().join("from-env.so");
    std::env::set_var(av1part::ORT_LIB_ENV, &via_env);
    let e = Context::new(&common::config(&common::tiny())).unwrap_err();
    std::env::remove_var(av1part::ORT_LIB_ENV);
    assert_eq!(e.status(), Status::OrtLoad, "{e}");
    assert!(e.to_string().contains("from-env.so"), "{e}");

    // 1. Missing file.
    let e = with_lib(tmp.path().join("libonnxruntime.so.404")).unwrap_err();
    assert_eq!(e.status(), Status::OrtLoad, "{e}");
    assert!(e.to_string().contains("libonnxruntime.so.404"), "{e}");

    // 2. Not a shared library at all.
    let junk = tmp.path().join("libjunk.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let e = with_lib(junk).unwrap_err();
    assert_eq!(e.status(), Status::OrtLoad, "{e}");
    assert!(e.to_string().contains("cannot load"), "{e}");

    // 3. A real shared library that is not ONNX Runtime.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    if let Some(libm) = libm {
        let e = with_lib(libm).unwrap_err();
        assert_eq!(e.status(), Status::OrtLoad, "{e}");
        assert!(e.to_string().contains("OrtGetApiBase"), "{e}");
    }

    // 4. The default search (config NULL) finds and loads the real one.
    let ctx = Context::new(&common::config(&common::tiny())).expect("default ONNX Runtime loads");
    let loaded = ctx.ort_library().to_path_buf();
    assert!(ctx.ort_version().starts_with("1."), "{}", ctx.ort_version());

    // 5. Same library again (explicitly): reused.
    with_lib(loaded.clone()).expect("same library is reused");

    // 6. Another copy of the library at another path: conflict.
    let copy = tmp.path().join("libonnxruntime.so.1.31.1");
    std::fs::copy(&loaded, &copy).unwrap();
    let e = with_lib(copy).unwrap_err();
    assert_eq!(e.status(), Status::OrtConflict, "{e}");
    assert!(matches!(e, Error::OrtConflict { .. }));

    // 7. A missing library is still a clean error after loading.
    let e = with_lib(tmp.path().join("missing.so")).unwrap_err();
    assert_eq!(e.status(), Status::OrtLoad, "{e}");
}

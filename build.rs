//! Build script: records the git hash and the default ONNX Runtime path,
//! and regenerates `include/av1part.h` from `src/capi.rs` with cbindgen.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git_hash(dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let h = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!h.is_empty()).then_some(h)
}

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));

    // Version string: git hash when building from a checkout.
    let hash = std::env::var("AV1PART_GIT_HASH")
        .ok()
        .or_else(|| git_hash(&dir))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AV1PART_GIT_HASH={hash}");
    println!("cargo:rerun-if-env-changed=AV1PART_GIT_HASH");
    for f in [".git/HEAD", ".git/index"] {
        if dir.join(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }

    // Default ONNX Runtime library: the one scripts/setup.sh installs,
    // overridable at build time.
    println!("cargo:rerun-if-env-changed=AV1PART_ORT_LIB_DEFAULT");
    let ort_default = std::env::var("AV1PART_ORT_LIB_DEFAULT").unwrap_or_else(|_| {
        dir.join(".deps/onnxruntime/lib/libonnxruntime.so.1.31.1")
            .display()
            .to_string()
    });
    println!("cargo:rustc-env=AV1PART_ORT_LIB_DEFAULT={ort_default}");

    // SONAME libav1part.so.<ABI version>, so that an incompatible library is
    // never picked up by a binary linked against another ABI.
    println!("cargo:rerun-if-changed=src/capi.rs");
    let abi = std::fs::read_to_string(dir.join("src/capi.rs"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("pub const AV1PART_ABI_VERSION: u32 = "))
                .and_then(|v| v.trim_end_matches(';').trim().parse::<u32>().ok())
        })
        .unwrap_or(0);
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libav1part.so.{abi}");
    }

    // C header. Written only when its content changes.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    match cbindgen::generate(&dir) {
        Ok(bindings) => {
            let mut buf = Vec::new();
            bindings.write(&mut buf);
            let path = dir.join("include/av1part.h");
            if std::fs::read(&path).ok().as_deref() != Some(&buf[..]) {
                let _ = std::fs::create_dir_all(dir.join("include"));
                if let Err(e) = std::fs::write(&path, &buf) {
                    println!("cargo:warning=could not write {}: {e}", path.display());
                }
            }
        }
        Err(e) => println!("cargo:warning=cbindgen failed: {e}"),
    }
}

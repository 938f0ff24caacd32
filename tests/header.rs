//! The committed C header must be what cbindgen generates from the sources
//! now, and its version macros must match Cargo.toml.

use std::path::PathBuf;

#[test]
fn header_is_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bindings = cbindgen::generate(&root).expect("cbindgen runs");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).unwrap();
    let committed =
        std::fs::read_to_string(root.join("include/av1part.h")).expect("include/av1part.h");
    assert!(
        fresh == committed,
        "include/av1part.h is stale: run `cargo build` and commit the regenerated header"
    );
}

#[test]
fn header_version_macros_match_cargo() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let h = std::fs::read_to_string(root.join("include/av1part.h")).unwrap();
    for (name, want) in [
        ("AV1PART_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("AV1PART_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("AV1PART_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {name} {want}\n");
        assert!(h.contains(&line), "header lacks `{}`", line.trim());
    }
}

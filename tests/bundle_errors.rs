//! Malformed bundles: each is a copy of test-tiny broken one way, and each
//! must fail with a model-load error naming the file and the field.

mod common;

use std::path::Path;

use av1part::Context;
use serde_json::Value;

/// Copies test-tiny into a temp dir.
fn copy_tiny() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(common::tiny()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest(dir: &Path, m: &Value) {
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(m).unwrap(),
    )
    .unwrap();
}

fn sha(path: &Path) -> String {
    use std::process::Command;
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn edit(f: impl FnOnce(&mut Value), needles: &[&str]) {
    let d = copy_tiny();
    let mut m = manifest(d.path());
    f(&mut m);
    write_manifest(d.path(), &m);
    common::expect_model_error(d.path(), needles);
}

#[test]
fn intact_copy_loads() {
    let d = copy_tiny();
    Context::new(&common::config(d.path())).unwrap();
}

#[test]
fn missing_bundle_dir() {
    common::expect_model_error(
        Path::new("/nonexistent/av1part-bundle"),
        &["av1part-bundle", "manifest.json", "cannot open"],
    );
}

#[test]
fn emptied_data_files_is_refused() {
    // The ONNX files still reference backbone.data, now unlisted: its
    // bytes would no longer be hash-checked.
    edit(
        |m| m["data_files"] = serde_json::json!([]),
        &["backbone.data", "data_files", "does not list"],
    );
}

#[test]
fn duplicate_data_file_is_refused() {
    edit(
        |m| {
            let d = m["data_files"][0].clone();
            m["data_files"].as_array_mut().unwrap().push(d);
        },
        &["data_files[1].file", "listed twice"],
    );
}

#[test]
fn every_weight_is_hash_checked() {
    // Changing one byte of the external data fails the load.
    let d = copy_tiny();
    let p = d.path().join("backbone.data");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n / 3] ^= 0x40;
    std::fs::write(&p, b).unwrap();
    common::expect_model_error(d.path(), &["backbone.data", "SHA-256 mismatch"]);
}

#[test]
fn stage_symlinked_outside_the_bundle_is_refused() {
    let d = copy_tiny();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("stage2.onnx");
    std::fs::rename(d.path().join("stage2.onnx"), &target).unwrap();
    std::os::unix::fs::symlink(&target, d.path().join("stage2.onnx")).unwrap();
    common::expect_model_error(d.path(), &["stage2.onnx", "outside the bundle directory"]);
}

#[test]
fn symlink_inside_the_bundle_is_accepted() {
    let d = copy_tiny();
    std::fs::create_dir(d.path().join("models")).unwrap();
    std::fs::rename(
        d.path().join("stage2.onnx"),
        d.path().join("models/stage2.onnx"),
    )
    .unwrap();
    std::os::unix::fs::symlink("models/stage2.onnx", d.path().join("stage2.onnx")).unwrap();
    Context::new(&common::config(d.path())).unwrap();
}

#[test]
fn model_file_linked_to_dev_zero_is_refused() {
    let d = copy_tiny();
    std::fs::remove_file(d.path().join("stage1.onnx")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.path().join("stage1.onnx")).unwrap();
    common::expect_model_error(d.path(), &["stage1.onnx", "outside the bundle directory"]);
}

#[test]
fn manifest_fifo_does_not_hang() {
    let d = copy_tiny();
    let m = d.path().join("manifest.json");
    std::fs::remove_file(&m).unwrap();
    let c = std::ffi::CString::new(m.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o600) }, 0);
    let t0 = std::time::Instant::now();
    common::expect_model_error(d.path(), &["manifest.json", "a FIFO"]);
    assert!(t0.elapsed().as_secs() < 10);
}

#[test]
fn oversized_manifest_is_refused() {
    let d = copy_tiny();
    let mut text = std::fs::read_to_string(d.path().join("manifest.json")).unwrap();
    text.push_str(&" ".repeat(1 << 20));
    std::fs::write(d.path().join("manifest.json"), text).unwrap();
    common::expect_model_error(d.path(), &["manifest.json", "over the limit"]);
}

extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

#[test]
fn bad_json() {
    let d = copy_tiny();
    std::fs::write(d.path().join("manifest.json"), "{ not json").unwrap();
    common::expect_model_error(d.path(), &["manifest.json", "(json)"]);
}

#[test]
fn missing_field() {
    edit(
        |m| drop(m.as_object_mut().unwrap().remove("stages")),
        &["manifest.json", "stages"],
    );
}

#[test]
fn wrong_hash() {
    edit(
        |m| m["stages"][1]["sha256"] = Value::from("0".repeat(64)),
        &["stage2.onnx", "stages[1].sha256", "mismatch"],
    );
}

#[test]
fn malformed_hash() {
    edit(
        |m| m["trunk"]["sha256"] = Value::from("xyz"),
        &["manifest.json", "trunk.sha256"],
    );
}

#[test]
fn missing_model_file() {
    let d = copy_tiny();
    std::fs::remove_file(d.path().join("stage3_ab.onnx")).unwrap();
    common::expect_model_error(d.path(), &["stage3_ab.onnx", "cannot read"]);
}

#[test]
fn missing_data_file() {
    let d = copy_tiny();
    std::fs::remove_file(d.path().join("backbone.data")).unwrap();
    common::expect_model_error(d.path(), &["backbone.data"]);
}

#[test]
fn corrupt_data_file() {
    let d = copy_tiny();
    let p = d.path().join("backbone.data");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&p, bytes).unwrap();
    common::expect_model_error(
        d.path(),
        &["backbone.data", "data_files[0].sha256", "mismatch"],
    );
}

#[test]
fn corrupt_onnx_with_matching_hash() {
    // Garbage that hashes right: ONNX Runtime itself must reject it.
    let d = copy_tiny();
    let p = d.path().join("stage1.onnx");
    std::fs::write(&p, b"this is not an onnx model").unwrap();
    let mut m = manifest(d.path());
    m["stages"][0]["sha256"] = Value::from(sha(&p));
    write_manifest(d.path(), &m);
    common::expect_model_error(d.path(), &["stage1.onnx"]);
}

#[test]
fn path_traversal_file_name() {
    edit(
        |m| m["stages"][0]["file"] = Value::from("../stage1.onnx"),
        &["stages[0].file"],
    );
}

#[test]
fn schema_version_unknown() {
    edit(
        |m| m["schema_version"] = Value::from(2),
        &["schema_version"],
    );
}

#[test]
fn unknown_channel() {
    edit(
        |m| m["input"]["channels"][1] = Value::from("w"),
        &["input.channels[1]", "unknown channel"],
    );
}

#[test]
fn duplicate_channel() {
    edit(
        |m| m["input"]["channels"][2] = Value::from("y"),
        &["input.channels[2]", "duplicate channel `y`"],
    );
}

#[test]
fn duplicate_side_feature() {
    edit(
        |m| m["input"]["side_features"][1] = m["input"]["side_features"][0].clone(),
        &["input.side_features[1]", "duplicate side feature"],
    );
}

#[test]
fn unknown_side_feature() {
    edit(
        |m| m["input"]["side_features"][0] = Value::from("qp"),
        &["input.side_features[0]"],
    );
}

#[test]
fn normalization_length() {
    edit(
        |m| {
            drop(
                m["input"]["normalization"]["std"]
                    .as_array_mut()
                    .unwrap()
                    .pop(),
            )
        },
        &["input.normalization.std"],
    );
}

#[test]
fn unknown_partition_name() {
    edit(
        |m| m["stages"][2]["classes"][0]["partition"] = Value::from("DIAGONAL"),
        &["stages[2].classes[0].partition", "unknown partition"],
    );
}

#[test]
fn duplicate_leaf() {
    edit(
        |m| m["stages"][2]["classes"][1]["partition"] = Value::from("HORZ"),
        &["stages[2].classes[1].partition", "more than once"],
    );
}

#[test]
fn classes_not_a_tree() {
    // stage3_ab's class now loops back to stage2 (reached twice).
    edit(
        |m| {
            let c = &mut m["stages"][3]["classes"][0];
            c.as_object_mut().unwrap().remove("partition");
            c["next"] = Value::from("stage2");
        },
        &["stages[3].classes[0].next"],
    );
}

#[test]
fn stage_reached_twice() {
    edit(
        |m| m["stages"][1]["classes"][1]["next"] = Value::from("stage3_ab"),
        &["stages[1].classes[2].next", "already reached"],
    );
}

#[test]
fn prior_not_summing_to_one() {
    edit(
        |m| m["stages"][0]["prior"] = serde_json::json!([0.5, 0.6]),
        &["stages[0].prior"],
    );
}

#[test]
fn output_shape_vs_classes() {
    edit(
        |m| m["stages"][1]["output"]["shape"] = serde_json::json!([-1, 4]),
        &["stages[1].output.shape"],
    );
}

#[test]
fn input_shape_vs_block_tensor() {
    edit(
        |m| m["trunk"]["input"]["shape"] = serde_json::json!([-1, 3, 16, 16]),
        &["trunk.input.shape"],
    );
}

#[test]
fn onnx_input_name_mismatch() {
    // Consistent manifest, but the ONNX file's input is called `features`.
    edit(
        |m| m["stages"][0]["inputs"][0]["name"] = Value::from("feats"),
        &["stage1.onnx", "stages[0].inputs", "features"],
    );
}

#[test]
fn onnx_output_name_mismatch() {
    edit(
        |m| m["stages"][2]["output"]["name"] = Value::from("logits"),
        &["stage3_rect.onnx", "output.name"],
    );
}

#[test]
fn onnx_shape_mismatch() {
    // Trunk output declared [-1,16,4,4] everywhere: self-consistent manifest,
    // but the ONNX files say 8×8.
    edit(
        |m| {
            let s = serde_json::json!([-1, 16, 4, 4]);
            m["trunk"]["output"]["shape"] = s.clone();
            for st in m["stages"].as_array_mut().unwrap() {
                for i in st["inputs"].as_array_mut().unwrap() {
                    if i["source"] == "trunk" {
                        i["shape"] = s.clone();
                    }
                }
            }
        },
        &["trunk.onnx", "trunk.output", "shape"],
    );
}

#[test]
fn side_source_without_features() {
    edit(
        |m| m["input"]["side_features"] = serde_json::json!([]),
        &["stages[0].inputs[1].source", "side_features is empty"],
    );
}

#[test]
fn skip_below_out_of_range() {
    edit(
        |m| m["cascade"]["skip_below"] = Value::from(1.5),
        &["cascade.skip_below"],
    );
}

#[test]
fn unknown_root() {
    edit(
        |m| m["cascade"]["root"] = Value::from("nope"),
        &["cascade.root"],
    );
}

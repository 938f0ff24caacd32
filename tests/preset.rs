//! The encoder preset as a side input (`input.presets`, side feature
//! `cpu_used`, `Config::cpu_used`): which preset a context runs at, that it
//! reaches the model, and that bad manifests and settings are refused.

mod common;

use av1part::{Context, Error, Prediction};

fn preset_dir() -> std::path::PathBuf {
    common::root().join("onnx/test-preset")
}

fn ctx(cpu_used: Option<u32>) -> Context {
    let mut cfg = common::config(&preset_dir());
    cfg.cpu_used = cpu_used;
    Context::new(&cfg).unwrap()
}

fn predict(c: &Context) -> Vec<Prediction> {
    let gb = common::random_blocks(64, 5);
    let blocks: Vec<_> = gb.iter().map(|b| b.block()).collect();
    let mut out = vec![Prediction::default(); blocks.len()];
    c.predict_blocks(&blocks, &mut out).unwrap();
    out
}

#[test]
fn the_stated_preset_or_the_nearest_listed_one_is_used() {
    // the bundle lists [1, 3]
    for (stated, used) in [
        (None, 1),
        (Some(0), 1),
        (Some(1), 1),
        (Some(2), 1), // a tie goes to the lower (more thorough) preset
        (Some(3), 3),
        (Some(6), 3),
        (Some(9), 3),
    ] {
        assert_eq!(ctx(stated).preset(), Some(used), "stated {stated:?}");
    }
    // a bundle without presets ignores the setting
    let mut cfg = common::config(&common::tiny());
    cfg.cpu_used = Some(3);
    assert_eq!(Context::new(&cfg).unwrap().preset(), None);
}

#[test]
fn the_preset_reaches_the_model() {
    let (p1, p3, p2) = (
        predict(&ctx(Some(1))),
        predict(&ctx(Some(3))),
        predict(&ctx(Some(2))),
    );
    let differ = p1
        .iter()
        .zip(&p3)
        .filter(|(a, b)| a.probabilities != b.probabilities)
        .count();
    assert!(
        differ > p1.len() / 2,
        "presets 1 and 3 gave the same probabilities on {} of {} blocks",
        p1.len() - differ,
        p1.len()
    );
    for (a, b) in p1.iter().zip(&p2) {
        assert_eq!(
            a.probabilities, b.probabilities,
            "preset 2 runs as preset 1"
        );
    }
}

#[test]
fn an_out_of_range_preset_is_refused() {
    let mut cfg = common::config(&preset_dir());
    cfg.cpu_used = Some(10);
    match Context::new(&cfg) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("cpu_used"), "{m}"),
        other => panic!("expected InvalidArgument, got {:?}", other.err()),
    }
}

#[test]
fn bad_preset_lists_are_model_load_errors() {
    let src = std::fs::read_to_string(preset_dir().join("manifest.json")).unwrap();
    let good: serde_json::Value = serde_json::from_str(&src).unwrap();
    for (presets, want) in [
        (serde_json::json!(null), "missing or empty"),
        (serde_json::json!([]), "missing or empty"),
        (serde_json::json!([3, 1]), "ascending"),
        (serde_json::json!([1, 1]), "ascending"),
        (serde_json::json!([1, 12]), "0..=9"),
        (serde_json::json!([-1]), "0..=9"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(preset_dir()).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        let mut m = good.clone();
        if presets.is_null() {
            m["input"].as_object_mut().unwrap().remove("presets");
        } else {
            m["input"]["presets"] = presets.clone();
        }
        std::fs::write(dir.path().join("manifest.json"), m.to_string()).unwrap();
        match Context::new(&common::config(dir.path())) {
            Err(e @ Error::ModelLoad { .. }) => {
                let s = e.to_string();
                assert!(
                    s.contains("input.presets") && s.contains(want),
                    "{presets}: {s}"
                );
            }
            other => panic!(
                "{presets}: expected a model-load error, got {:?}",
                other.err()
            ),
        }
    }
}

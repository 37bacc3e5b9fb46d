//! The `quads` command on the procedural world with the tiny checkpoint and the tiny CLIP and
//! DINO fixtures: every method scored, the baselines' known values, Visual CLIP recomputed
//! from the embeddings.

mod common;

use std::path::Path;

use burn::prelude::*;
use common::{run, setup};
use loc_data::config::{SourceConfig, WorldConfig};
use loc_eval::metrics::cosine;
use loc_eval::metrics::embedding::{Clip, ImageEmbedder};
use loc_eval::metrics::lpips::LpipsMetric;
use loc_eval::quads::prepare_quads;

#[test]
fn quads_scores_every_method_with_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = setup(dir.path());
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loc-core/tests/fixtures");
    let (clip, dino) = (models.join("clip_full"), models.join("vit_dino"));
    // VGG16 takes the 16-pixel images (AlexNet needs 31).
    let lpips = common::lpips_folder("vgg", dir.path());
    let inception = common::inception_folder(dir.path());
    let out = dir.path().join("eval");
    run(
        &["quads", "--data", "synthetic", "--count", "3", "--steps", "2", "--sheet", "2"],
        &[
            ("--checkpoint", &checkpoint),
            ("--clip", &clip),
            ("--dino", &dino),
            ("--lpips", &lpips),
            ("--inception", &inception),
            ("--out", &out),
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["quads"], 3);
    let methods = report["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["do-nothing", "copy", "G null", "G text", "LoC"]);
    let method = |name: &str| methods.iter().find(|m| m["method"] == name).unwrap();
    assert_eq!(method("copy")["l2_to_after"], 0.0);
    assert_eq!(method("G null")["leakage"], 0.0);
    assert!(method("do-nothing")["visual_clip"].is_null(), "B - B has no direction");
    for m in methods {
        for key in ["clip_i", "dino"] {
            let v = m[key].as_f64().unwrap();
            assert!((-1.0..=1.0 + 1e-9).contains(&v), "{key} {v}");
        }
        assert!(m["lpips"].as_f64().unwrap() >= 0.0);
        assert!(m["fid"].as_f64().unwrap() >= -1e-6, "{}: FID {}", m["method"], m["fid"]);
        assert!(m["l1"].as_f64().unwrap() >= 0.0 && m["psnr"].as_f64().unwrap() > 0.0);
    }
    assert!(method("LoC")["ssim"].as_f64().unwrap() <= 1.0 && report["skipped"]["ssim"].is_null());
    assert!(report["skipped"]["clip_t"].is_string());
    assert!(out.join("report.md").exists() && out.join("examples.png").exists());

    // Visual CLIP of the copy baseline: cos(E(A') - E(A), E(A') - E(B)), from the embeddings.
    let resolution = 16;
    let source = SourceConfig::Synthetic(WorldConfig::new(3, true));
    let (quads, unreadable) = prepare_quads(&source, 3, 0, resolution).unwrap();
    assert_eq!(unreadable, 0);
    let clip = Clip::load(&clip, &Device::flex()).unwrap();
    let embed = |f: fn(&loc_data::pipeline::PreparedQuad) -> &image::RgbImage| {
        clip.embed(&quads.iter().map(f).collect::<Vec<_>>())
    };
    let (a, a_edited, b) = (embed(|q| &q.pair.before), embed(|q| &q.pair.after), embed(|q| &q.query));
    let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p - q).collect::<Vec<f32>>();
    let expected: f64 =
        (0..3).map(|i| cosine(&diff(&a_edited[i], &a[i]), &diff(&a_edited[i], &b[i]))).sum::<f64>() / 3.0;
    let got = method("copy")["visual_clip"].as_f64().unwrap();
    assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");

    // LPIPS of the do-nothing baseline: B against B', from the model directly.
    let lpips = LpipsMetric::load(&lpips, &Device::flex()).unwrap();
    let (b, b_edited): (Vec<_>, Vec<_>) = quads.iter().map(|q| (&q.query, &q.target)).unzip();
    let expected = lpips.compare(&b, &b_edited).into_iter().map(Option::unwrap).sum::<f64>() / 3.0;
    let got = method("do-nothing")["lpips"].as_f64().unwrap();
    assert!((got - expected).abs() < 1e-9 && got > 0.0, "{got} vs {expected}");
}

/// `--reference`: another `H` scored on the same quads with the same draws, beside `LoC`
/// (unchanged by it); a checkpoint of another editor or resolution is refused by name.
#[test]
fn a_reference_checkpoint_is_scored_on_the_same_quads() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = setup(dir.path());
    let report = |name: &str, reference: Option<&Path>| {
        let out = dir.path().join(name);
        let mut paths = vec![("--checkpoint", checkpoint.as_path()), ("--out", out.as_path())];
        paths.extend(reference.map(|r| ("--reference", r)));
        run(&["quads", "--data", "synthetic", "--count", "3", "--steps", "2"], &paths);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        report["methods"].as_array().unwrap().clone()
    };
    let alone = report("alone", None);
    let with = report("with", Some(&checkpoint));
    let names: Vec<&str> = with.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["do-nothing", "copy", "G null", "G text", "LoC", "LoC ref"]);
    let score = |methods: &[serde_json::Value], name: &str| {
        let mut m = methods.iter().find(|m| m["method"] == name).unwrap().clone();
        m.as_object_mut().unwrap().remove("method");
        m
    };
    assert_eq!(score(&with, "LoC"), score(&alone, "LoC"), "LoC is the same with a reference beside it");
    assert_eq!(score(&with, "LoC ref"), score(&with, "LoC"), "the same H on the same quads and draws");

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for entry in std::fs::read_dir(&checkpoint).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), other.join(entry.file_name())).unwrap();
    }
    let manifest = other.join(loc_core::checkpoint::MANIFEST_FILE);
    let mut fields: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    fields["resolution"] = 32.into();
    std::fs::write(&manifest, serde_json::to_vec(&fields).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loc-eval"))
        .args(["quads", "--data", "synthetic", "--count", "3", "--steps", "2"])
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg("--reference")
        .arg(&other)
        .arg("--out")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("--reference") && stderr.contains("at 32 px"), "{stderr}");
}

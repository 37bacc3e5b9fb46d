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

//! The `magicbrush` command on a fixture in the official layout against the numbers of the
//! official formulas (`scripts/make_eval_fixtures.py`: PIL, torchvision, nn.L1Loss / MSELoss,
//! scipy cosine, with tiny CLIP and DINO models; PSNR and SSIM from scikit-image).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::*;
use loc_core::weights::read_safetensors;
use loc_data::pipeline::read_image;
use loc_eval::magicbrush::{SETTINGS, pair_folders};
use loc_eval::metrics::embedding::Preprocess;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../loc-core/tests/fixtures").join(name)
}

fn magicbrush(generated: &Path, truth: &Path, extra: &[&Path], flags: &[&str], out: &Path) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loc-eval"));
    command.arg("magicbrush").arg("--generated").arg(generated).arg("--ground-truth").arg(truth);
    for (flag, value) in flags.iter().zip(extra) {
        command.arg(flag).arg(value);
    }
    command.arg("--out").arg(out).output().unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_protocol_reproduces_the_official_formulas() {
    let mb = fixtures().join("magicbrush");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let (captions, clip, dino) = (mb.join("local_descriptions.json"), model("clip_full"), model("vit_dino"));
    let lpips = common::lpips_folder("vgg", dir.path());
    let run = magicbrush(
        &mb.join("generated"),
        &mb.join("gt"),
        &[&captions, &clip, &dino, &lpips],
        &["--captions", "--clip", "--dino", "--lpips"],
        &out,
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (got, want) = (read_json(&out), read_json(&mb.join("reference.json")));
    for setting in SETTINGS {
        for (metric, expected) in want[setting].as_object().unwrap() {
            let (g, e) = (got[setting][metric].as_f64().unwrap(), expected.as_f64().unwrap());
            assert!((g - e).abs() <= 1e-4 * e.abs().max(1e-2), "{setting} {metric}: {g} vs {e}");
        }
    }
    // Everything but FID (its Inception runs in the quads test).
    assert!(got["skipped"].as_object().unwrap().keys().all(|k| k == "fid"), "{}", got["skipped"]);
    for setting in SETTINGS {
        assert!(got[setting]["lpips"].as_f64().unwrap() > 0.0, "{setting}: LPIPS");
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| single-turn (all_turn) | 6 |") && md.contains("| multi-turn (final_turn) | 3 |"), "{md}");
    let sheet = image::open(dir.path().join("report.png")).unwrap();
    assert_eq!((sheet.width(), sheet.height()), (3 * 130, 6 * 130));
}

#[test]
fn metrics_without_models_are_skipped_not_zero() {
    let mb = fixtures().join("magicbrush");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let clip = model("clip_full");
    let run = magicbrush(&mb.join("generated"), &mb.join("gt"), &[&clip], &["--clip"], &out);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let got = read_json(&out);
    assert!(got["all_turn"]["dino"].is_null() && got["all_turn"]["clip_t"].is_null());
    assert!(got["all_turn"]["clip_i"].as_f64().is_some());
    let skipped = got["skipped"].as_object().unwrap();
    assert!(skipped["dino"].as_str().unwrap().contains("--dino"));
    assert!(skipped["clip_t"].as_str().unwrap().contains("--captions"));
    assert!(skipped["lpips"].as_str().unwrap().contains("--lpips") && got["all_turn"]["lpips"].is_null());
    assert!(skipped["fid"].as_str().unwrap().contains("--inception") && got["all_turn"]["fid"].is_null());
    assert!(std::fs::read_to_string(dir.path().join("r.md")).unwrap().contains("dino skipped"));
}

#[test]
fn preprocessing_equals_torchvision() {
    let mb = fixtures().join("magicbrush");
    let reference = read_safetensors(&mb.join("preprocess.safetensors")).unwrap();
    let device = Device::flex();
    let images = [("generated", mb.join("generated/139/139_1.png")), ("gt", mb.join("gt/2024/2024-output1.png"))];
    for (key, path) in images {
        let image = read_image(&path).unwrap();
        for (name, preprocess) in [("clip", Preprocess::clip(32)), ("dino", Preprocess::dino(32))] {
            let got: Vec<f32> =
                preprocess.apply(&[&image], &device).into_data().convert::<f32>().try_into_vec().unwrap();
            let want = reference[&format!("{key}_{name}")].floats();
            assert_eq!(got.len(), want.len());
            let diff = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff < 1e-5, "{key} {name}: {diff}");
        }
    }
}

/// Copies the fixture's two folders into `dir`.
fn copy_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let mb = fixtures().join("magicbrush");
    for side in ["generated", "gt"] {
        for session in std::fs::read_dir(mb.join(side)).unwrap() {
            let session = session.unwrap().path();
            let target = dir.join(side).join(session.file_name().unwrap());
            std::fs::create_dir_all(&target).unwrap();
            for file in std::fs::read_dir(&session).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, target.join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    (dir.join("generated"), dir.join("gt"))
}

#[test]
fn folder_mismatches_name_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let (generated, truth) = copy_fixture(dir.path());
    let pairs = pair_folders(&generated, &truth).unwrap();
    assert_eq!((pairs.all_turn.len(), pairs.final_turn.len()), (6, 3));
    // Sessions sorted as strings (Python's sorted(os.listdir)): "139" < "2024" < "7".
    let order: Vec<&str> = pairs.final_turn.iter().map(|p| p.session.as_str()).collect();
    assert_eq!(order, ["139", "2024", "7"]);
    assert!(pairs.final_turn[0].generated.ends_with("139/139_iter_3.png"));

    std::fs::remove_file(generated.join("139/139_iter_3.png")).unwrap();
    let err = pair_folders(&generated, &truth).unwrap_err().to_string();
    assert!(err.contains("session 139") && err.contains("139_iter_3"), "{err}");
    std::fs::remove_file(generated.join("2024/2024_inde_2.png")).unwrap();
    let err = pair_folders(&generated, &truth).unwrap_err().to_string();
    assert!(err.contains("2024_inde_2") || err.contains("139_iter_3"), "{err}");

    std::fs::remove_dir_all(generated.join("7")).unwrap();
    let out = dir.path().join("r.json");
    let run = magicbrush(&generated, &truth, &[], &[], &out);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("only in") && stderr.contains("[7]"), "{stderr}");
}

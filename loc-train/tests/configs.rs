//! The shipped configurations parse and validate, and the real-data ones pass `--dry-run`
//! against fixture folders in the formats they name.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use loc_core::checkpoint::{CheckpointManifest, save_checkpoint};
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetShape, select_targets};
use loc_core::unet::UNet2DConditionModel;
use loc_train::config::{Config, Stage};
use loc_train::dry_run::dry_run;
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> String {
    repo().join("loc-core/tests/fixtures").join(name).display().to_string()
}

fn write_png(path: &Path, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(24, 20, image::Rgb([shade, 100, 200 - shade])).save(path).unwrap();
}

fn write_lines(path: &Path, lines: &[serde_json::Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(path, text.join("\n")).unwrap();
}

fn run_dry(config: &Config) -> String {
    let mut out = Vec::new();
    dry_run(config, &Device::flex(), false, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn every_shipped_config_validates() {
    for name in ["tiny.toml", "tiny-editor.toml", "base.toml", "magicbrush.toml"] {
        let path = repo().join("configs").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        // The real-data configs name folders that exist only on a researcher's machine.
        let text = text.replace("hypernet_init = \"runs/base/loc\"\n", "");
        let config = Config::from_toml(&text, &path, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = if name == "tiny-editor.toml" { Stage::Editor } else { Stage::Hypernet };
        assert_eq!(config.stage, expected, "{name}");
    }
}

#[test]
fn base_toml_passes_a_dry_run_on_seed_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let mut overrides = vec![
        format!("model.editor={:?}", fixture("tiny_ip2p")),
        format!("model.image_encoder={:?}", fixture("clip_vision")),
        "data.threads=1".to_string(),
    ];
    for (i, part) in ["part1", "part2", "part3"].iter().enumerate() {
        let root = dir.path().join(part);
        write_png(&root.join("images/a.png"), 10);
        write_png(&root.join("images/b.png"), 90);
        write_png(&root.join("images/c.png"), 170);
        let line = if *part == "part3" {
            json!({"source_image": "a.png", "instruction_1": "add snow", "edit_image_1": "b.png",
                   "instruction_2": "make it night", "edit_image_2": "c.png"})
        } else {
            json!({"source_image": "a.png", "target_image": "b.png", "instruction": "add snow"})
        };
        write_lines(&root.join("annotations/x.jsonl"), &[line]);
        overrides
            .push(format!("data.sets.{i}.source.annotations=[{:?}]", root.join("annotations").display().to_string()));
        overrides.push(format!("data.sets.{i}.source.images.folder={:?}", root.join("images").display().to_string()));
    }
    let config = Config::load(&repo().join("configs/base.toml"), &overrides).unwrap();
    let out = run_dry(&config);
    assert!(out.contains("editor") && out.contains("latent space"), "{out}");
    assert!(out.contains("image encoder"), "{out}");
    assert!(out.contains("data set `seed-part1` (seed): 1 pairs"), "{out}");
    assert!(out.contains("data set `seed-part3` (seed): 2 pairs"), "{out}");
    assert!(out.contains("sample batch: before [4, 3, 256, 256]"), "{out}");
}

#[test]
fn magicbrush_toml_passes_a_dry_run_on_the_magicbrush_fixture() {
    let dir = tempfile::tempdir().unwrap();
    // Stage 1's result: a LoC checkpoint for the fixture editor.
    let device = Device::flex();
    let unet = UNet2DConditionModel::load(Path::new(&fixture("tiny_ip2p/unet")), &device).unwrap();
    let targets = select_targets(&unet.lora_targets(), &DEFAULT_TARGET_SUFFIXES);
    let hypernet_config = HypernetShape { width: 32, heads: 4, depth: 1, ..Default::default() }.config(32);
    let manifest = CheckpointManifest {
        format_version: 1,
        editor: fixture("tiny_ip2p").into(),
        image_encoder: fixture("clip_vision").into(),
        hypernet: hypernet_config.clone(),
        target_suffixes: DEFAULT_TARGET_SUFFIXES.iter().map(|s| s.to_string()).collect(),
        resolution: 32,
        step: 1,
    };
    let stage1 = dir.path().join("stage1");
    save_checkpoint(&stage1, &manifest, &hypernet_config.init(&targets, &device)).unwrap();
    let zip = repo().join("loc-data/tests/fixtures/magicbrush_test_zipcrypto.zip");
    let overrides = vec![
        format!("model.editor={:?}", fixture("tiny_ip2p")),
        format!("model.image_encoder={:?}", fixture("clip_vision")),
        format!("model.hypernet_init={:?}", stage1.display().to_string()),
        format!(
            "data.sets.0.source={{ kind = \"magicbrush-zip\", archive = {:?}, password = \"magicbrush-fixture\" }}",
            zip.display().to_string()
        ),
        "data.threads=1".to_string(),
    ];
    let config = Config::load(&repo().join("configs/magicbrush.toml"), &overrides).unwrap();
    let out = run_dry(&config);
    assert!(out.contains("hypernetwork starts from"), "{out}");
    assert!(out.contains("data set `magicbrush` (magicbrush-zip)"), "{out}");
    assert!(out.contains("sample batch: before [4, 3, 256, 256]"), "{out}");
    let err = Config::load(&repo().join("configs/magicbrush.toml"), &[]).unwrap_err().to_string();
    assert!(err.contains("`model.hypernet_init` runs/base/loc holds no loc_checkpoint.json"), "{err}");
}

/// Every path a run reads is checked before any work, and all the missing ones are named in
/// one message, each once: `loc-train` prints its errors without repeating their causes.
#[test]
fn every_missing_path_is_named_at_once_and_each_error_said_once() {
    let base = repo().join("configs/base.toml");
    let config = Config::load(&base, &[]).unwrap();
    let err = config.check_paths(&base).unwrap_err().to_string();
    assert!(err.contains("8 paths this run needs do not exist"), "{err}");
    for field in ["`model.editor`", "`model.image_encoder`", "`data.sets.0.source`", "`data.sets.2.source`"] {
        assert!(err.contains(field), "{field}: {err}");
    }
    assert!(err.contains("part3_multi_turn/images"), "{err}");
    let present = [
        format!("model.editor={:?}", fixture("tiny_ip2p")),
        format!("model.image_encoder={:?}", fixture("clip_vision")),
        "data.sets=[{ name = \"world\", source = { kind = \"synthetic\", len = 8 } }]".to_string(),
    ];
    Config::load(&base, &present).unwrap().check_paths(&base).unwrap();

    let run = std::process::Command::new(env!("CARGO_BIN_EXE_loc-train")).arg(&base).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.starts_with("error: ") && stderr.contains("weights/instruct-pix2pix"), "{stderr}");
    assert!(!stderr.contains("Caused by"), "{stderr}");
    let missing_manifest = std::process::Command::new(env!("CARGO_BIN_EXE_loc-train"))
        .arg(repo().join("configs/no-such.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing_manifest.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

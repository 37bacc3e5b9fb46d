//! `edit` and `export-lora` on a checkpoint built from the tiny fixtures, run as a user would.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::nn::LinearConfig;
use burn::prelude::*;
use image::{DynamicImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba};
use loc_core::checkpoint::{CheckpointManifest, LocModel, save_checkpoint};
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetConfig, select_targets};
use loc_core::lora::load_lora;
use loc_core::unet::UNet2DConditionModel;
use loc_data::pipeline::{ImageLimits, images_to_tensor, load_rgb};
use loc_data::record::ImageSource;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../loc-core/tests/fixtures").join(name).canonicalize().unwrap()
}

/// A checkpoint whose `H` has random (non-zero) `up` heads, and three images of assorted
/// sizes and colour types.
fn setup(dir: &Path) -> (PathBuf, [PathBuf; 3]) {
    let device = Device::flex();
    device.seed(5);
    let unet = UNet2DConditionModel::load(&fixture("tiny_ip2p").join("unet"), &device).unwrap();
    let targets = select_targets(&unet.lora_targets(), &DEFAULT_TARGET_SUFFIXES);
    let config = HypernetConfig::new(12).with_width(32).with_heads(4).with_depth(2);
    let mut hyper = config.init(&targets, &device);
    for head in &mut hyper.heads {
        head.up = LinearConfig::new(32, head.d_out * 4).init(&device);
    }
    let manifest = CheckpointManifest {
        format_version: 1,
        editor: fixture("tiny_ip2p"),
        image_encoder: fixture("clip_vision"),
        hypernet: config,
        target_suffixes: DEFAULT_TARGET_SUFFIXES.iter().map(|s| s.to_string()).collect(),
        resolution: 16,
        step: 0,
    };
    let checkpoint = dir.join("checkpoint");
    save_checkpoint(&checkpoint, &manifest, &hyper).unwrap();

    let images = [dir.join("before.png"), dir.join("after.png"), dir.join("query.png")];
    DynamicImage::ImageLuma8(ImageBuffer::from_fn(30, 20, |x, y| Luma([(x * 8 + y) as u8]))).save(&images[0]).unwrap();
    DynamicImage::ImageRgba8(ImageBuffer::from_fn(25, 25, |x, y| Rgba([(x * 9) as u8, (y * 9) as u8, 90, 255])))
        .save(&images[1])
        .unwrap();
    RgbImage::from_fn(20, 12, |x, y| Rgb([(x * 12) as u8, 40, (y * 20) as u8])).save(&images[2]).unwrap();
    (checkpoint, images)
}

fn run(args: &[&str], paths: &[(&str, &Path)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loc-eval"));
    command.args(args);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn export_lora_writes_the_generated_lora_with_strength_and_negation() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, [before, after, _]) = setup(dir.path());
    let (plain, reversed) = (dir.path().join("plain.safetensors"), dir.path().join("reversed.safetensors"));
    let export = |out: &Path, args: &[&str]| {
        let paths =
            [("--checkpoint", checkpoint.as_path()), ("--before", &before), ("--after", &after), ("--out", out)];
        run(&[&["export-lora"], args].concat(), &paths);
    };
    export(&plain, &["--format", "kohya"]);
    export(&reversed, &["--format", "peft", "--strength", "0.5", "--negate"]);

    let device = Device::flex();
    let model = LocModel::load(&checkpoint, &device).unwrap();
    let targets = &model.hypernet.targets;
    let (plain, reversed) =
        (load_lora(&plain, targets, &device).unwrap().set, load_lora(&reversed, targets, &device).unwrap().set);
    // The same pair through the library gives the same LoRA.
    let read = |p: &Path| {
        let image = load_rgb(&ImageSource::File(p.to_path_buf()), ImageLimits::default()).unwrap();
        let resized = image::imageops::resize(&image, 16, 16, image::imageops::FilterType::CatmullRom);
        images_to_tensor(&[&resized], &device)
    };
    let generated = model.generate(read(&before), read(&after));
    let values = |t: Tensor<3>| t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let mut moved = 0.0f32;
    for (path, delta) in generated.iter() {
        let expected = values(delta.weight_delta());
        let (p, r) =
            (values(plain.get(path).unwrap().weight_delta()), values(reversed.get(path).unwrap().weight_delta()));
        for ((e, p), r) in expected.iter().zip(&p).zip(&r) {
            assert!((e - p).abs() <= 1e-5 * (1.0 + e.abs()), "{path}: {e} vs {p}");
            assert!((-0.5 * e - r).abs() <= 1e-5 * (1.0 + e.abs()), "{path}: negated half {r} vs {e}");
            moved = moved.max(e.abs());
        }
    }
    assert!(moved > 0.0, "the generated LoRA is not zero");
}

#[test]
fn edit_returns_the_query_at_its_own_size_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, [before, after, query]) = setup(dir.path());
    let edit = |out: &Path, extra: &[&str]| {
        let mut args = vec!["edit", "--steps", "3", "--seed", "4"];
        args.extend_from_slice(extra);
        let paths = [
            ("--checkpoint", checkpoint.as_path()),
            ("--before", &before),
            ("--after", &after),
            ("--query", &query),
            ("--out", out),
        ];
        run(&args, &paths);
        std::fs::read(out).unwrap()
    };
    let first = edit(&dir.path().join("a.png"), &[]);
    let again = edit(&dir.path().join("b.png"), &[]);
    let reversed = edit(&dir.path().join("c.png"), &["--negate"]);
    assert_eq!(first, again, "same seed, same bytes");
    assert_ne!(first, reversed, "the reverse change differs");

    // The pair's exported LoRA, applied from the file, gives the same edit.
    let file = dir.path().join("pair.safetensors");
    let paths = [("--checkpoint", checkpoint.as_path()), ("--before", &before), ("--after", &after), ("--out", &file)];
    run(&["export-lora", "--format", "kohya"], &paths);
    let from_file = dir.path().join("d.png");
    let paths = [("--checkpoint", checkpoint.as_path()), ("--lora", &file), ("--query", &query), ("--out", &from_file)];
    run(&["edit", "--steps", "3", "--seed", "4"], &paths);
    let (a, d) = (image::open(dir.path().join("a.png")).unwrap().to_rgb8(), image::open(&from_file).unwrap().to_rgb8());
    let worst =
        a.pixels().zip(d.pixels()).flat_map(|(p, q)| p.0.iter().zip(q.0).map(|(x, y)| x.abs_diff(y))).max().unwrap();
    assert!(worst <= 1, "stored LoRA vs generated: {worst} levels apart");
    assert_eq!(image::open(dir.path().join("a.png")).unwrap().to_rgb8().dimensions(), (20, 12));
}

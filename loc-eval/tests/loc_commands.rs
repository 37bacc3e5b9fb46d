//! `edit` and `export-lora` on a checkpoint built from the tiny fixtures, run as a user would.

mod common;

use std::path::Path;

use burn::prelude::*;
use common::{run, setup};
use loc_core::checkpoint::LocModel;
use loc_core::lora::load_lora;
use loc_data::pipeline::{ImageLimits, images_to_tensor, load_rgb};
use loc_data::record::ImageSource;

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

    // The frozen models in bf16 edit nearly alike without guidance, which on these random
    // models multiplies rounding (20 of 255 levels apart at 7.5; measured 6 without).
    let unguided = ["--guidance", "1", "--image-guidance", "1", "--device", "cpu"];
    let full = edit(&dir.path().join("e.png"), &unguided);
    let half = edit(&dir.path().join("f.png"), &[&unguided[..], &["--precision", "bf16"]].concat());
    let (a, e) = (image::load_from_memory(&full).unwrap().to_rgb8(), image::load_from_memory(&half).unwrap().to_rgb8());
    let worst =
        a.pixels().zip(e.pixels()).flat_map(|(p, q)| p.0.iter().zip(q.0).map(|(x, y)| x.abs_diff(y))).max().unwrap();
    assert!(worst <= 10, "bf16 vs f32: {worst} levels apart");
}

#[test]
fn a_device_this_build_lacks_is_an_error_that_names_its_feature() {
    if cfg!(feature = "cuda") {
        return;
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loc-eval"))
        .args(["--device", "cuda:1", "edit", "--checkpoint", "x", "--lora", "y", "--query", "z", "--out", "w"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--device cuda:1") && stderr.contains("--features cuda"), "{stderr}");
}

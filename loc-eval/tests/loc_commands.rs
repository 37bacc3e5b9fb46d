//! `edit` and `export-lora` on a checkpoint built from the tiny fixtures, run as a user would.

mod common;

use std::path::Path;

use burn::prelude::*;
use common::{run, setup};
use loc_core::checkpoint::LocModel;
use loc_core::lora::load_lora;
use loc_data::config::DataConfig;
use loc_data::loader::PairBatch;
use loc_data::pipeline::{instruction_tensors, read_image};
use loc_eval::editing::pair_lora;

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
    let generated = pair_lora(&model, read_image(&before).unwrap(), read_image(&after).unwrap(), &device);
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
fn the_pair_reaches_h_as_the_trainer_prepares_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, [before, _, _]) = setup(dir.path());
    // 3:2 and 2:3, so that the crop shows in both directions.
    let after = dir.path().join("tall.png");
    image::RgbImage::from_fn(20, 30, |x, y| image::Rgb([(x * 12) as u8, (y * 8) as u8, 200])).save(&after).unwrap();
    let manifest = dir.path().join("pairs.jsonl");
    std::fs::write(&manifest, r#"{"before": "before.png", "after": "tall.png", "id": "p"}"#).unwrap();
    let config: DataConfig = serde_json::from_value(serde_json::json!({
        "resolution": 16,
        "threads": 1,
        "sets": [{"name": "photos", "source": {"kind": "manifest", "path": manifest}}],
    }))
    .unwrap();
    let sets = config.open(0, false).unwrap();
    let device = Device::flex();
    let trained = PairBatch::from_pairs(&config.train_loader(&sets, 1, 0).batch(0).unwrap(), &device);
    let [a, a_edited] = instruction_tensors(read_image(&before).unwrap(), read_image(&after).unwrap(), 16, &device);
    assert_eq!(a.dims(), [1, 3, 16, 16]);
    a.into_data().assert_eq(&trained.before.into_data(), true);
    a_edited.into_data().assert_eq(&trained.after.into_data(), true);
}

#[test]
fn edit_takes_a_folder_at_every_strength_keeping_each_querys_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, [before, after, _]) = setup(dir.path());
    let queries = dir.path().join("queries");
    std::fs::create_dir(&queries).unwrap();
    let gradient =
        |w: u32, h: u32| image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 8) as u8, 90, (y * 8) as u8]));
    gradient(30, 20).save(queries.join("wide.png")).unwrap();
    gradient(20, 30).save(queries.join("tall.jpg")).unwrap();
    std::fs::write(queries.join("broken.png"), b"\x89PNG not really").unwrap();
    let out = dir.path().join("edits");
    let paths = [
        ("--checkpoint", checkpoint.as_path()),
        ("--before", &before),
        ("--after", &after),
        ("--input", &queries),
        ("--output", &out),
    ];
    let output = run(&["edit", "--steps", "2", "--seed", "3", "--strength", "0,1.5"], &paths);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("edited 2 of 3") && stderr.contains("broken.png"), "{stderr}");
    let open = |name: &str| image::open(out.join(name)).unwrap().to_rgb8();
    for (name, size) in [("wide", (30, 20)), ("tall", (20, 30))] {
        let (none, strong) = (open(&format!("{name}_s0.png")), open(&format!("{name}_s1.5.png")));
        assert_eq!((none.dimensions(), strong.dimensions()), (size, size), "{name}");
        assert_ne!(none, strong, "{name}: the strength changes the edit");
        // The sheet: the query and the two strengths in 256-pixel cells, captions below.
        let height = if name == "wide" { 256 * 20 / 30 + 2 } else { 258 };
        assert_eq!(open(&format!("{name}_sheet.png")).dimensions(), (3 * 258, height + 12), "{name}");
    }
    assert!(!out.join("broken.png").exists());

    // `--crop`: the centre square, at the query's scale.
    let square = dir.path().join("square.png");
    let paths = [
        ("--checkpoint", checkpoint.as_path()),
        ("--before", &before),
        ("--after", &after),
        ("--input", &queries.join("wide.png")),
        ("--output", &square),
    ];
    run(&["edit", "--steps", "2", "--crop"], &paths);
    assert_eq!(image::open(&square).unwrap().to_rgb8().dimensions(), (20, 20));
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

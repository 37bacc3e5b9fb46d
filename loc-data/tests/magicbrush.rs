//! MagicBrush in the original layout: a folder, a ZipCrypto zip made by Info-ZIP (committed
//! fixture, `scripts/make_magicbrush_zip_fixture.py`), and an AES zip made here.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use burn_dataset::Dataset;
use common::*;
use loc_data::magicbrush::MagicBrush;
use loc_data::pipeline::{ImageLimits, load_rgb};
use loc_data::{ImageSource, SkipKind};
use serde_json::json;

const PASSWORD: &[u8] = b"magicbrush-fixture";

fn fixture_zip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/magicbrush_test_zipcrypto.zip")
}

/// The same release as the zip fixture, as files under `root`: (relative path, bytes).
fn layout_files() -> Vec<(String, Vec<u8>)> {
    let sessions = [("327726", vec!["add a boat", "make the sky pink"]), ("40315", vec!["remove the dog"])];
    let (mut files, mut edit_sessions, mut local) = (Vec::new(), json!({}), json!({}));
    for (s, (id, instructions)) in sessions.iter().enumerate() {
        let s = s as u8 + 1;
        files.push((format!("images/{id}/{id}-input.png"), png_bytes(10 * s)));
        let mut turns = Vec::new();
        for (k, instruction) in instructions.iter().enumerate() {
            let k = k as u8 + 1;
            files.push((format!("images/{id}/{id}-output{k}.png"), png_bytes(10 * s + k)));
            files.push((format!("images/{id}/{id}-mask{k}.png"), png_bytes(10 * s + k + 100)));
            let input = if k == 1 { format!("{id}-input.png") } else { format!("{id}-output{}.png", k - 1) };
            turns.push(json!({"input": input, "mask": format!("{id}-mask{k}.png"), "output": format!("{id}-output{k}.png"), "instruction": instruction}));
            local[*id][format!("{id}-output{k}.png")] = json!(format!("{instruction} (caption)"));
        }
        edit_sessions[*id] = json!(turns);
    }
    files.push(("edit_sessions.json".into(), edit_sessions.to_string().into_bytes()));
    files.push(("local_descriptions.json".into(), local.to_string().into_bytes()));
    files
}

fn red(source: &ImageSource) -> u8 {
    load_rgb(source, ImageLimits::default()).unwrap().get_pixel(0, 0).0[0]
}

fn file_name(source: &ImageSource) -> String {
    match source {
        ImageSource::File(p) => p.file_name().unwrap().to_string_lossy().into(),
        ImageSource::ZipEntry { entry, .. } => entry.rsplit('/').next().unwrap().to_string(),
        other => panic!("{other:?}"),
    }
}

/// The structure both fixtures must produce.
fn check_release(mb: &MagicBrush) {
    assert_eq!(mb.sessions.len(), 2);
    assert_eq!(mb.turns(), 3);
    let boat = mb.sessions.iter().find(|s| s.img_id == "327726").unwrap();
    assert_eq!(boat.turns.len(), 2);
    let (t1, t2) = (&boat.turns[0], &boat.turns[1]);
    assert_eq!((t1.index, t1.instruction.as_str()), (1, "add a boat"));
    assert_eq!((t2.index, t2.instruction.as_str()), (2, "make the sky pink"));
    assert_eq!(file_name(&t2.input), "327726-output1.png", "turn 2 starts from turn 1's ground truth");
    assert_eq!(t2.output_name, "327726-output2.png");
    assert_eq!(t2.local_description.as_deref(), Some("make the sky pink (caption)"));
    assert_eq!((red(&t1.input), red(&t1.output), red(&t2.output)), (10, 11, 12));
    assert_eq!(red(t2.mask.as_ref().unwrap()), 112);

    let pairs: Vec<_> = (0..mb.len()).map(|i| mb.get(i).unwrap()).collect();
    let ids: Vec<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["magicbrush:327726#1", "magicbrush:327726#2", "magicbrush:40315#1"]);
    assert_eq!(pairs[2].instruction, "remove the dog");
    assert_eq!((red(&pairs[2].before), red(&pairs[2].after)), (20, 21));
}

#[test]
fn the_original_folder_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (path, bytes) in layout_files() {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    check_release(&MagicBrush::open_folder(dir.path()).unwrap());

    // A broken or missing image is a skip when its pixels are needed.
    std::fs::write(dir.path().join("images/40315/40315-output1.png"), b"garbage").unwrap();
    std::fs::remove_file(dir.path().join("images/327726/327726-input.png")).unwrap();
    let mb = MagicBrush::open_folder(dir.path()).unwrap();
    let load = |i: usize, after: bool| {
        let pair = mb.get(i).unwrap();
        load_rgb(if after { &pair.after } else { &pair.before }, ImageLimits::default()).unwrap_err().kind
    };
    assert_eq!(load(2, true), SkipKind::CorruptImage);
    assert_eq!(load(0, false), SkipKind::MissingFile);

    let err = MagicBrush::open_folder(&dir.path().join("nowhere")).unwrap_err().to_string();
    assert!(err.contains("edit_sessions.json"), "{err}");
}

#[test]
fn the_password_protected_release_zip_is_read_in_place() {
    check_release(&MagicBrush::open_zip(&fixture_zip(), Some(PASSWORD)).unwrap());

    let err = MagicBrush::open_zip(&fixture_zip(), None).unwrap_err().to_string();
    assert!(err.contains("password"), "{err}");
    assert!(MagicBrush::open_zip(&fixture_zip(), Some(b"wrong")).is_err());
}

#[test]
fn an_aes_zip_with_a_hostile_entry_is_read_and_the_entry_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("magicbrush_dev.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default().with_aes_encryption(zip::AesMode::Aes256, "s3cret");
    for (name, bytes) in layout_files() {
        zip.start_file(format!("dev/{name}"), options).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.start_file("../escape.png", options).unwrap();
    zip.write_all(b"x").unwrap();
    zip.finish().unwrap();

    let mb = MagicBrush::open_zip(&path, Some(b"s3cret")).unwrap();
    check_release(&mb);
    assert_eq!(mb.skips.count(SkipKind::UnsafeArchivePath), 1);
    assert!(!dir.path().parent().unwrap().join("escape.png").exists());
}

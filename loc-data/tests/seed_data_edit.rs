//! SEED-Data-Edit fixtures in the release's on-disk format: JSONL annotations and images as
//! an extracted folder or split `*.tar.gz.part-*` archives.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use burn_dataset::Dataset;
use common::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use loc_data::archive::{extract_tar_gz_parts, safe_relative_path};
use loc_data::pipeline::{ImageLimits, load_rgb};
use loc_data::seed_data_edit::{SeedConfig, SeedEdit, SeedImages, SeedPart};
use loc_data::{ImageSource, SkipKind, SkipLog};
use serde_json::json;

fn config(part: SeedPart, annotations: PathBuf, images: SeedImages) -> SeedConfig {
    SeedConfig {
        part,
        annotations: vec![annotations],
        images,
        prefer_rewritten: false,
        all_round_pairs: false,
        inverse_pairs: false,
    }
}

fn file_of(source: &ImageSource) -> &Path {
    match source {
        ImageSource::File(path) => path,
        other => panic!("expected a file, got {other:?}"),
    }
}

#[test]
fn parts_1_and_2_read_pairs_prefer_rewritten_instructions_and_skip_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_png(&images.join("src/0001.jpg"), 10);
    write_png(&images.join("tgt/0001.jpg"), 20);
    write_png(&images.join("src/0002.jpg"), 30);
    let ann = dir.path().join("annotations/split_0001.jsonl");
    write_lines(&ann, &[
        json!({"source_image": "src/0001.jpg", "target_image": "tgt/0001.jpg", "instruction": "add a hat", "instruction_new": "Put a red hat on the man."}).to_string(),
        json!({"source_image": "src/0002.jpg", "instruction": "no target"}).to_string(),
        "{not json".to_string(),
        json!({"source_image": "src/0002.jpg", "target_image": "tgt/missing.jpg", "instruction": "make it night", "response": "Turn day into night."}).to_string(),
    ]);

    let plain = SeedEdit::open(
        &config(SeedPart::Part2, dir.path().join("annotations"), SeedImages::Folder(images.clone())),
        false,
    )
    .unwrap();
    assert_eq!(plain.len(), 2);
    let first = plain.get(0).unwrap();
    assert_eq!(first.instruction, "add a hat");
    assert_eq!(file_of(&first.before), images.join("src/0001.jpg"));
    assert_eq!(file_of(&first.after), images.join("tgt/0001.jpg"));
    assert!(first.id.ends_with("split_0001.jsonl:1"));
    assert_eq!(plain.skips.count(SkipKind::BadRecord), 2);
    let summary = plain.skips.to_string();
    assert!(summary.contains("split_0001.jsonl:2") && summary.contains("target_image"), "{summary}");

    let rewritten = SeedEdit::open(
        &SeedConfig {
            prefer_rewritten: true,
            ..config(SeedPart::Part1, ann.clone(), SeedImages::Folder(images.clone()))
        },
        false,
    )
    .unwrap();
    assert_eq!(rewritten.get(0).unwrap().instruction, "Put a red hat on the man.");
    assert_eq!(rewritten.get(1).unwrap().instruction, "Turn day into night.");

    // The missing target is found when its pixels are loaded: a skip, not a crash.
    let missing = load_rgb(&rewritten.get(1).unwrap().after, ImageLimits::default()).unwrap_err();
    assert_eq!(missing.kind, SkipKind::MissingFile);
}

fn session_line() -> String {
    json!({
        "source_image": "s1/0.png",
        "instruction_1": "add a dog", "inverse_instruction_1": "remove the dog", "edit_image_1": "s1/1.png",
        "instruction_2": "make it snow", "inverse_instruction_2": "remove the snow", "edit_image_2": "s1/2.png",
        "instruction_3": "zoom out", "inverse_instruction_3": "zoom in", "edit_image_3": "s1/3.png",
    })
    .to_string()
}

#[test]
fn part_3_sessions_expand_into_consecutive_all_and_inverse_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let ann = dir.path().join("split_0001.jsonl");
    write_lines(&ann, &[session_line(), json!({"source_image": "s2/0.png", "edit_image_1": "s2/1.png"}).to_string()]);
    let consecutive =
        SeedEdit::open(&config(SeedPart::Part3, ann.clone(), SeedImages::Folder(images.clone())), false).unwrap();
    let got: Vec<(String, String, String)> = (0..consecutive.len())
        .map(|i| consecutive.get(i).unwrap())
        .map(|p| {
            (
                file_of(&p.before).file_name().unwrap().to_string_lossy().into(),
                file_of(&p.after).file_name().unwrap().to_string_lossy().into(),
                p.instruction,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("0.png".into(), "1.png".into(), "add a dog".into()),
            ("1.png".into(), "2.png".into(), "make it snow".into()),
            ("2.png".into(), "3.png".into(), "zoom out".into()),
        ]
    );
    assert_eq!(consecutive.skips.count(SkipKind::BadRecord), 1, "session 2 lacks instruction_1");

    let all = SeedEdit::open(
        &SeedConfig {
            all_round_pairs: true,
            inverse_pairs: true,
            ..config(SeedPart::Part3, ann, SeedImages::Folder(images))
        },
        false,
    )
    .unwrap();
    let instructions: Vec<String> = (0..all.len()).map(|i| all.get(i).unwrap().instruction).collect();
    assert_eq!(all.len(), 6 + 3);
    assert!(instructions.contains(&"add a dog, then make it snow, then zoom out".to_string()));
    assert!(instructions.contains(&"remove the snow".to_string()));
    let inverse = (0..all.len()).map(|i| all.get(i).unwrap()).find(|p| p.instruction == "zoom in").unwrap();
    assert!(file_of(&inverse.before).ends_with("s1/3.png") && file_of(&inverse.after).ends_with("s1/2.png"));
}

/// A tar.gz of `entries` (path, bytes), split into `parts` byte chunks named like the release.
fn split_tar_gz(dir: &Path, entries: &[(&str, Vec<u8>)], parts: usize) -> Vec<PathBuf> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_path(path).unwrap();
        header.set_cksum();
        builder.append(&header, bytes.as_slice()).unwrap();
    }
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    let chunk = bytes.len().div_ceil(parts);
    bytes
        .chunks(chunk)
        .zip(["aa", "ab", "ac", "ad", "ae"])
        .map(|(c, suffix)| {
            let path = dir.join(format!("multi_turn.tar.gz.part-{suffix}"));
            std::fs::File::create(&path).unwrap().write_all(c).unwrap();
            path
        })
        .collect()
}

#[test]
fn split_archives_are_read_as_one_stream_once_with_a_discovered_top_folder() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<(String, Vec<u8>)> =
        (0..4).map(|i| (format!("multi_turn_editing/s1/{i}.png"), png_bytes(40 * i as u8))).collect();
    let entries: Vec<(&str, Vec<u8>)> = images.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    let archive_dir = dir.path().join("images");
    std::fs::create_dir_all(&archive_dir).unwrap();
    assert_eq!(split_tar_gz(&archive_dir, &entries, 3).len(), 3);
    let ann = dir.path().join("split_0001.jsonl");
    write_lines(&ann, &[session_line()]);
    let cache = dir.path().join("cache");
    let archive =
        SeedImages::Archive { dir: archive_dir, prefix: "multi_turn.tar.gz.part-".into(), cache: cache.clone() };

    let seed = SeedEdit::open(&config(SeedPart::Part3, ann.clone(), archive.clone()), false).unwrap();
    assert_eq!(seed.len(), 3);
    assert_eq!(seed.skips.total(), 0);
    let last = seed.get(2).unwrap();
    assert_eq!(file_of(&last.after), cache.join("multi_turn_editing/s1/3.png"));
    assert_eq!(load_rgb(&last.after, ImageLimits::default()).unwrap().get_pixel(0, 0).0[0], 120);

    // A second open reuses the extraction.
    std::fs::remove_file(cache.join("multi_turn_editing/s1/0.png")).unwrap();
    let again = SeedEdit::open(&config(SeedPart::Part3, ann, archive), false).unwrap();
    assert_eq!(again.len(), 3);
    assert!(!cache.join("multi_turn_editing/s1/0.png").exists(), "not extracted twice");
}

#[test]
fn a_missing_last_part_keeps_what_was_extracted_and_counts_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("top/{i}.bin"), (0..4000).map(|j| ((i * 7 + j * 13) % 251) as u8).collect()))
        .collect();
    let entries: Vec<(&str, Vec<u8>)> = big.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    let parts = split_tar_gz(dir.path(), &entries, 3);
    let skips = SkipLog::default();
    let target = dir.path().join("out");
    let done = extract_tar_gz_parts(&parts[..2], &target, &skips, false).unwrap();
    assert!(done.truncated);
    assert!(done.files > 0 && done.files < 20, "{done:?}");
    assert_eq!(skips.count(SkipKind::TruncatedArchive), 1);
    assert_eq!(std::fs::read(target.join("top/0.bin")).unwrap(), big[0].1);
    assert!(!target.join(".loc-extracted").exists(), "an incomplete extraction is not marked done");
}

/// A tar entry with a raw (unchecked) name, as a hostile archive would carry.
fn raw_entry(
    builder: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    name: &[u8],
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

#[test]
fn hostile_entries_are_refused_and_nothing_is_written_outside_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    raw_entry(&mut builder, b"../outside/escaped.png", tar::EntryType::Regular, None, b"x");
    let absolute = format!("{}/absolute.png", outside.display());
    raw_entry(&mut builder, absolute.as_bytes(), tar::EntryType::Regular, None, b"x");
    raw_entry(&mut builder, b"imgs/link.png", tar::EntryType::Symlink, Some("../../outside/passwd"), b"");
    raw_entry(&mut builder, b"imgs/hard.png", tar::EntryType::Link, Some("/etc/passwd"), b"");
    raw_entry(&mut builder, b"imgs/ok.png", tar::EntryType::Regular, None, b"fine");
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    let part = dir.path().join("evil.tar.gz");
    std::fs::write(&part, bytes).unwrap();

    let skips = SkipLog::default();
    let target = dir.path().join("target");
    let done = extract_tar_gz_parts(&[part], &target, &skips, false).unwrap();
    assert_eq!(done.files, 1);
    assert_eq!(std::fs::read(target.join("imgs/ok.png")).unwrap(), b"fine");
    assert_eq!(skips.count(SkipKind::UnsafeArchivePath), 4, "{skips}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing escaped");
    assert!(!target.join("imgs/link.png").exists() && !target.join("imgs/hard.png").exists());

    assert_eq!(safe_relative_path(Path::new("a/./b.png")), Some(PathBuf::from("a/b.png")));
    assert_eq!(safe_relative_path(Path::new("a/../../b.png")), None);
    assert_eq!(safe_relative_path(Path::new("/etc/passwd")), None);
}

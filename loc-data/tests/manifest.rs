//! A hand-written JSONL manifest of pairs and quads.

mod common;

use burn_dataset::Dataset;
use common::*;
use loc_data::manifest::Manifest;
use loc_data::pipeline::{ImageLimits, load_rgb};
use loc_data::{ImageSource, SkipKind};

#[test]
fn pairs_and_quads_with_paths_relative_to_the_manifest_and_bad_lines_counted() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("my_edits");
    for (name, c) in [("cat.png", 1), ("cat_smile.png", 2), ("dog.png", 3), ("dog_smile.png", 4)] {
        write_png(&folder.join("img").join(name), c);
    }
    let manifest = folder.join("pairs.jsonl");
    write_lines(&manifest, &[
        r#"{"before": "img/cat.png", "after": "img/cat_smile.png", "instruction": "make it smile", "id": "cat"}"#.into(),
        String::new(),
        r#"{"before": "img/cat.png", "after": "img/cat_smile.png", "query": "img/dog.png", "target": "img/dog_smile.png"}"#.into(),
        r#"{"before": "img/cat.png"}"#.into(),
        r#"{"before": "img/cat.png", "after": "img/cat_smile.png", "query": "img/dog.png"}"#.into(),
        r#"{"before": "img/cat.png", "after": "img/cat_smile.png", "strength": 2}"#.into(),
    ]);
    let m = Manifest::open(&manifest).unwrap();
    assert_eq!(m.len(), 2);
    let first = m.get(0).unwrap();
    assert_eq!((first.id.as_str(), first.instruction.as_str()), ("cat", "make it smile"));
    let ImageSource::File(path) = &first.after else { panic!() };
    assert_eq!(path, &folder.join("img/cat_smile.png"));
    assert_eq!(load_rgb(&first.after, ImageLimits::default()).unwrap().get_pixel(0, 0).0[0], 2);
    assert!(m.get(1).unwrap().id.ends_with("pairs.jsonl:3"), "line numbers count blank lines");

    let quads = m.quads();
    assert_eq!(quads.len(), 1);
    let quad = quads.get(0).unwrap();
    assert_eq!(load_rgb(&quad.target, ImageLimits::default()).unwrap().get_pixel(0, 0).0[0], 4);

    assert_eq!(m.skips.count(SkipKind::BadRecord), 3);
    let summary = m.skips.to_string();
    assert!(summary.contains("pairs.jsonl:4") && summary.contains("after"), "{summary}");
    assert!(summary.contains("strength"), "unknown fields are reported: {summary}");

    let empty = folder.join("empty.jsonl");
    write_lines(&empty, &[r#"{"before": "x.png"}"#.into()]);
    let err = Manifest::open(&empty).unwrap_err().to_string();
    assert!(err.contains("empty.jsonl") && err.contains("1 skipped"), "{err}");
}
